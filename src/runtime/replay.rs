//! The one-pass replay of [`super::Runtime::start_replaying`]: the engine
//! replays its shard's records *while* recovery scans the log, from the
//! bytes the scan has just read, instead of reading the log a second time
//! once the start is over.
//!
//! A record may be replayed only if it survives the consistent cut: the
//! first barrier at or after it on its shard must be of an epoch at or
//! below the recovered sealed epoch. The sealed epoch is known only when
//! every shard's scan has ended, but a lower bound is known earlier: the
//! sealed-epoch rule ([`plan::sealed_epoch`]) applied to the last barrier
//! each shard's scan has seen *so far* ([`Progress`], published by every
//! core as it scans). The rule is monotone in each shard's last barrier and
//! the scans only move forward, so the bound only grows and never exceeds
//! the final sealed epoch: whatever it releases is in the final cut.
//!
//! The scan copies the frames it checks (from the replay position on) into
//! [`Feed`] blocks of [`BLOCK_BYTES`]; [`Replay::next`] takes the blocks in
//! order and hands out each record once its release epoch (the epoch of the
//! barrier after it) is at most the bound, or, once this shard's cut is
//! decided, if it lies before the cut. Memory is bounded by
//! `RuntimeConfig::replay_buffer`: when the engine falls that far behind
//! (or an epoch holds more than that), the scan stops copying. It starts
//! again at the first barrier it meets once the buffer is half empty: the
//! records it skipped, up to and including that barrier, are a [`Gap`],
//! read again from the log (in 1 MiB reads) as soon as that barrier is
//! released (the only bytes read twice). A gap still open when the scan
//! ends is read once the shard has been cut. Records of epochs that are
//! cut are never handed out: they are either never released (their barrier
//! is missing, or above the final sealed epoch) or at or past the cut.
//!
//! Where one pass cannot be used (a core that replays retired shards too,
//! which must be merged in (epoch, shard, seq) order; repair mode, which
//! may cut a log below what its scan reported so far), the replay waits for
//! the plan and reads the log once the start has cut it, as
//! [`super::ShardContext::replay`] does.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::checkpoint::payloads::SnapshotRef;
use crate::checkpoint::snapshot;
use crate::error::{Error, Result};
use crate::format::frame::{Frame, RecordKind};
use crate::format::{FRAME_ALIGN, align_up};
use crate::ids::{CheckpointId, Epoch, Lsn, Seq, ShardId};
use crate::io::{AlignedBuf, Storage};
use crate::layout::Layout;
use crate::merged::MergedReader;
use crate::reader::{Record, ShardReader};
use crate::recovery::plan::{self, ReplayPlan};

/// Bytes per block of copied records.
pub(super) const BLOCK_BYTES: usize = 1 << 20;

/// The most record bytes one chunk of the scan can add (its read size).
const CHUNK_ROOM: usize = crate::io::read_ahead::CHUNK;

/// Bytes per read of a gap's reader: it runs beside the scan, so it reads
/// in small pieces rather than holding another read-ahead's 27 MiB.
const GAP_READ: usize = 1 << 20;

/// The longest a scan waits in one go for the replay or the other shards
/// before it stops copying instead (a guard: the pause rule does not
/// deadlock, see [`Progress::may_rise_without`]).
pub(super) const MAX_SCAN_WAIT: Duration = Duration::from_secs(2);

/// How often a replay that waits for other shards' scans looks again (their
/// progress is published by other threads, which do not wake this one).
const PROGRESS_POLL: Duration = Duration::from_micros(200);

/// Every shard's scan progress: the highest barrier epoch its scan has
/// seen, shared by all cores of one start.
#[derive(Clone)]
pub(crate) struct Progress {
    last_barrier: Arc<[AtomicU64]>,
    /// Per shard, its scan has ended (its last barrier is final).
    done: Arc<[AtomicBool]>,
    layout: Arc<Layout>,
    floor: Epoch,
}

impl Progress {
    /// Progress over the shards `0..shards` of a start whose layout before
    /// it is `layout` and whose checkpoint proves `floor` sealed.
    pub(crate) fn new(shards: usize, layout: Layout, floor: Epoch) -> Progress {
        let n = shards.max(layout.active() as usize);
        Progress {
            last_barrier: (0..n).map(|_| AtomicU64::new(0)).collect(),
            done: (0..n).map(|_| AtomicBool::new(false)).collect(),
            layout: Arc::new(layout),
            floor,
        }
    }

