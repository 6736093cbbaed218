//! The log directory: its `LOG_ID` file, created once when the directory is
//! initialised and read by every shard when it opens. Nothing writes
//! `LOG_ID` in place or replaces it: it is published whole, once, by a
//! no-replace rename ([`meta_file::create_once`]).

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{BLOCK, log_id};
use crate::io::{Storage, StorageFile, close_quietly};
use crate::meta_file::{self, Created};

/// Name of the log id file.
pub const LOG_ID_FILE: &str = "LOG_ID";

/// Read the log id of `dir` without creating anything: an error if `dir`
/// holds no log.
pub async fn load<S: Storage>(storage: &S, dir: &Path) -> Result<[u8; 16]> {
    let path = dir.join(LOG_ID_FILE);
    let f = storage.open(&path, false).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotALog {
                path: dir.to_path_buf(),
                detail: format!("no {LOG_ID_FILE} file"),
            }
        } else {
            Error::io("open", &path, e)
        }
    })?;
    read_id(f, &path).await
}

/// Read and decode an open `LOG_ID` file.
async fn read_id<F: StorageFile>(f: F, path: &Path) -> Result<[u8; 16]> {
    let bytes = f
        .read_at(0, BLOCK)
        .await
        .map_err(|e| Error::io("read", path, e))?;
    close_quietly(f, path).await;
    let used = bytes.get(..log_id::LOG_ID_LEN).unwrap_or(&bytes);
    log_id::decode(used).map_err(|fault| Error::NotALog {
        path: path.to_path_buf(),
        detail: fault.to_string(),
    })
}

