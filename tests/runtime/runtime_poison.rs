//! A poisoned shard: shard 1 runs on a fault-injecting `SimStorage` whose
//! next fsync fails with EIO. The epoch or checkpoint in flight fails with
//! `Error::ShardFailed` naming shard 1 (proved with `wait_timeout`: it never
//! hangs), no manifest is written for a failed checkpoint, every later call
//! on the coordinator returns an error, and shutdown returns without
//! hanging.

use crate::runtime_common;

use std::cell::RefCell;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use runtime_common::*;
use shardwal::config::SegmentPrepare;
use shardwal::{
    ControlEvent, Coordinator, CoordinatorConfig, Epoch, Error, Runtime, RuntimeConfig,
    ShardConfig, ShardId, SimStorage,
};

const WAIT: Duration = Duration::from_secs(30);

thread_local! {
    /// The storage of the shard running on this thread (each shard has its
    /// own executor thread), so its engine code can inject faults.
    static STORAGE: RefCell<Option<SimStorage>> = const { RefCell::new(None) };
}

/// When shard 1 injects the fsync failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Just before it handles the barrier of this epoch (the log's fsync of
    /// the barrier fails).
    BarrierOfEpoch(u64),
    /// Just before it handles this checkpoint, failing the `n`-th fsync from
    /// then (0: the log's fdatasync of the barrier; 1: the snapshot's
    /// fdatasync; 2: the log's fdatasync of the marker, which follows the
    /// barrier once the snapshot is durable).
    Checkpoint(u64, u64),
}

/// What shard 1's engine saw after the failure.
#[derive(Debug)]
struct Seen {
    barrier_error: String,
    poisoned: Option<String>,
    append_after: Result<(), String>,
}

fn start(dir: &Path, fault: Fault, seen: mpsc::Sender<Seen>) -> Runtime {
    let cfg = RuntimeConfig {
        coordinator: CoordinatorConfig {
            keep_checkpoints: 2,
            ..CoordinatorConfig::default()
        },
        ..runtime_config(
            3,
            ShardConfig {
                prepare: SegmentPrepare::Create,
                ..small_shard()
            },
        )
    };
    Runtime::start_with(
        dir,
        cfg,
        |_shard: ShardId| {
            let s = SimStorage::new();
            STORAGE.with(|c| *c.borrow_mut() = Some(s.clone()));
            s
        },
        move |ctx| {
            let seen = seen.clone();
            async move {
                let shard = ctx.shard().0;
                let storage = STORAGE
                    .with(|c| c.borrow().clone())
                    .expect("storage of this shard");
                let log = ctx.log().clone();
                let mut n = 0u64;
                loop {
                    while let Some(ev) = ctx.poll_control() {
                        let ControlEvent::Barrier(req) = ev else {
                            return Ok(());
                        };
                        let inject = shard == 1
                            && match fault {
                                Fault::BarrierOfEpoch(e) => req.epoch.0 == e,
                                Fault::Checkpoint(c, n) => {
                                    if req.checkpoint.is_some_and(|id| id.0 == c) {
                                        storage.fail_sync(n);
                                    }
                                    false
                                }
                            };
                        if inject {
                            storage.fail_sync(0);
                        }
                        let snap = b"state";
                        let snap = req.checkpoint.map(|_| &snap[..]);
                        if let Err(e) = ctx.complete_barrier(req, snap).await {
                            // Report what the shard sees now, then carry on
                            // answering (a poisoned shard keeps failing).
                            let _ = seen.send(Seen {
                                barrier_error: e.to_string(),
                                poisoned: log.poisoned(),
                                append_after: log
                                    .append(b"after the failure")
                                    .await
                                    .map(|_| ())
                                    .map_err(|e| e.to_string()),
                            });
                        }
                    }
                    if log.poisoned().is_none() {
                        let _ = log.append(&n.to_le_bytes()).await;
                        n += 1;
                    }
                    glommio::timer::sleep(Duration::from_micros(200)).await;
                }
            }
        },
    )
    .expect("start runtime")
}

fn names_shard_1(e: &Error) -> bool {
    matches!(e, Error::ShardFailed { shard, .. } if *shard == ShardId(1))
}

/// Every later request fails at once, naming shard 1.
fn later_calls_fail(c: &Coordinator) {
    for _ in 0..3 {
        let e = c
            .advance_epoch()
            .map(|t| t.epoch)
            .expect_err("advance after the failure");
        assert!(names_shard_1(&e), "later advance_epoch: {e}");
        let e = c
            .checkpoint()
            .map(|t| t.id)
            .expect_err("checkpoint after the failure");
        assert!(names_shard_1(&e), "later checkpoint: {e}");
    }
}

fn shutdown_returns(rt: Runtime) -> shardwal::Result<()> {
    let r = within(
        Duration::from_secs(30),
        "shutdown of a poisoned runtime",
        move || rt.shutdown(),
    );
    eprintln!("shutdown returned {r:?}");
    r
}

