//! In-memory storage that injects faults and simulates crashes.
//!
//! Every file keeps two images: `live` (what reads see) and `durable` (what
//! survives a crash), plus the list of writes since the last `sync_data`.
//! Names are likewise live or durable (made durable by `sync_dir`), and
//! each directory keeps the list of its name changes (create, remove,
//! rename) since its last `sync_dir`.
//! [`SimStorage::crash`] builds the disk a machine would see after power
//! loss: durable names and bytes, plus a random subset of the unsynced
//! writes, each applied whole, dropped, or torn at 512-byte sector
//! granularity (the media assumption of `docs/FORMAT.md`).
//!
//! For exhaustive exploration, [`SimStorage::pending`] lists what a crash
//! now could still lose, and [`SimStorage::crash_as`] builds one chosen
//! state: each unsynced write dropped, kept or torn (at any unit, 512 B
//! or 4 KiB), and, per directory, how many of its unsynced name changes
//! survive (a prefix: a journaling file system commits them in order).
//! [`SimStorage::on_last_drop`] hands a disk that a runtime's executor
//! owned back to the test when the executor lets go of it.
//!
//! Faults: EIO or ENOSPC or a short write on the n-th write or on the next
//! write to a given file, EIO on the n-th fsync, and a capacity after which
//! writes fail with ENOSPC.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{AlignedBuf, Storage, StorageFile};
/// The PRNG of crash decisions; it lives in [`crate::rng`] (the writer
/// draws its nonces from it too) and is re-exported here for code that
/// names it beside [`SimStorage`].
pub use crate::rng::SplitMix;

/// Sector size assumed atomic by the crash model.
pub const SECTOR: usize = 512;

/// Page size: the coarser unit a crash may tear a write at
/// ([`WriteFate::Torn`]).
pub const PAGE: usize = 4096;

/// A fault to inject into a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// The write fails with EIO.
    Eio,
    /// The write fails with ENOSPC.
    Enospc,
    /// The write stores only its first half and reports that length.
    Short,
}

/// How a crash treats writes that were not made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write is lost.
    DropAll,
    /// Every unsynced write survives (a process kill with a healthy kernel).
    KeepAll,
    /// Each unsynced write is kept, dropped or torn (random sectors kept), at random.
    Random,
}

/// What a chosen crash state ([`SimStorage::crash_as`]) does with one
/// unsynced write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFate {
    /// The write never reached the media.
    Dropped,
    /// The write reached the media whole.
    Kept,
    /// Each `unit`-byte piece of the write (512: sectors, 4096: pages)
    /// reached the media or not, as drawn from `seed`.
    Torn {
        /// The atomic unit, in bytes.
        unit: usize,
        /// Seed of the pieces' draws.
        seed: u64,
    },
}

/// One write not yet made durable by `sync_data` ([`SimStorage::pending`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWrite {
    /// A name of the file (its live one, else its durable one).
    pub path: PathBuf,
    /// Offset of the write.
    pub pos: u64,
    /// Bytes written.
    pub len: usize,
}

/// What a crash now could still lose: the unsynced writes, in the order
/// [`CrashState::writes`] refers to them (by file, in creation order; each
/// file's writes in issue order), and, per directory, the number of name
/// changes since its last `sync_dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// The unsynced writes.
    pub writes: Vec<PendingWrite>,
    /// `(directory, unsynced name changes)`, directories in path order.
    pub names: Vec<(PathBuf, usize)>,
}

/// One crash state among those [`SimStorage::pending`] allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashState {
    /// The fate of each pending write, by index; missing ones are dropped.
    pub writes: Vec<WriteFate>,
    /// For each directory of [`Pending::names`], by index, how many of its
    /// name changes survive, oldest first; missing ones: none.
    pub names: Vec<usize>,
}

#[derive(Default)]
struct FileData {
    /// Creation order, for a stable numbering of pending writes.
    id: u64,
    live: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<(u64, Vec<u8>)>,
}

type FileRef = Rc<RefCell<FileData>>;

