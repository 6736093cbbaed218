//! Epoch benchmarks of the runtime, each next to its baseline measured in
//! the same run (numbers on a shared machine are noisy: compare within one
//! run).
//!
//! ```sh
//! cargo bench --bench epochs
//! ```
//!
//! - `epoch_seal/*`: one iteration is one epoch sealed, from
//!   `Coordinator::advance_epoch` to the ticket resolving (barrier written and
//!   fdatasynced on every shard, acks collected), on 2 shards pinned to their
//!   cores, with idle logs:
//!   - `auto`: the runtime answers barriers itself (`auto_barriers`,
//!     polling the control channel every 50 µs, the default);
//!   - `user`: engine code answers them, polling between naps of 10 µs;
//!   - `raw_fdatasync_4k_prefilled`: the baseline, one 4 KiB `pwrite` plus
//!     `sync_data` on a std `File` whose blocks are already written (what a
//!     barrier costs on a prepared segment);
//!   - `raw_fdatasync_4k_append`: the same, appending to a growing file.
//!
//!   Besides criterion's estimate, each is sampled one seal (or sync) at a
//!   time and p50/p99 are printed at the end.
//! - `epoch_overhead/*`: append throughput of 128-byte records on 2 pinned
//!   shards (user mode, `FsyncPolicy::PerEpoch`, default segments and
//!   buffers), one iteration = [`BATCH`] appends per shard, with the
//!   coordinator's 10 ms epoch timer (`epoch_interval`) against no epochs.
//!   The engine polls control events every 64 appends and completes each
//!   barrier inline. A summary run alternates the two configurations, each
//!   on a fresh log, and prints medians and their ratio.
//! - `idle_poll/poll_control`: one `ShardContext::poll_control()` with no
//!   event pending, timed in a loop on the shard's own glommio executor.
//!
//! Targets (issue 3): seal p50 <= one fdatasync + 100 µs; throughput with
//! 10 ms epochs >= 90% of without; idle poll <= 10 ns.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use crossbeam_channel::{Receiver, Sender};
use shardwal::{
    ControlEvent, CoordinatorConfig, DmaStorage, Runtime, RuntimeConfig, ShardConfig, ShardContext,
};

/// Payload size of the throughput benchmark.
const PAYLOAD: usize = 128;
/// Appends per shard per iteration of the throughput benchmark.
const BATCH: u64 = 100_000;
/// Shards (one per core of the benchmark machine).
const SHARDS: usize = 2;

/// Work the bench thread asks of an engine.
enum Cmd {
    /// Append `n` records; reply with the time taken.
    Append { n: u64, reply: Sender<Duration> },
    /// Call `poll_control` `n` times; reply with the time taken and the
    /// number of events seen (must be 0).
    IdlePoll {
        n: u64,
        reply: Sender<(Duration, u64)>,
    },
}

