//! The kill -9 torture loop (issue 14 §2): a child process writes a log and
//! reports what is durable on a pipe; the parent kills it with SIGKILL at a
//! random moment (during start-up and recovery, during a checkpoint's
//! snapshot, or anywhere), checks the directory read-only against what the
//! child reported, and starts the next child on the same directory, whose
//! own recovery is checked against the parent's prediction. Repeat.
//!
//! ```sh
//! cargo run --release --example torture -- --iterations 1000 --shards 3
//! cargo run --release --example torture -- --iterations 50 --mode runtime --seed 7 --dir /tmp/t
//! SHARDWAL_TORTURE_SEED=7 cargo run --release --example torture -- --iterations 120
//! ```
//!
//! Two workloads, chosen per iteration (`--mode mixed`, the default, runs
//! both, on two directories):
//!
//! - **runtime**: a `Runtime` of `--shards` shards (pinned one per core when
//!   there are enough cores, unpinned otherwise or with `--unpinned`). Its
//!   driver advances epochs at random intervals and takes checkpoints
//!   without waiting for them (up to two in flight); each shard's engine
//!   logs its input (input `k` of shard `s` is a record whose payload says
//!   `(s, epoch, k)`), commits its next input offset at every barrier, and
//!   at a checkpoint streams a snapshot of a few MiB (its input count and
//!   bytes derived from it) through `SnapshotWriter` while it goes on. On
//!   start it restores (snapshot + replay) and resumes its input at the
//!   replay plan's offset. The child reports on stdout: before each barrier,
//!   `COUNT s e first n` (epoch `e` of shard `s` holds inputs
//!   `first..first+n`); `SEALED e` once the coordinator has sealed `e`;
//!   `CKPT id e` once a checkpoint's manifest is durable; its restored
//!   state; its snapshots' start and end.
//! - **append**: `--shards` bare `ShardLog`s under `FsyncPolicy::EveryAppend`,
//!   one per executor, 16 appender tasks each, reporting `A s seq` when a
//!   record is appended (before it can reach the disk) and `D s seq` once
//!   `wait_durable` resolved.
//!
//! After each kill the parent runs the library's recovery read-only (the
//! scan of every shard on `ReadOnlyStorage`, then `recovery::plan`, as
//! `shardwal recover --dry-run` does) and reads every shard with
//! `ShardReader` (and, for the runtime, `MergedReader`) up to the planned
//! cut. It checks: nothing acknowledged is lost (every sealed epoch reported
//! is sealed, with exactly the records the child counted in it; every
//! durable record is there); nothing is invented or duplicated (every
//! record is one the child appended, with its payload, once); no record of
//! an unsealed epoch is replayed; seqs are dense; the sealed epoch and the
//! log's end never go back; a start killed before it finished leaves the
//! same plan; the replay plan's positions and source offsets match the
//! records replayed (snapshot count + replayed inputs = committed offset,
//! so the engine is exactly-once); the next child's `Runtime::start` plans
//! exactly what the parent predicted.
//!
//! Every failure prints the seed that reproduces the run (the workloads and
//! kill delays; the kill's exact instant depends on timing) and keeps the
//! directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use shardwal::rng::SplitMix;
use shardwal::runtime::available_cores;

mod check_append;
mod check_runtime;
mod child;
mod kill;
mod payload;
mod protocol;
mod read_only;

use check_append::{AppendModel, verify_append};
use check_runtime::{RtModel, verify_runtime};
use child::{child_append, child_runtime};
use kill::{KillPlan, run_and_kill};
use protocol::Line;

/// The environment variable that sets the seed (overridden by `--seed`).
const SEED_ENV: &str = "SHARDWAL_TORTURE_SEED";
/// A child that is never killed gives up after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);
/// Appender tasks per shard in the append workload.
const APPENDERS: usize = 16;

