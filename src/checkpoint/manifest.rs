//! Checkpoint manifests, written by the coordinator once every shard's
//! checkpoint marker is durable.
//!
//! ```text
//! offset size field
//!      0    8 magic "SHRDMANI"
//!      8    4 format version
//!     12    4 payload length n (at most 64 MiB)
//!     16    4 CRC32C of bytes 0..16 and of the payload
//!     20   12 zero
//!     32    n payload: the rkyv archive of `Manifest`
//! ```
//! Files are `checkpoints/manifest-CCCCCCCCCCCCCCCCCCCC.ckpt`, written
//! atomically: temp file, fdatasync, rename, directory fsync. Loading takes
//! the newest manifest that validates and falls back to older ones.

use std::path::{Path, PathBuf};

use rkyv::{Archive, Deserialize, Serialize};

use super::payloads::{CommitRecord, PayloadError, SnapshotRef};
use crate::error::{Error, Result};
use crate::io::Storage;
use crate::meta_file;

const MAGIC: &[u8; 8] = b"SHRDMANI";
const VERSION: u32 = 1;
/// Largest manifest payload accepted.
pub const MAX_MANIFEST: usize = 64 << 20;
/// Directory (inside the log directory) holding manifests.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// One shard's part of a checkpoint.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ShardCheckpoint {
    /// The shard.
    pub shard: u32,
    /// Replay this shard's log from this sequence number (just after the
    /// barrier that ends the checkpoint's epoch).
    pub replay_from: u64,
    /// Sequence number of the checkpoint marker record.
    pub marker_seq: u64,
    /// The shard's snapshot.
    pub snapshot: SnapshotRef,
    /// The shard's last commit record of the epoch, if it wrote one.
    pub commit: Option<CommitRecord>,
}

/// A complete checkpoint.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The log's id.
    pub log_id: [u8; 16],
    /// Checkpoint id.
    pub checkpoint: u64,
    /// The epoch whose barrier the checkpoint was taken at.
    pub epoch: u64,
    /// One entry per shard, ordered by shard id.
    pub shards: Vec<ShardCheckpoint>,
}

/// File name of manifest `id`.
pub fn manifest_name(id: u64) -> String {
    format!("manifest-{id:020}.ckpt")
}

