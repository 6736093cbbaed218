//! Metrics: the numbers an operator scrapes, as plain snapshot types.
//!
//! - [`ShardMetrics`]: one shard's counters (records, bytes, writes,
//!   syncs, segment rolls, back-pressure), its position, its fdatasync
//!   latency and what recovery found when it opened. A bare shard gives it
//!   through [`crate::ShardLog::metrics`].
//! - [`RuntimeMetrics`]: every shard's, plus the coordinator's epoch-seal
//!   latency, the sealed epoch and the last recovery's figures; through
//!   [`crate::Runtime::metrics`].
//! - [`LatencySummary`]: count, min, quantiles and max of a latency, with
//!   the hdrhistogram it was computed from (for merging across shards).
//! - With the cargo feature `prometheus`, `to_prometheus_text` renders
//!   either in the Prometheus text format (`prometheus.rs`).
//!
//! Where each number is recorded: the counters are plain fields of the
//! writer's own state (`writer/state.rs`), bumped on the append path as
//! before; the sync latency is recorded by the writer's tasks when an
//! fdatasync completes (`writer/tasks.rs`), never per record; the seal
//! latency by the coordinator thread when an epoch seals. This module only
//! holds the types; it imports nothing of the crate above `recovery` and
//! `ids`.

#[cfg(feature = "prometheus")]
mod prometheus;

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::ids::{Epoch, Seq, ShardId};
use crate::recovery::ShardRecovery;
use crate::recovery::plan::RecoveryReport;

/// The largest latency a histogram holds apart: one hour. Longer ones are
/// recorded as one hour.
const LATENCY_MAX_NS: u64 = 3_600 * 1_000_000_000;

/// Significant decimal digits of the latency histograms: 2, i.e. within
/// 1 %, in about 36 KiB per histogram.
const LATENCY_DIGITS: u8 = 2;

/// An empty latency histogram in nanoseconds, as every recorder uses (so
/// any two can be merged).
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Record one latency, clamped to the histogram's range.
pub(crate) fn record_latency(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
}

/// A latency distribution: how many were measured, the smallest, some
/// quantiles, the largest; and the histogram behind them (nanoseconds,
/// 2 significant digits, so the quantiles are within 1 %).
#[derive(Debug, Clone)]
pub struct LatencySummary {
    /// How many latencies were recorded.
    pub count: u64,
    /// The smallest (zero when `count` is 0).
    pub min: Duration,
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The 99.9th percentile.
    pub p999: Duration,
    /// The largest.
    pub max: Duration,
    histogram: Histogram<u64>,
}

impl Default for LatencySummary {
    fn default() -> Self {
        LatencySummary::from_histogram(latency_histogram())
    }
}

impl LatencySummary {
    /// Summarise a histogram made by [`latency_histogram`].
    pub(crate) fn from_histogram(histogram: Histogram<u64>) -> Self {
        let ns = Duration::from_nanos;
        let count = histogram.len();
        let q = |q: f64| {
            if count == 0 {
                Duration::ZERO
            } else {
                ns(histogram.value_at_quantile(q))
            }
        };
        LatencySummary {
            count,
            min: if count == 0 {
                Duration::ZERO
            } else {
                ns(histogram.min())
            },
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: if count == 0 {
                Duration::ZERO
            } else {
                ns(histogram.max())
            },
            histogram,
        }
    }

    /// The histogram the summary was computed from, in nanoseconds.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// The latency at quantile `q` (0.0 to 1.0); zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.histogram.value_at_quantile(q))
    }

    /// The mean; zero when empty.
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.histogram.mean() as u64)
    }

    /// Add `other`'s latencies to these (e.g. to see every shard's syncs
    /// as one distribution) and recompute the figures.
    pub fn merge(&mut self, other: &LatencySummary) {
        let mut h = std::mem::replace(&mut self.histogram, Histogram::new(1).expect("1 digit"));
        if h.add(&other.histogram).is_err() {
            // Only if the ranges differ, which they do not for histograms
            // made by this module: clamp value by value.
            for v in other.histogram.iter_recorded() {
                let value = v.value_iterated_to().min(h.high());
                // Clamped to the range, so it cannot fail; a count that
                // would overflow u64 is beyond any process's lifetime.
                if h.record_n(value, v.count_at_value()).is_err() {
                    tracing::trace!(value, "latency value not merged");
                }
            }
        }
        *self = LatencySummary::from_histogram(h);
    }
}

/// What a recovery found and did, summed over the shard logs it covered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryFigures {
    /// Shard logs scanned (a runtime's shards, and retired ones it replays).
    pub shards: usize,
    /// Segments holding the recovered logs.
    pub segments: usize,
    /// Records recovered.
    pub records: u64,
    /// Frame bytes recovered.
    pub bytes: u64,
    /// Shard logs that ended in a torn tail, which was cut.
    pub torn_tails: usize,
    /// Bytes discarded with those torn tails.
    pub torn_bytes: u64,
    /// Shard logs where mid-log corruption was dropped on request
    /// (`ShardConfig::repair`).
    pub repaired: usize,
    /// Bytes dropped by those repairs.
    pub repaired_bytes: u64,
    /// Records of unsealed epochs cut on purpose (the consistent cut).
    pub cut_records: u64,
    /// Segment files removed (blank, torn, or after the cut).
    pub removed_segments: usize,
    /// Wall time of the recovery.
    pub duration: Duration,
}

