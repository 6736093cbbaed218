//! The runtime: N shards, one glommio executor per core, plus the
//! coordinator thread.
//!
//! ```text
//!             Coordinator (Send + Sync, any thread)
//!                   │ crossbeam commands
//!            coordinator thread ── barriers/truncation ──► shard i control channel
//!                   ▲                                          │
//!                   └──────────── acks (crossbeam) ◄───────────┤
//!  core i: glommio executor ── ShardContext { ShardLog (local), control } ── engine code
//! ```
//!
//! Start-up: lock the directory, read the log id and manifests, open
//! (recover) every shard on its own executor in parallel, then start the
//! coordinator at the highest recovered epoch and let the engine code run.

mod context;
mod core_job;
mod replay;
mod snapshot_writer;

pub use crate::recovery::plan::{RecoveryReport, ReplayPlan, ReplaySource};
pub use context::ShardContext;
pub use replay::{Replay, ReplayCounts};
pub use snapshot_writer::SnapshotWriter;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement, PoolPlacement};

use crate::checkpoint::manifest::{self, Manifest};
use crate::config::ShardConfig;
use crate::control;
use crate::coordinator::{self, Coordinator, CoordinatorConfig, CoordinatorStart};
use crate::error::{Error, Result};
use crate::ids::ShardId;
use crate::io::Storage;
use crate::io::dma::DmaStorage;
use crate::io::std_fs::StdStorage;
use crate::layout;
use crate::lock::DirLock;
use crate::metrics::{RecoveryFigures, RuntimeMetrics, ShardMetrics};
use crate::recovery::plan::{self, Manifests};
use crate::recovery::shard::{Scanned, ShardRecovery};
use core_job::{CoreJob, Go, MetricsSlot, run_core};

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Number of shards; default one per available core.
    pub shards: Option<usize>,
    /// Per-shard writer settings.
    pub shard: ShardConfig,
    /// Coordinator settings (timers, manifests kept).
    pub coordinator: CoordinatorConfig,
    /// Pin each shard to its own core (when there are enough cores; more
    /// shards than cores run unpinned).
    pub pin: bool,
    /// glommio `io_memory` per executor. Keep it modest: `ulimit -l` bounds it.
    pub io_memory: usize,
    /// The runtime answers barriers itself (no snapshots). The engine code
    /// must then not call `poll_control`; it should return once
    /// `is_shutting_down` is true.
    pub auto_barriers: bool,
    /// How long [`Runtime::shutdown`] waits for the final epoch and the
    /// engines' return, and then for the executors' exit, before it gives
    /// up with [`Error::ShardStuck`] naming the shard that did not stop.
    /// Default 30 s.
    pub shutdown_timeout: Duration,
    /// With [`Runtime::start_replaying`]: the most bytes of records, per
    /// core, that the recovery scan holds for the engine's replay while
    /// the consistent cut is not known yet. An epoch larger than this, or an
    /// engine that falls this far behind the scan, makes the records from
    /// there on be read from the log a second time. Default 64 MiB.
    pub replay_buffer: usize,
    /// Archive sealed epochs and checkpoints to an object store
    /// ([`crate::archive`]); `None` (the default): the log stays local.
    pub archive: Option<crate::archive::ArchiveConfig>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shards: None,
            shard: ShardConfig::default(),
            coordinator: CoordinatorConfig::default(),
            pin: true,
            io_memory: 1 << 20,
            auto_barriers: false,
            shutdown_timeout: Duration::from_secs(30),
            replay_buffer: 64 << 20,
            archive: None,
        }
    }
}

/// A running set of shards and their coordinator.
pub struct Runtime {
    coordinator: Coordinator,
    coord_thread: Option<std::thread::JoinHandle<()>>,
    shards: Vec<ExecutorJoinHandle<Result<()>>>,
    done: Receiver<ShardId>,
    /// Shards whose engine code has returned.
    done_seen: Vec<bool>,
    shard_count: usize,
    report: RecoveryReport,
    manifest: Option<Manifest>,
    dir: PathBuf,
    shutdown_timeout: Duration,
    /// Per shard, its latest published metrics.
    metrics: Vec<MetricsSlot>,
    /// The archiver thread, when the runtime archives.
    archiver: Option<crate::archive::upload::ArchiverHandle>,
    _lock: DirLock,
}

