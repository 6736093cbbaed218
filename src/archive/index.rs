//! The archive index: the commit point of an archive pass.
//!
//! One JSON object per pass, `index/<generation>-<epoch>.json` (see
//! `names.rs`), written after every object it names is in the store. It
//! lists each local file of the log as it stood at the archived epoch:
//! its length, and the objects that hold its bytes, in order from byte 0.
//! Bytes past the last part are zeros (the unwritten rest of a
//! zero-filled segment). Restoring an index means writing exactly these
//! files.
//!
//! Decoding is bounded: an index larger than [`MAX_INDEX`] is refused
//! before it is read, and [`ArchiveIndex::check`] refuses paths outside a
//! log directory, parts that do not tile their file from byte 0, and parts
//! larger than [`PART_MAX`].

use serde::{Deserialize, Serialize};

/// The index format's version.
pub(crate) const INDEX_VERSION: u32 = 1;

/// The largest index object a restore reads.
pub(crate) const MAX_INDEX: u64 = 64 << 20;

/// The largest data object: files are uploaded in parts of at most this
/// many bytes, so that neither an upload nor a restore holds more than one
/// part in memory.
pub(crate) const PART_MAX: u64 = 16 << 20;

/// One object holding `len` bytes of a file from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Part {
    /// The object's name, relative to the log's root.
    pub object: String,
    /// Where its bytes go in the file.
    pub offset: u64,
    /// How many bytes it holds.
    pub len: u64,
    /// Their CRC32C.
    pub crc: u32,
}

/// One local file of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileEntry {
    /// Path relative to the log directory (`shard-0000/…seg`).
    pub path: String,
    /// The file's length; bytes past the parts are zeros.
    pub len: u64,
    /// The file's bytes from offset 0, in order, without gaps.
    pub parts: Vec<Part>,
}

/// One archive pass's commit point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ArchiveIndex {
    /// [`INDEX_VERSION`].
    pub version: u32,
    /// The log's id, in hex.
    pub log_id: String,
    /// The writer generation (lease) that wrote it.
    pub generation: u64,
    /// The sealed epoch every shard's files reach.
    pub epoch: u64,
    /// Every file, in path order.
    pub files: Vec<FileEntry>,
}

/// Why an index is not usable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexFault {
    #[error("not an index: {0}")]
    Json(#[from] serde_json::Error),
    #[error("index version {0}, this build reads {INDEX_VERSION}")]
    Version(u32),
    #[error("index of log {found}, expected {expected}")]
    LogId { found: String, expected: String },
    #[error("index names {0:?}, which is not a file of a log directory")]
    Path(String),
    #[error("index names {0:?} twice")]
    Duplicate(String),
    #[error("{path}: part {object} at {offset} does not continue at {expected} or runs past {len}")]
    Tiling {
        path: String,
        object: String,
        offset: u64,
        expected: u64,
        len: u64,
    },
    #[error("{path}: part {object} holds {len} bytes, more than {PART_MAX}")]
    PartTooLarge {
        path: String,
        object: String,
        len: u64,
    },
}

impl ArchiveIndex {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Only strings and integers: serialising cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Decode and check an index of log `log_id`.
    pub(crate) fn decode(b: &[u8], log_id: [u8; 16]) -> Result<ArchiveIndex, IndexFault> {
        let ix: ArchiveIndex = serde_json::from_slice(b)?;
        ix.check(log_id)?;
        Ok(ix)
    }

    fn check(&self, log_id: [u8; 16]) -> Result<(), IndexFault> {
        if self.version != INDEX_VERSION {
            return Err(IndexFault::Version(self.version));
        }
        let expected = super::names::log_id_hex(log_id);
        if self.log_id != expected {
            return Err(IndexFault::LogId {
                found: self.log_id.clone(),
                expected,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.files {
            if !super::names::is_log_file(&f.path) {
                return Err(IndexFault::Path(f.path.clone()));
            }
            if !seen.insert(f.path.as_str()) {
                return Err(IndexFault::Duplicate(f.path.clone()));
            }
            let mut at = 0u64;
            for p in &f.parts {
                if p.len > PART_MAX {
                    return Err(IndexFault::PartTooLarge {
                        path: f.path.clone(),
                        object: p.object.clone(),
                        len: p.len,
                    });
                }
                let end = p.offset.checked_add(p.len);
                if p.offset != at || end.is_none_or(|e| e > f.len) {
                    return Err(IndexFault::Tiling {
                        path: f.path.clone(),
                        object: p.object.clone(),
                        offset: p.offset,
                        expected: at,
                        len: f.len,
                    });
                }
                at = end.unwrap_or(at);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ArchiveIndex {
        ArchiveIndex {
            version: INDEX_VERSION,
            log_id: super::super::names::log_id_hex([1; 16]),
            generation: 1,
            epoch: 5,
            files: vec![FileEntry {
                path: "shard-0000/00000000000000000000.seg".into(),
                len: 1 << 20,
                parts: vec![
                    Part {
                        object: "a".into(),
                        offset: 0,
                        len: 4096,
                        crc: 1,
                    },
                    Part {
                        object: "b".into(),
                        offset: 4096,
                        len: 100,
                        crc: 2,
                    },
                ],
            }],
        }
    }

    #[test]
    fn round_trips_and_refuses_what_does_not_tile() {
        let ix = sample();
        assert_eq!(ArchiveIndex::decode(&ix.encode(), [1; 16]).unwrap(), ix);
        assert!(matches!(
            ArchiveIndex::decode(&ix.encode(), [2; 16]),
            Err(IndexFault::LogId { .. })
        ));
        let mut gap = sample();
        gap.files[0].parts[1].offset = 5000;
        assert!(matches!(gap.check([1; 16]), Err(IndexFault::Tiling { .. })));
        let mut past = sample();
        past.files[0].parts[1].len = 1 << 20;
        assert!(matches!(
            past.check([1; 16]),
            Err(IndexFault::Tiling { .. })
        ));
        let mut escape = sample();
        escape.files[0].path = "../x".into();
        assert!(matches!(escape.check([1; 16]), Err(IndexFault::Path(_))));
    }

    #[test]
    fn arbitrary_bytes_are_an_error_not_a_panic() {
        let mut rng = crate::rng::SplitMix(7);
        let good = sample().encode();
        for i in 0..2000 {
            let mut b = good.clone();
            let n = 1 + (rng.next_u64() % 4) as usize;
            for _ in 0..n {
                let at = (rng.next_u64() as usize) % b.len();
                b[at] = rng.next_u64() as u8;
            }
            if i % 3 == 0 {
                b.truncate((rng.next_u64() as usize) % b.len());
            }
            let _ = ArchiveIndex::decode(&b, [1; 16]);
        }
    }
}
