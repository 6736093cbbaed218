//! Fault injection at every I/O position (issue 14 §3), through the real
//! runtime on the real disk.
//!
//! A storage wrapper ([`Faulty`], around `DmaStorage`) counts every
//! operation a shard makes — opens, writes, reads, fdatasyncs, size
//! changes, renames, removals, directory syncs, listings, closes — and
//! makes exactly one of them fail: the `n`-th operation of a class. A
//! fault-free run counts the positions of each class; then, for every
//! position (or every `stride`-th one, see below) and every kind of fault,
//! a fresh 2-shard runtime runs the same workload (epochs with data and
//! commit records, two checkpoints with snapshots) and the fault lands
//! there:
//!
//! | fault | where |
//! |---|---|
//! | EIO | on a write |
//! | EIO | on an fdatasync |
//! | ENOSPC | on a write, an allocation or a size change |
//! | short write | a write reports half its length |
//! | EINTR | on any operation |
//! | EIO | on any operation, including directory syncs, renames, removals |
//! | EIO, EINTR | on a read (or any operation) of a *recovering* start |
//!
//! Each trial checks:
//! - **no hang**: every ticket resolves within its limit and the runtime
//!   shuts down within its limit;
//! - **no panic** (a panic hook counts them);
//! - **a clear typed error**: once a write or an fdatasync has failed, some
//!   call of the public API fails with an error that names the injected
//!   errno (or the short write), and no later epoch or checkpoint is
//!   acknowledged by the damaged shard without it; a failed write or
//!   fdatasync is never absorbed silently;
//! - **the coordinator fails the checkpoint**: an acknowledged checkpoint
//!   is complete (its manifest, snapshots and replay position are what a
//!   healthy restart uses), and a checkpoint the fault broke is refused;
//! - **nothing durable is lost**: a healthy restart recovers at least every
//!   epoch and checkpoint that was acknowledged, with exactly the records
//!   of each sealed epoch (nothing invented, duplicated or missing), the
//!   snapshot's count, the source offsets, and an epoch that continues
//!   after the sealed one (one more epoch is sealed after the restart).
//!
//! Faults in a recovering start additionally check that a failed read is
//! never taken for the end of the log: the log is intact after a healthy
//! restart.
//!
//! The coordinator writes manifests with blocking `std::fs` in its own
//! thread, not through the shard's storage, so manifest writes are not
//! among the positions (the corruption matrix damages manifests instead).
//!
//! `SHARDWAL_FAULT_STRIDE` (default 1: every position) and
//! `SHARDWAL_FAULT_ONLY=kind:n` (one trial, printed verbosely) control the
//! sweep; each failure prints the `kind:n` that replays it.

mod common;
mod runtime_common;

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use runtime_common::{Data, data_payload, parse_data};
use shardwal::io::{IoBuf, Storage, StorageFile};
use shardwal::rng::SplitMix;
use shardwal::{
    ControlEvent, CoordinatorConfig, DmaStorage, Error, FsyncPolicy, RecordKind, Runtime,
    RuntimeConfig, ShardConfig, ShardContext, SourceOffset,
};

/// Epochs the workload seals.
const EPOCHS: u64 = 8;
/// Epochs that are checkpoints.
const CHECKPOINTS: [u64; 2] = [3, 6];
/// Data records per shard per epoch.
const PER_EPOCH: u64 = 40;
const WAIT: Duration = Duration::from_secs(20);
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);
const STRIDE_ENV: &str = "SHARDWAL_FAULT_STRIDE";
const ONLY_ENV: &str = "SHARDWAL_FAULT_ONLY";

fn shard_config() -> ShardConfig {
    ShardConfig {
        // Small segments: the workload rolls and prepares several.
        segment_size: 16 << 10,
        buffer_size: 4 << 10,
        write_behind: 2,
        max_record_size: 1024,
        fsync: FsyncPolicy::PerEpoch,
        ..ShardConfig::default()
    }
}

