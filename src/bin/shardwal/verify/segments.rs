//! Step 1 of `verify`: scan every segment of every shard from its first
//! byte, check the payloads of commit records and checkpoint markers, and
//! record how each shard ends.

use shardwal::RecordKind;
use shardwal::checkpoint::payloads::{self, CheckpointMarker, CommitRecord};
use shardwal::format::frame::Frame;
use shardwal::recovery::Scanned;

use super::report::{Finding, Kind, Report, ShardJson};
use crate::Fail;
use crate::logdir::{LogDir, ShardScan, Verdict};
use crate::output::progress::Progress;
use crate::output::units;

/// How a shard's log ends, for the replay-position check.
pub struct ShardEnd {
    /// The shard.
    pub shard: u32,
    /// The library's scan, unless the log is corrupt.
    pub scanned: Option<Scanned>,
}

/// A commit record or checkpoint marker whose payload does not decode.
struct BadPayload {
    segment: u64,
    offset: usize,
    seq: u64,
    problem: String,
}

/// Scan every shard (a progress bar on stderr when `progress` is set and
/// stderr is a terminal); add what is wrong to `report`.
pub fn check(log: &LogDir, report: &mut Report, progress: bool) -> Result<Vec<ShardEnd>, Fail> {
    let mut prog = Progress::new("verifying", log.segment_bytes(&log.shards), progress);
    let mut ends = Vec::with_capacity(log.shards.len());
    for &s in &log.shards {
        let mut bad = Vec::new();
        let scan = log.scan_shard(s, None, &mut prog, |f, segment, offset| {
            if let Some(problem) = payload_problem(f) {
                bad.push(BadPayload {
                    segment,
                    offset,
                    seq: f.meta.seq.0,
                    problem,
                });
            }
            true
        })?;
        report_bad_payloads(s, &scan, bad, report);
        let status = report_end(s, &scan, report);
        report_shard(s, &scan, status, report);
        ends.push(ShardEnd {
            shard: s,
            scanned: scan.scanned,
        });
    }
    Ok(ends)
}

/// Why a commit record's or checkpoint marker's payload does not decode.
fn payload_problem(f: &Frame<'_>) -> Option<String> {
    match f.meta.kind {
        RecordKind::Commit => payloads::decode::<CommitRecord>(f.payload, "commit")
            .err()
            .map(|e| e.to_string()),
        RecordKind::Checkpoint => {
            payloads::decode::<CheckpointMarker>(f.payload, "checkpoint marker")
                .err()
                .map(|e| e.to_string())
        }
        _ => None,
    }
}

fn report_bad_payloads(s: u32, scan: &ShardScan, bad: Vec<BadPayload>, report: &mut Report) {
    for b in bad {
        let file = scan
            .files
            .iter()
            .find(|f| f.index == b.segment)
            .map_or(String::new(), |f| f.path.display().to_string());
        report.errors.push(Finding {
            kind: Kind::InvalidPayload,
            shard: Some(s),
            file,
            offset: Some(b.offset as u64),
            detail: format!("record seq {}: {}", b.seq, b.problem),
        });
    }
}

/// Report how the shard ends (corruption, torn tail); its status word.
fn report_end(s: u32, scan: &ShardScan, report: &mut Report) -> &'static str {
    match &scan.verdict {
        Verdict::Corrupt(c) => {
            report.errors.push(Finding {
                kind: Kind::Corruption,
                shard: Some(s),
                file: c.path.display().to_string(),
                offset: Some(c.offset),
                detail: c.cause.to_string(),
            });
            "corrupt"
        }
        Verdict::Torn(o) => {
            let t = o.torn.as_ref().expect("torn verdict has a tail");
            report.warnings.push(Finding {
                kind: Kind::TornTail,
                shard: Some(s),
                file: t.path.display().to_string(),
                offset: Some(t.offset),
                detail: format!(
                    "{}; {} bytes were never reported durable, `shardwal recover` cuts them",
                    t.cause, t.bytes
                ),
            });
            "torn_tail"
        }
        _ => "clean",
    }
}

/// The shard's note (text) and row (JSON).
fn report_shard(s: u32, scan: &ShardScan, status: &'static str, report: &mut Report) {
    let bytes: u64 = scan.stats.iter().map(|x| x.bytes).sum();
    report.notes.push(format!(
        "shard {s}: {status}: {} segment file(s), {} records (seq {}), {} of frames checked",
        scan.files.len(),
        scan.records(),
        units::range(scan.seq_range()),
        units::bytes(bytes)
    ));
    report.shards.push(ShardJson {
        shard: s,
        status,
        segments: scan.files.len(),
        records: scan.records(),
        bytes,
    });
}