/// A name change not yet made durable by its directory's `sync_dir`.
#[derive(Clone)]
enum NameOp {
    Link(PathBuf, FileRef),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf, FileRef),
}

impl NameOp {
    fn apply(&self, names: &mut BTreeMap<PathBuf, FileRef>) {
        match self {
            NameOp::Link(p, f) => {
                names.insert(p.clone(), f.clone());
            }
            NameOp::Unlink(p) => {
                names.remove(p);
            }
            NameOp::Rename(from, to, f) => {
                names.remove(from);
                names.insert(to.clone(), f.clone());
            }
        }
    }

    fn file(&self) -> Option<&FileRef> {
        match self {
            NameOp::Link(_, f) | NameOp::Rename(_, _, f) => Some(f),
            NameOp::Unlink(_) => None,
        }
    }
}

#[derive(Default)]
struct Fs {
    live: BTreeMap<PathBuf, FileRef>,
    durable: BTreeMap<PathBuf, FileRef>,
    dirs: BTreeMap<PathBuf, ()>,
    writes: u64,
    syncs: u64,
    write_fault: Option<(u64, WriteFault)>,
    path_fault: Option<(PathBuf, WriteFault)>,
    sync_fault: Option<u64>,
    capacity: Option<u64>,
    /// Operations that change the disk (create, write, fsync, remove,
    /// rename, truncate, directory fsync) done so far.
    changes: u64,
    /// Every change from this one on fails with EIO: the process "died".
    halt_at: Option<u64>,
    /// Paths locked by a live [`SimLock`].
    locked: std::collections::BTreeSet<PathBuf>,
    /// Files created so far (ids of [`FileData`]).
    created: u64,
    /// Per directory, its name changes since its last `sync_dir`, in order
    /// (a rename counts in the directory of its new name). Applied to the
    /// durable names, they give the live ones.
    pending_names: BTreeMap<PathBuf, Vec<NameOp>>,
    /// Called with the disk when its last handle is dropped.
    on_drop: Option<Box<dyn FnOnce(SimStorage)>>,
}

impl Drop for Fs {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            let rest = std::mem::take(self);
            f(SimStorage {
                fs: Rc::new(RefCell::new(rest)),
            });
        }
    }
}

impl Fs {
    /// EIO if the simulated process has halted (for the operations that
    /// are not counted as changes but must not happen after a halt).
    fn check_halt(&self) -> io::Result<()> {
        match self.halt_at {
            Some(h) if self.changes >= h => Err(io::Error::from_raw_os_error(libc::EIO)),
            _ => Ok(()),
        }
    }

    fn pend_name(&mut self, dir: PathBuf, op: NameOp) {
        self.pending_names.entry(dir).or_default().push(op);
    }

    /// Every file a crash now could leave under some name, in creation
    /// order: those with a durable name or named by a pending change.
    fn crash_files(&self) -> Vec<FileRef> {
        let mut files: BTreeMap<u64, FileRef> = BTreeMap::new();
        let pending = self
            .pending_names
            .values()
            .flatten()
            .filter_map(NameOp::file);
        for f in self.durable.values().chain(pending) {
            files.entry(f.borrow().id).or_insert_with(|| f.clone());
        }
        files.into_values().collect()
    }

    /// Count a change; EIO if the simulated process has halted.
    fn change(&mut self) -> io::Result<()> {
        let n = self.changes;
        self.changes += 1;
        match self.halt_at {
            Some(h) if n >= h => Err(io::Error::from_raw_os_error(libc::EIO)),
            _ => Ok(()),
        }
    }

    fn used(&self) -> u64 {
        self.live
            .values()
            .map(|f| f.borrow().live.len() as u64)
            .sum()
    }
}

