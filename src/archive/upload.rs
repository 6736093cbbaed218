//! The archiver thread: one per runtime, beside the coordinator.
//!
//! It owns a tokio current-thread runtime (the S3 client needs one) and
//! reads the log's files with positional `std` reads after they are
//! durable; it never runs on a shard's executor and never touches the
//! append path. Its cycle:
//!
//! 1. **Lease.** At start it creates `lease/<g>` with `PutMode::Create`, `g`
//!    one above every lease present: of two writers racing for one prefix,
//!    one fails. Before each index it checks that `lease/<g + 1>` does not
//!    exist; once a newer writer (a restored node) has taken the prefix,
//!    this one stops archiving for good and says so (`last_error`,
//!    failed tickets).
//! 2. **Pass** (at most every `interval`, or once `every_epochs` epochs
//!    sealed since the last): for a sealed epoch `e`, each live shard's
//!    segments before the one holding `barrier(e)`, and that segment up to
//!    the end of `barrier(e)` (its [`Point`]); every segment of a retired
//!    shard; every manifest present, after the snapshots it names; the
//!    `LAYOUT` and `LOG_ID`. A file is uploaded once, in parts of at most
//!    `PART_MAX` bytes, as its durable prefix grows: a segment's bytes go
//!    out as delta objects, each uploaded once; trailing zeros are not
//!    uploaded. Every upload is retried with backoff until it succeeds
//!    (safe: an object's name says what its bytes are, and its size is
//!    checked after the upload).
//! 3. **Index** `index/<g>-<e>`, created once everything it names is in the
//!    store; then the watermark moves to `e` and the coordinator may let
//!    the shards truncate what checkpoint `≤ e` made unneeded.
//! 4. **Retention**: the objects no kept index names are deleted.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, select};
use futures_lite::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::chunk::{ChunkFile, ChunkPool};
use super::index::{ArchiveIndex, FileEntry, INDEX_VERSION, MAX_INDEX, PART_MAX, Part};
use super::names;
use super::points::{Point, ShardPoints};
use super::priority;
use super::{ArchiveConfig, ArchiveShared};
use crate::checkpoint::{manifest, snapshot};
use crate::error::{Error, Result};
use crate::ids::{Epoch, ShardId};
use crate::segment;

/// Everything the archiver thread needs.
pub(crate) struct ArchiverStart {
    pub cfg: ArchiveConfig,
    pub log_dir: PathBuf,
    pub log_id: [u8; 16],
    /// Points of the live shards `0..points.len()`.
    pub points: Vec<Arc<ShardPoints>>,
    pub shared: Arc<ArchiveShared>,
    /// Each epoch the coordinator seals.
    pub sealed: Receiver<Epoch>,
    /// The sealed epoch at start.
    pub start_sealed: Epoch,
    /// Tells the coordinator how far the archive reaches (truncation waits
    /// for it).
    pub on_archived: Box<dyn Fn(Epoch) + Send>,
}

/// The runtime's handle on the archiver thread.
pub(crate) struct ArchiverHandle {
    stop: Arc<Stop>,
    wake: Sender<()>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
    final_timeout: Duration,
}

#[derive(Default)]
struct Stop {
    requested: AtomicBool,
    deadline: Mutex<Option<Instant>>,
}

impl Stop {
    fn past_deadline(&self) -> bool {
        self.requested.load(Ordering::Acquire)
            && self
                .deadline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some_and(|d| Instant::now() >= d)
    }
}

impl ArchiverHandle {
    /// Run the final pass (up to the last sealed epoch) and stop; waits at
    /// most the configured final-pass timeout.
    pub(crate) fn finish(mut self) -> Result<()> {
        let limit = self.final_timeout;
        *self
            .stop
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now() + limit);
        self.stop.requested.store(true, Ordering::Release);
        crate::reply::send_or_gone(&self.wake, ());
        // Two seconds past the limit: the pass gives up at the limit.
        match self.done.recv_timeout(limit + Duration::from_secs(2)) {
            Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    t.join().map_err(|_| Error::Archive {
                        object: String::new(),
                        cause: "the archiver thread panicked".into(),
                    })?;
                }
                Ok(())
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(Error::Timeout(
                "the archive's final pass (the archiver thread is left behind)".into(),
            )),
        }
    }
}

