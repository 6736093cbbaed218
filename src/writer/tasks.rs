//! The shard's background tasks, all on the shard's own executor:
//!
//! - the **write task** issues write jobs in order, up to `write_behind` at
//!   once, and advances `written_next` as they complete in order;
//! - the **sync task** turns sync requests into fdatasyncs (group commit:
//!   every request made while one fdatasync is in flight shares the next,
//!   and the next group's write is issued while the previous fdatasync runs);
//! - the **prepare task** keeps the next segment file created and prepared;
//! - the **interval task** requests a sync periodically under
//!   `FsyncPolicy::Interval`.
//!
//! Every I/O error poisons the shard (fail-stop): the error is recorded, all
//! waiters are woken to see it, and the tasks stop. Nothing is retried.

use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::task::JoinHandle;

use super::Inner;
use super::state::{Job, Prepared};
use super::wait::yield_now;
use crate::config::SegmentPrepare;
use crate::error::Error;
use crate::ids::Seq;
use crate::io::{IoBuf, Storage, StorageFile};
use crate::metrics::record_latency;
use crate::segment::segment_name;

type WriteResult = std::io::Result<usize>;

struct InFlight<S: Storage> {
    task: JoinHandle<WriteResult>,
    buf: Rc<S::Buf>,
    file: Rc<S::File>,
    path: Rc<Path>,
    pos: u64,
    len: usize,
    end_seq: Seq,
    from_roll: bool,
}

async fn complete<S: Storage>(inner: &Inner<S>, w: InFlight<S>) {
    let res = w.task.await;
    match res {
        Some(Ok(n)) if n == w.len => {
            let mut st = inner.st.borrow_mut();
            st.written_next = st.written_next.max(w.end_seq);
            st.last_written_file = Some(w.file);
            // Full-size buffers go back to the free list; trimmed ones are
            // replaced by a fresh buffer, allocated here, off the append path.
            // Full-size buffers go back to the free list; right-sized sync
            // copies are dropped. A buffer trimmed by a segment roll is
            // replaced here, off the append path, to keep the pool full.
            let full = w.len == inner.cfg.buffer_size;
            let from_roll = w.from_roll;
            if st.free.len() < inner.cfg.write_behind && (full || from_roll) {
                let buf = match Rc::try_unwrap(w.buf) {
                    Ok(b) if full => b,
                    _ => inner.storage.alloc_buf(inner.cfg.buffer_size),
                };
                st.free.push(buf);
            }
            drop(st);
            inner.sync_signal.notify();
            // The next segment's zero-fill waits for the current segment to
            // be half full (`paced`): only a write that ends past its middle
            // can let it start.
            if w.pos + w.len as u64 >= inner.params.segment_size / 2 {
                inner.prepare_signal.notify();
            }
            inner.space_waiters.wake_all();
        }
        Some(Ok(n)) => inner.poison(format!(
            "short write on {} at offset {}: {n} of {} bytes",
            w.path.display(),
            w.pos,
            w.len
        )),
        Some(Err(e)) => inner.poison(format!(
            "write of {} bytes at offset {} of {} failed: {e}",
            w.len,
            w.pos,
            w.path.display()
        )),
        None => inner.poison("write task was cancelled".into()),
    }
}

async fn drain<S: Storage>(inner: &Inner<S>, inflight: &mut VecDeque<InFlight<S>>) {
    while let Some(w) = inflight.pop_front() {
        complete(inner, w).await;
    }
}

