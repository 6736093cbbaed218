//! Torn tail: cutting the last segment at every byte offset across its last
//! records (including the close record that vouches for the whole log, and
//! the header of a freshly rolled segment) is recovered as a torn tail when
//! a crash could have left it. Recovery keeps exactly the records whose
//! bytes are all before the cut, reports the cut where the first lost frame
//! starts, and the log accepts and keeps new records afterwards.
//!
//! A cut is simulated two ways: truncating the file (`set_len`), and zeroing
//! every byte from the cut on while keeping the file size. Zeroing from a
//! sector boundary is what a zero-filled segment looks like after a write
//! that never reached the disk; zeroing from inside a sector, so that every
//! sector a frame spans still holds some of its bytes, is a shape no crash
//! leaves (sectors land whole), and in a segment zeroed before use it is
//! reported as corruption (docs/FORMAT.md §5), like a partly zeroed header.
//! Both the std backend and the Direct I/O backend are exercised.
//!
//! Truncation is a crash's shape only for a segment whose length grows as
//! it is written (`SegmentPrepare::Create`): those scenarios write the log
//! that way. A segment prepared to its size (the default zero fill, flagged
//! `SIZED`) had its length made durable before its first write, so a
//! shorter file is damage, and recovery refuses it at the first frame that
//! is not wholly in the file (`CorruptionCause::SegmentTruncated`). Either
//! way, a header cut to fewer than its 84 bytes (but not to nothing) is
//! damage: every write is block-aligned, so no crash leaves a partial one.

use crate::common;

use std::path::{Path, PathBuf};

use common::{
    FramePos, check_records, copy_dir, frames_in, payload_between, read_all, run, within,
};
use shardwal::format::segment_header::{HEADER_USED, SegmentHeader};
use shardwal::segment::shard_dir;
use shardwal::{
    DmaStorage, Error, FsyncPolicy, RecordKind, SegmentPrepare, Seq, ShardConfig, ShardId,
    ShardLog, StdStorage, Storage, error::CorruptionCause,
};

const TAG: u64 = 0x70e2;
/// No single call may take this long (a hang is a bug, not slowness).
const LIMIT: std::time::Duration = std::time::Duration::from_secs(30);
const SHARD: ShardId = ShardId(0);
/// The payload bound recovery applies (the format's hard maximum).
const MAX_PAYLOAD: usize = shardwal::format::MAX_RECORD_HARD;

fn rec(seq: u64) -> Vec<u8> {
    payload_between(TAG, seq, 90, 110)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// `set_len(offset)`.
    Truncate,
    /// Zero every byte from the offset to the end of the file.
    ZeroRest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One segment holding every record; the cuts cover its last three data
    /// records and the close record.
    OneSegment,
    /// The last segment was just rolled and holds three data records and the
    /// close record; the cuts cover its header and all of its records.
    FreshSegment,
}

fn config(layout: Layout) -> ShardConfig {
    ShardConfig {
        segment_size: match layout {
            Layout::OneSegment => 64 << 10,
            Layout::FreshSegment => 8 << 10,
        },
        buffer_size: 4 << 10,
        max_record_size: 1024,
        fsync: FsyncPolicy::Never,
        ..ShardConfig::default()
    }
}

/// Write the original log into `dir`, its segments prepared with
/// `prepare`, and close it.
async fn write_original<S: Storage>(
    storage: S,
    dir: &Path,
    layout: Layout,
    prepare: SegmentPrepare,
) {
    let cfg = ShardConfig {
        prepare,
        ..config(layout)
    };
    let log = ShardLog::open(storage, dir, SHARD, cfg)
        .await
        .expect("open");
    let mut seq = 0;
    match layout {
        Layout::OneSegment => {
            for _ in 0..40 {
                assert_eq!(log.append(&rec(seq)).await.expect("append").seq, Seq(seq));
                seq += 1;
            }
        }
        Layout::FreshSegment => {
            // Fill the first segment until a record rolls into the second,
            // then add two more.
            while log.stats().rolls < 1 {
                assert_eq!(log.append(&rec(seq)).await.expect("append").seq, Seq(seq));
                seq += 1;
            }
            for _ in 0..2 {
                assert_eq!(log.append(&rec(seq)).await.expect("append").seq, Seq(seq));
                seq += 1;
            }
        }
    }
    log.close().await.expect("close");
}

/// What recovery must find after a cut at `at` in the last segment.
struct Expected {
    records: u64,
    /// Where the torn tail starts, if bytes were cut.
    torn: Option<(PathBuf, u64)>,
    removed_segments: usize,
}