impl Drop for ArchiverHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.requested.store(true, Ordering::Release);
            *self
                .stop
                .deadline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
            crate::reply::send_or_gone(&self.wake, ());
        }
    }
}

/// Start the archiver thread.
pub(crate) fn spawn(start: ArchiverStart) -> Result<ArchiverHandle> {
    let stop = Arc::new(Stop::default());
    let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let final_timeout = start.cfg.final_pass_timeout;
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("shardwal-archiver".into())
        .spawn(move || {
            run(start, s, wake_rx);
            crate::reply::send_or_gone(&done_tx, ());
        })
        .map_err(|e| Error::io("spawn archiver thread", "", e))?;
    Ok(ArchiverHandle {
        stop,
        wake: wake_tx,
        done: done_rx,
        thread: Some(thread),
        final_timeout,
    })
}

/// Why a pass did not complete.
enum PassError {
    /// A newer writer holds the prefix: stop for good.
    Superseded(String),
    /// Given up (at shutdown) or failed: try again at the next pass.
    Failed(String),
    /// A create-once object (lease, index) is there already.
    Exists(String),
}

/// `PutMode::Create`: the lease and the index are created once.
fn create_once() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    }
}

fn run(start: ArchiverStart, stop: Arc<Stop>, wake: Receiver<()>) {
    let shared = start.shared.clone();
    let mut builder = tokio::runtime::Builder::new_current_thread();
    if start.cfg.background {
        priority::background_thread();
        // The blocking threads (the local backend's file I/O) too.
        builder.on_thread_start(priority::background_thread);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let why = format!("could not start its I/O runtime: {e}");
            shared.set_error(Some(why.clone()));
            shared.stop(&why);
            return;
        }
    };
    let sealed = start.sealed;
    let interval = start.cfg.interval;
    let every = start.cfg.every_epochs.max(1);
    let on_archived = start.on_archived;
    let mut a = Archiver {
        root: names::log_root(&start.cfg.prefix, start.log_id),
        cfg: start.cfg,
        log_dir: start.log_dir,
        log_id: start.log_id,
        points: start.points,
        shared: shared.clone(),
        stop: stop.clone(),
        generation: 0,
        known: HashSet::new(),
        files: BTreeMap::new(),
        recent: VecDeque::new(),
        pool: ChunkPool::new(PART_MAX as usize),
    };
    if let Err(e) = rt.block_on(a.init()) {
        let why = pass_msg(e);
        tracing::error!(error = %why, "archiving is off: the archiver could not start");
        shared.set_error(Some(why.clone()));
        shared.stop(&why);
        return;
    }
    let mut latest = start.start_sealed;
    let mut archived = Epoch(0);
    let mut last_pass: Option<Instant> = None;
    loop {
        let stopping = stop.requested.load(Ordering::Acquire);
        if stopping {
            // Every epoch the coordinator sealed is in the channel by now.
            while let Ok(e) = sealed.try_recv() {
                latest = latest.max(e);
            }
        }
        let due = latest > archived
            && latest.0 > 0
            && (stopping
                || last_pass.is_none_or(|t| t.elapsed() >= interval)
                || latest.0 - archived.0 >= every);
        if due {
            last_pass = Some(Instant::now());
            match rt.block_on(a.pass(latest)) {
                Ok(()) => {
                    archived = latest;
                    shared.set_error(None);
                    on_archived(latest);
                }
                Err(PassError::Superseded(why)) => {
                    tracing::error!(error = %why, "archiving stopped");
                    shared.set_error(Some(why.clone()));
                    shared.stop(&why);
                    return;
                }
                Err(PassError::Failed(why) | PassError::Exists(why)) => {
                    tracing::warn!(epoch = latest.0, error = %why, "archive pass failed; retried");
                    shared.set_error(Some(why));
                }
            }
        }
        if stopping {
            break;
        }
        let timeout = if latest > archived {
            let since = last_pass.map_or(interval, |t| t.elapsed());
            interval.saturating_sub(since).max(Duration::from_millis(1))
        } else {
            Duration::from_secs(3600)
        };
        select! {
            recv(sealed) -> e => match e {
                Ok(e) => latest = latest.max(e),
                // The coordinator is gone; the runtime's stop follows.
                Err(_) => {
                    if wake.recv().is_err() {
                        break;
                    }
                }
            },
            recv(wake) -> _ => {}
            default(timeout) => {}
        }
    }
    let why = "the runtime has shut down";
    shared.stop(why);
}

