//! Figures of one run, medians over repetitions, and the ratios of the
//! issue's targets, all computed within one invocation.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::system::{Role, ThreadOutcome};
use crate::workload::WorkloadKind;

const MIB: f64 = (1u64 << 20) as f64;

/// Latency percentiles of the durable points, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Latency {
    /// Durable points measured (both threads).
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Latency {
    /// The percentiles of `h` (nanoseconds).
    pub fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1e3;
        Latency {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// One thread's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadFigures {
    /// Records written or read.
    pub records: u64,
    /// Payload bytes written or read (for device-limit rows: bytes moved).
    pub payload_bytes: u64,
    /// Measured time in seconds.
    pub elapsed_s: f64,
    /// Records per second.
    pub records_per_s: f64,
    /// Payload MiB per second.
    pub mib_per_s: f64,
    /// Time to open, in milliseconds (recover, open).
    pub open_ms: Option<f64>,
    /// This thread's latency percentiles (group, sync).
    pub latency: Option<Latency>,
}

/// The figures of a run: all threads together.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Figures {
    /// All threads' records over the slowest thread's time.
    pub records_per_s: f64,
    /// All threads' payload MiB over the slowest thread's time.
    pub mib_per_s: f64,
    /// The slowest thread's time in seconds.
    pub elapsed_s: f64,
    /// The slowest thread's time to open, in milliseconds.
    pub open_ms: Option<f64>,
    /// Percentiles over both threads' durable points.
    pub latency: Option<Latency>,
    /// Per-thread records per second.
    pub thread_records_per_s: Vec<f64>,
}

/// One system on one workload in one repetition.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Repetition, from 1.
    pub rep: usize,
    /// Workload.
    pub workload: WorkloadKind,
    /// System name.
    pub system: String,
    /// What the row is.
    pub role: Role,
    /// Why the run failed, if it did.
    pub error: Option<String>,
    /// Per-thread figures.
    pub threads: Vec<ThreadFigures>,
    /// All threads together.
    pub aggregate: Option<Figures>,
}