/// What recovery must find after a cut at `at` in the last segment, whose
/// original bytes are `bytes`; `Err((path, offset))` when it must refuse
/// the log as corrupt there: a partly zeroed header, or one cut to fewer
/// than its 84 bytes (offset 0), a frame zeroed from inside one of its
/// sectors on, so that every sector it spans still holds some of its bytes
/// (a shape no crash leaves: a write lands or not per sector), in a
/// segment that was zeroed before use, or any truncation of a `SIZED`
/// segment (at the first frame not wholly kept, or the end of the frames).
fn expected(
    last: &Path,
    bytes: &[u8],
    frames: &[FramePos],
    before: u64,
    at: usize,
    cut: Cut,
) -> Result<Expected, (PathBuf, u64)> {
    let nonzero = |from: usize| from < at && bytes[from..at].iter().any(|&b| b != 0);
    // Whether the cut changed the bytes `from..to`: truncation removes them,
    // zeroing changes only the ones that were not zero already.
    let changed = |from: usize, to: usize| match cut {
        Cut::Truncate => at < to,
        Cut::ZeroRest => at < to && bytes[at.max(from)..to].iter().any(|&b| b != 0),
    };
    if changed(0, HEADER_USED) {
        if at > 0 {
            // All of the header is there but part of it is zeroed, or the
            // file ends inside it: that is damage, not a crash (a header
            // sits in one sector, a crash leaves a sector old or new, and
            // no write is shorter than a block), so recovery refuses it
            // rather than drop the records behind it.
            return Err((last.to_path_buf(), 0));
        }
        // The header is cut: the whole segment goes.
        return Ok(Expected {
            records: before,
            torn: nonzero(0).then(|| (last.to_path_buf(), 0)),
            removed_segments: 1,
        });
    }
    // A frame survives when its header and payload are unchanged by the
    // cut (its zero padding carries no information).
    let kept = frames
        .iter()
        .take_while(|f| !changed(f.pos, f.pos + f.used))
        .count();
    let sized = SegmentHeader::decode(bytes).is_ok_and(|h| h.sized);
    if cut == Cut::Truncate && sized {
        let end = frames.last().map_or(HEADER_USED, |f| f.pos + f.len);
        let stop = frames.get(kept).map_or(end, |f| f.pos);
        return Err((last.to_path_buf(), stop as u64));
    }
    if let Some(f) = frames.get(kept)
        && cut == Cut::ZeroRest
        && common::segment_zeroed(bytes)
    {
        let mut after = bytes.to_vec();
        after[at..].fill(0);
        // The frame as its (possibly zeroed) length field bounds it; a
        // length over the bound leaves the header alone.
        let len = u32::from_le_bytes(after[f.pos + 4..f.pos + 8].try_into().unwrap()) as usize;
        let used = 40 + if len <= MAX_PAYLOAD { len } else { 0 };
        if common::landed_whole(&after, f.pos, used) {
            return Err((last.to_path_buf(), f.pos as u64));
        }
    }
    let torn = frames
        .get(kept)
        .filter(|f| nonzero(f.pos))
        .map(|f| (last.to_path_buf(), f.pos as u64));
    Ok(Expected {
        records: before + kept as u64,
        torn,
        removed_segments: 0,
    })
}

/// What recovery found, reported back to the test thread.
struct Recovered {
    records: u64,
    next_seq: Seq,
    removed_segments: usize,
    torn: Option<(PathBuf, u64)>,
}

/// What one recovery session found.
struct Found {
    /// `Err((segment, offset))` when opening reported corruption.
    opened: Result<Recovered, (PathBuf, u64)>,
}

/// Open the cut log, report what recovery found, and if it opened, append
/// the next record and close. One executor per session, like one process:
/// `close` does not wait for the shard's segment-preparation task (see
/// tests/recovery/close_quiesces_io.rs), and two sessions on one executor would race
/// on the directory.
fn session_after_cut<S: Storage + Send + Copy>(
    storage: S,
    dir: &Path,
    layout: Layout,
    at: usize,
) -> Found {
    let dir = dir.to_path_buf();
    run("cut-session", move || async move {
        let opened = within(
            LIMIT,
            &format!("cut at {at}: reopen after the cut"),
            ShardLog::open(storage, &dir, SHARD, config(layout)),
        )
        .await;
        let log = match opened {
            Ok(log) => log,
            Err(Error::Corruption {
                segment,
                offset,
                cause,
                ..
            }) => {
                if let CorruptionCause::SegmentTruncated { len, .. } = cause {
                    assert_eq!(len, at as u64, "cut at {at}: the length reported");
                }
                return Found {
                    opened: Err((segment, offset)),
                };
            }
            Err(e) => panic!("cut at {at}: reopen failed: {e}"),
        };
        let r = log.recovery().clone();
        // Writing continues at the next sequence number.
        let next = r.records;
        let lsn = within(
            LIMIT,
            &format!("cut at {at}: append after recovery"),
            log.append(&rec(next)),
        )
        .await
        .expect("append after recovery");
        assert_eq!(lsn.seq, Seq(next), "cut at {at}: seq continues");
        within(
            LIMIT,
            &format!("cut at {at}: close after recovery"),
            log.close(),
        )
        .await
        .expect("close after recovery");
        Found {
            opened: Ok(Recovered {
                records: r.records,
                next_seq: r.next_seq,
                removed_segments: r.removed.len(),
                torn: r.torn.map(|t| (t.path, t.offset)),
            }),
        }
    })
}

