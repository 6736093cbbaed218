//! `shardwal verify DIR`: a full check of a log directory, read-only.
//!
//! - Every segment of every shard is scanned from its first byte with the
//!   recovery scanner (every frame's CRC, dense seqs, non-decreasing
//!   epochs), and the recovery table of cases decides how each shard ends:
//!   clean, a torn tail (a warning: recovery cuts it; nothing that was
//!   reported durable is lost), or corruption (damage that a later record
//!   proves was durable, or a damaged segment header).
//! - Commit records and checkpoint markers must hold valid rkyv payloads.
//! - Every manifest must validate (CRC, rkyv, id, log id).
//! - Every snapshot referenced by a valid manifest must validate against it
//!   (`snapshot::read`: header, length, CRCs). An older manifest whose
//!   snapshot file is gone (removed by truncation while the manifest's own
//!   removal was not yet durable) is a warning.
//! - The newest valid checkpoint's replay position must lie within each
//!   shard's log.
//!
//! Exit 0 when nothing is corrupt (warnings included), 1 on corruption,
//! with one line per problem naming the shard, the file and the byte offset.

use std::path::Path;

use futures_lite::future::block_on;
use shardwal::RecordKind;
use shardwal::checkpoint::payloads::{self, CheckpointMarker, CommitRecord};
use shardwal::checkpoint::snapshot;
use shardwal::recovery::ScanOutcome;

use crate::json::Json;
use crate::logdir::{LogDir, Verdict};
use crate::progress::Progress;
use crate::ro::ReadOnly;
use crate::table;
use crate::{CmdResult, EXIT_CORRUPT, EXIT_OK};

/// One finding.
struct Finding {
    /// "corruption", "torn_tail", "invalid_payload", "manifest", "snapshot",
    /// "replay_position", "stale_manifest".
    kind: &'static str,
    shard: Option<u32>,
    file: String,
    offset: Option<u64>,
    detail: String,
}

impl Finding {
    /// One line: `CORRUPTION in shard 0, segment F, offset N: detail`,
    /// `WARNING: torn tail in shard 1, segment F, offset N: detail`, ...
    fn line(&self, level: &str) -> String {
        let mut s = match (level, self.kind) {
            ("CORRUPTION", "corruption") => "CORRUPTION".to_string(),
            (l, k) => format!("{l}: {}", k.replace('_', " ")),
        };
        if let Some(sh) = self.shard {
            s += &format!(" in shard {sh}");
        }
        let what = if self.file.ends_with(shardwal::segment::SEGMENT_EXT) {
            "segment"
        } else {
            "file"
        };
        s += &format!(", {what} {}", self.file);
        if let Some(o) = self.offset {
            s += &format!(", offset {o}");
        }
        s + &format!(": {}", self.detail)
    }

    fn json(&self) -> Json {
        Json::obj()
            .set("kind", self.kind)
            .set("shard", self.shard)
            .set("file", self.file.as_str())
            .set("offset", self.offset)
            .set("detail", self.detail.as_str())
    }
}