/// Issue write jobs in order with bounded concurrency.
pub(crate) async fn write_task<S: Storage>(inner: Rc<Inner<S>>) {
    let limit = inner.cfg.write_behind;
    let mut inflight: VecDeque<InFlight<S>> = VecDeque::with_capacity(limit);
    loop {
        if inner.is_poisoned() {
            break;
        }
        let job = if inflight.len() < limit {
            inner.st.borrow_mut().jobs.pop_front()
        } else {
            None
        };
        match job {
            Some(Job::Write {
                file,
                path,
                buf,
                pos,
                end_seq,
                after_prev,
                from_roll,
            }) => {
                if after_prev {
                    drain(&inner, &mut inflight).await;
                    if inner.is_poisoned() {
                        break;
                    }
                }
                let buf = Rc::new(buf);
                let len = buf.as_slice().len();
                let (f, b) = (file.clone(), buf.clone());
                let task = glommio::spawn_local(async move { f.write_at(b, pos).await }).detach();
                inflight.push_back(InFlight {
                    task,
                    buf,
                    file,
                    path,
                    pos,
                    len,
                    end_seq,
                    from_roll,
                });
            }
            Some(Job::Retire { file, path }) => {
                drain(&inner, &mut inflight).await;
                if inner.is_poisoned() {
                    break;
                }
                inner.st.borrow_mut().stats.syncs += 1;
                let started = Instant::now();
                if let Err(e) = file.sync_data().await {
                    inner.poison(format!("fdatasync of {} failed: {e}", path.display()));
                    break;
                }
                let took = started.elapsed();
                record_latency(&mut inner.st.borrow_mut().sync_latency, took);
            }
            None => {
                if let Some(w) = inflight.pop_front() {
                    complete(&inner, w).await;
                    continue;
                }
                let done = {
                    let st = inner.st.borrow();
                    st.closed && st.jobs.is_empty()
                };
                if done {
                    break;
                }
                inner.write_signal.wait().await;
            }
        }
    }
    drain(&inner, &mut inflight).await;
    inner.sync_signal.notify();
}

/// Turn sync requests into fdatasyncs.
pub(crate) async fn sync_task<S: Storage>(inner: Rc<Inner<S>>) {
    loop {
        let target = {
            let st = inner.st.borrow();
            if st.poison.is_some() {
                break;
            }
            if st.sync_requested > st.durable_next {
                Some(st.sync_requested)
            } else if st.closed {
                break;
            } else {
                None
            }
        };
        let Some(target) = target else {
            inner.sync_signal.wait().await;
            continue;
        };
        inner.submit_unsealed(target);
        // Wait until every record below the target has been written.
        loop {
            let ready = {
                let st = inner.st.borrow();
                st.poison.is_some() || st.written_next >= target
            };
            if ready {
                break;
            }
            inner.sync_signal.wait().await;
        }
        if inner.is_poisoned() {
            break;
        }
        let file = inner.st.borrow().last_written_file.clone();
        if let Some(file) = file {
            inner.st.borrow_mut().stats.syncs += 1;
            // While this fdatasync runs, let appenders run, then submit the
            // next group's write so it overlaps the sync.
            let presubmit = async {
                yield_now().await;
                let want = inner.st.borrow().sync_requested;
                if want > target {
                    inner.submit_unsealed(want);
                }
            };
            // Timed from submission to completion of the fdatasync alone
            // (not the presubmit beside it).
            let sync = async {
                let started = Instant::now();
                let res = file.sync_data().await;
                (res, started.elapsed())
            };
            let ((res, took), ()) = futures_lite::future::zip(sync, presubmit).await;
            if let Err(e) = res {
                inner.poison(format!("fdatasync failed: {e}"));
                break;
            }
            record_latency(&mut inner.st.borrow_mut().sync_latency, took);
        }
        {
            let mut st = inner.st.borrow_mut();
            st.durable_next = st.durable_next.max(target);
        }
        inner.durable_waiters.wake_all();
    }
    inner.durable_waiters.wake_all();
}

