//! The chunked scan must decide exactly what the whole-segment scan
//! decides, whatever the chunk size: frames straddling reads, frames
//! longer than the head room and than a chunk, damage anywhere. The scan
//! reads through `io::read_ahead::ChunkStream`; the test lives here, with
//! the scanner, since `io` may not import `recovery`.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::format::BLOCK;
use crate::format::frame::{FrameMeta, RecordKind, encode_header, frame_len};
use crate::format::segment_header::{RECORDS_START, SegmentHeader};
use crate::ids::{Epoch, Seq, ShardId};
use crate::io::read_ahead::{CHUNK, ChunkStream, ROOM};
use crate::io::sim::SimStorage;
use crate::io::{AlignedBuf, Storage, StorageFile};
use crate::recovery::scan::{Corrupt, Expect, ScanOutcome, Scanner, SegmentBytes};
use crate::rng::SplitMix;

const LOG: [u8; 16] = [4; 16];
const SEG: usize = 64 << 10;

fn exp() -> Expect {
    Expect {
        log_id: LOG,
        shard: ShardId(0),
        max_payload: 40 << 10,
    }
}

/// A shard's segment files: frames of random lengths (up to 30 KiB),
/// each vouching for everything before it or for nothing.
fn segments(rng: &mut SplitMix) -> Vec<Vec<u8>> {
    let mut segs = Vec::new();
    let (mut seq, mut index) = (0u64, 0u64);
    let vouching = rng.below(2) == 0;
    for _ in 0..3 {
        let h = SegmentHeader {
            log_id: LOG,
            shard: ShardId(0),
            index,
            first_seq: Seq(seq),
            first_epoch: Epoch(1),
            nonce: rng.next_u64(),
            segment_size: SEG as u64,
            zeroed: false,
            sized: false,
        };
        let mut b = vec![0u8; SEG];
        h.encode_into(&mut b);
        let mut pos = RECORDS_START;
        loop {
            let len = match rng.below(4) {
                0 => rng.below(64) as usize,
                1 => rng.below(30 << 10) as usize,
                _ => rng.below(6000) as usize,
            };
            if pos + frame_len(len) > SEG {
                break;
            }
            let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let meta = FrameMeta {
                seq: Seq(seq),
                epoch: Epoch(1),
                durable_next: if vouching { Seq(seq) } else { Seq(0) },
                kind: RecordKind::Data,
            };
            b[pos..pos + 40].copy_from_slice(&encode_header(h.seed(), &meta, &payload));
            b[pos + 40..pos + 40 + len].copy_from_slice(&payload);
            pos += frame_len(len);
            seq += 1;
            if rng.below(40) == 0 {
                break;
            }
        }
        segs.push(b);
        index += 1;
    }
    // Sometimes the last one is a prepared, blank segment.
    if rng.below(3) == 0 {
        segs.push(vec![0u8; SEG]);
    }
    segs
}

fn damage(rng: &mut SplitMix, segs: &mut [Vec<u8>]) {
    for _ in 0..rng.below(3) {
        let s = rng.below(segs.len() as u64) as usize;
        let seg = &mut segs[s];
        if seg.is_empty() {
            continue;
        }
        let at = rng.below(seg.len() as u64) as usize;
        match rng.below(6) {
            0 => seg[at] ^= 1 << rng.below(8),
            1 => {
                let at = at & !7;
                let end = (at + 40).min(seg.len());
                seg[at..end].fill(0);
            }
            2 => seg.truncate(at),
            3 => {
                let end = (at + 1 + rng.below(300) as usize).min(seg.len());
                for b in &mut seg[at..end] {
                    *b = rng.next_u64() as u8;
                }
            }
            4 => seg.extend((0..rng.below(9000)).map(|_| rng.next_u64() as u8)),
            _ => {
                let end = (at + rng.below(20000) as usize).min(seg.len());
                seg[at..end].fill(0);
            }
        }
    }
}

