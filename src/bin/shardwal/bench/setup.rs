//! What every workload shares: the scratch directory, the record
//! payload, opening a shard log on the bench executor, and errors.

use std::path::{Path, PathBuf};

use glommio::LocalExecutor;
use shardwal::{DmaStorage, ShardConfig, ShardId, ShardLog};

use crate::{EXIT_ERROR, Fail};

/// The benchmark's scratch directory, removed on drop.
pub(super) struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Scratch {
    /// A fresh, empty subdirectory `name` (removed first if it exists).
    pub fn sub(&self, name: &str) -> Result<PathBuf, Fail> {
        let p = self.0.join(name);
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| err(&p, e))?;
        Ok(p)
    }
}

/// A failure of the benchmark at `p`.
pub(super) fn err(p: &Path, e: impl std::fmt::Display) -> Fail {
    Fail::new(EXIT_ERROR, format!("bench: {}: {e}", p.display()))
}

/// A failure of the library during the benchmark.
pub(super) fn lib(e: shardwal::Error) -> Fail {
    Fail::new(EXIT_ERROR, format!("bench: {e}"))
}

/// A payload of `n` bytes.
pub(super) fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + 7) as u8).collect()
}

/// Open shard 0 of `dir` on the bench executor.
pub(super) fn open_log(
    ex: &LocalExecutor,
    dir: &Path,
    cfg: ShardConfig,
) -> Result<ShardLog<DmaStorage>, Fail> {
    ex.run(ShardLog::open(DmaStorage, dir, ShardId(0), cfg))
        .map_err(lib)
}
