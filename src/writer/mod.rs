//! The shard writer: one per pinned core, owning its directory, segment
//! files, sequence numbers and epoch.
//!
//! ```text
//!  append ──► current buffer ──(full / sync / roll)──► job queue ──► write task ──► DmaFile
//!                 ▲                                                        │
//!             free list ◄──────────────────── completed buffers ◄──────────┘
//!  sync / policy ──► sync task: wait for writes ≥ target ──► fdatasync ──► durable watermark
//! ```
//!
//! Architecture invariant: a segment is only ever written by its owning
//! shard's executor; the handle is `!Send` and every piece of state is in
//! `RefCell`s on that executor.

mod state;
mod tasks;
mod wait;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::Poll;

pub use state::WriterStats;
use state::{Params, Segment, State};
use wait::{Signal, WakeList};

use crate::config::{FsyncPolicy, ShardConfig};
use crate::error::{Error, Result};
use crate::format::BLOCK;
use crate::format::frame::RecordKind;
use crate::format::segment_header::{RECORDS_START, SegmentHeader};
use crate::ids::{Epoch, Lsn, Seq, ShardId};
use crate::io::{IoBuf, Storage};
use crate::metrics::{LatencySummary, RecoveryFigures, ShardMetrics};
use crate::reader::Record;
use crate::recovery::shard::{self, ScanOptions, ShardCut};
use crate::recovery::{Expect, ShardRecovery};
use crate::rng::SplitMix;

pub(crate) struct Inner<S: Storage> {
    storage: S,
    dir: PathBuf,
    shard: ShardId,
    cfg: ShardConfig,
    params: Params,
    st: RefCell<State<S>>,
    write_signal: Signal,
    sync_signal: Signal,
    prepare_signal: Signal,
    durable_waiters: WakeList,
    space_waiters: WakeList,
    /// The background tasks that do I/O (write, sync, prepare), awaited by
    /// `close` so that no I/O happens in the directory after it returns.
    io_tasks: RefCell<Vec<glommio::task::JoinHandle<()>>>,
    /// The shard's writer lock, held until close or the last handle drops.
    lock: RefCell<Option<S::Lock>>,
}

impl<S: Storage> Inner<S> {
    fn is_poisoned(&self) -> bool {
        self.st.borrow().poison.is_some()
    }

    fn poison(&self, cause: String) {
        {
            let mut st = self.st.borrow_mut();
            if st.poison.is_none() {
                tracing::error!(shard = self.shard.0, dir = %self.dir.display(), %cause, "shard poisoned: every later call fails");
                st.poison = Some(cause);
            }
        }
        self.wake_everyone();
    }

    fn wake_everyone(&self) {
        self.write_signal.notify();
        self.sync_signal.notify();
        self.prepare_signal.notify();
        self.durable_waiters.wake_all();
        self.space_waiters.wake_all();
    }

    /// Ask for every record below `upto` to become durable.
    fn request_sync(&self, upto: Seq) {
        let mut st = self.st.borrow_mut();
        if upto > st.sync_requested {
            st.sync_requested = upto;
            drop(st);
            self.sync_signal.notify();
        }
    }

    /// Put the records below `target` that still sit in the current buffer
    /// into a write job.
    fn submit_unsealed(&self, target: Seq) {
        let mut st = self.st.borrow_mut();
        if st.submitted_next < target && st.seal_partial(&self.storage) {
            drop(st);
            self.write_signal.notify();
        }
    }

    fn try_append(&self, kind: RecordKind, payload: &[u8]) -> Result<Lsn> {
        let mut st = self.st.borrow_mut();
        st.check_usable(self.shard)?;
        let rolls = st.stats.rolls;
        let jobs_before = st.jobs.len();
        let seq = st.append_frame(&self.params, &self.storage, kind, payload)?;
        let epoch = st.epoch;
        if kind == RecordKind::Barrier {
            st.epoch = st.epoch.next();
        }
        let rolled = st.stats.rolls != rolls;
        let queued = st.jobs.len() != jobs_before;
        drop(st);
        if queued {
            self.write_signal.notify();
        }
        if rolled {
            self.prepare_signal.notify();
        }
        let sync_now = match self.cfg.fsync {
            FsyncPolicy::EveryAppend => true,
            FsyncPolicy::PerEpoch => kind == RecordKind::Barrier,
            _ => false,
        };
        if sync_now {
            self.request_sync(seq.next());
        }
        Ok(Lsn {
            shard: self.shard,
            epoch,
            seq,
        })
    }

