//! The shard context: what the engine's per-core code gets. It holds the
//! shard's log handle (`!Send`, local to the core) and its control events.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crossbeam_channel::Sender;

use super::snapshot_writer::{SnapshotStart, SnapshotWriter};
use crate::checkpoint::payloads::{self, CommitRecord, SourceOffset};
use crate::checkpoint::snapshot;
use crate::control::{Ack, BarrierRequest, ControlEvent, ShardRx, ToShard};
use crate::error::{Error, Result};
use crate::format::frame::RecordKind;
use crate::ids::{CheckpointId, Lsn, Seq, ShardId};
use crate::io::Storage;
use crate::recovery::ShardRecovery;
use crate::writer::ShardLog;

/// The doorbell's listening end, as one executor sees it.
pub(crate) enum Bell {
    /// Open (or not yet taken from the control channel, which holds it
    /// until the first wait).
    Open(Rc<RefCell<glommio::net::UnixStream>>),
    /// The coordinator's end is closed: nothing will ring again.
    Closed,
}

/// Per-shard handle given to the engine's code on its core.
pub struct ShardContext<S: Storage> {
    pub(crate) log: ShardLog<S>,
    pub(crate) shard: ShardId,
    pub(crate) shard_count: usize,
    pub(crate) rx: ShardRx,
    /// The doorbell's listening end on this executor, once `control` has
    /// been awaited.
    pub(crate) bell: RefCell<Bell>,
    pub(crate) acks: Sender<Ack>,
    pub(crate) last_commit: RefCell<Option<CommitRecord>>,
    pub(crate) shutdown: Cell<bool>,
    pub(crate) stop: Cell<bool>,
    pub(crate) plan: super::ReplayPlan,
    pub(crate) log_dir: std::path::PathBuf,
    /// Where the shard's metrics are published for `Runtime::metrics`.
    pub(crate) metrics: super::core_job::MetricsSlot,
    /// The latest truncation running in the background (its file removals
    /// run on the executor's blocking thread): awaited before the executor
    /// ends.
    pub(crate) truncation: RefCell<Option<glommio::task::JoinHandle<()>>>,
    /// Epochs of the barrier requests handed to the engine and not yet
    /// answered (an `Ack::Barrier` or `Ack::Failed` sent): if the engine
    /// fails holding one, [`ShardContext::fail_unanswered`] answers it, so
    /// the coordinator's ticket fails instead of waiting for an answer
    /// that never comes.
    pub(crate) unanswered: RefCell<Vec<crate::ids::Epoch>>,
    /// With archiving: the end of each sealed barrier, for the archiver.
    pub(crate) archive_points: Option<std::sync::Arc<crate::archive::points::ShardPoints>>,
}

impl<S: Storage> ShardContext<S> {
    /// The shard's log.
    pub fn log(&self) -> &ShardLog<S> {
        &self.log
    }

    /// This shard's id.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Number of shards in the runtime.
    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    /// What recovery found when the shard opened.
    pub fn recovery(&self) -> &ShardRecovery {
        self.log.recovery()
    }

    /// What this shard replays after a restart (see [`ShardContext::replay`]).
    pub fn replay_plan(&self) -> &super::ReplayPlan {
        &self.plan
    }

    /// The shard's snapshot from the checkpoint recovery started from,
    /// verified against the manifest's CRC. `None` without a checkpoint.
    ///
    /// After re-sharding to fewer shards this core also replays retired
    /// shards, whose snapshots it must load too: then this is an error
    /// pointing to [`ShardContext::snapshots`], rather than a silent loss of
    /// their state.
    pub async fn snapshot(&self) -> Result<Option<Vec<u8>>> {
        if self.plan.adopted.iter().any(|a| a.snapshot.is_some()) {
            return Err(Error::Config(format!(
                "shard {} replays the snapshots of retired shards too; use snapshots()",
                self.shard.0
            )));
        }
        Ok(self.snapshots().await?.into_iter().next().map(|(_, b)| b))
    }

