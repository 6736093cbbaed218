//! `shardwal bench`: the macro-benchmark. Each workload measures shardwal
//! and, in the same run on the same disk, a raw baseline, and prints
//! throughput and latency percentiles (hdrhistogram, nanosecond precision)
//! and their ratios. Figures on a shared machine vary between runs: compare
//! within one run.
//!
//! | workload | shardwal | baseline |
//! |---|---|---|
//! | `buffered` | 128 B `append` under `FsyncPolicy::Never`, one `sync` at the end | `BufWriter<File>` `write_all`, `sync_data` at the end; O_DIRECT sequential write and read of as many bytes as shardwal wrote |
//! | `group` | 64 tasks, each `append` + `wait_durable`, under `EveryAppend` (group commit) | 64 × `write_all` 128 B, `flush`, `sync_data` per group |
//! | `sync` | one 1 KiB `append` + `wait_durable` at a time, `EveryAppend` | `write_all` 1 KiB + `flush` + `sync_data` |
//! | `large` | 4 KiB appends, `Never` | as `buffered`, 4 KiB |
//! | `recover` | `ShardLog::open` (full recovery scan) of a log of `--recover-mib` MiB of 128 B records written by the run | O_DIRECT sequential read of the same segment files |
//! | `epoch` | seal latency: `advance_epoch().wait()` on a 2-shard `Runtime` (auto barriers, default 50 µs control poll) | one 4 KiB `pwrite` + `sync_data`, on a prefilled file and on a growing one |
//!
//! Latency is per operation: per append (`buffered`, `large`: every 16th
//! append is timed, to keep the clock's cost out of the throughput), per
//! record from append to durable (`group`, `sync`), per reopen (`recover`),
//! per seal (`epoch`). shardwal runs on one glommio executor
//! (`io_memory` 2 MiB, unpinned) with `DmaStorage` (O_DIRECT, io_uring).
//! Each measurement runs for `--seconds`.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use shardwal::io::AlignedBuf;
use shardwal::{
    DmaStorage, FsyncPolicy, Runtime, RuntimeConfig, SegmentPrepare, ShardConfig, ShardId, ShardLog,
};

use crate::json::Json;
use crate::table::{self, Table};
use crate::{CmdResult, EXIT_ERROR, EXIT_OK, Fail};

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The workload to run.
    #[arg(long, value_enum, default_value_t = Workload::All)]
    workload: Workload,
    /// Seconds per measurement (each system of each workload).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Where to write the benchmark's files (a fresh subdirectory is made
    /// and removed afterwards). Default: the system's temp directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Size of the log the `recover` workload writes and reopens, in MiB.
    #[arg(long, default_value_t = 256)]
    recover_mib: u64,
}

/// A benchmark workload.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// 128 B appends, no fsync until the end.
    Buffered,
    /// 64 concurrent appenders, each record durable (group commit).
    Group,
    /// 1 KiB records, each made durable before the next.
    Sync,
    /// 4 KiB appends, no fsync until the end.
    Large,
    /// Reopening (recovering) a log written by the run.
    Recover,
    /// Epoch seal latency on a 2-shard runtime.
    Epoch,
    /// Every workload, in this order.
    All,
}

const ALL: [Workload; 6] = [
    Workload::Buffered,
    Workload::Group,
    Workload::Sync,
    Workload::Large,
    Workload::Recover,
    Workload::Epoch,
];

/// One system's measurement in a workload.
struct Measure {
    system: &'static str,
    ops: u64,
    /// Payload bytes (or raw bytes) moved.
    bytes: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
}

impl Measure {
    fn new(system: &'static str) -> Measure {
        Measure {
            system,
            ops: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds"),
        }
    }

    fn record(&mut self, d: Duration) {
        self.hist.saturating_record(d.as_nanos().max(1) as u64);
    }

