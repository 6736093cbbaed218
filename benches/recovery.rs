//! Recovery throughput, next to raw sequential reads of the same files in
//! the same run, and the peak memory of a merged replay.
//!
//! ```sh
//! cargo bench --bench recovery                          # 1 GiB log, 3 runs each
//! SHARDWAL_BENCH_GIB=4 SHARDWAL_BENCH_RUNS=5 cargo bench --bench recovery
//! SHARDWAL_BENCH_DIR=/mnt/nvme cargo bench --bench recovery   # where the log goes
//! SHARDWAL_BENCH_LOG_DIR=/tmp/rlog cargo bench --bench recovery # keep the log, reuse it next time
//! ```
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs once on a
//! 64 MiB log as a smoke test.
//!
//! 1. **The log.** A 2-shard runtime (pinned, `FsyncPolicy::PerEpoch`,
//!    default 64 MiB segments, 1 MiB buffers) writes `SHARDWAL_BENCH_GIB`
//!    GiB of data records of 4–64 KiB, half per shard, with an epoch every
//!    10 ms, then shuts down. No checkpoint: recovery reads the whole log.
//! 2. **Recovery**, warm and cold (cold: `sync; echo 3 >
//!    /proc/sys/vm/drop_caches` before the run, when permitted):
//!    - *scan*: `Runtime::start` on the directory (both shards scan in
//!      parallel on their pinned cores, then the cut), timed per shard
//!      (`ShardRecovery::elapsed`) and as a whole (`RecoveryReport::elapsed`);
//!    - *replay*: each shard's engine code then reads `ctx.replay()` to the
//!      end on its core, timed per shard;
//!    - *full*: from calling `Runtime::start` to the last shard's replay done.
//!
//!    Each on two backends: the default `DmaStorage` (reads are `pread` on
//!    `O_DIRECT` descriptors: the page cache plays no part, warm or cold)
//!    and `StdStorage` through `Runtime::start_with` (buffered reads: warm
//!    runs read from the page cache, which shows the software's own cost).
//!    GiB/s count the log's frame bytes (`ShardRecovery::bytes`); a full
//!    recovery reads the log twice (scan, then replay). Besides wall-clock
//!    rates, "per CPU-s" divides a shard's bytes by its thread's CPU time
//!    (`CLOCK_THREAD_CPUTIME_ID`): what one dedicated core would sustain if
//!    it never waited for the device, and a figure that other load on the
//!    machine does not distort.
//! 3. **Raw sequential reads** of every segment file of the log (2 threads,
//!    one per shard's files, like the recovery): std `File::read` into 8 MiB
//!    buffers (page cache: warm, then cold), and `pread` on an `O_DIRECT`
//!    descriptor in 1 MiB and in 64 MiB blocks (one at a time). File bytes
//!    include the zero-filled unused ends of the segments.
//! 4. **Merged replay memory**: a child process reads the log with a
//!    `MergedReader` in (epoch, shard, seq) order and reports its peak RSS
//!    (`VmHWM`) before and after; over the whole log and over its first
//!    eighth, to show the peak does not grow with the log.
//!
//! Targets (issue 4): >= 1 GiB/s per core warm; cold >= 60% of the
//! `O_DIRECT` sequential-read bandwidth; merged memory bounded,
//! independent of the log's size.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shardwal::io::AlignedBuf;
use shardwal::rng::SplitMix;
use shardwal::segment::{parse_segment_name, shard_dir};
use shardwal::{
    ControlEvent, DmaStorage, FsyncPolicy, MergedReader, Runtime, RuntimeConfig, Seq, ShardConfig,
    ShardId, StdStorage, Storage,
};

const SHARDS: usize = 2;
const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

fn shard_config() -> ShardConfig {
    ShardConfig {
        fsync: FsyncPolicy::PerEpoch,
        ..ShardConfig::default()
    }
}

