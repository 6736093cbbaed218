//! `shardwal inspect DIR`: what a log directory holds. Per shard: its
//! segments (file, size, first seq and epoch from the header, and from a
//! full scan the records, seq and epoch ranges and where the log ends), its
//! snapshot files, and its last barrier; the sealed epoch (the smallest,
//! over shards, of the last barrier epoch, at least the newest checkpoint's
//! epoch: what recovery would cut at); every checkpoint manifest; disk usage.
//!
//! Read-only. Exit status 1 if a shard's log or a manifest is corrupt.

use std::path::Path;

use shardwal::checkpoint::snapshot::parse_snapshot_name;
use shardwal::format::segment_header::HeaderError;
use shardwal::recovery::ScanSummary;
use shardwal::recovery::plan;
use shardwal::{Epoch, Seq};

use comfy_table::Table;
use serde::Serialize;

use crate::logdir::{LogDir, ManifestEntry, ShardScan, Verdict, hex};
use crate::output::progress::Progress;
use crate::output::{json, table, units};
use crate::{CmdResult, EXIT_CORRUPT, EXIT_OK};

/// A shard's scan and what the consistent cut needs from it.
pub struct ShardView {
    /// The scan.
    pub scan: ShardScan,
    /// Barriers and commits seen.
    pub summary: ScanSummary,
    /// Snapshot files (name, size).
    pub snapshots: Vec<(String, u64)>,
}

/// The status of one segment file in a scan: `ok`, `torn@OFF`,
/// `CORRUPT@OFF`, `blank`, `after end`, `not scanned`.
pub fn segment_status(scan: &ShardScan, k: usize) -> String {
    let f = &scan.files[k];
    match &scan.verdict {
        Verdict::Corrupt(c) if c.path == f.path => return format!("CORRUPT@{}", c.offset),
        Verdict::Torn(o) => {
            if let Some(t) = o.torn.as_ref().filter(|t| t.path == f.path) {
                return format!("torn@{}", t.offset);
            }
        }
        _ => {}
    }
    if matches!(scan.headers[k], Err(HeaderError::Blank)) {
        return "blank".into();
    }
    if scan.outcome().is_some_and(|o| o.dropped.contains(&f.path)) {
        return "after end".into();
    }
    if !scan.stats[k].scanned {
        return if k < scan.skipped {
            "not scanned".into()
        } else {
            "after stop".into()
        };
    }
    "ok".into()
}

/// One line describing how a shard's log ends.
pub fn shard_status(scan: &ShardScan) -> String {
    match &scan.verdict {
        Verdict::Clean(_) => "clean".into(),
        Verdict::Torn(o) => {
            let t = o.torn.as_ref().expect("torn verdict has a tail");
            format!(
                "torn tail at {} offset {} ({} would be cut): {}",
                t.path.display(),
                t.offset,
                units::bytes(t.bytes),
                t.cause
            )
        }
        Verdict::Corrupt(c) => format!(
            "CORRUPT at {} offset {}: {}",
            c.path.display(),
            c.offset,
            c.cause
        ),
        Verdict::Stopped => "not fully scanned".into(),
    }
}

/// The sealed epoch recovery would compute (the planner's rule,
/// [`plan::sealed_epoch`]), from each shard's scan. `views` are in
/// `log.shards` order; `floor` is the newest valid checkpoint's epoch.
pub fn sealed_epoch(log: &LogDir, views: &[ShardView], floor: Epoch) -> Epoch {
    plan::sealed_epoch(&log.layout, floor, |s| {
        let i = log.shards.iter().position(|x| *x == s.0)?;
        Some(views[i].summary.last_barrier(floor))
    })
}