    /// `shard`'s scan has ended (or failed).
    pub(crate) fn scan_ended(&self, shard: ShardId) {
        if let Some(d) = self.done.get(shard.0 as usize) {
            d.store(true, Ordering::Release);
        }
    }

    /// True if the sealed bound can still rise without `shard`'s scan
    /// moving: `shard` is not among the shards that hold it down, and
    /// none of those has finished scanning. A scan that pauses only then
    /// never waits on itself, so the pauses cannot deadlock: the shards
    /// that hold the bound down never pause for it.
    fn may_rise_without(&self, shard: ShardId) -> bool {
        let value = |s: u32| {
            let b = self
                .last_barrier
                .get(s as usize)
                .map_or(0, |a| a.load(Ordering::Acquire));
            b.max(self.layout.joined.get(s as usize).copied().unwrap_or(0))
        };
        let active = self.layout.active();
        let Some(low) = (0..active).map(value).min() else {
            return false;
        };
        let ended = |s: u32| {
            self.done
                .get(s as usize)
                .is_none_or(|d| d.load(Ordering::Acquire))
        };
        (shard.0 >= active || value(shard.0) > low)
            && (0..active).all(|s| value(s) > low || !ended(s))
    }

    /// `shard`'s scan has seen `barrier(epoch)`.
    pub(crate) fn saw_barrier(&self, shard: ShardId, epoch: Epoch) {
        if let Some(a) = self.last_barrier.get(shard.0 as usize) {
            a.fetch_max(epoch.0, Ordering::Release);
        }
    }

    /// A lower bound of the sealed epoch the start will recover.
    fn sealed_bound(&self) -> Epoch {
        plan::sealed_epoch(&self.layout, self.floor, |s| {
            self.last_barrier
                .get(s.0 as usize)
                .map(|a| Epoch(a.load(Ordering::Acquire)))
        })
    }
}

/// Records the scan checked but did not copy (the buffer was full): from
/// `from` to the barrier `to` (both included), whose epoch `release` is
/// the highest release epoch of any record in it. Its bytes lie before the
/// scan's position, so they are final once released: the cut only removes
/// records of epochs above the sealed epoch.
#[derive(Debug, Clone, Copy)]
struct Gap {
    from: Seq,
    to: Seq,
    release: Epoch,
}

/// One copied record.
struct Entry {
    lsn: Lsn,
    kind: RecordKind,
    at: usize,
    len: usize,
}

/// A block of copied records, in seq order.
struct Block {
    buf: AlignedBuf,
    used: usize,
    entries: Vec<Entry>,
    /// How many `BLOCK_BYTES` it counts for against the limit.
    weight: usize,
}

/// What the start has told the replay so far.
#[derive(Default)]
enum Stage {
    /// The shard is being scanned.
    #[default]
    Scanning,
    /// The scan is over; the cut is not decided yet.
    Scanned,
    /// The shard's cut is decided: records before `until` are replayed.
    Cut { until: Seq },
    /// The shard is cut on disk (what is left of the log can be read).
    Applied { until: Seq },
    /// The start failed.
    Failed(String),
}

/// The records the scan copied for the replay, shared (on one core)
/// between the scan, which fills it, and [`Replay`], which drains it.
pub(super) struct Feed {
    /// Records before this seq are not replayed (the checkpoint's replay
    /// position).
    from: Seq,
    filling: Option<Block>,
    full: VecDeque<Block>,
    free: Vec<Block>,
    /// Block weight in use (filling, full and the one being replayed).
    in_use: usize,
    max_blocks: usize,
    /// Copying stopped here (the limit was reached): this record and the
    /// ones after it, up to the barrier where copying starts again (a
    /// [`Gap`]) or to the cut, are read from the log again.
    overflow: Option<Seq>,
    /// Closed gaps not yet read, in log order (at most a few: a gap closes
    /// only once the blocks before it are half handed out).
    gaps: VecDeque<Gap>,
    /// Barriers seen from the replay position on, (seq, epoch); popped as
    /// the replay passes them.
    marks: VecDeque<(Seq, Epoch)>,
    stage: Stage,
    /// The plan, for a replay that does not use one pass.
    plan: Option<ReplayPlan>,
    waker: Option<Waker>,
    /// False: copy nothing (the replay reads the log after the start).
    one_pass: bool,
    /// What the replay is doing.
    replay: ReplayState,
}

