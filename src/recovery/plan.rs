//! The recovery planner: every decision of a multi-shard recovery, as pure
//! functions of what was found on disk. No I/O, no threads.
//!
//! `Runtime::start` and the CLI's `recover --dry-run`, `inspect` and
//! `verify` all run the same two steps, around the same streaming scan
//! ([`super::shard::scan`]):
//!
//! 1. [`scope`]: from the `LAYOUT` file (if any), the shard directories
//!    present and the runtime's shard count, which shards must be scanned
//!    and which core scans (and later replays) each one. With the
//!    manifests found ([`Manifests`]), where each scan starts.
//! 2. [`plan`]: from every shard's scan, the recovered sealed epoch, each
//!    shard's cut point and recovery report, the layout in effect after
//!    the start, and each core's [`ReplayPlan`].
//!
//! The rules, in the order they apply (docs/FORMAT.md §10 states them for
//! the bytes):
//!
//! | step | rule |
//! |---|---|
//! | checkpoint | the newest manifest that validates and belongs to this log; newer ones that fail are reported as skipped |
//! | checkpoint vs log | every shard's log must hold the checkpoint's replay position: a log that ends before it (or starts after it) is corruption ([`check_checkpoint`]) |
//! | layout | `LAYOUT` if present; else every shard directory present is written, joined at epoch 0 (a new log: the runtime's shards) |
//! | orphans | a directory the layout does not list must hold no records; an empty one is adopted (retired if ≥ M) |
//! | sealed epoch | the smallest, over written shards, of the last barrier held (at least the checkpoint's epoch) or the join epoch, whichever is later ([`Layout::sealed`]) |
//! | cut | every shard just after its last barrier of an epoch ≤ sealed; with none, at its first frame at or after the replay position |
//! | resume | written shards resume in epoch sealed + 1 |
//! | re-sharding | shards `N..M` join at sealed; shards `M..N` retire at sealed ([`Layout::reshard`]); old shard `s` is replayed by core `s % M` |
//! | replay | from the checkpoint's replay position (or the first record) to the cut; offsets from the last commit record at or before sealed, else the manifest's |

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Display;
use std::time::Duration;

use super::shard::{Scanned, ShardCut, ShardRecovery, decide};
use crate::checkpoint::manifest::Manifest;
use crate::checkpoint::payloads::{CommitRecord, SnapshotRef, SourceOffset};
use crate::error::{CorruptionCause, Error, Result};
use crate::ids::{CheckpointId, Epoch, Seq, ShardId};
use crate::layout::{self, Layout, RetiredShard};

/// The checkpoint manifests found in a log directory, sorted out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifests {
    /// Every manifest that validates and belongs to this log, oldest
    /// first: the newest is the one recovery uses, the others are kept for
    /// fallback and truncation.
    pub retained: VecDeque<Manifest>,
    /// Manifests newer than the one used that failed to validate, and why.
    pub skipped: Vec<(CheckpointId, String)>,
    /// Every manifest that failed to validate (or belongs to another
    /// log), and why, ascending by id.
    pub failed: Vec<(CheckpointId, String)>,
    /// The id the next checkpoint gets: one past every id found, valid or not.
    pub next_checkpoint: CheckpointId,
}

impl Manifests {
    /// Sort out the manifests found (`(id, what reading it gave)`, in any
    /// order) of the log `log_id`.
    pub fn from_found<E: Display>(
        log_id: [u8; 16],
        found: impl IntoIterator<Item = (u64, std::result::Result<Manifest, E>)>,
    ) -> Manifests {
        let mut found: Vec<_> = found
            .into_iter()
            .map(|(id, r)| (CheckpointId(id), r))
            .collect();
        found.sort_by_key(|(id, _)| *id);
        let mut out = Manifests {
            next_checkpoint: CheckpointId(1),
            ..Manifests::default()
        };
        let mut failed = Vec::new();
        for (id, r) in found {
            // The last id would leave no next one: never written by the
            // coordinator, so not a manifest of this log.
            if id.0 == u64::MAX {
                failed.push((id, "checkpoint id out of range".to_string()));
                continue;
            }
            out.next_checkpoint = out.next_checkpoint.max(id.next());
            match r {
                Ok(m) if m.log_id == log_id => out.retained.push_back(m),
                Ok(_) => failed.push((id, "belongs to another log".to_string())),
                Err(e) => failed.push((id, e.to_string())),
            }
        }
        // Only failures newer than the manifest in use are "skipped".
        let used = out
            .newest()
            .map_or(CheckpointId(0), |m| CheckpointId(m.checkpoint));
        out.skipped = failed
            .iter()
            .filter(|(id, _)| *id > used)
            .cloned()
            .collect();
        out.failed = failed;
        out
    }

