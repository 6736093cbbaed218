//! The `sync` workload: one record at a time, each made durable.

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use glommio::LocalExecutor;
use shardwal::{FsyncPolicy, ShardConfig};

use super::measure::{Measure, Report};
use super::setup::{Scratch, err, lib, open_log, payload};
use crate::Fail;

/// `sync`: 1 KiB records made durable one at a time.
pub(super) fn run(ex: &LocalExecutor, s: &Scratch, dur: Duration) -> Result<Report, Fail> {
    const SIZE: usize = 1024;
    let p = payload(SIZE);
    let dir = s.sub("sync")?;
    let cfg = ShardConfig {
        fsync: FsyncPolicy::EveryAppend,
        ..ShardConfig::default()
    };
    let log = open_log(ex, &dir, cfg)?;
    let mut sw = Measure::new("shardwal");
    ex.run(async {
        let start = Instant::now();
        while start.elapsed() < dur {
            let t0 = Instant::now();
            let lsn = log.append(&p).await?;
            log.wait_durable(lsn).await?;
            sw.record(t0.elapsed());
            sw.ops += 1;
        }
        sw.elapsed = start.elapsed();
        sw.bytes = sw.ops * SIZE as u64;
        Ok::<(), shardwal::Error>(())
    })
    .map_err(lib)?;
    ex.run(log.close()).map_err(lib)?;

    let path = dir.join("raw.log");
    let mut raw = Measure::new("raw_write_fdatasync");
    {
        let mut f = File::create(&path).map_err(|e| err(&path, e))?;
        let start = Instant::now();
        while start.elapsed() < dur {
            let t0 = Instant::now();
            f.write_all(&p).map_err(|e| err(&path, e))?;
            f.sync_data().map_err(|e| err(&path, e))?;
            raw.record(t0.elapsed());
            raw.ops += 1;
        }
        raw.elapsed = start.elapsed();
        raw.bytes = raw.ops * SIZE as u64;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = Report {
        name: "sync",
        what: "1 KiB records, each made durable before the next (shardwal: EveryAppend, \
               append + wait_durable; raw: write + fdatasync on a growing file)"
            .into(),
        unit: "rec",
        rows: vec![sw, raw],
        ratios: Vec::new(),
    };
    r.ratio_ops("shardwal", "raw_write_fdatasync");
    r.ratio_p50("shardwal", "raw_write_fdatasync");
    Ok(r)
}
