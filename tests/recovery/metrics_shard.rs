//! A bare shard's metrics count what it did: after appending with
//! explicit syncs, `ShardLog::metrics` reports every record and frame
//! byte, one latency per counted fdatasync (all of them above zero), one
//! roll per segment added, and exactly the back-pressure refusals the
//! caller saw. After a reopen the counters start again from zero and the
//! recovery figures report the records of the first session.

use crate::common;

use std::time::Duration;

use common::run;
use shardwal::format::frame::frame_len;
use shardwal::{DmaStorage, Error, FsyncPolicy, ShardConfig, ShardId, ShardLog};

const RECORDS: u64 = 2_000;
const PAYLOAD: usize = 200;
const SYNC_EVERY: u64 = 250;

fn config() -> ShardConfig {
    ShardConfig {
        segment_size: 256 << 10,
        buffer_size: 64 << 10,
        write_behind: 2,
        max_record_size: 4096,
        fsync: FsyncPolicy::PerEpoch,
        ..ShardConfig::default()
    }
}

#[test]
fn shard_metrics_count_records_syncs_rolls_and_backpressure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let d = dir.clone();
    let before_close = run("metrics-shard", move || async move {
        let log = ShardLog::open(DmaStorage, &d, ShardId(0), config())
            .await
            .expect("open");
        let m = log.metrics();
        assert_eq!(
            (m.shard, m.counters.records, m.counters.syncs),
            (ShardId(0), 0, 0)
        );
        assert_eq!(m.sync_latency.count, 0);
        assert_eq!((m.recovery.shards, m.recovery.records), (1, 0));

        let payload = [0xA5u8; PAYLOAD];
        let mut sync_calls = 0;
        for i in 1..=RECORDS {
            log.append(&payload).await.expect("append");
            if i % SYNC_EVERY == 0 {
                log.sync().await.expect("sync");
                sync_calls += 1;
            }
        }
        let m = log.metrics();
        assert_eq!(m.counters.records, RECORDS);
        assert_eq!(m.counters.bytes, RECORDS * frame_len(PAYLOAD) as u64);
        assert_eq!(m.next_seq.0, RECORDS);
        assert_eq!(m.durable_next.0, RECORDS, "the last append was synced");
        assert!(
            m.counters.writes >= sync_calls,
            "{} writes",
            m.counters.writes
        );
        assert!(
            m.counters.syncs >= sync_calls,
            "{} syncs for {sync_calls} sync calls",
            m.counters.syncs
        );
        assert_eq!(
            m.sync_latency.count, m.counters.syncs,
            "one latency per fdatasync"
        );
        let l = &m.sync_latency;
        assert!(l.min > Duration::ZERO, "{l:?}");
        assert!(l.min <= l.p50 && l.p50 <= l.p99 && l.p99 <= l.max, "{l:?}");
        // 2,000 frames of 240 bytes fill about two 252 KiB segments.
        assert!(m.counters.rolls >= 1, "{} rolls", m.counters.rolls);
        assert_eq!(
            m.counters.rolls as usize,
            log.segments().len() - 1,
            "one roll per added segment"
        );
        assert_eq!(
            m.counters.rolls,
            log.stats().rolls,
            "stats() and metrics() agree"
        );
        assert!(!m.poisoned);

        // Appends that never yield fill every buffer: the refusals the
        // caller sees are the ones counted.
        let bp_before = m.counters.backpressure;
        let mut refused = 0u64;
        let mut accepted = 0u64;
        while refused < 3 {
            match log.try_append(&payload) {
                Ok(_) => accepted += 1,
                Err(Error::Backpressure) => refused += 1,
                Err(e) => panic!("try_append: {e}"),
            }
        }
        let m = log.metrics();
        assert_eq!(m.counters.backpressure - bp_before, refused);
        assert_eq!(m.counters.records, RECORDS + accepted);
        log.close().await.expect("close");
        m
    });

    let reopened = run("metrics-shard-reopen", move || async move {
        let log = ShardLog::open(DmaStorage, &dir, ShardId(0), config())
            .await
            .expect("reopen");
        let m = log.metrics();
        log.close().await.expect("close");
        m
    });
    assert_eq!(
        (
            reopened.counters.records,
            reopened.counters.syncs,
            reopened.counters.rolls
        ),
        (0, 0, 0)
    );
    assert_eq!(reopened.sync_latency.count, 0);
    let r = reopened.recovery;
    // Every record appended, and the close record.
    assert_eq!(r.records, before_close.counters.records + 1, "{r:?}");
    assert_eq!(r.segments as u64, before_close.counters.rolls + 1, "{r:?}");
    assert_eq!(
        (r.torn_tails, r.repaired, r.cut_records),
        (0, 0, 0),
        "{r:?}"
    );
    assert!(r.duration > Duration::ZERO);
}