/// What the replay side of a [`Feed`] is doing, for the scan's pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplayState {
    /// Handing out records (the engine may be slower than the scan).
    Busy,
    /// Caught up with what is released: waiting for the sealed bound.
    WaitsForBound,
    /// Waiting for the scan (a block to be filled, or the cut).
    WaitsForScan,
    /// The [`Replay`] was dropped: nothing more is copied.
    Gone,
}

impl Feed {
    /// A feed replaying from `from`, holding at most `limit` bytes of
    /// copied records; with `one_pass` false it copies nothing.
    pub(super) fn new(from: Seq, limit: usize, one_pass: bool) -> Rc<RefCell<Feed>> {
        Rc::new(RefCell::new(Feed {
            from,
            filling: None,
            full: VecDeque::new(),
            free: Vec::new(),
            in_use: 0,
            max_blocks: (limit / BLOCK_BYTES).max(2),
            overflow: None,
            gaps: VecDeque::new(),
            marks: VecDeque::new(),
            stage: Stage::Scanning,
            plan: None,
            waker: None,
            one_pass,
            replay: ReplayState::Busy,
        }))
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// A frame the scan found valid, in log order.
    pub(super) fn push(&mut self, f: &Frame<'_>, shard: ShardId) {
        if !self.one_pass || f.meta.seq < self.from || self.replay == ReplayState::Gone {
            return;
        }
        if f.meta.kind == RecordKind::Barrier {
            // After an overflow only the first barrier past it matters: it
            // releases the last records copied.
            let needed = match (self.overflow, self.marks.back()) {
                (Some(o), Some(&(s, _))) => s < o,
                _ => true,
            };
            if needed {
                self.marks.push_back((f.meta.seq, f.meta.epoch));
                self.wake();
            }
            // Copying starts again after this barrier once half the blocks
            // are free (not sooner, or each gap would be a few records).
            if let Some(o) = self.overflow
                && self.in_use * 2 <= self.max_blocks
            {
                self.gaps.push_back(Gap {
                    from: o,
                    to: f.meta.seq,
                    release: f.meta.epoch,
                });
                self.overflow = None;
                self.wake();
                return;
            }
        }
        if self.overflow.is_some() {
            return;
        }
        let len = f.payload.len();
        let need = align_up(len, FRAME_ALIGN);
        let fits = self
            .filling
            .as_ref()
            .is_some_and(|b| b.used + need <= b.buf.len());
        if !fits {
            if let Some(b) = self.filling.take() {
                self.full.push_back(b);
                self.wake();
            }
            let weight = need.div_ceil(BLOCK_BYTES).max(1);
            if self.in_use + weight > self.max_blocks {
                self.overflow = Some(f.meta.seq);
                self.wake();
                return;
            }
            self.in_use += weight;
            let block = match self.free.pop() {
                Some(b) if weight == 1 => b,
                _ => Block {
                    buf: AlignedBuf::zeroed(weight * BLOCK_BYTES),
                    used: 0,
                    entries: Vec::new(),
                    weight,
                },
            };
            self.filling = Some(block);
        }
        let b = self.filling.as_mut().expect("a block to fill");
        b.buf[b.used..b.used + len].copy_from_slice(f.payload);
        b.entries.push(Entry {
            lsn: Lsn {
                shard,
                epoch: f.meta.epoch,
                seq: f.meta.seq,
            },
            kind: f.meta.kind,
            at: b.used,
            len,
        });
        b.used += need;
    }

    /// The scan has ended (successfully: a failure is [`Feed::fail`]).
    pub(super) fn scanned(&mut self) {
        if let Some(b) = self.filling.take() {
            self.full.push_back(b);
        }
        if matches!(self.stage, Stage::Scanning) {
            self.stage = Stage::Scanned;
        }
        self.wake();
    }

    /// The shard's cut is decided: the log keeps the records before `until`.
    pub(super) fn cut(&mut self, until: Seq) {
        if !matches!(self.stage, Stage::Failed(_)) {
            self.stage = Stage::Cut { until };
        }
        self.wake();
    }

    /// The cut is carried out on disk.
    pub(super) fn applied(&mut self) {
        if let Stage::Cut { until } = self.stage {
            self.stage = Stage::Applied { until };
        }
        self.wake();
    }

    /// The start's plan for this core.
    pub(super) fn planned(&mut self, plan: &ReplayPlan) {
        self.plan = Some(plan.clone());
        self.wake();
    }

    /// The start failed: the replay ends with an error saying `why`.
    pub(super) fn fail(&mut self, why: String) {
        self.stage = Stage::Failed(why);
        self.wake();
    }

    fn recycle(&mut self, mut b: Block) {
        self.in_use -= b.weight;
        // Blocks are kept for reuse (at most `max_blocks` exist): freeing
        // and allocating them again would fault in and zero their pages
        // each time.
        if b.weight == 1 {
            b.used = 0;
            b.entries.clear();
            self.free.push(b);
        }
    }

    /// Whether the scan feeding this should wait before checking its next
    /// chunk (up to [`CHUNK_ROOM`] more bytes of records): the blocks are
    /// nearly all in use, and waiting helps, because the replay is still
    /// handing out records, or the sealed bound can rise without this
    /// shard's scan. Otherwise the scan goes on and, once the blocks are
    /// all in use, stops copying (the rest is read again after the cut).
    pub(super) fn scan_should_wait(&self, progress: &Progress, shard: ShardId) -> bool {
        if !self.one_pass || self.overflow.is_some() || !matches!(self.stage, Stage::Scanning) {
            return false;
        }
        let room = CHUNK_ROOM.div_ceil(BLOCK_BYTES);
        if self.in_use + room < self.max_blocks {
            return false;
        }
        match self.replay {
            ReplayState::Busy => true,
            ReplayState::WaitsForBound => progress.may_rise_without(shard),
            ReplayState::WaitsForScan | ReplayState::Gone => false,
        }
    }
}

/// Where [`Replay::next`] reads from.
enum Source<S: Storage> {
    /// Records copied by the scan.
    Copied,
    /// The log, read after the start cut it.
    Log(MergedReader<S>),
    /// A [`Gap`] read from the log, up to its record `last`.
    Gap {
        reader: Box<ShardReader<S>>,
        last: Seq,
    },
    /// Nothing left.
    Done,
}

/// What one look at the feed found.
enum Step {
    Deliver,
    Wait {
        progress: bool,
    },
    ReadLog(Vec<(ShardId, Seq, Seq)>),
    /// Read the records `[from, end)` of this shard from the log, then go
    /// back to the copied ones.
    ReadGap {
        from: Seq,
        end: Seq,
    },
    End,
}

/// Where a [`Replay`]'s records came from, so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Records handed out from the bytes the recovery scan read.
    pub from_scan: u64,
    /// Of those, records handed out before this shard's cut was decided
    /// (released by the other shards' scan progress).
    pub before_cut: u64,
    /// Records read from the log again after the start cut it (an
    /// overflow of the replay buffer, or a replay that is not one pass).
    pub from_log: u64,
}