    async fn append(&self, kind: RecordKind, payload: &[u8]) -> Result<Lsn> {
        let mut payload = Some(payload);
        poll_fn(|cx| {
            let p = payload.take().unwrap_or_default();
            match self.try_append(kind, p) {
                Err(Error::Backpressure) => {
                    payload = Some(p);
                    self.space_waiters.register(cx.waker());
                    // Make progress possible: push out what is buffered.
                    self.write_signal.notify();
                    self.prepare_signal.notify();
                    Poll::Pending
                }
                other => Poll::Ready(other),
            }
        })
        .await
    }

    /// Wait until every record below `upto` is durable.
    async fn wait_durable_below(&self, upto: Seq) -> Result<()> {
        poll_fn(|cx| {
            let st = self.st.borrow();
            if st.durable_next >= upto {
                return Poll::Ready(Ok(()));
            }
            if let Err(e) = st.check_usable(self.shard) {
                return Poll::Ready(Err(e));
            }
            self.durable_waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }
}

/// Handle to one shard's log. Cheap to clone; every clone is the same writer.
/// `!Send`: it lives on the shard's executor.
pub struct ShardLog<S: Storage> {
    h: Rc<Handle<S>>,
}

impl<S: Storage> Clone for ShardLog<S> {
    fn clone(&self) -> Self {
        ShardLog { h: self.h.clone() }
    }
}

struct Handle<S: Storage> {
    inner: Rc<Inner<S>>,
    recovery: ShardRecovery,
}

impl<S: Storage> Drop for Handle<S> {
    /// Dropping the last handle without `close` stops the background tasks.
    /// Records not yet durable may be lost, as in a crash; durable ones never are.
    fn drop(&mut self) {
        self.inner.st.borrow_mut().closed = true;
        self.inner.wake_everyone();
        self.inner.lock.borrow_mut().take();
    }
}

/// A range of records appended by one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLsns {
    /// The first record of the batch.
    pub first: Lsn,
    /// The last record of the batch.
    pub last: Lsn,
}

impl<S: Storage> ShardLog<S> {
    /// Open (recovering if needed) shard `shard` of the log at `log_dir`,
    /// creating the directory and log id if the log is new. Must run on a
    /// glommio executor: it spawns the shard's background tasks.
    pub async fn open(
        storage: S,
        log_dir: &Path,
        shard: ShardId,
        cfg: ShardConfig,
    ) -> Result<Self> {
        let log_id = crate::log_dir::load_or_init(&storage, log_dir).await?;
        Self::open_with_log_id(storage, log_dir, shard, log_id, cfg).await
    }

    /// As [`ShardLog::open`], for a caller that has already read the log id.
    pub async fn open_with_log_id(
        storage: S,
        log_dir: &Path,
        shard: ShardId,
        log_id: [u8; 16],
        cfg: ShardConfig,
    ) -> Result<Self> {
        Self::open_scanning(storage, log_dir, shard, log_id, cfg, |_| Ok(())).await
    }

