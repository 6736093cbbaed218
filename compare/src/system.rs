//! What every compared system implements, and the driving loop they share.

use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::workload::{WorkloadKind, WriteSpec, fill};

/// Result type of one thread's run: errors are messages naming what failed.
pub type Res<T> = Result<T, String>;

/// Turn any displayable error into a message with context.
pub fn ctx<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

/// The start line of a run's threads: each thread opens its log, then
/// waits here until every thread has, so that the timed regions begin
/// together. Unlike `std::sync::Barrier`, a thread that failed before
/// reaching it opens the gate for the others ([`Gate::abort`]) instead of
/// leaving them waiting forever.
pub struct Gate {
    state: Mutex<(usize, bool)>,
    cv: Condvar,
    threads: usize,
}

impl Gate {
    /// A gate for `threads` threads.
    pub fn new(threads: usize) -> Self {
        Gate {
            state: Mutex::new((0, false)),
            cv: Condvar::new(),
            threads,
        }
    }

    /// Wait until every thread is here (or one aborted).
    pub fn wait(&self) {
        let mut st = self.state.lock().expect("gate");
        st.0 += 1;
        if st.0 >= self.threads {
            st.1 = true;
            self.cv.notify_all();
        }
        while !st.1 {
            st = self.cv.wait(st).expect("gate");
        }
    }

    /// Open the gate for everyone: a thread failed.
    pub fn abort(&self) {
        let mut st = self.state.lock().expect("gate");
        st.1 = true;
        self.cv.notify_all();
    }
}

/// What kind of row a system gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// shardwal itself.
    Subject,
    /// A peer WAL crate, used as its docs intend.
    Peer,
    /// The hand-written `BufWriter` + `fdatasync` baseline.
    Raw,
    /// The device's sequential limit (O_DIRECT writer or reader).
    DeviceLimit,
}

/// What one thread measured.
#[derive(Debug, Clone)]
pub struct ThreadOutcome {
    /// Records written or read (and verified).
    pub records: u64,
    /// Payload bytes written or read.
    pub payload_bytes: u64,
    /// Time of the measured region.
    pub elapsed: Duration,
    /// Latency of each durable point, in nanoseconds (group, sync).
    pub latency_ns: Option<Histogram<u64>>,
    /// Time to open: the log's open (recover), or open + first append (open).
    pub open: Option<Duration>,
}

impl ThreadOutcome {
    /// An outcome with no latency and no open time.
    pub fn timed(records: u64, payload_bytes: u64, elapsed: Duration) -> Self {
        ThreadOutcome {
            records,
            payload_bytes,
            elapsed,
            latency_ns: None,
            open: None,
        }
    }
}

/// A new latency histogram (1 ns to 100 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("histogram bounds")
}

/// A compared system. One instance serves every thread: `run_*` is called
/// once per thread, each on its own pinned thread, with that thread's own
/// directory (fresh and empty, except for `recover`, which gets the
/// directory the same thread's `buffered` run wrote).
///
/// Each thread opens its log, waits on `start` (so that both threads' timed
/// regions begin together), and times only what follows, except where a
/// workload times the open itself.
pub trait System: Sync {
    /// Name in tables, JSON and plots.
    fn name(&self) -> &'static str;
    /// What the row is.
    fn role(&self) -> Role;
    /// One line: what this system's durable point really does (checked in its source).
    fn sync_note(&self) -> &'static str;
    /// Whether the system takes part in `kind`.
    fn supports(&self, kind: WorkloadKind) -> bool {
        let _ = kind;
        true
    }
    /// A write workload (buffered, large, group, sync).
    fn run_write(
        &self,
        spec: &WriteSpec,
        dir: &Path,
        thread: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome>;
    /// Reopen the log `buffered` wrote in `dir` (`records` of `payload_bytes`)
    /// and read and verify every record. The caller has dropped the page cache.
    fn run_recover(
        &self,
        dir: &Path,
        thread: usize,
        records: u64,
        payload_bytes: usize,
        start: &Gate,
    ) -> Res<ThreadOutcome>;
    /// Open a fresh log in `dir` and append one record; `open` is the time
    /// until that append returned.
    fn run_open(&self, dir: &Path, thread: usize, start: &Gate) -> Res<ThreadOutcome>;
}

/// A synchronous log as the shared write loop sees it.
pub trait Sink {
    /// Append one record (buffered or not: the system decides).
    fn append(&mut self, payload: &[u8]) -> Res<()>;
    /// Make every record appended so far durable.
    fn durable(&mut self) -> Res<()>;
}

/// The write loop every synchronous system shares: `spec.records` appends,
/// a durable point after every `spec.group` of them and after the last; the
/// latency of each group is from its first append to its durable point.
pub fn drive(
    spec: &WriteSpec,
    thread: usize,
    start: &Gate,
    sink: &mut dyn Sink,
) -> Res<ThreadOutcome> {
    let mut buf = vec![0u8; spec.payload_bytes];
    let mut hist = spec.records_latency().then(histogram);
    start.wait();
    let t0 = Instant::now();
    let mut seq = 0;
    while seq < spec.records {
        let end = (seq + spec.group).min(spec.records);
        let g0 = Instant::now();
        while seq < end {
            fill(&mut buf, thread, seq);
            sink.append(&buf)?;
            seq += 1;
        }
        sink.durable()?;
        if let Some(h) = hist.as_mut() {
            h.saturating_record(g0.elapsed().as_nanos() as u64);
        }
    }
    let elapsed = t0.elapsed();
    Ok(ThreadOutcome {
        latency_ns: hist,
        ..ThreadOutcome::timed(spec.records, spec.payload_total(), elapsed)
    })
}

/// The `open` workload for a synchronous system: `open` opens a fresh log,
/// `first` appends one record and makes nothing durable; the time is until
/// `first` returns. `close` then runs untimed.
pub fn drive_open<L>(
    thread: usize,
    start: &Gate,
    open: impl FnOnce() -> Res<L>,
    first: impl FnOnce(&mut L, &[u8]) -> Res<()>,
    close: impl FnOnce(L) -> Res<()>,
) -> Res<ThreadOutcome> {
    let mut buf = vec![0u8; crate::workload::SMALL];
    fill(&mut buf, thread, 0);
    start.wait();
    let t0 = Instant::now();
    let mut log = open()?;
    first(&mut log, &buf)?;
    let elapsed = t0.elapsed();
    close(log)?;
    Ok(ThreadOutcome {
        open: Some(elapsed),
        ..ThreadOutcome::timed(1, buf.len() as u64, elapsed)
    })
}