/// The replay of one core's records during [`super::Runtime::start_replaying`]:
/// its snapshots from the checkpoint, then its records from the replay
/// position up to (and including) the barrier of the sealed epoch, as the
/// recovery scan reads them. The same records, in the same order, as
/// [`super::ShardContext::replay`] gives after a start.
pub struct Replay<S: Storage> {
    feed: Rc<RefCell<Feed>>,
    progress: Progress,
    storage: S,
    log_dir: PathBuf,
    shard: ShardId,
    checkpoint: Option<CheckpointId>,
    snapshot: Option<SnapshotRef>,
    cur: Option<Block>,
    idx: usize,
    source: Source<S>,
    one_pass: bool,
    counts: ReplayCounts,
    /// The sealed bound last computed (recomputed only when a record's
    /// release epoch is above it).
    bound: Epoch,
    /// The gap being read has handed out its last record: the next call
    /// goes back to the copied records.
    gap_done: bool,
}

/// What a core needs to build its [`Replay`].
pub(super) struct ReplayStart<S> {
    pub feed: Rc<RefCell<Feed>>,
    pub progress: Progress,
    pub storage: S,
    pub log_dir: PathBuf,
    pub shard: ShardId,
    pub checkpoint: Option<CheckpointId>,
    pub snapshot: Option<SnapshotRef>,
}

