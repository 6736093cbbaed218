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
//!   - `user`: engine code answers them, polling between naps of 50 µs;
//!   - `raw_fdatasync_4k_prefilled`: the baseline, one 4 KiB `pwrite` plus
//!     `sync_data` on a std `File` whose blocks are already written (what a
//!     barrier costs on a prepared segment);
//!   - `raw_fdatasync_4k_append`: the same, appending to a growing file.
//!
//!   The summary samples all four in interleaved blocks (so that each sees
//!   the same background load) and prints p50/p99.
//! - `epoch_overhead/*`: append throughput of 128-byte records on 2 pinned
//!   shards (user mode, `FsyncPolicy::PerEpoch`, default segments and
//!   buffers), one iteration = [`BATCH`] appends per shard:
//!   - `no_epochs`: no barriers at all (nothing is fdatasynced);
//!   - `epochs_10ms`: the coordinator's 10 ms epoch timer
//!     (`epoch_interval`); the engine polls control events every 64 appends
//!     and awaits `complete_barrier` inline, as the examples do;
//!   - `epochs_10ms_pipelined`: the same, but the engine runs
//!     `complete_barrier` as a task of its own and only waits for the
//!     barrier record to be appended, so it keeps appending while the
//!     barrier becomes durable.
//!
//!   The summary alternates the variants, each round on a fresh log, and
//!   prints medians and ratios.
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
///
/// Inline, the engine awaits `complete_barrier`: it appends nothing while
/// the epoch's last writes drain and the barrier is fdatasynced. Pipelined,
/// the completion runs as a task of its own: the engine waits only until
/// the barrier record is appended (so the epoch ends exactly here), then
/// appends the next epoch's records while the barrier becomes durable.
async fn handle_control(
    ctx: &Rc<ShardContext<DmaStorage>>,
    pipelined: bool,
) -> shardwal::Result<bool> {
    while let Some(ev) = ctx.poll_control() {
        match ev {
            ControlEvent::Barrier(req) if pipelined => {
                let c = ctx.clone();
                glommio::spawn_local(async move {
                    let _ = c.complete_barrier(req, None).await;
                })
                .detach();
                while ctx.log().epoch() <= req.epoch && ctx.log().poisoned().is_none() {
                    futures_lite::future::yield_now().await;
                }
            }
            ControlEvent::Barrier(req) => {
                ctx.complete_barrier(req, None).await?;
            }
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// User-mode engine code: answers barriers, runs commands, naps [`NAP`]
/// when idle.
async fn engine(
    ctx: Rc<ShardContext<DmaStorage>>,
    cmds: Receiver<Cmd>,
    pipelined: bool,
) -> shardwal::Result<()> {
    let log = ctx.log().clone();
    let mut p = [0u8; PAYLOAD];
    for (i, b) in p.iter_mut().enumerate() {
        *b = i as u8;
    }
    loop {
        if !handle_control(&ctx, pipelined).await? {
            return Ok(());
        }
        match cmds.try_recv() {
            Ok(Cmd::Append { n, reply }) => {
                let t0 = Instant::now();
                for i in 0..n {
                    log.append(&p).await?;
                    if i % 64 == 63 && !handle_control(&ctx, pipelined).await? {
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
            Err(_) => glommio::timer::sleep(NAP).await,
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
    /// Engine code awaits each barrier's completion.
    User,
    /// Engine code completes barriers in a task of their own.
    Pipelined,
}

/// How long user-mode engines nap when idle (as long as the runtime's
/// default control poll in auto mode).
const NAP: Duration = Duration::from_micros(50);

/// Segments for the seal benchmark: small, so that a runtime starts quickly.
fn seal_shard_config() -> ShardConfig {
    ShardConfig {
        segment_size: 4 << 20,
        ..ShardConfig::default()
    }
}

fn rig(mode: Mode, epoch_interval: Option<Duration>) -> Rig {
    rig_with(mode, epoch_interval, ShardConfig::default())
}

fn rig_with(mode: Mode, epoch_interval: Option<Duration>, shard: ShardConfig) -> Rig {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..SHARDS)
        .map(|_| crossbeam_channel::unbounded::<Cmd>())
        .unzip();
    let cfg = RuntimeConfig {
        shards: Some(SHARDS),
        shard,
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
                Mode::User => engine(ctx, rx, false).await,
                Mode::Pipelined => engine(ctx, rx, true).await,
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

/// p50 and p99 of the samples.
fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
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
            samples: if full { 1_000 } else { 10 },
            rounds: if full { 5 } else { 1 },
            round: if full { 1_000_000 } else { 10_000 },
            polls: if full { 20 } else { 1 },
            lines: Vec::new(),
        }
    }
}

fn bench_seal(c: &mut Criterion, s: &mut Summary) {
    // Only one runtime is alive at a time: an idle one still wakes every
    // 50 µs per shard and would tax the other's measurement.
    let seal_rig = |mode| rig_with(mode, None, seal_shard_config());
    let mut pre = RawFile::new(true);
    let mut app = RawFile::new(false);

    let mut g = c.benchmark_group("epoch_seal");
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    for (name, mode) in [("auto", Mode::Auto), ("user", Mode::User)] {
        let r = seal_rig(mode);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| r.seal()).sum())
        });
        r.shutdown();
    }
    g.bench_function("raw_fdatasync_4k_prefilled", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| pre.write_sync()).sum())
    });
    g.bench_function("raw_fdatasync_4k_append", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| app.write_sync()).sum())
    });
    g.finish();

    // Interleaved blocks (a fresh runtime for each block of seals), so
    // that every variant sees the same background load: the machine is
    // shared. p50/p99 over all blocks.
    let block = 50;
    let (mut va, mut vu, mut vp, mut vq) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..s.samples.div_ceil(block) {
        for (mode, v) in [(Mode::Auto, &mut va), (Mode::User, &mut vu)] {
            let r = seal_rig(mode);
            r.seal(); // not counted: the first seal after a start
            v.extend((0..block).map(|_| r.seal()));
            r.shutdown();
        }
        vp.extend((0..block).map(|_| pre.write_sync()));
        vq.extend((0..block).map(|_| app.write_sync()));
    }
    let n = va.len();
    let [
        (auto50, auto99),
        (user50, user99),
        (pre50, pre99),
        (app50, app99),
    ] = [va, vu, vp, vq].map(percentiles);

    s.lines.push(format!(
        "epoch seal, {SHARDS} pinned shards, idle logs, {n} samples each in interleaved blocks of {block} (p50 / p99, µs):"
    ));
    for (name, p50, p99) in [
        ("seal, auto mode (50 µs control poll)", auto50, auto99),
        ("seal, user mode (50 µs naps)", user50, user99),
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
            if us(p50) <= us(pre50) + 100.0 {
                "met"
            } else {
                "MISSED"
            }
        ));
    }
}

