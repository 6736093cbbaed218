//! The engine's side of an asynchronous checkpoint: a [`SnapshotWriter`]
//! that the engine fills with its frozen state, in chunks, while it goes on
//! with the next epoch. When it is finished, the snapshot is durable, the
//! checkpoint marker is logged (in whatever epoch is current) and made
//! durable, and the shard's part goes to the coordinator, which writes the
//! manifest once every shard's part is in.

use crossbeam_channel::Sender;

use crate::checkpoint::payloads::{self, CheckpointMarker, CommitRecord};
use crate::checkpoint::{ShardCheckpoint, snapshot};
use crate::control::{Ack, CheckpointFailure};
use crate::error::{Error, Result};
use crate::format::frame::RecordKind;
use crate::ids::{CheckpointId, Epoch, Seq, ShardId};
use crate::io::Storage;
use crate::writer::ShardLog;

/// The snapshot of one checkpoint on one shard, written as the engine
/// produces it (see `ShardContext::complete_barrier_streamed`).
///
/// Memory stays at a few 1 MiB write buffers whatever the state's size:
/// [`SnapshotWriter::write`] copies into an aligned buffer and returns,
/// waiting only while two Direct I/O writes of the snapshot are already in
/// flight, so the log's own writes and syncs are never queued behind more
/// than that.
///
/// Call [`SnapshotWriter::finish`] to complete the shard's part of the
/// checkpoint. Dropped unfinished, the writer fails the checkpoint (the
/// shard itself stays healthy: nothing durable was touched). A failed write
/// or fsync fails the checkpoint and poisons the shard (fail-stop).
#[must_use = "a snapshot writer dropped unfinished fails its checkpoint"]
pub struct SnapshotWriter<S: Storage> {
    file: Option<snapshot::SnapshotFile<S>>,
    start: SnapshotStart<S>,
    /// Set once the coordinator has been told the outcome.
    answered: bool,
}

/// What the barrier hands a snapshot writer.
pub(crate) struct SnapshotStart<S: Storage> {
    pub log: ShardLog<S>,
    pub acks: Sender<Ack>,
    pub checkpoint: CheckpointId,
    pub epoch: Epoch,
    /// Just after the checkpoint's barrier.
    pub replay_from: Seq,
    /// The commit record in force at the barrier.
    pub commit: Option<CommitRecord>,
}

impl<S: Storage> SnapshotWriter<S> {
    pub(crate) fn new(start: SnapshotStart<S>) -> SnapshotWriter<S> {
        let log = &start.log;
        let file = snapshot::SnapshotFile::new(
            log.storage(),
            log.dir(),
            log.shard().0,
            start.checkpoint.0,
        );
        SnapshotWriter {
            file: Some(file),
            start,
            answered: false,
        }
    }

    /// The checkpoint this snapshot belongs to.
    pub fn checkpoint(&self) -> CheckpointId {
        self.start.checkpoint
    }

    /// The epoch whose end the snapshot captures.
    pub fn epoch(&self) -> Epoch {
        self.start.epoch
    }

    fn shard(&self) -> ShardId {
        self.start.log.shard()
    }

    /// Snapshot bytes written so far.
    pub fn len(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.len())
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append the next chunk of the state.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if self.file.is_none() {
            return Err(self.gone());
        }
        // Yield the device to the log: a commit's fdatasync waits behind
        // the snapshot writes already in flight, never behind more.
        self.start.log.yield_to_sync().await;
        let Some(file) = self.file.as_mut() else {
            return Err(self.gone());
        };
        if let Err(e) = file.write(bytes).await {
            return Err(self.failed(e));
        }
        Ok(())
    }

    /// Make the snapshot durable, log the checkpoint marker and make it
    /// durable, and hand the shard's part to the coordinator. Returns the
    /// checkpoint's id; the checkpoint itself completes (its manifest is
    /// written) once every shard has finished its part.
    pub async fn finish(mut self) -> Result<CheckpointId> {
        let Some(file) = self.file.take() else {
            return Err(self.gone());
        };
        let sref = match file.finish().await {
            Ok(r) => r,
            Err(e) => return Err(self.failed(e)),
        };
        let m = CheckpointMarker {
            checkpoint: self.start.checkpoint.0,
            epoch: self.start.epoch.0,
            snapshot: sref.clone(),
        };
        let logged = async {
            let lsn = self
                .start
                .log
                .append_kind(RecordKind::Checkpoint, &payloads::encode(&m)?)
                .await?;
            // Forces a sync now: the marker (and so everything before it)
            // is durable when this returns.
            self.start.log.sync().await?;
            Ok::<_, Error>(lsn)
        }
        .await;
        let lsn = match logged {
            Ok(l) => l,
            Err(e) => return Err(self.failed(e)),
        };
        tracing::debug!(
            shard = self.shard().0,
            checkpoint = self.start.checkpoint.0,
            epoch = self.start.epoch.0,
            bytes = sref.len,
            marker_seq = lsn.seq.0,
            "snapshot durable"
        );
        let part = ShardCheckpoint {
            shard: self.shard().0,
            replay_from: self.start.replay_from.0,
            marker_seq: lsn.seq.0,
            snapshot: sref,
            commit: self.start.commit.take(),
        };
        self.answer(Ok(part));
        Ok(self.start.checkpoint)
    }

    /// The checkpoint fails. After a failed write or fsync nothing on this
    /// shard is trusted to be durable any more, so the shard is poisoned
    /// (if the log has not done so itself); a log closed under the writer
    /// (the engine returned before finishing it) only fails the checkpoint.
    fn failed(&mut self, e: Error) -> Error {
        self.file = None;
        let poisoned = !matches!(e, Error::Closed { .. });
        if poisoned && self.start.log.poisoned().is_none() {
            self.start.log.poison(format!(
                "snapshot of checkpoint {} failed: {e}",
                self.start.checkpoint.0
            ));
        }
        self.answer(Err(CheckpointFailure {
            cause: e.to_string(),
            poisoned,
        }));
        e
    }

    fn gone(&self) -> Error {
        Error::Config(format!(
            "the snapshot of checkpoint {} has already failed",
            self.start.checkpoint.0
        ))
    }

    fn answer(&mut self, part: std::result::Result<ShardCheckpoint, CheckpointFailure>) {
        if self.answered {
            return;
        }
        self.answered = true;
        crate::reply::send_or_gone(
            &self.start.acks,
            Ack::Checkpoint {
                shard: self.shard(),
                id: self.start.checkpoint,
                part,
            },
        );
    }
}

impl<S: Storage> Drop for SnapshotWriter<S> {
    fn drop(&mut self) {
        if !self.answered {
            tracing::warn!(
                shard = self.shard().0,
                checkpoint = self.start.checkpoint.0,
                "snapshot writer dropped unfinished: the checkpoint fails"
            );
            self.answer(Err(CheckpointFailure {
                cause: "the engine dropped its snapshot writer unfinished".into(),
                poisoned: false,
            }));
        }
    }
}