    fn record_n(&mut self, d: Duration, n: u64) {
        let v = d.as_nanos().max(1) as u64;
        let _ = self.hist.record_n(v, n);
    }

    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn q(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.value_at_quantile(q) as f64
        }
    }
}

/// A workload's results.
struct Report {
    name: &'static str,
    what: String,
    unit: &'static str,
    rows: Vec<Measure>,
    /// (name, value): throughput and latency ratios.
    ratios: Vec<(String, f64)>,
}

impl Report {
    fn row(&self, system: &str) -> &Measure {
        self.rows
            .iter()
            .find(|m| m.system == system)
            .expect("measured system")
    }

    fn ratio_ops(&mut self, a: &str, b: &str) {
        let v = self.row(a).ops_per_sec() / self.row(b).ops_per_sec().max(1e-9);
        self.ratios.push((format!("{a} / {b} throughput"), v));
    }

    fn ratio_mib(&mut self, a: &str, b: &str) {
        let v = self.row(a).mib_per_sec() / self.row(b).mib_per_sec().max(1e-9);
        self.ratios.push((format!("{a} / {b} MiB/s"), v));
    }

    fn ratio_p50(&mut self, a: &str, b: &str) {
        let v = self.row(a).q(0.5) / self.row(b).q(0.5).max(1.0);
        self.ratios.push((format!("{a} / {b} p50 latency"), v));
    }

    fn json(&self) -> Json {
        let rows: Vec<Json> = self
            .rows
            .iter()
            .map(|m| {
                Json::obj()
                    .set("system", m.system)
                    .set("ops", m.ops)
                    .set("bytes", m.bytes)
                    .set("seconds", m.elapsed.as_secs_f64())
                    .set("ops_per_sec", m.ops_per_sec())
                    .set("mib_per_sec", m.mib_per_sec())
                    .set("samples", m.hist.len())
                    .set("p50_us", m.q(0.5) / 1e3)
                    .set("p99_us", m.q(0.99) / 1e3)
                    .set("p999_us", m.q(0.999) / 1e3)
                    .set("max_us", m.hist.max() as f64 / 1e3)
            })
            .collect();
        let mut ratios = Json::obj();
        for (k, v) in &self.ratios {
            ratios.push(k, *v);
        }
        Json::obj()
            .set("workload", self.name)
            .set("description", self.what.as_str())
            .set("unit", self.unit)
            .set("results", rows)
            .set("ratios", ratios)
    }

    fn print(&self) {
        println!("== {}: {}", self.name, self.what);
        let mut t = Table::new(&[
            "system",
            ">ops",
            &format!(">{}/s", self.unit),
            ">MiB/s",
            ">p50",
            ">p99",
            ">p99.9",
            ">max",
        ]);
        for m in &self.rows {
            t.row(vec![
                m.system.to_string(),
                m.ops.to_string(),
                table::rate(m.ops_per_sec()),
                format!("{:.1}", m.mib_per_sec()),
                table::nanos(m.q(0.5)),
                table::nanos(m.q(0.99)),
                table::nanos(m.q(0.999)),
                table::nanos(m.hist.max() as f64),
            ]);
        }
        print!("{}", t.render("  "));
        for (k, v) in &self.ratios {
            println!("  ratio {k}: {v:.2}");
        }
        println!();
    }
}

/// The benchmark's scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Scratch {
    /// A fresh, empty subdirectory `name` (removed first if it exists).
    fn sub(&self, name: &str) -> Result<PathBuf, Fail> {
        let p = self.0.join(name);
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| err(&p, e))?;
        Ok(p)
    }
}

fn err(p: &Path, e: impl std::fmt::Display) -> Fail {
    Fail::new(EXIT_ERROR, format!("bench: {}: {e}", p.display()))
}

fn lib(e: shardwal::Error) -> Fail {
    Fail::new(EXIT_ERROR, format!("bench: {e}"))
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + 7) as u8).collect()
}