/// Keep the next segment file prepared.
pub(crate) async fn prepare_task<S: Storage>(inner: Rc<Inner<S>>) {
    // The zero-fill itself waits for its pace (`paced`): the file is
    // created at once, its writes start when the current segment is half
    // full.
    loop {
        let index = {
            let st = inner.st.borrow();
            if st.poison.is_some() || st.closed {
                break;
            }
            if st.next_segment.is_some() {
                None
            } else {
                Some(st.seg.index.checked_add(1))
            }
        };
        let Some(index) = index else {
            inner.prepare_signal.wait().await;
            continue;
        };
        // No index after the current segment's: the log cannot roll, so it
        // fails (fail-stop) instead of wrapping to a name that sorts first.
        let Some(index) = index else {
            let e = Error::Exhausted {
                shard: inner.shard,
                what: "segment indexes",
            };
            inner.poison(e.to_string());
            break;
        };
        let ask = || paced(&inner);
        let pacer = Pacer {
            ask: &ask,
            wake: &inner.prepare_signal,
        };
        match prepare_segment_with(&inner.storage, &inner.dir, &inner.cfg, index, Some(pacer)).await
        {
            // Closed while zero-filling: the blank file is left for
            // recovery (a blank segment at the end of the log is removed).
            Ok(None) => break,
            Ok(Some(p)) => {
                let mut st = inner.st.borrow_mut();
                // The roll onto it (inside an append) records it in the
                // live-segments list: make room here, off the hot path.
                if st.segments.len() == st.segments.capacity() {
                    let more = st.segments.len().max(8);
                    st.segments.reserve(more);
                }
                st.next_segment = Some(p);
                drop(st);
                inner.space_waiters.wake_all();
            }
            Err(e) => {
                inner.poison(e);
                break;
            }
        }
    }
}

/// What a paced zero-fill does next, asked before each of its writes.
pub(crate) enum Pace {
    /// Write the next chunk.
    Go,
    /// Wait for the preparation's signal, then ask again.
    Wait,
    /// Abandon the preparation (the shard closed or was poisoned).
    Stop,
}

/// When the next segment's zero-fill may run: once the current segment is
/// half full, or at once if an append waits for the next segment.
///
/// Zero-filling the next segment while the log's commits run costs them:
/// measured with the group and sync workloads of `shardwal-compare`, a
/// fill that starts as soon as a segment is opened puts its 64 MiB of
/// writes under the first commits of every new log, and a fill paced to
/// the current segment's progress (in 128 KiB or 1 MiB writes) was worse
/// still (docs/BENCHMARKS.md, tried and rejected). Starting at half full
/// leaves the first half of each segment's life to the commits alone; the
/// second half is enough time to fill the next one before the roll, and if
/// it is not, the waiting append lifts the wait (`next_wanted`). The same
/// rule keeps a reopened log's replay from competing with a fill: the
/// resumed segment must be half full, or an append must arrive first.
fn paced<S: Storage>(inner: &Inner<S>) -> Pace {
    let st = inner.st.borrow();
    if st.closed || st.poison.is_some() {
        return Pace::Stop;
    }
    let used = st.buf_pos + st.buf_len as u64;
    if st.next_wanted || used >= inner.params.segment_size / 2 {
        Pace::Go
    } else {
        Pace::Wait
    }
}

/// The pace of a background zero-fill: `ask` before each write, and wait
/// for `wake` when it says [`Pace::Wait`].
pub(crate) struct Pacer<'a> {
    pub ask: &'a dyn Fn() -> Pace,
    pub wake: &'a super::wait::Signal,
}

