//! `shardwal-compare`: shardwal side by side with the Rust WALs its users
//! would otherwise pick, a raw `BufWriter` + `fdatasync` baseline, and the
//! device's own limits (an O_DIRECT writer and reader, and fio), all in one
//! run on one machine. See `docs/BENCHMARKS.md` for the method.
//!
//! Runs are interleaved: for each repetition, for each workload, for each
//! system (in an order rotated by one every repetition), in a fresh
//! directory that is removed afterwards. Figures are medians over the
//! repetitions; the ratios are computed from the medians of this run only.

mod device;
mod plot;
mod report;
mod results;
mod system;
mod systems;
mod workload;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::results::{Run, figures};
use crate::system::{Gate, Res, Role, System, ThreadOutcome};
use crate::workload::{Counts, SMALL, WorkloadKind};

/// Compare shardwal with peer WAL crates, a raw baseline and the device's limits.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Repetitions (interleaved; figures are medians over them) [default 3; quick 1].
    #[arg(long)]
    reps: Option<usize>,
    /// Data directory (on the disk to measure). Each run gets a fresh
    /// subdirectory, removed afterwards.
    #[arg(long, default_value = "/tmp/shardwal-compare")]
    dir: PathBuf,
    /// Small counts and one repetition: a smoke test of every system and workload.
    #[arg(long)]
    quick: bool,
    /// Workloads to run (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<WorkloadKind>,
    /// Systems to run, by name (default: all in this build).
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
    /// Threads, each with its own log, pinned to its own core.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// `buffered`: 128 B records per thread [default 1,000,000; quick 20,000].
    #[arg(long)]
    buffered_records: Option<u64>,
    /// `large`: 4 KiB records per thread [default 65,536; quick 2,048].
    #[arg(long)]
    large_records: Option<u64>,
    /// `group`: 128 B records per thread [default 200,000; quick 6,400].
    #[arg(long)]
    group_records: Option<u64>,
    /// `group`: records per durable point.
    #[arg(long, default_value_t = 64)]
    group_size: u64,
    /// `sync`: 1 KiB records per thread, each durable [default 5,000; quick 200].
    #[arg(long)]
    sync_records: Option<u64>,
    /// Blocks in flight per thread for the O_DIRECT writer and reader.
    #[arg(long, default_value_t = 4)]
    odirect_qd: usize,
    /// Skip the fio calibration jobs.
    #[arg(long)]
    no_fio: bool,
    /// fio file size in MiB [default 1024; quick 64].
    #[arg(long)]
    fio_size_mib: Option<u64>,
    /// Do not drop the page cache before `recover` (then it is not cold).
    #[arg(long)]
    no_drop_caches: bool,
    /// Write every figure as JSON to this file (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write SVG plots into this directory (e.g. docs/bench).
    #[arg(long)]
    plots: Option<PathBuf>,
}

/// The JSON document.
#[derive(Serialize)]
struct Output<'a> {
    machine: device::Machine,
    command: String,
    reps: usize,
    threads: usize,
    counts: &'a Counts,
    cold_recover: bool,
    notes: BTreeMap<&'static str, &'static str>,
    fio: Vec<(usize, device::Fio)>,
    fio_note: Option<String>,
    runs: &'a [Run],
    medians: &'a [results::Median],
    ratios: &'a [results::Ratio],
    latency_cdf: BTreeMap<String, BTreeMap<String, Vec<(f64, f64)>>>,
}

fn counts(a: &Args) -> Counts {
    let q = a.quick;
    Counts {
        buffered_records: a
            .buffered_records
            .unwrap_or(if q { 20_000 } else { 1_000_000 }),
        large_records: a.large_records.unwrap_or(if q { 2_048 } else { 65_536 }),
        group_records: a.group_records.unwrap_or(if q { 6_400 } else { 200_000 }),
        group_size: a.group_size.max(1),
        sync_records: a.sync_records.unwrap_or(if q { 200 } else { 5_000 }),
    }
}

/// Run `f(thread)` on `threads` threads, thread `t` pinned to `cpus[t]`.
fn on_threads(
    threads: usize,
    cpus: &[usize],
    f: &(dyn Fn(usize, &Gate) -> Res<ThreadOutcome> + Sync),
) -> Res<Vec<ThreadOutcome>> {
    let gate = Gate::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let gate = &gate;
                s.spawn(move || {
                    let cpu = cpus[t % cpus.len()];
                    core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                    let r = f(t, gate);
                    if r.is_err() {
                        gate.abort();
                    }
                    r
                })
            })
            .collect();
        let results: Vec<Res<ThreadOutcome>> = handles
            .into_iter()
            .enumerate()
            .map(|(t, h)| {
                h.join().unwrap_or_else(|p| {
                    gate.abort();
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Err(format!("thread {t} panicked: {msg}"))
                })
            })
            .collect();
        results.into_iter().collect()
    })
}

fn thread_dir(base: &Path, t: usize) -> Res<PathBuf> {
    let d = base.join(format!("t{t}"));
    std::fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
    Ok(d)
}