/// How much of a file a pass archives.
#[derive(Clone, Copy)]
enum Upto {
    /// All of it.
    Whole,
    /// Its first bytes: a live shard's segment up to a sealed barrier.
    Prefix(u64),
    /// All of it, read afresh each pass (`LAYOUT`, `LOG_ID`: small, and
    /// `LAYOUT` is rewritten in place by name).
    Fresh,
}

/// What was uploaded of one local file.
#[derive(Default, Clone)]
struct Uploaded {
    len: u64,
    parts: Vec<Part>,
}

struct Archiver {
    cfg: ArchiveConfig,
    root: ObjPath,
    log_dir: PathBuf,
    log_id: [u8; 16],
    points: Vec<Arc<ShardPoints>>,
    shared: Arc<ArchiveShared>,
    stop: Arc<Stop>,
    generation: u64,
    /// Data objects known to be in the store (names relative to the root).
    known: HashSet<String>,
    /// Per local file (relative path), what this process uploaded of it.
    files: BTreeMap<String, Uploaded>,
    /// The kept indexes, oldest first, with the objects each names.
    recent: VecDeque<(ObjPath, HashSet<String>)>,
    /// Read buffers, handed to the store as payloads.
    pool: ChunkPool,
}

fn failed(what: &str, e: impl std::fmt::Display) -> PassError {
    PassError::Failed(format!("{what}: {e}"))
}

