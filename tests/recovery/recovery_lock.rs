//! One owner per log directory. While a runtime holds a directory:
//!
//! - a second `Runtime::start` in the same process gets `Error::Locked`
//!   naming the directory — also through another spelling of the same
//!   path (a symlink, a `..` detour) — and neither recovers nor changes
//!   anything on disk;
//! - a second process gets `Error::Locked` too (the test binary re-executes
//!   itself as the child), and the held runtime goes on sealing epochs;
//! - once the owner shuts down, or once the owning process is killed, the
//!   directory opens again, with its sealed epochs.

use crate::child_process;
use crate::recovery_common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use recovery_common::*;
use shardwal::{Epoch, Error, Runtime, RuntimeConfig};

const SHARDS: usize = 2;
const DIR_ENV: &str = "SHARDWAL_RECOVERY_LOCK_DIR";
const MODE_ENV: &str = "SHARDWAL_RECOVERY_LOCK_MODE";
const CHILD_TEST: &str = "child_opens_the_directory";

fn config() -> RuntimeConfig {
    RuntimeConfig {
        auto_barriers: true,
        ..runtime_config(SHARDS, small_shard(256 << 10))
    }
}

fn start(dir: &Path) -> shardwal::Result<Runtime> {
    Runtime::start(dir, config(), |ctx| async move {
        while !ctx.is_shutting_down() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    })
}

fn expect_locked(r: shardwal::Result<Runtime>, path: &Path) {
    match r {
        Err(Error::Locked { path: p }) => assert_eq!(p, path, "the error names the directory"),
        Err(e) => panic!("expected Error::Locked, got {e}"),
        Ok(_) => panic!("a second runtime started on a locked directory"),
    }
}

/// Every file under `dir` with its length and modification time.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                v.push((e.path(), m.len(), m.modified().unwrap()));
            }
        }
    }
    v.sort();
    v
}

/// The child: opens the directory and prints what happened. In mode
/// `try`, it exits at once; in mode `hold`, it keeps the runtime until killed.
#[test]
#[ignore = "child process of the recovery_lock tests"]
fn child_opens_the_directory() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let hold = std::env::var(MODE_ENV).as_deref() == Ok("hold");
    match start(Path::new(&dir)) {
        Err(Error::Locked { path }) => println!("LOCKED {}", path.display()),
        Err(e) => println!("ERROR {e}"),
        Ok(rt) => {
            let e = rt.coordinator().advance_epoch().unwrap().wait().unwrap();
            println!("STARTED {}", e.0);
            if hold {
                std::thread::sleep(Duration::from_secs(60));
            }
            rt.shutdown().unwrap();
        }
    }
}

fn spawn_child(dir: &Path, mode: &str) -> Child {
    child_process::child_test(module_path!(), CHILD_TEST)
        .env(DIR_ENV, dir)
        .env(MODE_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// The child's verdict: what it printed about what `start` returned (the
/// test harness may print its "test ... " prefix on the same line).
fn verdict(child: &mut Child) -> String {
    let out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut lines = BufReader::new(out).lines();
    while let Some(line) = lines.next() {
        let line = line.unwrap();
        seen.push(line.clone());
        if let Some(at) = ["LOCKED", "STARTED", "ERROR"]
            .iter()
            .filter_map(|w| line.find(w))
            .min()
        {
            // Keep draining, so the child never writes into a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return line[at..].to_string();
        }
    }
    panic!("the child printed no verdict:\n{}", seen.join("\n"));
}

fn try_in_child(dir: &Path) -> String {
    let dir = dir.to_path_buf();
    within(Duration::from_secs(60), "child process", move || {
        let mut child = spawn_child(&dir, "try");
        let v = verdict(&mut child);
        assert!(child.wait().unwrap().success(), "child failed after: {v}");
        v
    })
}

#[test]
fn a_second_open_in_this_process_gets_locked_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let first = start(&dir).expect("first runtime");
    let c = first.coordinator();
    assert_eq!(c.advance_epoch().unwrap().wait().unwrap(), Epoch(1));
    // Idle in auto mode, the first runtime writes nothing once its next
    // segment is prepared: wait until the directory is quiet.
    let mut before = listing(&dir);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = listing(&dir);
        if now == before {
            break;
        }
        before = now;
    }

    expect_locked(start(&dir), &dir);
    // Other spellings of the same directory.
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    expect_locked(start(&link), &link);
    let detour = dir.join("shard-0000").join("..");
    expect_locked(start(&detour), &detour);
    assert_eq!(
        listing(&dir),
        before,
        "a refused open changed the directory"
    );

    // The first runtime is undisturbed.
    assert_eq!(c.advance_epoch().unwrap().wait().unwrap(), Epoch(2));
    within(Duration::from_secs(30), "shutdown", move || {
        first.shutdown()
    })
    .expect("shutdown");
    let again = start(&dir).expect("reopen after shutdown");
    assert!(again.coordinator().sealed_epoch() >= Epoch(2));
    within(Duration::from_secs(30), "shutdown", move || {
        again.shutdown()
    })
    .expect("shutdown");
}

#[test]
fn another_process_gets_locked_until_the_owner_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();

    // This process owns the directory: the child is refused.
    let owner = start(&dir).expect("owner");
    let c = owner.coordinator();
    assert_eq!(c.advance_epoch().unwrap().wait().unwrap(), Epoch(1));
    assert_eq!(try_in_child(&dir), format!("LOCKED {}", dir.display()));
    assert_eq!(c.advance_epoch().unwrap().wait().unwrap(), Epoch(2));
    within(Duration::from_secs(30), "shutdown", move || {
        owner.shutdown()
    })
    .expect("shutdown");

    // Released at shutdown: the child opens it (and seals epoch 4: shutdown
    // sealed 3).
    assert_eq!(try_in_child(&dir), "STARTED 4");

    // A child owns it: this process is refused, until the child is killed.
    let mut holder = spawn_child(&dir, "hold");
    let v = verdict(&mut holder);
    assert!(v.starts_with("STARTED"), "the holder started: {v}");
    expect_locked(start(&dir), &dir);
    holder.kill().expect("SIGKILL the holder");
    holder.wait().unwrap();
    let rt = start(&dir).expect("open after the owner died");
    assert!(rt.coordinator().sealed_epoch() >= Epoch(5));
    within(Duration::from_secs(30), "shutdown", move || rt.shutdown()).expect("shutdown");
}
