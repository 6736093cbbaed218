//! The `archive` workload: what archiving to an object store costs a
//! 2-shard runtime that appends at full speed (128 B records, default
//! `ShardConfig`, the runtime answering barriers, an epoch every 10 ms and
//! a checkpoint every 100 epochs, so the log truncates as it goes), and
//! how fast the archive restores.
//!
//! 1. Runs with archiving off and on, interleaved (`REPS` each, a fresh
//!    directory each): append throughput; with archiving on, the archive
//!    lag (sealed epoch minus archive watermark, sampled every 2 ms after
//!    the first second).
//! 2. After the last run with archiving on: `shardwal::restore` of its
//!    archive into a fresh directory (MiB/s downloaded and written), then
//!    `Runtime::start_replaying` on it: the time to the first replayed
//!    record.
//!
//! The archive is `--archive-url` (default: the local filesystem backend in
//! the scratch directory, on the same disk as the log); an S3 endpoint is
//! configured by the usual `AWS_*` variables.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shardwal::{ArchiveConfig, CoordinatorConfig, Runtime, RuntimeConfig};

use super::measure::{Measure, Report};
use super::setup::{Scratch, lib, payload};
use crate::Fail;

/// Interleaved runs with archiving off and on.
const REPS: usize = 3;
const EPOCH: Duration = Duration::from_millis(10);
/// Records appended between two yields.
const BATCH: usize = 256;

struct Run {
    records: u64,
    elapsed: Duration,
    /// Lag samples, in epochs (archiving on).
    lag: Vec<u64>,
}

fn one_run(
    dir: &std::path::Path,
    archive: Option<ArchiveConfig>,
    dur: Duration,
) -> Result<Run, Fail> {
    let appended = Arc::new(AtomicU64::new(0));
    let cfg = RuntimeConfig {
        shards: Some(2),
        auto_barriers: true,
        coordinator: CoordinatorConfig {
            epoch_interval: Some(EPOCH),
            checkpoint_every: Some(100),
            ..CoordinatorConfig::default()
        },
        archive,
        ..RuntimeConfig::default()
    };
    let a2 = appended.clone();
    let rt = Runtime::start(dir, cfg, move |ctx| {
        let appended = a2.clone();
        async move {
            let rec = payload(128);
            while !ctx.is_shutting_down() {
                for _ in 0..BATCH {
                    ctx.log().append(&rec).await?;
                }
                appended.fetch_add(BATCH as u64, Ordering::Relaxed);
                futures_lite::future::yield_now().await;
            }
            Ok(())
        }
    })
    .map_err(lib)?;
    let c = rt.coordinator();
    let start = Instant::now();
    let from = appended.load(Ordering::Relaxed);
    let mut lag = Vec::new();
    while start.elapsed() < dur {
        std::thread::sleep(Duration::from_millis(2));
        if start.elapsed() > Duration::from_secs(1)
            && let Some(a) = c.archived_epoch()
        {
            lag.push(c.sealed_epoch().0.saturating_sub(a.0));
        }
    }
    let records = appended.load(Ordering::Relaxed) - from;
    let elapsed = start.elapsed();
    if let Some(why) = c.archive_error() {
        return Err(Fail::new(
            crate::EXIT_ERROR,
            format!("bench: archive: {why}"),
        ));
    }
    rt.shutdown().map_err(lib)?;
    Ok(Run {
        records,
        elapsed,
        lag,
    })
}

fn median_run(runs: &mut [Run]) -> &Run {
    runs.sort_by(|a, b| {
        let ra = a.records as f64 / a.elapsed.as_secs_f64();
        let rb = b.records as f64 / b.elapsed.as_secs_f64();
        ra.total_cmp(&rb)
    });
    &runs[runs.len() / 2]
}

