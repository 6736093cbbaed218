//! One planner for the runtime and the tools: on the same damaged logs, the
//! recovery planner run read-only (the library's scan on
//! `ReadOnlyStorage`, then `recovery::plan`, which is what `shardwal
//! recover --dry-run` runs) and `Runtime::start` reach the same report and
//! the same replay plans, with the runtime's shard count equal to the
//! log's, larger (re-sharding 2 → 3) and smaller (2 → 1).
//!
//! The log: 2 shards, 60 sealed epochs with 3 checkpoints (the CLI tests'
//! generator); then shard 0 gets an unsealed epoch (records and a barrier
//! that shard 1 never wrote), and shard 1 a torn tail (garbage after its
//! last frame, vouched for by nothing).

use crate::cli_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cli_common::*;
use futures_lite::future::block_on;
use shardwal::checkpoint::manifest;
use shardwal::format::frame::frame_len;
use shardwal::recovery::plan::{self, Manifests, Plan};
use shardwal::recovery::shard::{self, ScanOptions};
use shardwal::recovery::{Expect, ShardRecovery};
use shardwal::{
    DmaStorage, FsyncPolicy, ReadOnlyStorage, RecoveryReport, ReplayPlan, Runtime, RuntimeConfig,
    ShardConfig, ShardId, ShardLog,
};

fn shard_config() -> ShardConfig {
    ShardConfig {
        segment_size: SEGMENT,
        buffer_size: 16 << 10,
        write_behind: 4,
        max_record_size: 4 << 10,
        fsync: FsyncPolicy::PerEpoch,
        ..ShardConfig::default()
    }
}

/// Damage a generated log: an unsealed epoch on shard 0, a torn tail on 1.
fn damage(dir: &Path) {
    let d = dir.to_path_buf();
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("executor");
    ex.run(async move {
        let log = ShardLog::open(DmaStorage, &d, ShardId(0), shard_config())
            .await
            .expect("open shard 0");
        for k in 0..7 {
            log.append(&payload(0, log.epoch().0, k)).await.unwrap();
        }
        log.barrier().await.unwrap();
        log.append(b"after the unsealed barrier").await.unwrap();
        log.close().await.unwrap();
    });
    let last = frames(dir, 1).pop().expect("shard 1 has frames");
    let end = last.offset + frame_len(last.payload_len) as u64;
    // A write that landed out of order after one that did not: bytes in a
    // later sector, zeros where the next frame's header should be. (Bytes
    // right at the end, in a sector the last frame shares, would be a frame
    // that landed whole and is damaged: corruption, FORMAT.md §10 row 1a.)
    let mut bytes = std::fs::read(&last.path).unwrap();
    let at = (end as usize + 40).next_multiple_of(512);
    bytes[at..at + 100].fill(0xa5);
    std::fs::write(&last.path, bytes).unwrap();
}

/// The plan a runtime of `shards` shards would carry out, computed
/// read-only.
fn plan_read_only(dir: &Path, shards: u32) -> Plan {
    let st = ReadOnlyStorage;
    let log_id = block_on(shardwal::log_dir::load(&st, dir)).unwrap();
    let present: Vec<ShardId> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| shardwal::segment::parse_shard_dir_name(&e.file_name().to_string_lossy()))
        .collect();
    let loaded = block_on(shardwal::layout::read(&st, dir, log_id)).unwrap();
    let scope = plan::scope(log_id, loaded, &present, shards).unwrap();
    let ids = block_on(manifest::list(&st, dir)).unwrap();
    let manifests = Manifests::from_found(
        log_id,
        ids.into_iter()
            .map(|id| (id, block_on(manifest::read(&st, dir, id)))),
    );
    let mut scans = BTreeMap::new();
    for &s in &scope.all {
        let exp = Expect {
            log_id,
            shard: s,
            max_payload: shardwal::format::MAX_RECORD_HARD,
        };
        let opts = ScanOptions {
            from_seq: manifests.replay_from(s),
            repair: false,
        };
        let sdir = shardwal::segment::shard_dir(dir, s);
        let sc = block_on(shard::scan(&st, &sdir, exp, opts, |_, _, _| true)).unwrap();
        scans.insert(s, sc);
    }
    plan::plan(&scope, &manifests, scans).unwrap()
}

fn timeless(r: &RecoveryReport) -> RecoveryReport {
    let mut r = r.clone();
    r.elapsed = Duration::ZERO;
    r.shards = r
        .shards
        .iter()
        .map(|s| ShardRecovery {
            elapsed: Duration::ZERO,
            ..s.clone()
        })
        .collect();
    r
}

/// Start a runtime of `shards` on `dir`; its report and every core's plan.
fn start(dir: &Path, shards: usize) -> (RecoveryReport, Vec<ReplayPlan>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let cfg = RuntimeConfig {
        shards: Some(shards),
        pin: false,
        shard: shard_config(),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(dir, cfg, move |ctx| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((ctx.shard().0, ctx.replay_plan().clone()));
            Ok(())
        }
    })
    .expect("start");
    let report = rt.recovery_report().clone();
    let mut plans: Vec<(u32, ReplayPlan)> = (0..shards).map(|_| rx.recv().unwrap()).collect();
    plans.sort_by_key(|(s, _)| *s);
    rt.shutdown().expect("shutdown");
    (report, plans.into_iter().map(|(_, p)| p).collect())
}

#[test]
fn the_planner_and_the_runtime_agree_on_damaged_and_resharded_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    generate(&base);
    damage(&base);
    for shards in [2u32, 3, 1] {
        let dir = tmp.path().join(format!("as-{shards}"));
        copy(&base, &dir);
        let before = fingerprint(&dir);
        let planned = plan_read_only(&dir, shards);
        assert_eq!(
            before,
            fingerprint(&dir),
            "the read-only plan changed files"
        );
        let (report, plans) = start(&dir, shards as usize);
        assert_eq!(
            timeless(&planned.report),
            timeless(&report),
            "{shards} shards: the planner's report and the runtime's differ"
        );
        assert_eq!(planned.cores, plans, "{shards} shards: replay plans differ");
        // The damage was there to be found.
        let r1 = report
            .shards
            .iter()
            .find(|r| r.shard == ShardId(1))
            .unwrap();
        assert!(r1.torn.is_some(), "{shards} shards: shard 1's torn tail");
        let r0 = report
            .shards
            .iter()
            .find(|r| r.shard == ShardId(0))
            .unwrap();
        // The runtime's close record, 7 records, the barrier, one record
        // and the bare log's close record: all after the sealed barrier.
        assert_eq!(
            r0.cut_records, 11,
            "{shards} shards: shard 0's unsealed epoch"
        );
        if shards == 2 {
            // The CLI's dry run is this planner: same sealed epoch and cuts.
            let mut d2 = dir.clone();
            d2.set_file_name("dry");
            copy(&base, &d2);
            let r = on("recover", &d2, &["--dry-run", "--json"]).expect(0, "dry run");
            assert_eq!(json_u64(&r.stdout, "sealed_epoch"), Some(planned.sealed.0));
            for s in 0..2 {
                let want = planned.shards[&ShardId(s)].cut.report.next_seq.0;
                assert_eq!(shard_u64(&r.stdout, s, "next_seq"), Some(want), "shard {s}");
            }
        }
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &t);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}
