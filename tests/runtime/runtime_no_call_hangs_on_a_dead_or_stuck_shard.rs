//! No call hangs on a dead or stuck shard:
//! - an engine that never answers a barrier: the epoch fails after the
//!   coordinator's barrier timeout with `Error::ShardStuck` naming the
//!   shard, and `shutdown` returns within its timeout, naming it too;
//! - an engine that panics on a barrier, or at start, or returns an error:
//!   the epoch fails with `Error::ShardFailed` naming the shard (at once:
//!   a barrier the engine took and never answered is failed for it, not
//!   left to the barrier timeout), later epochs are refused, and
//!   `shutdown` returns.

use crate::runtime_common;

use std::time::Duration;

use runtime_common::*;
use shardwal::{ControlEvent, CoordinatorConfig, Error, Runtime, RuntimeConfig, ShardId};

/// The coordinator's barrier timeout: short where the test waits for it
/// (an engine that never answers), long where the failure must come first
/// (a panicking engine's panic hook prints a symbolized backtrace, which
/// took over 500 ms once while the other test binaries loaded both cores).
fn barrier_timeout(m: Misbehaviour) -> Duration {
    match m {
        Misbehaviour::NeverAnswers => Duration::from_millis(500),
        _ => Duration::from_secs(5),
    }
}

fn config(m: Misbehaviour) -> RuntimeConfig {
    RuntimeConfig {
        pin: false,
        shutdown_timeout: Duration::from_secs(2),
        coordinator: CoordinatorConfig {
            barrier_timeout: Some(barrier_timeout(m)),
            ..CoordinatorConfig::default()
        },
        ..runtime_config(2, small_shard())
    }
}

/// What shard 1's engine does; shard 0 answers barriers normally.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    NeverAnswers,
    PanicsOnBarrier,
    PanicsAtStart,
    FailsOnBarrier,
}

fn start(m: Misbehaviour) -> (tempfile::TempDir, Runtime) {
    let tmp = tempfile::tempdir().unwrap();
    let rt = Runtime::start(tmp.path(), config(m), move |ctx| async move {
        let bad = ctx.shard() == ShardId(1);
        if bad && matches!(m, Misbehaviour::PanicsAtStart) {
            panic!("engine of shard 1 panics at start");
        }
        loop {
            if bad && matches!(m, Misbehaviour::NeverAnswers) {
                glommio::timer::sleep(Duration::from_millis(1)).await;
                continue;
            }
            while let Some(ev) = ctx.poll_control() {
                let ControlEvent::Barrier(req) = ev else {
                    return Ok(());
                };
                if bad {
                    match m {
                        Misbehaviour::PanicsOnBarrier => panic!("engine of shard 1 panics"),
                        Misbehaviour::FailsOnBarrier => {
                            return Err(engine_err("shard 1 gives up".into()));
                        }
                        _ => {}
                    }
                }
                ctx.complete_barrier(req, None).await?;
            }
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
    })
    .expect("start");
    (tmp, rt)
}

fn names_shard_1(e: &Error) -> bool {
    matches!(
        e,
        Error::ShardFailed {
            shard: ShardId(1),
            ..
        } | Error::ShardStuck {
            shard: ShardId(1),
            ..
        }
    )
}

#[test]
fn an_engine_that_never_answers_fails_its_epoch_and_does_not_block_shutdown() {
    let (_tmp, rt) = start(Misbehaviour::NeverAnswers);
    let c = rt.coordinator();
    let r = within(Duration::from_secs(10), "epoch wait", move || {
        c.advance_epoch().and_then(|t| t.wait())
    });
    match r {
        Err(Error::ShardStuck { shard, .. }) => assert_eq!(shard, ShardId(1)),
        other => panic!("expected ShardStuck for shard 1, got {other:?}"),
    }
    let c = rt.coordinator();
    assert!(c.advance_epoch().is_err(), "later epochs are refused");
    let r = within(Duration::from_secs(10), "shutdown", move || rt.shutdown());
    match r {
        Err(Error::ShardStuck {
            shard, waiting_for, ..
        }) => {
            assert_eq!(shard, ShardId(1));
            assert!(waiting_for.contains("shutdown"), "{waiting_for}");
        }
        other => panic!("shutdown: expected ShardStuck for shard 1, got {other:?}"),
    }
}

#[test]
fn an_engine_that_panics_or_fails_fails_its_epochs_and_shutdown_returns() {
    for m in [
        Misbehaviour::PanicsOnBarrier,
        Misbehaviour::PanicsAtStart,
        Misbehaviour::FailsOnBarrier,
    ] {
        let (_tmp, rt) = start(m);
        let c = rt.coordinator();
        let r = within(Duration::from_secs(10), "epoch wait", move || {
            c.advance_epoch().and_then(|t| t.wait())
        });
        // ShardFailed at once, not ShardStuck after the barrier timeout:
        // the barrier the engine took before failing is answered for it.
        match r {
            Err(Error::ShardFailed {
                shard: ShardId(1), ..
            }) => {}
            other => panic!("{m:?}: expected ShardFailed naming shard 1, got {other:?}"),
        }
        let c = rt.coordinator();
        let later = within(Duration::from_secs(10), "later epoch", move || {
            c.advance_epoch().and_then(|t| t.wait())
        });
        assert!(later.is_err(), "{m:?}: a later epoch sealed");
        let r = within(Duration::from_secs(10), "shutdown", move || rt.shutdown());
        match r {
            Err(e) if names_shard_1(&e) => {}
            other => panic!("{m:?}: shutdown should report shard 1, got {other:?}"),
        }
    }
}
