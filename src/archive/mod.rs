//! Archiving sealed epochs and checkpoints to object storage, and restoring
//! a log directory from the archive on another machine.
//!
//! With [`RuntimeConfig::archive`](crate::RuntimeConfig::archive) set, the
//! runtime runs one archiver thread beside the coordinator. It never
//! touches the append path: it reads the shards' files after they are
//! durable and uploads them through the [`object_store`] crate (local
//! filesystem, in-memory, or S3 and what speaks S3). Each pass archives
//! every shard's files up to the end of the barrier of one sealed epoch,
//! then writes an index naming every object of that state
//! (`index.rs`): the index is the pass's commit point, and the *archive
//! watermark* ([`Coordinator::archived_epoch`](crate::Coordinator::archived_epoch))
//! is its epoch. [`restore`] builds a log directory from the newest index
//! that recovers to exactly that epoch.
//!
//! - `names.rs`: object names (the archive's layout);
//! - `index.rs`: the index and its checks;
//! - `points.rs`: where each sealed barrier ends in a shard's files;
//! - `upload.rs`: the archiver thread (lease, passes, retries, retention);
//! - `restore.rs`: [`restore`];
//! - `url.rs`: [`ArchiveConfig::from_url`].

mod chunk;
mod index;
mod names;
pub(crate) mod points;
mod priority;
mod restore;
pub(crate) mod upload;
mod url;

pub use restore::{RestoreOptions, RestoreReport, restore};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use object_store::ObjectStore;
use object_store::path::Path as ObjPath;

use crate::error::{Error, Result};
use crate::ids::{Epoch, ShardId};

/// Where and how often to archive.
#[derive(Clone, Debug)]
pub struct ArchiveConfig {
    /// The object store.
    pub store: Arc<dyn ObjectStore>,
    /// The prefix inside it; the log's objects go below
    /// `<prefix>/<log id>/`, so several logs can share one prefix.
    pub prefix: ObjPath,
    /// Archive at least this often while epochs seal. Default 1 s.
    pub interval: Duration,
    /// Also archive as soon as this many epochs have sealed since the last
    /// pass. Default 64.
    pub every_epochs: u64,
    /// The archive keeps the objects its newest `keep_indexes` indexes name
    /// and deletes the rest (each index names the log as it stood locally:
    /// the segments after the oldest checkpoint kept, and those
    /// checkpoints). Default 4.
    pub keep_indexes: usize,
    /// Failed uploads are retried with exponential backoff from 50 ms up to
    /// this delay between tries. Default 5 s.
    pub retry_max: Duration,
    /// At shutdown, the final pass (up to the final sealed epoch) may take
    /// this long before the runtime gives up on it. Default 60 s.
    pub final_pass_timeout: Duration,
    /// Run the archiver's threads in the background (nice 10 and the idle
    /// I/O class), so that the shards' appends and syncs come first when
    /// the cores or the disk are busy; the archive then lags more under a
    /// saturated disk. Default `true`.
    pub background: bool,
}

impl ArchiveConfig {
    /// Archive to `store` under `prefix`, with the default timings.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: impl Into<ObjPath>) -> ArchiveConfig {
        ArchiveConfig {
            store,
            prefix: prefix.into(),
            interval: Duration::from_secs(1),
            every_epochs: 64,
            keep_indexes: 4,
            retry_max: Duration::from_secs(5),
            final_pass_timeout: Duration::from_secs(60),
            background: true,
        }
    }

    /// `file:///path` (the local filesystem backend, created if missing,
    /// with `fsync` of every object and its directory: the backend's
    /// default does not fsync),
    /// `memory://` (in-process, for tests) or `s3://bucket/prefix` (S3 or
    /// an S3-compatible server, configured from the usual `AWS_*`
    /// environment variables, `AWS_ENDPOINT` and `AWS_ALLOW_HTTP`
    /// included; only with the `s3` cargo feature, an error without it).
    /// Any other `object_store` backend the application builds itself goes
    /// through [`ArchiveConfig::new`].
    pub fn from_url(url: &str) -> Result<ArchiveConfig> {
        url::parse(url)
    }
}

