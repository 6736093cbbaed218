//! Control-record payloads: `checkpoint::payloads::decode` of a
//! `CommitRecord`, a `CheckpointMarker` (and the other archived types,
//! `SnapshotRef`, `Manifest`, `Layout`) on the fuzzer's bytes, at the start
//! of an aligned buffer and at an odd offset; and of valid encoded values
//! built from the fuzzer's fields, then damaged. A value that decodes must
//! round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwal::checkpoint::payloads::{self, CheckpointMarker, SnapshotRef};
use shardwal::{CommitRecord, Layout, Manifest};
use shardwal_fuzz::{Src, checkpoint_marker, commit_record, mutate};

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let bytes: Vec<u8> = match src.below(3) {
        0 => src.rest().to_vec(),
        1 => {
            let mut b = payloads::encode(&commit_record(&mut src)).expect("encode");
            mutate(&mut src, &mut b);
            b
        }
        _ => {
            let mut b = payloads::encode(&checkpoint_marker(&mut src)).expect("encode");
            mutate(&mut src, &mut b);
            b
        }
    };
    // At an odd address too: the decoder copies into an aligned buffer.
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    for b in [&bytes[..], &shifted[1..]] {
        if let Ok(c) = payloads::decode::<CommitRecord>(b, "commit") {
            let again = payloads::encode(&c).expect("re-encode");
            assert_eq!(
                payloads::decode::<CommitRecord>(&again, "commit").ok(),
                Some(c)
            );
        }
        if let Ok(m) = payloads::decode::<CheckpointMarker>(b, "marker") {
            let again = payloads::encode(&m).expect("re-encode");
            assert_eq!(
                payloads::decode::<CheckpointMarker>(&again, "marker").ok(),
                Some(m)
            );
        }
        let _ = payloads::decode::<SnapshotRef>(b, "snapshot ref");
        let _ = payloads::decode::<Manifest>(b, "manifest");
        let _ = payloads::decode::<Layout>(b, "layout");
    }
});
