//! The checks of a killed runtime child against its reports and the model
//! of its directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use futures_lite::future::block_on;
use shardwal::checkpoint::manifest::Manifest;
use shardwal::checkpoint::payloads::{self, CheckpointMarker, CommitRecord};
use shardwal::recovery::plan::Plan;
use shardwal::segment::shard_dir;
use shardwal::{ReadOnlyStorage, RecordKind, Seq, ShardId};

use crate::Figures;
use crate::kill::Killed;
use crate::payload::{parse_input, parse_snapshot, source};
use crate::protocol::{Line, Restored};
use crate::read_only::{check_merged, plan_read_only, read_shard, snapshot_ids};

/// The runtime workload's model of its directory.
#[derive(Debug, Default)]
pub(crate) struct RtModel {
    /// `(shard, epoch)` → (first input, count) for every sealed epoch.
    pub(crate) counts: BTreeMap<(u32, u64), (u64, u64)>,
    pub(crate) sealed: u64,
    pub(crate) until: Vec<u64>,
    /// What the next child's cores must restore.
    pub(crate) predicted: Vec<Restored>,
}

/// Check a killed runtime child and its directory; update the model.
pub(crate) fn verify_runtime(
    dir: &Path,
    k: usize,
    m: &mut RtModel,
    ch: &Killed,
    f: &mut Figures,
) -> Result<(), String> {
    let started = ch.lines.iter().any(|l| matches!(l, Line::Started));
    let mut acked_sealed = 0;
    let mut acked_ckpt: Option<(u64, u64)> = None;
    let mut counts: HashMap<(u32, u64), (u64, u64)> = HashMap::new();
    let mut restored = Vec::new();
    for l in &ch.lines {
        match l {
            Line::Fail(msg) => return Err(format!("the child reported: {msg}")),
            Line::Sealed(e) => acked_sealed = acked_sealed.max(*e),
            Line::Ckpt { id, epoch } => {
                acked_sealed = acked_sealed.max(*epoch);
                acked_ckpt = acked_ckpt.max(Some((*id, *epoch)));
                f.checkpoints_acked += 1;
            }
            Line::Count { s, e, first, n } => {
                if *e <= m.sealed {
                    return Err(format!(
                        "shard {s} logged records in epoch {e}, but epoch {} was sealed before it started",
                        m.sealed
                    ));
                }
                if counts.insert((*s, *e), (*first, *n)).is_some() {
                    return Err(format!("shard {s} reported epoch {e} twice"));
                }
            }
            Line::Restored(r) => restored.push(*r),
            _ => {}
        }
    }
    // The child's start planned what the parent predicted.
    if !restored.is_empty() {
        restored.sort_by_key(|r| r.shard);
        let predicted: Vec<Restored> = if m.predicted.is_empty() {
            (0..k as u32)
                .map(|s| Restored {
                    shard: s,
                    sealed: 0,
                    from: 0,
                    until: 0,
                    checkpoint: 0,
                    snap_count: 0,
                    replayed: 0,
                    offset: 0,
                })
                .collect()
        } else {
            m.predicted.clone()
        };
        // Cores killed before reporting are not compared.
        for r in &restored {
            let p = predicted.iter().find(|p| p.shard == r.shard);
            if p != Some(r) {
                return Err(format!(
                    "the child's start restored {r:?}; the read-only plan predicted {p:?}"
                ));
            }
            f.records_replayed += r.replayed;
        }
        f.starts_checked += 1;
    }
    // Each shard resumes its input where the sealed epoch's commit left it.
    for s in 0..k as u32 {
        if let Some((&(_, e), &(first, _))) = counts
            .iter()
            .filter(|((x, _), _)| *x == s)
            .min_by_key(|((_, e), _)| *e)
        {
            let resume = m
                .predicted
                .iter()
                .find(|p| p.shard == s)
                .map_or(0, |p| p.offset);
            if e != m.sealed + 1 || first != resume {
                return Err(format!(
                    "shard {s} resumed in epoch {e} at input {first}; expected epoch {} at input {resume}",
                    m.sealed + 1
                ));
            }
        }
    }
    if !dir.join(shardwal::log_dir::LOG_ID_FILE).exists() {
        if started || acked_sealed > 0 || m.sealed > 0 {
            return Err("the log has no LOG_ID after a start".into());
        }
        return Ok(());
    }
    let (p, manifests) = plan_read_only(dir, k as u32)?;
    let sealed = p.sealed.0;
    let until: Vec<u64> = (0..k as u32).map(|s| p.cores[s as usize].until.0).collect();
    if sealed < m.sealed {
        return Err(format!(
            "the sealed epoch went back from {} to {sealed}",
            m.sealed
        ));
    }
    if sealed < acked_sealed {
        return Err(format!(
            "the child reported epoch {acked_sealed} sealed; recovery finds {sealed}"
        ));
    }
    for (s, (now, before)) in until.iter().zip(&m.until).enumerate() {
        if now < before {
            return Err(format!(
                "shard {s}: the log's end went back from {before} to {now}"
            ));
        }
    }
    if !started && (sealed != m.sealed || (!m.until.is_empty() && until != m.until)) {
        return Err(format!(
            "a start killed before it finished changed the plan: sealed {} → {sealed}, ends {:?} → {until:?}",
            m.sealed, m.until
        ));
    }
    let newest = manifests.newest();
    if let Some((id, epoch)) = acked_ckpt {
        match newest {
            Some(n) if n.checkpoint >= id && n.epoch >= epoch => {}
            _ => {
                return Err(format!(
                    "the child reported checkpoint {id} at epoch {epoch} durable; recovery uses {:?}",
                    newest.map(|n| (n.checkpoint, n.epoch))
                ));
            }
        }
    }
    if let Some(n) = newest
        && n.epoch > sealed
    {
        return Err(format!(
            "checkpoint {} at epoch {} is past the sealed epoch {sealed}",
            n.checkpoint, n.epoch
        ));
    }
    let newest_id = newest.map_or(0, |n| n.checkpoint);
    if (0..k as u32).any(|s| snapshot_ids(dir, s).iter().any(|&id| id > newest_id)) {
        f.snapshot_files_in_flight += 1;
    }
    // The newly sealed epochs get their counts.
    for e in m.sealed + 1..=sealed {
        for s in 0..k as u32 {
            let Some(&c) = counts.get(&(s, e)) else {
                return Err(format!(
                    "epoch {e} is sealed on disk but shard {s} never reported its records"
                ));
            };
            m.counts.insert((s, e), c);
            f.runtime_records_verified += c.1;
        }
    }
    f.epochs_verified += sealed - m.sealed;
    f.epochs_acked += acked_sealed.saturating_sub(m.sealed);
    let mut predicted = Vec::new();
    let mut ranges = Vec::new();
    for s in 0..k as u32 {
        let (from, snap_count) = check_shard(dir, s, &p, newest, sealed, &m.counts, f)?;
        let core = &p.cores[s as usize];
        let offset = core
            .offsets
            .iter()
            .find(|o| o.source == source(s))
            .map_or(0, |o| o.offset);
        let replayed = offset - snap_count;
        predicted.push(Restored {
            shard: s,
            sealed,
            from,
            until: until[s as usize],
            checkpoint: core.checkpoint.map_or(0, |c| c.0),
            snap_count,
            replayed,
            offset,
        });
        ranges.push((ShardId(s), Seq(from), Seq(until[s as usize])));
    }
    check_merged(dir, &ranges)?;
    m.sealed = sealed;
    m.until = until;
    m.predicted = predicted;
    Ok(())
}

