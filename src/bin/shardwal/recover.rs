//! `shardwal recover DIR [--dry-run]`.
//!
//! With `--dry-run`, computes the recovery report read-only with the
//! library's own recovery: the planner's scope for the log's own shard
//! count, each shard scanned by the library's streaming scan on read-only
//! storage (from the checkpoint's replay position, leading segments skipped
//! the same way), then the planner's sealed epoch, cuts and replay plans
//! ([`shardwal::recovery::plan`]). Nothing on disk changes.
//!
//! Without `--dry-run`, it first computes the same plan (refusing corruption
//! with exit status 1 before touching anything), then starts a `Runtime` on
//! the directory with one shard per written shard and engine code that
//! returns at once: the runtime takes the directory lock, cuts torn tails
//! and unsealed epochs, makes the result durable, and its shutdown seals one
//! more (empty) epoch. It prints the runtime's `RecoveryReport`.

use std::path::Path;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use shardwal::checkpoint::SourceOffset;
use shardwal::format::frame::frame_len;
use shardwal::format::segment_header::RECORDS_START;
use shardwal::recovery::TornTail;
use shardwal::recovery::plan;
use shardwal::{
    Error, FsyncPolicy, RecoveryReport, Runtime, RuntimeConfig, SegmentPrepare, ShardConfig,
    ShardRecovery,
};

use serde::Serialize;

use crate::logdir::{LogDir, Verdict};
use crate::output::progress::Progress;
use crate::output::{json, table, units};
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
    let (_, manifests) = log.manifests()?;
    let scope = &log.scope;
    let all: Vec<u32> = scope.all.iter().map(|s| s.0).collect();
    let mut prog = Progress::new("scanning", log.segment_bytes(&all), progress);
    let mut scans = BTreeMap::new();
    for &s in &scope.all {
        let from = manifests.replay_from(s).map(|q| q.0);
        let scan = log.scan_shard(s.0, from, &mut prog, |_, _, _| true)?;
        match (scan.verdict, scan.scanned) {
            (Verdict::Corrupt(c), _) => {
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
            (_, Some(sc)) => {
                scans.insert(s, sc);
            }
            (_, None) => unreachable!("a scan that did not fail has a result"),
        }
    }
    drop(prog);
    let segment_size = scans
        .values()
        .rev()
        .find_map(|sc| sc.outcome.kept.last().map(|k| k.header.segment_size));
    let planned =
        plan::plan(scope, &manifests, scans).map_err(|e| Fail::new(EXIT_ERROR, e.to_string()))?;
    let shards = planned
        .shards
        .values()
        .map(|p| {
            let mut row = ShardRow::from(&p.cut.report);
            row.replay = Some((p.replay.from.0, p.replay.until.0));
            row.offsets = p.commit.as_ref().map_or(Vec::new(), |c| c.offsets.clone());
            row
        })
        .collect();
    Ok(Report {
        sealed: planned.sealed.0,
        checkpoint: planned.report.checkpoint.map(|c| c.0),
        skipped_manifests: skipped(&planned.report),
        shards,
        elapsed: started.elapsed(),
        segment_size,
    })
}

impl From<&ShardRecovery> for ShardRow {
    fn from(s: &ShardRecovery) -> ShardRow {
        ShardRow {
            shard: s.shard.0,
            records: s.records,
            bytes: s.bytes,
            segments: s.segments,
            epochs: s.epochs_seen,
            torn: s.torn.clone(),
            cut_records: s.cut_records,
            removed_segments: s.removed.len(),
            next_seq: s.next_seq.0,
            epoch: s.epoch.0,
            replay: None,
            offsets: Vec::new(),
        }
    }
}

/// The manifests recovery skipped, as (checkpoint id, why).
fn skipped(r: &RecoveryReport) -> Vec<(u64, String)> {
    r.skipped_manifests
        .iter()
        .map(|(id, why)| (id.0, why.clone()))
        .collect()
}

