//! `shardwal recover DIR [--dry-run]`.
//!
//! With `--dry-run`, computes the recovery report read-only, exactly as
//! `Runtime::start` would: the newest valid manifest; each shard scanned
//! from that checkpoint's replay position (leading segments skipped the same
//! way) with the recovery scanner, collecting a `ScanSummary`; the sealed
//! epoch (the smallest last barrier over shards, at least the checkpoint's
//! epoch); each shard's cut just after `barrier(sealed)`; and what the cut
//! and the torn-tail repair would remove. Nothing on disk changes.
//!
//! Without `--dry-run`, it first computes the same plan (refusing corruption
//! with exit status 1 before touching anything), then starts a `Runtime` on
//! the directory with one shard per shard directory and engine code that
//! returns at once: the runtime takes the directory lock, cuts torn tails
//! and unsealed epochs, makes the result durable, and its shutdown seals one
//! more (empty) epoch. It prints the runtime's `RecoveryReport`.

use std::path::Path;
use std::time::{Duration, Instant};

use shardwal::checkpoint::SourceOffset;
use shardwal::format::frame::frame_len;
use shardwal::format::segment_header::RECORDS_START;
use shardwal::recovery::{ScanSummary, TornTail};
use shardwal::{
    Error, FsyncPolicy, RecordKind, RecoveryReport, Runtime, RuntimeConfig, SegmentPrepare,
    ShardConfig,
};

use crate::inspect::newest_valid;
use crate::json::Json;
use crate::logdir::{LogDir, Verdict};
use crate::progress::Progress;
use crate::table::{self, Table};
use crate::{CmdResult, EXIT_CORRUPT, EXIT_ERROR, EXIT_OK, Fail};

/// What recovery does to one shard (planned or done).
#[derive(Debug, Clone)]
pub struct ShardRow {
    /// The shard.
    pub shard: u32,
    /// Records kept (from the replay position on).
    pub records: u64,
    /// Bytes of frames kept (dry run) or scanned (the runtime's report).
    pub bytes: u64,
    /// Segments kept (of those scanned).
    pub segments: usize,
    /// Epochs with records since the replay position.
    pub epochs: u64,
    /// The torn tail cut, if any.
    pub torn: Option<TornTail>,
    /// Records of unsealed epochs cut.
    pub cut_records: u64,
    /// Segment files removed.
    pub removed_segments: usize,
    /// Next seq after recovery.
    pub next_seq: u64,
    /// Epoch writing resumes in.
    pub epoch: u64,
    /// Replay range `from..until` (dry run only).
    pub replay: Option<(u64, u64)>,
    /// Source offsets as of the sealed epoch (dry run only).
    pub offsets: Vec<SourceOffset>,
}

/// A whole recovery (planned or done).
#[derive(Debug, Clone)]
pub struct Report {
    /// The recovered sealed epoch.
    pub sealed: u64,
    /// The checkpoint recovery starts from.
    pub checkpoint: Option<u64>,
    /// Newer manifests that were skipped, and why.
    pub skipped_manifests: Vec<(u64, String)>,
    /// Per shard.
    pub shards: Vec<ShardRow>,
    /// Wall time.
    pub elapsed: Duration,
    /// The segment size of the log's newest segments (for the real run).
    pub segment_size: Option<u64>,
}

