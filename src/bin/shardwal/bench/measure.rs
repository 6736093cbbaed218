//! Measurement and reporting: [`Measure`] is one system's run in a
//! workload (operations, bytes, wall time and an hdrhistogram of
//! per-operation latency in nanoseconds); [`Report`] is a workload's rows
//! and the ratios between them, printed as a table or as one JSON line.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::output::{json, table, units};

/// One system's measurement in a workload.
pub(super) struct Measure {
    /// The system's name in the report (`shardwal`, `raw_bufwriter`, ...).
    pub system: &'static str,
    /// Operations done.
    pub ops: u64,
    /// Payload bytes (or raw bytes) moved.
    pub bytes: u64,
    /// Wall time measured.
    pub elapsed: Duration,
    /// Per-operation latency, in nanoseconds.
    pub hist: Histogram<u64>,
}

impl Measure {
    /// An empty measurement of `system`.
    pub fn new(system: &'static str) -> Measure {
        Measure {
            system,
            ops: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds"),
        }
    }

    /// Record one operation's latency.
    pub fn record(&mut self, d: Duration) {
        self.hist.saturating_record(d.as_nanos().max(1) as u64);
    }

    /// Record `n` operations of latency `d` each.
    pub fn record_n(&mut self, d: Duration, n: u64) {
        let v = d.as_nanos().max(1) as u64;
        // Out of range only beyond the histogram's hour: such a sample is
        // not a latency worth keeping.
        let _ = self.hist.record_n(v, n);
    }

    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Bytes moved per second, in MiB.
    pub fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn q(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.value_at_quantile(q) as f64
        }
    }

    fn json(&self) -> MeasureJson {
        MeasureJson {
            system: self.system,
            ops: self.ops,
            bytes: self.bytes,
            seconds: json::round6(self.elapsed.as_secs_f64()),
            ops_per_sec: json::round6(self.ops_per_sec()),
            mib_per_sec: json::round6(self.mib_per_sec()),
            samples: self.hist.len(),
            p50_us: json::round6(self.q(0.5) / 1e3),
            p99_us: json::round6(self.q(0.99) / 1e3),
            p999_us: json::round6(self.q(0.999) / 1e3),
            max_us: json::round6(self.hist.max() as f64 / 1e3),
        }
    }
}

/// A workload's results.
pub(super) struct Report {
    /// The workload's name.
    pub name: &'static str,
    /// What was measured, in a sentence.
    pub what: String,
    /// What one operation is (`rec`, `op`).
    pub unit: &'static str,
    /// One measurement per system, in display order.
    pub rows: Vec<Measure>,
    /// (name, value): throughput and latency ratios.
    pub ratios: Vec<(String, f64)>,
}

/// One line of `bench --json`.
#[derive(Serialize)]
struct ReportJson<'a> {
    workload: &'static str,
    description: &'a str,
    unit: &'static str,
    results: Vec<MeasureJson>,
    #[serde(serialize_with = "json::ordered_map")]
    ratios: Vec<(String, f64)>,
}

/// One system's row of a workload.
#[derive(Serialize)]
struct MeasureJson {
    system: &'static str,
    ops: u64,
    bytes: u64,
    seconds: f64,
    ops_per_sec: f64,
    mib_per_sec: f64,
    samples: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

impl Report {
    /// The measurement of `system`.
    pub fn row(&self, system: &str) -> &Measure {
        self.rows
            .iter()
            .find(|m| m.system == system)
            .expect("measured system")
    }

    /// Add the throughput ratio of `a` over `b`.
    pub fn ratio_ops(&mut self, a: &str, b: &str) {
        let v = self.row(a).ops_per_sec() / self.row(b).ops_per_sec().max(1e-9);
        self.ratios.push((format!("{a} / {b} throughput"), v));
    }

    /// Add the bandwidth ratio of `a` over `b`.
    pub fn ratio_mib(&mut self, a: &str, b: &str) {
        let v = self.row(a).mib_per_sec() / self.row(b).mib_per_sec().max(1e-9);
        self.ratios.push((format!("{a} / {b} MiB/s"), v));
    }

    /// Add the median latency ratio of `a` over `b`.
    pub fn ratio_p50(&mut self, a: &str, b: &str) {
        let v = self.row(a).q(0.5) / self.row(b).q(0.5).max(1.0);
        self.ratios.push((format!("{a} / {b} p50 latency"), v));
    }

    /// Print the report as one line of JSON.
    pub fn print_json(&self) -> Result<(), crate::Fail> {
        json::print(&ReportJson {
            workload: self.name,
            description: &self.what,
            unit: self.unit,
            results: self.rows.iter().map(Measure::json).collect(),
            ratios: self
                .ratios
                .iter()
                .map(|(k, v)| (k.clone(), json::round6(*v)))
                .collect(),
        })
    }

    /// Print the report as a table and its ratios.
    pub fn print(&self) {
        println!("== {}: {}", self.name, self.what);
        let unit = format!(">{}/s", self.unit);
        let mut t = table::new(&[
            "system", ">ops", &unit, ">MiB/s", ">p50", ">p99", ">p99.9", ">max",
        ]);
        for m in &self.rows {
            t.add_row(vec![
                m.system.to_string(),
                m.ops.to_string(),
                units::rate(m.ops_per_sec()),
                format!("{:.1}", m.mib_per_sec()),
                units::nanos(m.q(0.5)),
                units::nanos(m.q(0.99)),
                units::nanos(m.q(0.999)),
                units::nanos(m.hist.max() as f64),
            ]);
        }
        print!("{}", table::render(&t, "  "));
        for (k, v) in &self.ratios {
            println!("  ratio {k}: {v:.2}");
        }
        println!();
    }
}
