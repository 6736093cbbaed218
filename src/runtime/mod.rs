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

pub use context::ShardContext;

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::checkpoint::manifest::{self, Manifest};
use crate::checkpoint::payloads::{SnapshotRef, SourceOffset};
use crate::config::ShardConfig;
use crate::control::{self, ControlEvent};
use crate::coordinator::{self, Coordinator, CoordinatorConfig, CoordinatorStart};
use crate::error::{Error, Result};
use crate::ids::ShardId;
use crate::ids::{CheckpointId, Epoch, Seq};
use crate::io::Storage;
use crate::io::dma::DmaStorage;
use crate::io::std_fs::StdStorage;
use crate::lock::DirLock;
use crate::recovery::ShardRecovery;
use crate::recovery::{CutPoint, Expect, ScanSummary};
use crate::writer::ShardLog;

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
    /// In auto mode, how often the control channel is polled.
    pub control_poll: Duration,
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
            control_poll: Duration::from_micros(50),
        }
    }
}

/// A running set of shards and their coordinator.
pub struct Runtime {
    coordinator: Coordinator,
    coord_thread: Option<std::thread::JoinHandle<()>>,
    shards: Vec<ExecutorJoinHandle<Result<()>>>,
    done: Receiver<()>,
    done_seen: usize,
    recovered: Vec<ShardRecovery>,
    report: RecoveryReport,
    manifest: Option<Manifest>,
    dir: PathBuf,
    _lock: DirLock,
}

enum Go {
    /// Cut the shard at this point and resume in this epoch.
    Cut(Option<CutPoint>, u64),
    /// Run the engine code with this replay plan.
    Run(ReplayPlan),
    Abort,
}

/// What a shard replays after a restart: its snapshot from the checkpoint,
/// then its records from `from` up to `until` (exclusive), which ends with
/// the barrier of the sealed epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPlan {
    /// The sealed epoch everything was cut at.
    pub sealed: Epoch,
    /// The checkpoint the snapshot comes from.
    pub checkpoint: Option<CheckpointId>,
    /// The snapshot, if there is a checkpoint.
    pub snapshot: Option<SnapshotRef>,
    /// First sequence number to replay.
    pub from: Seq,
    /// Sequence number after the last record to replay.
    pub until: Seq,
    /// This shard's source offsets as of the sealed epoch.
    pub offsets: Vec<SourceOffset>,
    /// Source offsets of every shard as of the sealed epoch, merged.
    pub merged_offsets: Vec<SourceOffset>,
    /// This shard's watermark as of the sealed epoch.
    pub watermark: Option<u64>,
}