/// Run `bench`.
pub fn run(a: &Args, json: bool) -> CmdResult {
    if !(a.seconds > 0.0 && a.seconds <= 3600.0) {
        return Err(Fail::new(EXIT_ERROR, "--seconds must be in (0, 3600]"));
    }
    let base = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let root = base.join(format!("shardwal-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| err(&root, e))?;
    let root = root.canonicalize().map_err(|e| err(&root, e))?;
    let scratch = Scratch(root);
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(2 << 20)
        .name("shardwal-bench")
        .make()
        .map_err(|e| Fail::new(EXIT_ERROR, format!("bench: glommio executor: {e}")))?;
    let dur = Duration::from_secs_f64(a.seconds);
    let list: Vec<Workload> = if a.workload == Workload::All {
        ALL.to_vec()
    } else {
        vec![a.workload]
    };
    if !json {
        println!(
            "shardwal bench: {} s per measurement, files in {}",
            a.seconds,
            scratch.0.display()
        );
        println!();
    }
    for w in list {
        let r = match w {
            Workload::Buffered => appends(&ex, &scratch, dur, "buffered", 128, 16)?,
            Workload::Large => appends(&ex, &scratch, dur, "large", 4096, 1)?,
            Workload::Group => group(&ex, &scratch, dur)?,
            Workload::Sync => sync_each(&ex, &scratch, dur)?,
            Workload::Recover => recover(&ex, &scratch, dur, a.recover_mib)?,
            Workload::Epoch => epoch(&scratch, dur)?,
            Workload::All => unreachable!("expanded above"),
        };
        if json {
            println!("{}", r.json());
        } else {
            r.print();
        }
    }
    Ok(EXIT_OK)
}

fn open_log(
    ex: &LocalExecutor,
    dir: &Path,
    cfg: ShardConfig,
) -> Result<ShardLog<DmaStorage>, Fail> {
    ex.run(ShardLog::open(DmaStorage, dir, ShardId(0), cfg))
        .map_err(lib)
}

/// `buffered` and `large`: appends of `size` bytes under `Never`; every
/// `stride`-th append is timed.
fn appends(
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
            table::bytes(frame_bytes)
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

/// O_DIRECT sequential write of `total` bytes (rounded up to 1 MiB blocks)
/// then fdatasync, and a sequential O_DIRECT read of the file; each timed
/// per 1 MiB block.
fn direct_write_read(path: &Path, total: u64) -> Result<(Measure, Measure), Fail> {
    const B: usize = 1 << 20;
    let blocks = total.div_ceil(B as u64).max(1);
    let mut buf = AlignedBuf::zeroed(B);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i * 13 + 1) as u8;
    }
    let mut w = Measure::new("raw_direct_write");
    {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .map_err(|e| err(path, e))?;
        let start = Instant::now();
        for k in 0..blocks {
            let t0 = Instant::now();
            f.write_all_at(&buf, k * B as u64)
                .map_err(|e| err(path, e))?;
            w.record(t0.elapsed());
        }
        f.sync_data().map_err(|e| err(path, e))?;
        w.elapsed = start.elapsed();
        w.ops = blocks;
        w.bytes = blocks * B as u64;
    }
    let r = direct_read(path, "raw_direct_read")?;
    Ok((w, r))
}

/// Sequential O_DIRECT read of a file in 1 MiB blocks (one op per block).
fn direct_read(path: &Path, system: &'static str) -> Result<Measure, Fail> {
    let mut m = Measure::new(system);
    direct_read_into(path, &mut m)?;
    Ok(m)
}

fn direct_read_into(path: &Path, m: &mut Measure) -> Result<(), Fail> {
    const B: usize = 1 << 20;
    let mut buf = AlignedBuf::zeroed(B);
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| err(path, e))?;
    let start = Instant::now();
    let mut off = 0u64;
    loop {
        let t0 = Instant::now();
        let n = f.read_at(&mut buf, off).map_err(|e| err(path, e))?;
        if n == 0 {
            break;
        }
        m.record(t0.elapsed());
        m.ops += 1;
        m.bytes += n as u64;
        off += n as u64;
        if n < B {
            break;
        }
    }
    m.elapsed += start.elapsed();
    Ok(())
}