fn runtime_config() -> RuntimeConfig {
    RuntimeConfig {
        shards: Some(2),
        pin: false,
        shard: shard_config(),
        coordinator: CoordinatorConfig {
            keep_checkpoints: 2,
            ..CoordinatorConfig::default()
        },
        ..RuntimeConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The fault-injecting storage.

/// What an operation is, for choosing where a fault lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// `write_at`.
    Write,
    /// `sync_data`.
    Sync,
    /// `read_at`, `read_into`.
    Read,
    /// `allocate`, `set_len`: changes of a file's size or blocks.
    Grow,
    /// Everything else: open, close, size, remove, rename, list, create
    /// directories, sync a directory, lock.
    Meta,
}

/// The injected error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Eio,
    Enospc,
    /// The write stores its buffer but reports half of it.
    Short,
    Eintr,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::Eio => io::Error::from_raw_os_error(libc_errno::EIO),
            Fault::Enospc => io::Error::from_raw_os_error(libc_errno::ENOSPC),
            Fault::Eintr => io::Error::from_raw_os_error(libc_errno::EINTR),
            Fault::Short => unreachable!("a short write is not an error"),
        }
    }

    /// Text the surfaced error must contain.
    fn names(self) -> &'static str {
        match self {
            Fault::Eio => "Input/output error",
            Fault::Enospc => "No space left on device",
            Fault::Eintr => "Interrupted system call",
            Fault::Short => "short write",
        }
    }
}

/// Errno values (Linux), without a libc dependency for three constants.
mod libc_errno {
    pub const EINTR: i32 = 4;
    pub const EIO: i32 = 5;
    pub const ENOSPC: i32 = 28;
}

/// A sweep: a fault, and the classes of operation whose positions it
/// counts.
#[derive(Clone, Copy, Debug)]
struct Kind {
    name: &'static str,
    fault: Fault,
    classes: &'static [Class],
    /// The fault lands in a recovering start of a complete log, not in the
    /// run that writes it.
    in_recovery: bool,
}

const ALL: &[Class] = &[
    Class::Write,
    Class::Sync,
    Class::Read,
    Class::Grow,
    Class::Meta,
];

const KINDS: &[Kind] = &[
    Kind {
        name: "eio-write",
        fault: Fault::Eio,
        classes: &[Class::Write],
        in_recovery: false,
    },
    Kind {
        name: "eio-fsync",
        fault: Fault::Eio,
        classes: &[Class::Sync],
        in_recovery: false,
    },
    Kind {
        name: "enospc",
        fault: Fault::Enospc,
        classes: &[Class::Write, Class::Grow],
        in_recovery: false,
    },
    Kind {
        name: "short-write",
        fault: Fault::Short,
        classes: &[Class::Write],
        in_recovery: false,
    },
    Kind {
        name: "eintr-any",
        fault: Fault::Eintr,
        classes: ALL,
        in_recovery: false,
    },
    Kind {
        name: "eio-any",
        fault: Fault::Eio,
        classes: ALL,
        in_recovery: false,
    },
    Kind {
        name: "recovery-eio-read",
        fault: Fault::Eio,
        classes: &[Class::Read],
        in_recovery: true,
    },
    Kind {
        name: "recovery-eio-any",
        fault: Fault::Eio,
        classes: ALL,
        in_recovery: true,
    },
    Kind {
        name: "recovery-eintr-any",
        fault: Fault::Eintr,
        classes: ALL,
        in_recovery: true,
    },
];

/// Shared by every shard's storage of one run (the factory runs on each
/// executor, so this is `Send + Sync`).
struct Injector {
    /// The classes counted, and the 0-based position among them that
    /// fails (`u64::MAX`: none, only count).
    classes: &'static [Class],
    at: u64,
    fault: Fault,
    seen: AtomicU64,
    /// The operation that failed: its name and path.
    fired: Mutex<Option<(Class, &'static str, PathBuf)>>,
}

impl Injector {
    fn new(kind: &Kind, at: u64) -> Arc<Injector> {
        Arc::new(Injector {
            classes: kind.classes,
            at,
            fault: kind.fault,
            seen: AtomicU64::new(0),
            fired: Mutex::new(None),
        })
    }