/// Which workload the iterations run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Both, chosen per iteration (3 runtime for 1 append), on two directories.
    Mixed,
    /// The multi-shard runtime with epochs and streamed checkpoints.
    Runtime,
    /// Bare `ShardLog`s under `FsyncPolicy::EveryAppend`.
    Append,
}

/// What a child process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ChildKind {
    /// The runtime workload.
    Runtime,
    /// The append workload.
    Append,
}

/// A false report a child makes on purpose (`--lie`), to show that the
/// checks catch it: a run with a lie must fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lie {
    /// Shard 0 reports one record more than it logged in its third epoch.
    Count,
    /// The first sealed epoch is reported 1000 epochs too high.
    Sealed,
    /// Shard 0 resumes its input one past the committed offset (an input
    /// lost, as if the source had been rewound wrongly).
    Offset,
    /// Append workload: shard 0 reports a record durable that was never
    /// appended.
    Durable,
}

/// The kill -9 torture loop for shardwal.
#[derive(Debug, Parser)]
#[command(about = "Kill a shardwal writer with SIGKILL again and again and check every recovery")]
struct Options {
    /// Iterations (one child killed per iteration).
    #[arg(long, default_value_t = 100)]
    iterations: u64,
    /// Shards per child (more than the cores: unpinned).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Seed of the run (default: $SHARDWAL_TORTURE_SEED, else the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Directory to work in (default: a new one under the temp dir, removed
    /// after a successful run; a given one is left in place).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Which workload.
    #[arg(long, value_enum, default_value_t = Mode::Mixed)]
    mode: Mode,
    /// Start a fresh log directory every this many iterations of a workload
    /// (0: never), so that kills also land in the first start of a log.
    #[arg(long, default_value_t = 40)]
    rotate: u64,
    /// Never pin the shards' executors.
    #[arg(long)]
    unpinned: bool,
    /// Print one line per iteration.
    #[arg(long, short)]
    verbose: bool,
    /// Self-check: make the children report something false; the run must
    /// then fail.
    #[arg(long, value_enum, hide = true)]
    lie: Option<Lie>,
    /// Internal: run as the child process of this kind.
    #[arg(long, value_enum, hide = true)]
    child: Option<ChildKind>,
}

fn main() {
    let opts = Options::parse();
    if let Some(kind) = opts.child {
        let dir = opts.dir.clone().expect("a child is given --dir");
        let seed = opts.seed.unwrap_or(0);
        match kind {
            ChildKind::Runtime => child_runtime(&dir, opts.shards, seed, opts.unpinned, opts.lie),
            ChildKind::Append => child_append(&dir, opts.shards, seed, opts.unpinned, opts.lie),
        }
        return;
    }
    std::process::exit(parent(opts));
}

/// Figures of a run.
#[derive(Debug, Default)]
struct Figures {
    iterations: u64,
    runtime_iterations: u64,
    append_iterations: u64,
    /// Killed before the child began its start (process start-up).
    killed_exec: u64,
    /// Killed inside `Runtime::start` / `ShardLog::open` (recovery).
    killed_in_start: u64,
    /// ... of which inside `Runtime::start`.
    killed_in_runtime_start: u64,
    /// ... of which on a directory that held a log already.
    killed_in_recovery: u64,
    /// ... of which in the first start of a new log.
    killed_in_first_start: u64,
    /// Killed with a snapshot being streamed.
    killed_in_snapshot: u64,
    /// Kills that found snapshot files newer than the newest manifest.
    snapshot_files_in_flight: u64,
    /// Snapshot kills whose child never began one before the deadline.
    snapshot_waits_missed: u64,
    /// Child starts whose replay plan was compared with the prediction.
    starts_checked: u64,
    /// Epochs newly sealed and verified (per shard, summed over shards / K).
    epochs_verified: u64,
    /// Epochs the children acknowledged sealed (the highest, per kill, summed
    /// over the increase).
    epochs_acked: u64,
    /// Data records of newly sealed epochs verified against the counts.
    runtime_records_verified: u64,
    /// Records read back and checked, over every pass (the same record is
    /// read again after every kill).
    records_read: u64,
    /// Records replayed by the children on start (checked by them).
    records_replayed: u64,
    /// Checkpoints the children acknowledged durable.
    checkpoints_acked: u64,
    /// Records reported durable under EveryAppend, all found.
    append_durable_acked: u64,
    /// Records newly recovered in the append workload.
    append_records_verified: u64,
    failures: u64,
}

