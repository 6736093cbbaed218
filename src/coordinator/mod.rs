//! The coordinator: a `Send + Sync + Clone` handle usable from any thread,
//! backed by one coordinator thread that owns all coordination state.
//!
//! It injects barriers (and checkpoint requests riding on them) into every
//! shard in the same order, collects acks, seals epochs (epoch `e` is sealed
//! once barrier `e` is durable on every shard; sealing is monotonic), writes
//! checkpoint manifests atomically once every shard's marker is durable,
//! then tells shards what they may truncate. It can run periodic epochs and
//! checkpoints on a timer.
//!
//! Architecture invariant: no call on a handle can hang on a dead runtime.
//! Every wait is on a channel whose sender dies with the coordinator thread,
//! and a shard that does not answer a barrier fails its epoch after
//! `CoordinatorConfig::barrier_timeout`.
//!
//! This module holds the handle and its tickets; [`thread`] the thread.

mod thread;

pub(crate) use thread::{ArchiveLink, CoordinatorStart, spawn};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;

use crate::archive::{ArchiveShared, ArchiveTicket};
use crate::error::{Error, Result};
use crate::ids::{CheckpointId, Epoch, ShardId};
use crate::metrics::LatencySummary;

/// Result of a completed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Its id.
    pub id: CheckpointId,
    /// The epoch it was taken at.
    pub epoch: Epoch,
    /// The manifest file.
    pub manifest: PathBuf,
}

/// A pending epoch seal.
#[derive(Debug)]
pub struct EpochTicket {
    /// The epoch whose barrier was injected.
    pub epoch: Epoch,
    rx: Receiver<Result<Epoch>>,
}

/// A pending checkpoint.
#[derive(Debug)]
pub struct CheckpointTicket {
    /// The checkpoint's id.
    pub id: CheckpointId,
    /// The epoch it is taken at.
    pub epoch: Epoch,
    rx: Receiver<Result<CheckpointInfo>>,
}

fn recv_result<T>(rx: &Receiver<Result<T>>, timeout: Option<Duration>, what: &str) -> Result<T> {
    match timeout {
        None => rx.recv().unwrap_or(Err(Error::ShutDown)),
        Some(d) => match rx.recv_timeout(d) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(Error::Timeout(what.into())),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(Error::ShutDown),
        },
    }
}

impl EpochTicket {
    /// Block until the epoch is sealed (or failed).
    pub fn wait(&self) -> Result<Epoch> {
        recv_result(&self.rx, None, "epoch seal")
    }
    /// As `wait`, giving up after `d`.
    pub fn wait_timeout(&self, d: Duration) -> Result<Epoch> {
        recv_result(&self.rx, Some(d), "epoch seal")
    }
}

impl CheckpointTicket {
    /// Block until the checkpoint's manifest is durable (or it failed).
    pub fn wait(&self) -> Result<CheckpointInfo> {
        recv_result(&self.rx, None, "checkpoint")
    }
    /// As `wait`, giving up after `d`.
    pub fn wait_timeout(&self, d: Duration) -> Result<CheckpointInfo> {
        recv_result(&self.rx, Some(d), "checkpoint")
    }
}

/// Settings of the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Advance the epoch on this period (None: only on request).
    pub epoch_interval: Option<Duration>,
    /// With `epoch_interval`, also checkpoint every this many epochs.
    pub checkpoint_every: Option<u64>,
    /// Manifests (and their snapshots and log) kept for fallback. At least 1.
    pub keep_checkpoints: usize,
    /// Fail an epoch whose barrier a shard has not answered within this
    /// long, with [`Error::ShardStuck`] naming the shard (and, as after any
    /// failed epoch, refuse later ones). `None`: wait forever. Default 60 s.
    pub barrier_timeout: Option<Duration>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            epoch_interval: None,
            checkpoint_every: None,
            keep_checkpoints: 2,
            barrier_timeout: Some(Duration::from_secs(60)),
        }
    }
}

enum Command {
    Advance {
        checkpoint: bool,
        reply: Sender<Result<Issued>>,
    },
    /// Issue the last epoch to the engines, then tell them to return
    /// (timers stop; barriers still work).
    FinalEpoch { reply: Sender<Result<EpochTicket>> },
    /// Stop the shards and the coordinator.
    Shutdown,
    /// The archive now holds every sealed epoch up to this one: truncations
    /// held for it may go ahead.
    Archived(Epoch),
}

enum Issued {
    Epoch(EpochTicket),
    Checkpoint(CheckpointTicket),
}

struct Shared {
    cmd: Sender<Command>,
    sealed: AtomicU64,
    stopped: AtomicBool,
    /// Latency of every epoch sealed, from the barrier's injection to the
    /// last acknowledgement, in nanoseconds. Written by the coordinator
    /// thread once per sealed epoch; read by [`Coordinator::epoch_seal_latency`].
    seal_latency: Mutex<Histogram<u64>>,
    /// The archive watermark, when the runtime archives.
    archive: Option<Arc<ArchiveShared>>,
}