/// Check one shard of a runtime log up to its cut. Returns the replay
/// plan's `from` and the snapshot's input count.
pub(crate) fn check_shard(
    dir: &Path,
    s: u32,
    p: &Plan,
    newest: Option<&Manifest>,
    sealed: u64,
    counts: &BTreeMap<(u32, u64), (u64, u64)>,
    f: &mut Figures,
) -> Result<(u64, u64), String> {
    let core = &p.cores[s as usize];
    let (from, until) = (core.from.0, core.until.0);
    let err = |m: String| format!("shard {s}: {m}");
    let recs = if shard_dir(dir, ShardId(s)).exists() {
        read_shard(dir, s, until)?
    } else {
        Vec::new()
    };
    f.records_read += recs.len() as u64;
    let first = recs.first().map_or(until, |r| r.seq);
    if recs.last().map_or(first, |r| r.seq + 1) != until {
        return Err(err(format!(
            "the log ends at {:?}, the plan cuts at {until}",
            recs.last().map(|r| r.seq)
        )));
    }
    // The checkpoint: the plan starts just after its barrier, and its
    // snapshot holds the inputs up to the end of its epoch.
    let entry = newest.and_then(|n| n.shards.iter().find(|e| e.shard == s));
    let snap_count = match (newest, entry) {
        (Some(n), Some(e)) => {
            if from != e.replay_from || e.marker_seq < e.replay_from {
                return Err(err(format!(
                    "replays from {from}; checkpoint {} says replay_from {}, marker at {}",
                    n.checkpoint, e.replay_from, e.marker_seq
                )));
            }
            let bytes = block_on(shardwal::checkpoint::snapshot::read(
                &ReadOnlyStorage,
                &shard_dir(dir, ShardId(s)),
                s,
                n.checkpoint,
                &e.snapshot,
            ))
            .map_err(|e| err(format!("snapshot of checkpoint {}: {e}", n.checkpoint)))?;
            let c = parse_snapshot(s, n.checkpoint, &bytes)?;
            let want = counts.get(&(s, n.epoch)).map(|(a, b)| a + b);
            if want != Some(c) {
                return Err(err(format!(
                    "the snapshot of checkpoint {} at epoch {} holds {c} inputs; epoch {} ended at {want:?}",
                    n.checkpoint, n.epoch, n.epoch
                )));
            }
            if let Some(b) = recs.iter().find(|r| r.seq + 1 == from)
                && (b.kind != RecordKind::Barrier || b.epoch != n.epoch)
            {
                return Err(err(format!(
                    "record {} before replay_from is not barrier({})",
                    b.seq, n.epoch
                )));
            }
            c
        }
        (None, _) => {
            if from != first {
                return Err(err(format!(
                    "no checkpoint, yet replay starts at {from}, the log at {first}"
                )));
            }
            0
        }
        (Some(n), None) => {
            return Err(err(format!(
                "checkpoint {} has no entry for the shard",
                n.checkpoint
            )));
        }
    };
    if first > from {
        return Err(err(format!(
            "the log starts at {first}, after the replay position {from}"
        )));
    }
    if sealed == 0 && until != 0 {
        return Err(err(format!(
            "nothing is sealed, yet the plan keeps records up to {until}"
        )));
    }
    // Walk the records: epochs, barriers, data against the counts, commits.
    let mut last_barrier: Option<u64> = None;
    let mut data: Vec<u64> = Vec::new();
    let mut replayed_inputs = Vec::new();
    let check_epoch = |e: u64, data: &[u64], whole: bool| -> Result<(), String> {
        let Some(&(a, n)) = counts.get(&(s, e)) else {
            return Err(err(format!("no count for sealed epoch {e}")));
        };
        let want: Vec<u64> = (a..a + n).collect();
        let ok = if whole {
            data == want.as_slice()
        } else {
            want.ends_with(data)
        };
        if !ok {
            return Err(err(format!(
                "epoch {e} holds inputs {:?}..{:?} ({} records); the child logged {a}..{} ({n})",
                data.first(),
                data.last(),
                data.len(),
                a + n
            )));
        }
        Ok(())
    };
    for (i, r) in recs.iter().enumerate() {
        if i > 0 && r.seq != recs[i - 1].seq + 1 {
            return Err(err(format!(
                "seqs jump from {} to {}",
                recs[i - 1].seq,
                r.seq
            )));
        }
        if r.epoch > sealed {
            return Err(err(format!(
                "record {} of unsealed epoch {} is kept (sealed {sealed})",
                r.seq, r.epoch
            )));
        }
        if let Some(b) = last_barrier
            && r.epoch != b + 1
        {
            return Err(err(format!(
                "record {} of epoch {} follows barrier({b})",
                r.seq, r.epoch
            )));
        }
        match r.kind {
            RecordKind::Data => {
                let d =
                    parse_input(&r.payload).map_err(|e| err(format!("record {}: {e}", r.seq)))?;
                if d.shard != s || d.epoch != r.epoch {
                    return Err(err(format!(
                        "record {} in epoch {} says {d:?}",
                        r.seq, r.epoch
                    )));
                }
                data.push(d.input);
                if r.seq >= from {
                    replayed_inputs.push(d.input);
                }
            }
            RecordKind::Barrier => {
                if let Some(b) = last_barrier
                    && r.epoch != b + 1
                {
                    return Err(err(format!("barrier({}) after barrier({b})", r.epoch)));
                }
                check_epoch(r.epoch, &data, last_barrier.is_some() || first == 0)?;
                last_barrier = Some(r.epoch);
                data.clear();
            }
            RecordKind::Commit => {
                let c: CommitRecord = payloads::decode(&r.payload, "commit")
                    .map_err(|e| err(format!("commit {}: {e}", r.seq)))?;
                let end = counts.get(&(s, r.epoch)).map(|(a, n)| a + n);
                let off = c
                    .offsets
                    .iter()
                    .find(|o| o.source == source(s))
                    .map(|o| o.offset);
                if c.epoch != r.epoch || off.is_none() || off != end {
                    return Err(err(format!(
                        "commit {} of epoch {} says epoch {} offset {off:?}; the epoch ends at input {end:?}",
                        r.seq, r.epoch, c.epoch
                    )));
                }
            }
            RecordKind::Checkpoint => {
                let mk: CheckpointMarker = payloads::decode(&r.payload, "marker")
                    .map_err(|e| err(format!("marker {}: {e}", r.seq)))?;
                if mk.epoch >= r.epoch {
                    return Err(err(format!(
                        "marker {} of checkpoint {} at epoch {} logged in epoch {}",
                        r.seq, mk.checkpoint, mk.epoch, r.epoch
                    )));
                }
            }
            other => return Err(err(format!("unexpected {other:?} record at {}", r.seq))),
        }
    }
    if let Some(r) = recs.last()
        && (r.kind != RecordKind::Barrier || r.epoch != sealed)
    {
        return Err(err(format!(
            "the cut is not just after barrier({sealed}): the last record is {:?} of epoch {}",
            r.kind, r.epoch
        )));
    }
    // Exactly-once: the snapshot, then the inputs replayed, reach the
    // committed offset.
    let offset = core
        .offsets
        .iter()
        .find(|o| o.source == source(s))
        .map(|o| o.offset);
    let end = counts.get(&(s, sealed)).map(|(a, n)| a + n);
    if sealed > 0 && offset != end {
        return Err(err(format!(
            "the plan resumes the input at {offset:?}; sealed epoch {sealed} ends at {end:?}"
        )));
    }
    let offset = offset.unwrap_or(0);
    if offset < snap_count {
        return Err(err(format!(
            "the plan resumes the input at {offset}, before the snapshot's {snap_count}"
        )));
    }
    let want: Vec<u64> = (snap_count..offset).collect();
    if replayed_inputs != want {
        return Err(err(format!(
            "replays inputs {:?}..{:?} ({}); snapshot {snap_count} + replay must reach offset {offset}",
            replayed_inputs.first(),
            replayed_inputs.last(),
            replayed_inputs.len()
        )));
    }
    Ok((from, snap_count))
}