    /// The manifest recovery starts from: the newest valid one.
    pub fn newest(&self) -> Option<&Manifest> {
        self.retained.back()
    }

    /// The newest manifest's entry for `shard`.
    pub fn entry(&self, shard: ShardId) -> Option<&crate::checkpoint::ShardCheckpoint> {
        self.newest()
            .and_then(|m| m.shards.iter().find(|e| e.shard == shard.0))
    }

    /// The checkpoint recovery starts from, if any.
    pub fn checkpoint(&self) -> Option<CheckpointId> {
        self.newest().map(|m| CheckpointId(m.checkpoint))
    }

    /// Where the scan of `shard` starts: the newest checkpoint's replay
    /// position for it.
    pub fn replay_from(&self, shard: ShardId) -> Option<Seq> {
        self.entry(shard).map(|e| Seq(e.replay_from))
    }

    /// The epoch the newest checkpoint proves sealed (0 without one).
    pub fn floor(&self) -> Epoch {
        Epoch(self.newest().map_or(0, |m| m.epoch))
    }
}

/// Which shards a start recovers, and on which core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The runtime's shard count M.
    pub shards: u32,
    /// What `LAYOUT` held, if the file exists.
    pub loaded: Option<Layout>,
    /// The layout in effect before this start.
    pub old: Layout,
    /// Shard directories the layout does not list (left by a start that
    /// crashed before writing its layout): they must hold no records.
    pub orphans: Vec<ShardId>,
    /// Every shard to scan, ascending.
    pub all: Vec<ShardId>,
    /// For core `i`: its own shard `i`, then the shards `≥ M` it replays
    /// (retired ones, [`layout::replayer`]), ascending.
    pub per_core: Vec<Vec<ShardId>>,
}

pub use crate::layout::MAX_SHARDS;

/// Decide which shards a runtime of `shards` shards recovers on a log with
/// the layout `loaded` (`None`: no `LAYOUT` file) and the shard
/// directories `present`.
///
/// A shard directory that cannot belong to the log is an error, so that a
/// stray name never makes recovery allocate or create anything in
/// proportion to its number: an id of [`MAX_SHARDS`] or more; and, in a
/// log without a `LAYOUT` file (whose shards were all created at once),
/// a directory that leaves a gap below it.
pub fn scope(
    log_id: [u8; 16],
    loaded: Option<Layout>,
    present: &[ShardId],
    shards: u32,
) -> Result<Scope> {
    let stray = |s: ShardId, why: &str| {
        Err(Error::Config(format!(
            "unexpected shard directory shard-{:04}: {why}; remove it if it does not belong to this log",
            s.0
        )))
    };
    if shards > MAX_SHARDS {
        return Err(Error::Config(format!(
            "{shards} shards: at most {MAX_SHARDS} are supported"
        )));
    }
    if let Some(&s) = present.iter().find(|s| s.0 >= MAX_SHARDS) {
        return stray(s, &format!("shard ids stop below {MAX_SHARDS}"));
    }
    if let Some(l) = &loaded
        && (l.active() > MAX_SHARDS || l.retired.iter().any(|r| r.shard >= MAX_SHARDS))
    {
        return Err(Error::Config(format!(
            "the layout lists shards beyond {MAX_SHARDS}"
        )));
    }
    if loaded.is_none() {
        let mut sorted = present.to_vec();
        sorted.sort_unstable();
        if let Some((i, &s)) = sorted.iter().enumerate().find(|(i, s)| s.0 != *i as u32) {
            let why = format!(
                "the log has no LAYOUT file, so its shards are 0..{}, and shard {i} is missing",
                sorted.len()
            );
            return stray(s, &why);
        }
    }
    let old = layout_before(log_id, loaded.as_ref(), present, shards);
    let known = old.data_shards();
    let orphans: Vec<ShardId> = present
        .iter()
        .copied()
        .filter(|s| !known.contains(s))
        .collect();
    let mut all: Vec<ShardId> = known
        .iter()
        .chain(present)
        .copied()
        .chain((0..shards).map(ShardId))
        .collect();
    all.sort_unstable();
    all.dedup();
    if shards == 0 && !all.is_empty() {
        return Err(Error::Config(format!(
            "the layout names no active shard, yet the log has {} (retired or present); \
             it does not describe this log",
            all.len()
        )));
    }
    let mut per_core: Vec<Vec<ShardId>> = (0..shards).map(|i| vec![ShardId(i)]).collect();
    for &s in all.iter().filter(|s| s.0 >= shards) {
        per_core[layout::replayer(s, shards).0 as usize].push(s);
    }
    Ok(Scope {
        shards,
        loaded,
        old,
        orphans,
        all,
        per_core,
    })
}