fn remove(dir: &Path) {
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(dir)
    {
        eprintln!("warning: could not remove {}: {e}", dir.display());
    }
}

struct Ctx<'a> {
    args: &'a Args,
    counts: Counts,
    cpus: Vec<usize>,
    workloads: Vec<WorkloadKind>,
    cold: bool,
}

/// Run one system on one workload in repetition `rep`.
fn run_one(c: &Ctx<'_>, sys: &dyn System, w: WorkloadKind, rep: usize) -> Res<Vec<ThreadOutcome>> {
    let sys_dir = c.args.dir.join(format!("rep{rep}")).join(sys.name());
    let dir = sys_dir.join(w.name());
    let threads = c.args.threads;
    match w {
        WorkloadKind::Recover => {
            let src = sys_dir.join(WorkloadKind::Buffered.name());
            if !src.exists() {
                return Err("no buffered log to recover (buffered failed or was not run)".into());
            }
            if c.cold {
                device::drop_caches()?;
            }
            let n = c.counts.buffered_records;
            let r = on_threads(threads, &c.cpus, &|t, g| {
                sys.run_recover(&src.join(format!("t{t}")), t, n, SMALL, g)
            });
            remove(&src);
            r
        }
        WorkloadKind::Open => {
            remove(&dir);
            let r = on_threads(threads, &c.cpus, &|t, g| {
                sys.run_open(&thread_dir(&dir, t)?, t, g)
            });
            remove(&dir);
            r
        }
        _ => {
            let spec = c.counts.spec(w).expect("a write workload");
            remove(&dir);
            let r = on_threads(threads, &c.cpus, &|t, g| {
                sys.run_write(&spec, &thread_dir(&dir, t)?, t, g)
            });
            // Keep the buffered log for the recover pass of this repetition.
            let keep = w == WorkloadKind::Buffered
                && r.is_ok()
                && c.workloads.contains(&WorkloadKind::Recover)
                && sys.supports(WorkloadKind::Recover);
            if !keep {
                remove(&dir);
            }
            r
        }
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = real_main(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main(mut args: Args) -> Res<()> {
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let threads = args.threads.max(1);
    args.threads = threads;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let cpus: Vec<usize> = if cores.is_empty() {
        vec![0]
    } else {
        (0..threads).map(|t| cores[t % cores.len()].id).collect()
    };
    let all = systems::all(&cpus, args.odirect_qd);
    let names: Vec<&str> = all.iter().map(|s| s.name()).collect();
    for s in &args.systems {
        if !names.contains(&s.as_str()) {
            return Err(format!(
                "unknown system {s:?}; this build has {}",
                names.join(", ")
            ));
        }
    }
    let systems: Vec<&dyn System> = all
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| args.systems.is_empty() || args.systems.iter().any(|n| n == s.name()))
        .collect();
    let mut workloads: Vec<WorkloadKind> = if args.workloads.is_empty() {
        WorkloadKind::ALL.to_vec()
    } else {
        args.workloads.clone()
    };
    workloads.sort();
    workloads.dedup();
    let counts = counts(&args);
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("create {}: {e}", args.dir.display()))?;

    let mut cold = !args.no_drop_caches;
    if cold && workloads.contains(&WorkloadKind::Recover) && device::drop_caches().is_err() {
        eprintln!("warning: cannot drop the page cache (not root?): recover runs warm");
        cold = false;
    }
    let fio_on = !args.no_fio && device::fio_available();
    let mut fio_note = None;
    if !args.no_fio && !fio_on {
        fio_note =
            Some("fio is not installed (apt-get install -y fio): calibration skipped".to_string());
        eprintln!("note: {}", fio_note.as_deref().unwrap_or_default());
    }
    let fio_size = args
        .fio_size_mib
        .unwrap_or(if args.quick { 64 } else { 1024 });
    let fio_runtime = if args.quick { 5 } else { 30 };

    let ctx = Ctx {
        args: &args,
        counts: counts.clone(),
        cpus: cpus.clone(),
        workloads: workloads.clone(),
        cold,
    };
    let machine = device::machine(&args.dir, &cpus);
    eprintln!(
        "shardwal-compare: {reps} rep(s), {threads} threads on CPUs {cpus:?}, systems {}, workloads {}, data in {}",
        systems
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(","),
        workloads
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>()
            .join(","),
        args.dir.display()
    );

    let mut runs: Vec<Run> = Vec::new();
    let mut fio: Vec<(usize, device::Fio)> = Vec::new();
    let mut hists: BTreeMap<(WorkloadKind, String), (Role, Histogram<u64>)> = BTreeMap::new();
    for rep in 1..=reps {
        if fio_on {
            let d = args.dir.join(format!("rep{rep}")).join("fio");
            match device::run_fio(&d, fio_size, fio_runtime) {
                Ok(f) => {
                    eprintln!(
                        "rep {rep} fio: write {:.0} MiB/s, read {:.0} MiB/s, 4k write+fdatasync {:.0} ops/s",
                        f.seq_write_mib_s, f.seq_read_mib_s, f.write_fdatasync_4k_ops_s
                    );
                    fio.push((rep, f));
                }
                Err(e) => {
                    eprintln!("warning: rep {rep} fio failed: {e}");
                    fio_note = Some(format!("fio failed: {e}"));
                }
            }
            remove(&d);
        }
        for &w in &workloads {
            // Rotate the system order each repetition so no system always runs first.
            let n = systems.len();
            for i in 0..n {
                let sys = systems[(i + rep - 1) % n];
                if !sys.supports(w) {
                    continue;
                }
                let t0 = std::time::Instant::now();
                let r = run_one(&ctx, sys, w, rep);
                let mut run = Run {
                    rep,
                    workload: w,
                    system: sys.name().to_string(),
                    role: sys.role(),
                    error: None,
                    threads: Vec::new(),
                    aggregate: None,
                };
                match r {
                    Ok(outs) => {
                        let (tf, agg, merged) = figures(&outs);
                        eprintln!(
                            "rep {rep} {:<9} {:<12} {:>12.0} rec/s {:>9.1} MiB/s{}{}  ({:.1} s)",
                            w.name(),
                            sys.name(),
                            agg.records_per_s,
                            agg.mib_per_s,
                            agg.latency.map_or(String::new(), |l| format!(
                                "  p50 {:.0} µs p99 {:.0} µs",
                                l.p50_us, l.p99_us
                            )),
                            agg.open_ms
                                .map_or(String::new(), |o| format!("  open {o:.2} ms")),
                            t0.elapsed().as_secs_f64()
                        );
                        if let Some(m) = merged {
                            hists
                                .entry((w, sys.name().to_string()))
                                .and_modify(|(_, h)| h.add(&m).expect("same bounds"))
                                .or_insert((sys.role(), m));
                        }
                        run.threads = tf;
                        run.aggregate = Some(agg);
                    }
                    Err(e) => {
                        eprintln!("rep {rep} {:<9} {:<12} FAILED: {e}", w.name(), sys.name());
                        run.error = Some(e);
                    }
                }
                runs.push(run);
            }
        }
        remove(&args.dir.join(format!("rep{rep}")));
    }

    let meds = results::medians(&runs);
    let ratios = results::ratios(&meds);
    let notes: BTreeMap<&'static str, &'static str> =
        systems.iter().map(|s| (s.name(), s.sync_note())).collect();

    // The tables go to stdout, or to stderr when the JSON does.
    let json_stdout = args.json.as_deref() == Some(Path::new("-"));
    let mut out: Box<dyn Write> = if json_stdout {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    };
    let p = |out: &mut Box<dyn Write>, s: String| writeln!(out, "{s}").map_err(|e| e.to_string());
    p(
        &mut out,
        format!(
            "\nshardwal-compare: medians of {reps} interleaved rep(s), {threads} threads, per-thread counts: buffered {} × 128 B, large {} × 4 KiB, group {} × 128 B durable every {}, sync {} × 1 KiB each durable; recover {}",
            counts.buffered_records,
            counts.large_records,
            counts.group_records,
            counts.group_size,
            counts.sync_records,
            if cold {
                "cold (page cache dropped)"
            } else {
                "WARM (page cache not dropped)"
            }
        ),
    )?;
    p(&mut out, report::medians_table(&meds, reps).to_string())?;
    p(&mut out, report::ratios_table(&ratios).to_string())?;
    if !fio.is_empty() {
        let f: Vec<device::Fio> = fio.iter().map(|(_, f)| f.clone()).collect();
        p(&mut out, report::fio_table(&f).to_string())?;
    } else if let Some(n) = &fio_note {
        p(&mut out, format!("fio: {n}"))?;
    }
    let note_rows: Vec<(&str, &str)> = notes.iter().map(|(k, v)| (*k, *v)).collect();
    p(&mut out, report::sync_table(&note_rows).to_string())?;
    drop(out);

    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut files = plot::throughput(dir, &meds, reps)?;
        files.extend(plot::latency_cdfs(dir, &hists)?);
        for f in files {
            eprintln!("wrote {}", f.display());
        }
    }
    if let Some(path) = &args.json {
        let mut latency_cdf: BTreeMap<String, BTreeMap<String, Vec<(f64, f64)>>> = BTreeMap::new();
        for ((w, name), (_, h)) in &hists {
            let pts: Vec<(f64, f64)> = h
                .iter_quantiles(1)
                .map(|v| (v.value_iterated_to() as f64 / 1e3, v.quantile_iterated_to()))
                .collect();
            latency_cdf
                .entry(w.name().to_string())
                .or_default()
                .insert(name.clone(), pts);
        }
        let doc = Output {
            machine,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            reps,
            threads,
            counts: &counts,
            cold_recover: cold,
            notes,
            fio,
            fio_note,
            runs: &runs,
            medians: &meds,
            ratios: &ratios,
            latency_cdf,
        };
        let text = serde_json::to_string_pretty(&doc).map_err(|e| format!("JSON: {e}"))?;
        if path.as_os_str() == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    if runs.iter().any(|r| r.error.is_some()) {
        return Err("some runs failed (see the table)".into());
    }
    Ok(())
}