impl<S: Storage> Replay<S> {
    pub(super) fn new(start: ReplayStart<S>) -> Replay<S> {
        let one_pass = start.feed.borrow().one_pass;
        Replay {
            feed: start.feed,
            progress: start.progress,
            storage: start.storage,
            log_dir: start.log_dir,
            shard: start.shard,
            checkpoint: start.checkpoint,
            snapshot: start.snapshot,
            cur: None,
            idx: 0,
            source: Source::Copied,
            one_pass,
            counts: ReplayCounts::default(),
            bound: Epoch(0),
            gap_done: false,
        }
    }

    /// Where the records handed out so far came from.
    pub fn counts(&self) -> ReplayCounts {
        self.counts
    }

    /// The shard this core runs.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// True if this replay reads the records as the recovery scan reads
    /// them; false if it reads the log once the start has cut it (a core
    /// that also replays retired shards, or a start in repair mode).
    pub fn is_one_pass(&self) -> bool {
        self.one_pass
    }

    /// Every snapshot this core restores, verified against the manifest's
    /// CRC, as [`super::ShardContext::snapshots`] gives them: its own
    /// shard's first, then those of retired shards it adopted. Empty without
    /// a checkpoint.
    pub async fn snapshots(&mut self) -> Result<Vec<(ShardId, Vec<u8>)>> {
        let Some(c) = self.checkpoint else {
            return Ok(Vec::new());
        };
        let sources: Vec<(ShardId, Option<SnapshotRef>)> = if self.one_pass {
            vec![(self.shard, self.snapshot.clone())]
        } else {
            let plan = self.wait_for_plan().await?;
            plan.sources(self.shard)
                .into_iter()
                .map(|s| (s.shard, s.snapshot))
                .collect()
        };
        snapshot::read_each(&self.storage, &self.log_dir, c.0, sources).await
    }

    async fn wait_for_plan(&mut self) -> Result<ReplayPlan> {
        loop {
            {
                let feed = self.feed.borrow();
                if let Stage::Failed(why) = &feed.stage {
                    return Err(failed(self.shard, why));
                }
                if let Some(p) = &feed.plan {
                    return Ok(p.clone());
                }
            }
            self.wait(false).await;
        }
    }