/// Parse a manifest file name.
pub fn parse_manifest_name(name: &str) -> Option<u64> {
    let d = name.strip_prefix("manifest-")?.strip_suffix(".ckpt")?;
    (d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
        .then(|| d.parse().ok())
        .flatten()
}

/// The manifest file kind.
const KIND: meta_file::Kind = meta_file::Kind {
    magic: MAGIC,
    version: VERSION,
    max_payload: MAX_MANIFEST,
    name: "manifest",
};

/// Why a manifest file was not loaded. Loading falls back to an older
/// manifest on any of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] meta_file::ReadError),
    /// The file is gone (listed, then removed).
    #[error("{}: no such file", .0.display())]
    Missing(PathBuf),
    /// The file's framing fails its checks.
    #[error(transparent)]
    File(#[from] meta_file::MetaFault),
    /// The payload is not a valid manifest archive.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The file's name and its checkpoint id disagree.
    #[error("manifest file {file} holds checkpoint {found}")]
    WrongId {
        /// The id in the file name.
        file: u64,
        /// The checkpoint id inside.
        found: u64,
    },
    /// A valid manifest of another log.
    #[error("manifest belongs to another log")]
    ForeignLog,
    /// A shard's snapshot reference names a file other than the one the
    /// checkpoint's snapshot is always written to. Recovery joins this name
    /// to the shard's directory, so anything else (`..`, a `/`, an absolute
    /// path) could point outside the log directory: refused.
    #[error("shard {shard}'s snapshot is {file:?}, not {expected:?}")]
    SnapshotName {
        /// The shard whose entry it is.
        shard: u32,
        /// The name in the manifest.
        file: String,
        /// The only name a snapshot of this checkpoint has.
        expected: String,
    },
}

/// Encode a manifest file.
pub fn encode(m: &Manifest) -> std::result::Result<Vec<u8>, PayloadError> {
    Ok(meta_file::encode(KIND, &super::payloads::encode(m)?))
}

/// Decode a manifest file; every failure names the check that failed.
///
/// Every snapshot reference must name `snapshot_name(checkpoint)`: the one
/// path taken from a manifest, joined to a shard directory, stays in it.
pub fn decode(b: &[u8]) -> std::result::Result<Manifest, ManifestError> {
    let payload = meta_file::decode(KIND, b)?;
    let m = super::payloads::decode::<Manifest>(payload, "manifest")?;
    let expected = super::snapshot::snapshot_name(m.checkpoint);
    if let Some(sc) = m.shards.iter().find(|sc| sc.snapshot.file != expected) {
        return Err(ManifestError::SnapshotName {
            shard: sc.shard,
            file: sc.snapshot.file.clone(),
            expected,
        });
    }
    Ok(m)
}

/// Write manifest `m` into `log_dir/checkpoints` atomically.
pub async fn write<S: Storage>(storage: &S, log_dir: &Path, m: &Manifest) -> Result<PathBuf> {
    let dir = log_dir.join(CHECKPOINT_DIR);
    storage
        .create_dir_all(&dir)
        .await
        .map_err(|e| Error::io("create directory", &dir, e))?;
    meta_file::write_atomic(storage, &dir, &manifest_name(m.checkpoint), &encode(m)?).await
}

/// Manifest ids present in `log_dir/checkpoints`, ascending (valid or not).
pub async fn list<S: Storage>(storage: &S, log_dir: &Path) -> Result<Vec<u64>> {
    let dir = log_dir.join(CHECKPOINT_DIR);
    match storage.list(&dir).await {
        Ok(names) => {
            let mut ids: Vec<u64> = names
                .iter()
                .filter_map(|n| parse_manifest_name(n))
                .collect();
            ids.sort_unstable();
            Ok(ids)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("list", &dir, e)),
    }
}

/// Read and validate manifest `id`.
pub async fn read<S: Storage>(
    storage: &S,
    log_dir: &Path,
    id: u64,
) -> std::result::Result<Manifest, ManifestError> {
    let path = log_dir.join(CHECKPOINT_DIR).join(manifest_name(id));
    let Some(b) = meta_file::read(storage, &path, KIND).await? else {
        return Err(ManifestError::Missing(path));
    };
    let m = decode(&b)?;
    if m.checkpoint != id {
        return Err(ManifestError::WrongId {
            file: id,
            found: m.checkpoint,
        });
    }
    Ok(m)
}

/// The newest manifest that validates, with the ids of newer ones that did
/// not (and why).
pub async fn load_newest<S: Storage>(
    storage: &S,
    log_dir: &Path,
    log_id: [u8; 16],
) -> Result<(Option<Manifest>, Vec<(u64, ManifestError)>)> {
    let mut skipped = Vec::new();
    for id in list(storage, log_dir).await?.into_iter().rev() {
        match read(storage, log_dir, id).await {
            Ok(m) if m.log_id == log_id => return Ok((Some(m), skipped)),
            Ok(_) => skipped.push((id, ManifestError::ForeignLog)),
            Err(e) => skipped.push((id, e)),
        }
    }
    Ok((None, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            log_id: [3; 16],
            checkpoint: 5,
            epoch: 40,
            shards: vec![ShardCheckpoint {
                shard: 0,
                replay_from: 100,
                marker_seq: 98,
                snapshot: SnapshotRef {
                    file: "snap-00000000000000000005.snap".into(),
                    len: 10,
                    crc: 1,
                },
                commit: None,
            }],
        }
    }

    #[test]
    fn a_snapshot_name_that_could_leave_the_shard_directory_is_refused() {
        for file in [
            "../../etc/passwd",
            "/etc/passwd",
            "../shard-0001/snap-00000000000000000005.snap",
            "snap-00000000000000000004.snap",
            "",
        ] {
            let mut m = sample();
            m.shards[0].snapshot.file = file.into();
            let b = encode(&m).unwrap();
            match decode(&b) {
                Err(ManifestError::SnapshotName {
                    shard: 0, file: f, ..
                }) => assert_eq!(f, file),
                other => panic!("{file:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn round_trips_and_rejects_any_flip_or_cut() {
        let b = encode(&sample()).unwrap();
        assert_eq!(decode(&b).ok(), Some(sample()));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
            assert!(decode(&b[..i]).is_err(), "cut at {i} accepted");
        }
    }
}