fn config(auto: bool) -> RuntimeConfig {
    RuntimeConfig {
        shards: Some(SHARDS),
        shard: shard_config(),
        pin: true,
        auto_barriers: auto,
        ..RuntimeConfig::default()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn gibs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / GIB / d.as_secs_f64()
}

/// Drop the page cache (as root). Returns false if not permitted.
fn drop_caches() -> bool {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Write the log: `total` bytes of data records over the shards.
fn write_log(dir: &Path, total: u64) -> (u64, u64, Duration) {
    let per_shard = total / SHARDS as u64;
    let (tx, rx) = crossbeam_channel::unbounded::<(u64, u64)>();
    let t0 = Instant::now();
    let rt = Runtime::start(dir, config(false), move |ctx| {
        let tx = tx.clone();
        async move {
            let s = ctx.shard().0;
            let mut rng = SplitMix(0xbe7c4 + u64::from(s));
            let mut buf = vec![0u8; 64 << 10];
            for c in buf.chunks_mut(8) {
                c.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            let (mut written, mut records) = (0u64, 0u64);
            loop {
                while let Some(ev) = ctx.poll_control() {
                    let ControlEvent::Barrier(req) = ev else {
                        return Ok(());
                    };
                    ctx.complete_barrier(req, None).await?;
                }
                if written >= per_shard {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                for _ in 0..16 {
                    let len = (4 << 10) + (rng.next_u64() % (60 << 10)) as usize;
                    buf[..8].copy_from_slice(&records.to_le_bytes());
                    ctx.log().append(&buf[..len]).await?;
                    written += len as u64;
                    records += 1;
                }
                if written >= per_shard {
                    let _ = tx.send((records, written));
                }
            }
        }
    })
    .expect("start the writing runtime");
    let c = rt.coordinator();
    let (mut records, mut bytes, mut done) = (0, 0, 0);
    while done < SHARDS {
        std::thread::sleep(Duration::from_millis(10));
        c.advance_epoch().expect("epoch").wait().expect("seal");
        while let Ok((r, b)) = rx.try_recv() {
            records += r;
            bytes += b;
            done += 1;
        }
    }
    rt.shutdown().expect("shutdown the writing runtime");
    (records, bytes, t0.elapsed())
}

/// Every segment file of a shard, in order.
fn segment_files(dir: &Path, shard: u32) -> Vec<PathBuf> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(shard_dir(dir, ShardId(shard)))
        .expect("list shard dir")
        .filter_map(|e| {
            let p = e.ok()?.path();
            let i = parse_segment_name(p.file_name()?.to_str()?)?;
            Some((i, p))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

#[derive(Debug, Clone)]
struct ShardRun {
    log_bytes: u64,
    records: u64,
    scan: Duration,
    replay: Duration,
    /// CPU seconds of the shard's thread in the scan (and start-up).
    scan_cpu: f64,
    /// CPU seconds of the shard's thread in the replay.
    replay_cpu: f64,
}

#[derive(Debug, Clone)]
struct RecoveryRun {
    /// RecoveryReport::elapsed.
    report_elapsed: Duration,
    /// Start to the last replay done.
    full: Duration,
    shards: Vec<ShardRun>,
}

/// Which storage backend the recovering runtime uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    /// The default: glommio DMA files, reads with `pread` on `O_DIRECT`.
    Dma,
    /// Buffered std files: reads come from the page cache when it is warm.
    Std,
}

fn recovery_run(dir: &Path, backend: Backend) -> RecoveryRun {
    match backend {
        Backend::Dma => recovery_run_with(dir, |_| DmaStorage),
        Backend::Std => recovery_run_with(dir, |_| StdStorage),
    }
}

fn recovery_run_with<S, M>(dir: &Path, make: M) -> RecoveryRun
where
    S: Storage,
    M: Fn(ShardId) -> S + Send + Sync + 'static,
{
    let (tx, rx) = crossbeam_channel::unbounded::<(u32, Duration, u64, f64, f64)>();
    let t0 = Instant::now();
    // User mode: the engine polls for control events itself, every 1 ms
    // once it has replayed (auto mode's 50 µs poll would share the core
    // with the replay and be counted in its CPU time).
    let rt = Runtime::start_with(dir, config(false), make, move |ctx| {
        let tx = tx.clone();
        async move {
            // CPU time of this shard's thread so far: executor start-up,
            // the scan and the cut.
            let scan_cpu = thread_cpu();
            let t = Instant::now();
            let mut n = 0u64;
            let mut sum = 0u64;
            let mut r = ctx.replay().await?;
            while let Some(rec) = r.next().await? {
                n += 1;
                // Look at the payload, as an engine would.
                sum = sum.wrapping_add(u64::from(rec.payload.first().copied().unwrap_or(0)));
            }
            std::hint::black_box(sum);
            let replay_cpu = thread_cpu() - scan_cpu;
            let _ = tx.send((ctx.shard().0, t.elapsed(), n, scan_cpu, replay_cpu));
            loop {
                while let Some(ev) = ctx.poll_control() {
                    match ev {
                        ControlEvent::Barrier(req) => {
                            ctx.complete_barrier(req, None).await?;
                        }
                        _ => return Ok(()),
                    }
                }
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        }
    })
    .expect("recovery");
    let mut replays = vec![(Duration::ZERO, 0u64, 0.0, 0.0); SHARDS];
    for _ in 0..SHARDS {
        let (s, d, n, sc, rc) = rx.recv_timeout(Duration::from_secs(600)).expect("replay");
        replays[s as usize] = (d, n, sc, rc);
    }
    let full = t0.elapsed();
    let report = rt.recovery_report().clone();
    rt.shutdown().expect("shutdown");
    for (r, (_, n, _, _)) in report.shards.iter().zip(&replays) {
        assert_eq!(r.records, *n, "{}: the replay yields every record", r.shard);
    }
    RecoveryRun {
        report_elapsed: report.elapsed,
        full,
        shards: report
            .shards
            .iter()
            .zip(replays)
            .map(|(r, (d, _, scan_cpu, replay_cpu))| ShardRun {
                log_bytes: r.bytes,
                records: r.records,
                scan: r.elapsed,
                replay: d,
                scan_cpu,
                replay_cpu,
            })
            .collect(),
    }
}

/// Medians over runs.
#[derive(Debug, Clone, Copy)]
struct RecoveryStats {
    log_bytes: u64,
    log_records: u64,
    scan_secs: f64,
    scan_core: f64,
    replay_secs: f64,
    replay_core: f64,
    full_secs: f64,
    full_core: f64,
    scan_cpu: f64,
    replay_cpu: f64,
    full_cpu: f64,
}

impl RecoveryStats {
    fn of(runs: &[RecoveryRun]) -> RecoveryStats {
        let log_bytes: u64 = runs[0].shards.iter().map(|s| s.log_bytes).sum();
        let log_records: u64 = runs[0].shards.iter().map(|s| s.records).sum();
        let per_core = |f: &dyn Fn(&ShardRun) -> Duration| {
            median(
                runs.iter()
                    .flat_map(|r| r.shards.iter().map(|s| gibs(s.log_bytes, f(s))))
                    .collect(),
            )
        };
        let per_cpu = |f: &dyn Fn(&ShardRun) -> f64| {
            median(
                runs.iter()
                    .flat_map(|r| r.shards.iter().map(|s| s.log_bytes as f64 / GIB / f(s)))
                    .collect(),
            )
        };
        let secs = |f: &dyn Fn(&RecoveryRun) -> Duration| {
            median(runs.iter().map(|r| f(r).as_secs_f64()).collect())
        };
        RecoveryStats {
            log_bytes,
            log_records,
            scan_secs: secs(&|r| r.report_elapsed),
            scan_core: per_core(&|s| s.scan),
            replay_secs: secs(&|r| r.shards.iter().map(|s| s.replay).max().unwrap()),
            replay_core: per_core(&|s| s.replay),
            full_secs: secs(&|r| r.full),
            full_core: per_core(&|s| s.scan + s.replay),
            scan_cpu: per_cpu(&|s| s.scan_cpu),
            replay_cpu: per_cpu(&|s| s.replay_cpu),
            full_cpu: per_cpu(&|s| s.scan_cpu + s.replay_cpu),
        }
    }

    fn gibs(&self, secs: f64) -> f64 {
        self.log_bytes as f64 / GIB / secs
    }

    fn rows(&self, tag: &str, backend: &str) -> Vec<String> {
        let row = |what: &str, secs: f64, core: f64, cpu: f64| {
            format!(
                "{tag} | {:<38} | {secs:>7.3} s | {:>6.2} GiB/s | {core:>6.2} GiB/s | {cpu:>6.2} GiB/s | {:>6.3} M rec/s |",
                format!("{what}, {backend}"),
                self.gibs(secs),
                self.log_records as f64 / secs / 1e6
            )
        };
        vec![
            row(
                "scan (Runtime::start)",
                self.scan_secs,
                self.scan_core,
                self.scan_cpu,
            ),
            row(
                "replay (ctx.replay)",
                self.replay_secs,
                self.replay_core,
                self.replay_cpu,
            ),
            row(
                "full (start + replay)",
                self.full_secs,
                self.full_core,
                self.full_cpu,
            ),
        ]
    }
}

#[derive(Clone, Copy)]
enum Raw {
    Buffered,
    Direct(usize),
}

/// Bytes read, wall time, per-thread times.
type RawRun = (u64, Duration, Vec<Duration>);

/// Read every segment file, one thread per shard.
fn raw_read(dir: &Path, how: Raw) -> RawRun {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..SHARDS as u32)
        .map(|s| {
            let files = segment_files(dir, s);
            std::thread::spawn(move || {
                let t = Instant::now();
                let mut total = 0u64;
                match how {
                    Raw::Buffered => {
                        let mut buf = vec![0u8; 8 << 20];
                        for p in files {
                            let mut f = File::open(&p).expect("open");
                            loop {
                                let n = f.read(&mut buf).expect("read");
                                if n == 0 {
                                    break;
                                }
                                total += n as u64;
                            }
                        }
                    }
                    Raw::Direct(block) => {
                        let mut buf = AlignedBuf::zeroed(block);
                        for p in files {
                            let f = OpenOptions::new()
                                .read(true)
                                .custom_flags(libc::O_DIRECT)
                                .open(&p)
                                .expect("open O_DIRECT");
                            let mut pos = 0u64;
                            loop {
                                let n = f.read_at(&mut buf, pos).expect("pread");
                                total += n as u64;
                                pos += n as u64;
                                if n < block {
                                    break;
                                }
                            }
                        }
                    }
                }
                (total, t.elapsed())
            })
        })
        .collect();
    let mut bytes = 0;
    let mut per = Vec::new();
    for h in handles {
        let (b, d) = h.join().expect("reader thread");
        bytes += b;
        per.push(d);
    }
    (bytes, t0.elapsed(), per)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Child: a merged pass over `ranges`; prints
/// `MERGED <baseline KiB> <peak KiB> <records> <payload bytes> <secs>`.
fn merged_child(dir: PathBuf, ranges: Vec<(Seq, Seq)>) {
    let base = vm_hwm_kib();
    let t0 = Instant::now();
    let (n, bytes, exec_base) = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let exec_base = vm_hwm_kib();
            let mut m = MergedReader::open(DmaStorage, &dir, &ranges)
                .await
                .expect("open merged reader");
            let (mut n, mut bytes) = (0u64, 0u64);
            let mut last = (0u64, 0u32, 0u64);
            while let Some(r) = m.next().await.expect("merged read") {
                let k = (r.lsn.epoch.0, r.lsn.shard.0, r.lsn.seq.0);
                assert!(n == 0 || k > last, "merged order");
                last = k;
                n += 1;
                bytes += r.payload.len() as u64;
            }
            (n, bytes, exec_base)
        })
        .expect("executor")
        .join()
        .expect("merged pass");
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "MERGED {} {} {n} {bytes} {secs}",
        base.max(exec_base),
        vm_hwm_kib()
    );
}

struct Merged {
    base_kib: u64,
    peak_kib: u64,
    records: u64,
    bytes: u64,
    secs: f64,
}

fn merged_rss(dir: &Path, ranges: &[(u64, u64)]) -> Merged {
    let r: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}:{b}")).collect();
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--merged-rss-child")
        .arg(dir)
        .arg(r.join(","))
        .output()
        .expect("run merged child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("MERGED "))
        .unwrap_or_else(|| {
            panic!(
                "merged child failed: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let w: Vec<&str> = line.split_whitespace().collect();
    Merged {
        base_kib: w[1].parse().unwrap(),
        peak_kib: w[2].parse().unwrap(),
        records: w[3].parse().unwrap(),
        bytes: w[4].parse().unwrap(),
        secs: w[5].parse().unwrap(),
    }
}

/// CPU seconds used by the calling thread.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--merged-rss-child") {
        let ranges = args[i + 2]
            .split(',')
            .map(|r| {
                let (a, b) = r.split_once(':').unwrap();
                (Seq(a.parse().unwrap()), Seq(b.parse().unwrap()))
            })
            .collect();
        merged_child(PathBuf::from(&args[i + 1]), ranges);
        return;
    }
    let full = args.iter().any(|a| a == "--bench");
    let env_f = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let gib = if full {
        env_f("SHARDWAL_BENCH_GIB", 1.0)
    } else {
        1.0 / 16.0
    };
    let runs = if full {
        env_f("SHARDWAL_BENCH_RUNS", 3.0) as usize
    } else {
        1
    };
    let base = std::env::var_os("SHARDWAL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).expect("bench dir");
    // SHARDWAL_BENCH_LOG_DIR: keep the log there and reuse it next time.
    let keep = std::env::var_os("SHARDWAL_BENCH_LOG_DIR").map(PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| tmp.path().join("log"));
    let load_before = loadavg();

    // 1. The log.
    let reuse = keep.is_some() && shard_dir(&dir, ShardId(0)).exists();
    let (records, bytes, took) = if reuse {
        println!("reusing the log at {}", dir.display());
        (0, 0, Duration::ZERO)
    } else {
        write_log(&dir, (gib * GIB) as u64)
    };
    let files: Vec<u64> = (0..SHARDS as u32)
        .map(|s| segment_files(&dir, s).len() as u64)
        .collect();
    println!("\n=== recovery benchmark ===");
    if reuse {
        println!("log: reused, {files:?} segment files of 64 MiB per shard");
    } else {
        println!(
            "log: {:.2} GiB of payload in {records} data records (avg {:.1} KiB) on {SHARDS} shards, \
             {files:?} segment files of 64 MiB per shard; written in {:.2} s ({:.2} GiB/s, \
             with an epoch every 10 ms)",
            bytes as f64 / GIB,
            bytes as f64 / records as f64 / 1024.0,
            took.as_secs_f64(),
            gibs(bytes, took)
        );
    }
    let can_drop = full && drop_caches();
    if full && !can_drop {
        println!("cannot drop the page cache here (not root?): cold runs skipped");
    }
    let modes: Vec<bool> = if can_drop {
        vec![false, true]
    } else {
        vec![false]
    };

    // 2. and 3., interleaved per run so that each ratio compares
    // measurements taken close together.
    let mut rows: Vec<String> = Vec::new();
    // (cold, DMA, std, raw O_DIRECT 1 MiB GiB/s, raw O_DIRECT 64 MiB GiB/s)
    let mut summary: Vec<(bool, RecoveryStats, RecoveryStats, f64, f64)> = Vec::new();
    let raw_kinds = [
        ("std read, 8 MiB buffers", Raw::Buffered),
        ("O_DIRECT pread, 1 MiB blocks", Raw::Direct(1 << 20)),
        ("O_DIRECT pread, 64 MiB blocks", Raw::Direct(64 << 20)),
    ];
    for &cold in &modes {
        let tag = if cold { "cold" } else { "warm" };
        let mut dma: Vec<RecoveryRun> = Vec::new();
        let mut std_runs: Vec<RecoveryRun> = Vec::new();
        let mut raws: Vec<Vec<RawRun>> = vec![Vec::new(); raw_kinds.len()];
        if !cold {
            // Warm the page cache (only buffered reads use it).
            raw_read(&dir, Raw::Buffered);
        }
        for _ in 0..runs {
            if cold {
                drop_caches();
            }
            dma.push(recovery_run(&dir, Backend::Dma));
            if cold {
                drop_caches();
            }
            std_runs.push(recovery_run(&dir, Backend::Std));
            for (k, (_, how)) in raw_kinds.iter().enumerate() {
                if cold {
                    drop_caches();
                }
                raws[k].push(raw_read(&dir, *how));
            }
        }
        let dma = RecoveryStats::of(&dma);
        let std_stats = RecoveryStats::of(&std_runs);
        rows.extend(dma.rows(tag, "DMA"));
        rows.extend(std_stats.rows(tag, "std files"));
        let mut raw_total = Vec::new();
        for ((name, _), v) in raw_kinds.iter().zip(&raws) {
            let total = median(v.iter().map(|(b, d, _)| gibs(*b, *d)).collect());
            let core = median(
                v.iter()
                    .flat_map(|(b, _, per)| per.iter().map(move |d| gibs(*b / SHARDS as u64, *d)))
                    .collect(),
            );
            let secs = median(v.iter().map(|(_, d, _)| d.as_secs_f64()).collect());
            raw_total.push(total);
            rows.push(format!(
                "{tag} | raw {name:<34} | {secs:>7.3} s | {total:>6.2} GiB/s | {core:>6.2} GiB/s | {:>11} | {:>14} | {:.2} GiB of files",
                "",
                "",
                v[0].0 as f64 / GIB
            ));
        }
        summary.push((cold, dma, std_stats, raw_total[1], raw_total[2]));
    }
    let log_gib = summary[0].1.log_bytes as f64 / GIB;
    let log_records = summary[0].1.log_records;

    // 4. Merged replay memory, whole log and its first eighth.
    let ends: Vec<u64> = {
        let r = recovery_run(&dir, Backend::Dma);
        r.shards.iter().map(|s| s.records).collect()
    };
    let whole: Vec<(u64, u64)> = ends.iter().map(|&e| (0, e)).collect();
    let eighth: Vec<(u64, u64)> = ends.iter().map(|&e| (0, e / 8)).collect();
    let m_whole = merged_rss(&dir, &whole);
    let m_eighth = merged_rss(&dir, &eighth);

    println!(
        "recovered log: {log_gib:.2} GiB of frames, {log_records} records; medians of {runs} run(s); \
         \"per core\" = a shard's bytes / its own wall time; \"per CPU-s\" = a shard's bytes / the CPU \
         time of its thread (what a dedicated core would do, were it not waiting for the device)"
    );
    println!(
        "mode | what                                   | time      | total        | per core     | per CPU-s   | records        |"
    );
    for r in &rows {
        println!("{r}");
    }
    for (name, m) in [("whole log", &m_whole), ("first 1/8", &m_eighth)] {
        println!(
            "merged replay (MergedReader, DMA), {name}: {} records, {:.2} GiB of payload in {:.2} s ({:.2} GiB/s); \
             peak RSS {:.0} MiB (baseline {:.0} MiB, +{:.0} MiB)",
            m.records,
            m.bytes as f64 / GIB,
            m.secs,
            m.bytes as f64 / GIB / m.secs,
            m.peak_kib as f64 * 1024.0 / MIB,
            m.base_kib as f64 * 1024.0 / MIB,
            (m.peak_kib.saturating_sub(m.base_kib)) as f64 * 1024.0 / MIB
        );
    }
    println!("targets:");
    for (cold, dma, std_stats, direct_1m, direct_64m) in &summary {
        if *cold {
            println!(
                "  cold: full recovery (DMA) {:.2} GiB/s = {:.0}% of raw O_DIRECT 1 MiB reads ({direct_1m:.2} GiB/s), \
                 {:.0}% of O_DIRECT 64 MiB reads ({direct_64m:.2} GiB/s) [target >= 60%]; \
                 the scan alone (one pass) {:.0}% of 64 MiB reads; with std files {:.2} GiB/s",
                dma.gibs(dma.full_secs),
                100.0 * dma.gibs(dma.full_secs) / direct_1m,
                100.0 * dma.gibs(dma.full_secs) / direct_64m,
                100.0 * dma.gibs(dma.scan_secs) / direct_64m,
                std_stats.gibs(std_stats.full_secs),
            );
        } else {
            println!(
                "  warm: per core, DMA scan {:.2} / replay {:.2} GiB/s (per CPU-second {:.2} / {:.2}); \
                 std files from the page cache: scan {:.2} / replay {:.2} GiB/s (per CPU-second {:.2} / {:.2}) \
                 [target >= 1 GiB/s per core]",
                dma.scan_core,
                dma.replay_core,
                dma.scan_cpu,
                dma.replay_cpu,
                std_stats.scan_core,
                std_stats.replay_core,
                std_stats.scan_cpu,
                std_stats.replay_cpu
            );
        }
    }
    println!(
        "  merged replay memory: +{:.0} MiB over the whole log vs +{:.0} MiB over 1/8 of it \
         [target: independent of the log size]",
        (m_whole.peak_kib.saturating_sub(m_whole.base_kib)) as f64 / 1024.0,
        (m_eighth.peak_kib.saturating_sub(m_eighth.base_kib)) as f64 / 1024.0
    );
    println!(
        "load average before: {load_before}, after: {} on {} cores",
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