/// Create and prepare segment file `index` in `dir`, its zero-fill paced by
/// `pacer` (without one, at once and to the end). `None` if the pacer said
/// stop.
pub(crate) async fn prepare_segment_with<S: Storage>(
    storage: &S,
    dir: &Path,
    cfg: &crate::config::ShardConfig,
    index: u64,
    pacer: Option<Pacer<'_>>,
) -> Result<Option<Prepared<S>>, String> {
    let path: Rc<Path> = Rc::from(dir.join(segment_name(index)));
    let ctx = |op: &str, e: std::io::Error| format!("{op} of {} failed: {e}", path.display());
    // A leftover from a crash during an earlier preparation holds no data.
    // (Removed without probing for it first: a failed probe taken for
    // "absent" would hide its error until the exclusive create below.)
    crate::io::remove_if_present(storage, &path)
        .await
        .map_err(|e| ctx("removing stale segment", e))?;
    let file = storage
        .open(&path, true)
        .await
        .map_err(|e| ctx("create", e))?;
    let size = cfg.segment_size;
    // Both preparations leave every byte reading as zero, and the file
    // `size` bytes long, synced below (an unwritten extent reads as zero,
    // also after a crash): the header says so (`ZEROED`, `SIZED`), and
    // recovery relies on both.
    let zeroed = matches!(
        cfg.prepare,
        SegmentPrepare::ZeroFill | SegmentPrepare::Fallocate
    );
    match cfg.prepare {
        SegmentPrepare::ZeroFill => {
            // The zeros go through a second descriptor of the file, opened
            // for bulk I/O (DmaStorage: glommio's poll ring, which keeps the
            // fill at the device's pace); the writer's own writes and syncs
            // use `file`. The fdatasync below makes the zeros durable
            // whichever descriptor wrote them.
            let bulk = storage
                .open_bulk(&path)
                .await
                .map_err(|e| ctx("open for the zero-fill", e))?;
            let chunk = cfg.buffer_size.min(size as usize);
            // Made at the first write: a paced fill may wait half a
            // segment's life before it.
            let mut zero = None;
            let mut off = 0;
            while off < size {
                match pacer.as_ref().map_or(Pace::Go, |p| (p.ask)()) {
                    Pace::Go => {}
                    Pace::Wait => {
                        if let Some(p) = &pacer {
                            p.wake.wait().await;
                        }
                        continue;
                    }
                    Pace::Stop => {
                        // An unfinished preparation is abandoned: its blank
                        // header reads as the end of the log, and the next
                        // preparation of this index replaces it.
                        crate::io::close_quietly(bulk, &path).await;
                        crate::io::close_quietly(file, &path).await;
                        return Ok(None);
                    }
                }
                let zero = zero.get_or_insert_with(|| {
                    let mut z = storage.alloc_buf(chunk);
                    z.as_mut_slice().fill(0);
                    Rc::new(z)
                });
                let n = bulk
                    .write_at(zero.clone(), off)
                    .await
                    .map_err(|e| ctx("zero-fill", e))?;
                if n != chunk {
                    return Err(ctx("zero-fill", std::io::Error::other("short write")));
                }
                off += chunk as u64;
            }
            crate::io::close_quietly(bulk, &path).await;
            file.sync_data().await.map_err(|e| ctx("fdatasync", e))?;
        }
        SegmentPrepare::Fallocate => {
            file.allocate(size).await.map_err(|e| ctx("fallocate", e))?;
            // The reservation keeps the visible size; set it, so that the
            // length is durable with the fdatasync below, as after a zero
            // fill (the blocks stay unwritten extents, reading as zero).
            file.set_len(size).await.map_err(|e| ctx("set length", e))?;
            file.sync_data().await.map_err(|e| ctx("fdatasync", e))?;
        }
        SegmentPrepare::Create => {}
    }
    storage
        .sync_dir(dir)
        .await
        .map_err(|e| ctx("directory fsync", e))?;
    Ok(Some(Prepared {
        file: Rc::new(file),
        path,
        index,
        zeroed,
    }))
}

/// Request a sync every `every` while there are records that are not durable.
pub(crate) async fn interval_task<S: Storage>(inner: Rc<Inner<S>>, every: Duration) {
    loop {
        glommio::timer::sleep(every).await;
        let st = inner.st.borrow();
        if st.poison.is_some() || st.closed {
            break;
        }
        let next = st.next_seq;
        let pending = next > st.durable_next && next > st.sync_requested;
        drop(st);
        if pending {
            inner.request_sync(next);
        }
    }
}
