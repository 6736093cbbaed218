//! `Runtime::metrics` gathers every shard's published figures and the
//! coordinator's: two shards each append a known number of records, the
//! coordinator seals a known number of epochs, and then every shard reports
//! exactly its data records plus one barrier per epoch, a sync latency per
//! fdatasync, and the coordinator one seal latency per epoch. A restart
//! reports the first run's records as its recovery's figures.

use crate::runtime_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use runtime_common::*;
use shardwal::{Epoch, Runtime, RuntimeConfig};

const SHARDS: usize = 2;
const RECORDS: u64 = 500;
const EPOCHS: u64 = 20;

fn config() -> RuntimeConfig {
    RuntimeConfig {
        auto_barriers: true,
        // Two shards on a machine of two cores, beside other work.
        pin: false,
        ..runtime_config(SHARDS, small_shard())
    }
}

/// Start a runtime whose engines each append `RECORDS` records at once
/// (counting them in `appended`), then idle until shutdown.
fn start(dir: &std::path::Path, appended: Arc<AtomicU64>) -> Runtime {
    Runtime::start(dir, config(), move |ctx| {
        let appended = appended.clone();
        async move {
            for i in 0..RECORDS {
                ctx.log().append(&i.to_le_bytes()).await?;
            }
            appended.fetch_add(RECORDS, Ordering::SeqCst);
            while !ctx.is_shutting_down() {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            Ok(())
        }
    })
    .expect("start")
}

#[test]
fn runtime_metrics_sum_the_shards_and_time_every_epoch_seal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let appended = Arc::new(AtomicU64::new(0));
    let rt = start(dir, appended.clone());

    let m = rt.metrics();
    assert_eq!(m.shards.len(), SHARDS, "every shard published at start");
    assert_eq!(m.epoch_seal_latency.count, 0);
    assert_eq!(m.last_recovery.shards, SHARDS);
    assert_eq!(m.last_recovery.records, 0, "a new log");

    let deadline = Instant::now() + Duration::from_secs(30);
    while appended.load(Ordering::SeqCst) < RECORDS * SHARDS as u64 {
        assert!(Instant::now() < deadline, "the engines did not append");
        std::thread::sleep(Duration::from_millis(1));
    }
    let coord = rt.coordinator();
    for e in 1..=EPOCHS {
        let sealed = coord.advance_epoch().unwrap().wait().unwrap();
        assert_eq!(sealed, Epoch(e));
    }

    let m = rt.metrics();
    assert_eq!(m.sealed_epoch, Epoch(EPOCHS));
    // Each shard published before acking the last barrier: its data
    // records and one barrier per epoch (auto mode writes no commits).
    for (i, s) in m.shards.iter().enumerate() {
        assert_eq!(s.shard.0 as usize, i);
        assert_eq!(s.counters.records, RECORDS + EPOCHS, "shard {i}: {s:?}");
        assert_eq!(s.epoch, Epoch(EPOCHS + 1), "shard {i}");
        assert!(
            s.counters.syncs >= EPOCHS,
            "shard {i}: a sync per barrier, {} syncs",
            s.counters.syncs
        );
        assert_eq!(s.sync_latency.count, s.counters.syncs, "shard {i}");
        assert!(s.sync_latency.p50 > Duration::ZERO, "shard {i}");
    }
    assert_eq!(m.records(), SHARDS as u64 * (RECORDS + EPOCHS));
    assert_eq!(
        m.sync_latency().count,
        m.shards.iter().map(|s| s.counters.syncs).sum::<u64>()
    );
    let seal = &m.epoch_seal_latency;
    assert_eq!(seal.count, EPOCHS, "one seal latency per epoch sealed");
    assert!(
        seal.min > Duration::ZERO && seal.p50 <= seal.max,
        "{seal:?}"
    );
    // A seal includes every shard's barrier fdatasync.
    let fastest_sync = m.shards.iter().map(|s| s.sync_latency.min).min().unwrap();
    assert!(seal.max >= fastest_sync, "{seal:?} vs {fastest_sync:?}");
    rt.shutdown().expect("shutdown");

    // The restart's recovery figures cover the first run's records: data,
    // barriers and the final epoch's barrier, and at most one more per
    // shard (the close record written after that barrier).
    let rt = start(dir, Arc::new(AtomicU64::new(0)));
    let r = rt.metrics().last_recovery;
    assert_eq!(r.shards, SHARDS);
    let sealed_per_shard = RECORDS + EPOCHS + 1;
    assert!(
        r.records >= SHARDS as u64 * sealed_per_shard
            && r.records <= SHARDS as u64 * (sealed_per_shard + 1),
        "{r:?}"
    );
    assert_eq!(r.torn_tails, 0, "{r:?}");
    assert!(r.duration > Duration::ZERO);
    rt.shutdown().expect("shutdown");
}
