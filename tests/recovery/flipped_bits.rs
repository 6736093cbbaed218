//! Flipped bits: a single flipped bit anywhere in a record that a later
//! record vouches for (its header, payload or padding), or in a written
//! segment header, makes reopening fail with `Error::Corruption` naming the
//! shard, the segment file and the byte offset of the damaged frame (0 for
//! a header). Recovery refuses instead of cutting the log there.
//!
//! The vouching record is the close record of a clean close, or any record
//! appended after a sync. Records that nothing vouches for (the last synced
//! group, the close record) are protected by the segment's zeroing: a frame
//! that landed whole, in a segment zeroed before use, and fails its checks
//! is damage (docs/FORMAT.md §5). Bytes past the end of the log are cut as
//! a torn tail, keeping every record before them.

use crate::common;

use std::path::{Path, PathBuf};

use common::{FramePos, check_records, frames_in, payload_between, read_all, run};
use shardwal::format::segment_header::HEADER_USED;
use shardwal::rng::SplitMix;
use shardwal::{
    DmaStorage, Error, FsyncPolicy, RecordKind, Seq, ShardConfig, ShardId, ShardLog, StdStorage,
    Storage,
};

const TAG: u64 = 0xF11B;
const SHARD: ShardId = ShardId(0);

fn rec(seq: u64) -> Vec<u8> {
    payload_between(TAG, seq, 0, 300)
}

fn config() -> ShardConfig {
    ShardConfig {
        segment_size: 32 << 10,
        buffer_size: 8 << 10,
        max_record_size: 4096,
        fsync: FsyncPolicy::Never,
        ..ShardConfig::default()
    }
}

/// A log of `n` records over several segments, cleanly closed. Written on
/// its own executor, like a process of its own: `close` does not wait for
/// the shard's segment-preparation task (see tests/recovery/close_quiesces_io.rs),
/// which would otherwise race with the checks that follow.
fn write_closed_log<S: Storage + Send + Copy>(storage: S, dir: &Path, n: u64) {
    let dir = dir.to_path_buf();
    run("write", move || async move {
        let log = ShardLog::open(storage, &dir, SHARD, config())
            .await
            .expect("open");
        for seq in 0..n {
            assert_eq!(log.append(&rec(seq)).await.expect("append").seq, Seq(seq));
        }
        log.close().await.expect("close");
    });
}

/// The written segments of the log with their bytes and frames.
struct Layout {
    segs: Vec<(PathBuf, Vec<u8>, Vec<FramePos>)>,
}

impl Layout {
    fn read(dir: &Path) -> Layout {
        let segs = common::data_segments(dir, SHARD)
            .into_iter()
            .map(|p| {
                let b = std::fs::read(&p).expect("read segment");
                let f = frames_in(&b);
                (p, b, f)
            })
            .collect();
        Layout { segs }
    }

    /// The segment and frame offset that own byte `at` of segment `k`
    /// (offset 0 for the header).
    fn owner(&self, k: usize, at: usize) -> (PathBuf, u64) {
        let (path, _, frames) = &self.segs[k];
        if at < HEADER_USED {
            return (path.clone(), 0);
        }
        let f = frames
            .iter()
            .find(|f| (f.pos..f.pos + f.len).contains(&at))
            .expect("byte inside a frame");
        (path.clone(), f.pos as u64)
    }
}

fn flip(path: &Path, bit: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open segment");
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, (bit / 8) as u64)
        .expect("read byte");
    byte[0] ^= 1 << (bit % 8);
    f.write_all_at(&byte, (bit / 8) as u64).expect("write byte");
}

/// Flip `bit` of `path`, check that opening the log reports corruption at
/// `want`, and flip it back. A failed open changes nothing on disk.
async fn expect_corruption<S: Storage>(
    storage: &S,
    dir: &Path,
    path: &Path,
    bit: usize,
    want: &(PathBuf, u64),
) {
    flip(path, bit);
    match ShardLog::open(storage.clone(), dir, SHARD, config()).await {
        Err(Error::Corruption {
            shard,
            segment,
            offset,
            cause,
        }) => {
            assert_eq!(shard, SHARD);
            assert_eq!(
                (&segment, offset),
                (&want.0, want.1),
                "bit {bit} of {}: wrong location ({cause})",
                path.display()
            );
        }
        Err(e) => panic!(
            "bit {bit} of {}: expected corruption, got {e}",
            path.display()
        ),
        Ok(log) => panic!(
            "bit {bit} of {}: flipped bit not detected; recovered {:?}",
            path.display(),
            log.recovery()
        ),
    }
    flip(path, bit);
}

