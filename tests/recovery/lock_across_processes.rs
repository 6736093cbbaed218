//! The writer's lock of a shard (`shard-NNNN/LOCK`) holds across
//! processes, in both directions: while a bare `ShardLog` in a child
//! process (this test binary, re-executed) owns shard 0, this process gets
//! `Error::Locked` naming the shard directory, from a bare `ShardLog` and
//! from `Runtime::start`, and changes nothing; once the child is killed with
//! SIGKILL, both open, with every record the child made durable. While this
//! process owns the shard, a child is refused.
//!
//! The log directory's own lock (`LOCK`, taken by `Runtime::start`) is
//! tested across processes in `tests/recovery/recovery_lock.rs`
//! (`another_process_gets_locked_until_the_owner_is_gone`).

use crate::child_process;
use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{check_records, payload, read_all, run};
use shardwal::segment::shard_dir;
use shardwal::{
    Error, FsyncPolicy, Runtime, RuntimeConfig, Seq, ShardConfig, ShardId, ShardLog, StdStorage,
};

const DIR_ENV: &str = "SHARDWAL_LOCK_ACROSS_DIR";
const MODE_ENV: &str = "SHARDWAL_LOCK_ACROSS_MODE";
const CHILD_TEST: &str = "child_opens_shard_0";
const TAG: u64 = 0x10CC;
const RECORDS: u64 = 50;
const SHARD: ShardId = ShardId(0);

fn config() -> ShardConfig {
    ShardConfig {
        segment_size: 64 << 10,
        buffer_size: 8 << 10,
        max_record_size: 1024,
        fsync: FsyncPolicy::Never,
        ..ShardConfig::default()
    }
}

fn rec(seq: u64) -> Vec<u8> {
    payload(TAG, seq, 200)
}

/// The child: opens shard 0 with a bare `ShardLog` and prints what
/// happened. Mode `hold`: appends and syncs [`RECORDS`] records, prints
/// `HELD`, and keeps the log open until it is killed. Mode `try`: exits.
#[test]
#[ignore = "child process of the lock_across_processes tests"]
fn child_opens_shard_0() {
    let dir = PathBuf::from(std::env::var(DIR_ENV).expect("dir"));
    let hold = std::env::var(MODE_ENV).as_deref() == Ok("hold");
    run("child", move || async move {
        match ShardLog::open(StdStorage, &dir, SHARD, config()).await {
            Ok(log) if hold => {
                let from = log.recovery().next_seq.0;
                for seq in from..from + RECORDS {
                    log.append(&rec(seq)).await.expect("append");
                }
                log.sync().await.expect("sync");
                println!("HELD {}", from + RECORDS);
                loop {
                    glommio::timer::sleep(Duration::from_secs(1)).await;
                }
            }
            Ok(log) => {
                println!("OPENED");
                log.close().await.expect("close");
            }
            Err(Error::Locked { path }) => println!("LOCKED {}", path.display()),
            Err(e) => println!("ERROR {e}"),
        }
    });
}

/// A child that never exits on its own: killed if the test fails first.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path, mode: &str) -> Child {
    child_process::child_test(module_path!(), CHILD_TEST)
        .env(DIR_ENV, dir)
        .env(MODE_ENV, mode)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// The child's verdict: the first line it prints that is one. Its stdout
/// is drained to the end on a thread of its own, so the child never writes
/// into a closed pipe (and fails) after it.
fn verdict(child: &mut Child) -> String {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        // The harness prints "test NAME ... " first, on the same line.
        if let Some(i) = ["HELD", "OPENED", "LOCKED", "ERROR"]
            .iter()
            .find_map(|w| line.find(w))
        {
            return line[i..].to_string();
        }
        seen.push(line);
    }
    let _ = child.kill();
    panic!("the child printed no verdict:\n{}", seen.join("\n"));
}

/// Every file under `dir` with its length and modification time.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut v = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let e = e.expect("entry");
            let md = e.metadata().expect("stat");
            if md.is_dir() {
                todo.push(e.path());
            } else {
                v.push((e.path(), md.len(), md.modified().expect("mtime")));
            }
        }
    }
    v.sort();
    v
}

