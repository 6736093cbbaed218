//! The `recover` workload: reopening a log (its full recovery scan)
//! against an O_DIRECT read of the same files.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use glommio::LocalExecutor;
use shardwal::{FsyncPolicy, SegmentPrepare, ShardConfig, ShardId};

use super::measure::{Measure, Report};
use super::raw::direct_read_into;
use super::setup::{Scratch, err, lib, open_log, payload};
use crate::Fail;
use crate::output::units;

/// `recover`: write a log of `mib` MiB, then time reopening it (the full
/// recovery scan) against an O_DIRECT read of its segment files.
pub(super) fn run(
    ex: &LocalExecutor,
    s: &Scratch,
    dur: Duration,
    mib: u64,
) -> Result<Report, Fail> {
    const SIZE: usize = 128;
    let p = payload(SIZE);
    let dir = s.sub("recover")?;
    // `Create`: no zero-filled spare segment at the end of the log, so every
    // reopen reads the same bytes (the log's own).
    let cfg = ShardConfig {
        fsync: FsyncPolicy::Never,
        prepare: SegmentPrepare::Create,
        ..ShardConfig::default()
    };
    let target = (mib.max(1) << 20) / shardwal::format::frame::frame_len(SIZE) as u64;
    let log = open_log(ex, &dir, cfg.clone())?;
    ex.run(async {
        for _ in 0..target {
            log.append(&p).await?;
        }
        log.close().await
    })
    .map_err(lib)?;
    let mut sw = Measure::new("shardwal_open");
    let mut raw = Measure::new("raw_direct_read");
    let start = Instant::now();
    let mut runs = 0;
    // At least 3 reopens, more while time allows (at most 50).
    while runs < 3 || (start.elapsed() < dur && runs < 50) {
        let t0 = Instant::now();
        let log = open_log(ex, &dir, cfg.clone())?;
        let took = t0.elapsed();
        let rec = log.recovery().clone();
        ex.run(log.close()).map_err(lib)?;
        sw.record(took);
        sw.elapsed += took;
        sw.ops += rec.records;
        sw.bytes += rec.bytes;
        let segs = shardwal::segment::shard_dir(&dir, ShardId(0));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&segs)
            .map_err(|e| err(&segs, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        files.sort();
        let t0 = Instant::now();
        let mut one = Measure::new("raw_direct_read");
        for f in &files {
            direct_read_into(f, &mut one)?;
        }
        raw.record(t0.elapsed());
        raw.elapsed += one.elapsed;
        raw.ops += rec.records;
        raw.bytes += one.bytes;
        runs += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = Report {
        name: "recover",
        what: format!(
            "reopen (full recovery scan) of a {} log of {target} records of {SIZE} B, \
             {runs} times; raw: O_DIRECT 1 MiB sequential read of its segment files \
             (its rec/s: the log's records per read); latency is per reopen / per whole read",
            units::bytes(mib << 20)
        ),
        unit: "rec",
        rows: vec![sw, raw],
        ratios: Vec::new(),
    };
    r.ratio_mib("shardwal_open", "raw_direct_read");
    Ok(r)
}
