//! The `replay` workload: a restart of a 2-shard runtime on a log of
//! `--replay-mib` MiB, from the start call until both engines have replayed
//! every record, cold (page cache dropped before each run when allowed), in
//! interleaved repetitions of:
//!
//! - `one_pass`: `Runtime::start_replaying` (the engines replay while the
//!   recovery scan reads the log);
//! - `two_pass`: `Runtime::start`, then `ShardContext::replay` (the scan
//!   reads the log, then the replay reads it again);
//! - `raw_direct_read`: two threads reading the two shards' segment files
//!   with O_DIRECT, 1 MiB sequential reads (the device's read speed for the
//!   same bytes, same run).
//!
//! It also reports the time to the first replayed record of the one-pass
//! start, and the peak RSS of each start (the process's high-water mark,
//! reset before it).
//!
//! And the `segments` workload: one shard's log of `--replay-mib / 2` MiB
//! written once with 1 MiB segments and once with 64 MiB segments, reopened
//! with the one-pass `ShardLog::open_replaying`, interleaved: start-up cost
//! should follow the bytes, not the number of files.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use glommio::LocalExecutor;
use shardwal::{
    CoordinatorConfig, DmaStorage, RecordKind, Runtime, RuntimeConfig, SegmentPrepare, ShardConfig,
    ShardContext, ShardId, ShardLog,
};

use super::measure::{Measure, Report};
use super::raw::direct_read_into;
use super::setup::{Scratch, err, lib, payload};
use crate::Fail;
use crate::output::units;

/// Payload bytes per record.
const RECORD: usize = 256;
/// Repetitions of each way of restarting.
const REPS: usize = 3;

fn runtime_config() -> RuntimeConfig {
    RuntimeConfig {
        shards: Some(2),
        auto_barriers: true,
        coordinator: CoordinatorConfig {
            epoch_interval: Some(Duration::from_millis(10)),
            ..CoordinatorConfig::default()
        },
        ..RuntimeConfig::default()
    }
}

/// Write about `mib` MiB over 2 shards with 10 ms epochs.
fn write_log(dir: &Path, mib: u64) -> Result<(), Fail> {
    let per_shard = (mib << 20) / 2;
    let done = Arc::new(AtomicU64::new(0));
    let d2 = done.clone();
    let rt = Runtime::start(dir, runtime_config(), move |ctx| {
        let done = d2.clone();
        async move {
            let p = payload(RECORD);
            let log = ctx.log().clone();
            let mut bytes = 0u64;
            while bytes < per_shard && !ctx.is_shutting_down() {
                for _ in 0..256 {
                    log.append(&p).await?;
                }
                bytes += 256 * shardwal::format::frame::frame_len(RECORD) as u64;
                futures_lite::future::yield_now().await;
            }
            log.sync().await?;
            done.fetch_add(1, Ordering::AcqRel);
            Ok(())
        }
    })
    .map_err(lib)?;
    while done.load(Ordering::Acquire) < 2 {
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.shutdown().map_err(lib)
}

/// Reset the process's peak RSS to its current RSS (Linux `clear_refs` 5)
/// and return that RSS, in bytes.
fn reset_peak_rss() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_bytes("VmRSS:")
}

/// A `/proc/self/status` figure in bytes (`VmHWM:`: the peak RSS since the
/// last reset).
fn status_bytes(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb << 10)
}

/// The peak RSS since the reset that returned `base`, above `base`.
fn peak_rss_above(base: u64) -> u64 {
    status_bytes("VmHWM:").saturating_sub(base)
}

fn drop_caches() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

/// One restart's figures.
struct Run {
    took: Duration,
    records: u64,
    bytes: u64,
    first: Option<Duration>,
    rss: u64,
}

/// What an engine's replay reports: records, payload bytes, the time of
/// its first record (ns since the start call), and where its records came
/// from.
type Tally = (u64, u64, Option<u64>, shardwal::ReplayCounts);

