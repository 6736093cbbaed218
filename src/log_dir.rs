//! The log directory: its `LOG_ID` file, created once when the directory is
//! initialised and read by every shard when it opens.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{BLOCK, log_id};
use crate::io::{Storage, StorageFile, close_quietly};

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
/// directory holds none. Creation is atomic: temp file, fdatasync, rename,
/// directory fsync.
pub async fn load_or_init<S: Storage>(storage: &S, dir: &Path) -> Result<[u8; 16]> {
    storage
        .create_dir_all(dir)
        .await
        .map_err(|e| Error::io("create directory", dir, e))?;
    let path = dir.join(LOG_ID_FILE);
    match storage.open(&path, false).await {
        Ok(f) => read_id(f, &path).await,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = log_id::random();
            // One block: the id, then zeros (the file is read in blocks).
            let mut block = vec![0u8; BLOCK];
            block[..log_id::LOG_ID_LEN].copy_from_slice(&log_id::encode(id));
            crate::meta_file::write_atomic(storage, dir, LOG_ID_FILE, &block).await?;
            Ok(id)
        }
        Err(e) => Err(Error::io("open", &path, e)),
    }
}
