//! The parent's read-only pass: the library's recovery scan and planner on
//! `ReadOnlyStorage`, and its readers up to the planned cut.

use std::collections::BTreeMap;
use std::path::Path;

use futures_lite::future::block_on;
use shardwal::checkpoint::manifest::{self};
use shardwal::recovery::Expect;
use shardwal::recovery::plan::{self, Manifests, Plan};
use shardwal::recovery::shard::{self as shard_scan, ScanOptions};
use shardwal::segment::shard_dir;
use shardwal::{MergedReader, ReadOnlyStorage, RecordKind, Seq, ShardId, ShardReader};

/// The plan a runtime of `shards` shards would carry out on `dir`,
/// computed read-only.
pub(crate) fn plan_read_only(dir: &Path, shards: u32) -> Result<(Plan, Manifests), String> {
    let st = ReadOnlyStorage;
    let log_id = block_on(shardwal::log_dir::load(&st, dir)).map_err(|e| format!("LOG_ID: {e}"))?;
    let mut present = Vec::new();
    for e in std::fs::read_dir(dir)
        .map_err(|e| format!("list: {e}"))?
        .flatten()
    {
        if let Some(s) = shardwal::segment::parse_shard_dir_name(&e.file_name().to_string_lossy()) {
            present.push(s);
        }
    }
    present.sort_unstable();
    let loaded =
        block_on(shardwal::layout::read(&st, dir, log_id)).map_err(|e| format!("LAYOUT: {e}"))?;
    let scope = plan::scope(log_id, loaded, &present, shards).map_err(|e| format!("scope: {e}"))?;
    let ids = block_on(manifest::list(&st, dir)).map_err(|e| format!("manifests: {e}"))?;
    let manifests = Manifests::from_found(
        log_id,
        ids.into_iter()
            .map(|id| (id, block_on(manifest::read(&st, dir, id)))),
    );
    if !manifests.failed.is_empty() {
        return Err(format!(
            "manifests that do not validate: {:?}",
            manifests.failed
        ));
    }
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
        let sc = block_on(shard_scan::scan(
            &st,
            &shard_dir(dir, s),
            exp,
            opts,
            |_, _, _| true,
        ))
        .map_err(|e| format!("scan of {s}: {e}"))?;
        scans.insert(s, sc);
    }
    let p = plan::plan(&scope, &manifests, scans).map_err(|e| format!("plan: {e}"))?;
    Ok((p, manifests))
}

/// One record read back, owned.
pub(crate) struct Rec {
    pub(crate) seq: u64,
    pub(crate) epoch: u64,
    pub(crate) kind: RecordKind,
    pub(crate) payload: Vec<u8>,
}

/// The records of `shard` with seq below `until`, read-only.
pub(crate) fn read_shard(dir: &Path, shard: u32, until: u64) -> Result<Vec<Rec>, String> {
    block_on(async {
        let mut r =
            ShardReader::open_range(ReadOnlyStorage, dir, ShardId(shard), Seq(0), Seq(until))
                .await
                .map_err(|e| format!("open the reader of shard {shard}: {e}"))?;
        let mut out = Vec::new();
        while let Some(rec) = r
            .next()
            .await
            .map_err(|e| format!("read shard {shard}: {e}"))?
        {
            out.push(Rec {
                seq: rec.lsn.seq.0,
                epoch: rec.lsn.epoch.0,
                kind: rec.kind,
                payload: rec.payload.to_vec(),
            });
        }
        Ok(out)
    })
}

pub(crate) fn snapshot_ids(dir: &Path, shard: u32) -> Vec<u64> {
    std::fs::read_dir(shard_dir(dir, ShardId(shard)))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            shardwal::checkpoint::snapshot::parse_snapshot_name(e.file_name().to_str()?)
        })
        .collect()
}

/// The merged replay of every shard is in (epoch, shard, seq) order and
/// holds every record of the ranges.
pub(crate) fn check_merged(dir: &Path, ranges: &[(ShardId, Seq, Seq)]) -> Result<(), String> {
    let ranges: Vec<_> = ranges.iter().filter(|(_, a, b)| a < b).copied().collect();
    if ranges.is_empty() {
        return Ok(());
    }
    block_on(async {
        let mut r = MergedReader::open_shards(ReadOnlyStorage, dir, &ranges)
            .await
            .map_err(|e| format!("open the merged reader: {e}"))?;
        let mut last: Option<(u64, u32, u64)> = None;
        let mut n = 0u64;
        while let Some(rec) = r.next().await.map_err(|e| format!("merged read: {e}"))? {
            let key = (rec.lsn.epoch.0, rec.lsn.shard.0, rec.lsn.seq.0);
            if last.is_some_and(|l| l >= key) {
                return Err(format!("the merged replay goes from {last:?} to {key:?}"));
            }
            last = Some(key);
            n += 1;
        }
        let want: u64 = ranges.iter().map(|(_, a, b)| b.0 - a.0).sum();
        if n != want {
            return Err(format!(
                "the merged replay holds {n} records, the ranges {want}"
            ));
        }
        Ok(())
    })
}
