//! The coordinator thread: owns all coordination state (next epoch,
//! pending epochs and their acks, the sealed watermark, checkpoint ids,
//! retained manifests, timers) and is the only writer of manifests.
//!
//! Epochs resolve in order. An epoch fails, and with it every later one
//! (sealing is monotonic, so nothing after a failed epoch can seal), when a
//! shard acks a failure, when a shard's executor dies, or when a shard
//! does not answer within `CoordinatorConfig::barrier_timeout`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};

use super::{
    CheckpointInfo, CheckpointTicket, Command, Coordinator, CoordinatorConfig, EpochTicket, Issued,
    Shared,
};
use crate::checkpoint::manifest::{self, Manifest, ShardCheckpoint};
use crate::control::{Ack, BarrierRequest, ControlEvent, ShardTx, ToShard};
use crate::error::{Error, Result};
use crate::ids::{CheckpointId, Epoch, Seq, ShardId};
use crate::io::Storage;
use crate::io::std_fs::StdStorage;
use crate::layout::Layout;

struct PendingCkpt {
    id: CheckpointId,
    epoch: Epoch,
    parts: Vec<Option<ShardCheckpoint>>,
    waiters: Vec<Sender<Result<CheckpointInfo>>>,
}

impl PendingCkpt {
    fn complete(&self) -> bool {
        self.parts.iter().all(Option::is_some)
    }

    fn fail(self, err: &Error) {
        for w in self.waiters {
            crate::reply::send_or_gone(&w, Err(clone_err(err)));
        }
    }
}

struct PendingEpoch {
    issued: Instant,
    acked: Vec<bool>,
    waiters: Vec<Sender<Result<Epoch>>>,
    checkpoint: Option<PendingCkpt>,
    failed: Option<Error>,
}

pub(crate) struct CoordinatorThread {
    shards: Vec<ShardTx>,
    acks: Receiver<Ack>,
    cmds: Receiver<Command>,
    shared: Arc<Shared>,
    cfg: CoordinatorConfig,
    log_dir: PathBuf,
    log_id: [u8; 16],
    next_epoch: Epoch,
    next_checkpoint: CheckpointId,
    pending: BTreeMap<Epoch, PendingEpoch>,
    retained: VecDeque<Manifest>,
    /// Checkpoints whose epoch has sealed but whose snapshots are not all
    /// durable yet, by id: their manifests are written in id order, each
    /// once every shard's part is in.
    in_flight: BTreeMap<CheckpointId, PendingCkpt>,
    layout: Layout,
    failed: Option<Error>,
    /// A shard was poisoned by a checkpoint's I/O: nothing new can be
    /// issued, while the epochs it had already acknowledged may still seal.
    doomed: Option<Error>,
    epochs_since_checkpoint: u64,
    /// With archiving: each sealed epoch goes to the archiver.
    archive_sealed: Option<Sender<Epoch>>,
    /// The archive watermark as the archiver last reported it.
    archived: Epoch,
    /// Truncations a checkpoint allowed, waiting for the archive to reach
    /// its epoch (a segment is deleted locally only once archived).
    held: VecDeque<HeldTruncation>,
}

/// What a completed checkpoint lets the shards delete, once archived.
struct HeldTruncation {
    epoch: Epoch,
    /// (shard, log before this seq, snapshots older than this checkpoint).
    shards: Vec<(ShardId, Seq, CheckpointId)>,
}

/// The coordinator's side of the archive.
pub(crate) struct ArchiveLink {
    pub shared: Arc<crate::archive::ArchiveShared>,
    /// Each sealed epoch, to the archiver thread.
    pub sealed: Sender<Epoch>,
}