impl Shared {
    fn new(cmd: Sender<Command>, sealed: Epoch, archive: Option<Arc<ArchiveShared>>) -> Shared {
        Shared {
            cmd,
            sealed: AtomicU64::new(sealed.0),
            stopped: AtomicBool::new(false),
            seal_latency: Mutex::new(crate::metrics::latency_histogram()),
            archive,
        }
    }

    /// The seal-latency histogram; a panic elsewhere while it was held
    /// leaves it usable (it is only ever added to).
    fn seal_latency(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        self.seal_latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Handle to the coordinator. `Send + Sync + Clone`.
#[derive(Clone)]
pub struct Coordinator {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("sealed", &self.sealed_epoch())
            .finish()
    }
}

impl Coordinator {
    fn request(&self, checkpoint: bool) -> Result<Issued> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.shared
            .cmd
            .send(Command::Advance { checkpoint, reply })
            .map_err(|_| Error::ShutDown)?;
        rx.recv().unwrap_or(Err(Error::ShutDown))
    }

    /// Inject the next epoch barrier into every shard. The returned ticket
    /// resolves when the epoch is sealed.
    pub fn advance_epoch(&self) -> Result<EpochTicket> {
        match self.request(false)? {
            Issued::Epoch(t) => Ok(t),
            Issued::Checkpoint(_) => Err(Error::ShutDown),
        }
    }

    /// Inject a barrier that also takes a checkpoint. The ticket resolves
    /// when the manifest is durable.
    pub fn checkpoint(&self) -> Result<CheckpointTicket> {
        match self.request(true)? {
            Issued::Checkpoint(t) => Ok(t),
            Issued::Epoch(_) => Err(Error::ShutDown),
        }
    }

    /// The highest sealed epoch (0 if none). Lock-free; any thread.
    #[inline]
    pub fn sealed_epoch(&self) -> Epoch {
        Epoch(self.shared.sealed.load(Ordering::Acquire))
    }

    /// Latency of the epochs sealed so far, from the injection of each
    /// barrier into every shard to the last shard's acknowledgement.
    /// Current; takes a lock the coordinator thread holds once per sealed
    /// epoch, and copies the histogram.
    pub fn epoch_seal_latency(&self) -> LatencySummary {
        let h = self.shared.seal_latency().clone();
        LatencySummary::from_histogram(h)
    }

    /// True once the runtime has shut down.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    /// The archive watermark: the highest sealed epoch whose bytes, and
    /// the checkpoints up to it, are all in the object store (written by
    /// this runtime; 0 until its first archive pass). `None` when the
    /// runtime does not archive. One atomic load.
    pub fn archived_epoch(&self) -> Option<Epoch> {
        self.shared.archive.as_ref().map(|a| a.archived())
    }

    /// The highest sealed epoch whose bytes of shard `shard` are all in the
    /// object store (the index that makes them restorable may still be on
    /// its way: a restore reaches [`Coordinator::archived_epoch`]).
    pub fn shard_archived_epoch(&self, shard: ShardId) -> Option<Epoch> {
        self.shared
            .archive
            .as_ref()
            .and_then(|a| a.shard_archived(shard))
    }

    /// A ticket that resolves once epoch `epoch` is archived. Fails with
    /// [`Error::Config`] when the runtime does not archive.
    pub fn wait_archived(&self, epoch: Epoch) -> Result<ArchiveTicket> {
        match &self.shared.archive {
            Some(a) => Ok(a.ticket(epoch)),
            None => Err(Error::Config("this runtime does not archive".into())),
        }
    }

    /// Why the last archive pass failed, or why archiving stopped; `None`
    /// while it keeps up (or is off).
    pub fn archive_error(&self) -> Option<String> {
        self.shared.archive.as_ref().and_then(|a| a.last_error())
    }
}

/// The archiver reached `epoch` (the runtime's archiver thread calls it).
pub(crate) fn notify_archived(c: &Coordinator, epoch: Epoch) {
    // A stopped coordinator needs no news.
    crate::reply::send_or_gone(&c.shared.cmd, Command::Archived(epoch));
}

/// Issue the final epoch of a clean shutdown to the engines and ask them
/// to return (used by the runtime's shutdown).
pub(crate) fn request_final_epoch(c: &Coordinator) -> Result<EpochTicket> {
    if c.is_stopped() {
        return Err(Error::ShutDown);
    }
    let (reply, rx) = crossbeam_channel::bounded(1);
    c.shared
        .cmd
        .send(Command::FinalEpoch { reply })
        .map_err(|_| Error::ShutDown)?;
    rx.recv().unwrap_or(Err(Error::ShutDown))
}

/// Ask the coordinator thread to shut down (used by the runtime).
pub(crate) fn request_shutdown(c: &Coordinator) {
    crate::reply::send_or_gone(&c.shared.cmd, Command::Shutdown);
}