/// Compute the recovery report without changing anything. Corruption is
/// returned as a failure with exit status 1.
pub fn plan(log: &LogDir, progress: bool) -> Result<Report, Fail> {
    let started = Instant::now();
    let manifests = log.manifests()?;
    let manifest = newest_valid(&manifests).cloned();
    let used = manifest.as_ref().map_or(0, |m| m.checkpoint);
    let skipped_manifests: Vec<(u64, String)> = manifests
        .iter()
        .filter(|m| m.id > used)
        .filter_map(|m| m.result.as_ref().err().map(|e| (m.id, e.clone())))
        .collect();
    // Every shard with a log to recover: written and retired ones.
    let all: Vec<u32> = log.layout.data_shards();
    let mut prog = Progress::new("scanning", log.segment_bytes(&all), progress);
    let mut scans = Vec::new();
    let mut segment_size = None;
    for &s in &all {
        let entry = manifest
            .as_ref()
            .and_then(|m| m.shards.iter().find(|e| e.shard == s));
        let from_seq = entry.map(|e| e.replay_from);
        let from = from_seq.unwrap_or(0);
        let mut summary = ScanSummary::new(from);
        // Frame bytes before each possible cut point, to report kept bytes.
        let mut total = 0u64;
        let mut marks: Vec<(u64, u64)> = Vec::new();
        let mut seen_from = false;
        let scan = log.scan_shard(s, from_seq, &mut prog, |f, seg, off| {
            summary.observe(f, seg, off);
            if f.meta.seq >= from && !seen_from {
                seen_from = true;
                marks.push((f.meta.seq, total));
            }
            total += f.len as u64;
            if f.meta.kind == RecordKind::Barrier {
                marks.push((f.meta.seq + 1, total));
            }
            true
        })?;
        if let Verdict::Corrupt(c) = &scan.verdict {
            return Err(Fail::new(
                EXIT_CORRUPT,
                format!(
                    "corruption in shard {s}, segment {}, offset {}: {} (recovery refuses to open this log)",
                    c.path.display(),
                    c.offset,
                    c.cause
                ),
            ));
        }
        let outcome = scan.outcome().cloned().expect("a full scan has an outcome");
        if let Some(last) = outcome.kept.last() {
            segment_size = segment_size.or(Some(last.header.segment_size));
        }
        scans.push((summary, outcome, marks));
    }
    drop(prog);
    let floor = manifest.as_ref().map_or(0, |m| m.epoch);
    let sealed = log.sealed_epoch(floor, |s| {
        let i = all.iter().position(|x| *x == s)?;
        Some(scans[i].0.last_barrier(floor))
    });
    let mut shards = Vec::new();
    for (&s, (summary, outcome, marks)) in all.iter().zip(&scans) {
        let mut row = ShardRow {
            shard: s,
            records: outcome.records,
            bytes: outcome.bytes,
            segments: outcome.kept.len(),
            epochs: summary.barriers_since_from + 1,
            torn: outcome.torn.clone(),
            cut_records: 0,
            removed_segments: outcome.dropped.len(),
            next_seq: outcome.next_seq,
            epoch: sealed + 1,
            replay: None,
            offsets: Vec::new(),
        };
        // The same conditions as `recovery::shard::apply`.
        if let Some(c) = summary.cut_for(sealed)
            && c.seq < outcome.next_seq
            && let Some(k) = outcome.kept.iter().position(|x| x.index == c.segment)
        {
            row.cut_records = outcome.next_seq - c.seq;
            row.removed_segments += outcome.kept.len() - (k + 1);
            row.segments = k + 1;
            row.next_seq = c.seq;
            row.records = outcome.records.saturating_sub(row.cut_records);
            if let Some((_, b)) = marks.iter().find(|(q, _)| *q == c.seq) {
                row.bytes = *b;
            }
        }
        let from = summary
            .from_point
            .map_or(row.next_seq, |p| p.seq)
            .min(row.next_seq);
        row.replay = Some((from, row.next_seq));
        let from_manifest = manifest
            .as_ref()
            .and_then(|m| m.shards.iter().find(|e| e.shard == s))
            .and_then(|e| e.commit.as_ref());
        if let Some(c) = summary.commit_for(sealed).or(from_manifest) {
            row.offsets = c.offsets.clone();
        }
        shards.push(row);
    }
    Ok(Report {
        sealed,
        checkpoint: manifest.map(|m| m.checkpoint),
        skipped_manifests,
        shards,
        elapsed: started.elapsed(),
        segment_size,
    })
}