#[test]
fn every_bit_of_a_mid_log_record_is_reported_with_its_segment_and_offset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    write_closed_log(StdStorage, &dir, 600);
    run("flip-every-bit", move || async move {
        let layout = Layout::read(&dir);
        assert!(layout.segs.len() >= 4, "{} segments", layout.segs.len());
        // A record in the middle of a middle segment, with a payload.
        let k = layout.segs.len() / 2;
        let (path, _, frames) = &layout.segs[k];
        let f = *frames[frames.len() / 2..]
            .iter()
            .find(|f| f.used > 100 && f.len > f.used)
            .expect("a record with a payload and padding");
        let want = (path.clone(), f.pos as u64);
        for bit in f.pos * 8..(f.pos + f.len) * 8 {
            expect_corruption(&StdStorage, &dir, path, bit, &want).await;
        }
        // Every bit of the meaningful header bytes of the first, a middle
        // and the last written segment.
        for k in [0, k, layout.segs.len() - 1] {
            let path = &layout.segs[k].0;
            for bit in 0..HEADER_USED * 8 {
                expect_corruption(&StdStorage, &dir, path, bit, &(path.clone(), 0)).await;
            }
        }
        // After all that, the log is intact.
        let log = ShardLog::open(StdStorage, &dir, SHARD, config())
            .await
            .expect("reopen undamaged");
        assert_eq!(log.recovery().records, 601);
        assert!(log.recovery().torn.is_none());
        log.close().await.expect("close");
    });
}

#[test]
fn random_bits_anywhere_in_vouched_records_are_reported_direct_io() {
    let seed = common::test_seed("random_bits_anywhere_in_vouched_records_are_reported");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    write_closed_log(DmaStorage, &dir, 600);
    run("flip-random-bits", move || async move {
        let layout = Layout::read(&dir);
        let mut rng = SplitMix(seed);
        let last = layout.segs.len() - 1;
        for _ in 0..400 {
            let k = rng.below(layout.segs.len() as u64) as usize;
            let (path, _, frames) = &layout.segs[k];
            // Everything that was written, the close record too (nothing
            // after it vouches for it, but it landed whole), except the
            // close record's length field: made larger, it would run into
            // the zeros after the log, like a torn write (FORMAT.md §5).
            let close = frames[frames.len() - 1];
            let end = close.pos + close.len;
            let _ = last;
            let at = if rng.below(8) == 0 {
                rng.below(HEADER_USED as u64) as usize
            } else {
                frames[0].pos + rng.below((end - frames[0].pos) as u64) as usize
            };
            if k == last && (close.pos + 4..close.pos + 8).contains(&at) {
                continue;
            }
            let bit = at * 8 + rng.below(8) as usize;
            let want = layout.owner(k, at);
            expect_corruption(&DmaStorage, &dir, path, bit, &want).await;
        }
        let log = ShardLog::open(DmaStorage, &dir, SHARD, config())
            .await
            .expect("reopen undamaged");
        assert_eq!(log.recovery().records, 601);
        log.close().await.expect("close");
    });
}

#[test]
fn records_vouched_by_a_later_sync_are_protected_without_a_clean_close() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    // 100 records, sync, 100 more, sync, then drop without closing: the
    // second hundred vouch for the first.
    let d = dir.clone();
    run("flip-synced-write", move || async move {
        let dir = d;
        {
            let log = ShardLog::open(StdStorage, &dir, SHARD, config())
                .await
                .expect("open");
            for seq in 0..200 {
                assert_eq!(log.append(&rec(seq)).await.expect("append").seq, Seq(seq));
                if seq == 99 {
                    assert_eq!(log.sync().await.expect("sync"), Seq(100));
                }
            }
            assert_eq!(log.sync().await.expect("sync"), Seq(200));
        }
    });
    run("flip-synced", move || async move {
        let layout = Layout::read(&dir);
        let (k, f) = layout
            .segs
            .iter()
            .enumerate()
            .find_map(|(k, (_, _, frames))| frames.iter().find(|f| f.seq == 50).map(|f| (k, *f)))
            .expect("record 50");
        let path = layout.segs[k].0.clone();
        for bit in [
            f.pos * 8,
            (f.pos + 20) * 8 + 3,
            (f.pos + f.used - 1) * 8 + 7,
        ] {
            expect_corruption(&StdStorage, &dir, &path, bit, &(path.clone(), f.pos as u64)).await;
        }
    });
}

