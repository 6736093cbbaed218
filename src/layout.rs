//! The shard layout of a log: which shard directories are written, which
//! are retired, and from which epoch each written shard takes part in
//! sealing. It is what makes re-sharding (a log written by N shards,
//! recovered by a runtime of M) safe across further crashes.
//!
//! The layout lives in `<log>/LAYOUT`, a [`crate::meta_file`]
//! with magic `SHRDLAYT` around the rkyv archive of [`Layout`]. A log
//! without one (written before layouts existed, or never started) has the
//! *implicit* layout: every shard directory present is active, joined at
//! epoch 0.
//!
//! ## Re-sharding, N → M
//! * Shards `0..M` are written by the new runtime. Shard `i < N` continues
//!   its own directory (its sequence numbers continue); shards `N..M` are
//!   new and *join* at the recovered sealed epoch S: their (empty) logs count
//!   as sealed up to S, so they never pull the sealed epoch below it.
//! * Shards `M..N` are *retired* at S: they are cut at `barrier(S)`, get no
//!   new records, and no longer count when the sealed epoch is computed.
//! * Old shard `s` is replayed by core [`replayer(s, M)`](replayer) `= s % M`:
//!   a continuing shard by its own core, a retired one by the core
//!   `s mod M`, which also gets its snapshot. That core's state then covers
//!   the retired shard's, so its next checkpoint snapshot does too.
//! * A retired shard's directory is removed once no retained checkpoint
//!   manifest refers to it: after the next checkpoint with
//!   `keep_checkpoints = 1`, after K of them with K kept (so a fallback to
//!   an older manifest still finds its log).
//!
//! The layout is rewritten atomically at start-up whenever it changes, after
//! every shard has been cut and before any new epoch can seal.

use std::path::Path;

use rkyv::{Archive, Deserialize, Serialize};

use crate::checkpoint::payloads::{self, PayloadError};
use crate::error::{Error, Result};
use crate::ids::{Epoch, ShardId};
use crate::io::Storage;
use crate::meta_file;

/// File name of the layout, in the log directory.
pub const LAYOUT_FILE: &str = "LAYOUT";

const KIND: meta_file::Kind = meta_file::Kind {
    magic: b"SHRDLAYT",
    version: 1,
    max_payload: 1 << 20,
    name: "layout",
};

/// A shard that no longer gets records but whose log is still needed.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RetiredShard {
    /// The shard.
    pub shard: u32,
    /// The sealed epoch it was retired at: its log ends with that barrier.
    pub epoch: u64,
}

/// Which shards of a log are written and which are retired.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The log's id.
    pub log_id: [u8; 16],
    /// `joined[i]` for each written shard `i` (shards `0..joined.len()`):
    /// the sealed epoch when it joined. Its log counts as holding every
    /// barrier up to that epoch, written or not.
    pub joined: Vec<u64>,
    /// Shards at or above `joined.len()` whose logs are kept for replay,
    /// in shard order.
    pub retired: Vec<RetiredShard>,
}

/// The core (new shard) that replays old shard `shard` in a runtime of
/// `shards` shards: `shard % shards`. Deterministic, and a shard that keeps
/// being written is replayed by its own core.
pub fn replayer(shard: ShardId, shards: u32) -> ShardId {
    ShardId(shard.0 % shards.max(1))
}

/// The most shards a log can have: a bound on what a directory name or a
/// `LAYOUT` file can make recovery allocate, create or scan.
pub const MAX_SHARDS: u32 = 1024;

impl Layout {
    /// The layout of a log without a `LAYOUT` file: the shard directories
    /// present are all active, joined at epoch 0.
    pub fn implicit(log_id: [u8; 16], dirs: &[ShardId]) -> Layout {
        let n = dirs.iter().max().map_or(0, |m| m.0 as usize + 1);
        Layout {
            log_id,
            joined: vec![0; n],
            retired: Vec::new(),
        }
    }

    /// Number of written shards.
    pub fn active(&self) -> u32 {
        self.joined.len() as u32
    }

    /// True if `shard` is retired.
    pub fn is_retired(&self, shard: ShardId) -> bool {
        self.retired.iter().any(|r| r.shard == shard.0)
    }

