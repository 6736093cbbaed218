//! Restore: a log directory rebuilt from the archive's newest index.
//!
//! The files are written into `.<name>.restoring` beside the target, each
//! downloaded part checked against the length and CRC32C its name and the
//! index give, every file and directory fsynced, and the directory renamed
//! into place last: a restore that fails or crashes midway leaves no log
//! that looks whole. The result recovers to the index's epoch (its sealed
//! barrier is the last thing each live shard's files hold), with the
//! manifests, snapshots, layout and log id the original node had then; a
//! `Runtime::start` on it, with any shard count, carries on from there.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::index::{ArchiveIndex, MAX_INDEX};
use super::names;
use crate::error::{Error, Result};
use crate::ids::Epoch;

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// When the newest index names an object that is missing or damaged,
    /// fall back to older indexes (an earlier epoch) instead of failing.
    pub repair: bool,
    /// The log to restore, when the prefix holds more than one.
    pub log_id: Option<[u8; 16]>,
    /// Parts downloaded at once. Default (0) means 8.
    pub concurrency: usize,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The sealed epoch the restored directory recovers to.
    pub epoch: Epoch,
    /// The index restored (its object path).
    pub index: String,
    /// Files written.
    pub files: usize,
    /// Objects downloaded.
    pub objects: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Newer indexes passed over under `repair`, and why.
    pub skipped: Vec<(String, String)>,
}

fn archive_err(object: impl Into<String>, cause: impl std::fmt::Display) -> Error {
    Error::Archive {
        object: object.into(),
        cause: cause.to_string(),
    }
}

/// Build the log directory `dir` (absent or empty) from the archive under
/// `prefix` in `store`.
pub fn restore(
    store: Arc<dyn ObjectStore>,
    prefix: &ObjPath,
    dir: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(Error::Config(format!(
            "{} is not empty: restore writes a new log directory",
            dir.display()
        )));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start the restore's I/O runtime", dir, e))?;
    rt.block_on(restore_async(store, prefix, dir, opts))
}