/// Figures of `outcomes` (one per thread); also returns the merged histogram.
pub fn figures(
    outcomes: &[ThreadOutcome],
) -> (Vec<ThreadFigures>, Figures, Option<Histogram<u64>>) {
    let threads: Vec<ThreadFigures> = outcomes
        .iter()
        .map(|o| {
            let s = o.elapsed.as_secs_f64().max(1e-9);
            ThreadFigures {
                records: o.records,
                payload_bytes: o.payload_bytes,
                elapsed_s: s,
                records_per_s: o.records as f64 / s,
                mib_per_s: o.payload_bytes as f64 / MIB / s,
                open_ms: o.open.map(|d| d.as_secs_f64() * 1e3),
                latency: o.latency_ns.as_ref().map(Latency::of),
            }
        })
        .collect();
    let elapsed = threads.iter().map(|t| t.elapsed_s).fold(0.0, f64::max);
    let records: u64 = threads.iter().map(|t| t.records).sum();
    let bytes: u64 = threads.iter().map(|t| t.payload_bytes).sum();
    let mut merged: Option<Histogram<u64>> = None;
    for h in outcomes.iter().filter_map(|o| o.latency_ns.as_ref()) {
        match merged.as_mut() {
            Some(m) => m.add(h).expect("same histogram bounds"),
            None => merged = Some(h.clone()),
        }
    }
    let agg = Figures {
        records_per_s: records as f64 / elapsed.max(1e-9),
        mib_per_s: bytes as f64 / MIB / elapsed.max(1e-9),
        elapsed_s: elapsed,
        open_ms: threads.iter().filter_map(|t| t.open_ms).reduce(f64::max),
        latency: merged.as_ref().map(Latency::of),
        thread_records_per_s: threads.iter().map(|t| t.records_per_s).collect(),
    };
    (threads, agg, merged)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians over the successful repetitions of one system on one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Median {
    /// Workload.
    pub workload: WorkloadKind,
    /// System name.
    pub system: String,
    /// What the row is.
    pub role: Role,
    /// Repetitions that succeeded (the medians are over these).
    pub reps_ok: usize,
    /// Repetitions that failed, with their errors.
    pub errors: Vec<String>,
    /// Median of each figure, taken separately.
    pub figures: Figures,
}

/// The medians of every (workload, system) in `runs`, in run order.
pub fn medians(runs: &[Run]) -> Vec<Median> {
    let mut order: Vec<(WorkloadKind, String)> = Vec::new();
    let mut groups: BTreeMap<(WorkloadKind, String), Vec<&Run>> = BTreeMap::new();
    for r in runs {
        let key = (r.workload, r.system.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    order.sort_by_key(|(w, _)| *w);
    order
        .into_iter()
        .map(|key| {
            let rs = &groups[&key];
            let ok: Vec<&Figures> = rs.iter().filter_map(|r| r.aggregate.as_ref()).collect();
            let m = |f: &dyn Fn(&Figures) -> f64| median(ok.iter().map(|x| f(x)).collect());
            let mo = |f: &dyn Fn(&Figures) -> Option<f64>| {
                let v: Vec<f64> = ok.iter().filter_map(|x| f(x)).collect();
                (!v.is_empty()).then(|| median(v))
            };
            let latency = ok.iter().any(|f| f.latency.is_some()).then(|| Latency {
                count: ok
                    .iter()
                    .filter_map(|f| f.latency.map(|l| l.count))
                    .max()
                    .unwrap_or(0),
                p50_us: mo(&|f| f.latency.map(|l| l.p50_us)).unwrap_or(f64::NAN),
                p99_us: mo(&|f| f.latency.map(|l| l.p99_us)).unwrap_or(f64::NAN),
                p999_us: mo(&|f| f.latency.map(|l| l.p999_us)).unwrap_or(f64::NAN),
                max_us: mo(&|f| f.latency.map(|l| l.max_us)).unwrap_or(f64::NAN),
            });
            let nthreads = ok
                .iter()
                .map(|f| f.thread_records_per_s.len())
                .max()
                .unwrap_or(0);
            let figures = Figures {
                records_per_s: m(&|f| f.records_per_s),
                mib_per_s: m(&|f| f.mib_per_s),
                elapsed_s: m(&|f| f.elapsed_s),
                open_ms: mo(&|f| f.open_ms),
                latency,
                thread_records_per_s: (0..nthreads)
                    .map(|t| m(&|f| f.thread_records_per_s.get(t).copied().unwrap_or(f64::NAN)))
                    .collect(),
            };
            Median {
                workload: key.0,
                system: key.1.clone(),
                role: rs[0].role,
                reps_ok: ok.len(),
                errors: rs.iter().filter_map(|r| r.error.clone()).collect(),
                figures,
            }
        })
        .collect()
}

/// One ratio of the targets.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// Workload.
    pub workload: WorkloadKind,
    /// What is compared, e.g. "records/s: shardwal / best durable peer (okaywal)".
    pub what: String,
    /// The ratio (or, for the open time, milliseconds).
    pub value: f64,
    /// The target.
    pub target: String,
}

/// The ratios, from the medians of one invocation.
pub fn ratios(meds: &[Median]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for w in WorkloadKind::ALL {
        let of = |role: Role| {
            meds.iter()
                .filter(move |m| m.workload == w && m.role == role && m.reps_ok > 0)
        };
        let Some(sw) = of(Role::Subject).next() else {
            continue;
        };
        let mut push = |what: String, value: f64, target: &str| {
            if value.is_finite() {
                out.push(Ratio {
                    workload: w,
                    what,
                    value,
                    target: target.to_string(),
                })
            }
        };
        let f = &sw.figures;
        if w == WorkloadKind::Open {
            if let Some(ms) = f.open_ms {
                push("shardwal open → first append, ms".into(), ms, "≤ 10 ms");
            }
            let best = of(Role::Peer)
                .filter(|m| m.figures.open_ms.is_some())
                .min_by(|a, b| {
                    a.figures
                        .open_ms
                        .partial_cmp(&b.figures.open_ms)
                        .expect("finite")
                });
            if let (Some(ms), Some(b)) = (f.open_ms, best) {
                push(
                    format!("open time: shardwal / fastest peer ({})", b.system),
                    ms / b.figures.open_ms.unwrap_or(f64::NAN),
                    "",
                );
            }
            continue;
        }
        let best = of(Role::Peer)
            .max_by(|a, b| a.figures.records_per_s.total_cmp(&b.figures.records_per_s));
        let raw = of(Role::Raw).next();
        let dev = of(Role::DeviceLimit).next();
        let (t_peer, t_raw, t_dev) = match w {
            WorkloadKind::Buffered => ("≥ 1.5×", "≥ 1.0×", "≥ 0.80"),
            WorkloadKind::Large => ("≥ 1.3×", "", "≥ 0.90"),
            WorkloadKind::Group => ("≥ 1.5×", "", ""),
            WorkloadKind::Sync => ("≥ 1.2×", "", ""),
            WorkloadKind::Recover => ("", "", ""),
            WorkloadKind::Open => unreachable!(),
        };
        let unit = if w == WorkloadKind::Large {
            "payload MiB/s"
        } else {
            "records/s"
        };
        if let Some(b) = best {
            push(
                format!("{unit}: shardwal / best durable peer ({})", b.system),
                f.records_per_s / b.figures.records_per_s,
                t_peer,
            );
            if let (Some(l), Some(bl)) = (f.latency, b.figures.latency) {
                let (t50, t99) = match w {
                    WorkloadKind::Sync => ("≤ 0.8×", "≤ 1.0×"),
                    _ => ("", "≤ 1.0×"),
                };
                push(
                    format!("p50: shardwal / {}", b.system),
                    l.p50_us / bl.p50_us,
                    t50,
                );
                push(
                    format!("p99: shardwal / {}", b.system),
                    l.p99_us / bl.p99_us,
                    t99,
                );
            }
        }
        if let Some(r) = raw {
            push(
                format!("{unit}: shardwal / raw"),
                f.records_per_s / r.figures.records_per_s,
                t_raw,
            );
        }
        if let Some(d) = dev {
            let what = if w == WorkloadKind::Recover {
                "payload MiB/s: shardwal / O_DIRECT read"
            } else {
                "payload MiB/s: shardwal / O_DIRECT write"
            };
            push(what.into(), f.mib_per_s / d.figures.mib_per_s, t_dev);
        }
        if let (WorkloadKind::Group, Some(l)) = (w, f.latency) {
            push(
                "shardwal p99.9 / its own p50".into(),
                l.p999_us / l.p50_us,
                "≤ 3×",
            );
        }
    }
    out
}
