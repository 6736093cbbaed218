//! Checkpoint manifests: `checkpoint::manifest::decode` on the fuzzer's
//! bytes as they are, and on the fuzzer's bytes as the payload of a
//! correctly framed manifest file (magic, version, length and CRC right), so
//! that the rkyv validation of the `Manifest` archive is reached; and a
//! manifest built from the fuzzer's fields, encoded, then damaged. Also
//! `manifest::load_newest` over `SimStorage` holding the bytes as the newest
//! of the log's manifests. A manifest that decodes must round-trip.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use shardwal::checkpoint::ShardCheckpoint;
use shardwal::checkpoint::manifest::{self, CHECKPOINT_DIR, MAX_MANIFEST};
use shardwal::io::sim::SimImage;
use shardwal::meta_file::{self, Kind};
use shardwal::{Manifest, SimStorage};
use shardwal_fuzz::{Src, block_on, commit_record, mutate, snapshot_ref};

/// The manifest file kind (as `checkpoint::manifest` defines it).
const KIND: Kind = Kind {
    magic: b"SHRDMANI",
    version: 1,
    max_payload: MAX_MANIFEST,
    name: "manifest",
};

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let file: Vec<u8> = match src.below(3) {
        0 => src.rest().to_vec(),
        1 => meta_file::encode(KIND, src.rest()),
        _ => {
            let n = src.below(4);
            let m = Manifest {
                log_id: [5; 16],
                checkpoint: src.edgy_u64(),
                epoch: src.edgy_u64(),
                shards: (0..n)
                    .map(|_| ShardCheckpoint {
                        shard: src.u32(),
                        replay_from: src.edgy_u64(),
                        marker_seq: src.edgy_u64(),
                        snapshot: snapshot_ref(&mut src),
                        commit: src.bool().then(|| commit_record(&mut src)),
                    })
                    .collect(),
            };
            let mut b = manifest::encode(&m).expect("encode a small manifest");
            mutate(&mut src, &mut b);
            b
        }
    };
    if let Ok(m) = manifest::decode(&file) {
        let again = manifest::encode(&m).expect("re-encode a decoded manifest");
        assert_eq!(manifest::decode(&again).ok(), Some(m));
    }
    // The same bytes as the newest manifest file of a log.
    let log = Path::new("/log");
    let dir = log.join(CHECKPOINT_DIR);
    let image = SimImage::default()
        .with_file(&dir.join(manifest::manifest_name(7)), &file)
        .with_file(&dir.join(manifest::manifest_name(u64::MAX)), &file);
    let sim = SimStorage::from_image(&image);
    let _ = block_on(manifest::load_newest(&sim, log, [5; 16]));
});