/// `replay_buffer`: `RuntimeConfig::replay_buffer` in bytes (`None`: its
/// default).
fn one_pass(dir: &Path, replay_buffer: Option<usize>) -> Result<Run, Fail> {
    let mut cfg = runtime_config();
    if let Some(b) = replay_buffer {
        cfg.replay_buffer = b;
    }
    let (tx, rx) = mpsc::channel::<shardwal::Result<Tally>>();
    let rss_base = reset_peak_rss();
    let t0 = Instant::now();
    let base = t0;
    let rt = Runtime::start_replaying(
        dir,
        cfg,
        move |mut r| {
            let tx = tx.clone();
            async move {
                let (mut n, mut bytes, mut first) = (0u64, 0u64, None);
                let ended = loop {
                    match r.next().await {
                        Ok(Some(rec)) => {
                            if first.is_none() {
                                first = Some(base.elapsed().as_nanos() as u64);
                            }
                            if rec.kind == RecordKind::Data {
                                n += 1;
                                bytes += rec.payload.len() as u64;
                            }
                        }
                        Ok(None) => break Ok((n, bytes, first, r.counts())),
                        Err(e) => break Err(e),
                    }
                };
                // The driver hears of a failure too, instead of waiting.
                let _ = tx.send(ended);
                Ok(())
            }
        },
        |_ctx, ()| async { Ok(()) },
    )
    .map_err(lib)?;
    let tallies = tallies_of(&rx);
    let took = t0.elapsed();
    let rss = peak_rss_above(rss_base);
    rt.shutdown().map_err(lib)?;
    let tallies = tallies?;
    let c = tallies.iter().fold((0, 0, 0), |a, t| {
        (
            a.0 + t.3.from_scan,
            a.1 + t.3.before_cut,
            a.2 + t.3.from_log,
        )
    });
    eprintln!(
        "one pass: {} records from the scan ({} before the cut was known), {} read again",
        c.0, c.1, c.2
    );
    Ok(Run {
        took,
        records: tallies.iter().map(|t| t.0).sum(),
        bytes: tallies.iter().map(|t| t.1).sum(),
        first: tallies
            .iter()
            .filter_map(|t| t.2)
            .min()
            .map(Duration::from_nanos),
        rss,
    })
}

async fn replay_after_start(ctx: Rc<ShardContext<DmaStorage>>) -> shardwal::Result<(u64, u64)> {
    let mut r = ctx.replay().await?;
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(rec) = r.next().await? {
        if rec.kind == RecordKind::Data {
            n += 1;
            bytes += rec.payload.len() as u64;
        }
    }
    Ok((n, bytes))
}

fn two_pass(dir: &Path) -> Result<Run, Fail> {
    let (tx, rx) = mpsc::channel::<shardwal::Result<(u64, u64)>>();
    let rss_base = reset_peak_rss();
    let t0 = Instant::now();
    let rt = Runtime::start(dir, runtime_config(), move |ctx| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(replay_after_start(ctx).await);
            Ok(())
        }
    })
    .map_err(lib)?;
    let tallies = tallies_of(&rx);
    let took = t0.elapsed();
    let rss = peak_rss_above(rss_base);
    rt.shutdown().map_err(lib)?;
    let tallies = tallies?;
    Ok(Run {
        took,
        records: tallies.iter().map(|t| t.0).sum(),
        bytes: tallies.iter().map(|t| t.1).sum(),
        first: None,
        rss,
    })
}

/// Both engines' results (the first failure, if one failed).
fn tallies_of<T>(rx: &mpsc::Receiver<shardwal::Result<T>>) -> Result<Vec<T>, Fail> {
    (0..2)
        .map(|_| match rx.recv() {
            Ok(r) => r.map_err(lib),
            Err(_) => Err(Fail::new(
                crate::EXIT_ERROR,
                "an engine stopped before replaying",
            )),
        })
        .collect()
}

