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
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender};
use futures_lite::FutureExt;

use super::context::ShardContext;
use super::replay::{Feed, Progress, Replay, ReplayStart};
use crate::checkpoint::CommitRecord;
use crate::checkpoint::payloads::SnapshotRef;
use crate::config::ShardConfig;
use crate::control::{self, ControlEvent};
use crate::error::{Error, Result};
use crate::format::frame::RecordKind;
use crate::ids::{CheckpointId, Seq, ShardId};
use crate::io::Storage;
use crate::metrics::{PUBLISH_EVERY, ShardMetrics};
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
    pub shards: Vec<(ShardId, Option<Seq>)>,
    pub log_dir: PathBuf,
    pub log_id: [u8; 16],
    pub cfg: ShardConfig,
    pub auto: bool,
    pub control: control::ShardRx,
    pub go: Receiver<Go>,
    pub acks: Sender<control::Ack>,
    pub scanned: Sender<(ShardId, Result<Scanned>)>,
    pub ready: Sender<(ShardId, Result<ShardRecovery>)>,
    pub done: Sender<ShardId>,
    /// Where this core publishes its shard's metrics for
    /// [`super::Runtime::metrics`].
    pub metrics: MetricsSlot,
    /// The replay during the start ([`super::replay`]).
    pub replay: ReplaySetup,
    /// With archiving: where this core publishes the end of each sealed
    /// barrier in its shard's files.
    pub archive_points: Option<std::sync::Arc<crate::archive::points::ShardPoints>>,
}

/// How a core replays during the start.
pub(super) struct ReplaySetup {
    /// Every shard's scan progress (this core publishes its shards').
    pub progress: Progress,
    /// The engine replays through a [`Replay`] while the start runs
    /// ([`super::Runtime::start_replaying`]); otherwise the replay function
    /// is a no-op and the core waits for the runtime without polling.
    pub during_start: bool,
    /// Copy records for the replay as the scan reads them.
    pub one_pass: bool,
    /// The most bytes of copied records held.
    pub buffer: usize,
    /// The checkpoint recovery starts from, and this shard's snapshot.
    pub checkpoint: Option<CheckpointId>,
    pub snapshot: Option<SnapshotRef>,
}

/// The pace of the own shard's scan: it waits while the replay's buffer is
/// nearly full and waiting helps ([`Feed::scan_should_wait`]), for at most
/// [`super::replay::MAX_SCAN_WAIT`] in one go; after a wait that long it
/// never waits again (the records from there on are read a second time).
fn scan_gate(
    feed: &std::rc::Rc<std::cell::RefCell<Feed>>,
    progress: &Progress,
    shard: ShardId,
) -> Box<dyn FnMut() -> bool> {
    let (feed, progress) = (feed.clone(), progress.clone());
    let mut since: Option<std::time::Instant> = None;
    let mut gave_up = false;
    Box::new(move || {
        if gave_up || !feed.borrow().scan_should_wait(&progress, shard) {
            since = None;
            return true;
        }
        let t = *since.get_or_insert_with(std::time::Instant::now);
        if t.elapsed() > super::replay::MAX_SCAN_WAIT {
            gave_up = true;
            tracing::warn!(
                shard = shard.0,
                "the replay's buffer stayed full: the rest is read twice"
            );
        }
        gave_up
    })
}