    /// Count an operation; true if it is the one that fails.
    fn hit(&self, class: Class, op: &'static str, path: &Path) -> bool {
        if !self.classes.contains(&class) {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if n != self.at {
            return false;
        }
        *self.fired.lock().unwrap() = Some((class, op, path.to_path_buf()));
        true
    }

    fn check(&self, class: Class, op: &'static str, path: &Path) -> io::Result<()> {
        if self.hit(class, op, path) {
            return Err(self.fault.error());
        }
        Ok(())
    }

    fn fired(&self) -> Option<(Class, &'static str, PathBuf)> {
        self.fired.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct Faulty {
    inner: DmaStorage,
    inj: Arc<Injector>,
}

struct FaultyFile<F> {
    inner: Rc<F>,
    inj: Arc<Injector>,
    path: PathBuf,
}

impl Storage for Faulty {
    type Buf = <DmaStorage as Storage>::Buf;
    type File = FaultyFile<<DmaStorage as Storage>::File>;
    type Lock = <DmaStorage as Storage>::Lock;

    fn alloc_buf(&self, len: usize) -> Self::Buf {
        self.inner.alloc_buf(len)
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File> {
        self.inj.check(Class::Meta, "open", path)?;
        let f = self.inner.open(path, create).await?;
        Ok(FaultyFile {
            inner: Rc::new(f),
            inj: self.inj.clone(),
            path: path.to_path_buf(),
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.inj.check(Class::Meta, "remove", path)?;
        self.inner.remove(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inj.check(Class::Meta, "rename", from)?;
        self.inner.rename(from, to).await
    }

    async fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inj.check(Class::Meta, "rename_noreplace", from)?;
        self.inner.rename_noreplace(from, to).await
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inj.check(Class::Meta, "list", dir)?;
        self.inner.list(dir).await
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inj.check(Class::Meta, "create_dir_all", dir)?;
        self.inner.create_dir_all(dir).await
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inj.check(Class::Meta, "sync_dir", dir)?;
        self.inner.sync_dir(dir).await
    }

    async fn lock(&self, path: &Path) -> io::Result<Self::Lock> {
        self.inj.check(Class::Meta, "lock", path)?;
        self.inner.lock(path).await
    }
}

impl<F: StorageFile> StorageFile for FaultyFile<F> {
    type Buf = F::Buf;
    type ReadBuf = F::ReadBuf;

    async fn write_at(&self, buf: Rc<Self::Buf>, pos: u64) -> io::Result<usize> {
        if self.inj.hit(Class::Write, "write_at", &self.path) {
            if self.inj.fault != Fault::Short {
                return Err(self.inj.fault.error());
            }
            // The bytes land, but the call reports half of them: the
            // writer must not count the rest as written.
            let len = buf.as_slice().len();
            self.inner.write_at(buf, pos).await?;
            return Ok(len / 2);
        }
        self.inner.write_at(buf, pos).await
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Self::ReadBuf> {
        self.inj.check(Class::Read, "read_at", &self.path)?;
        self.inner.read_at(pos, len).await
    }

    fn read_into(
        self: Rc<Self>,
        pos: u64,
        buf: shardwal::io::AlignedBuf,
        at: usize,
        len: usize,
    ) -> impl Future<Output = io::Result<(shardwal::io::AlignedBuf, usize)>> + 'static
    where
        Self: Sized,
    {
        let failed = self
            .inj
            .check(Class::Read, "read_into", &self.path)
            .map(|()| self.inner.clone());
        async move { failed?.read_into(pos, buf, at, len).await }
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.inj.check(Class::Sync, "sync_data", &self.path)?;
        self.inner.sync_data().await
    }

    async fn size(&self) -> io::Result<u64> {
        self.inj.check(Class::Meta, "size", &self.path)?;
        self.inner.size().await
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        self.inj.check(Class::Grow, "set_len", &self.path)?;
        self.inner.set_len(len).await
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        self.inj.check(Class::Grow, "allocate", &self.path)?;
        self.inner.allocate(len).await
    }

    async fn close(self) -> io::Result<()> {
        self.inj.check(Class::Meta, "close", &self.path)?;
        match Rc::try_unwrap(self.inner) {
            Ok(f) => f.close().await,
            // A read started with `read_into` still holds the file: it
            // closes when that read is done.
            Err(_) => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------
// The engine: restores and checks what it recovers, then appends
// `PER_EPOCH` records at each barrier, commits, and snapshots at
// checkpoints. Everything it logs is a function of (shard, epoch, index).

/// What a shard found when it started.
#[derive(Debug, Clone)]
struct Restored {
    shard: u32,
    sealed: u64,
    checkpoint: Option<u64>,
    /// Data records as of the sealed epoch (snapshot count + replayed).
    count: u64,
}

type Reports = mpsc::Sender<Result<Restored, String>>;

fn record(shard: u32, epoch: u64, index: u64) -> Vec<u8> {
    let d = Data {
        shard,
        epoch,
        index,
    };
    data_payload(d, (common::mix(u64::from(shard), index) % 120) as usize)
}

/// A snapshot: the data record count, then bytes derived from it (about
/// 20 KiB, so it takes several writes).
fn snapshot(shard: u32, count: u64) -> Vec<u8> {
    let mut v = count.to_le_bytes().to_vec();
    let mut rng = SplitMix(count << 4 | u64::from(shard));
    v.extend((0..20_000 + count % 700).map(|_| rng.next_u64() as u8));
    v
}

const SOURCE: &str = "input";

async fn restore<S: Storage>(ctx: &ShardContext<S>) -> Result<Restored, String> {
    let shard = ctx.shard().0;
    let plan = ctx.replay_plan().clone();
    let snap = ctx.snapshot().await.map_err(|e| format!("snapshot: {e}"))?;
    let mut count = match (&snap, plan.checkpoint) {
        (Some(b), Some(_)) => {
            let c = u64::from_le_bytes(b[..8].try_into().map_err(|_| "short snapshot")?);
            if *b != snapshot(shard, c) {
                return Err(format!("shard {shard}: snapshot bytes differ (count {c})"));
            }
            c
        }
        (None, None) => 0,
        (s, c) => {
            return Err(format!(
                "shard {shard}: snapshot {:?} checkpoint {c:?}",
                s.is_some()
            ));
        }
    };
    let mut r = ctx.replay().await.map_err(|e| format!("replay: {e}"))?;
    while let Some(rec) = r.next().await.map_err(|e| format!("replay next: {e}"))? {
        if rec.kind != RecordKind::Data {
            continue;
        }
        let d = parse_data(rec.payload);
        let want_epoch = count / PER_EPOCH + 1;
        if d.shard != shard
            || d.index != count
            || d.epoch != want_epoch
            || rec.lsn.epoch.0 != want_epoch
        {
            return Err(format!(
                "shard {shard}: replayed {d:?} in epoch {}, expected index {count} of epoch {want_epoch}",
                rec.lsn.epoch.0
            ));
        }
        if rec.payload != record(shard, d.epoch, d.index).as_slice() {
            return Err(format!("shard {shard}: record {count} has other bytes"));
        }
        count += 1;
    }
    let sealed = plan.sealed.0;
    if count != sealed * PER_EPOCH {
        return Err(format!(
            "shard {shard}: {count} data records as of sealed epoch {sealed}, expected {}",
            sealed * PER_EPOCH
        ));
    }
    let offset = plan
        .offsets
        .iter()
        .find(|o| o.source == SOURCE)
        .map(|o| o.offset);
    if sealed > 0 && offset != Some(count) {
        return Err(format!(
            "shard {shard}: source offset {offset:?} at sealed epoch {sealed}, expected {count}"
        ));
    }
    Ok(Restored {
        shard,
        sealed,
        checkpoint: plan.checkpoint.map(|c| c.0),
        count,
    })
}

async fn engine<S: Storage>(ctx: Rc<ShardContext<S>>, tx: Reports) -> shardwal::Result<()> {
    let restored = restore(&ctx).await;
    let ok = restored.as_ref().map(|r| r.count).ok();
    let _ = tx.send(restored);
    let Some(mut count) = ok else {
        return Err(Error::Config("the restore failed".into()));
    };
    let shard = ctx.shard().0;
    let log = ctx.log().clone();
    loop {
        let ControlEvent::Barrier(req) = ctx.control().await else {
            return Ok(());
        };
        let epoch = log.epoch().0;
        if epoch != count / PER_EPOCH + 1 {
            return Err(Error::Config(format!(
                "shard {shard}: epoch {epoch} after {count} records"
            )));
        }
        for _ in 0..PER_EPOCH {
            log.append(&record(shard, epoch, count)).await?;
            count += 1;
        }
        ctx.commit(
            vec![SourceOffset {
                source: SOURCE.into(),
                offset: count,
            }],
            epoch,
        )
        .await?;
        let snap = req.checkpoint.map(|_| snapshot(shard, count));
        ctx.complete_barrier(req, snap.as_deref()).await?;
    }
}

// ---------------------------------------------------------------------------
// One run of the workload.

/// What the public API acknowledged, and the errors it returned.
#[derive(Debug, Default)]
struct Outcome {
    restored: Vec<Result<Restored, String>>,
    /// Highest epoch whose ticket resolved.
    sealed: u64,
    /// Checkpoints acknowledged, as (id, epoch).
    checkpoints: Vec<(u64, u64)>,
    /// Every error the API returned (start, tickets, shutdown).
    errors: Vec<String>,
    /// A call that did not return within its limit.
    hang: Option<String>,
}

/// Start a runtime on `dir` (through `inj` when given), collect what each
/// shard restored, then try to seal `epochs` more epochs, checkpointing at
/// `checkpoints` (relative to the first new epoch), and shut down. Panics
/// if anything hangs.
fn run(dir: &Path, inj: Option<Arc<Injector>>, epochs: u64, checkpoints: &[u64]) -> Outcome {
    run_calling(dir, inj, epochs, checkpoints, &mut |_| {})
}

/// [`run`], calling `each(i)` before the `i`-th new epoch is requested.
fn run_calling(
    dir: &Path,
    inj: Option<Arc<Injector>>,
    epochs: u64,
    checkpoints: &[u64],
    each: &mut dyn FnMut(u64),
) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let cfg = runtime_config();
    let started = match inj {
        Some(inj) => Runtime::start_with(
            dir,
            cfg,
            move |_| Faulty {
                inner: DmaStorage,
                inj: inj.clone(),
            },
            move |ctx| engine(ctx, tx.clone()),
        ),
        None => Runtime::start(dir, cfg, move |ctx| engine(ctx, tx.clone())),
    };
    let mut out = Outcome::default();
    let rt = match started {
        Ok(rt) => rt,
        Err(e) => {
            out.errors.push(format!("start: {e}"));
            return out;
        }
    };
    for _ in 0..2 {
        match rx.recv_timeout(WAIT) {
            Ok(r) => out.restored.push(r),
            Err(_) => out.errors.push("a shard never reported its restore".into()),
        }
    }
    let c = rt.coordinator();
    let base = c.sealed_epoch().0;
    out.sealed = base;
    for i in 1..=epochs {
        each(i);
        let r = if checkpoints.contains(&i) {
            c.checkpoint()
                .and_then(|t| t.wait_timeout(WAIT))
                .map(|info| {
                    out.checkpoints.push((info.id.0, info.epoch.0));
                    info.epoch.0
                })
        } else {
            c.advance_epoch()
                .and_then(|t| t.wait_timeout(WAIT))
                .map(|e| e.0)
        };
        match r {
            Ok(e) => out.sealed = out.sealed.max(e),
            Err(Error::Timeout(what)) => {
                out.hang = Some(format!(
                    "epoch {}: {what} did not resolve within {WAIT:?}",
                    base + i
                ));
                break;
            }
            Err(e) => out.errors.push(format!("epoch {}: {e}", base + i)),
        }
    }
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(rt.shutdown());
    });
    match wait.recv_timeout(SHUTDOWN_WAIT) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => out.errors.push(format!("shutdown: {e}")),
        Err(_) => {
            let h = format!("shutdown did not return within {SHUTDOWN_WAIT:?}");
            out.hang = Some(out.hang.take().map_or(h.clone(), |o| format!("{o}; {h}")));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The checks.

static PANICS: AtomicU64 = AtomicU64::new(0);
/// `kind:operation` of every fault that no call reported (the library
/// retried, or did not need, what failed).
static ABSORBED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::Relaxed);
            prev(info);
        }));
    });
}

/// What a healthy restart must find after `acked` was acknowledged.
fn check_recovers(dir: &Path, acked: &Outcome, trial: &str) -> Result<(), String> {
    let after = run(dir, None, 1, &[]);
    if let Some(h) = &after.hang {
        return Err(format!("{trial}: the healthy restart hung: {h}"));
    }
    if !after.errors.is_empty() {
        return Err(format!(
            "{trial}: the healthy restart failed: {:?}",
            after.errors
        ));
    }
    let mut sealed = None;
    for r in &after.restored {
        let r = r
            .as_ref()
            .map_err(|e| format!("{trial}: healthy restore: {e}"))?;
        if r.sealed < acked.sealed {
            return Err(format!(
                "{trial}: shard {} recovered sealed epoch {}, but {} was acknowledged",
                r.shard, r.sealed, acked.sealed
            ));
        }
        if let Some(&(id, _)) = acked.checkpoints.last()
            && r.checkpoint.is_none_or(|c| c < id)
        {
            return Err(format!(
                "{trial}: shard {} restored from checkpoint {:?}, but {id} was acknowledged",
                r.shard, r.checkpoint
            ));
        }
        if *sealed.get_or_insert(r.sealed) != r.sealed {
            return Err(format!(
                "{trial}: the shards recovered different sealed epochs"
            ));
        }
    }
    if after.restored.len() != 2 {
        return Err(format!("{trial}: {} shards restored", after.restored.len()));
    }
    if after.sealed <= sealed.unwrap_or(0) {
        return Err(format!("{trial}: no epoch sealed after the restart"));
    }
    Ok(())
}

/// Check one faulty run against what its injector did.
fn check_faulty(kind: &Kind, inj: &Injector, out: &Outcome, trial: &str) -> Result<(), String> {
    if let Some(h) = &out.hang {
        return Err(format!(
            "{trial}: hang after the fault on {:?}: {h}",
            inj.fired()
        ));
    }
    for r in &out.restored {
        // A restore may fail (the fault hit its reads); it must never
        // return wrong records.
        if let Err(e) = r
            && !e.contains(kind.fault.names())
            && !e.contains("poisoned")
        {
            return Err(format!(
                "{trial}: restore failed with an unrelated error: {e}"
            ));
        }
    }
    let Some((class, op, path)) = inj.fired() else {
        return Ok(());
    };
    let surfaced = out.errors.iter().any(|e| e.contains(kind.fault.names()))
        || out.restored.iter().any(|r| r.is_err());
    if !surfaced && matches!(class, Class::Write | Class::Sync | Class::Grow) {
        return Err(format!(
            "{trial}: {op} on {} failed and no call returned the error \
             (acknowledged: sealed {}, checkpoints {:?})",
            path.display(),
            out.sealed,
            out.checkpoints
        ));
    }
    for e in &out.errors {
        if e.contains("start:") && !e.contains(kind.fault.names()) {
            return Err(format!(
                "{trial}: the start failed with an unrelated error: {e}"
            ));
        }
    }
    Ok(())
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Positions of `kind`'s classes in a fault-free run of the same workload
/// (the writing run, or a recovering start of a complete log).
fn positions(kind: &Kind, pristine: &Path, scratch: &Path) -> u64 {
    let inj = Injector::new(kind, u64::MAX);
    let dir = scratch.join(format!("count-{}", kind.name));
    let out = if kind.in_recovery {
        common::copy_dir(pristine, &dir);
        run(&dir, Some(inj.clone()), 2, &[2])
    } else {
        run(&dir, Some(inj.clone()), EPOCHS, &CHECKPOINTS)
    };
    assert!(
        out.errors.is_empty(),
        "{}: fault-free run failed: {:?}",
        kind.name,
        out.errors
    );
    inj.seen.load(Ordering::Relaxed)
}

/// One trial: `kind`'s fault at position `at`.
fn trial(kind: &Kind, at: u64, pristine: &Path, scratch: &Path) -> Result<&'static str, String> {
    let name = format!("{}:{at}", kind.name);
    let dir = scratch.join(&name);
    let inj = Injector::new(kind, at);
    let out = if kind.in_recovery {
        common::copy_dir(pristine, &dir);
        let mut out = run(&dir, Some(inj.clone()), 2, &[2]);
        // The pristine log's epochs and checkpoints were acknowledged.
        out.sealed = out.sealed.max(EPOCHS);
        out
    } else {
        run(&dir, Some(inj.clone()), EPOCHS, &CHECKPOINTS)
    };
    if std::env::var(ONLY_ENV).is_ok() {
        eprintln!("{name}: fault on {:?}\n{out:#?}", inj.fired());
    }
    check_faulty(kind, &inj, &out, &name)?;
    if kind.in_recovery {
        // A failed read is never taken for the end of the log: a start
        // that succeeds recovers the whole of it.
        for r in out.restored.iter().flatten() {
            if r.sealed < EPOCHS {
                return Err(format!(
                    "{name}: shard {} recovered sealed epoch {} of {EPOCHS} after the fault on {:?}",
                    r.shard,
                    r.sealed,
                    inj.fired()
                ));
            }
        }
    }
    let mut acked = out;
    if kind.in_recovery {
        let (id, epoch) = pristine_checkpoint(pristine);
        if acked.checkpoints.is_empty() {
            acked.checkpoints.push((id, epoch));
        }
    }
    check_recovers(&dir, &acked, &name)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(match inj.fired() {
        None => "not reached",
        Some((_, op, path)) if acked.errors.is_empty() => {
            // The kind of file: its extension, or its name.
            let file = path
                .extension()
                .or(path.file_name())
                .map(|e| e.to_string_lossy().into_owned());
            let file = file.unwrap_or_default();
            let file = if file.starts_with("shard-") {
                "shard dir".to_string()
            } else {
                file
            };
            ABSORBED
                .lock()
                .unwrap()
                .push(format!("{}:{op}({file})", kind.name));
            if std::env::var("SHARDWAL_FAULT_SHOW").is_ok() {
                eprintln!("absorbed {name}: {op} {}", path.display());
            }
            "absorbed"
        }
        Some(_) => "failed cleanly",
    })
}

/// The newest checkpoint of the pristine log, as (id, epoch).
fn pristine_checkpoint(pristine: &Path) -> (u64, u64) {
    let (m, _) = runtime_common::load_newest(pristine);
    let m = m.expect("the pristine log has a checkpoint");
    (m.checkpoint, m.epoch)
}

#[test]
fn a_fault_at_any_io_position_fails_cleanly_and_loses_nothing_durable() {
    count_panics();
    let scratch = tempfile::tempdir().unwrap();
    let pristine = scratch.path().join("pristine");
    let out = run(&pristine, None, EPOCHS, &CHECKPOINTS);
    assert!(out.errors.is_empty(), "pristine run: {:?}", out.errors);
    assert_eq!(out.sealed, EPOCHS);
    assert_eq!(out.checkpoints.len(), CHECKPOINTS.len());

    let only = std::env::var(ONLY_ENV).ok();
    let stride = env_u64(STRIDE_ENV).unwrap_or(1).max(1);
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for kind in KINDS {
        if let Some(o) = &only
            && !o.starts_with(&format!("{}:", kind.name))
        {
            continue;
        }
        let n = positions(kind, &pristine, scratch.path());
        assert!(n > 0, "{}: no positions", kind.name);
        let at: Vec<u64> = match &only {
            Some(o) => vec![o.rsplit(':').next().unwrap().parse().expect("kind:n")],
            None => (0..n).step_by(stride as usize).collect(),
        };
        let (mut clean, mut absorbed, mut missed) = (0, 0, 0);
        let mut failed_here = 0;
        for &i in &at {
            if failed_here == 3 {
                eprintln!(
                    "{}: 3 failures, the rest of this sweep is skipped",
                    kind.name
                );
                break;
            }
            match trial(kind, i, &pristine, scratch.path()) {
                Ok("failed cleanly") => clean += 1,
                Ok("absorbed") => absorbed += 1,
                Ok(_) => missed += 1,
                Err(e) => {
                    eprintln!("FAIL {e}\n  replay: {ONLY_ENV}={}:{i}", kind.name);
                    failures.push(e);
                    failed_here += 1;
                }
            }
        }
        table.push(format!(
            "| {} | {n} | {} | {clean} | {absorbed} | {missed} |",
            kind.name,
            at.len()
        ));
    }
    eprintln!(
        "| fault | positions | trials | failed cleanly | absorbed | not reached |\n|---|---|---|---|---|---|\n{}\n{:.1} s",
        table.join("\n"),
        t0.elapsed().as_secs_f64()
    );
    let mut absorbed = std::collections::BTreeMap::<String, u32>::new();
    for a in ABSORBED.lock().unwrap().iter() {
        *absorbed.entry(a.clone()).or_default() += 1;
    }
    eprintln!("absorbed faults, by kind and operation: {absorbed:?}");
    assert_eq!(PANICS.load(Ordering::Relaxed), 0, "a panic happened");
    assert!(
        failures.is_empty(),
        "{} trials failed: {failures:#?}",
        failures.len()
    );
}

// ---------------------------------------------------------------------------
// ENOSPC on a real file system.

/// A small ext4 image, loop-mounted; unmounted when dropped.
struct LoopMount {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopMount {
    /// `Err(why)` where this machine cannot do it (not root, no
    /// `mkfs.ext4`, mounting not allowed).
    fn new(bytes: u64) -> Result<LoopMount, String> {
        use std::process::Command;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(bytes))
            .map_err(|e| e.to_string())?;
        let ok = |c: &mut Command, what: &str| match c.output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "{what}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("{what}: {e}")),
        };
        ok(
            Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img),
            "mkfs.ext4",
        )?;
        ok(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mnt),
            "mount -o loop",
        )?;
        Ok(LoopMount { mnt, _dir: dir })
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let umount = |args: &[&str]| {
            std::process::Command::new("umount")
                .args(args)
                .arg(&self.mnt)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !umount(&[]) {
            let held = open_under(&self.mnt);
            eprintln!("still open on the image: {held:?}");
            // Something still holds a file (a leaked descriptor): detach now,
            // the kernel finishes when it is closed.
            umount(&["-l"]);
        }
    }
}

/// The files under `dir` this process has open.
fn open_under(dir: &Path) -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|p| p.starts_with(dir))
        .map(|p| p.display().to_string())
        .collect()
}