/// A simulated disk's durable contents, detached from its thread (see
/// [`SimStorage::crash_image`]).
#[derive(Debug, Clone, Default)]
pub struct SimImage {
    dirs: Vec<PathBuf>,
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl SimImage {
    /// The files, with their bytes.
    pub fn files(&self) -> &[(PathBuf, Vec<u8>)] {
        &self.files
    }

    /// Add (or replace) a durable file, and its directory: for example a
    /// log's `LOG_ID`, which the runtime keeps on the real disk, for
    /// readers that go through the simulated one.
    pub fn with_file(mut self, path: &Path, bytes: &[u8]) -> SimImage {
        let dir = parent(path);
        if !self.dirs.contains(&dir) {
            self.dirs.push(dir);
        }
        self.files.retain(|(p, _)| p != path);
        self.files.push((path.to_path_buf(), bytes.to_vec()));
        self
    }
}

/// The simulated storage. Clones share one simulated disk.
#[derive(Clone, Default)]
pub struct SimStorage {
    fs: Rc<RefCell<Fs>>,
}

/// A lock on a simulated file, released when dropped.
pub struct SimLock {
    fs: Rc<RefCell<Fs>>,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.borrow_mut().locked.remove(&self.path);
    }
}

/// An open simulated file.
pub struct SimFile {
    fs: Rc<RefCell<Fs>>,
    data: FileRef,
    path: PathBuf,
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn apply(image: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
    let pos = pos as usize;
    if image.len() < pos + bytes.len() {
        image.resize(pos + bytes.len(), 0);
    }
    image[pos..pos + bytes.len()].copy_from_slice(bytes);
}

impl SimStorage {
    /// An empty simulated disk.
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    /// Make the write that comes `after` more writes from now fail with `fault`
    /// (`after = 0`: the very next write).
    pub fn fail_write(&self, after: u64, fault: WriteFault) {
        let mut fs = self.fs.borrow_mut();
        fs.write_fault = Some((fs.writes + after, fault));
    }

    /// Make the next write to the file opened or created at `path` (now or
    /// later) fail with `fault`. Unlike [`SimStorage::fail_write`], this
    /// aims at one file whatever else is written meanwhile, e.g. the next
    /// segment being prepared in the background.
    pub fn fail_write_to(&self, path: &Path, fault: WriteFault) {
        self.fs.borrow_mut().path_fault = Some((path.to_path_buf(), fault));
    }

    /// Make the fsync that comes `after` more fsyncs from now fail with EIO.
    pub fn fail_sync(&self, after: u64) {
        let mut fs = self.fs.borrow_mut();
        fs.sync_fault = Some(fs.syncs + after);
    }

    /// Writes that would grow the disk's total live bytes beyond `bytes`
    /// fail with ENOSPC.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.fs.borrow_mut().capacity = bytes;
    }

    /// Let `n` more changes (create, write, fsync, remove, rename,
    /// truncate, directory fsync) through, then fail every later one with
    /// EIO, as if the process had died there: [`SimStorage::crash`] then
    /// gives the disk at that point. Explores crash points one change at a
    /// time.
    pub fn halt_after(&self, n: u64) {
        let mut fs = self.fs.borrow_mut();
        fs.halt_at = Some(fs.changes + n);
    }

    /// Changes made so far (see [`SimStorage::halt_after`]).
    pub fn changes(&self) -> u64 {
        self.fs.borrow().changes
    }

    /// Clear every injected fault.
    pub fn heal(&self) {
        let mut fs = self.fs.borrow_mut();
        fs.write_fault = None;
        fs.path_fault = None;
        fs.sync_fault = None;
        fs.capacity = None;
        fs.halt_at = None;
    }

    /// Number of completed writes and fsyncs so far.
    pub fn counters(&self) -> (u64, u64) {
        let fs = self.fs.borrow();
        (fs.writes, fs.syncs)
    }