/// The layout in effect before a start: `LAYOUT` if there is one; without
/// it, the shard directories present are the written shards; with none
/// visible (a new log, or storage that is not the file system), the
/// runtime's `shards`.
fn layout_before(
    log_id: [u8; 16],
    loaded: Option<&Layout>,
    present: &[ShardId],
    shards: u32,
) -> Layout {
    loaded.cloned().unwrap_or_else(|| {
        if present.is_empty() {
            Layout::implicit(log_id, &(0..shards).map(ShardId).collect::<Vec<_>>())
        } else {
            Layout::implicit(log_id, present)
        }
    })
}

/// [`scope`] for a runtime of the log's own shard count: that of the
/// layout in effect (what a tool that recovers the log as it is starts).
pub fn own_scope(log_id: [u8; 16], loaded: Option<Layout>, present: &[ShardId]) -> Result<Scope> {
    let shards = layout_before(log_id, loaded.as_ref(), present, 0).active();
    scope(log_id, loaded, present, shards)
}

/// The recovered sealed epoch: the rule of [`Layout::sealed`] over each
/// shard's last durable barrier (at least `floor`, the checkpoint's epoch).
/// The one place that applies it.
pub fn sealed_epoch(
    layout: &Layout,
    floor: Epoch,
    last_barrier: impl Fn(ShardId) -> Option<Epoch>,
) -> Epoch {
    layout.sealed(floor, |s| last_barrier(s).unwrap_or(floor).max(floor))
}

/// A shard's log must hold what the checkpoint it is recovered from
/// proves existed: every record from the manifest's replay position up to
/// its barrier was durable before the manifest was written. A log that
/// starts after that position, or ends before it, has lost acknowledged
/// records (a truncated file, damage to the last frames): corruption, not
/// a torn tail, with or without repair (the snapshot cannot be combined
/// with a shorter log). The one place this rule is applied: by [`plan`],
/// and by tools that check a log.
pub fn check_checkpoint(manifests: &Manifests, scanned: &Scanned) -> Result<()> {
    let Some(e) = manifests.entry(scanned.shard) else {
        return Ok(());
    };
    let checkpoint = manifests.checkpoint().unwrap_or_default();
    let replay_from = Seq(e.replay_from);
    let o = &scanned.outcome;
    let first_seg = scanned
        .skipped
        .first()
        .map(|s| (s.path.clone(), s.first_seq))
        .or_else(|| o.kept.first().map(|k| (k.path.clone(), k.header.first_seq)));
    let first = first_seg.as_ref().map_or(o.next_seq, |(_, f)| *f);
    let (segment, offset) = if first > replay_from {
        first_seg.map_or((scanned.dir.clone(), 0), |(p, _)| (p, 0))
    } else if o.next_seq < replay_from {
        o.kept
            .last()
            .map_or((scanned.dir.clone(), 0), |k| (k.path.clone(), k.valid_end))
    } else {
        return Ok(());
    };
    Err(Error::Corruption {
        shard: scanned.shard,
        segment,
        offset,
        cause: CorruptionCause::ShorterThanCheckpoint {
            checkpoint,
            replay_from,
            first,
            next: o.next_seq,
        },
    })
}

/// One log a core replays: a shard's snapshot from the checkpoint, then
/// its records from `from` up to `until` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySource {
    /// The shard whose log it is.
    pub shard: ShardId,
    /// Its snapshot, if there is a checkpoint that includes the shard.
    pub snapshot: Option<SnapshotRef>,
    /// First sequence number to replay.
    pub from: Seq,
    /// Sequence number after the last record to replay.
    pub until: Seq,
}