/// Reopen after the session that wrote past the cut; return every record.
fn session_reopen<S: Storage + Send + Copy>(
    storage: S,
    dir: &Path,
    layout: Layout,
    at: usize,
) -> Vec<common::Owned> {
    let dir = dir.to_path_buf();
    run("reopen-session", move || async move {
        let log = within(
            LIMIT,
            &format!("cut at {at}: second reopen"),
            ShardLog::open(storage, &dir, SHARD, config(layout)),
        )
        .await
        .unwrap_or_else(|e| panic!("cut at {at}: second reopen failed: {e}"));
        let records = log.recovery().records;
        assert!(
            log.recovery().torn.is_none(),
            "cut at {at}: nothing torn after a clean close"
        );
        within(LIMIT, &format!("cut at {at}: second close"), log.close())
            .await
            .expect("close");
        let recs = read_all(storage, &dir, SHARD, 0).await;
        assert_eq!(recs.len() as u64, records);
        recs
    })
}

/// Cut a copy of the original log at every offset in `offsets` and check
/// recovery and continued writing.
fn cut_and_recover<S: Storage + Send + Copy>(
    storage: S,
    original: &Path,
    scratch: &Path,
    layout: Layout,
    cut: Cut,
    offsets: impl Fn(&[FramePos]) -> Vec<usize>,
) {
    let segs = common::data_segments(original, SHARD);
    let last_orig = segs.last().expect("a segment").clone();
    // Prepared segments after the last written one are removed by recovery.
    let trailing = common::segment_paths(original, SHARD).len() - segs.len();
    let bytes = std::fs::read(&last_orig).expect("read last segment");
    let frames = frames_in(&bytes);
    assert_eq!(frames.last().map(|f| f.kind), Some(RecordKind::Close));
    let before = frames[0].seq;
    let total = before + frames.len() as u64;
    let offsets = offsets(&frames);
    assert!(offsets.len() > 100, "{} cut offsets", offsets.len());
    let sized = SegmentHeader::decode(&bytes).is_ok_and(|h| h.sized);
    let mut torn_seen = 0;
    let mut damaged_headers = 0;
    let mut damaged_frames = 0;
    for &at in &offsets {
        let dir = scratch.join(format!("cut-{at}"));
        copy_dir(original, &dir);
        let last = shard_dir(&dir, SHARD).join(last_orig.file_name().expect("file name"));
        match cut {
            Cut::Truncate => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&last)
                    .expect("open segment");
                f.set_len(at as u64).expect("truncate");
            }
            Cut::ZeroRest => {
                let mut b = bytes.clone();
                b[at..].fill(0);
                std::fs::write(&last, &b).expect("rewrite segment");
            }
        }
        let found = session_after_cut(storage, &dir, layout, at);
        let mut want = match expected(&last, &bytes, &frames, before, at, cut) {
            Ok(want) => want,
            Err((path, offset)) => {
                assert_eq!(
                    found.opened.err(),
                    Some((path, offset)),
                    "cut at {at}: a partly zeroed header or whole-landed frame is reported as corruption"
                );
                if offset == 0 {
                    damaged_headers += 1;
                } else {
                    damaged_frames += 1;
                }
                std::fs::remove_dir_all(&dir).expect("remove scratch copy");
                continue;
            }
        };
        want.removed_segments += trailing;
        let Recovered {
            records,
            next_seq,
            removed_segments: removed,
            torn,
        } = found.opened.unwrap_or_else(|(p, o)| {
            panic!(
                "cut at {at} ({cut:?}): corruption claimed at {} offset {o}",
                p.display()
            )
        });
        assert_eq!(records, want.records, "cut at {at}: records kept");
        assert_eq!(next_seq, Seq(want.records), "cut at {at}: next seq");
        assert_eq!(
            removed, want.removed_segments,
            "cut at {at}: removed segments"
        );
        assert_eq!(torn, want.torn, "cut at {at}: torn tail");
        torn_seen += usize::from(want.torn.is_some());

        // What was written after the cut is kept by the next recovery.
        let next = want.records;
        let recs = session_reopen(storage, &dir, layout, at);
        assert_eq!(
            recs.len() as u64,
            next + 2,
            "cut at {at}: new record and close kept"
        );
        check_records(&recs, 0, rec);
        // The original close record survives only if the cut kept it.
        let closes: Vec<u64> = recs
            .iter()
            .filter(|r| r.kind == RecordKind::Close)
            .map(|r| r.seq)
            .collect();
        if next == total {
            assert_eq!(closes, vec![total - 1, next + 1]);
        } else {
            assert_eq!(closes, vec![next + 1], "cut at {at}");
        }
        std::fs::remove_dir_all(&dir).expect("remove scratch copy");
    }
    assert!(
        torn_seen + damaged_frames > offsets.len() / 2,
        "most cuts leave torn or damaged bytes ({torn_seen} torn, {damaged_frames} damaged)"
    );
    if cut == Cut::ZeroRest {
        assert!(
            damaged_frames > 10,
            "zeroing from inside a sector damages ({torn_seen} torn, {damaged_frames} damaged)"
        );
    } else if sized {
        assert_eq!(
            damaged_frames,
            offsets.iter().filter(|&&at| at >= HEADER_USED).count(),
            "every cut of a SIZED segment is refused"
        );
    } else {
        assert_eq!(damaged_frames, 0, "a short file is a tear");
    }
    match (cut, layout) {
        (Cut::ZeroRest, Layout::FreshSegment) => assert!(
            damaged_headers > 40,
            "only {damaged_headers} partly zeroed headers were refused"
        ),
        (Cut::Truncate, Layout::FreshSegment) => assert_eq!(
            damaged_headers,
            HEADER_USED - 1,
            "every header cut to 1..84 bytes is refused"
        ),
        _ => assert_eq!(damaged_headers, 0),
    }
}

