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
use crate::config::ShardConfig;
use crate::control::{self, ControlEvent};
use crate::coordinator::{self, Coordinator, CoordinatorConfig, CoordinatorStart};
use crate::error::{Error, Result};
use crate::ids::ShardId;
use crate::io::Storage;
use crate::io::dma::DmaStorage;
use crate::io::std_fs::StdStorage;
use crate::lock::DirLock;
use crate::recovery::ShardRecovery;
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
    recovered: Vec<ShardRecovery>,
    manifest: Option<Manifest>,
    dir: PathBuf,
    _lock: DirLock,
}

enum Go {
    Run(Coordinator),
    Abort,
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
        // Manifests kept for fallback and truncation bookkeeping, oldest first.
        let mut retained = VecDeque::new();
        let mut next_checkpoint = 1;
        for id in futures_lite::future::block_on(manifest::list(&StdStorage, dir))? {
            next_checkpoint = next_checkpoint.max(id + 1);
            if let Ok(m) = futures_lite::future::block_on(manifest::read(&StdStorage, dir, id))
                && m.log_id == log_id
            {
                retained.push_back(m);
            }
        }
        let manifest = retained.back().cloned();

        let make_storage = Arc::new(make_storage);
        let f = Arc::new(f);
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<(usize, Result<ShardRecovery>)>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut txs = Vec::with_capacity(n);
        let mut gos = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = control::channel();
            txs.push(tx);
            let (go_tx, go_rx) = crossbeam_channel::bounded::<Go>(1);
            gos.push(go_tx);
            let placement = if cfg.pin && n <= cores.len() {
                Placement::Fixed(cores[i])
            } else {
                Placement::Unbound
            };
            let (ms, f, ack_tx, ready_tx, done_tx) = (
                make_storage.clone(),
                f.clone(),
                ack_tx.clone(),
                ready_tx.clone(),
                done_tx.clone(),
            );
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
                    let log =
                        match ShardLog::open_with_log_id(storage, &shard_dir, shard, log_id, scfg)
                            .await
                        {
                            Ok(l) => {
                                let _ = ready_tx.send((i, Ok(l.recovery().clone())));
                                l
                            }
                            Err(e) => {
                                let msg = e.to_string();
                                let _ = ready_tx.send((i, Err(e)));
                                return Err(Error::ShardFailed {
                                    shard,
                                    what: "open".into(),
                                    cause: msg,
                                });
                            }
                        };
                    drop(ready_tx);
                    let Ok(Go::Run(coordinator)) = go_rx.recv() else {
                        return log.close().await;
                    };
                    drop(coordinator);
                    let ctx = Rc::new(ShardContext {
                        log: log.clone(),
                        shard,
                        shard_count: n,
                        rx,
                        acks: ack_tx,
                        last_commit: Default::default(),
                        shutdown: Default::default(),
                    });
                    let auto_task = auto
                        .then(|| glommio::spawn_local(auto_barriers(ctx.clone(), poll)).detach());
                    let r = f(ctx.clone()).await;
                    let _ = done_tx.send(());
                    if let Some(t) = auto_task {
                        t.await;
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
        drop(ready_tx);
        drop(done_tx);
        let mut recovered: Vec<Option<ShardRecovery>> = vec![None; n];
        let mut first_err = None;
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
            for g in &gos {
                let _ = g.send(Go::Abort);
            }
            for h in handles {
                let _ = h.join();
            }
            return Err(e);
        }
        let recovered: Vec<ShardRecovery> = recovered.into_iter().flatten().collect();
        // Shard epoch E means barrier(E-1) is durable there.
        let next_epoch = recovered.iter().map(|r| r.epoch.0).max().unwrap_or(1);
        let sealed = recovered.iter().map(|r| r.epoch.0).min().unwrap_or(1) - 1;
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
        for g in &gos {
            let _ = g.send(Go::Run(coordinator.clone()));
        }
        Ok(Runtime {
            coordinator,
            coord_thread: Some(coord_thread),
            shards: handles,
            done: done_rx,
            recovered,
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

    /// The newest valid checkpoint manifest found at start.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wait for every shard's engine code to return, then shut down.
    pub fn join(self) -> Result<()> {
        for _ in 0..self.shards.len() {
            if self.done.recv().is_err() {
                break;
            }
        }
        self.shutdown()
    }

    /// Shut down: the coordinator stops its timers and sends `Shutdown` to
    /// every shard; each shard's engine code returns, its log is flushed,
    /// synced and closed; then the threads are joined. Returns the first
    /// shard error, if any.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
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

async fn auto_barriers<S: Storage>(ctx: Rc<ShardContext<S>>, poll: Duration) {
    loop {
        while let Some(ev) = ctx.poll_control() {
            match ev {
                ControlEvent::Barrier(req) => {
                    let _ = ctx.complete_barrier(req, None).await;
                }
                ControlEvent::Shutdown => return,
            }
        }
        glommio::timer::sleep(poll).await;
    }
}