async fn open_here(dir: &Path) -> shardwal::Result<ShardLog<StdStorage>> {
    ShardLog::open(StdStorage, dir, SHARD, config()).await
}

fn runtime_config() -> RuntimeConfig {
    RuntimeConfig {
        shards: Some(1),
        pin: false,
        auto_barriers: true,
        shard: config(),
        ..RuntimeConfig::default()
    }
}

fn start_runtime(dir: &Path) -> shardwal::Result<Runtime> {
    Runtime::start(dir, runtime_config(), |ctx| async move {
        while !ctx.is_shutting_down() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    })
}

#[test]
fn a_shard_held_by_another_process_is_refused_until_that_process_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let sdir = shard_dir(&dir, SHARD);

    let mut holder = KillOnDrop(spawn(&dir, "hold"));
    let v = verdict(&mut holder.0);
    assert_eq!(v, format!("HELD {RECORDS}"), "the child holds the shard");
    let before = listing(&dir);

    // A bare writer here is refused, naming the shard directory.
    let d = dir.clone();
    let r = run("refused", move || async move {
        open_here(&d).await.map(|l| l.recovery().clone())
    });
    match r {
        Err(Error::Locked { path }) => assert_eq!(path, sdir),
        other => panic!("expected Error::Locked, got {other:?}"),
    }
    // So is a runtime (it owns the directory lock, which the bare child
    // does not take, but not the shard's).
    match start_runtime(&dir) {
        Err(Error::Locked { path }) => assert_eq!(path, sdir),
        Err(e) => panic!("expected Error::Locked, got {e}"),
        Ok(rt) => {
            let _ = rt.shutdown();
            panic!("a runtime opened a shard another process writes")
        }
    }
    let after: Vec<_> = listing(&dir)
        .into_iter()
        .filter(|(p, ..)| !p.ends_with("LOCK") && !p.ends_with("LAYOUT"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, ..)| !p.ends_with("LOCK") && !p.ends_with("LAYOUT"))
        .collect();
    assert_eq!(before, after, "the refused opens changed the shard's files");

    // The kernel releases the lock when the holder dies.
    holder.0.kill().expect("SIGKILL the holder");
    holder.0.wait().expect("reap");
    let d = dir.clone();
    run("after", move || async move {
        let log = open_here(&d).await.expect("open after the holder died");
        assert_eq!(
            log.recovery().next_seq,
            Seq(RECORDS),
            "the holder's synced records"
        );
        log.close().await.expect("close");
        let recs = read_all(StdStorage, &d, SHARD, 0).await;
        check_records(&recs, 0, rec);
        assert_eq!(
            recs.iter()
                .filter(|r| r.kind == shardwal::RecordKind::Data)
                .count() as u64,
            RECORDS
        );
    });
    let rt = start_runtime(&dir).expect("a runtime opens it too");
    rt.shutdown().expect("shutdown");
}

#[test]
fn a_shard_held_here_is_refused_to_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let d = dir.clone();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let owner = std::thread::spawn(move || {
        run("owner", move || async move {
            let log = open_here(&d).await.expect("open");
            log.append(b"held here").await.expect("append");
            log.sync().await.expect("sync");
            held_tx.send(()).expect("tell the test");
            // Wait (off the executor's thread) for the test to finish.
            let rx = std::sync::Mutex::new(rx);
            while rx.lock().unwrap().try_recv().is_err() {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            log.close().await.expect("close");
        })
    });
    held_rx.recv().expect("the owner holds the shard");
    let mut child = spawn(&dir, "try");
    let v = verdict(&mut child);
    assert!(child.wait().expect("reap").success(), "child: {v}");
    assert_eq!(
        v,
        format!("LOCKED {}", shard_dir(&dir, SHARD).display()),
        "the child is refused"
    );
    tx.send(()).expect("release the owner");
    owner.join().expect("owner");
    // Released at close: the child opens it.
    let mut child = spawn(&dir, "try");
    let v = verdict(&mut child);
    assert!(child.wait().expect("reap").success(), "child: {v}");
    assert_eq!(v, "OPENED");
}