    /// Every shard whose log holds data to recover: the written ones, then
    /// the retired ones, ascending.
    pub fn data_shards(&self) -> Vec<ShardId> {
        let mut v: Vec<ShardId> = (0..self.active())
            .chain(self.retired.iter().map(|r| r.shard))
            .map(ShardId)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The sealed epoch: the smallest, over written shards, of the last
    /// barrier each holds durably (`last_barrier(shard)`, already floored
    /// by the checkpoint's epoch) or the epoch it joined at, whichever is
    /// later. Retired shards do not count. `floor` when there is no
    /// written shard.
    pub fn sealed(&self, floor: Epoch, last_barrier: impl Fn(ShardId) -> Epoch) -> Epoch {
        (0..self.active())
            .map(|s| last_barrier(ShardId(s)).max(Epoch(self.joined[s as usize])))
            .min()
            .unwrap_or(floor)
            .max(floor)
    }

    /// The layout after a runtime of `shards` shards starts at the sealed
    /// epoch `sealed`: shards `0..shards` written (continuing ones keep
    /// their join epoch, new or re-activated ones join at `sealed`), written
    /// shards beyond `shards` retired at `sealed`, and retired ones kept.
    pub fn reshard(&self, shards: u32, sealed: Epoch) -> Layout {
        let joined = (0..shards)
            .map(|s| match self.joined.get(s as usize) {
                Some(j) => *j,
                None => sealed.0,
            })
            .collect();
        let mut retired: Vec<RetiredShard> = self
            .retired
            .iter()
            .filter(|r| r.shard >= shards)
            .cloned()
            .chain((shards..self.active()).map(|shard| RetiredShard {
                shard,
                epoch: sealed.0,
            }))
            .collect();
        retired.sort_by_key(|r| r.shard);
        Layout {
            log_id: self.log_id,
            joined,
            retired,
        }
    }

    /// Encode as a `LAYOUT` file.
    pub fn encode(&self) -> std::result::Result<Vec<u8>, PayloadError> {
        Ok(meta_file::encode(KIND, &payloads::encode(self)?))
    }

    /// Decode a `LAYOUT` file.
    pub fn decode(b: &[u8]) -> std::result::Result<Layout, LayoutError> {
        let payload = meta_file::decode(KIND, b)?;
        let l: Layout = payloads::decode(payload, "layout")?;
        if l.active() > MAX_SHARDS || l.retired.iter().any(|r| r.shard >= MAX_SHARDS) {
            return Err(LayoutError::TooManyShards);
        }
        if let Some(r) = l
            .retired
            .iter()
            .find(|r| (r.shard as usize) < l.joined.len())
        {
            return Err(LayoutError::RetiresWrittenShard(r.shard));
        }
        Ok(l)
    }
}

/// Why bytes are not a usable `LAYOUT` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The file's framing fails its checks.
    #[error(transparent)]
    File(#[from] meta_file::MetaFault),
    /// The payload is not a valid layout archive.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A shard listed as retired is also written.
    #[error("layout retires shard {0}, which it also writes")]
    RetiresWrittenShard(u32),
    /// The layout lists shards beyond [`MAX_SHARDS`].
    #[error("layout lists shards beyond {MAX_SHARDS}")]
    TooManyShards,
}

/// Read the layout of the log at `dir`: `Ok(None)` if it has no `LAYOUT`
/// file. A damaged or foreign layout is an error: guessing which shards are
/// retired could cut sealed epochs.
pub async fn read<S: Storage>(storage: &S, dir: &Path, log_id: [u8; 16]) -> Result<Option<Layout>> {
    let path = dir.join(LAYOUT_FILE);
    let bad = |detail: String| Error::NotALog {
        path: path.clone(),
        detail,
    };
    let read = meta_file::read(storage, &path, KIND).await;
    let Some(b) = read.map_err(|e| match e {
        meta_file::ReadError::Io { op, path, source } => Error::Io { op, path, source },
        other => bad(other.to_string()),
    })?
    else {
        return Ok(None);
    };
    let l = Layout::decode(&b).map_err(|e| bad(e.to_string()))?;
    if l.log_id != log_id {
        return Err(bad("the layout belongs to another log".into()));
    }
    Ok(Some(l))
}

/// Write the layout of the log at `dir` atomically.
pub async fn write<S: Storage>(storage: &S, dir: &Path, l: &Layout) -> Result<()> {
    meta_file::write_atomic(storage, dir, LAYOUT_FILE, &l.encode()?)
        .await
        .map(|_| ())
}

/// Suffix of a retired shard directory being removed.
const REMOVING: &str = ".removing";

/// Remove the directories of `shards` (retired, no longer needed) and drop
/// them from the layout: each is first renamed to `shard-NNNN.removing`
/// (so a crash never leaves a half-deleted log under a shard's name), the
/// log directory is synced, the layout rewritten, and then the renamed
/// directories are deleted. Blocking; used by the coordinator thread.
pub(crate) fn remove_retired(dir: &Path, layout: &mut Layout, shards: &[ShardId]) -> Result<()> {
    use crate::io::std_fs::StdStorage;
    let mut doomed = Vec::new();
    for &s in shards {
        let from = crate::segment::shard_dir(dir, s);
        let to = from.with_extension(REMOVING.trim_start_matches('.'));
        match std::fs::rename(&from, &to) {
            Ok(()) => doomed.push(to),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("rename retired shard directory", &from, e)),
        }
    }
    futures_lite::future::block_on(StdStorage.sync_dir(dir))
        .map_err(|e| Error::io("directory fsync", dir, e))?;
    let mut next = layout.clone();
    next.retired.retain(|r| !shards.contains(&ShardId(r.shard)));
    futures_lite::future::block_on(write(&StdStorage, dir, &next))?;
    *layout = next;
    remove_leftovers(dir);
    Ok(())
}