/// Handle pending control events; false once shutdown is requested.
async fn handle_control(ctx: &Rc<ShardContext<DmaStorage>>) -> shardwal::Result<bool> {
    while let Some(ev) = ctx.poll_control() {
        match ev {
            ControlEvent::Barrier(req) => {
                ctx.complete_barrier(req, None).await?;
            }
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// User-mode engine code: answers barriers, runs commands, naps when idle.
async fn engine(
    ctx: Rc<ShardContext<DmaStorage>>,
    cmds: Receiver<Cmd>,
    nap: Duration,
) -> shardwal::Result<()> {
    let log = ctx.log().clone();
    let mut p = [0u8; PAYLOAD];
    for (i, b) in p.iter_mut().enumerate() {
        *b = i as u8;
    }
    loop {
        if !handle_control(&ctx).await? {
            return Ok(());
        }
        match cmds.try_recv() {
            Ok(Cmd::Append { n, reply }) => {
                let t0 = Instant::now();
                for i in 0..n {
                    log.append(&p).await?;
                    if i % 64 == 63 && !handle_control(&ctx).await? {
                        return Ok(());
                    }
                }
                let _ = reply.send(t0.elapsed());
            }
            Ok(Cmd::IdlePoll { n, reply }) => {
                let mut seen = 0u64;
                let t0 = Instant::now();
                for _ in 0..n {
                    seen += u64::from(black_box(ctx.poll_control()).is_some());
                }
                let _ = reply.send((t0.elapsed(), seen));
            }
            Err(_) => glommio::timer::sleep(nap).await,
        }
    }
}

/// A running runtime plus the command channel of each shard.
struct Rig {
    rt: Runtime,
    cmds: Vec<Sender<Cmd>>,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy)]
enum Mode {
    /// The runtime answers barriers (its engine code only waits).
    Auto,
    /// Engine code answers barriers, napping this long when idle.
    User(Duration),
}

fn rig(mode: Mode, epoch_interval: Option<Duration>) -> Rig {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..SHARDS)
        .map(|_| crossbeam_channel::unbounded::<Cmd>())
        .unzip();
    let cfg = RuntimeConfig {
        shards: Some(SHARDS),
        shard: ShardConfig::default(),
        coordinator: CoordinatorConfig {
            epoch_interval,
            ..CoordinatorConfig::default()
        },
        pin: true,
        auto_barriers: matches!(mode, Mode::Auto),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(dir.path(), cfg, move |ctx| {
        let rx = rxs[ctx.shard().0 as usize].clone();
        async move {
            match mode {
                Mode::User(nap) => engine(ctx, rx, nap).await,
                Mode::Auto => {
                    while !ctx.is_shutting_down() {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                    Ok(())
                }
            }
        }
    })
    .expect("start runtime");
    Rig {
        rt,
        cmds: txs,
        _dir: dir,
    }
}

impl Rig {
    fn seal(&self) -> Duration {
        let c = self.rt.coordinator();
        let t0 = Instant::now();
        c.advance_epoch().expect("advance").wait().expect("seal");
        t0.elapsed()
    }

    /// `n` appends on every shard at once; the slowest shard's time.
    fn append(&self, n: u64) -> Duration {
        let replies: Vec<Receiver<Duration>> = self
            .cmds
            .iter()
            .map(|tx| {
                let (reply, rx) = crossbeam_channel::bounded(1);
                tx.send(Cmd::Append { n, reply }).expect("engine alive");
                rx
            })
            .collect();
        replies
            .iter()
            .map(|r| r.recv().expect("append reply"))
            .max()
            .unwrap_or_default()
    }

    fn idle_poll(&self, n: u64) -> Duration {
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.cmds[0]
            .send(Cmd::IdlePoll { n, reply })
            .expect("engine alive");
        let (d, seen) = rx.recv().expect("poll reply");
        assert_eq!(seen, 0, "no control event while idle");
        d
    }

    fn shutdown(self) {
        self.rt.shutdown().expect("shutdown");
    }
}

/// A std file for the raw fdatasync baseline.
struct RawFile {
    file: File,
    block: Vec<u8>,
    pos: u64,
    wrap: Option<u64>,
    _dir: tempfile::TempDir,
}

impl RawFile {
    /// `prefilled`: 64 MiB written and synced first, then overwritten in
    /// place; otherwise every write appends.
    fn new(prefilled: bool) -> RawFile {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("raw.log"))
            .expect("create");
        let size = 64u64 << 20;
        if prefilled {
            let zeros = vec![0u8; 1 << 20];
            for i in 0..size >> 20 {
                file.write_all_at(&zeros, i << 20).expect("prefill");
            }
            file.sync_all().expect("sync prefill");
        }
        RawFile {
            file,
            block: vec![0x5a; 4096],
            pos: 0,
            wrap: prefilled.then_some(size),
            _dir: dir,
        }
    }

    fn write_sync(&mut self) -> Duration {
        let t0 = Instant::now();
        self.file
            .write_all_at(&self.block, self.pos)
            .expect("write");
        self.file.sync_data().expect("sync_data");
        let d = t0.elapsed();
        self.pos += 4096;
        if let Some(w) = self.wrap {
            self.pos %= w;
        }
        d
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// p50 and p99 of `n` samples of `f`.
fn sample(n: usize, mut f: impl FnMut() -> Duration) -> (Duration, Duration) {
    let mut v: Vec<Duration> = (0..n).map(|_| f()).collect();
    v.sort_unstable();
    (percentile(&v, 0.50), percentile(&v, 0.99))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How much the sampled summaries measure.
struct Summary {
    /// Samples of the latency summaries.
    samples: usize,
    /// Rounds of the throughput summary (each configuration).
    rounds: usize,
    /// Appends per shard per round of the throughput summary.
    round: u64,
    /// Batches of 10M idle polls.
    polls: usize,
    lines: Vec<String>,
}

impl Summary {
    fn new(full: bool) -> Summary {
        Summary {
            samples: if full { 2_000 } else { 10 },
            rounds: if full { 5 } else { 1 },
            round: if full { 1_000_000 } else { 10_000 },
            polls: if full { 20 } else { 1 },
            lines: Vec::new(),
        }
    }
}

fn bench_seal(c: &mut Criterion, s: &mut Summary) {
    let mut g = c.benchmark_group("epoch_seal");
    g.sample_size(30).measurement_time(Duration::from_secs(4));

    let auto = rig(Mode::Auto, None);
    g.bench_function("auto", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| auto.seal()).sum())
    });
    let (auto50, auto99) = sample(s.samples, || auto.seal());
    auto.shutdown();

    let user = rig(Mode::User(Duration::from_micros(10)), None);
    g.bench_function("user", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| user.seal()).sum())
    });
    let (user50, user99) = sample(s.samples, || user.seal());
    user.shutdown();

    let mut pre = RawFile::new(true);
    g.bench_function("raw_fdatasync_4k_prefilled", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| pre.write_sync()).sum())
    });
    let (pre50, pre99) = sample(s.samples, || pre.write_sync());
    drop(pre);

    let mut app = RawFile::new(false);
    g.bench_function("raw_fdatasync_4k_append", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| app.write_sync()).sum())
    });
    let (app50, app99) = sample(s.samples, || app.write_sync());
    drop(app);
    g.finish();

    s.lines.push(format!(
        "epoch seal, {SHARDS} pinned shards, {} samples each (p50 / p99, µs):",
        s.samples
    ));
    for (name, p50, p99) in [
        ("seal, auto mode (50 µs control poll)", auto50, auto99),
        ("seal, user mode (10 µs naps)", user50, user99),
        ("raw 4 KiB pwrite + fdatasync, prefilled", pre50, pre99),
        ("raw 4 KiB pwrite + fdatasync, appending", app50, app99),
    ] {
        s.lines
            .push(format!("  {name:<42} {:>8.1} / {:>8.1}", us(p50), us(p99)));
    }
    for (name, p50) in [("auto", auto50), ("user", user50)] {
        s.lines.push(format!(
            "  seal p50 ({name}) - raw prefilled fdatasync p50 = {:+.1} µs (target <= +100 µs) -> {}",
            us(p50) - us(pre50),
            if us(p50) <= us(pre50) + 100.0 { "met" } else { "MISSED" }
        ));
    }
}