async fn restore_async(
    store: Arc<dyn ObjectStore>,
    prefix: &ObjPath,
    dir: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let log_id = match opts.log_id {
        Some(id) => id,
        None => find_log(&*store, prefix).await?,
    };
    let root = names::log_root(prefix, log_id);
    let idir = names::index_dir(&root);
    let mut candidates: Vec<(u64, u64, ObjPath)> = Vec::new();
    let mut listing = store.list(Some(&idir));
    while let Some(m) = listing.next().await {
        let m = m.map_err(|e| archive_err(idir.to_string(), e))?;
        if let Some((g, e)) = m.location.filename().and_then(names::parse_index) {
            candidates.push((g, e, m.location));
        }
    }
    // Newest generation first, then newest epoch: a restored node's
    // indexes supersede those of the node it replaced.
    candidates.sort_by_key(|c| std::cmp::Reverse((c.0, c.1)));
    if candidates.is_empty() {
        return Err(archive_err(
            idir.to_string(),
            "no archive index: nothing was archived under this prefix",
        ));
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Config(format!("{} has no file name", dir.display())))?;
    let tmp = dir.with_file_name(format!(".{name}.restoring"));
    let mut skipped = Vec::new();
    for (_, _, ipath) in candidates {
        let attempt = async {
            let ix = read_index(&*store, &ipath, log_id).await?;
            if std::fs::metadata(&tmp).is_ok() {
                std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
            }
            let (objects, bytes) = write_files(&store, &root, &ix, &tmp, opts).await?;
            Ok::<_, Error>((ix, objects, bytes))
        };
        match attempt.await {
            Ok((ix, objects, bytes)) => {
                publish(&tmp, dir)?;
                return Ok(RestoreReport {
                    epoch: Epoch(ix.epoch),
                    index: ipath.to_string(),
                    files: ix.files.len(),
                    objects,
                    bytes,
                    elapsed: started.elapsed(),
                    skipped,
                });
            }
            Err(e) if opts.repair => {
                tracing::warn!(index = %ipath, error = %e, "index not restorable; trying an older one");
                skipped.push((ipath.to_string(), e.to_string()));
                // Best effort: the next attempt removes it again.
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => {
                // Best effort: a leftover is removed by the next restore.
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        }
    }
    Err(archive_err(
        idir.to_string(),
        format!(
            "no index is restorable: {}",
            skipped
                .iter()
                .map(|(i, why)| format!("{i}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    ))
}

/// The one log under `prefix`.
async fn find_log(store: &dyn ObjectStore, prefix: &ObjPath) -> Result<[u8; 16]> {
    let listed = store
        .list_with_delimiter(Some(prefix))
        .await
        .map_err(|e| archive_err(prefix.to_string(), e))?;
    let ids: Vec<[u8; 16]> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().and_then(names::parse_log_id_hex))
        .collect();
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => Err(archive_err(
            prefix.to_string(),
            "no archived log under this prefix: nothing was archived here",
        )),
        many => Err(archive_err(
            prefix.to_string(),
            format!(
                "{} logs under this prefix ({}); choose one",
                many.len(),
                many.iter()
                    .map(|i| names::log_id_hex(*i))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

async fn read_index(
    store: &dyn ObjectStore,
    p: &ObjPath,
    log_id: [u8; 16],
) -> Result<ArchiveIndex> {
    let meta = store
        .head(p)
        .await
        .map_err(|e| archive_err(p.to_string(), e))?;
    if meta.size > MAX_INDEX {
        return Err(archive_err(
            p.to_string(),
            format!(
                "{} bytes, more than an index may hold ({MAX_INDEX})",
                meta.size
            ),
        ));
    }
    let b = store
        .get(p)
        .await
        .map_err(|e| archive_err(p.to_string(), e))?
        .bytes()
        .await
        .map_err(|e| archive_err(p.to_string(), e))?;
    let ix = ArchiveIndex::decode(&b, log_id).map_err(|e| archive_err(p.to_string(), e))?;
    if !ix
        .files
        .iter()
        .any(|f| f.path == crate::log_dir::LOG_ID_FILE)
    {
        return Err(archive_err(p.to_string(), "the index names no LOG_ID file"));
    }
    Ok(ix)
}

/// Write every file of `ix` under `tmp`; returns (objects, bytes).
async fn write_files(
    store: &Arc<dyn ObjectStore>,
    root: &ObjPath,
    ix: &ArchiveIndex,
    tmp: &Path,
    opts: &RestoreOptions,
) -> Result<(usize, u64)> {
    std::fs::create_dir_all(tmp).map_err(|e| Error::io("create directory", tmp, e))?;
    let depth = if opts.concurrency == 0 {
        8
    } else {
        opts.concurrency
    };
    let mut dirs: Vec<PathBuf> = vec![tmp.to_path_buf()];
    let (mut objects, mut bytes) = (0usize, 0u64);
    for f in &ix.files {
        let path = tmp.join(&f.path);
        if let Some(parent) = path.parent()
            && !dirs.iter().any(|d| d == parent)
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io("create directory", parent, e))?;
            dirs.push(parent.to_path_buf());
        }
        let file =
            Arc::new(std::fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?);
        let mut tasks = tokio::task::JoinSet::new();
        for part in &f.parts {
            while tasks.len() >= depth {
                join_one(&mut tasks).await?;
            }
            let (store, file) = (store.clone(), file.clone());
            let (object, part, path) =
                (names::under(root, &part.object), part.clone(), path.clone());
            tasks.spawn(async move {
                let b = store
                    .get(&object)
                    .await
                    .map_err(|e| archive_err(object.to_string(), e))?;
                // Before the body is read: an object of another size is
                // refused without allocating for it.
                if b.meta.size != part.len {
                    return Err(archive_err(
                        object.to_string(),
                        format!("holds {} bytes, the index says {}", b.meta.size, part.len),
                    ));
                }
                let b = b
                    .bytes()
                    .await
                    .map_err(|e| archive_err(object.to_string(), e))?;
                if b.len() as u64 != part.len {
                    return Err(archive_err(
                        object.to_string(),
                        format!("holds {} bytes, the index says {}", b.len(), part.len),
                    ));
                }
                let crc = crc32c::crc32c(&b);
                if crc != part.crc {
                    return Err(archive_err(
                        object.to_string(),
                        format!("damaged: CRC32C {crc:08x}, the index says {:08x}", part.crc),
                    ));
                }
                file.write_all_at(&b, part.offset)
                    .map_err(|e| Error::io("write", &path, e))?;
                Ok(part.len)
            });
            objects += 1;
        }
        while !tasks.is_empty() {
            bytes += join_one(&mut tasks).await?;
        }
        file.set_len(f.len)
            .map_err(|e| Error::io("set length", &path, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
    }
    for d in dirs.iter().rev() {
        sync_dir(d)?;
    }
    Ok((objects, bytes))
}

async fn join_one(tasks: &mut tokio::task::JoinSet<Result<u64>>) -> Result<u64> {
    match tasks.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(archive_err("", format!("a download task failed: {e}"))),
        None => Ok(0),
    }
}

fn sync_dir(d: &Path) -> Result<()> {
    std::fs::File::open(d)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("fsync directory", d, e))
}

/// Move the finished directory into place, durably.
fn publish(tmp: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        // Checked empty before the restore began.
        std::fs::remove_dir(dir).map_err(|e| Error::io("remove empty directory", dir, e))?;
    }
    std::fs::rename(tmp, dir).map_err(|e| Error::io("rename", tmp, e))?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(parent)
}