    /// Every snapshot this core restores, verified against the manifest's
    /// CRC: its own shard's first, then those of the retired shards it
    /// adopted (re-sharding), in shard order. Empty without a checkpoint.
    pub async fn snapshots(&self) -> Result<Vec<(ShardId, Vec<u8>)>> {
        let Some(c) = self.plan.checkpoint else {
            return Ok(Vec::new());
        };
        let sources = self.plan.sources(self.shard).into_iter();
        snapshot::read_each(
            self.log.storage(),
            &self.log_dir,
            c.0,
            sources.map(|s| (s.shard, s.snapshot)),
        )
        .await
    }

    /// A reader over the records to replay: from the checkpoint position up
    /// to (and including) the barrier of the sealed epoch, of this shard and
    /// of any retired shards it adopted, merged in (epoch, shard, seq)
    /// order. Epoch barriers, commit records and checkpoint markers are
    /// visible in it.
    pub async fn replay(&self) -> Result<crate::merged::MergedReader<S>> {
        let ranges = self.plan.ranges(self.shard);
        crate::merged::MergedReader::open_shards(self.log.storage().clone(), &self.log_dir, &ranges)
            .await
    }

    /// True once a `Shutdown` event has been seen.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.get()
    }

    /// The next control event, awaited: resolves as soon as the coordinator
    /// sends one (it rings the shard's doorbell, which this awaits) and
    /// costs no CPU while there is none. An engine that waits on its own
    /// input can race it against that input (e.g. `futures_lite::future::or`);
    /// it is cancel-safe: dropped before it resolves, it loses no event.
    /// `Shutdown` if the coordinator has gone.
    pub async fn control(self: &Rc<Self>) -> ControlEvent {
        loop {
            if let Some(ev) = self.poll_control() {
                return ev;
            }
            if !self.wait_for_ring().await {
                // Nobody can send any more; whatever was sent has been seen.
                return self.poll_control().unwrap_or(ControlEvent::Shutdown);
            }
        }
    }

    /// Wait until an event is there to poll (returns at once if one is).
    /// False once the coordinator's end is closed and nothing is left.
    pub(crate) async fn until_event(&self) -> bool {
        if self.rx.has_pending() {
            return true;
        }
        self.wait_for_ring().await || self.rx.has_pending()
    }

    /// Wait until the doorbell rings (some event was sent since the last
    /// ring was read), consuming the rings. False once the coordinator's
    /// end is closed.
    // The doorbell's `RefCell` is held across the read on purpose: a second
    // waiter uses `try_borrow_mut` and falls back to polling instead of
    // panicking, and a cancelled read drops the borrow with its future.
    #[allow(clippy::await_holding_refcell_ref)]
    async fn wait_for_ring(&self) -> bool {
        use futures_lite::AsyncReadExt;
        let taken = self.rx.bell.borrow_mut().take();
        if let Some(std_end) = taken {
            use std::os::fd::{FromRawFd, IntoRawFd};
            let fd = std_end.into_raw_fd();
            // SAFETY: `fd` is an open socket we own (taken out of the std
            // stream, which no longer closes it); glommio's stream takes
            // ownership and closes it when dropped.
            let g = unsafe { glommio::net::UnixStream::from_raw_fd(fd) };
            *self.bell.borrow_mut() = Bell::Open(Rc::new(RefCell::new(g)));
        }
        let bell = match &*self.bell.borrow() {
            Bell::Open(b) => b.clone(),
            Bell::Closed => return false,
        };
        // Held across the read; dropped with this future if it is
        // cancelled (a `select` that took the engine's input instead), so
        // the next wait reads on. Another task of this executor waiting at
        // the same time polls instead (unusual; it stays correct).
        let Ok(mut stream) = bell.try_borrow_mut() else {
            glommio::timer::sleep(std::time::Duration::from_micros(200)).await;
            return true;
        };
        let mut rings = [0u8; 64];
        match stream.read(&mut rings).await {
            Ok(0) => {
                drop(stream);
                *self.bell.borrow_mut() = Bell::Closed;
                false
            }
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(shard = self.shard.0, error = %e, "doorbell read failed; control events are polled");
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                true
            }
        }
    }

    /// The next control event, if any. Non-blocking; when there is none it
    /// costs one atomic load. Truncation requests are handled here, in the
    /// background, and never surface.
    #[inline]
    pub fn poll_control(self: &Rc<Self>) -> Option<ControlEvent> {
        loop {
            match self.rx.poll()? {
                ToShard::Stop => {
                    self.stop.set(true);
                    self.shutdown.set(true);
                    return Some(ControlEvent::Shutdown);
                }
                ToShard::Event(ev) => {
                    match ev {
                        ControlEvent::Shutdown => self.shutdown.set(true),
                        ControlEvent::Barrier(req) => self.unanswered.borrow_mut().push(req.epoch),
                    }
                    return Some(ev);
                }
                ToShard::Truncate {
                    before,
                    keep_snapshots_from,
                } => {
                    let me = self.clone();
                    // One truncation at a time, each after the previous.
                    let previous = self.truncation.take();
                    let task = glommio::spawn_local(async move {
                        if let Some(p) = previous {
                            p.await;
                        }
                        // A failure here leaves extra files, never lost data;
                        // it is retried by the next truncation.
                        if let Err(e) = me.truncate(before, keep_snapshots_from).await {
                            tracing::warn!(shard = me.shard.0, error = %e, "truncation failed; retried at the next checkpoint");
                        }
                    })
                    .detach();
                    *self.truncation.borrow_mut() = Some(task);
                }
            }
        }
    }

    /// Send the coordinator `ack`, the answer to the barrier request of
    /// `epoch`.
    pub(crate) fn answer_barrier(&self, epoch: crate::ids::Epoch, ack: Ack) {
        self.unanswered.borrow_mut().retain(|&e| e != epoch);
        // The coordinator may have stopped listening (shutdown).
        crate::reply::send_or_gone(&self.acks, ack);
    }

    /// The engine failed: fail every barrier request it was handed and did
    /// not answer, with `cause`.
    pub(crate) fn fail_unanswered(&self, cause: &str) {
        let epochs = std::mem::take(&mut *self.unanswered.borrow_mut());
        for epoch in epochs {
            self.answer_barrier(
                epoch,
                Ack::Failed {
                    shard: self.shard,
                    epoch,
                    cause: cause.to_string(),
                },
            );
        }
    }

    async fn truncate(&self, before: Seq, keep_snapshots_from: CheckpointId) -> Result<()> {
        self.log.truncate_before(before).await?;
        let storage = self.log.storage();
        let dir = self.log.dir();
        let names = storage
            .list(dir)
            .await
            .map_err(|e| Error::io("list", dir, e))?;
        let mut removed = false;
        for n in names {
            if let Some(id) = snapshot::parse_snapshot_name(&n)
                && id < keep_snapshots_from.0
            {
                let p = dir.join(&n);
                storage
                    .remove(&p)
                    .await
                    .map_err(|e| Error::io("remove snapshot", &p, e))?;
                removed = true;
            }
        }
        if removed {
            storage
                .sync_dir(dir)
                .await
                .map_err(|e| Error::io("directory fsync", dir, e))?;
        }
        Ok(())
    }

    /// Append this epoch's commit record: source offsets and watermark.
    /// Call it before completing the epoch's barrier.
    pub async fn commit(&self, offsets: Vec<SourceOffset>, watermark: u64) -> Result<Lsn> {
        let rec = CommitRecord {
            epoch: self.log.epoch().0,
            offsets,
            watermark,
        };
        let lsn = self
            .log
            .append_kind(RecordKind::Commit, &payloads::encode(&rec)?)
            .await?;
        *self.last_commit.borrow_mut() = Some(rec);
        Ok(lsn)
    }

    /// Answer a barrier: with a checkpoint, write `snapshot` (the engine's
    /// state as of this point; empty if `None`) durably and log a marker.
    /// Records appended after this belong to epoch `e + 1`.
    ///
    /// The one-slice convenience form of
    /// [`ShardContext::complete_barrier_streamed`]: the epoch is sealed
    /// (its barrier durable and acknowledged) before the snapshot is
    /// written, but this returns only once the shard's part of the
    /// checkpoint is durable too, so the engine stops while the slice is
    /// written. Large states should stream instead.
    pub async fn complete_barrier(
        &self,
        req: BarrierRequest,
        snapshot: Option<&[u8]>,
    ) -> Result<Lsn> {
        let (lsn, writer) = self.complete_barrier_streamed(req).await?;
        if let Some(mut w) = writer {
            w.write(snapshot.unwrap_or(&[])).await?;
            w.finish().await?;
        }
        Ok(lsn)
    }

    /// Answer a barrier at once: log `barrier(e)`, make it durable and
    /// acknowledge it, so the epoch seals without waiting for any
    /// snapshot. Records appended after this belong to epoch `e + 1`.
    ///
    /// With a checkpoint, returns a [`SnapshotWriter`] for the shard's
    /// state *as of this barrier*: freeze it (copy-on-write, a generation
    /// number, ...), stream it into the writer while processing goes on,
    /// typically from a task of its own (`glommio::spawn_local`), and
    /// [`SnapshotWriter::finish`] it. The checkpoint completes (its
    /// manifest is written) once every shard's part is durable; its replay
    /// position is just after this barrier.
    pub async fn complete_barrier_streamed(
        &self,
        req: BarrierRequest,
    ) -> Result<(Lsn, Option<SnapshotWriter<S>>)> {
        let r = self.seal(req).await;
        // Before the ack: once the epoch seals, the published metrics
        // include everything up to its barrier.
        super::core_job::publish(&self.metrics, &self.log);
        match r {
            Ok(lsn) => {
                self.answer_barrier(
                    req.epoch,
                    Ack::Barrier {
                        shard: self.shard,
                        epoch: req.epoch,
                    },
                );
                let writer = req.checkpoint.map(|checkpoint| {
                    SnapshotWriter::new(SnapshotStart {
                        log: self.log.clone(),
                        acks: self.acks.clone(),
                        checkpoint,
                        epoch: req.epoch,
                        replay_from: lsn.seq.next(),
                        // The latest commit holds until the next one,
                        // whichever epoch it was written in (after a
                        // restart: the one recovered).
                        commit: self.last_commit.borrow().clone(),
                    })
                });
                Ok((lsn, writer))
            }
            Err(e) => {
                self.answer_barrier(
                    req.epoch,
                    Ack::Failed {
                        shard: self.shard,
                        epoch: req.epoch,
                        cause: e.to_string(),
                    },
                );
                Err(e)
            }
        }
    }

    /// Log `barrier(req.epoch)` (closing any empty epochs a shard that
    /// recovered behind the others still has open) and make it durable.
    async fn seal(&self, req: BarrierRequest) -> Result<Lsn> {
        let log = &self.log;
        if log.epoch() > req.epoch {
            return Err(Error::Config(format!(
                "barrier for epoch {} but the shard is already in epoch {}",
                req.epoch.0,
                log.epoch().0
            )));
        }
        while log.epoch() < req.epoch {
            log.barrier().await?;
        }
        let lsn = log.barrier().await?;
        // Right after the append: the barrier's end, published before the
        // acknowledgement that may seal its epoch.
        let (segment, end) = log.tail();
        log.sync().await?;
        if let Some(points) = &self.archive_points {
            points.publish(crate::archive::points::Point {
                epoch: req.epoch,
                segment,
                end,
            });
        }
        Ok(lsn)
    }
}
