//! The control plane between the coordinator and the shards, over
//! crossbeam channels: events to shards, acks back.
//!
//! The shard side's idle poll is one (acquire) atomic load of a counter that
//! the coordinator bumps before each send, so an engine can poll in its
//! core loop for nanoseconds. Each send also rings the shard's **doorbell**,
//! a byte written to a socket pair whose other end the shard's executor
//! awaits (`ShardContext::control`), so an engine that waits on its own
//! input, and the runtime's own barrier answering, wake as soon as an event
//! is there and cost no CPU while idle: nothing polls on a timer.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

use crate::checkpoint::ShardCheckpoint;
use crate::ids::{CheckpointId, Epoch, Seq, ShardId};

/// A barrier the coordinator injected: end epoch `epoch` on this shard,
/// and, with `checkpoint`, snapshot the state at that point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierRequest {
    /// The epoch to end.
    pub epoch: Epoch,
    /// Set when this barrier also takes a checkpoint.
    pub checkpoint: Option<CheckpointId>,
}

/// What the engine's core loop sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlEvent {
    /// End the epoch (and maybe checkpoint): answer with
    /// `ShardContext::complete_barrier`.
    Barrier(BarrierRequest),
    /// The runtime is shutting down: finish and return.
    Shutdown,
}

/// Messages to a shard (events plus housekeeping the runtime does itself).
#[derive(Debug, Clone)]
pub(crate) enum ToShard {
    Event(ControlEvent),
    /// The runtime is done with this shard: stop answering barriers.
    Stop,
    /// Remove segments wholly before `before` and snapshots of checkpoints
    /// older than `keep_snapshots_from`.
    Truncate {
        before: Seq,
        keep_snapshots_from: CheckpointId,
    },
}

/// Acks from shards to the coordinator.
#[derive(Debug, Clone)]
pub(crate) enum Ack {
    /// `barrier(epoch)` is durable on `shard`. A checkpoint of that epoch
    /// is answered apart, by [`Ack::Checkpoint`], once its snapshot and
    /// marker are durable: the seal does not wait for the snapshot.
    Barrier { shard: ShardId, epoch: Epoch },
    /// The shard's part of checkpoint `id`: its snapshot and marker are
    /// durable, or the checkpoint failed there (`poisoned`: by an I/O error
    /// that poisoned the shard, so nothing later can seal either).
    Checkpoint {
        shard: ShardId,
        id: CheckpointId,
        part: std::result::Result<ShardCheckpoint, CheckpointFailure>,
    },
    Failed {
        shard: ShardId,
        epoch: Epoch,
        cause: String,
    },
    /// The shard's executor is gone (its engine code panicked, or the
    /// runtime's own code on it did): it answers nothing any more.
    Dead { shard: ShardId, cause: String },
}

/// Why a shard's part of a checkpoint failed.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointFailure {
    pub cause: String,
    /// The shard is poisoned (fail-stop): nothing later can seal on it.
    pub poisoned: bool,
}

/// The coordinator's sending end for one shard.
#[derive(Clone)]
pub(crate) struct ShardTx {
    pub tx: Sender<ToShard>,
    pub pending: Arc<AtomicUsize>,
    /// The doorbell's ringing end (non-blocking).
    pub bell: Arc<UnixStream>,
}

impl ShardTx {
    pub(crate) fn send(&self, m: ToShard) -> bool {
        self.pending.fetch_add(1, Ordering::Release);
        if self.tx.send(m).is_err() {
            self.pending.fetch_sub(1, Ordering::Release);
            return false;
        }
        self.ring();
        true
    }

    /// Wake the shard's executor if it waits for an event. A full socket
    /// buffer (`WouldBlock`) means rings are already waiting to be read, so
    /// the shard wakes anyway; any other failure means the shard's end is
    /// gone, and with it anyone to wake.
    fn ring(&self) {
        match (&*self.bell).write(&[1]) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => tracing::trace!(error = %e, "doorbell of a shard that has gone"),
        }
    }
}

/// The shard's receiving end.
pub(crate) struct ShardRx {
    pub rx: Receiver<ToShard>,
    pub pending: Arc<AtomicUsize>,
    /// The doorbell's listening end, until the shard's executor takes it
    /// (`ShardContext::control` wraps it in a glommio socket).
    pub bell: std::cell::RefCell<Option<UnixStream>>,
}

impl ShardRx {
    /// Whether a message is waiting.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire) != 0
    }

    /// The next message, if any. Costs one atomic load when there is none.
    #[inline]
    pub(crate) fn poll(&self) -> Option<ToShard> {
        if self.pending.load(Ordering::Acquire) == 0 {
            return None;
        }
        let m = self.rx.try_recv().ok()?;
        self.pending.fetch_sub(1, Ordering::Release);
        Some(m)
    }
}

/// A connected pair, with its doorbell.
pub(crate) fn channel() -> std::io::Result<(ShardTx, ShardRx)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let pending = Arc::new(AtomicUsize::new(0));
    let (ring, listen) = UnixStream::pair()?;
    ring.set_nonblocking(true)?;
    Ok((
        ShardTx {
            tx,
            pending: pending.clone(),
            bell: Arc::new(ring),
        },
        ShardRx {
            rx,
            pending,
            bell: std::cell::RefCell::new(Some(listen)),
        },
    ))
}