/// The archive watermark and its waiters: written by the archiver thread,
/// read from any thread.
#[derive(Debug)]
pub(crate) struct ArchiveShared {
    archived: AtomicU64,
    per_shard: Vec<AtomicU64>,
    waiters: Mutex<Vec<(Epoch, Sender<Result<Epoch>>)>>,
    /// Why the archiver stopped for good (another writer took the prefix),
    /// or the last pass's failure.
    last_error: Mutex<Option<String>>,
    stopped: AtomicBool,
}

impl ArchiveShared {
    pub(crate) fn new(shards: usize) -> ArchiveShared {
        ArchiveShared {
            archived: AtomicU64::new(0),
            per_shard: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            waiters: Mutex::new(Vec::new()),
            last_error: Mutex::new(None),
            stopped: AtomicBool::new(false),
        }
    }

    pub(crate) fn archived(&self) -> Epoch {
        Epoch(self.archived.load(Ordering::Acquire))
    }

    pub(crate) fn shard_archived(&self, shard: ShardId) -> Option<Epoch> {
        self.per_shard
            .get(shard.0 as usize)
            .map(|a| Epoch(a.load(Ordering::Acquire)))
    }

    pub(crate) fn set_shard(&self, shard: usize, e: Epoch) {
        if let Some(a) = self.per_shard.get(shard) {
            a.fetch_max(e.0, Ordering::AcqRel);
        }
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, Vec<(Epoch, Sender<Result<Epoch>>)>> {
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The archive now holds every sealed epoch up to `e`.
    pub(crate) fn set_archived(&self, e: Epoch) {
        self.archived.fetch_max(e.0, Ordering::AcqRel);
        let mut w = self.lock_waiters();
        w.retain(|(want, tx)| {
            if *want <= e {
                crate::reply::send_or_gone(tx, Ok(e));
                false
            } else {
                true
            }
        });
    }

    pub(crate) fn set_error(&self, cause: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cause;
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The archiver has exited: every waiter still waiting gets `why`.
    pub(crate) fn stop(&self, why: &str) {
        self.stopped.store(true, Ordering::Release);
        for (want, tx) in self.lock_waiters().drain(..) {
            crate::reply::send_or_gone(
                &tx,
                Err(Error::Archive {
                    object: String::new(),
                    cause: format!("epoch {} was not archived: {why}", want.0),
                }),
            );
        }
    }

    pub(crate) fn ticket(&self, epoch: Epoch) -> ArchiveTicket {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let now = self.archived();
        if now >= epoch {
            crate::reply::send_or_gone(&tx, Ok(now));
        } else if self.stopped.load(Ordering::Acquire) {
            crate::reply::send_or_gone(
                &tx,
                Err(Error::Archive {
                    object: String::new(),
                    cause: format!(
                        "epoch {} was not archived: the archiver has stopped",
                        epoch.0
                    ),
                }),
            );
        } else {
            self.lock_waiters().push((epoch, tx));
            // The archiver may have moved between the check and the push.
            let now = self.archived();
            if now >= epoch {
                self.set_archived(now);
            }
        }
        ArchiveTicket { epoch, rx }
    }
}

/// A wait for an epoch to be archived.
#[derive(Debug)]
pub struct ArchiveTicket {
    /// The epoch waited for.
    pub epoch: Epoch,
    rx: Receiver<Result<Epoch>>,
}

impl ArchiveTicket {
    /// Block until the archive watermark reaches the epoch; returns the
    /// watermark then. Fails if the archiver stops first.
    pub fn wait(&self) -> Result<Epoch> {
        self.rx.recv().unwrap_or(Err(Error::ShutDown))
    }

    /// As `wait`, giving up after `d`.
    pub fn wait_timeout(&self, d: Duration) -> Result<Epoch> {
        match self.rx.recv_timeout(d) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(Error::Timeout(format!("epoch {} archived", self.epoch.0)))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(Error::ShutDown),
        }
    }
}
