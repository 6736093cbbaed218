//! The `epoch` workload: the seal latency of a 2-shard runtime against
//! one raw 4 KiB write + fdatasync.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use shardwal::io::AlignedBuf;
use shardwal::{Runtime, RuntimeConfig};

use super::measure::{Measure, Report};
use super::setup::{Scratch, err, lib};
use crate::Fail;

/// `epoch`: seal latency of a 2-shard runtime against one raw fdatasync.
pub(super) fn run(s: &Scratch, dur: Duration) -> Result<Report, Fail> {
    let dir = s.sub("epoch")?;
    let cfg = RuntimeConfig {
        shards: Some(2),
        auto_barriers: true,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(&dir, cfg, |ctx| async move {
        while !ctx.is_shutting_down() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    })
    .map_err(lib)?;
    let c = rt.coordinator();
    // Warm up: the first epochs wait for the spare segments being prepared.
    for _ in 0..20 {
        c.advance_epoch().and_then(|t| t.wait()).map_err(lib)?;
    }
    let mut sw = Measure::new("shardwal_seal_2_shards");
    let start = Instant::now();
    while start.elapsed() < dur {
        let t0 = Instant::now();
        c.advance_epoch().and_then(|t| t.wait()).map_err(lib)?;
        sw.record(t0.elapsed());
        sw.ops += 1;
    }
    sw.elapsed = start.elapsed();
    rt.shutdown().map_err(lib)?;

    let block = {
        let mut b = AlignedBuf::zeroed(4096);
        b.fill(0x5a);
        b
    };
    let mut pre = Measure::new("raw_4k_fdatasync_prefilled");
    {
        const SPAN: u64 = 64 << 20;
        let path = dir.join("prefilled.bin");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| err(&path, e))?;
        let chunk = vec![0u8; 1 << 20];
        for k in 0..SPAN / (1 << 20) {
            f.write_all_at(&chunk, k << 20).map_err(|e| err(&path, e))?;
        }
        f.sync_all().map_err(|e| err(&path, e))?;
        let start = Instant::now();
        let mut off = 0;
        while start.elapsed() < dur {
            let t0 = Instant::now();
            f.write_all_at(&block, off).map_err(|e| err(&path, e))?;
            f.sync_data().map_err(|e| err(&path, e))?;
            pre.record(t0.elapsed());
            pre.ops += 1;
            off = (off + 4096) % SPAN;
        }
        pre.elapsed = start.elapsed();
        pre.bytes = pre.ops * 4096;
    }
    let mut app = Measure::new("raw_4k_fdatasync_append");
    {
        let path = dir.join("append.bin");
        let f = File::create(&path).map_err(|e| err(&path, e))?;
        let start = Instant::now();
        let mut off = 0;
        while start.elapsed() < dur {
            let t0 = Instant::now();
            f.write_all_at(&block, off).map_err(|e| err(&path, e))?;
            f.sync_data().map_err(|e| err(&path, e))?;
            app.record(t0.elapsed());
            app.ops += 1;
            off += 4096;
        }
        app.elapsed = start.elapsed();
        app.bytes = app.ops * 4096;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = Report {
        name: "epoch",
        what: "epoch seal: advance_epoch().wait() on 2 shards (auto barriers, idle logs: \
               barrier + fdatasync on each shard, acks); raw: one 4 KiB pwrite + fdatasync"
            .into(),
        unit: "op",
        rows: vec![sw, pre, app],
        ratios: Vec::new(),
    };
    r.ratio_p50("shardwal_seal_2_shards", "raw_4k_fdatasync_prefilled");
    r.ratio_p50("shardwal_seal_2_shards", "raw_4k_fdatasync_append");
    Ok(r)
}
