//! Typed payloads of the control records, serialized with rkyv and read back
//! zero-copy with validation (`rkyv::access`), never trusted unchecked.

use rkyv::{Archive, Deserialize, Serialize};

pub use crate::error::PayloadError;

/// The offset reached in one input source.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceOffset {
    /// Name of the source (a partition, a device, a feed).
    pub source: String,
    /// Position to resume the source from.
    pub offset: u64,
}

/// An epoch's commit record: where the engine's sources stood, and its
/// watermark, when the epoch ended on this shard.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitRecord {
    /// The epoch being committed.
    pub epoch: u64,
    /// Source offsets at the end of the epoch.
    pub offsets: Vec<SourceOffset>,
    /// Event-time watermark at the end of the epoch.
    pub watermark: u64,
}

/// Reference to a shard's state snapshot file.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotRef {
    /// File name inside the shard's directory.
    pub file: String,
    /// Length of the snapshot bytes.
    pub len: u64,
    /// CRC32C of the snapshot bytes.
    pub crc: u32,
}

/// The checkpoint marker a shard logs when its snapshot is durable.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMarker {
    /// Checkpoint id.
    pub checkpoint: u64,
    /// The epoch the snapshot was taken at (state after all records of epochs <= it).
    pub epoch: u64,
    /// The snapshot.
    pub snapshot: SnapshotRef,
}

/// Serialize a payload with rkyv. Fails only if the serializer does (an
/// archive too large for rkyv's 32-bit relative pointers, for one); the
/// caller decides what that means, nothing is written half-made.
pub fn encode<T>(value: &T) -> Result<Vec<u8>, PayloadError>
where
    T: for<'a> Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rkyv::rancor::Error,
        >,
    >,
{
    rkyv::to_bytes::<rkyv::rancor::Error>(value)
        .map(|v| v.to_vec())
        .map_err(|e| PayloadError::Encode {
            type_name: std::any::type_name::<T>(),
            reason: e.to_string(),
        })
}

/// Validate and deserialize a payload read from the log (or from a
/// manifest or layout file); `what` names it in the error.
pub fn decode<T>(bytes: &[u8], what: &'static str) -> Result<T, PayloadError>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    // Payloads are 8-byte aligned in segments and read buffers; copy into an
    // aligned buffer anyway so a caller's unaligned slice cannot fail here.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned).map_err(|e| PayloadError::Invalid {
        what,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_round_trips_and_garbage_is_an_error() {
        let c = CommitRecord {
            epoch: 7,
            offsets: vec![SourceOffset {
                source: "feed-0".into(),
                offset: 99,
            }],
            watermark: 1234,
        };
        let b = encode(&c).unwrap();
        assert_eq!(decode::<CommitRecord>(&b, "commit").unwrap(), c);
        for cut in 0..b.len() {
            // Any answer will do, as long as it is one: no panic.
            assert!(decode::<CommitRecord>(&b[..cut], "commit").is_err() || cut == b.len());
        }
        assert!(matches!(
            decode::<CommitRecord>(&[0xff; 64], "commit"),
            Err(PayloadError::Invalid { what: "commit", .. })
        ));
    }
}