/// Everything needed to start the coordinator thread.
pub(crate) struct CoordinatorStart {
    pub shards: Vec<ShardTx>,
    pub acks: Receiver<Ack>,
    pub cfg: CoordinatorConfig,
    pub log_dir: PathBuf,
    pub log_id: [u8; 16],
    /// The epoch the next barrier ends.
    pub next_epoch: Epoch,
    /// The sealed epoch recovered from the log.
    pub sealed: Epoch,
    pub next_checkpoint: CheckpointId,
    pub retained: VecDeque<Manifest>,
    /// The shard layout written at start.
    pub layout: Layout,
    /// Set when the runtime archives.
    pub archive: Option<ArchiveLink>,
}

pub(crate) fn spawn(start: CoordinatorStart) -> Result<(Coordinator, JoinHandle<()>)> {
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (archive_shared, archive_sealed) = match start.archive {
        Some(a) => (Some(a.shared), Some(a.sealed)),
        None => (None, None),
    };
    let shared = Arc::new(Shared::new(cmd_tx, start.sealed, archive_shared));
    let mut t = CoordinatorThread {
        shards: start.shards,
        acks: start.acks,
        cmds: cmd_rx,
        shared: shared.clone(),
        cfg: start.cfg,
        log_dir: start.log_dir,
        log_id: start.log_id,
        next_epoch: start.next_epoch,
        next_checkpoint: start.next_checkpoint,
        pending: BTreeMap::new(),
        retained: start.retained,
        in_flight: BTreeMap::new(),
        layout: start.layout,
        failed: None,
        doomed: None,
        epochs_since_checkpoint: 0,
        archive_sealed,
        archived: Epoch(0),
        held: VecDeque::new(),
    };
    let handle = std::thread::Builder::new()
        .name("shardwal-coordinator".into())
        .spawn(move || t.run())
        .map_err(|e| Error::io("spawn coordinator thread", "", e))?;
    Ok((Coordinator { shared }, handle))
}

impl CoordinatorThread {
    fn run(&mut self) {
        let mut next_tick = self.cfg.epoch_interval.map(|d| Instant::now() + d);
        let mut shutting_down = false;
        loop {
            let wake = [next_tick, self.next_deadline()]
                .into_iter()
                .flatten()
                .min();
            let timeout = wake.map_or(Duration::from_secs(3600), |t| {
                t.saturating_duration_since(Instant::now())
            });
            select! {
                recv(self.cmds) -> cmd => match cmd {
                    Ok(Command::Advance { checkpoint, reply }) => {
                        let r = self.issue(checkpoint);
                        crate::reply::send_or_gone(&reply, r);
                    }
                    Ok(Command::FinalEpoch { reply }) => {
                        // The last epoch goes to the engines themselves, so
                        // each commits the offsets of everything it logged;
                        // right behind it on every channel, the request to
                        // return. Timers stop.
                        next_tick = None;
                        let r = self.issue(false).and_then(|i| match i {
                            Issued::Epoch(t) => Ok(t),
                            Issued::Checkpoint(_) => Err(Error::ShutDown),
                        });
                        for s in &self.shards {
                            s.send(ToShard::Event(ControlEvent::Shutdown));
                        }
                        crate::reply::send_or_gone(&reply, r);
                    }
                    Ok(Command::Archived(e)) => {
                        self.archived = self.archived.max(e);
                        self.release_truncations();
                    }
                    Ok(Command::Shutdown) | Err(_) => {
                        if !shutting_down {
                            shutting_down = true;
                            next_tick = None;
                            self.shared.stopped.store(true, Ordering::Release);
                            for s in &self.shards {
                                s.send(ToShard::Event(ControlEvent::Shutdown));
                                s.send(ToShard::Stop);
                            }
                        }
                        if self.idle() {
                            break;
                        }
                    }
                },
                recv(self.acks) -> ack => match ack {
                    Ok(a) => {
                        self.on_ack(a);
                        if shutting_down && self.idle() {
                            break;
                        }
                    }
                    // Every shard is gone.
                    Err(_) => break,
                },
                default(timeout) => {
                    self.expire(Instant::now());
                    if shutting_down && self.idle() {
                        break;
                    }
                    if let (Some(t), Some(d)) = (next_tick, self.cfg.epoch_interval)
                        && Instant::now() >= t
                    {
                        let ck = self.cfg.checkpoint_every.is_some_and(|k| {
                            self.epochs_since_checkpoint + 1 >= k.max(1)
                        });
                        // A refused issue is the coordinator's own failure,
                        // which every ticket and the next call already report.
                        if let Err(error) = self.issue(ck) {
                            tracing::debug!(%error, "no timed barrier: the coordinator has failed");
                        }
                        next_tick = Some(t + d);
                    }
                }
            }
        }
        self.shared.stopped.store(true, Ordering::Release);
        // Anything still pending fails: the shards are gone.
        let pending = std::mem::take(&mut self.pending);
        for (_, p) in pending {
            for w in p.waiters {
                crate::reply::send_or_gone(&w, Err(Error::ShutDown));
            }
            if let Some(c) = p.checkpoint {
                c.fail(&Error::ShutDown);
            }
        }
        for (_, c) in std::mem::take(&mut self.in_flight) {
            c.fail(&Error::ShutDown);
        }
    }

