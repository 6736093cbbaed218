//! What one core does in the runtime: recover its shards in the two phases
//! the runtime drives (scan, then cut), then run the engine's code with its
//! replay plan, answering barriers on the engine's behalf when it does not.
//!
//! The runtime thread talks to each core over crossbeam channels: the core
//! sends each shard's scan, waits for its cuts ([`Go::Cut`]), sends each
//! shard's recovery report, waits for its replay plan ([`Go::Run`]). Every
//! decision is the planner's ([`crate::recovery::plan`]); this module only
//! does the I/O on the core's own executor.

use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::context::ShardContext;
use crate::checkpoint::CommitRecord;
use crate::config::ShardConfig;
use crate::control::{self, ControlEvent};
use crate::error::{Error, Result};
use crate::ids::ShardId;
use crate::io::{Storage, StorageFile};
use crate::recovery::Expect;
use crate::recovery::plan::ReplayPlan;
use crate::recovery::shard::{self, ScanOptions, Scanned, ShardCut, ShardRecovery};
use crate::writer::ShardLog;

/// What the runtime thread tells a core between the phases.
pub(super) enum Go {
    /// Cut these shards (own shard first), as the plan decided.
    Cut(Vec<ShardCut>),
    /// Run the engine code with this replay plan.
    Run(ReplayPlan),
    /// Start-up failed: return.
    Abort,
}

/// One core's part of a start.
pub(super) struct CoreJob {
    pub core: ShardId,
    pub shard_count: usize,
    /// Shards to recover on this core (its own first) and, for each, the
    /// checkpoint's replay position.
    pub shards: Vec<(u32, Option<u64>)>,
    pub log_dir: PathBuf,
    pub log_id: [u8; 16],
    pub cfg: ShardConfig,
    pub auto: bool,
    pub poll: Duration,
    pub control: control::ShardRx,
    pub go: Receiver<Go>,
    pub acks: Sender<control::Ack>,
    pub scanned: Sender<(u32, Result<Scanned>)>,
    pub ready: Sender<(u32, Result<ShardRecovery>)>,
    pub done: Sender<()>,
}

pub(super) async fn run_core<S, F, Fut>(job: CoreJob, storage: S, f: F) -> Result<()>
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
    // Phase 1: scan every shard, report what the plan needs.
    for &(s, from_seq) in &job.shards {
        let sdir = crate::segment::shard_dir(&job.log_dir, ShardId(s));
        let exp = Expect {
            log_id: job.log_id,
            shard: s,
            max_payload: crate::format::MAX_RECORD_HARD,
        };
        let opts = ScanOptions {
            from_seq,
            repair: job.cfg.repair,
        };
        let scanned = match storage.create_dir_all(&sdir).await {
            Err(e) => Err(Error::io("create directory", &sdir, e)),
            Ok(()) => shard::scan(&storage, &sdir, exp, opts, |_, _, _| true).await,
        };
        let failed = scanned.as_ref().err().map(|e| fail(s, e));
        let _ = job.scanned.send((s, scanned));
        if let Some(err) = failed {
            return Err(err);
        }
    }
    drop(job.scanned);
    // Phase 2: cut every shard as planned; open the writer of the own
    // shard, leave the others (retired) cut and closed.
    let Ok(Go::Cut(cuts)) = job.go.recv() else {
        return Ok(());
    };
    let mut log = None;
    for (k, (cut, &(s, _))) in cuts.into_iter().zip(&job.shards).enumerate() {
        let r = if k == 0 {
            ShardLog::open_cut(
                storage.clone(),
                &job.log_dir,
                job.log_id,
                job.cfg.clone(),
                cut,
            )
            .await
            .map(|l| {
                let r = l.recovery().clone();
                log = Some(l);
                r
            })
        } else {
            match shard::apply(&storage, cut).await {
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