fn bench_overhead(c: &mut Criterion, s: &mut Summary) {
    let mut g = c.benchmark_group("epoch_overhead");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(BATCH * SHARDS as u64));
    let nap = Duration::from_micros(50);
    for (name, interval) in [
        ("append_128b_no_epochs", None),
        ("append_128b_epochs_10ms", Some(Duration::from_millis(10))),
    ] {
        let r = rig(Mode::User(nap), interval);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| r.append(BATCH)).sum())
        });
        r.shutdown();
    }
    g.finish();

    // Alternate the two, each round on a fresh log, and compare medians.
    let (mut without, mut with, mut epochs) = (Vec::new(), Vec::new(), Vec::new());
    let round = s.round;
    for _ in 0..s.rounds {
        for interval in [None, Some(Duration::from_millis(10))] {
            let r = rig(Mode::User(nap), interval);
            let sealed0 = r.rt.coordinator().sealed_epoch().0;
            let d = r.append(round);
            let rate = (round * SHARDS as u64) as f64 / d.as_secs_f64();
            if interval.is_some() {
                with.push(rate);
                epochs.push((r.rt.coordinator().sealed_epoch().0 - sealed0) as f64);
            } else {
                without.push(rate);
            }
            r.shutdown();
        }
    }
    let (a, b) = (median(without), median(with));
    s.lines.push(format!(
        "epoch overhead, {SHARDS} pinned shards x {round} appends of {PAYLOAD} B, median of {} alternating rounds:",
        s.rounds
    ));
    s.lines
        .push(format!("  no epochs        {:>8.2} M records/s", a / 1e6));
    s.lines.push(format!(
        "  10 ms epochs     {:>8.2} M records/s ({} epochs sealed per round, median)",
        b / 1e6,
        median(epochs)
    ));
    s.lines.push(format!(
        "  ratio {:.3} (target >= 0.90) -> {}",
        b / a,
        if b / a >= 0.9 { "met" } else { "MISSED" }
    ));
}

fn bench_idle_poll(c: &mut Criterion, s: &mut Summary) {
    let mut g = c.benchmark_group("idle_poll");
    let r = rig(Mode::User(Duration::from_micros(50)), None);
    g.bench_function("poll_control", |b| {
        b.iter_custom(|iters| r.idle_poll(iters))
    });
    g.finish();
    let per: Vec<f64> = (0..s.polls)
        .map(|_| r.idle_poll(10_000_000).as_secs_f64() * 1e9 / 1e7)
        .collect();
    r.shutdown();
    let m = median(per);
    s.lines.push(format!(
        "idle poll_control: {m:.2} ns per call, median of {} x 10M calls (target <= 10 ns) -> {}",
        s.polls,
        if m <= 10.0 { "met" } else { "MISSED" }
    ));
}

/// The system load average, to judge how quiet the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    // Under `cargo test --benches` criterion runs each benchmark once as a
    // smoke test; the sampled summaries only run under `cargo bench`.
    let full = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    let mut s = Summary::new(full);
    let load_before = loadavg();
    bench_seal(&mut c, &mut s);
    bench_overhead(&mut c, &mut s);
    bench_idle_poll(&mut c, &mut s);
    c.final_summary();
    println!("\n=== epochs summary ===");
    println!(
        "load average (1/5/15 min) before: {load_before}, after: {} on {} cores; other load makes every figure worse",
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for l in &s.lines {
        println!("{l}");
    }
}
