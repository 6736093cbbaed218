//! `shardwal inspect DIR`: what a log directory holds. Per shard: its
//! segments (file, size, first seq and epoch from the header, and from a
//! full scan the records, seq and epoch ranges and where the log ends), its
//! snapshot files, and its last barrier; the sealed epoch (the smallest,
//! over shards, of the last barrier epoch, at least the newest checkpoint's
//! epoch: what recovery would cut at); every checkpoint manifest; disk usage.
//!
//! Read-only. Exit status 1 if a shard's log or a manifest is corrupt.

use std::path::Path;

use shardwal::checkpoint::Manifest;
use shardwal::checkpoint::snapshot::parse_snapshot_name;
use shardwal::format::segment_header::HeaderError;
use shardwal::recovery::ScanSummary;

use crate::json::Json;
use crate::logdir::{LogDir, ManifestEntry, ShardScan, Verdict, hex};
use crate::progress::Progress;
use crate::table::{self, Table};
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
                table::bytes(t.bytes),
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

/// The sealed epoch recovery would compute: the smallest last barrier over
/// the written shards, at least `floor` (the newest valid checkpoint's
/// epoch). `views` are in `log.shards` order.
pub fn sealed_epoch(log: &LogDir, views: &[ShardView], floor: u64) -> u64 {
    log.sealed_epoch(floor, |s| {
        let i = log.shards.iter().position(|x| *x == s)?;
        Some(views[i].summary.last_barrier(floor))
    })
}