/// The cores available for pinning, in order.
pub fn available_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|v| v.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

impl Runtime {
    /// Start the runtime on `dir` with glommio DMA storage; `f` runs on every
    /// shard's core with its context.
    pub fn start<F, Fut>(dir: &Path, cfg: RuntimeConfig, f: F) -> Result<Runtime>
    where
        F: Fn(Rc<ShardContext<DmaStorage>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + 'static,
    {
        Self::start_with(dir, cfg, |_| DmaStorage, f)
    }

    /// As [`Runtime::start`], with a storage backend made per shard on its
    /// own executor (e.g. a fault-injecting one in tests).
    ///
    /// The start runs the recovery planner ([`crate::recovery::plan`])
    /// between two phases on the cores: every core scans its shards in
    /// parallel; the plan decides the sealed epoch, the cuts and the replay
    /// plans; every core cuts its shards; the new layout is written; the
    /// coordinator starts; every core runs `f` with its replay plan.
    pub fn start_with<S, M, F, Fut>(
        dir: &Path,
        cfg: RuntimeConfig,
        make_storage: M,
        f: F,
    ) -> Result<Runtime>
    where
        S: Storage,
        M: Fn(ShardId) -> S + Send + Sync + 'static,
        F: Fn(Rc<ShardContext<S>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + 'static,
    {
        Self::start_inner(
            dir,
            cfg,
            make_storage,
            false,
            |_: Replay<S>| async { Ok(()) },
            move |ctx, ()| f(ctx),
        )
    }

    /// Start the runtime on `dir` with glommio DMA storage, replaying while
    /// recovery reads the log: on every shard's core, `replay` runs with a
    /// [`Replay`] as soon as the core starts scanning its shard, and gets
    /// the snapshots and then every record to replay, each as soon as the
    /// scans of all shards have shown it to be within the consistent cut.
    /// The log is read from the device once (see [`Replay`]) instead of
    /// once by the start and once more by [`ShardContext::replay`]. What
    /// `replay` returns (the engine's rebuilt state) is handed to `f`, which
    /// runs once the start is over, as with [`Runtime::start`].
    ///
    /// This returns once every shard is recovered and cut, possibly before
    /// the replays end. If the start fails, a replay under way ends with an
    /// error (what it built belongs to a start that did not happen).
    pub fn start_replaying<R, RFut, T, F, Fut>(
        dir: &Path,
        cfg: RuntimeConfig,
        replay: R,
        f: F,
    ) -> Result<Runtime>
    where
        R: Fn(Replay<DmaStorage>) -> RFut + Send + Sync + 'static,
        RFut: Future<Output = Result<T>> + 'static,
        T: 'static,
        F: Fn(Rc<ShardContext<DmaStorage>>, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + 'static,
    {
        Self::start_inner(dir, cfg, |_| DmaStorage, true, replay, f)
    }

    /// As [`Runtime::start_replaying`], with a storage backend made per
    /// shard on its own executor.
    pub fn start_replaying_with<S, M, R, RFut, T, F, Fut>(
        dir: &Path,
        cfg: RuntimeConfig,
        make_storage: M,
        replay: R,
        f: F,
    ) -> Result<Runtime>
    where
        S: Storage,
        M: Fn(ShardId) -> S + Send + Sync + 'static,
        R: Fn(Replay<S>) -> RFut + Send + Sync + 'static,
        RFut: Future<Output = Result<T>> + 'static,
        T: 'static,
        F: Fn(Rc<ShardContext<S>>, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + 'static,
    {
        Self::start_inner(dir, cfg, make_storage, true, replay, f)
    }

    fn start_inner<S, M, R, RFut, T, F, Fut>(
        dir: &Path,
        cfg: RuntimeConfig,
        make_storage: M,
        during_start: bool,
        replay: R,
        f: F,
    ) -> Result<Runtime>
    where
        S: Storage,
        M: Fn(ShardId) -> S + Send + Sync + 'static,
        R: Fn(Replay<S>) -> RFut + Send + Sync + 'static,
        RFut: Future<Output = Result<T>> + 'static,
        T: 'static,
        F: Fn(Rc<ShardContext<S>>, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + 'static,
    {
        cfg.shard.validate()?;
        let lock = DirLock::acquire(dir)?;
        let started = std::time::Instant::now();
        let log_id =
            futures_lite::future::block_on(crate::log_dir::load_or_init(&StdStorage, dir))?;
        let cores = available_cores();
        let n = cfg.shards.unwrap_or(cores.len().max(1));
        if n == 0 || n > plan::MAX_SHARDS as usize {
            return Err(Error::Config(format!("{n} shards")));
        }
        let m = n as u32;
        layout::remove_leftovers(dir);
        let present = shard_dirs_present(dir)?;
        let mut loaded = futures_lite::future::block_on(layout::read(&StdStorage, dir, log_id))?;
        if loaded.is_none() && present.iter().all(|s| s.0 < m) && holds_no_records(dir, &present) {
            // A new log (or one whose first start was killed before any
            // segment was written): its layout is made durable before the
            // executors create their shard directories, in parallel and in
            // any order. Without a `LAYOUT` file, a crash that left some of
            // them would look like a gap, which the planner refuses as a
            // stray directory: the log could never be opened again.
            let shards: Vec<ShardId> = (0..m).map(ShardId).collect();
            let new = layout::Layout::implicit(log_id, &shards);
            futures_lite::future::block_on(layout::write(&StdStorage, dir, &new))?;
            loaded = Some(new);
        }
        let scope = plan::scope(log_id, loaded, &present, m)?;
        let manifests = read_manifests(dir, log_id)?;

        let make_storage = Arc::new(make_storage);
        let f = Arc::new(f);
        let replay = Arc::new(replay);
        // One pass needs every core to replay its own shard only (adopted
        // shards are merged with it in epoch order) and a cut that never
        // falls below what the scans have shown (repair may).
        let one_pass =
            during_start && !cfg.shard.repair && scope.per_core.iter().all(|c| c.len() == 1);
        let shard_ids = scope
            .all
            .iter()
            .map(|s| s.0 as usize + 1)
            .max()
            .unwrap_or(0);
        let progress = replay::Progress::new(shard_ids, scope.old.clone(), manifests.floor());
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
        let (scan_tx, scan_rx) = crossbeam_channel::unbounded::<(ShardId, Result<Scanned>)>();
        let (ready_tx, ready_rx) =
            crossbeam_channel::unbounded::<(ShardId, Result<ShardRecovery>)>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut txs = Vec::with_capacity(n);
        let mut gos = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let slots: Vec<MetricsSlot> = (0..n).map(|_| Arc::new(Mutex::new(None))).collect();
        let archive_points: Option<Vec<Arc<crate::archive::points::ShardPoints>>> = cfg
            .archive
            .as_ref()
            .map(|_| (0..n).map(|_| Arc::default()).collect());
        for (i, shards_here) in scope.per_core.iter().enumerate() {
            let (tx, rx) =
                control::channel().map_err(|e| Error::io("create a doorbell", dir, e))?;
            txs.push(tx);
            let (go_tx, go_rx) = crossbeam_channel::bounded::<Go>(2);
            gos.push(go_tx);
            let placement = if cfg.pin && n <= cores.len() {
                Placement::Fixed(cores[i])
            } else {
                Placement::Unbound
            };
            let job = CoreJob {
                core: ShardId(i as u32),
                shard_count: n,
                shards: shards_here
                    .iter()
                    .map(|&s| (s, manifests.replay_from(s)))
                    .collect(),
                log_dir: dir.to_path_buf(),
                log_id,
                cfg: cfg.shard.clone(),
                auto: cfg.auto_barriers,
                control: rx,
                go: go_rx,
                acks: ack_tx.clone(),
                scanned: scan_tx.clone(),
                ready: ready_tx.clone(),
                done: done_tx.clone(),
                metrics: slots[i].clone(),
                replay: core_job::ReplaySetup {
                    progress: progress.clone(),
                    during_start,
                    one_pass,
                    buffer: cfg.replay_buffer,
                    checkpoint: manifests.checkpoint(),
                    snapshot: manifests
                        .entry(ShardId(i as u32))
                        .map(|e| e.snapshot.clone()),
                },
                archive_points: archive_points.as_ref().map(|p| p[i].clone()),
            };
            let (ms, f, replay) = (make_storage.clone(), f.clone(), replay.clone());
            let h = LocalExecutorBuilder::new(placement)
                .name(&format!("shardwal-{i}"))
                .io_memory(cfg.io_memory)
                // Recovery's reads run on the blocking pool (glommio's DMA
                // reads fail on this kernel): two unbound threads keep two
                // reads in flight without taking the executor's core.
                .blocking_thread_pool_placement(PoolPlacement::Unbound(2))
                .spawn(move || async move {
                    let storage = ms(job.core);
                    run_core(job, storage, move |r| replay(r), move |ctx, t| f(ctx, t)).await
                })
                .map_err(|e| {
                    Error::io(
                        "spawn shard executor",
                        dir,
                        std::io::Error::other(e.to_string()),
                    )
                })?;
            handles.push(h);
        }
        drop(scan_tx);
        drop(ready_tx);
        drop(done_tx);
        let abort = |gos: &[crossbeam_channel::Sender<Go>],
                     handles: Vec<ExecutorJoinHandle<Result<()>>>,
                     e: Error| {
            for g in gos {
                crate::reply::send_or_gone(g, Go::Abort);
            }
            // The start fails with `e`; what the aborted executors
            // return is a consequence of it.
            for h in handles {
                if let Ok(Err(error)) = h.join() {
                    tracing::debug!(%error, "an executor aborted with the failed start");
                }
            }
            Err(e)
        };
        // Phase 1: every shard's scan; then the plan.
        let scans = match collect(&scan_rx, scope.all.len()) {
            Ok(s) => s,
            Err(e) => return abort(&gos, handles, e),
        };
        let mut planned = match plan::plan(&scope, &manifests, scans) {
            Ok(p) => p,
            Err(e) => return abort(&gos, handles, e),
        };
        // Phase 2: every core cuts its shards as planned.
        for (g, here) in gos.iter().zip(&scope.per_core) {
            let cuts = here.iter().map(|s| planned.shards[s].cut.clone()).collect();
            crate::reply::send_or_gone(g, Go::Cut(cuts));
        }
        let recovered = match collect(&ready_rx, scope.all.len()) {
            Ok(r) => r,
            Err(e) => return abort(&gos, handles, e),
        };
        // Every shard is cut at the sealed epoch: only now may the layout
        // retire shards (they no longer count for sealing) or add ones.
        if planned.write_layout
            && let Err(e) =
                futures_lite::future::block_on(layout::write(&StdStorage, dir, &planned.layout))
        {
            return abort(&gos, handles, e);
        }
        planned.report.shards = recovered.into_values().collect();
        planned.report.elapsed = started.elapsed();
        for (id, why) in &planned.report.skipped_manifests {
            tracing::warn!(checkpoint = id.0, reason = %why, "skipped a checkpoint manifest");
        }
        tracing::info!(
            dir = %dir.display(),
            shards = planned.report.shards.len(),
            sealed_epoch = planned.report.sealed.0,
            checkpoint = planned.report.checkpoint.map(|c| c.0),
            elapsed_ms = planned.report.elapsed.as_secs_f64() * 1e3,
            "log recovered"
        );
        let sealed = planned.sealed;
        let manifest = manifests.newest().cloned();
        let archive = cfg.archive.as_ref().map(|_| {
            let (tx, rx) = crossbeam_channel::unbounded();
            (Arc::new(crate::archive::ArchiveShared::new(n)), tx, rx)
        });
        let (coordinator, coord_thread) = coordinator::spawn(CoordinatorStart {
            shards: txs,
            acks: ack_rx,
            cfg: cfg.coordinator.clone(),
            log_dir: dir.to_path_buf(),
            log_id,
            next_epoch: sealed.next(),
            sealed,
            next_checkpoint: manifests.next_checkpoint,
            retained: manifests.retained,
            layout: planned.layout,
            archive: archive
                .as_ref()
                .map(|(shared, tx, _)| coordinator::ArchiveLink {
                    shared: shared.clone(),
                    sealed: tx.clone(),
                }),
        })?;
        let archiver = match (cfg.archive, archive, archive_points) {
            (Some(acfg), Some((shared, _, rx)), Some(points)) => {
                let c = coordinator.clone();
                Some(crate::archive::upload::spawn(
                    crate::archive::upload::ArchiverStart {
                        cfg: acfg,
                        log_dir: dir.to_path_buf(),
                        log_id,
                        points,
                        shared,
                        sealed: rx,
                        start_sealed: sealed,
                        on_archived: Box::new(move |e| coordinator::notify_archived(&c, e)),
                    },
                )?)
            }
            _ => None,
        };
        for (g, core_plan) in gos.iter().zip(planned.cores) {
            crate::reply::send_or_gone(g, Go::Run(core_plan));
        }
        Ok(Runtime {
            coordinator,
            coord_thread: Some(coord_thread),
            shards: handles,
            done: done_rx,
            done_seen: vec![false; n],
            shard_count: n,
            report: planned.report,
            manifest,
            dir: dir.to_path_buf(),
            shutdown_timeout: cfg.shutdown_timeout,
            metrics: slots,
            archiver,
            _lock: lock,
        })
    }

    /// The coordinator handle.
    pub fn coordinator(&self) -> Coordinator {
        self.coordinator.clone()
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    /// What recovery found on each shard at start (the runtime's shards,
    /// then retired ones; see [`RecoveryReport::shards`]).
    pub fn recovered(&self) -> &[ShardRecovery] {
        &self.report.shards
    }

    /// What recovery found and did at start.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// A snapshot of every shard's metrics, the coordinator's epoch-seal
    /// latency, the sealed epoch and the start's recovery figures.
    ///
    /// Cheap and safe from any thread: it reads what each core last
    /// published (one short lock per shard) and never waits for a core.
    /// A core publishes when its shard opens, when it answers a barrier
    /// (before acknowledging it) and every [`crate::metrics::PUBLISH_EVERY`]
    /// between, so a shard's figures lag by at most that, and after
    /// [`EpochTicket::wait`](crate::EpochTicket::wait) returns they cover
    /// everything up to the barrier of that epoch. The coordinator's
    /// figures are current.
    pub fn metrics(&self) -> RuntimeMetrics {
        let shards = self
            .metrics
            .iter()
            .filter_map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .map(|m| ShardMetrics::clone(&m))
            .collect();
        RuntimeMetrics {
            shards,
            sealed_epoch: self.coordinator.sealed_epoch(),
            epoch_seal_latency: self.coordinator.epoch_seal_latency(),
            last_recovery: RecoveryFigures::of_report(&self.report),
        }
    }

    /// The newest valid checkpoint manifest found at start.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wait for every shard's engine code to return, then shut down.
    pub fn join(mut self) -> Result<()> {
        self.wait_engines(None);
        self.shutdown()
    }

    fn wait_engines(&mut self, deadline: Option<Instant>) {
        while self.done_seen.iter().any(|d| !d) {
            let got = match deadline {
                Some(d) => self.done.recv_deadline(d).ok(),
                None => self.done.recv().ok(),
            };
            let Some(s) = got else {
                break;
            };
            if let Some(d) = self.done_seen.get_mut(s.0 as usize) {
                *d = true;
            }
        }
    }

    /// Shut down: the coordinator stops its timers and issues a final epoch
    /// to the engines, then asks them to return; each engine answers the
    /// final barrier (committing its offsets), returns, and its log is
    /// flushed, synced and closed; then the threads are joined. Returns the
    /// first shard error, if any. Bounded: it waits up to
    /// [`RuntimeConfig::shutdown_timeout`] for the final epoch and the
    /// engines' return, then as long again for the executors to close
    /// their logs; a shard that does not stop in time is reported as
    /// [`Error::ShardStuck`] (its thread is left behind).
    ///
    /// Records an engine appends after it answered the final barrier
    /// belong to no sealed epoch: the next start cuts them, like any
    /// unsealed epoch.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let limit = self.shutdown_timeout;
        let deadline = Instant::now() + limit;
        if !self.coordinator.is_stopped() {
            if let Ok(t) = coordinator::request_final_epoch(&self.coordinator) {
                // A failure here (a failed or stuck shard) is reported by
                // the shard's own result below.
                if let Err(error) =
                    t.wait_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    tracing::debug!(%error, "the final epoch did not seal");
                }
            }
            self.wait_engines(Some(deadline));
        }
        // An engine that has not returned by now is stuck; the others get
        // a fresh allowance to close their logs.
        let stuck = self.done_seen.iter().position(|d| !d);
        let deadline = Instant::now() + limit;
        coordinator::request_shutdown(&self.coordinator);
        let handles: Vec<_> = self.shards.drain(..).collect();
        let n = handles.len();
        let (tx, rx) = crossbeam_channel::unbounded();
        for (i, h) in handles.into_iter().enumerate() {
            let tx = tx.clone();
            // One joiner per executor, so a stuck one delays no other.
            std::thread::spawn(move || {
                crate::reply::send_or_gone(&tx, (i, h.join()));
            });
        }
        let mut results: Vec<Option<Result<()>>> = (0..n).map(|_| None).collect();
        for _ in 0..n {
            let Ok((i, r)) = rx.recv_deadline(deadline) else {
                break;
            };
            results[i] = Some(match r {
                Ok(r) => r,
                Err(e) => Err(Error::ShardFailed {
                    shard: ShardId(i as u32),
                    what: "its executor".into(),
                    cause: e.to_string(),
                }),
            });
        }
        let mut first = match stuck {
            Some(i) => Err(Error::ShardStuck {
                shard: ShardId(i as u32),
                waiting_for: "shutdown (its engine code did not return)".into(),
                waited: limit,
            }),
            None => Ok(()),
        };
        for (i, r) in results.into_iter().enumerate() {
            let r = r.unwrap_or(Err(Error::ShardStuck {
                shard: ShardId(i as u32),
                waiting_for: "shutdown".into(),
                waited: limit,
            }));
            if first.is_ok() {
                first = r;
            }
        }
        if let Some(t) = self.coord_thread.take() {
            let (tx, rx) = crossbeam_channel::bounded(1);
            std::thread::spawn(move || {
                crate::reply::send_or_gone(&tx, t.join());
            });
            // A coordinator still waiting on a stuck shard is left behind
            // with it; its handles already answer `ShutDown`.
            if rx.recv_deadline(deadline).is_err() {
                tracing::warn!("the coordinator thread did not stop in time; left behind");
            }
        }
        if let Some(a) = self.archiver.take() {
            // Every shard is closed: the final pass archives up to the final
            // sealed epoch.
            let r = a.finish();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.shards.is_empty() || self.coord_thread.is_some() {
            // Drop cannot return it; `stop` is the way to see it.
            if let Err(error) = self.stop() {
                tracing::error!(%error, "runtime dropped without stop(): shutdown failed");
            }
        }
    }
}

/// The shard directories present in `dir`, ascending.
fn shard_dirs_present(dir: &Path) -> Result<Vec<ShardId>> {
    let names = match crate::io::std_fs::list_dir(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut v: Vec<ShardId> = names
        .iter()
        .filter_map(|n| crate::segment::parse_shard_dir_name(n))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// True if none of the shard directories `present` holds a segment file
/// (each a real directory, not a symlink): the log has no record yet.
fn holds_no_records(dir: &Path, present: &[ShardId]) -> bool {
    present.iter().all(|&s| {
        let d = crate::segment::shard_dir(dir, s);
        std::fs::symlink_metadata(&d).is_ok_and(|md| md.is_dir())
            && crate::io::std_fs::list_dir(&d)
                .is_ok_and(|names| crate::segment::segments_in(&names).is_empty())
    })
}

/// Wait for one result per shard from `expect` shards; the first error
/// wins. A shard whose executor died counts as shut down.
fn collect<T>(rx: &Receiver<(ShardId, Result<T>)>, expect: usize) -> Result<BTreeMap<ShardId, T>> {
    let mut out = BTreeMap::new();
    let mut first_err = None;
    for _ in 0..expect {
        match rx.recv() {
            Ok((s, Ok(v))) => {
                out.insert(s, v);
            }
            Ok((_, Err(e))) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(Error::ShutDown);
                break;
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Read and sort out every manifest in `dir`.
fn read_manifests(dir: &Path, log_id: [u8; 16]) -> Result<Manifests> {
    let ids = futures_lite::future::block_on(manifest::list(&StdStorage, dir))?;
    let found = ids.into_iter().map(|id| {
        (
            id,
            futures_lite::future::block_on(manifest::read(&StdStorage, dir, id)),
        )
    });
    Ok(Manifests::from_found(log_id, found))
}