impl RecoveryFigures {
    /// The figures of one shard's recovery.
    pub fn of_shard(r: &ShardRecovery) -> Self {
        RecoveryFigures {
            shards: 1,
            segments: r.segments,
            records: r.records,
            bytes: r.bytes,
            torn_tails: usize::from(r.torn.is_some()),
            torn_bytes: r.torn.as_ref().map_or(0, |t| t.bytes),
            repaired: usize::from(r.repaired.is_some()),
            repaired_bytes: r.repaired.as_ref().map_or(0, |t| t.bytes),
            cut_records: r.cut_records,
            removed_segments: r.removed.len(),
            duration: r.elapsed,
        }
    }

    /// The figures of a runtime's start: every shard's summed, and the
    /// wall time of the whole recovery.
    pub fn of_report(r: &RecoveryReport) -> Self {
        let mut sum = RecoveryFigures::default();
        for s in &r.shards {
            let f = RecoveryFigures::of_shard(s);
            sum.shards += f.shards;
            sum.segments += f.segments;
            sum.records += f.records;
            sum.bytes += f.bytes;
            sum.torn_tails += f.torn_tails;
            sum.torn_bytes += f.torn_bytes;
            sum.repaired += f.repaired;
            sum.repaired_bytes += f.repaired_bytes;
            sum.cut_records += f.cut_records;
            sum.removed_segments += f.removed_segments;
        }
        sum.duration = r.elapsed;
        sum
    }
}

/// One shard's numbers. The counters count since the shard was opened.
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    /// The shard.
    pub shard: ShardId,
    /// The writer's counters since open (records of every kind, frame
    /// bytes, write jobs, fdatasyncs of segment data, rolls, back-pressure):
    /// the shard's own `WriterStats`, copied.
    pub counters: crate::writer::WriterStats,
    /// The sequence number the next record gets.
    pub next_seq: Seq,
    /// Every record below this is durable.
    pub durable_next: Seq,
    /// The current epoch.
    pub epoch: Epoch,
    /// True if the shard is poisoned (fail-stop).
    pub poisoned: bool,
    /// Latency of the fdatasyncs counted in `syncs`, from submission to
    /// completion (`count` equals `syncs` unless one failed).
    pub sync_latency: LatencySummary,
    /// What recovery found when the shard opened.
    pub recovery: RecoveryFigures,
}

/// Every shard's numbers and the coordinator's: what
/// [`crate::Runtime::metrics`] returns.
///
/// Freshness: each core publishes its shard's [`ShardMetrics`] when it
/// opens, at every barrier it answers (before acknowledging it) and every
/// [`PUBLISH_EVERY`] otherwise, so a shard's figures are at most that old,
/// and after an epoch has sealed they include everything up to its
/// barrier. The coordinator's figures are current.
#[derive(Debug, Clone)]
pub struct RuntimeMetrics {
    /// Per shard of the runtime, in shard order.
    pub shards: Vec<ShardMetrics>,
    /// The highest sealed epoch.
    pub sealed_epoch: Epoch,
    /// Latency of epoch seals, from the injection of the barrier into every
    /// shard to the last shard's acknowledgement, for every epoch sealed
    /// since the runtime started.
    pub epoch_seal_latency: LatencySummary,
    /// What the recovery at the runtime's start found and did, over every
    /// shard log it covered (see [`crate::Runtime::recovery_report`]).
    pub last_recovery: RecoveryFigures,
}

/// How often a runtime's core publishes its shard's metrics between
/// barriers.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

impl RuntimeMetrics {
    /// Records appended over every shard.
    pub fn records(&self) -> u64 {
        self.shards.iter().map(|s| s.counters.records).sum()
    }

    /// Every shard's fdatasync latencies as one distribution.
    pub fn sync_latency(&self) -> LatencySummary {
        let mut all = LatencySummary::default();
        for s in &self.shards {
            all.merge(&s.sync_latency);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_reports_quantiles_within_one_percent_and_merges() {
        let mut h = latency_histogram();
        for us in 1..=1000u64 {
            record_latency(&mut h, Duration::from_micros(us));
        }
        let s = LatencySummary::from_histogram(h);
        assert_eq!(s.count, 1000);
        let near = |d: Duration, us: f64| {
            let got = d.as_secs_f64() * 1e6;
            assert!((got - us).abs() <= us * 0.01, "{got} µs, expected {us} µs");
        };
        near(s.min, 1.0);
        near(s.p50, 500.0);
        near(s.p90, 900.0);
        near(s.p99, 990.0);
        near(s.max, 1000.0);
        let mut merged = LatencySummary::default();
        assert_eq!(merged.count, 0);
        assert_eq!(merged.p50, Duration::ZERO);
        merged.merge(&s);
        merged.merge(&s);
        assert_eq!(merged.count, 2000);
        near(merged.p50, 500.0);
    }

    #[test]
    fn a_latency_beyond_the_range_is_clamped_not_lost() {
        let mut h = latency_histogram();
        record_latency(&mut h, Duration::from_secs(7200));
        let s = LatencySummary::from_histogram(h);
        assert_eq!(s.count, 1);
        assert!(s.max >= Duration::from_secs(3590), "{:?}", s.max);
    }
}
