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

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement, PoolPlacement};

use crate::checkpoint::CommitRecord;
use crate::checkpoint::manifest::{self, Manifest};
use crate::checkpoint::payloads::{SnapshotRef, SourceOffset};
use crate::config::ShardConfig;
use crate::control::{self, ControlEvent};
use crate::coordinator::{self, Coordinator, CoordinatorConfig, CoordinatorStart};
use crate::error::{Error, Result};
use crate::ids::ShardId;
use crate::ids::{CheckpointId, Epoch, Seq};
use crate::io::dma::DmaStorage;
use crate::io::std_fs::StdStorage;
use crate::io::{Storage, StorageFile};
use crate::layout::{self, Layout};
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
    shard_count: usize,
    report: RecoveryReport,
    manifest: Option<Manifest>,
    dir: PathBuf,
    _lock: DirLock,
}

enum Go {
    /// Cut these shards (own shard first) and resume writing in this epoch.
    Cut(Vec<(u32, Option<CutPoint>)>, u64),
    /// Run the engine code with this replay plan.
    Run(ReplayPlan),
    Abort,
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
    pub skipped_manifests: Vec<(u64, String)>,
    /// The shard layout in effect after the start (see [`crate::layout`]).
    pub layout: Layout,
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
        let started = std::time::Instant::now();
        let log_id =
            futures_lite::future::block_on(crate::log_dir::load_or_init(&StdStorage, dir))?;
        let cores = available_cores();
        let n = cfg.shards.unwrap_or(cores.len().max(1));
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::Config(format!("{n} shards")));
        }
        let m = n as u32;
        // The layout: which shard directories are written, which retired.
        layout::remove_leftovers(dir);
        let present = shard_dirs_present(dir)?;
        let loaded = futures_lite::future::block_on(layout::read(&StdStorage, dir, log_id))?;
        // Without a LAYOUT file, the shard directories present are the
        // written shards; with none visible (a new log, or storage that is
        // not the file system), the runtime's shards.
        let old = loaded.clone().unwrap_or_else(|| {
            if present.is_empty() {
                Layout::implicit(log_id, &(0..m).collect::<Vec<_>>())
            } else {
                Layout::implicit(log_id, &present)
            }
        });
        let known = old.data_shards();
        // Directories the layout does not list were created by a start that
        // crashed before writing its layout: they must hold no records.
        let orphans: Vec<u32> = present
            .iter()
            .copied()
            .filter(|s| !known.contains(s))
            .collect();
        let mut all: Vec<u32> = known.iter().chain(&present).copied().chain(0..m).collect();
        all.sort_unstable();
        all.dedup();
        // Core i recovers its own shard i first, then the shards >= n it
        // replays (retired ones), ascending.
        let mut per_core: Vec<Vec<u32>> = (0..m).map(|i| vec![i]).collect();
        for &s in all.iter().filter(|s| **s >= m) {
            per_core[layout::replayer(s, m) as usize].push(s);
        }

        // Manifests kept for fallback and truncation bookkeeping, oldest first.
        let mut retained = VecDeque::new();
        let mut next_checkpoint = 1;
        let mut skipped_manifests = Vec::new();
        for id in futures_lite::future::block_on(manifest::list(&StdStorage, dir))? {
            next_checkpoint = next_checkpoint.max(id + 1);
            match futures_lite::future::block_on(manifest::read(&StdStorage, dir, id)) {
                Ok(m) if m.log_id == log_id => retained.push_back(m),
                Ok(_) => skipped_manifests.push((id, "belongs to another log".to_string())),
                Err(e) => skipped_manifests.push((id, e.to_string())),
            }
        }
        let manifest = retained.back().cloned();
        // Only failures newer than the manifest in use are "skipped".
        let used = manifest.as_ref().map_or(0, |m| m.checkpoint);
        skipped_manifests.retain(|(id, _)| *id > used);
        let entry = |s: u32| {
            manifest
                .as_ref()
                .and_then(|mf| mf.shards.iter().find(|e| e.shard == s))
        };

        let make_storage = Arc::new(make_storage);
        let f = Arc::new(f);
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
        let (scan_tx, scan_rx) = crossbeam_channel::unbounded::<(u32, Result<ScanSummary>)>();
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<(u32, Result<ShardRecovery>)>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut txs = Vec::with_capacity(n);
        let mut gos = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for (i, shards_here) in per_core.iter().enumerate() {
            let (tx, rx) = control::channel();
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
                    .map(|&s| (s, entry(s).map(|e| e.replay_from)))
                    .collect(),
                log_dir: dir.to_path_buf(),
                log_id,
                cfg: cfg.shard.clone(),
                auto: cfg.auto_barriers,
                poll: cfg.control_poll,
                control: rx,
                go: go_rx,
                acks: ack_tx.clone(),
                scanned: scan_tx.clone(),
                ready: ready_tx.clone(),
                done: done_tx.clone(),
            };
            let (ms, f) = (make_storage.clone(), f.clone());
            let h = LocalExecutorBuilder::new(placement)
                .name(&format!("shardwal-{i}"))
                .io_memory(cfg.io_memory)
                // Recovery's reads run on the blocking pool (glommio's DMA
                // reads fail on this kernel): two unbound threads keep two
                // reads in flight without taking the executor's core.
                .blocking_thread_pool_placement(PoolPlacement::Unbound(2))
                .spawn(move || async move {
                    let storage = ms(job.core);
                    run_core(job, storage, move |ctx| f(ctx)).await
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
                let _ = g.send(Go::Abort);
            }
            for h in handles {
                let _ = h.join();
            }
            Err(e)
        };
        // Phase 1 results: every shard's barriers.
        let summaries = match collect(&scan_rx, all.len()) {
            Ok(s) => s,
            Err(e) => return abort(&gos, handles, e),
        };
        if let Some(s) = orphans.iter().find(|s| summaries[s].from_point.is_some()) {
            let e = Error::Config(format!(
                "{} holds records but the log's layout does not list shard {s}",
                crate::segment::shard_dir(dir, ShardId(*s)).display()
            ));
            return abort(&gos, handles, e);
        }
        // The consistent cut: the highest epoch whose barrier is durable on
        // every written shard. Later epochs are cut everywhere.
        let floor = manifest.as_ref().map_or(0, |m| m.epoch);
        let sealed = old.sealed(floor, |s| {
            summaries.get(&s).map_or(floor, |x| x.last_barrier(floor))
        });
        for (g, shards_here) in gos.iter().zip(&per_core) {
            let cuts = shards_here
                .iter()
                .map(|s| (*s, summaries[s].cut_for(sealed)))
                .collect();
            let _ = g.send(Go::Cut(cuts, sealed + 1));
        }
        let mut recovered = match collect(&ready_rx, all.len()) {
            Ok(r) => r,
            Err(e) => return abort(&gos, handles, e),
        };
        for (s, r) in recovered.iter_mut() {
            r.epochs_seen = summaries[s].barriers_since_from + 1;
        }
        // Every shard is cut at the sealed epoch: only now may the layout
        // retire shards (they no longer count for sealing) or add ones.
        let mut layout = old.reshard(m, sealed);
        for &s in orphans.iter().filter(|s| **s >= m) {
            layout.retired.push(layout::RetiredShard {
                shard: s,
                epoch: sealed,
            });
            layout.retired.sort_by_key(|r| r.shard);
        }
        if loaded.as_ref() != Some(&layout)
            && let Err(e) = futures_lite::future::block_on(layout::write(&StdStorage, dir, &layout))
        {
            return abort(&gos, handles, e);
        }
        // Source offsets as of the sealed epoch, per shard and merged.
        let commit_of = |s: u32| {
            summaries[&s]
                .commit_for(sealed)
                .or_else(|| entry(s).and_then(|e| e.commit.as_ref()))
        };
        let mut merged = merge_offsets(all.iter().filter_map(|s| commit_of(*s)));
        merged.sort_by(|a, b| a.source.cmp(&b.source));
        let report = RecoveryReport {
            shards: recovered.values().cloned().collect(),
            sealed: Epoch(sealed),
            checkpoint: manifest.as_ref().map(|m| CheckpointId(m.checkpoint)),
            skipped_manifests,
            layout: layout.clone(),
            elapsed: started.elapsed(),
        };
        let (coordinator, coord_thread) = coordinator::spawn(CoordinatorStart {
            shards: txs,
            acks: ack_rx,
            cfg: cfg.coordinator.clone(),
            log_dir: dir.to_path_buf(),
            log_id,
            next_epoch: sealed + 1,
            sealed,
            next_checkpoint,
            retained,
            layout,
        })?;
        for (g, shards_here) in gos.iter().zip(&per_core) {
            let source = |s: u32| {
                let r = &recovered[&s];
                let from = summaries[&s]
                    .from_point
                    .map_or(r.next_seq.0, |p| p.seq)
                    .min(r.next_seq.0);
                ReplaySource {
                    shard: ShardId(s),
                    snapshot: entry(s).map(|e| e.snapshot.clone()),
                    from: Seq(from),
                    until: r.next_seq,
                }
            };
            let own = source(shards_here[0]);
            let commits: Vec<&CommitRecord> =
                shards_here.iter().filter_map(|s| commit_of(*s)).collect();
            let plan = ReplayPlan {
                sealed: Epoch(sealed),
                checkpoint: manifest.as_ref().map(|m| CheckpointId(m.checkpoint)),
                snapshot: own.snapshot,
                from: own.from,
                until: own.until,
                adopted: shards_here[1..].iter().map(|s| source(*s)).collect(),
                offsets: merge_offsets(commits.iter().copied()),
                merged_offsets: merged.clone(),
                watermark: commits.iter().map(|c| c.watermark).min(),
            };
            let _ = g.send(Go::Run(plan));
        }
        Ok(Runtime {
            coordinator,
            coord_thread: Some(coord_thread),
            shards: handles,
            done: done_rx,
            done_seen: 0,
            shard_count: n,
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

/// The shard directories present in `dir`, ascending.
fn shard_dirs_present(dir: &Path) -> Result<Vec<u32>> {
    let names = match crate::io::std_fs::list_dir(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut v: Vec<u32> = names
        .iter()
        .filter_map(|n| crate::segment::parse_shard_dir_name(n))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Wait for one result per shard from `expect` shards; the first error
/// wins. A shard whose executor died counts as shut down.
fn collect<T>(rx: &Receiver<(u32, Result<T>)>, expect: usize) -> Result<BTreeMap<u32, T>> {
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

/// The highest offset of each source over `commits`, in the order the
/// sources first appear (so one commit comes back exactly as written).
fn merge_offsets<'a>(commits: impl Iterator<Item = &'a CommitRecord>) -> Vec<SourceOffset> {
    let mut merged: Vec<SourceOffset> = Vec::new();
    for o in commits.flat_map(|c| &c.offsets) {
        match merged.iter_mut().find(|m| m.source == o.source) {
            Some(m) => m.offset = m.offset.max(o.offset),
            None => merged.push(o.clone()),
        }
    }
    merged
}

/// What one core does: recover its shards, then run the engine code.
struct CoreJob {
    core: ShardId,
    shard_count: usize,
    /// Shards to recover on this core (its own first) and, for each, the
    /// checkpoint's replay position.
    shards: Vec<(u32, Option<u64>)>,
    log_dir: PathBuf,
    log_id: [u8; 16],
    cfg: ShardConfig,
    auto: bool,
    poll: Duration,
    control: control::ShardRx,
    go: Receiver<Go>,
    acks: crossbeam_channel::Sender<control::Ack>,
    scanned: crossbeam_channel::Sender<(u32, Result<ScanSummary>)>,
    ready: crossbeam_channel::Sender<(u32, Result<ShardRecovery>)>,
    done: crossbeam_channel::Sender<()>,
}

async fn run_core<S, F, Fut>(job: CoreJob, storage: S, f: F) -> Result<()>
where
    S: Storage,
    F: Fn(Rc<ShardContext<S>>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let core = job.core;
    let fail = |shard: u32, e: &Error| Error::ShardFailed {
        shard: ShardId(shard),
        what: "recovery".into(),
        cause: e.to_string(),
    };
    // Phase 1: scan every shard, report what the cut needs.
    let mut scans = Vec::with_capacity(job.shards.len());
    for &(s, from_seq) in &job.shards {
        let sdir = crate::segment::shard_dir(&job.log_dir, ShardId(s));
        let exp = Expect {
            log_id: job.log_id,
            shard: s,
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
                    job.cfg.repair,
                    |fr, seg, off| summary.observe(fr, seg, off),
                )
                .await
            }
        };
        let scanned = scanned.and_then(|sc| summary.check(ShardId(s), &sdir).map(|()| sc));
        match scanned {
            Ok(sc) => {
                let _ = job.scanned.send((s, Ok(summary)));
                scans.push(sc);
            }
            Err(e) => {
                let err = fail(s, &e);
                let _ = job.scanned.send((s, Err(e)));
                return Err(err);
            }
        }
    }
    drop(job.scanned);
    // Phase 2: cut every shard at the sealed epoch; open the writer of the
    // own shard, leave the others (retired) cut and closed.
    let Ok(Go::Cut(cuts, epoch)) = job.go.recv() else {
        return Ok(());
    };
    let mut log = None;
    for (k, (scanned, (s, cut))) in scans.into_iter().zip(cuts).enumerate() {
        let shard = ShardId(s);
        let r = if k == 0 {
            ShardLog::open_scanned(
                storage.clone(),
                &job.log_dir,
                shard,
                job.log_id,
                job.cfg.clone(),
                scanned,
                cut,
                Some(epoch),
            )
            .await
            .map(|l| {
                let r = l.recovery().clone();
                log = Some(l);
                r
            })
        } else {
            let sdir = crate::segment::shard_dir(&job.log_dir, shard);
            match crate::recovery::shard::apply(&storage, &sdir, shard, scanned, cut, Some(epoch))
                .await
            {
                Ok(rec) => {
                    if let Some(r) = rec.resume {
                        let _ = r.file.close().await;
                    }
                    Ok(rec.report)
                }
                Err(e) => Err(e),
            }
        };
        match r {
            Ok(r) => {
                let _ = job.ready.send((s, Ok(r)));
            }
            Err(e) => {
                let err = fail(s, &e);
                let _ = job.ready.send((s, Err(e)));
                if let Some(l) = log {
                    let _ = l.close().await;
                }
                return Err(err);
            }
        }
    }
    drop(job.ready);
    let Some(log) = log else {
        return Ok(());
    };
    let Ok(Go::Run(plan)) = job.go.recv() else {
        return log.close().await;
    };
    let ctx = Rc::new(ShardContext {
        log: log.clone(),
        shard: core,
        shard_count: job.shard_count,
        rx: job.control,
        acks: job.acks,
        last_commit: std::cell::RefCell::new(
            (!plan.offsets.is_empty() || plan.watermark.is_some()).then(|| CommitRecord {
                epoch: plan.sealed.0,
                offsets: plan.offsets.clone(),
                watermark: plan.watermark.unwrap_or(0),
            }),
        ),
        shutdown: Default::default(),
        stop: Default::default(),
        plan,
        log_dir: job.log_dir.clone(),
    });
    let auto_task = job
        .auto
        .then(|| glommio::spawn_local(auto_barriers(ctx.clone(), job.poll, true)).detach());
    let r = f(ctx.clone()).await;
    let _ = job.done.send(());
    // Until shutdown, barriers are answered on the engine's behalf, so the
    // final epoch can seal.
    match auto_task {
        Some(t) => {
            t.await;
        }
        None => auto_barriers(ctx.clone(), job.poll, false).await,
    }
    drop(ctx);
    let closed = log.close().await;
    r.and(closed)
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