/// `group`: 64 concurrent appenders, each record durable, under `EveryAppend`.
fn group(ex: &LocalExecutor, s: &Scratch, dur: Duration) -> Result<Report, Fail> {
    const GROUP: u64 = 64;
    const SIZE: usize = 128;
    let p = payload(SIZE);
    let dir = s.sub("group")?;
    let cfg = ShardConfig {
        fsync: FsyncPolicy::EveryAppend,
        ..ShardConfig::default()
    };
    let log = open_log(ex, &dir, cfg)?;
    let sw = Rc::new(RefCell::new(Measure::new("shardwal")));
    ex.run(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..GROUP)
            .map(|_| {
                let (log, sw, p) = (log.clone(), sw.clone(), p.clone());
                glommio::spawn_local(async move {
                    while start.elapsed() < dur {
                        let t0 = Instant::now();
                        let lsn = log.append(&p).await?;
                        log.wait_durable(lsn).await?;
                        let mut m = sw.borrow_mut();
                        m.record(t0.elapsed());
                        m.ops += 1;
                    }
                    Ok::<(), shardwal::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
        let mut m = sw.borrow_mut();
        m.elapsed = start.elapsed();
        m.bytes = m.ops * SIZE as u64;
        Ok::<(), shardwal::Error>(())
    })
    .map_err(lib)?;
    ex.run(log.close()).map_err(lib)?;
    let sw = Rc::try_unwrap(sw)
        .ok()
        .expect("tasks finished")
        .into_inner();

    let path = dir.join("raw.log");
    let mut raw = Measure::new("raw_bufwriter_sync_per_64");
    {
        let f = File::create(&path).map_err(|e| err(&path, e))?;
        let mut w = BufWriter::new(f);
        let start = Instant::now();
        while start.elapsed() < dur {
            let t0 = Instant::now();
            for _ in 0..GROUP {
                w.write_all(&p).map_err(|e| err(&path, e))?;
            }
            w.flush().map_err(|e| err(&path, e))?;
            w.get_ref().sync_data().map_err(|e| err(&path, e))?;
            // Every record of the group waited for the whole group.
            raw.record_n(t0.elapsed(), GROUP);
            raw.ops += GROUP;
        }
        raw.elapsed = start.elapsed();
        raw.bytes = raw.ops * SIZE as u64;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = Report {
        name: "group",
        what: "128 B records, each durable: shardwal 64 concurrent appenders under \
               EveryAppend (append + wait_durable); raw: 64 writes then flush + fdatasync; \
               latency is append-to-durable per record"
            .into(),
        unit: "rec",
        rows: vec![sw, raw],
        ratios: Vec::new(),
    };
    r.ratio_ops("shardwal", "raw_bufwriter_sync_per_64");
    r.ratio_p50("shardwal", "raw_bufwriter_sync_per_64");
    Ok(r)
}

/// `sync`: 1 KiB records made durable one at a time.
fn sync_each(ex: &LocalExecutor, s: &Scratch, dur: Duration) -> Result<Report, Fail> {
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

/// `recover`: write a log of `mib` MiB, then time reopening it (the full
/// recovery scan) against an O_DIRECT read of its segment files.
fn recover(ex: &LocalExecutor, s: &Scratch, dur: Duration, mib: u64) -> Result<Report, Fail> {
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
            table::bytes(mib << 20)
        ),
        unit: "rec",
        rows: vec![sw, raw],
        ratios: Vec::new(),
    };
    r.ratio_mib("shardwal_open", "raw_direct_read");
    Ok(r)
}

/// `epoch`: seal latency of a 2-shard runtime against one raw fdatasync.
fn epoch(s: &Scratch, dur: Duration) -> Result<Report, Fail> {
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