fn from_runtime(r: &RecoveryReport) -> Report {
    Report {
        sealed: r.sealed.0,
        checkpoint: r.checkpoint.map(|c| c.0),
        skipped_manifests: r.skipped_manifests.clone(),
        shards: r
            .shards
            .iter()
            .map(|s| ShardRow {
                shard: s.shard.0,
                records: s.records,
                bytes: s.bytes,
                segments: s.segments,
                epochs: s.epochs_seen,
                torn: s.torn.clone(),
                cut_records: s.cut_records,
                removed_segments: s.removed_segments,
                next_seq: s.next_seq.0,
                epoch: s.epoch.0,
                replay: None,
                offsets: Vec::new(),
            })
            .collect(),
        elapsed: r.elapsed,
        segment_size: None,
    }
}

fn print_report(dir: &Path, r: &Report, dry_run: bool, json: bool, after: Option<u64>) {
    if json {
        let shards: Vec<Json> = r
            .shards
            .iter()
            .map(|s| {
                let mut j = Json::obj()
                    .set("shard", s.shard)
                    .set("records", s.records)
                    .set("bytes", s.bytes)
                    .set("segments", s.segments)
                    .set("epochs", s.epochs)
                    .set("torn_bytes", s.torn.as_ref().map_or(0, |t| t.bytes))
                    .set(
                        "torn",
                        s.torn.as_ref().map_or(Json::Null, |t| {
                            Json::obj()
                                .set("file", t.path.as_path())
                                .set("offset", t.offset)
                                .set("bytes", t.bytes)
                                .set("detail", t.cause.to_string())
                        }),
                    )
                    .set("unsealed_records_cut", s.cut_records)
                    .set("removed_segments", s.removed_segments)
                    .set("next_seq", s.next_seq)
                    .set("next_epoch", s.epoch);
                if let Some((a, b)) = s.replay {
                    j.push("replay_from", a);
                    j.push("replay_until", b);
                    j.push("offsets", crate::json::offsets(&s.offsets));
                }
                j
            })
            .collect();
        let mut out = Json::obj()
            .set("dir", dir)
            .set("dry_run", dry_run)
            .set("sealed_epoch", r.sealed)
            .set("next_epoch", r.sealed + 1)
            .set("checkpoint", r.checkpoint)
            .set(
                "skipped_manifests",
                r.skipped_manifests
                    .iter()
                    .map(|(id, why)| Json::obj().set("id", *id).set("reason", why.as_str()))
                    .collect::<Vec<_>>(),
            )
            .set("shards", shards)
            .set("elapsed_ms", r.elapsed.as_secs_f64() * 1e3);
        if let Some(e) = after {
            out.push("sealed_epoch_after_shutdown", e);
        }
        println!("{out}");
        return;
    }
    if dry_run {
        println!(
            "recovery plan for {} (dry run: nothing was changed)",
            dir.display()
        );
    } else {
        println!("recovered {}", dir.display());
    }
    println!(
        "sealed epoch  {}: every shard is cut just after barrier({}); writing resumes in epoch {}",
        r.sealed,
        r.sealed,
        r.sealed + 1
    );
    println!(
        "checkpoint    {}",
        r.checkpoint.map_or("none".to_string(), |c| format!(
            "{c} (its snapshots are the replay base)"
        ))
    );
    for (id, why) in &r.skipped_manifests {
        println!("skipped       manifest {id}: {why}");
    }
    let mut t = Table::new(&[
        ">shard",
        ">records",
        ">bytes",
        ">segments",
        ">epochs",
        ">torn bytes",
        ">unsealed cut",
        ">segments removed",
        ">next seq",
        ">next epoch",
        "replay",
    ]);
    for s in &r.shards {
        t.row(vec![
            s.shard.to_string(),
            s.records.to_string(),
            table::bytes(s.bytes),
            s.segments.to_string(),
            s.epochs.to_string(),
            s.torn.as_ref().map_or(0, |t| t.bytes).to_string(),
            s.cut_records.to_string(),
            s.removed_segments.to_string(),
            s.next_seq.to_string(),
            s.epoch.to_string(),
            s.replay
                .map_or("-".to_string(), |(a, b)| format!("seq {a}..{b}")),
        ]);
    }
    print!("{}", t.render("  "));
    for s in &r.shards {
        if let Some(t) = &s.torn {
            println!(
                "torn tail     shard {}: {} offset {} ({} bytes{}): {}",
                s.shard,
                t.path.display(),
                t.offset,
                t.bytes,
                if dry_run { " would be cut" } else { " cut" },
                t.cause
            );
        }
    }
    if let Some(e) = after {
        println!("after the shutdown barrier the log is sealed through epoch {e}");
    }
    println!(
        "{} in {}",
        if dry_run { "computed" } else { "recovered" },
        table::duration(r.elapsed)
    );
}