fn from_runtime(r: &RecoveryReport) -> Report {
    Report {
        sealed: r.sealed.0,
        checkpoint: r.checkpoint.map(|c| c.0),
        skipped_manifests: skipped(r),
        shards: r.shards.iter().map(ShardRow::from).collect(),
        elapsed: r.elapsed,
        segment_size: None,
    }
}

/// `recover --json`: the report.
#[derive(Serialize)]
struct ReportJson {
    dir: String,
    dry_run: bool,
    sealed_epoch: u64,
    next_epoch: u64,
    checkpoint: Option<u64>,
    skipped_manifests: Vec<SkippedJson>,
    shards: Vec<ShardJson>,
    elapsed_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed_epoch_after_shutdown: Option<u64>,
}

/// A manifest recovery skipped, and why.
#[derive(Serialize)]
struct SkippedJson {
    id: u64,
    reason: String,
}

/// What recovery does to one shard.
#[derive(Serialize)]
struct ShardJson {
    shard: u32,
    records: u64,
    bytes: u64,
    segments: usize,
    epochs: u64,
    torn_bytes: u64,
    torn: Option<TornJson>,
    unsealed_records_cut: u64,
    removed_segments: usize,
    next_seq: u64,
    next_epoch: u64,
    /// The replay range and source offsets: dry run only.
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_from: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_until: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offsets: Option<Vec<json::Offset>>,
}

/// A torn tail cut (or to be cut).
#[derive(Serialize)]
struct TornJson {
    file: String,
    offset: u64,
    bytes: u64,
    detail: String,
}

impl From<&ShardRow> for ShardJson {
    fn from(s: &ShardRow) -> ShardJson {
        ShardJson {
            shard: s.shard,
            records: s.records,
            bytes: s.bytes,
            segments: s.segments,
            epochs: s.epochs,
            torn_bytes: s.torn.as_ref().map_or(0, |t| t.bytes),
            torn: s.torn.as_ref().map(|t| TornJson {
                file: json::path(&t.path),
                offset: t.offset,
                bytes: t.bytes,
                detail: t.cause.to_string(),
            }),
            unsealed_records_cut: s.cut_records,
            removed_segments: s.removed_segments,
            next_seq: s.next_seq,
            next_epoch: s.epoch,
            replay_from: s.replay.map(|(a, _)| a),
            replay_until: s.replay.map(|(_, b)| b),
            offsets: s.replay.map(|_| json::offsets(&s.offsets)),
        }
    }
}

/// `recover --json` on a directory with no shards.
#[derive(Serialize)]
struct NothingJson {
    dir: String,
    shards: [u32; 0],
}

fn print_report(
    dir: &Path,
    r: &Report,
    dry_run: bool,
    json: bool,
    after: Option<u64>,
) -> Result<(), Fail> {
    if json {
        return json::print(&ReportJson {
            dir: json::path(dir),
            dry_run,
            sealed_epoch: r.sealed,
            next_epoch: r.sealed + 1,
            checkpoint: r.checkpoint,
            skipped_manifests: r
                .skipped_manifests
                .iter()
                .map(|(id, why)| SkippedJson {
                    id: *id,
                    reason: why.clone(),
                })
                .collect(),
            shards: r.shards.iter().map(ShardJson::from).collect(),
            elapsed_ms: json::round6(r.elapsed.as_secs_f64() * 1e3),
            sealed_epoch_after_shutdown: after,
        });
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
    let mut t = table::new(&[
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
        t.add_row(vec![
            s.shard.to_string(),
            s.records.to_string(),
            units::bytes(s.bytes),
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
    print!("{}", table::render(&t, "  "));
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
        units::duration(r.elapsed)
    );
    Ok(())
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
            print_report(dir, &planned, true, json, None)?;
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
            json::print(&NothingJson {
                dir: json::path(dir),
                shards: [],
            })?;
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
    print_report(dir, &report, false, json, Some(coord.sealed_epoch().0))?;
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