    /// The disk as it would be found after a crash now, as a new,
    /// independent `SimStorage`. `self` is left untouched.
    pub fn crash(&self, mode: CrashMode, seed: u64) -> SimStorage {
        let mut rng = SplitMix(seed);
        let fs = self.fs.borrow();
        let mut out = Fs::default();
        out.dirs = fs.dirs.clone();
        for (path, file) in &fs.durable {
            let f = file.borrow();
            let mut image = f.durable.clone();
            for (pos, bytes) in &f.unsynced {
                let choice = match mode {
                    CrashMode::DropAll => 0,
                    CrashMode::KeepAll => 1,
                    CrashMode::Random => rng.below(3),
                };
                match choice {
                    0 => {}
                    1 => apply(&mut image, *pos, bytes),
                    _ => {
                        for (i, sector) in bytes.chunks(SECTOR).enumerate() {
                            if rng.below(2) == 0 {
                                apply(&mut image, pos + (i * SECTOR) as u64, sector);
                            }
                        }
                    }
                }
            }
            let data = Rc::new(RefCell::new(FileData {
                id: f.id,
                live: image.clone(),
                durable: image,
                unsynced: Vec::new(),
            }));
            out.live.insert(path.clone(), data.clone());
            out.durable.insert(path.clone(), data);
        }
        out.created = fs.created;
        SimStorage {
            fs: Rc::new(RefCell::new(out)),
        }
    }

    /// What a crash now could still lose (the choices of
    /// [`SimStorage::crash_as`]).
    pub fn pending(&self) -> Pending {
        let fs = self.fs.borrow();
        let name_of = |f: &FileRef| {
            let by = |m: &BTreeMap<PathBuf, FileRef>| {
                m.iter()
                    .find(|(_, g)| Rc::ptr_eq(f, g))
                    .map(|(p, _)| p.clone())
            };
            by(&fs.live).or_else(|| by(&fs.durable)).unwrap_or_default()
        };
        let mut writes = Vec::new();
        for f in fs.crash_files() {
            let d = f.borrow();
            if d.unsynced.is_empty() {
                continue;
            }
            let path = name_of(&f);
            for (pos, bytes) in &d.unsynced {
                writes.push(PendingWrite {
                    path: path.clone(),
                    pos: *pos,
                    len: bytes.len(),
                });
            }
        }
        let names = fs
            .pending_names
            .iter()
            .filter(|(_, ops)| !ops.is_empty())
            .map(|(d, ops)| (d.clone(), ops.len()))
            .collect();
        Pending { writes, names }
    }

    /// The disk as one chosen crash now would leave it, as a new,
    /// independent `SimStorage` (every byte and name durable): durable
    /// bytes plus each unsynced write as `state.writes` says, applied in
    /// issue order, and durable names plus, per directory, the first
    /// `state.names[i]` of its unsynced name changes. Indices are those
    /// of [`SimStorage::pending`]. `self` is left untouched.
    pub fn crash_as(&self, state: &CrashState) -> SimStorage {
        let fs = self.fs.borrow();
        let mut out = Fs::default();
        out.dirs = fs.dirs.clone();
        out.created = fs.created;
        let mut fates = state.writes.iter();
        // Old file → its crashed copy, by id.
        let mut copies: BTreeMap<u64, FileRef> = BTreeMap::new();
        for f in fs.crash_files() {
            let d = f.borrow();
            let mut image = d.durable.clone();
            for (pos, bytes) in &d.unsynced {
                match fates.next().copied().unwrap_or(WriteFate::Dropped) {
                    WriteFate::Dropped => {}
                    WriteFate::Kept => apply(&mut image, *pos, bytes),
                    WriteFate::Torn { unit, seed } => {
                        let mut rng = SplitMix(seed);
                        for (i, piece) in bytes.chunks(unit.max(1)).enumerate() {
                            if rng.below(2) == 0 {
                                apply(&mut image, pos + (i * unit.max(1)) as u64, piece);
                            }
                        }
                    }
                }
            }
            let copy = Rc::new(RefCell::new(FileData {
                id: d.id,
                live: image.clone(),
                durable: image,
                unsynced: Vec::new(),
            }));
            copies.insert(d.id, copy);
        }
        let copy_of = |f: &FileRef| copies[&f.borrow().id].clone();
        let mut names: BTreeMap<PathBuf, FileRef> = fs
            .durable
            .iter()
            .map(|(p, f)| (p.clone(), copy_of(f)))
            .collect();
        let dirs = fs.pending_names.values().filter(|ops| !ops.is_empty());
        for (i, ops) in dirs.enumerate() {
            let kept = state.names.get(i).copied().unwrap_or(0).min(ops.len());
            for op in &ops[..kept] {
                let op = match op {
                    NameOp::Link(p, f) => NameOp::Link(p.clone(), copy_of(f)),
                    NameOp::Unlink(p) => NameOp::Unlink(p.clone()),
                    NameOp::Rename(a, b, f) => NameOp::Rename(a.clone(), b.clone(), copy_of(f)),
                };
                op.apply(&mut names);
            }
        }
        out.live = names.clone();
        out.durable = names;
        SimStorage {
            fs: Rc::new(RefCell::new(out)),
        }
    }