    /// Nothing is waiting for a shard: no epoch unsealed, no checkpoint
    /// without all its parts.
    fn idle(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_empty()
    }

    fn issue(&mut self, checkpoint: bool) -> Result<Issued> {
        if let Some(e) = self.failed.as_ref().or(self.doomed.as_ref()) {
            return Err(clone_err(e));
        }
        let epoch = self.next_epoch;
        self.next_epoch = epoch.next();
        let ckpt = checkpoint.then(|| {
            let id = self.next_checkpoint;
            self.next_checkpoint = id.next();
            id
        });
        self.epochs_since_checkpoint = if ckpt.is_some() {
            0
        } else {
            self.epochs_since_checkpoint + 1
        };
        let n = self.shards.len();
        let (seal_tx, seal_rx) = crossbeam_channel::bounded(1);
        let mut pe = PendingEpoch {
            issued: Instant::now(),
            acked: vec![false; n],
            waiters: Vec::new(),
            checkpoint: None,
            failed: None,
        };
        let issued = match ckpt {
            Some(id) => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                pe.checkpoint = Some(PendingCkpt {
                    id,
                    epoch,
                    parts: vec![None; n],
                    waiters: vec![tx],
                });
                Issued::Checkpoint(CheckpointTicket { id, epoch, rx })
            }
            None => {
                pe.waiters.push(seal_tx);
                Issued::Epoch(EpochTicket { epoch, rx: seal_rx })
            }
        };
        let req = BarrierRequest {
            epoch,
            checkpoint: ckpt,
        };
        for (i, s) in self.shards.iter().enumerate() {
            if !s.send(ToShard::Event(ControlEvent::Barrier(req))) && pe.failed.is_none() {
                pe.failed = Some(Error::ShardFailed {
                    shard: ShardId(i as u32),
                    what: format!("the barrier of {epoch}"),
                    cause: "the shard has stopped".into(),
                });
            }
        }
        self.pending.insert(epoch, pe);
        self.settle();
        Ok(issued)
    }

    fn on_ack(&mut self, ack: Ack) {
        match ack {
            Ack::Barrier { shard, epoch } => {
                if let Some(pe) = self.pending.get_mut(&epoch)
                    && let Some(a) = pe.acked.get_mut(shard.0 as usize)
                {
                    *a = true;
                }
            }
            Ack::Checkpoint { shard, id, part } => self.on_checkpoint_part(shard, id, part),
            Ack::Dead { shard, cause } => {
                // The shard's executor is gone: nothing it was asked will be
                // answered, and no later epoch can seal.
                let err = Error::ShardFailed {
                    shard,
                    what: "its executor".into(),
                    cause,
                };
                for pe in self.pending.values_mut() {
                    if pe.failed.is_none() {
                        pe.failed = Some(clone_err(&err));
                    }
                }
                self.failed.get_or_insert(err);
            }
            Ack::Failed {
                shard,
                epoch,
                cause,
            } => {
                if let Some(pe) = self.pending.get_mut(&epoch)
                    && pe.failed.is_none()
                {
                    let what = match &pe.checkpoint {
                        Some(c) => format!("{} at {epoch}", c.id),
                        None => format!("the barrier of {epoch}"),
                    };
                    pe.failed = Some(Error::ShardFailed { shard, what, cause });
                }
            }
        }
        self.settle();
    }

    /// When the oldest unanswered barrier times out, if ever.
    fn next_deadline(&self) -> Option<Instant> {
        let limit = self.cfg.barrier_timeout?;
        self.pending
            .values()
            .filter(|p| p.failed.is_none())
            .map(|p| p.issued + limit)
            .min()
    }

    /// Fail every epoch a shard has not answered within the barrier
    /// timeout, naming the first such shard.
    fn expire(&mut self, now: Instant) {
        let Some(limit) = self.cfg.barrier_timeout else {
            return;
        };
        let mut any = false;
        for (&epoch, pe) in self.pending.iter_mut() {
            if pe.failed.is_some() || now < pe.issued + limit {
                continue;
            }
            if let Some(i) = pe.acked.iter().position(|a| !a) {
                pe.failed = Some(Error::ShardStuck {
                    shard: ShardId(i as u32),
                    waiting_for: format!("the barrier of epoch {epoch}"),
                    waited: now - pe.issued,
                });
                any = true;
            }
        }
        if any {
            self.settle();
        }
    }

    /// Resolve epochs in order: seal complete ones, fail failed ones.
    fn settle(&mut self) {
        while let Some((&epoch, pe)) = self.pending.iter().next() {
            if let Some(err) = &pe.failed {
                // A failed epoch can never seal, nor can any after it.
                let err = clone_err(err);
                if self.failed.is_none() {
                    tracing::error!(epoch = epoch.0, error = %err, "epoch failed: no later epoch can seal");
                }
                self.failed.get_or_insert_with(|| clone_err(&err));
                let Some(pe) = self.pending.remove(&epoch) else {
                    break;
                };
                fail(pe, &err);
                continue;
            }
            if !pe.acked.iter().all(|&a| a) {
                break;
            }
            let Some(pe) = self.pending.remove(&epoch) else {
                break;
            };
            crate::metrics::record_latency(&mut self.shared.seal_latency(), pe.issued.elapsed());
            // The watermark never goes backwards.
            self.shared.sealed.fetch_max(epoch.0, Ordering::AcqRel);
            if let Some(tx) = &self.archive_sealed {
                crate::reply::send_or_gone(tx, epoch);
            }
            tracing::debug!(
                epoch = epoch.0,
                since_issue_us = pe.issued.elapsed().as_micros() as u64,
                "epoch sealed"
            );
            for w in &pe.waiters {
                // A waiter that gave up (dropped its ticket) needs no answer.
                crate::reply::send_or_gone(w, Ok(epoch));
            }
            if let Some(pc) = pe.checkpoint {
                self.in_flight.insert(pc.id, pc);
            }
        }
        self.write_ready_manifests();
        if let Some(err) = &self.failed {
            // Later epochs cannot seal either.
            let err = clone_err(err);
            for (_, pe) in std::mem::take(&mut self.pending) {
                fail(pe, &err);
            }
        }
    }

    /// A shard's part of checkpoint `id` arrived: keep it, or fail the
    /// checkpoint. The part may come before the epoch has sealed on every
    /// shard (a small snapshot, a slow barrier elsewhere) or long after.
    fn on_checkpoint_part(
        &mut self,
        shard: ShardId,
        id: CheckpointId,
        part: std::result::Result<ShardCheckpoint, crate::control::CheckpointFailure>,
    ) {
        // Sealed checkpoints wait in `in_flight`; one whose epoch has not
        // sealed yet is still its pending epoch's. One already failed (or
        // shut down) is in neither and needs no part.
        let in_flight = self.in_flight.contains_key(&id);
        match part {
            Ok(p) => {
                let pc = if in_flight {
                    self.in_flight.get_mut(&id)
                } else {
                    epoch_taking(&mut self.pending, id).and_then(|pe| pe.checkpoint.as_mut())
                };
                if let Some(s) = pc.and_then(|pc| pc.parts.get_mut(shard.0 as usize)) {
                    *s = Some(p);
                }
                self.write_ready_manifests();
            }
            Err(f) => {
                let pc = if in_flight {
                    self.in_flight.remove(&id)
                } else {
                    epoch_taking(&mut self.pending, id).and_then(|pe| pe.checkpoint.take())
                };
                let Some(pc) = pc else {
                    return;
                };
                let err = Error::ShardFailed {
                    shard,
                    what: format!("{id} at {}", pc.epoch),
                    cause: f.cause,
                };
                tracing::warn!(checkpoint = id.0, shard = shard.0, error = %err, "checkpoint failed");
                pc.fail(&err);
                if f.poisoned {
                    // Fail-stop: the shard is poisoned, so no epoch whose
                    // barrier it has not made durable yet can seal, and
                    // every later call fails at once. Epochs it has already
                    // acknowledged may still seal.
                    for pe in self.pending.values_mut() {
                        if pe.failed.is_none()
                            && !pe.acked.get(shard.0 as usize).is_some_and(|&a| a)
                        {
                            pe.failed = Some(clone_err(&err));
                        }
                    }
                    self.doomed.get_or_insert(err);
                    self.settle();
                }
                // A later checkpoint may have been waiting behind this one.
                self.write_ready_manifests();
            }
        }
    }

    /// Write the manifests of sealed checkpoints whose parts are all in,
    /// oldest first; stop at the first still waiting for a snapshot, so
    /// manifests appear in id order and the retained list stays sorted.
    fn write_ready_manifests(&mut self) {
        while let Some(entry) = self.in_flight.first_entry() {
            if !entry.get().complete() {
                break;
            }
            let pc = entry.remove();
            self.finish_checkpoint(pc);
        }
    }

    fn finish_checkpoint(&mut self, pc: PendingCkpt) {
        let epoch = pc.epoch;
        let shards: Vec<ShardCheckpoint> = pc.parts.into_iter().flatten().collect();
        let m = Manifest {
            log_id: self.log_id,
            checkpoint: pc.id.0,
            epoch: epoch.0,
            shards,
        };
        let written =
            futures_lite::future::block_on(manifest::write(&StdStorage, &self.log_dir, &m));
        let path = match written {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                tracing::warn!(checkpoint = pc.id.0, epoch = epoch.0, error = %msg, "checkpoint failed: its manifest was not written");
                for w in pc.waiters {
                    crate::reply::send_or_gone(
                        &w,
                        Err(Error::Io {
                            op: "write manifest",
                            path: self.log_dir.clone(),
                            source: std::io::Error::other(msg.clone()),
                        }),
                    );
                }
                return;
            }
        };
        tracing::info!(checkpoint = pc.id.0, epoch = epoch.0, manifest = %path.display(), "checkpoint complete");
        self.retained.push_back(m);
        while self.retained.len() > self.cfg.keep_checkpoints.max(1) {
            if let Some(old) = self.retained.pop_front() {
                let p = self
                    .log_dir
                    .join(manifest::CHECKPOINT_DIR)
                    .join(manifest::manifest_name(old.checkpoint));
                // A manifest left behind is only an older fallback; the next
                // checkpoint tries again.
                if let Err(e) = futures_lite::future::block_on(StdStorage.remove(&p))
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %p.display(), error = %e, "could not remove an old manifest");
                }
            }
        }
        let cdir = self.log_dir.join(manifest::CHECKPOINT_DIR);
        // The removals need not be durable (FORMAT.md §1): a manifest that
        // reappears after a crash is an older, valid fallback.
        if let Err(e) = futures_lite::future::block_on(StdStorage.sync_dir(&cdir)) {
            tracing::warn!(dir = %cdir.display(), error = %e, "could not sync the checkpoints directory");
        }
        // What the shards may drop: log wholly before the oldest retained
        // checkpoint, and older snapshots; with archiving, once the archive
        // holds this checkpoint.
        if let Some(oldest) = self.retained.front() {
            self.held.push_back(HeldTruncation {
                epoch,
                shards: oldest
                    .shards
                    .iter()
                    .map(|sc| {
                        (
                            ShardId(sc.shard),
                            Seq(sc.replay_from),
                            CheckpointId(oldest.checkpoint),
                        )
                    })
                    .collect(),
            });
        }
        self.release_truncations();
        for w in pc.waiters {
            // A waiter that gave up needs no answer.
            crate::reply::send_or_gone(
                &w,
                Ok(CheckpointInfo {
                    id: pc.id,
                    epoch,
                    manifest: path.clone(),
                }),
            );
        }
    }
}

