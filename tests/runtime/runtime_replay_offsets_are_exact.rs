//! The replay plan's source offsets describe exactly the records replayed,
//! after a clean shutdown as after a crash, so an engine written like the
//! README's example (restore the snapshot, count the replayed records,
//! resume its input at `plan.offsets`) is exactly-once.
//!
//! The engine: input `k` of shard `s` is the number `k`; it logs each input
//! before counting it, commits its next offset at every barrier, and
//! snapshots its count at checkpoints. After every restart, the count it
//! restores (snapshot + replayed records) must equal the offset it resumes
//! from: one more input counted than offset would mean it is processed
//! twice; one fewer, lost.

use crate::child_process;
use crate::runtime_common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use runtime_common::*;
use shardwal::{ControlEvent, RecordKind, Runtime, SourceOffset};

const DIR_ENV: &str = "SHARDWAL_OFFSETS_DIR";
const CHILD: &str = "child_runs_the_readme_engine_until_killed";

/// Start the README engine on `dir`; its shards report (restored count,
/// resumed offset) on `tx`; the driver seals `epochs` epochs, a
/// checkpoint every 5th, then the runtime is returned for the caller.
fn run(dir: &Path, epochs: u64, tx: crossbeam_channel::Sender<(u32, u64, u64)>) -> Runtime {
    let rt = Runtime::start(dir, runtime_config(2, small_shard()), move |ctx| {
        let tx = tx.clone();
        async move {
            let plan = ctx.replay_plan().clone();
            let mut count = 0u64;
            for (_, snap) in ctx.snapshots().await? {
                count += <[u8; 8]>::try_from(snap.as_slice()).map_or(0, u64::from_le_bytes);
            }
            let mut replay = ctx.replay().await?;
            while let Some(rec) = replay.next().await? {
                count += u64::from(rec.kind == RecordKind::Data);
            }
            let mut offset = plan.offsets.first().map_or(0, |o| o.offset);
            let _ = tx.send((ctx.shard().0, count, offset));
            loop {
                while let Some(ev) = ctx.poll_control() {
                    let ControlEvent::Barrier(req) = ev else {
                        return Ok(());
                    };
                    let source = format!("input-{}", ctx.shard().0);
                    ctx.commit(vec![SourceOffset { source, offset }], 0).await?;
                    let snap = count.to_le_bytes();
                    ctx.complete_barrier(req, Some(&snap)).await?;
                }
                glommio::timer::sleep(Duration::from_micros(100)).await;
                ctx.log().append(&offset.to_le_bytes()).await?;
                (count, offset) = (count + 1, offset + 1);
            }
        }
    })
    .expect("start");
    let c = rt.coordinator();
    for i in 1..=epochs {
        std::thread::sleep(Duration::from_millis(2));
        if i % 5 == 0 {
            c.checkpoint().and_then(|t| t.wait()).expect("checkpoint");
        } else {
            c.advance_epoch().and_then(|t| t.wait()).expect("epoch");
        }
    }
    rt
}

fn check(rx: &crossbeam_channel::Receiver<(u32, u64, u64)>, what: &str) {
    for _ in 0..2 {
        let (s, count, offset) = rx.recv_timeout(Duration::from_secs(30)).expect("report");
        assert_eq!(
            count, offset,
            "{what}: shard {s} restored {count} inputs but resumes its input at {offset}"
        );
    }
}

#[test]
fn after_a_clean_shutdown_the_offsets_match_the_replayed_records() {
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..4 {
        let (tx, rx) = crossbeam_channel::unbounded();
        let rt = run(tmp.path(), 7, tx);
        if round > 0 {
            check(&rx, &format!("restart {round}"));
        }
        rt.shutdown().expect("shutdown");
    }
}

/// The child: runs the engine with epochs until killed.
#[test]
#[ignore = "child process of after_a_crash_the_offsets_match_the_replayed_records"]
fn child_runs_the_readme_engine_until_killed() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let (tx, _rx) = crossbeam_channel::unbounded();
    let _rt = run(Path::new(&dir), 3, tx);
    println!("RUNNING");
    let rt = run_forever(_rt);
    drop(rt);
}

fn run_forever(rt: Runtime) -> Runtime {
    let c = rt.coordinator();
    for i in 1.. {
        std::thread::sleep(Duration::from_millis(2));
        let r = if i % 5 == 0 {
            c.checkpoint().and_then(|t| t.wait()).map(|_| ())
        } else {
            c.advance_epoch().and_then(|t| t.wait()).map(|_| ())
        };
        r.expect("child: epoch");
    }
    rt
}

#[test]
fn after_a_crash_the_offsets_match_the_replayed_records() {
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..4u64 {
        let mut child = child_process::child_test(module_path!(), CHILD)
            .env(DIR_ENV, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        assert!(
            lines.any(|l| l.is_ok_and(|l| l.ends_with("RUNNING"))),
            "child started"
        );
        std::thread::sleep(Duration::from_millis(20 + 37 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let rt = run(tmp.path(), 2, tx);
        check(&rx, &format!("after crash {round}"));
        rt.shutdown().expect("shutdown");
    }
}