/// Run `verify`.
pub fn run(dir: &Path, json: bool) -> CmdResult {
    let log = LogDir::open(dir)?;
    let mut errors: Vec<Finding> = Vec::new();
    let mut warnings: Vec<Finding> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut shard_json = Vec::new();

    // Segments.
    let mut prog = Progress::new("verifying", log.segment_bytes(&log.shards), !json);
    let mut outcomes: Vec<(u32, Option<ScanOutcome>, Option<u64>)> = Vec::new();
    for &s in &log.shards {
        let mut bad_payloads = Vec::new();
        let scan = log.scan_shard(s, None, &mut prog, |f, seg, off| {
            let problem = match f.meta.kind {
                RecordKind::Commit => payloads::decode::<CommitRecord>(f.payload, "commit")
                    .err()
                    .map(|e| e.to_string()),
                RecordKind::Checkpoint => {
                    payloads::decode::<CheckpointMarker>(f.payload, "checkpoint marker")
                        .err()
                        .map(|e| e.to_string())
                }
                _ => None,
            };
            if let Some(p) = problem {
                bad_payloads.push((seg, off, f.meta.seq, p));
            }
            true
        })?;
        for (seg, off, seq, p) in bad_payloads {
            let file = scan
                .files
                .iter()
                .find(|f| f.index == seg)
                .map_or(String::new(), |f| f.path.display().to_string());
            errors.push(Finding {
                kind: "invalid_payload",
                shard: Some(s),
                file,
                offset: Some(off as u64),
                detail: format!("record seq {seq}: {p}"),
            });
        }
        let status = match &scan.verdict {
            Verdict::Corrupt(c) => {
                errors.push(Finding {
                    kind: "corruption",
                    shard: Some(s),
                    file: c.path.display().to_string(),
                    offset: Some(c.offset),
                    detail: c.cause.to_string(),
                });
                "corrupt"
            }
            Verdict::Torn(o) => {
                let t = o.torn.as_ref().expect("torn verdict has a tail");
                warnings.push(Finding {
                    kind: "torn_tail",
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
        };
        let bytes: u64 = scan.stats.iter().map(|x| x.bytes).sum();
        notes.push(format!(
            "shard {s}: {status}: {} segment file(s), {} records (seq {}), {} of frames checked",
            scan.files.len(),
            scan.records(),
            table::range(scan.seq_range()),
            table::bytes(bytes)
        ));
        shard_json.push(
            Json::obj()
                .set("shard", s)
                .set("status", status)
                .set("segments", scan.files.len())
                .set("records", scan.records())
                .set("bytes", bytes),
        );
        let first_seq = scan
            .headers
            .iter()
            .find_map(|h| h.as_ref().ok())
            .filter(|h| h.log_id == log.log_id && h.shard == s)
            .map(|h| h.first_seq);
        outcomes.push((s, scan.outcome().cloned(), first_seq));
    }
    drop(prog);

    // Manifests and snapshots.
    let manifests = log.manifests()?;
    let newest_valid = manifests
        .iter()
        .rev()
        .find(|m| m.result.is_ok())
        .map(|m| m.id);
    let mut manifest_json = Vec::new();
    let mut snapshot_json = Vec::new();
    for m in &manifests {
        let newest = Some(m.id) == newest_valid;
        match &m.result {
            Err(e) => {
                errors.push(Finding {
                    kind: "manifest",
                    shard: None,
                    file: m.path.display().to_string(),
                    offset: None,
                    detail: format!(
                        "{e} (recovery falls back to {})",
                        newest_valid
                            .map_or("no checkpoint".to_string(), |id| format!("checkpoint {id}"))
                    ),
                });
                manifest_json.push(
                    Json::obj()
                        .set("id", m.id)
                        .set("valid", false)
                        .set("error", e.as_str()),
                );
            }
            Ok(man) => {
                notes.push(format!(
                    "manifest {} (epoch {}): ok, {} shard(s)",
                    m.id,
                    man.epoch,
                    man.shards.len()
                ));
                manifest_json.push(
                    Json::obj()
                        .set("id", m.id)
                        .set("valid", true)
                        .set("epoch", man.epoch),
                );
                for sc in &man.shards {
                    let sdir = log.shard_dir(sc.shard);
                    let path = sdir.join(&sc.snapshot.file);
                    let r = block_on(snapshot::read(
                        &ReadOnly,
                        &sdir,
                        sc.shard,
                        man.checkpoint,
                        &sc.snapshot,
                    ));
                    let ok = r.is_ok();
                    match r {
                        Ok(b) => notes.push(format!(
                            "snapshot {}: ok ({} for checkpoint {})",
                            path.display(),
                            table::bytes(b.len() as u64),
                            man.checkpoint
                        )),
                        Err(e) => {
                            let missing = !path.exists();
                            let f = Finding {
                                kind: if missing && !newest {
                                    "stale_manifest"
                                } else {
                                    "snapshot"
                                },
                                shard: Some(sc.shard),
                                file: path.display().to_string(),
                                offset: None,
                                detail: if missing && !newest {
                                    format!(
                                        "checkpoint {} refers to a snapshot that truncation removed; \
                                         the manifest is older than checkpoint {} and unused",
                                        man.checkpoint,
                                        newest_valid.unwrap_or(0)
                                    )
                                } else {
                                    e.to_string()
                                },
                            };
                            if missing && !newest {
                                warnings.push(f);
                            } else {
                                errors.push(f);
                            }
                        }
                    }
                    snapshot_json.push(
                        Json::obj()
                            .set("checkpoint", man.checkpoint)
                            .set("shard", sc.shard)
                            .set("file", path.as_path())
                            .set("ok", ok),
                    );
                    // The newest checkpoint's replay position must be in the log.
                    if !newest {
                        continue;
                    }
                    let Some((_, outcome, first)) =
                        outcomes.iter().find(|(s, _, _)| *s == sc.shard)
                    else {
                        errors.push(Finding {
                            kind: "replay_position",
                            shard: Some(sc.shard),
                            file: sdir.display().to_string(),
                            offset: None,
                            detail: format!(
                                "checkpoint {} has shard {} but the log has no directory for it",
                                man.checkpoint, sc.shard
                            ),
                        });
                        continue;
                    };
                    let Some(o) = outcome else { continue };
                    let file = sdir.display().to_string();
                    if first.is_some_and(|f| f > sc.replay_from) {
                        errors.push(Finding {
                            kind: "replay_position",
                            shard: Some(sc.shard),
                            file,
                            offset: None,
                            detail: format!(
                                "checkpoint {} replays from seq {} but the log starts at seq {}",
                                man.checkpoint,
                                sc.replay_from,
                                first.unwrap_or(0)
                            ),
                        });
                    } else if o.next_seq < sc.replay_from {
                        errors.push(Finding {
                            kind: "replay_position",
                            shard: Some(sc.shard),
                            file,
                            offset: None,
                            detail: format!(
                                "checkpoint {} replays from seq {} but the log ends at seq {}: \
                                 durable records are missing",
                                man.checkpoint, sc.replay_from, o.next_seq
                            ),
                        });
                    }
                }
            }
        }
    }

    let code = if errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_CORRUPT
    };
    let status = if !errors.is_empty() {
        "corrupt"
    } else if warnings.iter().any(|w| w.kind == "torn_tail") {
        "torn_tail"
    } else {
        "clean"
    };
    if json {
        let out = Json::obj()
            .set("dir", dir)
            .set("ok", errors.is_empty())
            .set("status", status)
            .set(
                "errors",
                errors.iter().map(Finding::json).collect::<Vec<_>>(),
            )
            .set(
                "warnings",
                warnings.iter().map(Finding::json).collect::<Vec<_>>(),
            )
            .set("shards", shard_json)
            .set("manifests", manifest_json)
            .set("snapshots", snapshot_json);
        println!("{out}");
        return Ok(code);
    }
    for n in &notes {
        println!("{n}");
    }
    for w in &warnings {
        println!("{}", w.line("WARNING"));
    }
    for e in &errors {
        println!("{}", e.line("CORRUPTION"));
    }
    match (errors.len(), warnings.len()) {
        (0, 0) => println!("verify: OK"),
        (0, w) => println!("verify: OK with {w} warning(s)"),
        (e, _) => println!("verify: FAILED, {e} problem(s) found"),
    }
    Ok(code)
}