/// The next word from the runtime thread. While a replay runs beside it on
/// this executor, the channel is polled (a blocking receive would stall the
/// replay); otherwise it is a blocking receive.
async fn next_go(go: &Receiver<Go>, polled: bool) -> Option<Go> {
    if !polled {
        return go.recv().ok();
    }
    loop {
        match go.try_recv() {
            Ok(g) => return Some(g),
            Err(crossbeam_channel::TryRecvError::Empty) => {
                glommio::timer::sleep(std::time::Duration::from_micros(200)).await
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
        }
    }
}

/// One shard's latest published metrics, shared between its core (the
/// only writer) and the runtime's handle. `None` until the shard opened.
pub(super) type MetricsSlot = Arc<Mutex<Option<Arc<ShardMetrics>>>>;

/// Publish `log`'s metrics into `slot`. The snapshot (a copy of the
/// sync-latency histogram) is made before the lock is taken, and the lock
/// is held only to swap a pointer, here and in the reader.
pub(super) fn publish<S: Storage>(slot: &MetricsSlot, log: &ShardLog<S>) {
    let m = Arc::new(log.metrics());
    let old = slot
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .replace(m);
    // The previous snapshot is freed outside the lock.
    drop(old);
}

/// Publish every [`PUBLISH_EVERY`] until cancelled.
async fn publish_periodically<S: Storage>(slot: MetricsSlot, log: ShardLog<S>) {
    loop {
        glommio::timer::sleep(PUBLISH_EVERY).await;
        publish(&slot, &log);
    }
}

pub(super) async fn run_core<S, R, RFut, T, F, Fut>(
    job: CoreJob,
    storage: S,
    replay: R,
    f: F,
) -> Result<()>
where
    S: Storage,
    R: FnOnce(Replay<S>) -> RFut,
    RFut: Future<Output = Result<T>> + 'static,
    T: 'static,
    F: FnOnce(Rc<ShardContext<S>>, T) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let core = job.core;
    let polled = job.replay.during_start;
    let own_from = job.shards.first().and_then(|&(_, from)| from);
    let feed = Feed::new(
        own_from.unwrap_or_default(),
        job.replay.buffer,
        job.replay.one_pass,
    );
    let progress = job.replay.progress.clone();
    // The engine's replay runs beside the start from here on; a panic in it
    // is the engine's, reported when the engine code would run.
    let replay_task = glommio::spawn_local(
        AssertUnwindSafe(replay(Replay::new(ReplayStart {
            feed: feed.clone(),
            progress: progress.clone(),
            storage: storage.clone(),
            log_dir: job.log_dir.clone(),
            shard: core,
            checkpoint: job.replay.checkpoint,
            snapshot: job.replay.snapshot.clone(),
        })))
        .catch_unwind(),
    );
    // If anything on this executor panics, the coordinator hears of it.
    let _notice = DeathNotice {
        acks: job.acks.clone(),
        done: job.done.clone(),
        shard: core,
    };
    let fail = |shard: ShardId, e: &Error| Error::ShardFailed {
        shard,
        what: "recovery".into(),
        cause: e.to_string(),
    };
    // Phase 1: lock and scan every shard, report what the plan needs. The
    // locks are held until each shard is cut (and, for the own shard, by
    // its writer until it closes).
    let mut locks = Vec::with_capacity(job.shards.len());
    for (k, &(s, from_seq)) in job.shards.iter().enumerate() {
        let sdir = crate::segment::shard_dir(&job.log_dir, s);
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
            Ok(()) => match crate::lock::lock_shard(&storage, &sdir).await {
                Ok(l) => {
                    locks.push(l);
                    // Every barrier seen is published for the one-pass
                    // replays; the own shard's records are copied for this
                    // core's.
                    let on_frame = |f: &crate::format::frame::Frame<'_>, _, _| {
                        if f.meta.kind == RecordKind::Barrier {
                            progress.saw_barrier(s, f.meta.epoch);
                        }
                        if k == 0 {
                            feed.borrow_mut().push(f, s);
                        }
                        true
                    };
                    let gate =
                        (k == 0 && job.replay.one_pass).then(|| scan_gate(&feed, &progress, s));
                    let r = shard::scan_gated(&storage, &sdir, exp, opts, on_frame, gate).await;
                    progress.scan_ended(s);
                    r
                }
                Err(e) => Err(e),
            },
        };
        let failed = scanned.as_ref().err().map(|e| fail(s, e));
        crate::reply::send_or_gone(&job.scanned, (s, scanned));
        if let Some(err) = failed {
            feed.borrow_mut().fail(err.to_string());
            return Err(err);
        }
        if k == 0 {
            feed.borrow_mut().scanned();
        }
    }
    drop(job.scanned);
    // Phase 2: cut every shard as planned; open the writer of the own
    // shard, leave the others (retired) cut and closed.
    let Some(Go::Cut(cuts)) = next_go(&job.go, polled).await else {
        feed.borrow_mut().fail("the start was abandoned".into());
        return Ok(());
    };
    if let Some(c) = cuts.first() {
        feed.borrow_mut().cut(c.report.next_seq);
    }
    let mut log = None;
    let cuts = cuts.into_iter().zip(&job.shards).zip(locks);
    for (k, ((cut, &(s, _)), lock)) in cuts.enumerate() {
        let r = if k == 0 {
            let cfg = job.cfg.clone();
            ShardLog::open_cut(storage.clone(), &job.log_dir, job.log_id, cfg, cut, lock)
                .await
                .map(|l| {
                    feed.borrow_mut().applied();
                    let r = l.recovery().clone();
                    // Before the runtime hears that the shard is ready, so
                    // its metrics are there once `Runtime::start` returns.
                    publish(&job.metrics, &l);
                    log = Some(l);
                    r
                })
        } else {
            let applied = shard::apply(&storage, cut).await;
            drop(lock);
            match applied {
                Ok(rec) => {
                    // A retired shard is cut, not written: its kept
                    // segment's file is only closed.
                    if let Some(r) = rec.resume {
                        crate::io::close_quietly(r.file, &r.path).await;
                    }
                    Ok(rec.report)
                }
                Err(e) => Err(e),
            }
        };
        match r {
            Ok(r) => {
                crate::reply::send_or_gone(&job.ready, (s, Ok(r)));
            }
            Err(e) => {
                let err = fail(s, &e);
                feed.borrow_mut().fail(err.to_string());
                crate::reply::send_or_gone(&job.ready, (s, Err(e)));
                if let Some(l) = log {
                    // The start fails with `err`; a second failure while
                    // closing the own shard's writer adds nothing to it.
                    if let Err(error) = l.close().await {
                        tracing::warn!(shard = s.0, %error, "closing a shard after a failed start");
                    }
                }
                return Err(err);
            }
        }
    }
    drop(job.ready);
    let Some(log) = log else {
        return Ok(());
    };
    let Some(Go::Run(plan)) = next_go(&job.go, polled).await else {
        feed.borrow_mut().fail("the start was abandoned".into());
        return log.close().await;
    };
    feed.borrow_mut().planned(&plan);
    if let Some(points) = &job.archive_points {
        // The log is cut just after the sealed barrier: its end is here.
        let (segment, end) = log.tail();
        points.publish(crate::archive::points::Point {
            epoch: plan.sealed,
            segment,
            end,
        });
    }
    let ctx = Rc::new(ShardContext {
        log: log.clone(),
        shard: core,
        shard_count: job.shard_count,
        rx: job.control,
        // Opened from the control channel's end at the first wait.
        bell: std::cell::RefCell::new(super::context::Bell::Closed),
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
        metrics: job.metrics.clone(),
        truncation: Default::default(),
        unanswered: std::cell::RefCell::new(Vec::with_capacity(4)),
        archive_points: job.archive_points.clone(),
    });
    let publisher =
        glommio::spawn_local(publish_periodically(job.metrics.clone(), log.clone())).detach();
    let auto_task = job
        .auto
        .then(|| glommio::spawn_local(auto_barriers(ctx.clone(), true)).detach());
    let engine = async {
        // The replay first (it may still be reading the log), then the
        // engine code with what the replay built.
        let t = match replay_task.await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(e),
            Err(panic) => std::panic::resume_unwind(panic),
        };
        f(ctx.clone(), t).await
    };
    let r = match AssertUnwindSafe(engine).catch_unwind().await {
        // An error that does not say which shard it is about gets the shard.
        Ok(Err(e))
            if !matches!(
                e,
                Error::ShardFailed { .. } | Error::ShardStuck { .. } | Error::Poisoned { .. }
            ) =>
        {
            Err(Error::ShardFailed {
                shard: core,
                what: "its engine code".into(),
                cause: e.to_string(),
            })
        }
        Ok(r) => r,
        Err(panic) => Err(Error::ShardFailed {
            shard: core,
            what: "its engine code".into(),
            cause: format!("panicked: {}", panic_message(&*panic)),
        }),
    };
    crate::reply::send_or_gone(&job.done, core);
    match (&r, auto_task) {
        // A failed engine's state is not trusted: every barrier from now on
        // fails, naming the shard, so no later epoch can seal.
        (Err(e), task) => {
            if let Some(t) = task {
                t.cancel();
            }
            // Those it was handed and did not answer first: their tickets
            // would otherwise wait for an answer that never comes.
            let cause = format!("the engine failed: {e}");
            ctx.fail_unanswered(&cause);
            fail_barriers(&ctx, &cause).await;
        }
        (Ok(()), Some(t)) => {
            t.await;
        }
        // Until shutdown, barriers are answered on the engine's behalf (an
        // engine that returned before the final epoch).
        (Ok(()), None) => {
            ctx.fail_unanswered("the engine code returned without answering this barrier");
            auto_barriers(ctx.clone(), false).await
        }
    }
    // A truncation still removing files finishes before the executor ends.
    let truncation = ctx.truncation.take();
    if let Some(t) = truncation {
        t.await;
    }
    drop(ctx);
    publisher.cancel();
    let closed = log.close().await;
    // glommio closes a file dropped without an explicit close at the
    // reactor's next turn (the segment files went with the log): give it
    // one before the executor ends, or their descriptors stay open.
    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    r.and(closed)
}