impl CoordinatorThread {
    /// Send the truncations the archive allows (all of them, without
    /// archiving), then remove retired shards no checkpoint needs.
    fn release_truncations(&mut self) {
        let mut released = false;
        while let Some(h) = self.held.front() {
            if self.archive_sealed.is_some() && self.archived < h.epoch {
                break;
            }
            let Some(h) = self.held.pop_front() else {
                break;
            };
            for (shard, before, keep_snapshots_from) in h.shards {
                if let Some(s) = self.shards.get(shard.0 as usize) {
                    s.send(ToShard::Truncate {
                        before,
                        keep_snapshots_from,
                    });
                }
            }
            released = true;
        }
        if released {
            self.remove_unneeded_retired();
        }
    }

    /// Retired shards (re-sharding) whose logs no retained manifest refers
    /// to are not needed by any recovery any more: remove them. A failure
    /// leaves them in place, to be retried after the next checkpoint.
    fn remove_unneeded_retired(&mut self) {
        let unneeded: Vec<ShardId> = self
            .layout
            .retired
            .iter()
            .map(|r| ShardId(r.shard))
            .filter(|s| {
                !self
                    .retained
                    .iter()
                    .any(|m| m.shards.iter().any(|e| e.shard == s.0))
            })
            .collect();
        if !unneeded.is_empty()
            && let Err(e) =
                crate::layout::remove_retired(&self.log_dir, &mut self.layout, &unneeded)
        {
            tracing::warn!(error = %e, "could not remove retired shards; retried after the next checkpoint");
        }
    }
}