#[test]
fn an_fsync_failure_fails_the_next_barrier_and_every_later_call() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, seen) = mpsc::channel();
    let rt = start(dir.path(), Fault::BarrierOfEpoch(4), tx);
    let c = rt.coordinator();
    for e in 1..=3 {
        let t = c.advance_epoch().expect("advance");
        assert_eq!(t.wait_timeout(WAIT).expect("healthy epochs seal"), Epoch(e));
    }
    let t = c.advance_epoch().expect("advance into the failure");
    assert_eq!(t.epoch, Epoch(4));
    let e = t.wait_timeout(WAIT).expect_err("epoch 4 cannot seal");
    assert!(names_shard_1(&e), "the error names shard 1: {e}");
    let msg = e.to_string();
    assert!(msg.contains("shard 1") && msg.contains("epoch 4"), "{msg}");
    assert_eq!(c.sealed_epoch(), Epoch(3), "the failed epoch is not sealed");

    // The shard itself is fail-stop: poisoned, and refuses appends.
    let s = seen
        .recv_timeout(WAIT)
        .expect("shard 1 saw its barrier fail");
    assert!(s.poisoned.is_some(), "shard 1 is poisoned: {s:?}");
    assert!(
        s.append_after.is_err(),
        "a poisoned shard refuses appends: {s:?}"
    );
    assert!(
        s.barrier_error.contains("fdatasync") || s.barrier_error.contains("poisoned"),
        "{s:?}"
    );

    later_calls_fail(&c);
    assert_eq!(c.sealed_epoch(), Epoch(3));
    let shut = shutdown_returns(rt);
    assert!(
        matches!(&shut, Err(Error::Poisoned { shard, .. }) if *shard == ShardId(1)),
        "shutdown reports the poisoned shard: {shut:?}"
    );
    assert!(c.advance_epoch().is_err(), "calls after shutdown fail");
    assert!(c.checkpoint().is_err(), "calls after shutdown fail");
}

fn checkpoint_failure(nth_sync: u64) -> (Seen, shardwal::Result<()>) {
    // The seal does not wait for the snapshot: only a failure of the
    // barrier's own fdatasync keeps the checkpoint's epoch from sealing.
    let sealed = if nth_sync == 0 { 3 } else { 4 };
    let dir = tempfile::tempdir().unwrap();
    let (tx, seen) = mpsc::channel();
    let rt = start(dir.path(), Fault::Checkpoint(2, nth_sync), tx);
    let c = rt.coordinator();
    c.advance_epoch()
        .unwrap()
        .wait_timeout(WAIT)
        .expect("epoch 1");
    let info = c
        .checkpoint()
        .unwrap()
        .wait_timeout(WAIT)
        .expect("checkpoint 1 succeeds");
    assert_eq!(info.id.0, 1);
    c.advance_epoch()
        .unwrap()
        .wait_timeout(WAIT)
        .expect("epoch 3");

    let t = c.checkpoint().expect("request checkpoint 2");
    assert_eq!(t.id.0, 2);
    let e = t.wait_timeout(WAIT).expect_err("checkpoint 2 fails");
    assert!(names_shard_1(&e), "the error names shard 1: {e}");
    assert!(e.to_string().contains("checkpoint 2"), "{e}");
    // The checkpoint may fail before the other shards have acknowledged
    // its epoch's barrier: give them time.
    let t0 = std::time::Instant::now();
    while c.sealed_epoch() < Epoch(sealed) && t0.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        c.sealed_epoch(),
        Epoch(sealed),
        "the sealed epoch after a failure at fsync {nth_sync} of the checkpoint"
    );
    let s = seen
        .recv_timeout(WAIT)
        .expect("shard 1 saw its checkpoint fail");
    eprintln!("shard 1 saw: {s:?}");
    later_calls_fail(&c);
    let shut = shutdown_returns(rt);
    assert_eq!(
        manifest_ids(dir.path()),
        vec![1],
        "no manifest is written for a failed checkpoint"
    );
    assert!(read_manifest(dir.path(), 1).is_ok());
    (s, shut)
}

#[test]
fn a_snapshot_fsync_failure_fails_the_checkpoint_and_every_later_call() {
    let _ = checkpoint_failure(1);
}

#[test]
fn a_barrier_fsync_failure_at_a_checkpoint_fails_its_epoch_and_every_later_call() {
    let (s, shut) = checkpoint_failure(0);
    assert!(s.poisoned.is_some() && s.append_after.is_err(), "{s:?}");
    assert!(shut.is_err(), "shutdown reports the poisoned shard");
}

/// Fail-stop (brief, "Fixed decisions"): after any write or fsync error the
/// shard is poisoned and every later call returns an error. An fsync error
/// on the shard's snapshot file is such an error, yet the shard goes on
/// accepting appends and shutdown reports success.
#[test]
fn a_snapshot_fsync_failure_poisons_the_shard() {
    let (s, shut) = checkpoint_failure(1);
    assert!(
        s.poisoned.is_some() && s.append_after.is_err(),
        "after its snapshot's fdatasync failed, shard 1 still accepts appends: {s:?}"
    );
    assert!(
        shut.is_err(),
        "shutdown reports success after a shard's fsync failed"
    );
}

#[test]
fn a_log_fsync_failure_during_a_checkpoint_fails_it_and_every_later_call() {
    let (s, shut) = checkpoint_failure(2);
    assert!(s.poisoned.is_some() && s.append_after.is_err(), "{s:?}");
    assert!(shut.is_err(), "shutdown reports the poisoned shard");
}