impl Archiver {
    /// Run `op` until it succeeds, with exponential backoff; give up only
    /// past the shutdown deadline. `AlreadyExists` is not retried.
    async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> std::result::Result<T, PassError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut delay = Duration::from_millis(50);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e @ object_store::Error::AlreadyExists { .. }) => {
                    return Err(PassError::Exists(format!("{what}: {e}")));
                }
                Err(e) => {
                    if self.stop.past_deadline() {
                        return Err(failed(what, format!("{e} (given up at shutdown)")));
                    }
                    tracing::debug!(what, error = %e, "object store operation failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.cfg.retry_max);
                }
            }
        }
    }

    async fn list_names(&self, dir: &ObjPath) -> std::result::Result<Vec<String>, PassError> {
        self.retry("list", || async {
            let mut out = Vec::new();
            let mut s = self.cfg.store.list(Some(dir));
            while let Some(m) = s.next().await {
                out.push(m?.location.to_string());
            }
            Ok(out)
        })
        .await
    }

    async fn init(&mut self) -> std::result::Result<(), PassError> {
        // The lease.
        let leases = self.list_names(&names::lease_dir(&self.root)).await?;
        let newest = leases
            .iter()
            .filter_map(|l| l.rsplit('/').next().and_then(names::parse_lease))
            .max()
            .unwrap_or(0);
        let g = newest + 1;
        let lease = names::lease(&self.root, g);
        let body = format!(
            "{{\"generation\":{g},\"pid\":{},\"dir\":{:?}}}\n",
            std::process::id(),
            self.log_dir.display().to_string()
        );
        match self
            .retry("create the lease", || {
                self.cfg
                    .store
                    .put_opts(&lease, PutPayload::from(body.clone()), create_once())
            })
            .await
        {
            Ok(_) => {}
            Err(PassError::Exists(_)) => {
                return Err(PassError::Superseded(format!(
                    "another writer took archive generation {g} at {lease}"
                )));
            }
            Err(e) => return Err(e),
        }
        self.generation = g;
        tracing::info!(lease = %lease, "archive lease taken");
        // What is there already.
        let root = format!("{}/", self.root);
        for n in self.list_names(&self.root.clone().join("data")).await? {
            if let Some(rel) = n.strip_prefix(&root) {
                self.known.insert(rel.to_string());
            }
        }
        let mut ix: Vec<(u64, u64, String)> = self
            .list_names(&names::index_dir(&self.root))
            .await?
            .into_iter()
            .filter_map(|n| {
                let (g, e) = names::parse_index(n.rsplit('/').next()?)?;
                Some((g, e, n))
            })
            .collect();
        ix.sort();
        let keep = self.cfg.keep_indexes.max(1);
        let from = ix.len().saturating_sub(keep);
        for (_, _, name) in ix.drain(..).skip(from) {
            let p = ObjPath::from(name);
            match self.read_index(&p).await {
                Ok(i) => self.recent.push_back((p, objects_of(&i))),
                Err(why) => {
                    tracing::warn!(index = %p, error = %why, "an archived index is unreadable; it does not hold objects back");
                }
            }
        }
        Ok(())
    }

    async fn read_index(&self, p: &ObjPath) -> std::result::Result<ArchiveIndex, String> {
        let meta = self
            .retry("head index", || self.cfg.store.head(p))
            .await
            .map_err(pass_msg)?;
        if meta.size > MAX_INDEX {
            return Err(format!("{} bytes, more than {MAX_INDEX}", meta.size));
        }
        let b = self
            .retry("get index", || async {
                self.cfg.store.get(p).await?.bytes().await
            })
            .await
            .map_err(pass_msg)?;
        ArchiveIndex::decode(&b, self.log_id).map_err(|e| e.to_string())
    }

    /// Archive every shard's files up to `barrier(target)`, then write the
    /// index.
    async fn pass(&mut self, target: Epoch) -> std::result::Result<(), PassError> {
        let started = Instant::now();
        let mut plan: Vec<(String, Upto, Option<usize>)> = Vec::new();
        plan.push((crate::log_dir::LOG_ID_FILE.to_string(), Upto::Fresh, None));
        plan.push((crate::layout::LAYOUT_FILE.to_string(), Upto::Fresh, None));
        let points: Vec<Point> = self
            .points
            .iter()
            .enumerate()
            .map(|(s, p)| {
                p.at_or_below(target).ok_or_else(|| {
                    PassError::Failed(format!(
                        "shard {s} published no barrier position at or below epoch {}",
                        target.0
                    ))
                })
            })
            .collect::<std::result::Result<_, _>>()?;
        // Shard directories: live ones up to their point, others whole.
        let dirs = list_dir(&self.log_dir).map_err(|e| failed("list the log directory", e))?;
        let mut shard_dirs: Vec<(ShardId, String)> = dirs
            .iter()
            .filter_map(|n| segment::parse_shard_dir_name(n).map(|s| (s, n.clone())))
            .collect();
        shard_dirs.sort();
        for (shard, dname) in &shard_dirs {
            let names_here = match list_dir(&self.log_dir.join(dname)) {
                Ok(n) => n,
                // Removed (a retired shard no checkpoint needs any more).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed("list a shard directory", e)),
            };
            let live = points.get(shard.0 as usize);
            for (index, name) in segment::segments_in(&names_here) {
                let upto = match live {
                    None => Upto::Whole,
                    Some(p) if index < p.segment => Upto::Whole,
                    Some(p) if index == p.segment => Upto::Prefix(p.end),
                    Some(_) => continue,
                };
                plan.push((
                    format!("{dname}/{name}"),
                    upto,
                    live.map(|_| shard.0 as usize),
                ));
            }
        }
        // Checkpoints: each manifest after its snapshots.
        let cdir = self.log_dir.join(manifest::CHECKPOINT_DIR);
        let mut ids: Vec<u64> = match list_dir(&cdir) {
            Ok(n) => n
                .iter()
                .filter_map(|n| manifest::parse_manifest_name(n))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(failed("list the checkpoints directory", e)),
        };
        ids.sort_unstable();
        for id in ids {
            let mname = manifest::manifest_name(id);
            let rel = format!("{}/{mname}", manifest::CHECKPOINT_DIR);
            let m = match std::fs::read(cdir.join(&mname)) {
                Ok(b) => match manifest::decode(&b) {
                    Ok(m) if m.epoch <= target.0 && m.log_id == self.log_id => m,
                    // Newer than the archived epoch, or damaged: recovery
                    // would skip a damaged one too.
                    _ => continue,
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed("read a manifest", e)),
            };
            for sc in &m.shards {
                let dname = segment::shard_dir(std::path::Path::new(""), ShardId(sc.shard));
                plan.push((
                    format!("{}/{}", dname.display(), sc.snapshot.file),
                    Upto::Whole,
                    None,
                ));
            }
            plan.push((rel, Upto::Fresh, None));
        }
        // Upload, in plan order.
        let mut files = Vec::with_capacity(plan.len());
        let mut bytes = 0u64;
        for (i, (rel, upto, live)) in plan.iter().enumerate() {
            match self.archive_file(rel, *upto).await {
                Ok(Some((entry, sent))) => {
                    bytes += sent;
                    files.push(entry);
                }
                Ok(None) => {
                    // A snapshot a manifest names must be there.
                    if snapshot::parse_snapshot_name(rel.rsplit('/').next().unwrap_or("")).is_some()
                    {
                        return Err(PassError::Failed(format!(
                            "{rel}, named by a manifest, is missing"
                        )));
                    }
                }
                Err(e) => return Err(e),
            }
            // A live shard's files are all in once the plan moves past them.
            if let Some(s) = live
                && plan.get(i + 1).is_none_or(|n| n.2 != Some(*s))
            {
                self.shared.set_shard(*s, target);
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup_by(|a, b| a.path == b.path);
        // Forget files that are gone locally (truncated segments).
        self.files
            .retain(|p, _| files.binary_search_by(|f| f.path.as_str().cmp(p)).is_ok());
        let ix = ArchiveIndex {
            version: INDEX_VERSION,
            log_id: names::log_id_hex(self.log_id),
            generation: self.generation,
            epoch: target.0,
            files,
        };
        // The fence: a newer writer may have taken the prefix.
        let next = names::lease(&self.root, self.generation + 1);
        match self.cfg.store.head(&next).await {
            Ok(_) => {
                return Err(PassError::Superseded(format!(
                    "a newer writer took the archive (lease {next}); this one stops"
                )));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(failed("check the lease", e)),
        }
        let path = names::index(&self.root, self.generation, target.0);
        let body = PutPayload::from(ix.encode());
        match self
            .retry("put the index", || {
                self.cfg.store.put_opts(&path, body.clone(), create_once())
            })
            .await
        {
            Ok(_) => {}
            Err(PassError::Exists(_)) => {
                return Err(PassError::Superseded(format!(
                    "index {path} already exists: another writer uses this generation"
                )));
            }
            Err(e) => return Err(e),
        }
        self.shared.set_archived(target);
        tracing::debug!(
            epoch = target.0,
            bytes,
            files = ix.files.len(),
            ms = started.elapsed().as_millis() as u64,
            "archived"
        );
        self.recent.push_back((path, objects_of(&ix)));
        self.retain().await;
        Ok(())
    }

    /// Delete what no kept index names. Failures are left for the next
    /// pass: an extra object costs only space.
    async fn retain(&mut self) {
        let keep = self.cfg.keep_indexes.max(1);
        while self.recent.len() > keep {
            let Some((old, _)) = self.recent.pop_front() else {
                break;
            };
            if let Err(e) = self.cfg.store.delete(&old).await {
                tracing::warn!(index = %old, error = %e, "could not delete an old index");
            }
        }
        let needed: HashSet<&String> = self.recent.iter().flat_map(|(_, o)| o.iter()).collect();
        let unneeded: Vec<String> = self
            .known
            .iter()
            .filter(|o| !needed.contains(o))
            .cloned()
            .collect();
        for o in unneeded {
            let p = names::under(&self.root, &o);
            match self.cfg.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    self.known.remove(&o);
                    self.files
                        .retain(|_, u| !u.parts.iter().any(|p| p.object == o));
                }
                Err(e) => tracing::warn!(object = %p, error = %e, "could not delete an old object"),
            }
        }
    }

    /// Upload what is new of local file `rel`; `None` if it is gone.
    /// Returns its entry and the bytes sent.
    async fn archive_file(
        &mut self,
        rel: &str,
        upto: Upto,
    ) -> std::result::Result<Option<(FileEntry, u64)>, PassError> {
        let path = self.log_dir.join(rel);
        let file = match ChunkFile::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(&format!("open {}", path.display()), e)),
        };
        let len = file
            .len()
            .map_err(|e| failed(&format!("stat {}", path.display()), e))?;
        let end = match upto {
            Upto::Whole | Upto::Fresh => len,
            Upto::Prefix(e) => e.min(len),
        };
        let mut up = self.files.remove(rel).unwrap_or_default();
        let covered = up.parts.last().map_or(0, |p| p.offset + p.len);
        if matches!(upto, Upto::Fresh) || up.len != len || covered > end {
            up = Uploaded::default();
        }
        up.len = len;
        let mut at = up.parts.last().map_or(0, |p| p.offset + p.len);
        let mut zeros_from: Option<u64> = None;
        let mut sent = 0u64;
        let r: std::result::Result<(), PassError> = async {
            while at < end {
                let n = (end - at).min(PART_MAX) as usize;
                let chunk = file
                    .read(&mut self.pool, at, n)
                    .map_err(|e| failed(&format!("read {}", path.display()), e))?;
                if chunk.iter().all(|&b| b == 0) {
                    zeros_from.get_or_insert(at);
                    at += n as u64;
                    continue;
                }
                if let Some(z) = zeros_from.take() {
                    // Zeros followed by data: they are bytes of the file.
                    let zero = Bytes::from(vec![0u8; PART_MAX as usize]);
                    let mut zat = z;
                    while zat < at {
                        let zn = (at - zat).min(PART_MAX) as usize;
                        sent += self.put_part(rel, zat, zero.slice(..zn), &mut up).await?;
                        zat += zn as u64;
                    }
                }
                sent += self.put_part(rel, at, chunk, &mut up).await?;
                at += n as u64;
            }
            Ok(())
        }
        .await;
        let entry = FileEntry {
            path: rel.to_string(),
            len,
            parts: up.parts.clone(),
        };
        self.files.insert(rel.to_string(), up);
        r?;
        Ok(Some((entry, sent)))
    }

    /// Upload one part unless it is known to be there; returns bytes sent.
    async fn put_part(
        &mut self,
        rel: &str,
        offset: u64,
        bytes: Bytes,
        up: &mut Uploaded,
    ) -> std::result::Result<u64, PassError> {
        let crc = crc32c::crc32c(&bytes);
        let object = names::data(rel, offset, bytes.len() as u64, crc);
        let mut sent = 0;
        if !self.known.contains(&object) {
            let p = names::under(&self.root, &object);
            let want = bytes.len() as u64;
            let payload = PutPayload::from(bytes.clone());
            self.retry("upload", || async {
                self.cfg.store.put(&p, payload.clone()).await?;
                // The check that makes the retry safe: the object is there,
                // whole.
                let meta = self.cfg.store.head(&p).await?;
                if meta.size != want {
                    return Err(object_store::Error::Generic {
                        store: "shardwal",
                        source: format!("{p} holds {} bytes after upload, not {want}", meta.size)
                            .into(),
                    });
                }
                Ok(())
            })
            .await?;
            self.known.insert(object.clone());
            sent = want;
        }
        up.parts.push(Part {
            object,
            offset,
            len: bytes.len() as u64,
            crc,
        });
        Ok(sent)
    }
}

fn pass_msg(e: PassError) -> String {
    match e {
        PassError::Superseded(w) | PassError::Failed(w) | PassError::Exists(w) => w,
    }
}

fn objects_of(ix: &ArchiveIndex) -> HashSet<String> {
    ix.files
        .iter()
        .flat_map(|f| f.parts.iter().map(|p| p.object.clone()))
        .collect()
}

fn list_dir(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        if let Some(n) = e?.file_name().to_str() {
            out.push(n.to_string());
        }
    }
    Ok(out)
}