/// Fill `path` with 1 MiB writes until the file system refuses one
/// (`ENOSPC`), then fdatasync; returns the error.
fn fill(path: &Path) -> io::Error {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0xA5u8; 1 << 20];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_data()) {
            return e;
        }
    }
}

#[test]
fn enospc_on_a_full_ext4_image_fails_cleanly_and_a_reopen_after_freeing_space_keeps_everything() {
    count_panics();
    let mount = match LoopMount::new(32 << 20) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped: no loop-mounted ext4 here ({why})");
            return;
        }
    };
    let dir = mount.mnt.join("log");
    let filler = mount.mnt.join("filler");
    let mut fill_thread = None;
    // Start filling once the runtime is writing; go on requesting epochs
    // and checkpoints while the space runs out.
    let out = run_calling(&dir, None, 300, &[10, 40, 120, 200], &mut |i| {
        if i == 20 {
            let f = filler.clone();
            fill_thread = Some(std::thread::spawn(move || fill(&f)));
        }
        if i > 20 {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let filled = fill_thread.expect("filler started").join().expect("filler");
    assert_eq!(
        filled.raw_os_error(),
        Some(libc_errno::ENOSPC),
        "the filler stopped at {filled}"
    );
    assert!(out.hang.is_none(), "hang: {:?}", out.hang);
    assert!(
        out.sealed >= 19,
        "epochs sealed before the disk filled: {}",
        out.sealed
    );
    let nospace = out
        .errors
        .iter()
        .find(|e| e.contains(Fault::Enospc.names()))
        .unwrap_or_else(|| {
            panic!(
                "no call reported ENOSPC: {:?} (sealed {})",
                out.errors, out.sealed
            )
        });
    eprintln!(
        "sealed {} epochs, {} checkpoints, then: {nospace}",
        out.sealed,
        out.checkpoints.len()
    );
    // Free the space, and reopen.
    std::fs::remove_file(&filler).expect("remove the filler");
    check_recovers(&dir, &out, "enospc on ext4").unwrap();
    // Both runtimes have shut down: none of their files is still open
    // (a file glommio closes only at its reactor's next turn would be).
    let held = open_under(&mount.mnt);
    assert!(held.is_empty(), "still open after shutdown: {held:?}");
    assert_eq!(PANICS.load(Ordering::Relaxed), 0, "a panic happened");
}