#[test]
fn one_flipped_bit_in_the_last_synced_group_is_reported_as_corruption() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    // 100 records, sync, 60 more, sync, then drop without closing (like a
    // crash after the sync returned): nothing vouches for records 100..160.
    let d = dir.clone();
    run("last-group-write", move || async move {
        let log = ShardLog::open(StdStorage, &d, SHARD, config())
            .await
            .expect("open");
        for seq in 0..160 {
            assert_eq!(log.append(&rec(seq)).await.expect("append").seq, Seq(seq));
            if seq == 99 {
                assert_eq!(log.sync().await.expect("sync"), Seq(100));
            }
        }
        assert_eq!(log.sync().await.expect("sync"), Seq(160));
    });
    run("last-group-flip", move || async move {
        let layout = Layout::read(&dir);
        let mut rng = SplitMix(common::test_seed("last_synced_group"));
        let mut checked = 0;
        for (path, bytes, frames) in &layout.segs {
            assert!(common::segment_zeroed(bytes), "default segments are zeroed");
            let written_end = frames.last().map_or(0, |f| f.pos + f.used);
            for f in frames.iter().filter(|f| f.seq >= 100) {
                // Header fields, and payload bytes.
                let mut bits = vec![0, 3 * 8 + 7, 9 * 8 + 2, 17 * 8, 25 * 8 + 6, 32 * 8 + 1];
                if f.used > 40 {
                    bits.push((40 + rng.below((f.used - 40) as u64) as usize) * 8 + 3);
                    bits.push((f.used - 1) * 8);
                }
                if f.pos + f.used + 1024 <= written_end {
                    // A length field made larger (+1024): the frame then
                    // runs into later frames' bytes, whole. (Run into the
                    // zeros after the log, it looks torn: the window
                    // FORMAT.md §5 names.)
                    bits.push(5 * 8 + 2);
                }
                // A length field made smaller.
                bits.push(4 * 8 + (0..8).find(|b| bytes[f.pos + 4] >> b & 1 == 1).unwrap_or(0));
                for bit in bits {
                    let at = f.pos * 8 + bit;
                    expect_corruption(&StdStorage, &dir, path, at, &(path.clone(), f.pos as u64))
                        .await;
                    checked += 1;
                }
            }
        }
        assert!(checked > 400, "{checked} flips");
        let log = ShardLog::open(StdStorage, &dir, SHARD, config())
            .await
            .expect("reopen undamaged");
        assert_eq!(log.recovery().records, 160);
        log.close().await.expect("close");
    });
}

#[test]
fn damage_past_the_last_record_is_cut_as_a_torn_tail_but_the_close_record_is_protected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().to_path_buf();
    let original = base.join("original");
    write_closed_log(StdStorage, &original, 300);
    let layout = Layout::read(&original);
    let (path, bytes, frames) = layout.segs.last().expect("segments");
    let close = *frames.last().expect("close record");
    assert_eq!(close.kind, RecordKind::Close);
    let name = path.strip_prefix(&original).expect("inside the log");
    // A bit in the close record: it landed whole, so it is damage.
    {
        let dir = base.join("close-record");
        common::copy_dir(&original, &dir);
        let target = dir.join(name);
        run("flip-close", move || async move {
            let want = (target.clone(), close.pos as u64);
            expect_corruption(&StdStorage, &dir, &target, (close.pos + 9) * 8, &want).await;
        });
    }
    // A bit in the zeros after it: cut as a torn tail, every record kept.
    let case = "past the end";
    let bit = (close.pos + close.len + 100) * 8 + 5;
    let records = 301;
    let dir = base.join("past-the-end");
    common::copy_dir(&original, &dir);
    let target = dir.join(name);
    assert!(bit / 8 < bytes.len());
    flip(&target, bit);
    let cut_at = close.pos + close.len;
    let d = dir.clone();
    run("flip-tail", move || async move {
        let log = ShardLog::open(StdStorage, &d, SHARD, config())
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let r = log.recovery().clone();
        assert_eq!(
            r.records, records,
            "{case}: every record before the damage is kept"
        );
        let torn = r.torn.expect("a torn tail is reported");
        assert_eq!(torn.path, target, "{case}");
        assert_eq!(torn.offset, cut_at as u64, "{case}");
        log.close().await.expect("close");
    });
    run("flip-tail-read", move || async move {
        let recs = read_all(StdStorage, &dir, SHARD, 0).await;
        assert_eq!(
            recs.len() as u64,
            records,
            "{case}: exactly the kept records (closing without appends adds none)"
        );
        check_records(&recs, 0, rec);
    });
}