/// Delete the `shard-NNNN.removing` directories a crash left behind.
pub(crate) fn remove_leftovers(dir: &Path) {
    let Ok(names) = crate::io::std_fs::list_dir(dir) else {
        return;
    };
    for n in names {
        if n.starts_with("shard-") && n.ends_with(REMOVING) {
            let path = dir.join(n);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a retired shard left by a crash")
                }
                // Harmless: the next start tries again, and a leftover is
                // never read as a shard.
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "could not remove a retired shard's leftover directory")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u32]) -> Vec<ShardId> {
        v.iter().copied().map(ShardId).collect()
    }

    fn four() -> Layout {
        Layout::implicit([7; 16], &ids(&[0, 1, 2, 3]))
    }

    #[test]
    fn round_trips_and_rejects_flips() {
        let l = four().reshard(2, Epoch(9));
        let b = l.encode().unwrap();
        assert_eq!(Layout::decode(&b), Ok(l));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x01;
            assert!(Layout::decode(&bad).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn shrinking_retires_and_growing_joins() {
        let l = four().reshard(2, Epoch(9));
        assert_eq!(l.joined, vec![0, 0]);
        assert_eq!(
            l.retired,
            vec![
                RetiredShard { shard: 2, epoch: 9 },
                RetiredShard { shard: 3, epoch: 9 }
            ]
        );
        assert_eq!(l.data_shards(), ids(&[0, 1, 2, 3]));
        // Growing back re-activates shard 2, which joins at the new seal.
        let g = l.reshard(3, Epoch(15));
        assert_eq!(g.joined, vec![0, 0, 15]);
        assert_eq!(g.retired, vec![RetiredShard { shard: 3, epoch: 9 }]);
        // New shards join at the sealed epoch of their start.
        let n = Layout::implicit([7; 16], &ids(&[0, 1])).reshard(4, Epoch(5));
        assert_eq!(n.joined, vec![0, 0, 5, 5]);
        assert!(n.retired.is_empty());
    }

    #[test]
    fn sealed_ignores_retired_and_counts_joins() {
        let l = Layout::implicit([7; 16], &ids(&[0, 1])).reshard(4, Epoch(5));
        // Shards 2 and 3 joined at 5 and hold no barrier yet: they do not
        // pull the seal below 5.
        let e = |s: ShardId, low: u64, high: u64| Epoch(if s.0 < 2 { high } else { low });
        assert_eq!(l.sealed(Epoch(0), |s| e(s, 0, 8)), Epoch(5));
        assert_eq!(l.sealed(Epoch(0), |s| e(s, 7, 8)), Epoch(7));
        let r = four().reshard(1, Epoch(9));
        let r0 = |s: ShardId| Epoch(if s.0 == 0 { 12 } else { 9 });
        assert_eq!(r.sealed(Epoch(0), r0), Epoch(12));
        assert_eq!(
            Layout::implicit([7; 16], &[]).sealed(Epoch(4), |_| Epoch(0)),
            Epoch(4)
        );
    }

    #[test]
    fn replayer_is_modulo() {
        let r = |n: u32, m: u32| {
            (0..n)
                .map(|s| replayer(ShardId(s), m).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(r(4, 2), vec![0, 1, 0, 1]);
        assert_eq!(r(3, 1), vec![0, 0, 0]);
        assert_eq!(replayer(ShardId(1), 4), ShardId(1));
    }
}