/// Scan every shard of `log` from its first segment.
pub fn scan_all(log: &LogDir, progress: bool) -> Result<Vec<ShardView>, crate::Fail> {
    let mut prog = Progress::new("scanning", log.segment_bytes(&log.shards), progress);
    let mut views = Vec::new();
    for &s in &log.shards {
        let mut summary = ScanSummary::new(0);
        let scan = log.scan_shard(s, None, &mut prog, |f, seg, off| {
            summary.observe(f, seg, off);
            true
        })?;
        let mut snapshots = Vec::new();
        if let Ok(names) = crate::ro::list(&scan.dir) {
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

/// The newest manifest that validates.
pub fn newest_valid(ms: &[ManifestEntry]) -> Option<&Manifest> {
    ms.iter().rev().find_map(|m| m.result.as_ref().ok())
}

fn range_json(r: Option<(u64, u64)>) -> Json {
    match r {
        Some((a, b)) => Json::A(vec![a.into(), b.into()]),
        None => Json::Null,
    }
}

/// A manifest as JSON.
pub fn manifest_json(m: &ManifestEntry) -> Json {
    let mut j = Json::obj()
        .set("id", m.id)
        .set("file", m.path.as_path())
        .set("valid", m.result.is_ok());
    match &m.result {
        Ok(man) => {
            j.push("epoch", man.epoch);
            let shards = man
                .shards
                .iter()
                .map(|s| {
                    Json::obj()
                        .set("shard", s.shard)
                        .set("replay_from", s.replay_from)
                        .set("marker_seq", s.marker_seq)
                        .set(
                            "snapshot",
                            Json::obj()
                                .set("file", s.snapshot.file.as_str())
                                .set("len", s.snapshot.len)
                                .set("crc", format!("{:#010x}", s.snapshot.crc)),
                        )
                        .set(
                            "commit",
                            s.commit.as_ref().map_or(Json::Null, crate::json::commit),
                        )
                })
                .collect::<Vec<_>>();
            j.push("shards", shards);
        }
        Err(e) => j.push("error", e.as_str()),
    }
    j
}

/// The checkpoints as a table (one row per manifest and shard).
pub fn manifest_table(ms: &[ManifestEntry]) -> Table {
    let mut t = Table::new(&[
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
            Err(e) => t.row(vec![m.id.to_string(), "-".into(), format!("INVALID: {e}")]),
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
                    let first = i == 0;
                    t.row(vec![
                        if first {
                            m.id.to_string()
                        } else {
                            String::new()
                        },
                        if first {
                            man.epoch.to_string()
                        } else {
                            String::new()
                        },
                        if first { "ok".into() } else { String::new() },
                        s.shard.to_string(),
                        s.replay_from.to_string(),
                        s.marker_seq.to_string(),
                        s.snapshot.file.clone(),
                        table::bytes(s.snapshot.len),
                        commit,
                    ]);
                }
            }
        }
    }
    t
}

/// Run `inspect`.
pub fn run(dir: &Path, json: bool) -> CmdResult {
    let log = LogDir::open(dir)?;
    let manifests = log.manifests()?;
    let views = scan_all(&log, !json)?;
    let newest = newest_valid(&manifests);
    let floor = newest.map_or(0, |m| m.epoch);
    let sealed = sealed_epoch(&log, &views, floor);
    let (size, allocated, files) = log.disk_usage();
    let corrupt = views
        .iter()
        .any(|v| matches!(v.scan.verdict, Verdict::Corrupt(_)))
        || manifests.iter().any(|m| m.result.is_err());
    let code = if corrupt { EXIT_CORRUPT } else { EXIT_OK };

    if json {
        let shards: Vec<Json> = views
            .iter()
            .map(|v| {
                let sc = &v.scan;
                let segs: Vec<Json> = (0..sc.files.len())
                    .map(|k| {
                        let f = &sc.files[k];
                        let st = &sc.stats[k];
                        let mut j = Json::obj()
                            .set("file", f.name.as_str())
                            .set("size", f.len)
                            .set("allocated", f.allocated);
                        match &sc.headers[k] {
                            Ok(h) => {
                                j.push("first_seq", h.first_seq);
                                j.push("first_epoch", h.first_epoch);
                                j.push("segment_size", h.segment_size);
                            }
                            Err(HeaderError::Blank) => j.push("header", "blank"),
                            Err(HeaderError::Invalid(d)) => j.push("header", d.to_string()),
                        }
                        j.set("records", st.records)
                            .set("bytes", st.bytes)
                            .set("seq", range_json(st.seq))
                            .set("epoch", range_json(st.epoch))
                            .set("status", segment_status(sc, k))
                    })
                    .collect();
                let (status, problem) = match &sc.verdict {
                    Verdict::Clean(_) => ("clean", Json::Null),
                    Verdict::Torn(o) => {
                        let t = o.torn.as_ref().expect("torn");
                        (
                            "torn",
                            Json::obj()
                                .set("file", t.path.as_path())
                                .set("offset", t.offset)
                                .set("bytes", t.bytes)
                                .set("detail", t.cause.to_string()),
                        )
                    }
                    Verdict::Corrupt(c) => (
                        "corrupt",
                        Json::obj()
                            .set("file", c.path.as_path())
                            .set("offset", c.offset)
                            .set("detail", c.cause.to_string()),
                    ),
                    Verdict::Stopped => ("partial", Json::Null),
                };
                Json::obj()
                    .set("shard", sc.shard)
                    .set("dir", sc.dir.as_path())
                    .set("records", sc.records())
                    .set("seq", range_json(sc.seq_range()))
                    .set("epoch", range_json(sc.epoch_range()))
                    .set("last_barrier", v.summary.barriers.last().map(|(e, _)| *e))
                    .set("next_seq", sc.outcome().map(|o| o.next_seq))
                    .set("status", status)
                    .set("problem", problem)
                    .set("segments", segs)
                    .set(
                        "snapshots",
                        v.snapshots
                            .iter()
                            .map(|(n, l)| Json::obj().set("file", n.as_str()).set("size", *l))
                            .collect::<Vec<_>>(),
                    )
            })
            .collect();
        let out = Json::obj()
            .set("dir", dir)
            .set("log_id", hex(&log.log_id))
            .set("sealed_epoch", sealed)
            .set("checkpoint", newest.map(|m| m.checkpoint))
            .set("shards", shards)
            .set(
                "checkpoints",
                manifests.iter().map(manifest_json).collect::<Vec<_>>(),
            )
            .set(
                "disk_usage",
                Json::obj()
                    .set("bytes", size)
                    .set("allocated", allocated)
                    .set("files", files),
            );
        println!("{out}");
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
        table::bytes(size),
        table::bytes(allocated)
    );
    for v in &views {
        let sc = &v.scan;
        println!();
        println!("shard {}  {}", sc.shard, sc.dir.display());
        println!(
            "  {} records, seq {}, epochs {}, last barrier {}, next seq {}",
            sc.records(),
            table::range(sc.seq_range()),
            table::range(sc.epoch_range()),
            v.summary
                .barriers
                .last()
                .map_or("-".to_string(), |(e, _)| format!("epoch {e}")),
            sc.outcome()
                .map_or("-".to_string(), |o| o.next_seq.to_string()),
        );
        println!("  status: {}", shard_status(sc));
        let mut t = Table::new(&[
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
            t.row(vec![
                f.name.clone(),
                table::bytes(f.len),
                fs,
                fe,
                st.records.to_string(),
                table::range(st.seq),
                table::range(st.epoch),
                segment_status(sc, k),
            ]);
        }
        if t.is_empty() {
            println!("  (no segments)");
        } else {
            print!("{}", t.render("  "));
        }
        if !v.snapshots.is_empty() {
            let list: Vec<String> = v
                .snapshots
                .iter()
                .map(|(n, l)| format!("{n} ({})", table::bytes(*l)))
                .collect();
            println!("  snapshots: {}", list.join(", "));
        }
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
        print!("{}", manifest_table(&manifests).render("  "));
    }
    Ok(code)
}
