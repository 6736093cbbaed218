//! Segment headers: `SegmentHeader::decode` on the fuzzer's bytes as they
//! are, and on headers encoded from the fuzzer's fields (valid CRC) then
//! damaged in a few bytes. A header that decodes must encode back to the
//! same 84 used bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwal::format::BLOCK;
use shardwal::format::segment_header::{HEADER_USED, SegmentHeader};
use shardwal::{Seq, ShardId};
use shardwal_fuzz::{Src, mutate, segment_header};

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let raw: Vec<u8> = if src.bool() {
        src.rest().to_vec()
    } else {
        let (shard, index, first) = (ShardId(src.u32()), src.edgy_u64(), Seq(src.edgy_u64()));
        let h = segment_header(&mut src, [3; 16], shard, index, first);
        let mut b = vec![0u8; BLOCK];
        h.encode_into(&mut b);
        mutate(&mut src, &mut b);
        let keep = match src.below(4) {
            0 => usize::from(src.u16()) % (BLOCK + 1),
            _ => BLOCK,
        };
        b.truncate(keep);
        b
    };
    if let Ok(h) = SegmentHeader::decode(&raw) {
        let _ = h.seed();
        let mut again = vec![0u8; BLOCK];
        h.encode_into(&mut again);
        assert_eq!(&again[..HEADER_USED], &raw[..HEADER_USED]);
        assert_eq!(SegmentHeader::decode(&again), Ok(h));
    }
});