    /// Call `f` with this disk once its last handle (this storage's
    /// clones, its open files and locks) is dropped: a test gets back the
    /// disk of a shard whose executor has ended, e.g. after a start that
    /// failed, to take its crash states (see [`SimStorage::crash_as`]).
    /// `f` runs on the thread that dropped the last handle.
    pub fn on_last_drop(&self, f: impl FnOnce(SimStorage) + 'static) {
        self.fs.borrow_mut().on_drop = Some(Box::new(f));
    }

    /// What [`SimStorage::crash`] would leave, as plain bytes that can be
    /// sent to another thread (a simulated disk is local to its thread,
    /// like the executor that uses it): rebuild it there with
    /// [`SimStorage::from_image`].
    pub fn crash_image(&self, mode: CrashMode, seed: u64) -> SimImage {
        let crashed = self.crash(mode, seed);
        let fs = crashed.fs.borrow();
        SimImage {
            dirs: fs.dirs.keys().cloned().collect(),
            files: fs
                .durable
                .iter()
                .map(|(p, f)| (p.clone(), f.borrow().durable.clone()))
                .collect(),
        }
    }

    /// A simulated disk holding `image`, every byte and name durable.
    pub fn from_image(image: &SimImage) -> SimStorage {
        let mut fs = Fs::default();
        for d in &image.dirs {
            fs.dirs.insert(d.clone(), ());
        }
        for (path, bytes) in &image.files {
            fs.created += 1;
            let data = Rc::new(RefCell::new(FileData {
                id: fs.created,
                live: bytes.clone(),
                durable: bytes.clone(),
                unsynced: Vec::new(),
            }));
            fs.live.insert(path.clone(), data.clone());
            fs.durable.insert(path.clone(), data);
        }
        SimStorage {
            fs: Rc::new(RefCell::new(fs)),
        }
    }

    /// The live bytes of a file, if it exists (for tests that corrupt files).
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        self.fs
            .borrow()
            .live
            .get(path)
            .map(|f| f.borrow().live.clone())
    }

    /// Replace the live and durable bytes of an existing file (for tests).
    pub fn write_file(&self, path: &Path, bytes: &[u8]) {
        if let Some(f) = self.fs.borrow().live.get(path) {
            let mut f = f.borrow_mut();
            f.live = bytes.to_vec();
            f.durable = bytes.to_vec();
            f.unsynced.clear();
        }
    }

    /// Every live file path.
    pub fn files(&self) -> Vec<PathBuf> {
        self.fs.borrow().live.keys().cloned().collect()
    }
}

impl Storage for SimStorage {
    type Buf = AlignedBuf;
    type File = SimFile;