type Frames = Vec<(Seq, u64, usize, u64)>;

fn whole(segs: &[Vec<u8>]) -> (Result<ScanOutcome, Corrupt>, Frames) {
    let mut frames = Vec::new();
    let mut sc = Scanner::new(exp());
    let seg = |i: usize| SegmentBytes {
        index: i as u64,
        path: Path::new("d").join(format!("{i}.seg")),
        bytes: &segs[i],
    };
    for i in 0..segs.len() {
        let next = segs.get(i + 1).map(|b| &b[..b.len().min(BLOCK)]);
        let mut on = |f: &crate::format::frame::Frame<'_>, s: u64, p: usize| {
            frames.push((
                f.meta.seq,
                s,
                p,
                f.payload.iter().map(|&x| u64::from(x)).sum(),
            ))
        };
        if let Some(mut stop) = sc.feed(&seg(i), next, &mut on) {
            for j in i + 1..segs.len() {
                stop.consider_later(&seg(j), &exp());
            }
            return (sc.decide(stop), frames);
        }
    }
    (Ok(sc.finish()), frames)
}

async fn chunked(
    segs: &[Vec<u8>],
    chunk: usize,
    room: usize,
) -> (Result<ScanOutcome, Corrupt>, Frames) {
    let sim = SimStorage::default();
    let dir = Path::new("d");
    sim.create_dir_all(dir).await.unwrap();
    let paths: Vec<PathBuf> = (0..segs.len())
        .map(|i| dir.join(format!("{i}.seg")))
        .collect();
    for (p, b) in paths.iter().zip(segs) {
        let f = sim.open(p, true).await.unwrap();
        if !b.is_empty() {
            f.write_at(Rc::new(AlignedBuf::from_slice(b)), 0)
                .await
                .unwrap();
        }
    }
    let mut frames = Vec::new();
    let mut sc = Scanner::new(exp());
    let mut st = ChunkStream::new(sim, paths.clone()).with_sizes(chunk, room);
    for i in 0..segs.len() {
        st.start_file(i).await.unwrap();
        let mut on = |f: &crate::format::frame::Frame<'_>, s: u64, p: usize| {
            assert_eq!(f.payload.as_ptr() as usize % 8, 0, "payload alignment");
            frames.push((
                f.meta.seq,
                s,
                p,
                f.payload.iter().map(|&x| u64::from(x)).sum(),
            ))
        };
        let stop = sc
            .feed_window(i as u64, &paths[i], &mut st, &mut on)
            .await
            .unwrap();
        if let Some(mut stop) = stop {
            for (j, path) in paths.iter().enumerate().skip(i + 1) {
                st.start_file(j).await.unwrap();
                stop.consider_later_window(j as u64, path, &mut st, &exp())
                    .await
                    .unwrap();
            }
            return (sc.decide(stop), frames);
        }
    }
    (Ok(sc.finish()), frames)
}

#[test]
fn chunked_scans_decide_like_whole_segment_scans() {
    let mut rng = SplitMix(0x5ca1ab1e);
    let mut outcomes = [0usize; 3];
    for trial in 0..300 {
        let mut segs = segments(&mut rng);
        if trial % 5 != 0 {
            damage(&mut rng, &mut segs);
        }
        let want = whole(&segs);
        outcomes[match &want.0 {
            Ok(o) if o.torn.is_some() => 1,
            Ok(_) => 0,
            Err(_) => 2,
        }] += 1;
        for (chunk, room) in [(4096, 4096), (8192, 4096), (12288, 8192), (CHUNK, ROOM)] {
            let got = futures_lite::future::block_on(chunked(&segs, chunk, room));
            assert_eq!(got, want, "trial {trial}, chunk {chunk}, room {room}");
        }
    }
    // The trials cover clean ends, torn tails and corruption.
    assert!(outcomes.iter().all(|&n| n > 10), "{outcomes:?}");
}