/// Exponential moving average of durations.
fn ema(avg: &mut Duration, x: Duration) {
    *avg = (*avg * 7 + x) / 8;
}

fn parent(o: Options) -> i32 {
    let seed = o
        .seed
        .or_else(|| std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    if o.shards == 0 {
        eprintln!("--shards must be at least 1");
        return 2;
    }
    let cores = available_cores().len();
    let pinned = !o.unpinned && o.shards <= cores;
    let (root, temp) = match &o.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("shardwal-torture-{}", std::process::id())),
            true,
        ),
    };
    if let Err(e) = std::fs::create_dir_all(&root) {
        eprintln!("create {}: {e}", root.display());
        return 2;
    }
    let mode = format!("{:?}", o.mode).to_lowercase();
    let repro = |it: u64| {
        format!(
            "reproduce: {SEED_ENV}={seed} cargo run --release --example torture -- --iterations {} --shards {} --mode {mode} --rotate {}{}",
            it + 1,
            o.shards,
            o.rotate,
            if o.unpinned { " --unpinned" } else { "" }
        ) + &o
            .lie
            .map_or(String::new(), |l| format!(" --lie {l:?}").to_lowercase())
    };
    println!(
        "torture: {SEED_ENV}={seed}, {} iterations, {} shards on {cores} cores ({}), mode {:?}, in {}",
        o.iterations,
        o.shards,
        if pinned { "pinned" } else { "unpinned" },
        o.mode,
        root.display()
    );
    let t0 = Instant::now();
    let mut rng = SplitMix(seed);
    let mut f = Figures::default();
    let mut rt_model = RtModel::default();
    let mut ap_model = AppendModel::default();
    let (mut rt_gen, mut ap_gen) = (0u64, 0u64);
    let (mut rt_iters, mut ap_iters) = (0u64, 0u64);
    let mut est_start = Duration::from_millis(150);
    let mut est_snap = Duration::from_millis(20);
    let dir_of = |kind: ChildKind, generation: u64| {
        root.join(format!(
            "{}-{generation:04}",
            match kind {
                ChildKind::Runtime => "runtime",
                ChildKind::Append => "append",
            }
        ))
    };
    let mut failed_dir = None;
    for it in 0..o.iterations {
        let kind = match o.mode {
            Mode::Runtime => ChildKind::Runtime,
            Mode::Append => ChildKind::Append,
            Mode::Mixed => {
                if rng.below(4) == 0 {
                    ChildKind::Append
                } else {
                    ChildKind::Runtime
                }
            }
        };
        // A fresh directory now and then (the old one removed).
        let (iters, generation) = match kind {
            ChildKind::Runtime => (&mut rt_iters, &mut rt_gen),
            ChildKind::Append => (&mut ap_iters, &mut ap_gen),
        };
        if o.rotate > 0 && *iters > 0 && iters.is_multiple_of(o.rotate) {
            let _ = std::fs::remove_dir_all(dir_of(kind, *generation));
            *generation += 1;
            match kind {
                ChildKind::Runtime => rt_model = RtModel::default(),
                ChildKind::Append => ap_model = AppendModel::default(),
            }
        }
        *iters += 1;
        let dir = dir_of(kind, *generation);
        let had_log = dir.join(shardwal::log_dir::LOG_ID_FILE).exists();
        let child_seed = rng.next_u64();
        let r = rng.below(100);
        let start_ms = (est_start.as_micros() as u64 * 6 / 5).max(1);
        // The first start of a log is killed more often: it creates
        // everything at once.
        let startup = if had_log { 30 } else { 60 };
        let plan = match kind {
            _ if r < startup => KillPlan::Startup(Duration::from_micros(rng.below(start_ms))),
            ChildKind::Runtime if r < startup + 25 => KillPlan::Snapshot(Duration::from_micros(
                rng.below(est_snap.as_micros() as u64 + 1),
            )),
            _ => KillPlan::Any(Duration::from_millis(rng.below(1200))),
        };
        let outcome = run_and_kill(kind, &dir, &o, child_seed, plan).and_then(|ch| {
            if let Some(t) = ch.start_time {
                ema(&mut est_start, t);
            }
            for &t in &ch.snap_times {
                ema(&mut est_snap, t);
            }
            let began = ch.lines.iter().any(|l| matches!(l, Line::Begin));
            let started = ch
                .lines
                .iter()
                .any(|l| matches!(l, Line::Started | Line::Ready { .. }));
            if !began {
                f.killed_exec += 1;
            } else if !started {
                f.killed_in_start += 1;
                if kind == ChildKind::Runtime {
                    f.killed_in_runtime_start += 1;
                }
                if had_log {
                    f.killed_in_recovery += 1;
                } else {
                    f.killed_in_first_start += 1;
                }
            }
            if ch.snap_in_flight {
                f.killed_in_snapshot += 1;
            }
            if ch.no_snapshot {
                f.snapshot_waits_missed += 1;
            }
            let r = match kind {
                ChildKind::Runtime => verify_runtime(&dir, o.shards, &mut rt_model, &ch, &mut f),
                ChildKind::Append => verify_append(&dir, o.shards, &mut ap_model, &ch, &mut f),
            };
            r.map_err(|e| format!("{e}\nthe child's stderr:\n{}", ch.stderr))
        });
        f.iterations += 1;
        match kind {
            ChildKind::Runtime => f.runtime_iterations += 1,
            ChildKind::Append => f.append_iterations += 1,
        }
        if o.verbose {
            println!(
                "{it}: {kind:?} {plan:?} → sealed {} until {:?} / append ends {:?}",
                rt_model.sealed, rt_model.until, ap_model.next
            );
        }
        if let Err(e) = outcome {
            f.failures += 1;
            eprintln!(
                "FAILED at iteration {it} ({kind:?}, kill {plan:?}, directory {}):\n{e}",
                dir.display()
            );
            eprintln!("{}", repro(it));
            failed_dir = Some(dir);
            break;
        }
        if !o.verbose && (it + 1) % 100 == 0 {
            println!(
                "  {} iterations, {:.0} s",
                it + 1,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let wall = t0.elapsed();
    println!("{f:#?}");
    println!(
        "torture: {} iterations ({} runtime, {} append), {} shards, {} failures, wall {:.1} s; \
         killed in start-up {} (in Runtime::start {}; on an existing log {}, in a log's first start {}), before start {}, \
         during a snapshot {} (snapshot files in flight {}); epochs verified {}, acked {}; \
         runtime records verified {}; append durable acks {}, records verified {}; records read {}",
        f.iterations,
        f.runtime_iterations,
        f.append_iterations,
        o.shards,
        f.failures,
        wall.as_secs_f64(),
        f.killed_in_start,
        f.killed_in_runtime_start,
        f.killed_in_recovery,
        f.killed_in_first_start,
        f.killed_exec,
        f.killed_in_snapshot,
        f.snapshot_files_in_flight,
        f.epochs_verified,
        f.epochs_acked,
        f.runtime_records_verified,
        f.append_durable_acked,
        f.append_records_verified,
        f.records_read
    );
    if f.failures > 0 {
        if let Some(d) = failed_dir {
            eprintln!("kept {}", d.display());
        }
        eprintln!("{SEED_ENV}={seed}");
        return 1;
    }
    if temp {
        let _ = std::fs::remove_dir_all(&root);
    }
    0
}