/// The pending epoch that takes checkpoint `id`, if it has not sealed yet.
fn epoch_taking(
    pending: &mut BTreeMap<Epoch, PendingEpoch>,
    id: CheckpointId,
) -> Option<&mut PendingEpoch> {
    pending
        .values_mut()
        .find(|pe| pe.checkpoint.as_ref().is_some_and(|pc| pc.id == id))
}

fn fail(pe: PendingEpoch, err: &Error) {
    for w in pe.waiters {
        crate::reply::send_or_gone(&w, Err(clone_err(err)));
    }
    if let Some(c) = pe.checkpoint {
        for w in c.waiters {
            crate::reply::send_or_gone(&w, Err(clone_err(err)));
        }
    }
}

pub(super) fn clone_err(e: &Error) -> Error {
    match e {
        Error::ShardFailed { shard, what, cause } => Error::ShardFailed {
            shard: *shard,
            what: what.clone(),
            cause: cause.clone(),
        },
        Error::ShutDown => Error::ShutDown,
        Error::ShardStuck {
            shard,
            waiting_for,
            waited,
        } => Error::ShardStuck {
            shard: *shard,
            waiting_for: waiting_for.clone(),
            waited: *waited,
        },
        other => Error::Coordinator {
            cause: other.to_string(),
        },
    }
}