/// Every offset from the start of the third-last data record to the end of
/// the close record.
fn last_records(frames: &[FramePos]) -> Vec<usize> {
    let n = frames.len();
    assert!(n >= 4);
    let close = frames[n - 1];
    (frames[n - 4].pos..=close.pos + close.len + 8).collect()
}

/// Every offset of the header's meaningful bytes, a sample of the rest of
/// the header block, and every offset of the records.
fn whole_fresh_segment(frames: &[FramePos]) -> Vec<usize> {
    let close = frames[frames.len() - 1];
    let mut v: Vec<usize> = (0..=HEADER_USED + 8).collect();
    v.extend((HEADER_USED + 9..frames[0].pos).step_by(397));
    v.extend(frames[0].pos..=close.pos + close.len + 8);
    v
}

fn scenario<S: Storage + Send + Copy>(
    name: &str,
    storage: S,
    layout: Layout,
    cut: Cut,
    prepare: SegmentPrepare,
    offsets: fn(&[FramePos]) -> Vec<usize>,
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().to_path_buf();
    let original = base.join("original");
    let dir = original.clone();
    run(name, move || async move {
        write_original(storage, &dir, layout, prepare).await;
    });
    let segs = common::data_segments(&original, SHARD);
    match layout {
        Layout::OneSegment => assert_eq!(segs.len(), 1),
        Layout::FreshSegment => assert!(segs.len() >= 2),
    }
    cut_and_recover(storage, &original, &base, layout, cut, offsets);
}
#[test]
fn truncating_the_tail_at_every_byte_keeps_exactly_the_whole_records() {
    scenario(
        "torn-truncate",
        StdStorage,
        Layout::OneSegment,
        Cut::Truncate,
        SegmentPrepare::Create,
        last_records,
    );
}

#[test]
fn truncating_a_segment_prepared_to_its_size_is_refused_at_every_byte_direct_io() {
    scenario(
        "sized-truncate-dma",
        DmaStorage,
        Layout::OneSegment,
        Cut::Truncate,
        SegmentPrepare::ZeroFill,
        last_records,
    );
}

#[test]
fn zeroing_the_tail_from_every_byte_keeps_exactly_the_whole_records_direct_io() {
    scenario(
        "torn-zero-dma",
        DmaStorage,
        Layout::OneSegment,
        Cut::ZeroRest,
        SegmentPrepare::ZeroFill,
        last_records,
    );
}

#[test]
fn a_torn_header_of_a_freshly_rolled_segment_drops_only_that_segment() {
    scenario(
        "torn-fresh",
        StdStorage,
        Layout::FreshSegment,
        Cut::Truncate,
        SegmentPrepare::Create,
        whole_fresh_segment,
    );
}

#[test]
fn a_zeroed_freshly_rolled_segment_is_a_torn_tail_direct_io() {
    scenario(
        "torn-fresh-dma",
        DmaStorage,
        Layout::FreshSegment,
        Cut::ZeroRest,
        SegmentPrepare::ZeroFill,
        whole_fresh_segment,
    );
}