/// Tells the coordinator, if the executor unwinds from a panic, that this
/// shard will answer nothing more (so pending and later epochs fail
/// instead of waiting), and the runtime that its engine is done.
struct DeathNotice {
    acks: Sender<control::Ack>,
    done: Sender<ShardId>,
    shard: ShardId,
}

impl Drop for DeathNotice {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The receivers may be gone already (the runtime shut down):
            // then nobody is waiting for this notice.
            crate::reply::send_or_gone(
                &self.acks,
                control::Ack::Dead {
                    shard: self.shard,
                    cause: "its executor panicked".into(),
                },
            );
            crate::reply::send_or_gone(&self.done, self.shard);
        }
    }
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".into())
}

/// After the engine failed: fail every barrier with `cause` until the
/// runtime stops the shard.
async fn fail_barriers<S: Storage>(ctx: &Rc<ShardContext<S>>, cause: &str) {
    loop {
        if ctx.stop.get() {
            return;
        }
        while let Some(ev) = ctx.poll_control() {
            match ev {
                ControlEvent::Barrier(req) => {
                    ctx.answer_barrier(
                        req.epoch,
                        crate::control::Ack::Failed {
                            shard: ctx.shard,
                            epoch: req.epoch,
                            cause: cause.to_string(),
                        },
                    );
                }
                ControlEvent::Shutdown if ctx.stop.get() => return,
                ControlEvent::Shutdown => {}
            }
        }
        // Awaited, not polled: the coordinator's send rings the doorbell.
        if !ctx.until_event().await {
            return;
        }
    }
}

