//! The `buffered` and `large` workloads: appends under
//! `FsyncPolicy::Never` against a `BufWriter<File>` and the device.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use glommio::LocalExecutor;
use shardwal::{FsyncPolicy, ShardConfig};

use super::measure::{Measure, Report};
use super::raw::direct_write_read;
use super::setup::{Scratch, err, lib, open_log, payload};
use crate::Fail;
use crate::output::units;

/// `buffered` and `large`: appends of `size` bytes under `Never`; every
/// `stride`-th append is timed.
pub(super) fn run(
    ex: &LocalExecutor,
    s: &Scratch,
    dur: Duration,
    name: &'static str,
    size: usize,
    stride: u64,
) -> Result<Report, Fail> {
    let p = payload(size);
    // shardwal
    let dir = s.sub(name)?;
    let cfg = ShardConfig {
        fsync: FsyncPolicy::Never,
        ..ShardConfig::default()
    };
    let log = open_log(ex, &dir, cfg)?;
    let mut sw = Measure::new("shardwal");
    ex.run(async {
        let start = Instant::now();
        let mut n = 0u64;
        'outer: loop {
            for _ in 0..1024 {
                if n.is_multiple_of(stride) {
                    let t0 = Instant::now();
                    log.append(&p).await?;
                    sw.record(t0.elapsed());
                } else {
                    log.append(&p).await?;
                }
                n += 1;
            }
            if start.elapsed() >= dur {
                break 'outer;
            }
        }
        log.sync().await?;
        sw.elapsed = start.elapsed();
        sw.ops = n;
        sw.bytes = n * size as u64;
        Ok::<(), shardwal::Error>(())
    })
    .map_err(lib)?;
    ex.run(log.close()).map_err(lib)?;
    let frame_bytes = sw.ops * shardwal::format::frame::frame_len(size) as u64;
    let _ = std::fs::remove_dir_all(&dir);

    // raw BufWriter
    let dir = s.sub(name)?;
    let path = dir.join("raw.log");
    let mut raw = Measure::new("raw_bufwriter");
    {
        let f = File::create(&path).map_err(|e| err(&path, e))?;
        let mut w = BufWriter::new(f);
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            for _ in 0..1024 {
                if n.is_multiple_of(stride) {
                    let t0 = Instant::now();
                    w.write_all(&p).map_err(|e| err(&path, e))?;
                    raw.record(t0.elapsed());
                } else {
                    w.write_all(&p).map_err(|e| err(&path, e))?;
                }
                n += 1;
            }
            if start.elapsed() >= dur {
                break;
            }
        }
        w.flush().map_err(|e| err(&path, e))?;
        w.get_ref().sync_data().map_err(|e| err(&path, e))?;
        raw.elapsed = start.elapsed();
        raw.ops = n;
        raw.bytes = n * size as u64;
    }
    let _ = std::fs::remove_file(&path);

    // The device: O_DIRECT sequential write and read of shardwal's bytes.
    let path = dir.join("direct.bin");
    let (dw, dr) = direct_write_read(&path, frame_bytes)?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = Report {
        name,
        what: format!(
            "{size} B appends, FsyncPolicy::Never, one sync at the end; \
             shardwal MiB/s counts payload bytes (frames add 40 B each); \
             O_DIRECT rows move shardwal's {} of frames in 1 MiB blocks",
            units::bytes(frame_bytes)
        ),
        unit: "rec",
        rows: vec![sw, raw, dw, dr],
        ratios: Vec::new(),
    };
    r.ratio_ops("shardwal", "raw_bufwriter");
    // Bandwidth against the device: shardwal's frame bytes per second.
    let sw_frames = frame_bytes as f64 / r.row("shardwal").elapsed.as_secs_f64().max(1e-9);
    let dev = r.row("raw_direct_write").mib_per_sec() * (1 << 20) as f64;
    r.ratios.push((
        "shardwal frame bytes / raw_direct_write MiB/s".into(),
        sw_frames / dev.max(1e-9),
    ));
    Ok(r)
}