/// What a shard replays after a restart: its snapshot from the checkpoint,
/// then its records from `from` up to `until` (exclusive), which ends with
/// the barrier of the sealed epoch; after re-sharding, also the logs of
/// retired shards this core took over (`adopted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPlan {
    /// The sealed epoch everything was cut at.
    pub sealed: Epoch,
    /// The checkpoint the snapshot comes from.
    pub checkpoint: Option<CheckpointId>,
    /// This shard's snapshot, if there is a checkpoint that includes it.
    pub snapshot: Option<SnapshotRef>,
    /// First sequence number of this shard to replay.
    pub from: Seq,
    /// Sequence number after the last record of this shard to replay.
    pub until: Seq,
    /// Logs of retired shards this core replays (re-sharding to fewer
    /// shards: old shard `s` goes to core `s % shards`), in shard order.
    /// Empty when the log was written by this many shards.
    pub adopted: Vec<ReplaySource>,
    /// Source offsets as of the sealed epoch, of this shard and the shards
    /// it adopted (the highest offset of each source).
    pub offsets: Vec<SourceOffset>,
    /// Source offsets of every shard as of the sealed epoch, merged.
    pub merged_offsets: Vec<SourceOffset>,
    /// The watermark as of the sealed epoch (the lowest of this shard's and
    /// its adopted shards').
    pub watermark: Option<u64>,
}

impl ReplayPlan {
    /// The (shard, from, until) ranges of [`ReplayPlan::sources`], as a
    /// `MergedReader` takes them.
    pub fn ranges(&self, own: ShardId) -> Vec<(ShardId, Seq, Seq)> {
        self.sources(own)
            .iter()
            .map(|s| (s.shard, s.from, s.until))
            .collect()
    }

    /// Every log this core replays, its own first.
    pub fn sources(&self, own: ShardId) -> Vec<ReplaySource> {
        std::iter::once(ReplaySource {
            shard: own,
            snapshot: self.snapshot.clone(),
            from: self.from,
            until: self.until,
        })
        .chain(self.adopted.iter().cloned())
        .collect()
    }
}

/// What opening a log directory found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Per shard whose log was recovered, in shard order: the runtime's
    /// shards, then any retired shards (re-sharding) after them.
    pub shards: Vec<ShardRecovery>,
    /// The recovered sealed epoch: writing resumes in the next one.
    pub sealed: Epoch,
    /// The checkpoint used.
    pub checkpoint: Option<CheckpointId>,
    /// Newer manifests that were skipped, and why.
    pub skipped_manifests: Vec<(CheckpointId, String)>,
    /// The shard layout in effect after the start (see [`crate::layout`]).
    pub layout: Layout,
    /// Wall time of the whole recovery.
    pub elapsed: Duration,
}

/// The plan for one shard.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    /// What recovery does to the shard's directory, and its report.
    pub cut: ShardCut,
    /// What of its log is replayed.
    pub replay: ReplaySource,
    /// The commit record that holds for the sealed epoch, if any.
    pub commit: Option<CommitRecord>,
}

/// Everything a start decides.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The recovered sealed epoch.
    pub sealed: Epoch,
    /// Per shard, in shard order.
    pub shards: BTreeMap<ShardId, ShardPlan>,
    /// Per core, in core order.
    pub cores: Vec<ReplayPlan>,
    /// The layout in effect after the start.
    pub layout: Layout,
    /// True if `layout` differs from what `LAYOUT` holds, so it must be
    /// written (after every shard is cut, before the coordinator starts).
    pub write_layout: bool,
    /// The report (wall times are filled in by whoever runs the plan).
    pub report: RecoveryReport,
}