    fn alloc_buf(&self, len: usize) -> AlignedBuf {
        AlignedBuf::zeroed(len)
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<SimFile> {
        let mut fs = self.fs.borrow_mut();
        if create {
            fs.change()?;
            if fs.live.contains_key(path) {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            if !fs.dirs.contains_key(&parent(path)) {
                return Err(io::Error::from(io::ErrorKind::NotFound));
            }
            fs.created += 1;
            let data: FileRef = Rc::new(RefCell::new(FileData {
                id: fs.created,
                ..FileData::default()
            }));
            fs.live.insert(path.to_path_buf(), data.clone());
            fs.pend_name(parent(path), NameOp::Link(path.to_path_buf(), data.clone()));
            return Ok(SimFile {
                fs: self.fs.clone(),
                data,
                path: path.to_path_buf(),
            });
        }
        let data = fs
            .live
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(SimFile {
            fs: self.fs.clone(),
            data,
            path: path.to_path_buf(),
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.change()?;
        fs.live
            .remove(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        fs.pend_name(parent(path), NameOp::Unlink(path.to_path_buf()));
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.change()?;
        let f = fs
            .live
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        fs.live.insert(to.to_path_buf(), f.clone());
        let op = NameOp::Rename(from.to_path_buf(), to.to_path_buf(), f);
        fs.pend_name(parent(to), op);
        Ok(())
    }

    /// Like `rename`, refused with `AlreadyExists` (and counted as a
    /// change) if `to` is live; the new name becomes durable with the next
    /// `sync_dir`, and a crash before it keeps the durable names.
    async fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.change()?;
        if !fs.live.contains_key(from) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        if fs.live.contains_key(to) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        if let Some(f) = fs.live.remove(from) {
            fs.live.insert(to.to_path_buf(), f.clone());
            let op = NameOp::Rename(from.to_path_buf(), to.to_path_buf(), f);
            fs.pend_name(parent(to), op);
        }
        Ok(())
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let fs = self.fs.borrow();
        if !fs.dirs.contains_key(dir) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let mut names: Vec<String> = fs
            .live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.extend(
            fs.dirs
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        );
        names.sort();
        Ok(names)
    }

    /// Directories are durable at once (the crash model loses no
    /// directory). Refused after a halt, like the changes.
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.check_halt()?;
        for anc in dir.ancestors() {
            fs.dirs.insert(anc.to_path_buf(), ());
        }
        Ok(())
    }

    type Lock = SimLock;

    /// Like `flock`: exclusive, not persisted (a crash releases it), and
    /// refused while held by anyone, this disk's clones included. The lock
    /// file itself is not created: locks hold no bytes.
    async fn lock(&self, path: &Path) -> io::Result<SimLock> {
        let mut fs = self.fs.borrow_mut();
        if !fs.locked.insert(path.to_path_buf()) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        Ok(SimLock {
            fs: self.fs.clone(),
            path: path.to_path_buf(),
        })
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.change()?;
        let fs = &mut *fs;
        fs.durable.retain(|p, _| p.parent() != Some(dir));
        for (p, f) in &fs.live {
            if p.parent() == Some(dir) {
                fs.durable.insert(p.clone(), f.clone());
            }
        }
        fs.pending_names.remove(dir);
        Ok(())
    }
}

impl StorageFile for SimFile {
    type Buf = AlignedBuf;
    type ReadBuf = AlignedBuf;

    async fn write_at(&self, buf: Rc<AlignedBuf>, pos: u64) -> io::Result<usize> {
        let mut fs = self.fs.borrow_mut();
        fs.change()?;
        let n = fs.writes;
        fs.writes += 1;
        let mut len = buf.len();
        let by_count = fs.write_fault.filter(|(at, _)| *at == n).map(|(_, f)| f);
        if by_count.is_some() {
            fs.write_fault = None;
        }
        let by_path = match &fs.path_fault {
            Some((p, f)) if *p == self.path => Some(*f),
            _ => None,
        };
        if by_path.is_some() {
            fs.path_fault = None;
        }
        if let Some(fault) = by_count.or(by_path) {
            match fault {
                WriteFault::Eio => return Err(io::Error::from_raw_os_error(libc::EIO)),
                WriteFault::Enospc => return Err(io::Error::from_raw_os_error(libc::ENOSPC)),
                WriteFault::Short => len /= 2,
            }
        }
        let cur = self.data.borrow().live.len() as u64;
        let grow = (pos + len as u64).saturating_sub(cur);
        if let Some(cap) = fs.capacity
            && grow > 0
            && fs.used() + grow > cap
        {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let mut d = self.data.borrow_mut();
        apply(&mut d.live, pos, &buf[..len]);
        d.unsynced.push((pos, buf[..len].to_vec()));
        Ok(len)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<AlignedBuf> {
        let d = self.data.borrow();
        let start = (pos as usize).min(d.live.len());
        let end = (start + len).min(d.live.len());
        Ok(AlignedBuf::from_slice(&d.live[start..end]))
    }

    async fn sync_data(&self) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.change()?;
        let n = fs.syncs;
        fs.syncs += 1;
        if fs.sync_fault == Some(n) {
            fs.sync_fault = None;
            // Like Linux after a failed writeback: the unsynced bytes are
            // gone from the durable image and the error is reported once.
            self.data.borrow_mut().unsynced.clear();
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut d = self.data.borrow_mut();
        let d = &mut *d;
        for (pos, bytes) in d.unsynced.drain(..) {
            apply(&mut d.durable, pos, &bytes);
        }
        // The file's length is durable too (fdatasync flushes the metadata
        // needed to read the data back): shortened or extended by `set_len`
        // (the extension reads as zero).
        d.durable.resize(d.live.len(), 0);
        Ok(())
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.data.borrow().live.len() as u64)
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.borrow_mut().change()?;
        // The new size becomes durable with the next fsync.
        self.data.borrow_mut().live.resize(len as usize, 0);
        Ok(())
    }

    async fn allocate(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    fn block(byte: u8) -> Rc<AlignedBuf> {
        Rc::new(AlignedBuf::from_slice(&[byte; PAGE]))
    }

    #[test]
    fn crash_as_builds_each_chosen_state() {
        block_on(async {
            let sim = SimStorage::new();
            let dir = Path::new("/d");
            sim.create_dir_all(dir).await.unwrap();
            let a = dir.join("a");
            let f = sim.open(&a, true).await.unwrap();
            f.write_at(block(1), 0).await.unwrap();
            f.sync_data().await.unwrap();
            sim.sync_dir(dir).await.unwrap();
            // Unsynced: one write over the synced block, one after it, and
            // a rename of the file.
            f.write_at(block(2), 0).await.unwrap();
            f.write_at(block(3), PAGE as u64).await.unwrap();
            let b = dir.join("b");
            sim.rename(&a, &b).await.unwrap();
            let p = sim.pending();
            assert_eq!(p.writes.len(), 2);
            assert_eq!(p.writes[1].pos, PAGE as u64);
            assert_eq!(p.names, vec![(dir.to_path_buf(), 1)]);

            let none = sim.crash_as(&CrashState::default());
            assert_eq!(none.files(), vec![a.clone()], "the rename is lost");
            assert_eq!(
                none.read_file(&a).unwrap(),
                vec![1; PAGE],
                "synced bytes kept"
            );
            let second = sim.crash_as(&CrashState {
                writes: vec![WriteFate::Dropped, WriteFate::Kept],
                names: vec![1],
            });
            assert_eq!(second.files(), vec![b.clone()], "the rename survives");
            let got = second.read_file(&b).unwrap();
            assert_eq!(
                (&got[..PAGE], &got[PAGE..]),
                (&[1; PAGE][..], &[3; PAGE][..])
            );
            let torn = sim.crash_as(&CrashState {
                writes: vec![
                    WriteFate::Torn {
                        unit: SECTOR,
                        seed: 7,
                    },
                    WriteFate::Dropped,
                ],
                names: vec![],
            });
            let got = torn.read_file(&a).unwrap();
            assert_eq!(got.len(), PAGE);
            for sector in got.chunks(SECTOR) {
                assert!(
                    sector == [1; SECTOR] || sector == [2; SECTOR],
                    "whole sectors"
                );
            }
            // Syncing the directory leaves nothing to lose in names.
            sim.sync_dir(dir).await.unwrap();
            assert!(sim.pending().names.is_empty());
        });
    }

    #[test]
    fn on_last_drop_hands_the_disk_back() {
        let got = Rc::new(RefCell::new(None));
        {
            let sim = SimStorage::new();
            let g = got.clone();
            sim.on_last_drop(move |disk| *g.borrow_mut() = Some(disk.changes()));
            block_on(async {
                sim.create_dir_all(Path::new("/d")).await.unwrap();
                sim.open(Path::new("/d/x"), true).await.unwrap();
            });
            assert!(got.borrow().is_none(), "not while a handle lives");
        }
        assert_eq!(*got.borrow(), Some(1), "the disk, with its one change");
    }
}