/// Read the log id of `dir`, creating the directory and a fresh id if the
/// directory holds none. Any number of shards, executors and processes may
/// call it at once on a fresh directory: they all get the one id that is in
/// `LOG_ID`. Creation goes through [`meta_file::create_once`] (a temp file
/// of a name no other creator uses, fdatasync, a no-replace rename,
/// directory fsync), so `LOG_ID` only ever appears whole and is never
/// replaced; a creator that loses the race discards its id and reads the
/// winner's. Whichever way the id was found, the directory is fsynced
/// before it is returned, so no shard writes a segment under an id whose
/// `LOG_ID` name is not yet durable.
pub async fn load_or_init<S: Storage>(storage: &S, dir: &Path) -> Result<[u8; 16]> {
    storage
        .create_dir_all(dir)
        .await
        .map_err(|e| Error::io("create directory", dir, e))?;
    let path = dir.join(LOG_ID_FILE);
    match storage.open(&path, false).await {
        Ok(f) => {
            let id = read_id(f, &path).await?;
            storage
                .sync_dir(dir)
                .await
                .map_err(|e| Error::io("directory fsync", dir, e))?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = log_id::random();
            // One block: the id, then zeros (the file is read in blocks).
            let mut block = vec![0u8; BLOCK];
            block[..log_id::LOG_ID_LEN].copy_from_slice(&log_id::encode(id));
            match meta_file::create_once(storage, dir, LOG_ID_FILE, &block).await? {
                Created::Ours => Ok(id),
                // `create_once` fsynced the directory: theirs is durable.
                Created::Theirs => load(storage, dir).await,
            }
        }
        Err(e) => Err(Error::io("open", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io;
    use std::rc::Rc;

    use futures_lite::future::{block_on, yield_now, zip};

    use super::*;
    use crate::io::AlignedBuf;
    use crate::io::sim::{CrashMode, SimFile, SimLock, SimStorage, SplitMix};

    /// A simulated disk that, before each directory-level operation, lets
    /// the other tasks of the executor run 0–2 times (chosen by its own
    /// SplitMix stream): two creators on one executor interleave their
    /// steps in a different order for every seed.
    #[derive(Clone)]
    struct Interleaved {
        sim: SimStorage,
        rng: Rc<Cell<u64>>,
    }

    impl Interleaved {
        fn new(sim: &SimStorage, seed: u64) -> Interleaved {
            Interleaved {
                sim: sim.clone(),
                rng: Rc::new(Cell::new(seed)),
            }
        }

        async fn pause(&self) {
            let mut r = SplitMix(self.rng.get());
            let n = r.below(3);
            self.rng.set(r.0);
            for _ in 0..n {
                yield_now().await;
            }
        }
    }

    impl Storage for Interleaved {
        type Buf = AlignedBuf;
        type File = SimFile;
        type Lock = SimLock;
        fn alloc_buf(&self, len: usize) -> AlignedBuf {
            self.sim.alloc_buf(len)
        }
        async fn open(&self, path: &Path, create: bool) -> io::Result<SimFile> {
            self.pause().await;
            self.sim.open(path, create).await
        }
        async fn remove(&self, path: &Path) -> io::Result<()> {
            self.pause().await;
            self.sim.remove(path).await
        }
        async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.pause().await;
            self.sim.rename(from, to).await
        }
        async fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.pause().await;
            self.sim.rename_noreplace(from, to).await
        }
        async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            self.pause().await;
            self.sim.list(dir).await
        }
        async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.pause().await;
            self.sim.create_dir_all(dir).await
        }
        async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.pause().await;
            self.sim.sync_dir(dir).await
        }
        async fn lock(&self, path: &Path) -> io::Result<SimLock> {
            self.pause().await;
            self.sim.lock(path).await
        }
    }

    const DIR: &str = "/log";

    #[test]
    fn creators_racing_on_a_fresh_directory_all_get_the_one_id_in_log_id() {
        let dir = Path::new(DIR);
        for seed in 0..300u64 {
            let sim = SimStorage::new();
            let (a, b) = (
                Interleaved::new(&sim, 2 * seed),
                Interleaved::new(&sim, 2 * seed + 1),
            );
            let (ra, rb) = block_on(zip(load_or_init(&a, dir), load_or_init(&b, dir)));
            let ra = ra.unwrap_or_else(|e| panic!("seed {seed}: first creator: {e}"));
            let rb = rb.unwrap_or_else(|e| panic!("seed {seed}: second creator: {e}"));
            assert_eq!(ra, rb, "seed {seed}: the creators disagree on the log id");
            let on_disk = block_on(load(&sim, dir)).expect("LOG_ID");
            assert_eq!(on_disk, ra, "seed {seed}: LOG_ID holds another id");
            let after_crash = block_on(load(&sim.crash(CrashMode::DropAll, seed), dir));
            assert_eq!(
                after_crash.ok(),
                Some(ra),
                "seed {seed}: LOG_ID is durable once load_or_init returns"
            );
            assert_eq!(
                sim.files(),
                vec![dir.join(LOG_ID_FILE)],
                "seed {seed}: no temp file is left"
            );
        }
    }

    #[test]
    fn a_creator_dying_anywhere_leaves_no_log_id_or_a_whole_one() {
        let dir = Path::new(DIR);
        let whole = {
            let sim = SimStorage::new();
            block_on(load_or_init(&sim, dir)).expect("create");
            sim.changes()
        };
        for n in 0..=whole {
            let sim = SimStorage::new();
            sim.halt_after(n);
            let created = block_on(load_or_init(&sim, dir));
            let disk = sim.crash(CrashMode::Random, n);
            match (created, block_on(load(&disk, dir))) {
                (Ok(id), found) => assert_eq!(found.ok(), Some(id), "halt after {n}"),
                (Err(_), Ok(_)) => {}
                (Err(_), Err(Error::NotALog { detail, .. })) => {
                    assert_eq!(detail, format!("no {LOG_ID_FILE} file"), "halt after {n}")
                }
                (Err(_), Err(e)) => panic!("halt after {n}: {e}"),
            }
            // Whatever was left, the next open gets a whole id.
            block_on(load_or_init(&disk, dir)).unwrap_or_else(|e| panic!("halt after {n}: {e}"));
        }
    }
}
