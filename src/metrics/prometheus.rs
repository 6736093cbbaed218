//! The Prometheus text rendering of the metrics (cargo feature
//! `prometheus`), through the `prometheus-client` crate's registry and its
//! Prometheus text encoder (format version 0.0.4).
//!
//! Metric names (every per-shard one has a `shard` label):
//!
//! | name | type |
//! |---|---|
//! | `shardwal_records_total`, `shardwal_appended_bytes_total`, `shardwal_writes_total`, `shardwal_syncs_total`, `shardwal_segment_rolls_total`, `shardwal_backpressure_total` | counter, per shard |
//! | `shardwal_next_seq`, `shardwal_durable_next`, `shardwal_epoch`, `shardwal_poisoned` | gauge, per shard |
//! | `shardwal_sync_latency_seconds` | histogram, per shard |
//! | `shardwal_epoch_seal_latency_seconds` | histogram |
//! | `shardwal_sealed_epoch` | gauge |
//! | `shardwal_recovery_*` (shards, segments, records, bytes, torn and repaired bytes, cut records, removed segments, duration in seconds) | gauge |
//!
//! A bare shard's [`ShardMetrics`] renders its own part and its recovery's.
//! The histograms' buckets are fixed (10 µs to 10 s) and filled from the
//! hdrhistogram behind each [`LatencySummary`], each value by the upper
//! edge of its hdrhistogram bucket (within 1 %), so a value just at a
//! bound may count in the next bucket; `_sum` is the hdrhistogram's mean
//! times its count.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry, Unit};

use super::{LatencySummary, RecoveryFigures, RuntimeMetrics, ShardMetrics};

/// Upper bounds of the latency histograms' buckets, in seconds (then +Inf).
const BUCKETS_S: [f64; 19] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
    250e-3, 500e-3, 1.0, 2.5, 5.0, 10.0,
];