/// `archive`: append throughput with archiving off and on, archive lag,
/// restore throughput and time to the first replayed record.
pub(super) fn run(s: &Scratch, dur: Duration, url: Option<&str>) -> Result<Report, Fail> {
    let default_url = format!("file://{}", s.0.join("archive").display());
    let url = url.unwrap_or(&default_url);
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut last_archive = None;
    for rep in 0..REPS {
        let dir = s.sub(&format!("archive-off-{rep}"))?;
        off.push(one_run(&dir, None, dur)?);
        std::fs::remove_dir_all(&dir).map_err(|e| super::setup::err(&dir, e))?;
        let dir = s.sub(&format!("archive-on-{rep}"))?;
        let cfg = ArchiveConfig {
            prefix: object_store::path::Path::from(format!("bench/rep-{rep}")),
            ..ArchiveConfig::from_url(url).map_err(lib)?
        };
        on.push(one_run(&dir, Some(cfg.clone()), dur)?);
        std::fs::remove_dir_all(&dir).map_err(|e| super::setup::err(&dir, e))?;
        last_archive = Some(cfg);
    }
    let ratios_per_rep: Vec<f64> = off
        .iter()
        .zip(&on)
        .map(|(a, b)| {
            (b.records as f64 / b.elapsed.as_secs_f64())
                / (a.records as f64 / a.elapsed.as_secs_f64()).max(1e-9)
        })
        .collect();
    let mut lag_epochs: Vec<u64> = on.iter().flat_map(|r| r.lag.iter().copied()).collect();
    lag_epochs.sort_unstable();
    let q = |p: f64| -> f64 {
        if lag_epochs.is_empty() {
            return f64::NAN;
        }
        lag_epochs[((lag_epochs.len() - 1) as f64 * p).round() as usize] as f64
    };
    let (p50, p99, max) = (q(0.5), q(0.99), q(1.0));
    let m_off = median_run(&mut off);
    let mut row_off = Measure::new("appends_archive_off");
    row_off.ops = m_off.records;
    row_off.bytes = m_off.records * 128;
    row_off.elapsed = m_off.elapsed;
    let m_on = median_run(&mut on);
    let mut row_on = Measure::new("appends_archive_on");
    row_on.ops = m_on.records;
    row_on.bytes = m_on.records * 128;
    row_on.elapsed = m_on.elapsed;
    let mut row_lag = Measure::new("archive_lag_x_10ms");
    for l in on.iter().flat_map(|r| r.lag.iter()) {
        row_lag.record(EPOCH * (*l as u32));
        row_lag.ops += 1;
    }
    row_lag.elapsed = dur * REPS as u32;

    // Restore the last archive, then start on it.
    let cfg = last_archive.ok_or_else(|| Fail::new(crate::EXIT_ERROR, "bench: no archive"))?;
    let rdir = s.0.join("restored");
    let t0 = Instant::now();
    let r = shardwal::restore(
        cfg.store.clone(),
        &cfg.prefix,
        &rdir,
        &shardwal::RestoreOptions::default(),
    )
    .map_err(lib)?;
    let mut row_restore = Measure::new("restore");
    row_restore.ops = r.objects as u64;
    row_restore.bytes = r.bytes;
    row_restore.elapsed = t0.elapsed();
    row_restore.record(row_restore.elapsed);
    let first = Arc::new(AtomicU64::new(0));
    let base = Instant::now();
    let f2 = first.clone();
    let rt = Runtime::start_replaying(
        &rdir,
        RuntimeConfig {
            shards: Some(2),
            ..RuntimeConfig::default()
        },
        move |mut replay| {
            let first = f2.clone();
            async move {
                let mut n = 0u64;
                while replay.next().await?.is_some() {
                    if n == 0 {
                        first.store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    }
                    n += 1;
                }
                Ok(n)
            }
        },
        |ctx, _n| async move {
            let _ = ctx;
            Ok(())
        },
    )
    .map_err(lib)?;
    rt.shutdown().map_err(lib)?;
    let mut row_first = Measure::new("restored_start_to_first_record");
    row_first.ops = 1;
    row_first.elapsed = Duration::from_nanos(first.load(Ordering::Relaxed));
    row_first.record(row_first.elapsed);

    let mut rep = Report {
        name: "archive",
        what: format!(
            "2-shard runtime, 128 B appends at full speed, 10 ms epochs, checkpoint every 100; \
             archiving to {url}: {REPS} interleaved runs each way (median shown); then restore \
             of the last archive ({} objects) and a start on it",
            r.objects
        ),
        unit: "rec",
        rows: vec![row_off, row_on, row_lag, row_restore, row_first],
        ratios: Vec::new(),
    };
    rep.ratio_ops("appends_archive_on", "appends_archive_off");
    for (i, v) in ratios_per_rep.iter().enumerate() {
        rep.ratios
            .push((format!("archive on / off throughput, rep {}", i + 1), *v));
    }
    rep.ratios.push(("archive lag p50, epochs".into(), p50));
    rep.ratios.push(("archive lag p99, epochs".into(), p99));
    rep.ratios.push(("archive lag max, epochs".into(), max));
    Ok(rep)
}