    /// As [`ShardLog::open`], handing every record of the recovered log to
    /// `on_record`, in log order, while recovery reads it: one pass over
    /// the device instead of an open and then a [`crate::ShardReader`] pass
    /// over the same bytes.
    ///
    /// Only records that the log keeps are handed over: the scan stops at a
    /// torn tail before reaching it, so nothing cut is ever seen. If the
    /// open fails (corruption found further on, an I/O error, or an error
    /// returned by `on_record`, which stops the scan), the records already
    /// seen belong to a log that did not open, and the caller should discard
    /// what it built from them. The payload is borrowed from the read
    /// buffer for the duration of the call.
    pub async fn open_replaying(
        storage: S,
        log_dir: &Path,
        shard: ShardId,
        cfg: ShardConfig,
        on_record: impl FnMut(Record<'_>) -> Result<()>,
    ) -> Result<Self> {
        let log_id = crate::log_dir::load_or_init(&storage, log_dir).await?;
        Self::open_scanning(storage, log_dir, shard, log_id, cfg, on_record).await
    }

    async fn open_scanning(
        storage: S,
        log_dir: &Path,
        shard: ShardId,
        log_id: [u8; 16],
        cfg: ShardConfig,
        mut on_record: impl FnMut(Record<'_>) -> Result<()>,
    ) -> Result<Self> {
        cfg.validate()?;
        let dir = crate::segment::shard_dir(log_dir, shard);
        storage
            .create_dir_all(&dir)
            .await
            .map_err(|e| Error::io("create directory", &dir, e))?;
        let lock = crate::lock::lock_shard(&storage, &dir).await?;
        let exp = Expect {
            log_id,
            shard,
            max_payload: crate::format::MAX_RECORD_HARD,
        };
        let opts = ScanOptions {
            from_seq: None,
            repair: cfg.repair,
        };
        let mut failed = None;
        let scanned = shard::scan(&storage, &dir, exp, opts, |f, _, _| {
            let rec = Record {
                lsn: Lsn {
                    shard,
                    epoch: f.meta.epoch,
                    seq: f.meta.seq,
                },
                kind: f.meta.kind,
                payload: f.payload,
            };
            match on_record(rec) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })
        .await?;
        if let Some(e) = failed {
            return Err(e);
        }
        let cut = shard::decide(scanned, None, None);
        Self::open_cut(storage, log_dir, log_id, cfg, cut, lock).await
    }

    /// Open a shard whose recovery has been decided: carry out `cut`, then
    /// resume writing where it ends. `lock` is the shard's writer lock
    /// ([`crate::lock::lock_shard`]), held since before the scan.
    pub(crate) async fn open_cut(
        storage: S,
        log_dir: &Path,
        log_id: [u8; 16],
        cfg: ShardConfig,
        cut: ShardCut,
        lock: S::Lock,
    ) -> Result<Self> {
        cfg.validate()?;
        let shard = cut.report.shard;
        let dir = crate::segment::shard_dir(log_dir, shard);
        let rec = shard::apply(&storage, cut).await?;
        let report = rec.report.clone();
        let params = Params {
            log_id,
            shard,
            segment_size: cfg.segment_size,
            buffer_size: cfg.buffer_size,
            max_record: cfg.max_record_size,
        };
        let mut rng = SplitMix(crate::format::log_id::random_u64());
        let mut buf = storage.alloc_buf(cfg.buffer_size);
        let next_seq = report.next_seq;
        let mut segments: VecDeque<(u64, Seq, Rc<Path>)> = rec
            .kept
            .iter()
            .map(|(i, f, p)| (*i, *f, Rc::from(p.as_path())))
            .collect();
        let (seg, buf_pos, buf_len) = match rec.resume {
            Some(r) if r.header.segment_size == cfg.segment_size => {
                let start = crate::format::align_down(r.valid_end as usize, BLOCK);
                buf.as_mut_slice()[..r.tail.len()].copy_from_slice(&r.tail);
                let seg = Segment {
                    file: Rc::new(r.file),
                    path: Rc::from(r.path.as_path()),
                    index: r.index,
                    seed: r.header.seed(),
                };
                (seg, start as u64, r.tail.len())
            }
            other => {
                // A new log, or a segment size change: start a fresh segment.
                let index = match rec.max_index {
                    None => 0,
                    Some(i) => i.checked_add(1).ok_or(Error::Exhausted {
                        shard,
                        what: "segment indexes",
                    })?,
                };
                drop(other);
                let prepared = tasks::prepare_segment_with(&storage, &dir, &cfg, index, None)
                    .await
                    .map_err(|e| Error::io("prepare segment", &dir, std::io::Error::other(e)))?
                    .expect("preparation without a stop condition completes");
                let header = SegmentHeader {
                    log_id,
                    shard,
                    index,
                    first_seq: next_seq,
                    first_epoch: report.epoch,
                    nonce: rng.next_u64(),
                    segment_size: cfg.segment_size,
                    zeroed: prepared.zeroed,
                    sized: prepared.zeroed,
                };
                header.encode_into(buf.as_mut_slice());
                segments.push_back((index, next_seq, prepared.path.clone()));
                let seg = Segment {
                    file: prepared.file,
                    path: prepared.path,
                    index,
                    seed: header.seed(),
                };
                (seg, 0, RECORDS_START)
            }
        };
        let free = (0..cfg.write_behind)
            .map(|_| storage.alloc_buf(cfg.buffer_size))
            .collect();
        let st = State {
            poison: None,
            closed: false,
            next_seq,
            epoch: report.epoch,
            durable_next: next_seq,
            sync_requested: next_seq,
            submitted_next: next_seq,
            written_next: next_seq,
            seg,
            buf: Some(buf),
            buf_pos,
            buf_len,
            tail_partial: false,
            free,
            jobs: VecDeque::with_capacity(cfg.write_behind * 4 + 8),
            next_segment: None,
            next_wanted: false,
            segments,
            last_written_file: None,
            rng,
            stats: WriterStats::default(),
            sync_latency: crate::metrics::latency_histogram(),
        };
        let inner = Rc::new(Inner {
            storage,
            dir,
            shard,
            params,
            st: RefCell::new(st),
            write_signal: Signal::default(),
            sync_signal: Signal::default(),
            prepare_signal: Signal::default(),
            durable_waiters: WakeList::with_capacity(256),
            space_waiters: WakeList::with_capacity(256),
            io_tasks: RefCell::new(Vec::with_capacity(3)),
            lock: RefCell::new(Some(lock)),
            cfg,
        });
        *inner.io_tasks.borrow_mut() = vec![
            glommio::spawn_local(tasks::write_task(inner.clone())).detach(),
            glommio::spawn_local(tasks::sync_task(inner.clone())).detach(),
            glommio::spawn_local(tasks::prepare_task(inner.clone())).detach(),
        ];
        if let FsyncPolicy::Interval(d) = inner.cfg.fsync {
            glommio::spawn_local(tasks::interval_task(inner.clone(), d)).detach();
        }
        Ok(ShardLog {
            h: Rc::new(Handle {
                inner,
                recovery: report,
            }),
        })
    }

    fn inner(&self) -> &Inner<S> {
        &self.h.inner
    }

    /// What recovery found when this shard was opened.
    pub fn recovery(&self) -> &ShardRecovery {
        &self.h.recovery
    }

    /// The shard's id.
    pub fn shard(&self) -> ShardId {
        self.inner().shard
    }

    /// Append a data record without waiting. Returns its LSN at once; the
    /// record is buffered, durable later (see [`ShardLog::wait_durable`]).
    /// Returns [`Error::Backpressure`] when every buffer is in flight; use
    /// [`ShardLog::append`] to wait instead.
    ///
    /// No allocation, no lock, no syscall.
    #[inline]
    pub fn try_append(&self, payload: &[u8]) -> Result<Lsn> {
        self.inner().try_append(RecordKind::Data, payload)
    }

    /// Append a data record, waiting only if the write-behind buffers are
    /// full. Returns the LSN; durability is separate.
    pub async fn append(&self, payload: &[u8]) -> Result<Lsn> {
        self.inner().append(RecordKind::Data, payload).await
    }

    /// Append a record of a given kind (commit records, checkpoint markers).
    pub async fn append_kind(&self, kind: RecordKind, payload: &[u8]) -> Result<Lsn> {
        if kind == RecordKind::Barrier || kind == RecordKind::Close {
            return Err(Error::Config(
                "barrier and close records are written by barrier() and close()".into(),
            ));
        }
        self.inner().append(kind, payload).await
    }

    /// Append every payload of `batch` in order.
    pub async fn append_batch(&self, batch: &[&[u8]]) -> Result<Option<BatchLsns>> {
        let mut first = None;
        let mut last = None;
        for p in batch {
            let lsn = self.append(p).await?;
            first.get_or_insert(lsn);
            last = Some(lsn);
        }
        Ok(first
            .zip(last)
            .map(|(first, last)| BatchLsns { first, last }))
    }

    /// End the current epoch: append `barrier(e)` and move to epoch `e+1`.
    /// Under `FsyncPolicy::PerEpoch` this also starts a sync; await
    /// [`ShardLog::wait_durable`] on the returned LSN for the barrier to be durable.
    pub async fn barrier(&self) -> Result<Lsn> {
        self.inner().append(RecordKind::Barrier, &[]).await
    }

    /// Wait until the record at `lsn` is durable. Under `EveryAppend`,
    /// `Interval` and (for barriers) `PerEpoch` a sync is already on its way;
    /// otherwise call [`ShardLog::sync`].
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.inner().wait_durable_below(lsn.seq.next()).await
    }

    /// Make every record appended so far durable. Returns the durable watermark.
    pub async fn sync(&self) -> Result<Seq> {
        let inner = self.inner();
        let target = {
            let st = inner.st.borrow();
            st.check_usable(inner.shard)?;
            st.next_seq
        };
        if target == Seq(0) {
            return Ok(target);
        }
        inner.request_sync(target);
        inner.wait_durable_below(target).await?;
        Ok(target)
    }

    /// Every record with a sequence number below this is durable.
    pub fn durable_next(&self) -> Seq {
        self.inner().st.borrow().durable_next
    }

    /// True if the record at `lsn` is durable.
    pub fn is_durable(&self, lsn: Lsn) -> bool {
        lsn.seq < self.inner().st.borrow().durable_next
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> Seq {
        self.inner().st.borrow().next_seq
    }

    /// The current epoch (that of the next record).
    pub fn epoch(&self) -> Epoch {
        self.inner().st.borrow().epoch
    }

    /// Where the next record will be framed: (segment index, byte offset
    /// in it). Right after an append returns, the end of that record.
    pub(crate) fn tail(&self) -> (u64, u64) {
        let st = self.inner().st.borrow();
        (st.seg.index, st.buf_pos + st.buf_len as u64)
    }

    /// Counters since open.
    pub fn stats(&self) -> WriterStats {
        self.inner().st.borrow().stats
    }

    /// The shard's metrics: the counters of [`ShardLog::stats`], its
    /// position, the latency of its fdatasyncs and what recovery found when
    /// it opened. Current as of the call. Copies the sync-latency histogram
    /// (tens of KiB): call it per scrape, not per record.
    pub fn metrics(&self) -> ShardMetrics {
        let st = self.inner().st.borrow();
        ShardMetrics {
            shard: self.inner().shard,
            counters: st.stats,
            next_seq: st.next_seq,
            durable_next: st.durable_next,
            epoch: st.epoch,
            poisoned: st.poison.is_some(),
            sync_latency: LatencySummary::from_histogram(st.sync_latency.clone()),
            recovery: RecoveryFigures::of_shard(&self.h.recovery),
        }
    }

    /// The shard's directory.
    pub fn dir(&self) -> &Path {
        &self.inner().dir
    }

    /// The storage backend.
    pub fn storage(&self) -> &S {
        &self.inner().storage
    }

    /// The configuration.
    pub fn config(&self) -> &ShardConfig {
        &self.inner().cfg
    }

    /// Live segments as (index, first seq), oldest first.
    pub fn segments(&self) -> Vec<(u64, Seq)> {
        self.inner()
            .st
            .borrow()
            .segments
            .iter()
            .map(|(i, f, _)| (*i, *f))
            .collect()
    }

    /// Remove the segment files that lie wholly before `seq` (every record
    /// in them has a smaller sequence number). The current segment is never
    /// removed. Returns how many files were removed.
    pub async fn truncate_before(&self, seq: Seq) -> Result<usize> {
        let inner = self.inner();
        let doomed: Vec<Rc<Path>> = {
            let mut st = inner.st.borrow_mut();
            st.check_usable(inner.shard)?;
            let mut v = Vec::new();
            while st.segments.len() >= 2 && st.segments[1].1 <= seq {
                if let Some((_, _, p)) = st.segments.pop_front() {
                    v.push(p);
                }
            }
            v
        };
        for p in &doomed {
            inner
                .storage
                .remove(p)
                .await
                .map_err(|e| Error::io("remove segment", p.to_path_buf(), e))?;
        }
        if !doomed.is_empty() {
            inner
                .storage
                .sync_dir(&inner.dir)
                .await
                .map_err(|e| Error::io("directory fsync", &inner.dir, e))?;
            tracing::info!(
                shard = inner.shard.0,
                below_seq = seq.0,
                segments = doomed.len(),
                "truncated the log"
            );
        }
        Ok(doomed.len())
    }

    /// Wait, if a sync is under way, until it has made its records durable
    /// (or failed): background I/O of the same shard (a checkpoint's
    /// snapshot) calls this before queueing more writes, so that a commit's
    /// fdatasync never waits behind more than what is already in flight.
    pub(crate) async fn yield_to_sync(&self) {
        let inner = self.inner();
        let pending = {
            let st = inner.st.borrow();
            (st.sync_requested > st.durable_next && st.poison.is_none() && !st.closed)
                .then_some(st.sync_requested)
        };
        if let Some(upto) = pending {
            // A failure is the log's to report, on its own calls.
            let _ = inner.wait_durable_below(upto).await;
        }
    }

    /// Poison the shard (fail-stop) because of a failure outside the log
    /// itself that the log's durability depends on, e.g. a snapshot's
    /// fdatasync at a checkpoint. Every later call returns `Error::Poisoned`.
    pub(crate) fn poison(&self, cause: String) {
        self.inner().poison(cause);
    }

    /// `Some(cause)` if the shard is poisoned.
    pub fn poisoned(&self) -> Option<String> {
        self.inner().st.borrow().poison.clone()
    }

    /// Flush, sync and close: every record appended before is durable when
    /// this returns `Ok`. A clean close writes a `close` record that vouches
    /// for the whole log, so later damage anywhere in it is reported as
    /// corruption rather than mistaken for a torn tail.
    ///
    /// The segment files are closed when the last handle to the log is
    /// dropped; glommio closes a dropped file at its reactor's next turn,
    /// so an executor that ends right after this should give it one (a
    /// short `glommio::timer::sleep`), as the runtime's cores do, or the
    /// descriptors stay open.
    pub async fn close(self) -> Result<()> {
        let inner = self.inner();
        let flushed = async {
            self.sync().await?;
            if inner.st.borrow().stats.records > 0 {
                inner.append(RecordKind::Close, &[]).await?;
                self.sync().await?;
            }
            Ok::<(), Error>(())
        }
        .await;
        inner.st.borrow_mut().closed = true;
        inner.wake_everyone();
        // Quiesce: the background tasks see `closed` and return (the
        // preparation of a next segment stops between zero-fill chunks).
        let tasks = std::mem::take(&mut *inner.io_tasks.borrow_mut());
        for t in tasks {
            t.await;
        }
        inner.lock.borrow_mut().take();
        flushed?;
        let st = inner.st.borrow();
        st.check_usable_after_close(inner.shard)
    }
}

impl<S: Storage> State<S> {
    fn check_usable_after_close(&self, shard: ShardId) -> Result<()> {
        match &self.poison {
            Some(cause) => Err(Error::Poisoned {
                shard,
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }
}