/// Plan a start from the scope, the manifests and every shard's scan (one
/// per shard of `scope.all`).
pub fn plan(
    scope: &Scope,
    manifests: &Manifests,
    mut scans: BTreeMap<ShardId, Scanned>,
) -> Result<Plan> {
    if let Some(s) = scope.all.iter().find(|s| !scans.contains_key(s)) {
        return Err(Error::Config(format!("the plan lacks the scan of {s}")));
    }
    if let Some(s) = scope
        .orphans
        .iter()
        .find(|s| scans[s].summary.from_point.is_some())
    {
        return Err(Error::Config(format!(
            "{} holds records but the log's layout does not list {s}",
            scans[s].dir.display()
        )));
    }
    for sc in scans.values() {
        check_checkpoint(manifests, sc)?;
    }
    // The consistent cut: the highest epoch whose barrier is durable on
    // every written shard. Later epochs are cut everywhere.
    let floor = manifests.floor();
    let sealed = sealed_epoch(&scope.old, floor, |s| {
        scans.get(&s).map(|x| x.summary.last_barrier(floor))
    });
    // Every shard is cut at the sealed epoch: only then may the layout
    // retire shards (they no longer count for sealing) or add ones.
    let mut layout = scope.old.reshard(scope.shards, sealed);
    for &s in scope.orphans.iter().filter(|s| s.0 >= scope.shards) {
        layout.retired.push(RetiredShard {
            shard: s.0,
            epoch: sealed.0,
        });
        layout.retired.sort_by_key(|r| r.shard);
    }
    let mut shards = BTreeMap::new();
    for &s in &scope.all {
        let scanned = scans.remove(&s).expect("checked above");
        let commit = scanned
            .summary
            .commit_for(sealed)
            .or_else(|| manifests.entry(s).and_then(|e| e.commit.as_ref()))
            .cloned();
        let cut_at = scanned.summary.cut_for(sealed);
        let from_point = scanned.summary.from_point;
        let cut = decide(scanned, cut_at, Some(sealed.next()));
        let until = cut.report.next_seq;
        let from = from_point.map_or(until, |p| p.seq).min(until);
        let replay = ReplaySource {
            shard: s,
            snapshot: manifests.entry(s).map(|e| e.snapshot.clone()),
            from,
            until,
        };
        shards.insert(
            s,
            ShardPlan {
                cut,
                replay,
                commit,
            },
        );
    }
    let mut merged = merge_offsets(shards.values().filter_map(|p| p.commit.as_ref()));
    merged.sort_by(|a, b| a.source.cmp(&b.source));
    let checkpoint = manifests.checkpoint();
    let cores = scope
        .per_core
        .iter()
        .map(|here| {
            let own = &shards[&here[0]].replay;
            let commits: Vec<&CommitRecord> = here
                .iter()
                .filter_map(|s| shards[s].commit.as_ref())
                .collect();
            ReplayPlan {
                sealed,
                checkpoint,
                snapshot: own.snapshot.clone(),
                from: own.from,
                until: own.until,
                adopted: here[1..].iter().map(|s| shards[s].replay.clone()).collect(),
                offsets: merge_offsets(commits.iter().copied()),
                merged_offsets: merged.clone(),
                watermark: commits.iter().map(|c| c.watermark).min(),
            }
        })
        .collect();
    let write_layout = scope.loaded.as_ref() != Some(&layout);
    let report = RecoveryReport {
        shards: shards.values().map(|p| p.cut.report.clone()).collect(),
        sealed,
        checkpoint,
        skipped_manifests: manifests.skipped.clone(),
        layout: layout.clone(),
        elapsed: Duration::ZERO,
    };
    Ok(Plan {
        sealed,
        shards,
        cores,
        layout,
        write_layout,
        report,
    })
}