/// Answer barriers on the engine's behalf. With `checkpoints` false (the
/// engine code has returned and can no longer supply its state), checkpoint
/// requests fail instead of recording an empty snapshot.
async fn auto_barriers<S: Storage>(ctx: Rc<ShardContext<S>>, checkpoints: bool) {
    loop {
        if ctx.stop.get() {
            return;
        }
        while let Some(ev) = ctx.poll_control() {
            match ev {
                ControlEvent::Barrier(req) if req.checkpoint.is_some() && !checkpoints => {
                    ctx.answer_barrier(
                        req.epoch,
                        crate::control::Ack::Failed {
                            shard: ctx.shard,
                            epoch: req.epoch,
                            cause: "the engine code has returned; it cannot snapshot its state"
                                .into(),
                        },
                    );
                }
                ControlEvent::Barrier(req) => {
                    // A failure has already gone to the coordinator as an
                    // `Ack::Failed`, which fails the epoch; the shard is
                    // poisoned and the engine learns it at its next call.
                    if let Err(error) = ctx.complete_barrier(req, None).await {
                        tracing::warn!(shard = ctx.shard.0, epoch = req.epoch.0, %error, "barrier failed");
                    }
                }
                // The engine is told to return; keep answering barriers
                // until the runtime has sealed the final epoch.
                ControlEvent::Shutdown if ctx.stop.get() => return,
                ControlEvent::Shutdown => {}
            }
        }
        // Awaited, not polled: the coordinator's send rings the doorbell.
        if !ctx.until_event().await {
            return;
        }
    }
}
