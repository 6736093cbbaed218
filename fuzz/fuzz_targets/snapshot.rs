//! Snapshot files: `checkpoint::snapshot::read` over `SimStorage`, for a
//! snapshot reference and a file from the fuzzer: the file's bytes as they
//! are, or a well-formed snapshot (header CRC and data CRC right, fields
//! from the fuzzer) then damaged in a few bytes; the reference names the
//! file and its length and CRC, right or off.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use shardwal::SimStorage;
use shardwal::checkpoint::payloads::SnapshotRef;
use shardwal::checkpoint::snapshot::{self, MAX_SNAPSHOT};
use shardwal::format::BLOCK;
use shardwal::io::sim::SimImage;
use shardwal_fuzz::{Src, block_on, mutate, string};

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let (shard, checkpoint) = (src.below(2), src.edgy_u64() % 4);
    let mode = src.u8();
    let file: Vec<u8> = if mode & 1 == 0 {
        src.rest().to_vec()
    } else {
        let n = usize::from(src.u16() % 8192);
        let body = src.bytes(n).to_vec();
        let len = match src.below(4) {
            0 => src.edgy_u64(),
            _ => body.len() as u64,
        };
        let crc = crc32c::crc32c(&body);
        let mut b = vec![0u8; BLOCK];
        b[..8].copy_from_slice(b"SHRDSNAP");
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&u32::from(src.u8() % 2).to_le_bytes());
        b[16..24].copy_from_slice(&(src.edgy_u64() % 4).to_le_bytes());
        b[24..32].copy_from_slice(&len.to_le_bytes());
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        let hcrc = crc32c::crc32c(&b[..36]);
        b[36..40].copy_from_slice(&hcrc.to_le_bytes());
        b.extend_from_slice(&body);
        b.resize(b.len().next_multiple_of(BLOCK), 0);
        mutate(&mut src, &mut b);
        if src.below(4) == 0 {
            b.truncate(usize::from(src.u16()));
        }
        b
    };
    let name = snapshot::snapshot_name(checkpoint);
    let body_len = file.len().saturating_sub(BLOCK);
    let expect = SnapshotRef {
        file: if mode & 2 == 0 {
            name.clone()
        } else {
            string(&mut src)
        },
        len: match src.below(4) {
            0 => src.edgy_u64(),
            1 => MAX_SNAPSHOT,
            _ => body_len as u64,
        },
        crc: match src.below(2) {
            0 => crc32c::crc32c(file.get(BLOCK..).unwrap_or(&[])),
            _ => src.u32(),
        },
    };
    let dir = Path::new("/log/shard-0000");
    let image = SimImage::default().with_file(&dir.join(&name), &file);
    let sim = SimStorage::from_image(&image);
    if let Ok(bytes) = block_on(snapshot::read(&sim, dir, shard, checkpoint, &expect)) {
        assert_eq!(bytes.len() as u64, expect.len);
    }
});