/// The highest offset of each source over `commits`, in the order the
/// sources first appear (so one commit comes back exactly as written).
pub fn merge_offsets<'a>(commits: impl Iterator<Item = &'a CommitRecord>) -> Vec<SourceOffset> {
    let mut merged: Vec<SourceOffset> = Vec::new();
    for o in commits.flat_map(|c| &c.offsets) {
        match merged.iter_mut().find(|m| m.source == o.source) {
            Some(m) => m.offset = m.offset.max(o.offset),
            None => merged.push(o.clone()),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    //! The planner's table of cases, on values: scans are built from lists
    //! of frames, no bytes and no I/O.

    use std::path::PathBuf;
    use std::time::Instant;

    use super::*;
    use crate::checkpoint::ShardCheckpoint;
    use crate::checkpoint::payloads;
    use crate::format::frame::{Frame, FrameMeta, RecordKind, frame_len};
    use crate::format::segment_header::{RECORDS_START, SegmentHeader};
    use crate::recovery::scan::{ScanOutcome, ScannedSegment};
    use crate::recovery::shard::Scanned;
    use crate::recovery::summary::ScanSummary;

    const LOG: [u8; 16] = [5; 16];

    /// A frame of a shard's log: its kind and epoch (commits carry offsets).
    #[derive(Clone)]
    enum F {
        Data(u64),
        Barrier(u64),
        Commit(u64, u64),
    }

    /// The scan of a shard whose log (one segment) holds `frames` from seq
    /// `first` on, scanned from `from`.
    fn scanned(shard: u32, first: u64, from: Option<u64>, frames: &[F]) -> Scanned {
        let header = SegmentHeader {
            log_id: LOG,
            shard: ShardId(shard),
            index: 0,
            first_seq: Seq(first),
            first_epoch: Epoch(1),
            nonce: 1,
            segment_size: 1 << 20,
            zeroed: false,
            sized: false,
        };
        let mut summary = ScanSummary::new(Seq(from.unwrap_or(0)));
        let mut pos = RECORDS_START;
        let mut bytes = 0;
        for (i, f) in frames.iter().enumerate() {
            let (kind, epoch, payload) = match f {
                F::Data(e) => (RecordKind::Data, *e, Vec::new()),
                F::Barrier(e) => (RecordKind::Barrier, *e, Vec::new()),
                F::Commit(e, off) => (
                    RecordKind::Commit,
                    *e,
                    payloads::encode(&CommitRecord {
                        epoch: *e,
                        offsets: vec![SourceOffset {
                            source: format!("src-{shard}"),
                            offset: *off,
                        }],
                        watermark: *off,
                    })
                    .unwrap(),
                ),
            };
            let len = frame_len(payload.len());
            let frame = Frame {
                meta: FrameMeta {
                    seq: Seq(first + i as u64),
                    epoch: Epoch(epoch),
                    durable_next: Seq(0),
                    kind,
                },
                payload: &payload,
                len,
            };
            summary.observe(&frame, 0, pos);
            pos += len;
            bytes += len as u64;
        }
        let n = frames.len() as u64;
        let seg = ScannedSegment {
            index: 0,
            path: PathBuf::from(format!("shard-{shard}/0.seg")),
            header,
            valid_end: pos as u64,
            data_end: pos as u64,
            next_seq: Seq(first + n),
            records: n,
        };
        let last_epoch = match frames.last() {
            Some(F::Barrier(e)) => Some(e + 1),
            Some(F::Data(e) | F::Commit(e, _)) => Some(*e),
            None => None,
        };
        Scanned {
            shard: ShardId(shard),
            dir: PathBuf::from(format!("shard-{shard}")),
            outcome: ScanOutcome {
                kept: if n > 0 { vec![seg] } else { Vec::new() },
                dropped: Vec::new(),
                torn: None,
                repaired: None,
                next_seq: Seq(first + n),
                next_epoch: last_epoch.map(Epoch),
                records: n,
                bytes,
            },
            summary,
            skipped: Vec::new(),
            max_index: (n > 0).then_some(0),
            stopped: false,
            started: Instant::now(),
        }
    }

    /// `epochs` epochs of `per` data records each, every one ended by its barrier.
    fn epochs(epochs: u64, per: usize) -> Vec<F> {
        (1..=epochs)
            .flat_map(|e| {
                std::iter::repeat_n(F::Data(e), per).chain(std::iter::once(F::Barrier(e)))
            })
            .collect()
    }

    fn ids(v: &[u32]) -> Vec<ShardId> {
        v.iter().copied().map(ShardId).collect()
    }

    fn run(scope: &Scope, ms: &Manifests, scans: Vec<Scanned>) -> Result<Plan> {
        plan(scope, ms, scans.into_iter().map(|s| (s.shard, s)).collect())
    }

    #[test]
    fn the_sealed_epoch_is_the_smallest_last_barrier_and_every_shard_is_cut_there() {
        let scope = scope(LOG, None, &ids(&[0, 1]), 2).unwrap();
        let mut a = epochs(5, 2);
        a.extend([F::Data(6), F::Data(6)]);
        let b = epochs(3, 1);
        let p = run(
            &scope,
            &Manifests::default(),
            vec![scanned(0, 0, None, &a), scanned(1, 0, None, &b)],
        )
        .unwrap();
        assert_eq!(p.sealed, Epoch(3));
        // Shard 0 keeps epochs 1..=3 (3 × 3 frames), loses 2 epochs + 2 records.
        let r0 = &p.shards[&ShardId(0)].cut.report;
        assert_eq!(
            (r0.next_seq, r0.cut_records, r0.epoch),
            (Seq(9), 8, Epoch(4))
        );
        let r1 = &p.shards[&ShardId(1)].cut.report;
        assert_eq!(
            (r1.next_seq, r1.cut_records, r1.epoch),
            (Seq(6), 0, Epoch(4))
        );
        assert_eq!(p.cores[0].until, Seq(9));
        assert_eq!(p.cores[0].from, Seq(0));
        assert!(p.write_layout, "a log without LAYOUT gets one");
        assert_eq!(p.layout.joined, vec![0, 0]);
    }

    #[test]
    fn a_checkpoint_floors_the_seal_and_sets_the_replay_position() {
        // Checkpoint 7 at epoch 3; shard 1 wrote no barrier since.
        let m = Manifest {
            log_id: LOG,
            checkpoint: 7,
            epoch: 3,
            shards: (0..2)
                .map(|s| ShardCheckpoint {
                    shard: s,
                    replay_from: 6,
                    marker_seq: 4,
                    snapshot: SnapshotRef::default(),
                    commit: Some(CommitRecord {
                        epoch: 3,
                        offsets: vec![SourceOffset {
                            source: format!("src-{s}"),
                            offset: 100,
                        }],
                        watermark: 1,
                    }),
                })
                .collect(),
        };
        let ms = Manifests::from_found(LOG, [(7, Ok::<_, String>(m)), (8, Err("damaged".into()))]);
        assert_eq!(ms.skipped, vec![(CheckpointId(8), "damaged".to_string())]);
        assert_eq!(ms.next_checkpoint, CheckpointId(9));
        let scope = scope(LOG, None, &ids(&[0, 1]), 2).unwrap();
        let a = [F::Data(4), F::Commit(4, 150), F::Barrier(4), F::Data(5)];
        let b = [F::Data(4), F::Data(4)];
        let p = run(
            &scope,
            &ms,
            vec![scanned(0, 6, Some(6), &a), scanned(1, 6, Some(6), &b)],
        )
        .unwrap();
        assert_eq!(
            p.sealed,
            Epoch(3),
            "shard 1 holds nothing past the checkpoint"
        );
        assert_eq!(p.report.checkpoint, Some(CheckpointId(7)));
        // Both shards are cut back to the replay position.
        for s in [0, 1] {
            let r = &p.shards[&ShardId(s)].cut.report;
            assert_eq!(r.next_seq, Seq(6), "shard {s}");
            assert_eq!(p.shards[&ShardId(s)].replay.from, Seq(6));
        }
        // Offsets fall back to the manifest's commit: epoch 4's was cut.
        assert_eq!(p.cores[0].offsets[0].offset, 100);
        assert_eq!(p.cores[0].merged_offsets.len(), 2);
    }

    #[test]
    fn offsets_come_from_the_last_commit_at_or_before_the_seal() {
        let scope = scope(LOG, None, &ids(&[0]), 1).unwrap();
        let f = [
            F::Commit(1, 10),
            F::Barrier(1),
            F::Commit(2, 20),
            F::Commit(2, 25),
            F::Barrier(2),
            F::Commit(3, 30),
        ];
        let p = run(&scope, &Manifests::default(), vec![scanned(0, 0, None, &f)]).unwrap();
        assert_eq!(p.sealed, Epoch(2));
        assert_eq!(p.cores[0].offsets[0].offset, 25);
        assert_eq!(p.cores[0].watermark, Some(25));
    }

    #[test]
    fn shrinking_retires_shards_that_no_longer_hold_the_seal_back() {
        let four = Layout::implicit(LOG, &ids(&[0, 1, 2, 3]));
        let scope = scope(LOG, Some(four.clone()), &ids(&[0, 1, 2, 3]), 2).unwrap();
        assert_eq!(scope.per_core, vec![ids(&[0, 2]), ids(&[1, 3])]);
        let scans = (0..4)
            .map(|s| scanned(s, 0, None, &epochs(4 + s as u64, 1)))
            .collect();
        let p = run(&scope, &Manifests::default(), scans).unwrap();
        // Retirement happens at this start's seal: all four still count.
        assert_eq!(p.sealed, Epoch(4));
        assert_eq!(p.layout.active(), 2);
        assert_eq!(
            p.layout.retired,
            vec![
                RetiredShard { shard: 2, epoch: 4 },
                RetiredShard { shard: 3, epoch: 4 }
            ]
        );
        assert_eq!(p.cores[0].adopted.len(), 1);
        assert_eq!(p.cores[0].adopted[0].shard, ShardId(2));
        assert_eq!(p.cores[1].adopted[0].shard, ShardId(3));
        // Every shard, retired ones included, is cut at the seal.
        assert_eq!(p.shards[&ShardId(3)].cut.report.cut_records, 6);
        // The next start: retired shards do not count any more.
        let scope = scope_after(&p, &ids(&[0, 1, 2, 3]), 2);
        let scans = vec![
            scanned(0, 0, None, &epochs(9, 1)),
            scanned(1, 0, None, &epochs(8, 1)),
            scanned(2, 0, None, &epochs(4, 1)),
            scanned(3, 0, None, &epochs(4, 1)),
        ];
        let p = run(&scope, &Manifests::default(), scans).unwrap();
        assert_eq!(p.sealed, Epoch(8));
        assert!(!p.write_layout);
    }

    fn scope_after(p: &Plan, present: &[ShardId], shards: u32) -> Scope {
        scope(LOG, Some(p.layout.clone()), present, shards).unwrap()
    }

    #[test]
    fn growing_joins_new_shards_at_the_seal() {
        let scope = scope(
            LOG,
            Some(Layout::implicit(LOG, &ids(&[0, 1]))),
            &ids(&[0, 1]),
            4,
        )
        .unwrap();
        let scans = vec![
            scanned(0, 0, None, &epochs(6, 1)),
            scanned(1, 0, None, &epochs(5, 1)),
            scanned(2, 0, None, &[]),
            scanned(3, 0, None, &[]),
        ];
        let p = run(&scope, &Manifests::default(), scans).unwrap();
        assert_eq!(p.sealed, Epoch(5));
        assert_eq!(p.layout.joined, vec![0, 0, 5, 5]);
        assert_eq!(p.shards[&ShardId(2)].cut.report.epoch, Epoch(6));
        // Next start: the new shards wrote nothing yet, and do not pull
        // the seal below their join epoch.
        let scope = scope_after(&p, &ids(&[0, 1, 2, 3]), 4);
        let scans = vec![
            scanned(0, 0, None, &epochs(7, 1)),
            scanned(1, 0, None, &epochs(7, 1)),
            scanned(2, 0, None, &[]),
            scanned(3, 0, None, &[]),
        ];
        let p = run(&scope, &Manifests::default(), scans).unwrap();
        assert_eq!(p.sealed, Epoch(5));
    }

    #[test]
    fn an_unlisted_directory_with_records_is_refused_and_an_empty_one_adopted() {
        let listed = Layout::implicit(LOG, &ids(&[0]));
        let scope = scope(LOG, Some(listed), &ids(&[0, 3]), 1).unwrap();
        assert_eq!(scope.orphans, ids(&[3]));
        let with_records = vec![
            scanned(0, 0, None, &epochs(2, 1)),
            scanned(3, 0, None, &epochs(1, 1)),
        ];
        let e = run(&scope, &Manifests::default(), with_records).unwrap_err();
        assert!(e.to_string().contains("does not list shard 3"), "{e}");
        let empty = vec![scanned(0, 0, None, &epochs(2, 1)), scanned(3, 0, None, &[])];
        let p = run(&scope, &Manifests::default(), empty).unwrap();
        assert_eq!(p.layout.retired, vec![RetiredShard { shard: 3, epoch: 2 }]);
    }

    #[test]
    fn manifests_of_another_log_are_never_used() {
        let foreign = Manifest {
            log_id: [9; 16],
            checkpoint: 3,
            epoch: 9,
            shards: Vec::new(),
        };
        let ms = Manifests::from_found(LOG, [(3, Ok::<_, String>(foreign))]);
        assert!(ms.newest().is_none());
        assert_eq!(ms.failed.len(), 1);
        assert_eq!(ms.next_checkpoint, CheckpointId(4));
    }

    #[test]
    fn a_stray_shard_directory_is_an_error_not_an_allocation() {
        let e = scope(LOG, None, &[ShardId(0), ShardId(1), ShardId(u32::MAX)], 2).unwrap_err();
        assert!(e.to_string().contains("shard-4294967295"), "{e}");
        let e = scope(LOG, None, &ids(&[0, 1, 99_999]), 2).unwrap_err();
        assert!(e.to_string().contains("shard-99999"), "{e}");
        // Without LAYOUT the shards were created together: no gaps.
        let e = scope(LOG, None, &ids(&[0, 1, 7]), 2).unwrap_err();
        assert!(e.to_string().contains("shard 2 is missing"), "{e}");
        // With a layout, ids beyond the bound are refused too.
        let l = Layout::implicit(LOG, &ids(&[0, 1]));
        assert!(scope(LOG, Some(l.clone()), &ids(&[0, 1, 5000]), 2).is_err());
        assert!(scope(LOG, Some(l), &ids(&[0, 1]), MAX_SHARDS + 1).is_err());
    }
}