/// Scan every shard of `log` from its first segment.
pub fn scan_all(log: &LogDir, progress: bool) -> Result<Vec<ShardView>, crate::Fail> {
    let mut prog = Progress::new("scanning", log.segment_bytes(&log.shards), progress);
    let mut views = Vec::new();
    for &s in &log.shards {
        let mut summary = ScanSummary::new(Seq(0));
        let scan = log.scan_shard(s, None, &mut prog, |f, seg, off| {
            summary.observe(f, seg, off);
            true
        })?;
        let mut snapshots = Vec::new();
        if let Ok(names) = futures_lite::future::block_on(shardwal::Storage::list(
            &shardwal::ReadOnlyStorage,
            &scan.dir,
        )) {
            for n in names {
                if parse_snapshot_name(&n).is_some() {
                    let len = std::fs::metadata(scan.dir.join(&n)).map_or(0, |m| m.len());
                    snapshots.push((n, len));
                }
            }
        }
        views.push(ShardView {
            scan,
            summary,
            snapshots,
        });
    }
    Ok(views)
}

/// A manifest as JSON: `{"id", "file", "valid", "epoch", "shards"}`, or
/// `{"id", "file", "valid", "error"}` when it does not validate.
#[derive(Serialize)]
struct ManifestJson {
    id: u64,
    file: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<Vec<ManifestShardJson>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// One shard of a manifest.
#[derive(Serialize)]
struct ManifestShardJson {
    shard: u32,
    replay_from: u64,
    marker_seq: u64,
    snapshot: json::SnapshotRef,
    commit: Option<json::Commit>,
}

impl From<&ManifestEntry> for ManifestJson {
    fn from(m: &ManifestEntry) -> ManifestJson {
        let man = m.result.as_ref().ok();
        ManifestJson {
            id: m.id,
            file: json::path(&m.path),
            valid: man.is_some(),
            epoch: man.map(|man| man.epoch),
            shards: man.map(|man| {
                man.shards
                    .iter()
                    .map(|s| ManifestShardJson {
                        shard: s.shard,
                        replay_from: s.replay_from,
                        marker_seq: s.marker_seq,
                        snapshot: (&s.snapshot).into(),
                        commit: s.commit.as_ref().map(Into::into),
                    })
                    .collect()
            }),
            error: m.result.as_ref().err().cloned(),
        }
    }
}

/// The checkpoints as a table (one row per manifest and shard).
pub fn manifest_table(ms: &[ManifestEntry]) -> Table {
    let mut t = table::new(&[
        ">id",
        ">epoch",
        "status",
        ">shard",
        ">replay_from",
        ">marker_seq",
        "snapshot",
        ">len",
        "commit offsets",
    ]);
    for m in ms {
        match &m.result {
            Err(e) => {
                t.add_row(vec![m.id.to_string(), "-".into(), format!("INVALID: {e}")]);
            }
            Ok(man) => {
                for (i, s) in man.shards.iter().enumerate() {
                    let commit = s.commit.as_ref().map_or("-".to_string(), |c| {
                        let offs: Vec<String> = c
                            .offsets
                            .iter()
                            .map(|o| format!("{}={}", o.source, o.offset))
                            .collect();
                        if offs.is_empty() {
                            "(none)".into()
                        } else {
                            offs.join(" ")
                        }
                    });
                    // The manifest's own columns only on its first row.
                    let first = |v: String| if i == 0 { v } else { String::new() };
                    t.add_row(vec![
                        first(m.id.to_string()),
                        first(man.epoch.to_string()),
                        first("ok".into()),
                        s.shard.to_string(),
                        s.replay_from.to_string(),
                        s.marker_seq.to_string(),
                        s.snapshot.file.clone(),
                        units::bytes(s.snapshot.len),
                        commit,
                    ]);
                }
            }
        }
    }
    t
}

/// `inspect --json`: the whole report.
#[derive(Serialize)]
struct InspectJson {
    dir: String,
    log_id: String,
    sealed_epoch: u64,
    checkpoint: Option<u64>,
    shards: Vec<ShardJson>,
    checkpoints: Vec<ManifestJson>,
    disk_usage: DiskUsageJson,
}

/// Bytes under the log directory.
#[derive(Serialize)]
struct DiskUsageJson {
    bytes: u64,
    allocated: u64,
    files: u64,
}

/// One shard: its scan, how it ends, its segments and snapshots.
#[derive(Serialize)]
struct ShardJson {
    shard: u32,
    dir: String,
    records: u64,
    seq: Option<(u64, u64)>,
    epoch: Option<(u64, u64)>,
    last_barrier: Option<u64>,
    next_seq: Option<u64>,
    /// `clean`, `torn`, `corrupt` or `partial`.
    status: &'static str,
    /// Where the torn tail or the corruption is (`null` otherwise).
    problem: Option<ProblemJson>,
    segments: Vec<SegmentJson>,
    snapshots: Vec<SnapshotFileJson>,
}

/// A torn tail (with the bytes recovery would cut) or a corruption.
#[derive(Serialize)]
struct ProblemJson {
    file: String,
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    detail: String,
}

/// One segment file: its header's fields (or `"header"`: why it has
/// none) and what the scan saw in it.
#[derive(Serialize)]
struct SegmentJson {
    file: String,
    size: u64,
    allocated: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    records: u64,
    bytes: u64,
    seq: Option<(u64, u64)>,
    epoch: Option<(u64, u64)>,
    status: String,
}

/// A snapshot file in a shard directory.
#[derive(Serialize)]
struct SnapshotFileJson {
    file: String,
    size: u64,
}

impl ShardJson {
    fn new(v: &ShardView) -> ShardJson {
        let sc = &v.scan;
        let segments = (0..sc.files.len())
            .map(|k| {
                let f = &sc.files[k];
                let st = &sc.stats[k];
                let h = sc.headers[k].as_ref();
                SegmentJson {
                    file: f.name.clone(),
                    size: f.len,
                    allocated: f.allocated,
                    first_seq: h.ok().map(|h| h.first_seq.0),
                    first_epoch: h.ok().map(|h| h.first_epoch.0),
                    segment_size: h.ok().map(|h| h.segment_size),
                    header: match h {
                        Ok(_) => None,
                        Err(HeaderError::Blank) => Some("blank".into()),
                        Err(HeaderError::Invalid(d)) => Some(d.to_string()),
                    },
                    records: st.records,
                    bytes: st.bytes,
                    seq: st.seq,
                    epoch: st.epoch,
                    status: segment_status(sc, k),
                }
            })
            .collect();
        let (status, problem) = match &sc.verdict {
            Verdict::Clean(_) => ("clean", None),
            Verdict::Torn(o) => (
                "torn",
                o.torn.as_ref().map(|t| ProblemJson {
                    file: json::path(&t.path),
                    offset: t.offset,
                    bytes: Some(t.bytes),
                    detail: t.cause.to_string(),
                }),
            ),
            Verdict::Corrupt(c) => (
                "corrupt",
                Some(ProblemJson {
                    file: json::path(&c.path),
                    offset: c.offset,
                    bytes: None,
                    detail: c.cause.to_string(),
                }),
            ),
            Verdict::Stopped => ("partial", None),
        };
        ShardJson {
            shard: sc.shard,
            dir: json::path(&sc.dir),
            records: sc.records(),
            seq: sc.seq_range(),
            epoch: sc.epoch_range(),
            last_barrier: v.summary.barriers.last().map(|(e, _)| e.0),
            next_seq: sc.outcome().map(|o| o.next_seq.0),
            status,
            problem,
            segments,
            snapshots: v
                .snapshots
                .iter()
                .map(|(n, l)| SnapshotFileJson {
                    file: n.clone(),
                    size: *l,
                })
                .collect(),
        }
    }
}

/// Run `inspect`.
pub fn run(dir: &Path, json: bool) -> CmdResult {
    let log = LogDir::open(dir)?;
    let (manifests, set) = log.manifests()?;
    let views = scan_all(&log, !json)?;
    let newest = set.newest();
    let floor = set.floor();
    let sealed = sealed_epoch(&log, &views, floor).0;
    let (size, allocated, files) = log.disk_usage();
    let corrupt = views
        .iter()
        .any(|v| matches!(v.scan.verdict, Verdict::Corrupt(_)))
        || manifests.iter().any(|m| m.result.is_err());
    let code = if corrupt { EXIT_CORRUPT } else { EXIT_OK };

    if json {
        json::print(&InspectJson {
            dir: json::path(dir),
            log_id: hex(&log.log_id),
            sealed_epoch: sealed,
            checkpoint: newest.map(|m| m.checkpoint),
            shards: views.iter().map(ShardJson::new).collect(),
            checkpoints: manifests.iter().map(ManifestJson::from).collect(),
            disk_usage: DiskUsageJson {
                bytes: size,
                allocated,
                files,
            },
        })?;
        return Ok(code);
    }

    println!("log          {}", dir.display());
    println!("log id       {}", hex(&log.log_id));
    println!("shards       {}", log.shards.len());
    if !log.layout.retired.is_empty() {
        let r: Vec<String> = log
            .layout
            .retired
            .iter()
            .map(|r| format!("{} (at epoch {})", r.shard, r.epoch))
            .collect();
        println!(
            "re-sharded   written by {} shards; retired: {}",
            log.layout.active(),
            r.join(", ")
        );
    }
    println!(
        "sealed epoch {sealed}  (smallest last barrier over shards{})",
        newest.map_or(String::new(), |m| format!(
            ", at least checkpoint {}'s epoch {}",
            m.checkpoint, m.epoch
        ))
    );
    println!(
        "disk usage   {} in {files} files ({} allocated)",
        units::bytes(size),
        units::bytes(allocated)
    );
    for v in &views {
        print_shard(v);
    }
    println!();
    if manifests.is_empty() {
        println!("checkpoints: none");
    } else {
        println!(
            "checkpoints: {} manifest(s), newest valid: {}",
            manifests.len(),
            newest.map_or("none".to_string(), |m| m.checkpoint.to_string())
        );
        print!("{}", table::render(&manifest_table(&manifests), "  "));
    }
    Ok(code)
}

/// One shard in the text output: its summary, status, segment table and
/// snapshot files.
fn print_shard(v: &ShardView) {
    let sc = &v.scan;
    println!();
    println!("shard {}  {}", sc.shard, sc.dir.display());
    println!(
        "  {} records, seq {}, epochs {}, last barrier {}, next seq {}",
        sc.records(),
        units::range(sc.seq_range()),
        units::range(sc.epoch_range()),
        v.summary
            .barriers
            .last()
            .map_or("-".to_string(), |(e, _)| format!("epoch {e}")),
        sc.outcome()
            .map_or("-".to_string(), |o| o.next_seq.to_string()),
    );
    println!("  status: {}", shard_status(sc));
    let mut t = table::new(&[
        "segment",
        ">size",
        ">first seq",
        ">first epoch",
        ">records",
        "seqs",
        "epochs",
        "status",
    ]);
    for k in 0..sc.files.len() {
        let f = &sc.files[k];
        let st = &sc.stats[k];
        let (fs, fe) = match &sc.headers[k] {
            Ok(h) => (h.first_seq.to_string(), h.first_epoch.to_string()),
            Err(HeaderError::Blank) => ("-".into(), "-".into()),
            Err(HeaderError::Invalid(_)) => ("?".into(), "?".into()),
        };
        t.add_row(vec![
            f.name.clone(),
            units::bytes(f.len),
            fs,
            fe,
            st.records.to_string(),
            units::range(st.seq),
            units::range(st.epoch),
            segment_status(sc, k),
        ]);
    }
    if t.is_empty() {
        println!("  (no segments)");
    } else {
        print!("{}", table::render(&t, "  "));
    }
    if !v.snapshots.is_empty() {
        let list: Vec<String> = v
            .snapshots
            .iter()
            .map(|(n, l)| format!("{n} ({})", units::bytes(*l)))
            .collect();
        println!("  snapshots: {}", list.join(", "));
    }
}