    /// The next record, or `None` once every record of the sealed epochs
    /// has been handed out. Fails if the start fails (the records already
    /// handed out then belong to a log that did not open).
    pub async fn next(&mut self) -> Result<Option<Record<'_>>> {
        if std::mem::take(&mut self.gap_done) {
            self.source = Source::Copied;
        }
        while let Source::Copied = self.source {
            match self.step()? {
                Step::Deliver => break,
                Step::Wait { progress } => self.wait(progress).await,
                Step::ReadLog(ranges) => {
                    let r = MergedReader::open_shards(self.storage.clone(), &self.log_dir, &ranges)
                        .await?;
                    self.source = Source::Log(r);
                }
                Step::ReadGap { from, end } => {
                    let reader = ShardReader::open_range(
                        self.storage.clone(),
                        &self.log_dir,
                        self.shard,
                        from,
                        end,
                    )
                    .await?
                    .with_read_size(GAP_READ);
                    let reader = Box::new(reader);
                    self.source = Source::Gap {
                        reader,
                        last: Seq(end.0 - 1),
                    };
                }
                Step::End => self.source = Source::Done,
            }
        }
        match &mut self.source {
            Source::Done => Ok(None),
            Source::Log(r) => {
                let rec = r.next().await?;
                self.counts.from_log += u64::from(rec.is_some());
                Ok(rec)
            }
            Source::Gap { reader, last } => match reader.next().await? {
                Some(rec) => {
                    self.counts.from_log += 1;
                    self.gap_done = rec.lsn.seq >= *last;
                    Ok(Some(rec))
                }
                // The scan checked every record of the gap: a log that ends
                // inside it changed under the start.
                None => Err(failed(
                    self.shard,
                    &format!(
                        "the log ended before seq {}, inside records its recovery scan had checked",
                        last.0
                    ),
                )),
            },
            Source::Copied => {
                self.counts.from_scan += 1;
                let b = self.cur.as_ref().expect("a block to deliver from");
                let e = &b.entries[self.idx - 1];
                Ok(Some(Record {
                    lsn: e.lsn,
                    kind: e.kind,
                    payload: &b.buf[e.at..e.at + e.len],
                }))
            }
        }
    }

    /// Look at the feed once: deliver the current record (advancing past
    /// it), or say what to wait for or read.
    fn step(&mut self) -> Result<Step> {
        let mut feed = self.feed.borrow_mut();
        let until = match &feed.stage {
            Stage::Failed(why) => return Err(failed(self.shard, why)),
            Stage::Cut { until } | Stage::Applied { until } => Some(*until),
            Stage::Scanning | Stage::Scanned => None,
        };
        if !self.one_pass {
            return Ok(match (&feed.plan, &feed.stage) {
                (Some(p), Stage::Applied { .. }) => Step::ReadLog(p.ranges(self.shard)),
                _ => Step::Wait { progress: false },
            });
        }
        if self
            .cur
            .as_ref()
            .is_some_and(|b| self.idx >= b.entries.len())
        {
            let b = self.cur.take().expect("checked");
            feed.recycle(b);
        }
        if self.cur.is_none()
            && let Some(b) = feed.full.pop_front()
        {
            self.cur = Some(b);
            self.idx = 0;
        }
        let next_copied = self
            .cur
            .as_ref()
            .and_then(|b| b.entries.get(self.idx))
            .map(|e| e.lsn.seq);
        if let Some(g) = feed.gaps.front().copied()
            && next_copied.is_none_or(|s| s > g.from)
        {
            // The gap comes before the next copied record.
            let end = match until {
                Some(u) if g.from >= u => return Ok(Step::End),
                Some(u) => g.to.next().min(u),
                None => {
                    if g.release > self.bound {
                        self.bound = self.progress.sealed_bound();
                    }
                    if g.release > self.bound {
                        feed.replay = ReplayState::WaitsForBound;
                        return Ok(Step::Wait { progress: true });
                    }
                    g.to.next()
                }
            };
            feed.gaps.pop_front();
            feed.replay = ReplayState::Busy;
            return Ok(Step::ReadGap { from: g.from, end });
        }
        if let Some(b) = &self.cur
            && let Some(e) = b.entries.get(self.idx)
        {
            let seq = e.lsn.seq;
            let go = match until {
                Some(u) if seq >= u => return Ok(Step::End),
                Some(_) => true,
                None => {
                    while feed.marks.front().is_some_and(|&(s, _)| s < seq) {
                        feed.marks.pop_front();
                    }
                    match feed.marks.front() {
                        Some(&(_, release)) => {
                            if release > self.bound {
                                self.bound = self.progress.sealed_bound();
                            }
                            release <= self.bound
                        }
                        None => false,
                    }
                }
            };
            if go {
                self.idx += 1;
                self.counts.before_cut += u64::from(until.is_none());
                feed.replay = ReplayState::Busy;
                return Ok(Step::Deliver);
            }
            feed.replay = ReplayState::WaitsForBound;
            return Ok(Step::Wait { progress: true });
        }
        // Nothing copied is left.
        feed.replay = ReplayState::WaitsForScan;
        Ok(match (feed.overflow, &feed.stage) {
            (Some(o), Stage::Applied { until }) => {
                Step::ReadLog(vec![(self.shard, o, (*until).max(o))])
            }
            (None, Stage::Cut { .. } | Stage::Applied { .. }) => Step::End,
            _ => Step::Wait { progress: false },
        })
    }

    /// Until the feed changes (or, when waiting on other shards' scans,
    /// for at most [`PROGRESS_POLL`]).
    async fn wait(&self, progress: bool) {
        let feed = self.feed.clone();
        let mut armed = false;
        let changed = std::future::poll_fn(move |cx| {
            if armed {
                return Poll::Ready(());
            }
            armed = true;
            feed.borrow_mut().waker = Some(cx.waker().clone());
            Poll::Pending
        });
        if progress {
            futures_lite::future::or(changed, glommio::timer::sleep(PROGRESS_POLL)).await;
        } else {
            changed.await;
        }
    }
}

impl<S: Storage> Drop for Replay<S> {
    fn drop(&mut self) {
        // The engine is done replaying (or gave up): copy nothing more, and
        // free what was copied.
        let mut feed = self.feed.borrow_mut();
        feed.replay = ReplayState::Gone;
        feed.full.clear();
        feed.free.clear();
        feed.filling = None;
        feed.marks.clear();
        feed.gaps.clear();
    }
}

/// The replay's error when the start failed: the shard, and the start's
/// own error.
fn failed(shard: ShardId, why: &str) -> Error {
    Error::ShardFailed {
        shard,
        what: "the start it was replaying for".into(),
        cause: why.into(),
    }
}