/// What opening a log directory found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Per shard, in shard order.
    pub shards: Vec<ShardRecovery>,
    /// The recovered sealed epoch: writing resumes in the next one.
    pub sealed: Epoch,
    /// The checkpoint used.
    pub checkpoint: Option<CheckpointId>,
    /// Newer manifests that were skipped, and why.
    pub skipped_manifests: Vec<(u64, String)>,
    /// Wall time of the whole recovery.
    pub elapsed: Duration,
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
        cfg.shard.validate()?;
        let lock = DirLock::acquire(dir)?;
        let log_id =
            futures_lite::future::block_on(crate::log_dir::load_or_init(&StdStorage, dir))?;
        let cores = available_cores();
        let n = cfg.shards.unwrap_or(cores.len().max(1));
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::Config(format!("{n} shards")));
        }
        // Re-sharding (a log written by more shards than this runtime has)
        // is not supported yet: refuse rather than ignore those shards' data.
        if let Ok(names) = crate::io::std_fs::list_dir(dir) {
            for name in names {
                if let Some(i) = name
                    .strip_prefix("shard-")
                    .and_then(|d| d.parse::<usize>().ok())
                    && i >= n
                {
                    return Err(Error::Config(format!(
                        "the log at {} has shard {i} but the runtime has {n} shards; \
                         re-sharding is not supported yet",
                        dir.display()
                    )));
                }
            }
        }
        // Manifests kept for fallback and truncation bookkeeping, oldest first.
        let started = std::time::Instant::now();
        let mut retained = VecDeque::new();
        let mut next_checkpoint = 1;
        let mut skipped_manifests = Vec::new();
        for id in futures_lite::future::block_on(manifest::list(&StdStorage, dir))? {
            next_checkpoint = next_checkpoint.max(id + 1);
            match futures_lite::future::block_on(manifest::read(&StdStorage, dir, id)) {
                Ok(m) if m.log_id == log_id => retained.push_back(m),
                Ok(_) => skipped_manifests.push((id, "belongs to another log".to_string())),
                Err(e) => skipped_manifests.push((id, e)),
            }
        }
        let manifest = retained.back().cloned();
        // Only failures newer than the manifest in use are "skipped".
        let used = manifest.as_ref().map_or(0, |m| m.checkpoint);
        skipped_manifests.retain(|(id, _)| *id > used);

        let make_storage = Arc::new(make_storage);
        let f = Arc::new(f);
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
        let (scan_tx, scan_rx) = crossbeam_channel::unbounded::<(usize, Result<ScanSummary>)>();
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<(usize, Result<ShardRecovery>)>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut txs = Vec::with_capacity(n);
        let mut gos = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = control::channel();
            txs.push(tx);
            let (go_tx, go_rx) = crossbeam_channel::bounded::<Go>(2);
            gos.push(go_tx);
            let placement = if cfg.pin && n <= cores.len() {
                Placement::Fixed(cores[i])
            } else {
                Placement::Unbound
            };
            let (ms, f, ack_tx, scan_tx, ready_tx, done_tx) = (
                make_storage.clone(),
                f.clone(),
                ack_tx.clone(),
                scan_tx.clone(),
                ready_tx.clone(),
                done_tx.clone(),
            );
            let from_seq = manifest
                .as_ref()
                .and_then(|m| m.shards.iter().find(|s| s.shard as usize == i))
                .map(|s| s.replay_from);
            let (shard_dir, scfg, auto, poll) = (
                dir.to_path_buf(),
                cfg.shard.clone(),
                cfg.auto_barriers,
                cfg.control_poll,
            );
            let h = LocalExecutorBuilder::new(placement)
                .name(&format!("shardwal-{i}"))
                .io_memory(cfg.io_memory)
                .spawn(move || async move {
                    let shard = ShardId(i as u32);
                    let storage = ms(shard);
                    let fail = |e: &Error| Error::ShardFailed {
                        shard,
                        what: "recovery".into(),
                        cause: e.to_string(),
                    };
                    // Phase 1: scan, report what the cut needs.
                    let sdir = crate::segment::shard_dir(&shard_dir, shard);
                    let exp = Expect {
                        log_id,
                        shard: shard.0,
                        max_payload: crate::format::MAX_RECORD_HARD,
                    };
                    let mut summary = ScanSummary::new(from_seq.unwrap_or(0));
                    let scanned = match storage.create_dir_all(&sdir).await {
                        Err(e) => Err(Error::io("create directory", &sdir, e)),
                        Ok(()) => {
                            crate::recovery::shard::scan(
                                &storage,
                                &sdir,
                                exp,
                                from_seq,
                                |fr, seg, off| summary.observe(fr, seg, off),
                            )
                            .await
                        }
                    };
                    let scanned = match scanned {
                        Ok(sc) => {
                            let _ = scan_tx.send((i, Ok(summary)));
                            sc
                        }
                        Err(e) => {
                            let err = fail(&e);
                            let _ = scan_tx.send((i, Err(e)));
                            return Err(err);
                        }
                    };
                    drop(scan_tx);
                    // Phase 2: cut at the sealed epoch and open the writer.
                    let Ok(Go::Cut(cut, epoch)) = go_rx.recv() else {
                        return Ok(());
                    };
                    let opened = ShardLog::open_scanned(
                        storage,
                        &shard_dir,
                        shard,
                        log_id,
                        scfg,
                        scanned,
                        cut,
                        Some(epoch),
                    )
                    .await;
                    let log = match opened {
                        Ok(l) => {
                            let _ = ready_tx.send((i, Ok(l.recovery().clone())));
                            l
                        }
                        Err(e) => {
                            let err = fail(&e);
                            let _ = ready_tx.send((i, Err(e)));
                            return Err(err);
                        }
                    };
                    drop(ready_tx);
                    let Ok(Go::Run(plan)) = go_rx.recv() else {
                        return log.close().await;
                    };
                    let ctx = Rc::new(ShardContext {
                        log: log.clone(),
                        shard,
                        shard_count: n,
                        rx,
                        acks: ack_tx,
                        last_commit: std::cell::RefCell::new(
                            (!plan.offsets.is_empty() || plan.watermark.is_some()).then(|| {
                                crate::checkpoint::CommitRecord {
                                    epoch: plan.sealed.0,
                                    offsets: plan.offsets.clone(),
                                    watermark: plan.watermark.unwrap_or(0),
                                }
                            }),
                        ),
                        shutdown: Default::default(),
                        stop: Default::default(),
                        plan,
                        log_dir: shard_dir.clone(),
                    });
                    let auto_task = auto.then(|| {
                        glommio::spawn_local(auto_barriers(ctx.clone(), poll, true)).detach()
                    });
                    let r = f(ctx.clone()).await;
                    let _ = done_tx.send(());
                    // Until shutdown, barriers are answered on the engine's
                    // behalf, so the final epoch can seal.
                    match auto_task {
                        Some(t) => {
                            t.await;
                        }
                        None => auto_barriers(ctx.clone(), poll, false).await,
                    }
                    drop(ctx);
                    let closed = log.close().await;
                    r.and(closed)
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
                     handles: Vec<ExecutorJoinHandle<Result<()>>>| {
            for g in gos {
                let _ = g.send(Go::Abort);
            }
            for h in handles {
                let _ = h.join();
            }
        };
        // Phase 1 results: every shard's barriers.
        let mut summaries: Vec<Option<ScanSummary>> = vec![None; n];
        let mut first_err = None;
        for _ in 0..n {
            match scan_rx.recv() {
                Ok((i, Ok(s))) => summaries[i] = Some(s),
                Ok((_, Err(e))) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(Error::ShutDown);
                    break;
                }
            }
        }
        if let Some(e) = first_err {
            abort(&gos, handles);
            return Err(e);
        }
        let summaries: Vec<ScanSummary> = summaries.into_iter().flatten().collect();
        // The consistent cut: the highest epoch whose barrier is durable on
        // every shard. Later epochs are cut everywhere.
        let floor = manifest.as_ref().map_or(0, |m| m.epoch);
        let sealed = summaries
            .iter()
            .map(|s| s.last_barrier(floor))
            .min()
            .unwrap_or(floor);
        for (g, s) in gos.iter().zip(&summaries) {
            let _ = g.send(Go::Cut(s.cut_for(sealed), sealed + 1));
        }
        let mut recovered: Vec<Option<ShardRecovery>> = vec![None; n];
        for _ in 0..n {
            match ready_rx.recv() {
                Ok((i, Ok(r))) => recovered[i] = Some(r),
                Ok((_, Err(e))) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(Error::ShutDown);
                    break;
                }
            }
        }
        if let Some(e) = first_err {
            abort(&gos, handles);
            return Err(e);
        }
        let mut recovered: Vec<ShardRecovery> = recovered.into_iter().flatten().collect();
        for (r, s) in recovered.iter_mut().zip(&summaries) {
            r.epochs_seen = s.barriers_since_from + 1;
        }
        // Source offsets as of the sealed epoch, per shard and merged.
        let per_shard: Vec<(Vec<SourceOffset>, Option<u64>)> = (0..n)
            .map(|i| {
                let from_log = summaries[i].commit_for(sealed);
                let from_manifest = manifest
                    .as_ref()
                    .and_then(|m| m.shards.iter().find(|s| s.shard as usize == i))
                    .and_then(|s| s.commit.as_ref());
                match from_log.or(from_manifest) {
                    Some(c) => (c.offsets.clone(), Some(c.watermark)),
                    None => (Vec::new(), None),
                }
            })
            .collect();
        let mut merged: Vec<SourceOffset> = Vec::new();
        for (offs, _) in &per_shard {
            for o in offs {
                match merged.iter_mut().find(|m| m.source == o.source) {
                    Some(m) => m.offset = m.offset.max(o.offset),
                    None => merged.push(o.clone()),
                }
            }
        }
        merged.sort_by(|a, b| a.source.cmp(&b.source));
        let next_epoch = sealed + 1;
        let report = RecoveryReport {
            shards: recovered.clone(),
            sealed: Epoch(sealed),
            checkpoint: manifest.as_ref().map(|m| CheckpointId(m.checkpoint)),
            skipped_manifests,
            elapsed: started.elapsed(),
        };
        let (coordinator, coord_thread) = coordinator::spawn(CoordinatorStart {
            shards: txs,
            acks: ack_rx,
            cfg: cfg.coordinator.clone(),
            log_dir: dir.to_path_buf(),
            log_id,
            next_epoch,
            sealed,
            next_checkpoint,
            retained,
        })?;
        for (i, g) in gos.iter().enumerate() {
            let entry = manifest
                .as_ref()
                .and_then(|m| m.shards.iter().find(|s| s.shard as usize == i));
            let plan = ReplayPlan {
                sealed: Epoch(sealed),
                checkpoint: manifest.as_ref().map(|m| CheckpointId(m.checkpoint)),
                snapshot: entry.map(|e| e.snapshot.clone()),
                from: Seq(summaries[i]
                    .from_point
                    .map_or(recovered[i].next_seq.0, |p| p.seq)
                    .min(recovered[i].next_seq.0)),
                until: recovered[i].next_seq,
                offsets: per_shard[i].0.clone(),
                merged_offsets: merged.clone(),
                watermark: per_shard[i].1,
            };
            let _ = g.send(Go::Run(plan));
        }
        Ok(Runtime {
            coordinator,
            coord_thread: Some(coord_thread),
            shards: handles,
            done: done_rx,
            done_seen: 0,
            recovered,
            report,
            manifest,
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The coordinator handle.
    pub fn coordinator(&self) -> Coordinator {
        self.coordinator.clone()
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.recovered.len()
    }

    /// What recovery found on each shard at start.
    pub fn recovered(&self) -> &[ShardRecovery] {
        &self.recovered
    }

    /// What recovery found and did at start.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
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
        self.wait_engines();
        self.shutdown()
    }

    fn wait_engines(&mut self) {
        while self.done_seen < self.shards.len() {
            if self.done.recv().is_err() {
                break;
            }
            self.done_seen += 1;
        }
    }

    /// Shut down: the coordinator stops its timers and sends `Shutdown` to
    /// every shard; each shard's engine code returns, its log is flushed,
    /// synced and closed; then the threads are joined. Returns the first
    /// shard error, if any.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        // Ask the engines to return, then seal a final epoch (answered on
        // their behalf) so that everything they appended survives.
        if !self.coordinator.is_stopped() {
            coordinator::request_engines_stop(&self.coordinator);
            self.wait_engines();
            if let Ok(t) = self.coordinator.advance_epoch() {
                let _ = t.wait_timeout(Duration::from_secs(10));
            }
        }
        coordinator::request_shutdown(&self.coordinator);
        let mut first = Ok(());
        for h in self.shards.drain(..) {
            let r = match h.join() {
                Ok(r) => r,
                Err(e) => Err(Error::ShardFailed {
                    shard: ShardId(u32::MAX),
                    what: "executor".into(),
                    cause: e.to_string(),
                }),
            };
            if first.is_ok() {
                first = r;
            }
        }
        if let Some(t) = self.coord_thread.take() {
            let _ = t.join();
        }
        first
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.shards.is_empty() || self.coord_thread.is_some() {
            let _ = self.stop();
        }
    }
}

/// Answer barriers on the engine's behalf. With `checkpoints` false (the
/// engine code has returned and can no longer supply its state), checkpoint
/// requests fail instead of recording an empty snapshot.
async fn auto_barriers<S: Storage>(ctx: Rc<ShardContext<S>>, poll: Duration, checkpoints: bool) {
    loop {
        if ctx.stop.get() {
            return;
        }
        while let Some(ev) = ctx.poll_control() {
            match ev {
                ControlEvent::Barrier(req) if req.checkpoint.is_some() && !checkpoints => {
                    let _ = ctx.acks.send(crate::control::Ack::Failed {
                        shard: ctx.shard,
                        epoch: req.epoch,
                        cause: "the engine code has returned; it cannot snapshot its state".into(),
                    });
                }
                ControlEvent::Barrier(req) => {
                    let _ = ctx.complete_barrier(req, None).await;
                }
                // The engine is told to return; keep answering barriers
                // until the runtime has sealed the final epoch.
                ControlEvent::Shutdown if ctx.stop.get() => return,
                ControlEvent::Shutdown => {}
            }
        }
        glommio::timer::sleep(poll).await;
    }
}
