//! Steps 2 and 3 of `verify`: every manifest, every snapshot a valid
//! manifest refers to, and the replay position of the checkpoint in use
//! (the newest valid manifest) against each shard's log. Manifests are
//! checked in ascending id; for each of its shards, the snapshot and then
//! (for the checkpoint in use) the replay position.

use futures_lite::future::block_on;
use shardwal::Error;
use shardwal::checkpoint::snapshot;
use shardwal::checkpoint::{Manifest, ShardCheckpoint};
use shardwal::recovery::plan::{self, Manifests};

use super::report::{Finding, Kind, ManifestJson, Report, SnapshotJson};
use super::segments::ShardEnd;
use crate::Fail;
use crate::logdir::{LogDir, ManifestEntry};
use crate::output::units;

/// Check every manifest and what it refers to; add what is wrong to
/// `report`.
pub fn check(log: &LogDir, ends: &[ShardEnd], report: &mut Report) -> Result<(), Fail> {
    let (manifests, set) = log.manifests()?;
    let in_use = set.newest().map(|m| m.checkpoint);
    for m in &manifests {
        match &m.result {
            Err(e) => report_invalid(m, e, in_use, report),
            Ok(man) => {
                report.notes.push(format!(
                    "manifest {} (epoch {}): ok, {} shard(s)",
                    m.id,
                    man.epoch,
                    man.shards.len()
                ));
                report.manifests.push(ManifestJson {
                    id: m.id,
                    valid: true,
                    epoch: Some(man.epoch),
                    error: None,
                });
                let newest = Some(m.id) == in_use;
                for sc in &man.shards {
                    check_snapshot(log, man, sc, newest, in_use, report);
                    if newest {
                        check_replay_position(log, &set, man, sc, ends, report);
                    }
                }
            }
        }
    }
    Ok(())
}

/// A manifest that does not validate: corruption (recovery falls back to
/// an older one).
fn report_invalid(m: &ManifestEntry, e: &str, in_use: Option<u64>, report: &mut Report) {
    report.errors.push(Finding {
        kind: Kind::Manifest,
        shard: None,
        file: m.path.display().to_string(),
        offset: None,
        detail: format!(
            "{e} (recovery falls back to {})",
            in_use.map_or("no checkpoint".to_string(), |id| format!("checkpoint {id}"))
        ),
    });
    report.manifests.push(ManifestJson {
        id: m.id,
        valid: false,
        epoch: None,
        error: Some(e.to_string()),
    });
}

/// The snapshot of shard `sc` in manifest `man` must validate. A missing
/// snapshot of a manifest other than the one in use is a warning (a stale
/// manifest that truncation outran); any other failure is corruption.
fn check_snapshot(
    log: &LogDir,
    man: &Manifest,
    sc: &ShardCheckpoint,
    newest: bool,
    in_use: Option<u64>,
    report: &mut Report,
) {
    let sdir = log.shard_dir(sc.shard);
    let path = sdir.join(&sc.snapshot.file);
    let r = block_on(snapshot::read(
        &shardwal::ReadOnlyStorage,
        &sdir,
        sc.shard,
        man.checkpoint,
        &sc.snapshot,
    ));
    let ok = r.is_ok();
    match r {
        Ok(b) => report.notes.push(format!(
            "snapshot {}: ok ({} for checkpoint {})",
            path.display(),
            units::bytes(b.len() as u64),
            man.checkpoint
        )),
        Err(_) if !newest && !path.exists() => report.warnings.push(Finding {
            kind: Kind::StaleManifest,
            shard: Some(sc.shard),
            file: path.display().to_string(),
            offset: None,
            detail: format!(
                "checkpoint {} refers to a snapshot that truncation removed; \
                 the manifest is older than checkpoint {} and unused",
                man.checkpoint,
                in_use.unwrap_or(0)
            ),
        }),
        Err(e) => report.errors.push(Finding {
            kind: Kind::Snapshot,
            shard: Some(sc.shard),
            file: path.display().to_string(),
            offset: None,
            detail: e.to_string(),
        }),
    }
    report.snapshots.push(SnapshotJson {
        checkpoint: man.checkpoint,
        shard: sc.shard,
        file: path.display().to_string(),
        ok,
    });
}

/// The checkpoint in use must replay shard `sc` from a seq its log holds:
/// not before the log's first seq, not past its end (the recovery rule,
/// [`plan::check_checkpoint`]).
fn check_replay_position(
    log: &LogDir,
    set: &Manifests,
    man: &Manifest,
    sc: &ShardCheckpoint,
    ends: &[ShardEnd],
    report: &mut Report,
) {
    let file = log.shard_dir(sc.shard).display().to_string();
    let Some(end) = ends.iter().find(|e| e.shard == sc.shard) else {
        report.errors.push(Finding {
            kind: Kind::ReplayPosition,
            shard: Some(sc.shard),
            file,
            offset: None,
            detail: format!(
                "checkpoint {} has shard {} but the log has no directory for it",
                man.checkpoint, sc.shard
            ),
        });
        return;
    };
    // A corrupt log was reported by the segment check.
    let Some(scanned) = &end.scanned else { return };
    if let Err(Error::Corruption {
        segment,
        offset,
        cause,
        ..
    }) = plan::check_checkpoint(set, scanned)
    {
        report.errors.push(Finding {
            kind: Kind::ReplayPosition,
            shard: Some(sc.shard),
            file: segment.display().to_string(),
            offset: Some(offset),
            detail: cause.to_string(),
        });
    }
}