fn segment_files(dir: &Path) -> Result<Vec<PathBuf>, Fail> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    Ok(files)
}

/// Two threads, one per shard, read its segment files with O_DIRECT.
fn raw_read(dir: &Path) -> Result<(Duration, u64), Fail> {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..2u32)
        .map(|s| {
            let d = shardwal::segment::shard_dir(dir, ShardId(s));
            std::thread::spawn(move || -> Result<u64, Fail> {
                let mut m = Measure::new("raw_direct_read");
                for f in segment_files(&d)? {
                    direct_read_into(&f, &mut m)?;
                }
                Ok(m.bytes)
            })
        })
        .collect();
    let mut bytes = 0;
    for h in handles {
        bytes += h
            .join()
            .map_err(|_| Fail::new(crate::EXIT_ERROR, "a raw reader panicked"))??;
    }
    Ok((t0.elapsed(), bytes))
}

fn add(m: &mut Measure, r: &Run) {
    m.record(r.took);
    m.elapsed += r.took;
    m.ops += r.records;
    m.bytes += r.bytes;
}

/// `replay`: see the module docs. `replay_buffer_mib`: the one-pass
/// start's `RuntimeConfig::replay_buffer` (`None`: its default).
pub(super) fn run(s: &Scratch, mib: u64, replay_buffer_mib: Option<u64>) -> Result<Report, Fail> {
    let replay_buffer = replay_buffer_mib.map(|m| (m << 20) as usize);
    let dir = s.sub("replay")?;
    write_log(&dir, mib)?;
    let mut one = Measure::new("one_pass");
    let mut two = Measure::new("two_pass");
    let mut raw = Measure::new("raw_direct_read");
    let mut first = Measure::new("one_pass_first_record");
    let mut rss = (Vec::new(), Vec::new());
    for _ in 0..REPS {
        drop_caches();
        let r = one_pass(&dir, replay_buffer)?;
        add(&mut one, &r);
        if let Some(f) = r.first {
            first.record(f);
            first.elapsed += f;
            first.ops += 1;
        }
        rss.0.push(r.rss);
        drop_caches();
        let r = two_pass(&dir)?;
        add(&mut two, &r);
        rss.1.push(r.rss);
        drop_caches();
        let (took, bytes) = raw_read(&dir)?;
        raw.record(took);
        raw.elapsed += took;
        raw.bytes += bytes;
        raw.ops += r.records;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let max = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
    let mut r = Report {
        name: "replay",
        what: format!(
            "restart of a 2-shard runtime on a {} log of {RECORD} B records in 10 ms epochs, \
             until both engines replayed every record, cold, {REPS} interleaved times: \
             one pass (start_replaying) / two passes (start, then ShardContext::replay) / \
             raw O_DIRECT 1 MiB reads of the same segment files, one thread per shard \
             (its MiB/s: file bytes; the others: payload bytes); latency is per restart; \
             first record of the one-pass start: p50 {}; peak RSS above the process's RSS before the start: one pass {}, two passes {}; \
             one-pass replay buffer: {}",
            units::bytes(mib << 20),
            units::duration(Duration::from_nanos(if first.hist.is_empty() {
                0
            } else {
                first.hist.value_at_quantile(0.5)
            })),
            units::bytes(max(&rss.0)),
            units::bytes(max(&rss.1)),
            replay_buffer.map_or_else(
                || format!(
                    "{} (default)",
                    units::bytes(RuntimeConfig::default().replay_buffer as u64)
                ),
                |b| units::bytes(b as u64)
            ),
        ),
        unit: "rec",
        rows: vec![one, two, raw, first],
        ratios: Vec::new(),
    };
    r.ratio_p50("two_pass", "one_pass");
    r.ratio_p50("raw_direct_read", "one_pass");
    r.ratio_p50("raw_direct_read", "two_pass");
    r.ratios.push((
        "one_pass_peak_rss_mib".into(),
        max(&rss.0) as f64 / (1 << 20) as f64,
    ));
    r.ratios.push((
        "two_pass_peak_rss_mib".into(),
        max(&rss.1) as f64 / (1 << 20) as f64,
    ));
    Ok(r)
}

/// The `segments` workload's shard: `segment_size` segments, no spare
/// segment prepared (so both layouts hold the same bytes), and a record
/// bound that fits a 1 MiB segment (the default one does not).
fn segments_config(segment_size: u64) -> ShardConfig {
    ShardConfig {
        segment_size,
        prepare: SegmentPrepare::Create,
        max_record_size: 64 << 10,
        ..ShardConfig::default()
    }
}

/// Write one shard of `bytes` bytes with `segment_size` segments.
fn write_shard(ex: &LocalExecutor, dir: &Path, segment_size: u64, bytes: u64) -> Result<(), Fail> {
    let cfg = segments_config(segment_size);
    let p = payload(RECORD);
    let n = bytes / shardwal::format::frame::frame_len(RECORD) as u64;
    ex.run(async {
        let log = ShardLog::open(DmaStorage, dir, ShardId(0), cfg).await?;
        for _ in 0..n {
            log.append(&p).await?;
        }
        log.close().await
    })
    .map_err(lib)
}

fn reopen(ex: &LocalExecutor, dir: &Path, segment_size: u64) -> Result<Run, Fail> {
    let cfg = segments_config(segment_size);
    let t0 = Instant::now();
    let (n, bytes) = ex
        .run(async {
            let (mut n, mut bytes) = (0u64, 0u64);
            let log = ShardLog::open_replaying(DmaStorage, dir, ShardId(0), cfg, |rec| {
                if rec.kind == RecordKind::Data {
                    n += 1;
                    bytes += rec.payload.len() as u64;
                }
                Ok(())
            })
            .await?;
            log.close().await?;
            Ok::<_, shardwal::Error>((n, bytes))
        })
        .map_err(lib)?;
    Ok(Run {
        took: t0.elapsed(),
        records: n,
        bytes,
        first: None,
        rss: 0,
    })
}

/// `segments`: see the module docs.
pub(super) fn run_segments(ex: &LocalExecutor, s: &Scratch, mib: u64) -> Result<Report, Fail> {
    const SMALL: u64 = 1 << 20;
    const LARGE: u64 = 64 << 20;
    let bytes = (mib << 20) / 2;
    let small_dir = s.sub("segments-small")?;
    let large_dir = s.sub("segments-large")?;
    write_shard(ex, &small_dir, SMALL, bytes)?;
    write_shard(ex, &large_dir, LARGE, bytes)?;
    let count = |d: &Path| {
        segment_files(&shardwal::segment::shard_dir(d, ShardId(0))).map_or(0, |v| v.len())
    };
    let (n_small, n_large) = (count(&small_dir), count(&large_dir));
    let mut small = Measure::new("small_segments");
    let mut large = Measure::new("large_segments");
    for _ in 0..REPS {
        drop_caches();
        add(&mut small, &reopen(ex, &small_dir, SMALL)?);
        drop_caches();
        add(&mut large, &reopen(ex, &large_dir, LARGE)?);
    }
    let _ = std::fs::remove_dir_all(&small_dir);
    let _ = std::fs::remove_dir_all(&large_dir);
    let mut r = Report {
        name: "segments",
        what: format!(
            "one-pass reopen (ShardLog::open_replaying) of one shard's {} log of {RECORD} B \
             records, in {n_small} segments of 1 MiB and in {n_large} of 64 MiB, cold, \
             {REPS} interleaved times; latency is per reopen",
            units::bytes(bytes),
        ),
        unit: "rec",
        rows: vec![small, large],
        ratios: Vec::new(),
    };
    r.ratio_p50("small_segments", "large_segments");
    Ok(r)
}