/// The writer settings for the recovery run: the log's own segment size
/// (so the writer resumes in its last segment instead of starting a new
/// one), small buffers, and no zero-filling of a next segment.
fn shard_config(segment_size: Option<u64>) -> ShardConfig {
    let segment_size = segment_size.unwrap_or(ShardConfig::default().segment_size);
    let room = (segment_size as usize).saturating_sub(RECORDS_START + frame_len(0) + 8);
    ShardConfig {
        segment_size,
        buffer_size: 64 << 10,
        write_behind: 2,
        max_record_size: room.min(64 << 10),
        fsync: FsyncPolicy::PerEpoch,
        prepare: SegmentPrepare::Create,
        repair: false,
    }
}

/// Run `recover`.
pub fn run(dir: &Path, dry_run: bool, repair: bool, json: bool) -> CmdResult {
    let log = LogDir::open(dir)?;
    // With --repair, corruption found by the plan is what is to be dropped.
    let segment_size = match plan(&log, !json) {
        Ok(planned) if dry_run => {
            print_report(dir, &planned, true, json, None);
            return Ok(EXIT_OK);
        }
        Ok(planned) => planned.segment_size,
        Err(f) if repair && !dry_run && f.code == EXIT_CORRUPT => None,
        Err(f) => return Err(f),
    };
    let n = log.shard_count();
    if n == 0 {
        if !json {
            println!(
                "{}: no shard directories, nothing to recover",
                dir.display()
            );
        } else {
            println!("{}", Json::obj().set("dir", dir).set("shards", Vec::new()));
        }
        return Ok(EXIT_OK);
    }
    let abs = dir
        .canonicalize()
        .map_err(|e| Fail::new(EXIT_ERROR, format!("{}: {e}", dir.display())))?;
    let cfg = RuntimeConfig {
        shards: Some(n),
        shard: ShardConfig {
            repair,
            ..shard_config(segment_size)
        },
        pin: false,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(&abs, cfg, |_ctx| async { Ok::<(), Error>(()) }).map_err(|e| {
        let code = if e.is_corruption() {
            EXIT_CORRUPT
        } else {
            EXIT_ERROR
        };
        Fail::new(code, format!("recovery failed: {e}"))
    })?;
    let report = from_runtime(rt.recovery_report());
    let repaired: Vec<(u32, TornTail)> = rt
        .recovery_report()
        .shards
        .iter()
        .filter_map(|s| s.repaired.clone().map(|r| (s.shard.0, r)))
        .collect();
    let coord = rt.coordinator();
    rt.shutdown()
        .map_err(|e| Fail::new(EXIT_ERROR, format!("shutdown after recovery failed: {e}")))?;
    print_report(dir, &report, false, json, Some(coord.sealed_epoch().0));
    for (s, r) in &repaired {
        let line = format!(
            "shard {s}: repaired: dropped {} bytes from {} offset {} on: {}",
            r.bytes,
            r.path.display(),
            r.offset,
            r.cause
        );
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    Ok(EXIT_OK)
}