type Labels = Vec<(&'static str, String)>;

/// A sample's value: whole numbers are written without a fraction.
#[derive(Debug, Clone, Copy)]
enum Num {
    U(u64),
    F(f64),
}

/// Values already taken, one per label set: counters or gauges.
#[derive(Debug)]
struct Values {
    ty: MetricType,
    rows: Vec<(Labels, Num)>,
}

impl EncodeMetric for Values {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, v) in &self.rows {
            let mut e = encoder.encode_family(labels)?;
            match (self.ty, *v) {
                (MetricType::Counter, Num::U(v)) => {
                    e.encode_counter::<NoLabelSet, _, u64>(&v, None)?
                }
                (MetricType::Counter, Num::F(v)) => {
                    e.encode_counter::<NoLabelSet, _, f64>(&v, None)?
                }
                (_, Num::U(v)) => e.encode_gauge(&v)?,
                (_, Num::F(v)) => e.encode_gauge(&v)?,
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.ty
    }
}

/// One latency histogram of a label set.
#[derive(Debug)]
struct HistogramRow {
    labels: Labels,
    sum_s: f64,
    count: u64,
    /// (upper bound in seconds, count in that bucket alone); the encoder
    /// makes them cumulative.
    buckets: Vec<(f64, u64)>,
}

/// Latency histograms, one per label set.
#[derive(Debug, Default)]
struct Latencies {
    rows: Vec<HistogramRow>,
}

impl Latencies {
    fn push(&mut self, labels: Labels, l: &LatencySummary) {
        let h = l.histogram();
        let mut buckets: Vec<(f64, u64)> = BUCKETS_S.iter().map(|&b| (b, 0)).collect();
        buckets.push((f64::INFINITY, 0));
        for v in h.iter_recorded() {
            let s = v.value_iterated_to() as f64 / 1e9;
            let i = BUCKETS_S
                .iter()
                .position(|&b| s <= b)
                .unwrap_or(BUCKETS_S.len());
            buckets[i].1 += v.count_at_value();
        }
        self.rows.push(HistogramRow {
            labels,
            sum_s: h.mean() * h.len() as f64 / 1e9,
            count: h.len(),
            buckets,
        });
    }
}

impl EncodeMetric for Latencies {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for r in &self.rows {
            encoder
                .encode_family(&r.labels)?
                .encode_histogram::<NoLabelSet>(r.sum_s, r.count, &r.buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Register `m` under `name`, with the `_bytes` or `_seconds` unit suffix
/// if `unit` says so (counters also get `_total`).
fn register(reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>, m: impl Metric) {
    match unit {
        Some(u) => reg.register_with_unit(name, help, u, m),
        None => reg.register(name, help, m),
    }
}

/// What a metric's value is measured in, for its name's suffix.
#[derive(Clone, Copy)]
enum In {
    Count,
    Bytes,
    Seconds,
}

impl In {
    fn unit(self) -> Option<Unit> {
        match self {
            In::Count => None,
            In::Bytes => Some(Unit::Bytes),
            In::Seconds => Some(Unit::Seconds),
        }
    }
}

/// The per-shard counters and gauges: name, help, unit, type, value.
type ShardRow = (
    &'static str,
    &'static str,
    In,
    MetricType,
    fn(&ShardMetrics) -> Num,
);

const SHARD_ROWS: [ShardRow; 10] = {
    use MetricType::{Counter, Gauge};
    [
        (
            "shardwal_records",
            "Records appended since open",
            In::Count,
            Counter,
            |s| Num::U(s.counters.records),
        ),
        (
            "shardwal_appended",
            "Frame bytes appended since open",
            In::Bytes,
            Counter,
            |s| Num::U(s.counters.bytes),
        ),
        (
            "shardwal_writes",
            "Write jobs submitted",
            In::Count,
            Counter,
            |s| Num::U(s.counters.writes),
        ),
        (
            "shardwal_syncs",
            "fdatasync calls on segment data",
            In::Count,
            Counter,
            |s| Num::U(s.counters.syncs),
        ),
        (
            "shardwal_segment_rolls",
            "Segments rolled",
            In::Count,
            Counter,
            |s| Num::U(s.counters.rolls),
        ),
        (
            "shardwal_backpressure",
            "Appends refused for lack of a free buffer or prepared segment",
            In::Count,
            Counter,
            |s| Num::U(s.counters.backpressure),
        ),
        (
            "shardwal_next_seq",
            "Sequence number of the next record",
            In::Count,
            Gauge,
            |s| Num::U(s.next_seq.0),
        ),
        (
            "shardwal_durable_next",
            "Every record below this sequence number is durable",
            In::Count,
            Gauge,
            |s| Num::U(s.durable_next.0),
        ),
        (
            "shardwal_epoch",
            "The shard's current epoch",
            In::Count,
            Gauge,
            |s| Num::U(s.epoch.0),
        ),
        (
            "shardwal_poisoned",
            "1 if the shard is poisoned (fail-stop)",
            In::Count,
            Gauge,
            |s| Num::U(u64::from(s.poisoned)),
        ),
    ]
};

/// The recovery gauges: name, help, unit, value.
type RecoveryRow = (&'static str, &'static str, In, fn(&RecoveryFigures) -> Num);

const RECOVERY_ROWS: [RecoveryRow; 9] = [
    (
        "shardwal_recovery_shards",
        "Shard logs the last recovery scanned",
        In::Count,
        |r| Num::U(r.shards as u64),
    ),
    (
        "shardwal_recovery_segments",
        "Segments holding the recovered logs",
        In::Count,
        |r| Num::U(r.segments as u64),
    ),
    (
        "shardwal_recovery_records",
        "Records the last recovery recovered",
        In::Count,
        |r| Num::U(r.records),
    ),
    (
        "shardwal_recovery",
        "Frame bytes the last recovery recovered",
        In::Bytes,
        |r| Num::U(r.bytes),
    ),
    (
        "shardwal_recovery_torn",
        "Bytes cut as torn tails",
        In::Bytes,
        |r| Num::U(r.torn_bytes),
    ),
    (
        "shardwal_recovery_repaired",
        "Bytes of mid-log corruption dropped on request",
        In::Bytes,
        |r| Num::U(r.repaired_bytes),
    ),
    (
        "shardwal_recovery_cut_records",
        "Records of unsealed epochs cut",
        In::Count,
        |r| Num::U(r.cut_records),
    ),
    (
        "shardwal_recovery_removed_segments",
        "Segment files removed",
        In::Count,
        |r| Num::U(r.removed_segments as u64),
    ),
    (
        "shardwal_recovery_duration",
        "Wall time of the last recovery",
        In::Seconds,
        |r| Num::F(r.duration.as_secs_f64()),
    ),
];

fn gauge(reg: &mut Registry, name: &str, help: &str, unit: In, v: Num) {
    let m = Values {
        ty: MetricType::Gauge,
        rows: vec![(Vec::new(), v)],
    };
    register(reg, name, help, unit.unit(), m);
}

fn shard_label(s: &ShardMetrics) -> Labels {
    vec![("shard", s.shard.0.to_string())]
}

fn shard_part(reg: &mut Registry, shards: &[ShardMetrics]) {
    for (name, help, unit, ty, f) in SHARD_ROWS {
        let rows = shards.iter().map(|s| (shard_label(s), f(s))).collect();
        register(reg, name, help, unit.unit(), Values { ty, rows });
    }
    let mut sync = Latencies::default();
    for s in shards {
        sync.push(shard_label(s), &s.sync_latency);
    }
    let help = "Latency of fdatasync, submission to completion";
    register(
        reg,
        "shardwal_sync_latency",
        help,
        Some(Unit::Seconds),
        sync,
    );
}

fn recovery_part(reg: &mut Registry, r: &RecoveryFigures) {
    for (name, help, unit, f) in RECOVERY_ROWS {
        gauge(reg, name, help, unit, f(r));
    }
}

fn encode(reg: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail, nor can these metrics' encoding.
    if prometheus_text::encode(&mut out, reg).is_err() {
        tracing::warn!("prometheus text encoding failed");
    }
    out
}

impl RuntimeMetrics {
    /// The metrics in the Prometheus text exposition format (version
    /// 0.0.4; content type `text/plain; version=0.0.4`). See the module
    /// `metrics::prometheus` for the names. Needs the feature `prometheus`.
    pub fn to_prometheus_text(&self) -> String {
        let mut reg = Registry::default();
        shard_part(&mut reg, &self.shards);
        let mut seal = Latencies::default();
        seal.push(Vec::new(), &self.epoch_seal_latency);
        let help = "Latency of an epoch seal, barrier injection to the last acknowledgement";
        register(
            &mut reg,
            "shardwal_epoch_seal_latency",
            help,
            Some(Unit::Seconds),
            seal,
        );
        let sealed = Num::U(self.sealed_epoch.0);
        gauge(
            &mut reg,
            "shardwal_sealed_epoch",
            "The highest sealed epoch",
            In::Count,
            sealed,
        );
        recovery_part(&mut reg, &self.last_recovery);
        encode(&reg)
    }
}

impl ShardMetrics {
    /// This shard's metrics, with its recovery's as the `shardwal_recovery_*`
    /// gauges, in the Prometheus text exposition format (as
    /// [`RuntimeMetrics::to_prometheus_text`]). Needs the feature
    /// `prometheus`.
    pub fn to_prometheus_text(&self) -> String {
        let mut reg = Registry::default();
        shard_part(&mut reg, std::slice::from_ref(self));
        recovery_part(&mut reg, &self.recovery);
        encode(&reg)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ids::{Epoch, Seq, ShardId};
    use crate::metrics::{latency_histogram, record_latency};

    fn shard(id: u32, records: u64, syncs_us: &[u64]) -> ShardMetrics {
        let mut h = latency_histogram();
        for &us in syncs_us {
            record_latency(&mut h, Duration::from_micros(us));
        }
        ShardMetrics {
            shard: ShardId(id),
            counters: crate::writer::WriterStats {
                records,
                bytes: records * 48,
                writes: 3,
                syncs: syncs_us.len() as u64,
                rolls: 1,
                backpressure: 0,
            },
            next_seq: Seq(records),
            durable_next: Seq(records),
            epoch: Epoch(7),
            poisoned: false,
            sync_latency: LatencySummary::from_histogram(h),
            recovery: RecoveryFigures::default(),
        }
    }

    /// The value of the sample line `name{labels}` (exactly), if present.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse().ok())?
        })
    }

    #[test]
    fn the_text_holds_every_shards_counters_histograms_and_the_seal_figures() {
        let mut seal = latency_histogram();
        record_latency(&mut seal, Duration::from_millis(3));
        record_latency(&mut seal, Duration::from_millis(30));
        let m = RuntimeMetrics {
            shards: vec![shard(0, 100, &[80, 120, 2_000]), shard(1, 250, &[])],
            sealed_epoch: Epoch(6),
            epoch_seal_latency: LatencySummary::from_histogram(seal),
            last_recovery: RecoveryFigures {
                shards: 2,
                records: 42,
                torn_bytes: 512,
                duration: Duration::from_millis(1500),
                ..RecoveryFigures::default()
            },
        };
        let t = m.to_prometheus_text();
        assert!(t.contains("# TYPE shardwal_records_total counter"), "{t}");
        assert_eq!(
            sample(&t, r#"shardwal_records_total{shard="0"}"#),
            Some(100.0),
            "{t}"
        );
        assert_eq!(
            sample(&t, r#"shardwal_records_total{shard="1"}"#),
            Some(250.0)
        );
        assert_eq!(
            sample(&t, r#"shardwal_appended_bytes_total{shard="1"}"#),
            Some(12_000.0)
        );
        assert_eq!(sample(&t, r#"shardwal_syncs_total{shard="0"}"#), Some(3.0));
        assert_eq!(
            sample(&t, r#"shardwal_segment_rolls_total{shard="0"}"#),
            Some(1.0)
        );
        assert_eq!(sample(&t, r#"shardwal_epoch{shard="1"}"#), Some(7.0));
        // Sync latency: 80 µs and 120 µs fall at or below 250 µs, all
        // three at or below 2.5 ms; cumulative buckets.
        assert!(
            t.contains("# TYPE shardwal_sync_latency_seconds histogram"),
            "{t}"
        );
        let b = |le: &str| {
            sample(
                &t,
                &format!(r#"shardwal_sync_latency_seconds_bucket{{shard="0",le="{le}"}}"#),
            )
        };
        assert_eq!(b("0.0001"), Some(1.0), "{t}");
        assert_eq!(b("0.00025"), Some(2.0));
        assert_eq!(b("0.001"), Some(2.0));
        assert_eq!(b("0.0025"), Some(3.0));
        assert_eq!(b("+Inf"), Some(3.0));
        assert_eq!(
            sample(&t, r#"shardwal_sync_latency_seconds_count{shard="0"}"#),
            Some(3.0)
        );
        assert_eq!(
            sample(&t, r#"shardwal_sync_latency_seconds_count{shard="1"}"#),
            Some(0.0)
        );
        let sum = sample(&t, r#"shardwal_sync_latency_seconds_sum{shard="0"}"#).unwrap();
        assert!((sum - 0.0022).abs() < 0.0022 * 0.01, "sum {sum}");
        assert_eq!(
            sample(&t, "shardwal_epoch_seal_latency_seconds_count"),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &t,
                r#"shardwal_epoch_seal_latency_seconds_bucket{le="0.005"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &t,
                r#"shardwal_epoch_seal_latency_seconds_bucket{le="0.05"}"#
            ),
            Some(2.0)
        );
        assert_eq!(sample(&t, "shardwal_sealed_epoch"), Some(6.0));
        assert_eq!(sample(&t, "shardwal_recovery_records"), Some(42.0));
        assert_eq!(sample(&t, "shardwal_recovery_torn_bytes"), Some(512.0));
        assert_eq!(sample(&t, "shardwal_recovery_duration_seconds"), Some(1.5));
        // Every line is a comment or `series value`.
        for l in t.lines() {
            assert!(
                l.starts_with('#') || sample(&t, l.rsplit_once(' ').unwrap().0).is_some(),
                "{l}"
            );
        }
    }

    #[test]
    fn a_bare_shard_renders_its_own_part_and_its_recovery() {
        let mut s = shard(3, 9, &[50]);
        s.recovery.records = 5;
        let t = s.to_prometheus_text();
        assert_eq!(
            sample(&t, r#"shardwal_records_total{shard="3"}"#),
            Some(9.0),
            "{t}"
        );
        assert_eq!(sample(&t, "shardwal_recovery_records"), Some(5.0));
        assert!(!t.contains("shardwal_sealed_epoch"), "{t}");
    }
}
