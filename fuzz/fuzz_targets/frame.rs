//! Frames: walk a buffer with `decode_at` from offset 0 the way a scanner
//! does (a valid frame advances by its length; anything else ends the walk,
//! or, to reach later bytes, resynchronizes at the next 8-byte boundary),
//! with a bounded step count and a small payload bound. The buffer is the
//! fuzzer's bytes as they are, or frames encoded (valid CRCs) from the
//! fuzzer's fields and then damaged in a few bytes. Each position is also
//! decoded through `SegmentFrames` over a `SliceWindow`, which must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwal::format::frame::{self, Decoded, FRAME_HEADER};
use shardwal::format::seed::SegmentSeed;
use shardwal::format::segment_header::{RECORDS_START, SegmentHeader};
use shardwal::format::{FRAME_ALIGN, MAX_RECORD_HARD};
use shardwal::io::window::{SegmentFrames, SliceWindow};
use shardwal::{Epoch, Seq, ShardId};
use shardwal_fuzz::{Src, block_on, mutate, push_frame};

const MAX_STEPS: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let mode = src.u8();
    // A segment header whose seed the frames use (its fields from the input).
    let header = SegmentHeader {
        log_id: [7; 16],
        shard: ShardId(0),
        index: 0,
        first_seq: Seq(0),
        first_epoch: Epoch(0),
        nonce: u64::from(src.u16()),
        segment_size: 1 << 20,
        zeroed: false,
        sized: false,
    };
    let seed = header.seed();
    let max_payload = match src.below(4) {
        0 => MAX_RECORD_HARD,
        1 => 0,
        _ => usize::from(src.u16() % 4096),
    };
    let buf: Vec<u8> = if mode & 1 == 0 {
        src.rest().to_vec()
    } else {
        let mut b = Vec::new();
        let mut next = 0;
        for _ in 0..src.below(32) {
            push_frame(&mut src, &mut b, seed, &mut next);
        }
        mutate(&mut src, &mut b);
        b
    };
    walk(&buf, seed, max_payload, mode & 2 != 0);
    // Positions off the end, and the largest ones, are answered too.
    for pos in [buf.len(), buf.len() + 1, usize::MAX] {
        let _ = frame::decode_at(&buf, pos, seed, max_payload);
    }
    let _ = frame::decode_at(&buf, 0, SegmentSeed(0), usize::MAX);
    let _ = frame::frame_need(&buf, usize::MAX);

    // The same bytes behind a segment header, through the window walk.
    let mut seg = vec![0u8; RECORDS_START];
    header.encode_into(&mut seg);
    seg.extend_from_slice(&buf);
    let frames = SegmentFrames::new(&header, max_payload);
    let mut pos = RECORDS_START as u64;
    for _ in 0..MAX_STEPS {
        let mut win = SliceWindow::new(&seg);
        let d = block_on(frames.decode(&mut win, pos)).unwrap_or_else(|never| match never {});
        let direct = frame::decode_at(&seg, pos as usize, seed, max_payload);
        assert_eq!(
            matches!(d, Decoded::Frame(_)),
            matches!(direct, Decoded::Frame(_)),
            "window and direct decode disagree at {pos}"
        );
        match d {
            Decoded::Frame(f) => pos += f.len as u64,
            _ => break,
        }
    }
});

fn walk(buf: &[u8], seed: SegmentSeed, max_payload: usize, resync: bool) {
    let mut pos = 0usize;
    for _ in 0..MAX_STEPS {
        let rest = buf.get(pos..).unwrap_or(&[]);
        let need = frame::frame_need(rest, max_payload);
        assert!(need >= FRAME_HEADER);
        let _ = frame::declared_payload_len(rest);
        match frame::decode_at(buf, pos, seed, max_payload) {
            Decoded::Frame(f) => {
                assert!(f.payload.len() <= max_payload);
                assert_eq!(f.len, frame::frame_len(f.payload.len()));
                assert_eq!(f.len, need, "frame_need disagrees with decode_at at {pos}");
                // (A frame's padding may run past the buffer: it is checked
                // only where readable, by design.)
                pos += f.len;
            }
            Decoded::End if !resync => break,
            Decoded::Invalid(_) if !resync => break,
            Decoded::End | Decoded::Invalid(_) => {
                pos = (pos / FRAME_ALIGN + 1) * FRAME_ALIGN;
                if pos > buf.len() {
                    break;
                }
            }
        }
    }
}
