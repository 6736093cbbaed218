//! An engine that waits on its own input instead of polling: it races
//! `ShardContext::control()` against that input (here a 1 ms timer, as a
//! socket or a source would be) and answers every barrier. Dropping the
//! awaited future when the input wins loses no event: every epoch seals,
//! and every barrier sits in the log where its epoch ends.

use crate::runtime_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_lite::future;
use runtime_common::*;
use shardwal::{ControlEvent, Epoch, RecordKind, Runtime};

const SHARDS: usize = 2;
const EPOCHS: u64 = 60;

#[test]
fn an_engine_awaiting_control_events_beside_its_input_answers_every_barrier() {
    let dir = tempfile::tempdir().unwrap();
    let appended: Arc<Vec<AtomicU64>> = Arc::new((0..SHARDS).map(|_| AtomicU64::new(0)).collect());
    let counts = appended.clone();
    let rt = Runtime::start(
        dir.path(),
        runtime_config(SHARDS, small_shard()),
        move |ctx| {
            let counts = counts.clone();
            async move {
                let shard = ctx.shard().0;
                let mut index = 0u64;
                loop {
                    let input = async {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                        None
                    };
                    let event = future::or(async { Some(ctx.control().await) }, input).await;
                    match event {
                        Some(ControlEvent::Barrier(req)) => {
                            ctx.complete_barrier(req, None).await?;
                        }
                        Some(_) => return Ok(()),
                        None => {
                            let d = Data {
                                shard,
                                epoch: ctx.log().epoch().0,
                                index,
                            };
                            ctx.log()
                                .append(&data_payload(d, pad_len(index, 32)))
                                .await?;
                            index += 1;
                            counts[shard as usize].store(index, Ordering::Relaxed);
                        }
                    }
                }
            }
        },
    )
    .expect("start");
    let c = rt.coordinator();
    for e in 1..=EPOCHS {
        let t = c.advance_epoch().expect("advance");
        assert_eq!(t.epoch, Epoch(e));
        t.wait().expect("every epoch seals");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(c.sealed_epoch(), Epoch(EPOCHS));
    rt.shutdown().expect("shutdown");
    for s in 0..SHARDS as u32 {
        let recs = read_log(dir.path(), s, 0);
        assert_dense(s, &recs);
        let barriers: Vec<u64> = recs
            .iter()
            .filter(|r| r.kind == RecordKind::Barrier)
            .map(|r| r.epoch)
            .collect();
        // Epochs 1..=EPOCHS, then the final epoch shutdown seals.
        assert_eq!(
            barriers,
            (1..=EPOCHS + 1).collect::<Vec<_>>(),
            "shard {s}: one barrier per epoch, in order"
        );
        let data = recs.iter().filter(|r| r.kind == RecordKind::Data).count() as u64;
        assert_eq!(
            data,
            appended[s as usize].load(Ordering::Relaxed),
            "shard {s}"
        );
        assert!(
            data > EPOCHS,
            "shard {s}: the input was served between barriers ({data})"
        );
    }
}

#[test]
fn an_engine_blocked_on_control_with_no_input_answers_1000_barriers_in_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::start(
        dir.path(),
        runtime_config(SHARDS, small_shard()),
        |ctx| async move {
            loop {
                match ctx.control().await {
                    ControlEvent::Barrier(req) => {
                        ctx.complete_barrier(req, None).await?;
                    }
                    _ => return Ok(()),
                }
            }
        },
    )
    .expect("start");
    let c = rt.coordinator();
    for e in 1..=1_000 {
        let t = c.advance_epoch().expect("advance");
        assert_eq!(t.epoch, Epoch(e));
        t.wait().expect("every epoch seals");
    }
    assert_eq!(c.sealed_epoch(), Epoch(1_000));
    rt.shutdown().expect("shutdown");
    for s in 0..SHARDS as u32 {
        let barriers = read_log(dir.path(), s, 0)
            .iter()
            .filter(|r| r.kind == RecordKind::Barrier)
            .count();
        assert_eq!(barriers, 1_001, "shard {s}: 1,000 epochs and the final one");
    }
}