fn bench_overhead(c: &mut Criterion, s: &mut Summary) {
    let ten = Some(Duration::from_millis(10));
    let variants = [
        ("append_128b_no_epochs", Mode::User, None),
        ("append_128b_epochs_10ms", Mode::User, ten),
        ("append_128b_epochs_10ms_pipelined", Mode::Pipelined, ten),
    ];
    let mut g = c.benchmark_group("epoch_overhead");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(BATCH * SHARDS as u64));
    for (name, mode, interval) in variants {
        let r = rig(mode, interval);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| r.append(BATCH)).sum())
        });
        r.shutdown();
    }
    g.finish();

    // Alternate the variants, each round on a fresh log, and compare medians.
    let round = s.round;
    let mut rates = vec![Vec::new(); variants.len()];
    let mut epochs = vec![Vec::new(); variants.len()];
    for _ in 0..s.rounds {
        for (k, (_, mode, interval)) in variants.iter().enumerate() {
            let r = rig(*mode, *interval);
            let sealed0 = r.rt.coordinator().sealed_epoch().0;
            let d = r.append(round);
            rates[k].push((round * SHARDS as u64) as f64 / d.as_secs_f64());
            epochs[k].push((r.rt.coordinator().sealed_epoch().0 - sealed0) as f64);
            r.shutdown();
        }
    }
    let meds: Vec<f64> = rates.into_iter().map(median).collect();
    s.lines.push(format!(
        "epoch overhead, {SHARDS} pinned shards x {round} appends of {PAYLOAD} B, median of {} alternating rounds:",
        s.rounds
    ));
    for (k, (name, _, _)) in variants.iter().enumerate() {
        s.lines.push(format!(
            "  {name:<36} {:>6.2} M records/s, {:>4} epochs sealed per round, ratio to no epochs {:.3}{}",
            meds[k] / 1e6,
            median(epochs[k].clone()),
            meds[k] / meds[0],
            if k == 0 {
                String::new()
            } else if meds[k] / meds[0] >= 0.9 {
                " (target >= 0.90: met)".into()
            } else {
                " (target >= 0.90: MISSED)".into()
            }
        ));
    }
}

fn bench_idle_poll(c: &mut Criterion, s: &mut Summary) {
    let mut g = c.benchmark_group("idle_poll");
    let r = rig(Mode::User, None);
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
