//! Stale bytes: bytes left past the end of the log by an older incarnation
//! of the same segment, by another log, or by another shard never replay —
//! even when a stale frame sits exactly where the next record would start
//! and carries exactly the sequence number expected there. Their frames
//! fail the CRC seeded by the segment's identity and nonce. In a segment
//! that was not zeroed before use (`SegmentPrepare::Create`, where a file
//! system may show old blocks after a crash), recovery cuts them as a torn
//! tail, the reader never yields them, and new records written over them
//! are kept. In a segment zeroed before use (the default) no crash can
//! leave non-zero bytes its writer did not write, so a whole stale frame
//! there is reported as damage (docs/FORMAT.md §5).
//!
//! Whole segment files of another shard found after the end of the log
//! are dropped the same way. A whole segment whose valid header names
//! another log id is not stale: opening the shard is refused and the file
//! is left as it is.

use crate::common;

use std::path::{Path, PathBuf};

use common::{Owned, fill_payload, frames_in, mix, read_all, run};
use shardwal::error::CorruptionCause;
use shardwal::format::BLOCK;
use shardwal::segment::{segment_name, shard_dir};
use shardwal::{
    DmaStorage, Error, FsyncPolicy, RecordKind, SegmentPrepare, Seq, ShardConfig, ShardId,
    ShardLog, StdStorage, Storage,
};

const OLD: u64 = 0x01D;
const NEW: u64 = 0x2E3;
const OLD_RECORDS: u64 = 300;
const NEW_RECORDS: u64 = 41;

/// A payload whose length depends on `seq` only and whose bytes depend on
/// `tag` too: two logs with different tags lay their frames out at the same
/// offsets, so a stale frame lines up exactly with the next expected one.
fn rec(tag: u64, seq: u64) -> Vec<u8> {
    let mut v = vec![0u8; 50 + (mix(0, seq) % 100) as usize];
    fill_payload(tag, seq, &mut v);
    v
}

/// Segments created without zeroing: where stale bytes can be found.
fn config() -> ShardConfig {
    ShardConfig {
        prepare: SegmentPrepare::Create,
        ..zeroed_config()
    }
}

/// The default preparation: segments zeroed before use.
fn zeroed_config() -> ShardConfig {
    ShardConfig {
        segment_size: 64 << 10,
        buffer_size: 8 << 10,
        max_record_size: 4096,
        fsync: FsyncPolicy::Never,
        ..ShardConfig::default()
    }
}

/// Write records `0..n` tagged `tag` to `shard` and sync, then drop the
/// log without a close record (so the last frame is a data frame). Each
/// session runs on its own executor, like a process: `close` and drop do
/// not wait for the shard's segment-preparation task (see
/// tests/recovery/close_quiesces_io.rs), which would race with the next session.
fn write<S: Storage + Send + Copy>(storage: S, dir: &Path, shard: ShardId, tag: u64, n: u64) {
    write_with(storage, dir, shard, tag, n, config());
}

/// [`write`] with `cfg`.
fn write_with<S: Storage + Send + Copy>(
    storage: S,
    dir: &Path,
    shard: ShardId,
    tag: u64,
    n: u64,
    cfg: ShardConfig,
) {
    let dir = dir.to_path_buf();
    run("write", move || async move {
        let log = ShardLog::open(storage, &dir, shard, cfg)
            .await
            .expect("open");
        for seq in 0..n {
            assert_eq!(
                log.append(&rec(tag, seq)).await.expect("append").seq,
                Seq(seq)
            );
        }
        assert_eq!(log.sync().await.expect("sync"), Seq(n));
    });
}

fn first_segment(dir: &Path, shard: ShardId) -> PathBuf {
    shard_dir(dir, shard).join(segment_name(0))
}

/// Put the bytes of `stale` after the end of the log in `current`, starting
/// at `from` (the end of the current log's last frame, or later).
fn splice(current: &Path, stale: &[u8], from: usize) {
    let mut bytes = std::fs::read(current).expect("read current segment");
    assert!(stale.len() >= bytes.len());
    // A segment created without zeroing is only as long as what was
    // written to it; the stale image goes on past that.
    bytes.resize(stale.len(), 0);
    let n = bytes.len();
    bytes[from..].copy_from_slice(&stale[from..n]);
    std::fs::write(current, &bytes).expect("write spliced segment");
}

/// Reopen after the splice and check that only the new records are there,
/// that the stale bytes were cut as a torn tail, and that writing continues.
fn check_only_new_records<S: Storage + Send + Copy>(
    storage: S,
    dir: &Path,
    torn_at: Option<(PathBuf, u64)>,
) {
    let d = dir.to_path_buf();
    run("check", move || async move {
        let dir = d;
        let log = ShardLog::open(storage, &dir, ShardId(0), config())
            .await
            .unwrap_or_else(|e| panic!("stale bytes must not be reported as corruption: {e}"));
        let r = log.recovery().clone();
        assert_eq!(r.records, NEW_RECORDS, "no stale record is recovered");
        assert_eq!(r.next_seq, Seq(NEW_RECORDS));
        assert_eq!(
            r.torn.map(|t| (t.path, t.offset)),
            torn_at,
            "the stale bytes are cut"
        );
        let lsn = log.append(&rec(NEW, NEW_RECORDS)).await.expect("append");
        assert_eq!(lsn.seq, Seq(NEW_RECORDS));
        log.close().await.expect("close");
    });
    let dir = dir.to_path_buf();
    run("check-again", move || async move {
        let recs = read_all(storage, &dir, ShardId(0), 0).await;
        assert_eq!(
            recs.len() as u64,
            NEW_RECORDS + 2,
            "new records and the close record"
        );
        check_new(&recs);
        let log = ShardLog::open(storage, &dir, ShardId(0), config())
            .await
            .expect("reopen after writing over stale bytes");
        assert_eq!(log.recovery().records, NEW_RECORDS + 2);
        assert!(log.recovery().torn.is_none(), "{:?}", log.recovery().torn);
        log.close().await.expect("close");
    });
}

fn check_new(recs: &[Owned]) {
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        match r.kind {
            RecordKind::Data => assert_eq!(r.payload, rec(NEW, r.seq), "seq {}", r.seq),
            RecordKind::Close => assert_eq!(r.seq, NEW_RECORDS + 1),
            k => panic!("unexpected kind {k:?}"),
        }
    }
}

/// Where the new log's last frame ends, checking that the stale image has a
/// frame of the expected next sequence number at exactly that offset.
fn tail_and_aligned_stale_frame(current: &[u8], stale: &[u8]) -> usize {
    let new = frames_in(current);
    assert_eq!(new.len() as u64, NEW_RECORDS);
    let end = new.last().map(|f| f.pos + f.len).expect("frames");
    let old = frames_in(stale);
    let f = old
        .iter()
        .find(|f| f.pos == end)
        .expect("a stale frame starts exactly at the new tail");
    assert_eq!(f.seq, NEW_RECORDS, "and carries the next expected seq");
    end
}

/// The three sources of stale bytes, each spliced at the exact tail and at
/// the next block boundary.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The same log, shard and segment index, before the segment was
    /// recreated (a different nonce).
    OlderIncarnation,
    /// Another log (another log id).
    AnotherLog,
    /// The same log's shard 1, segment 0.
    AnotherShard,
}

fn stale_tail<S: Storage + Send + Copy>(storage: S, base: &Path, source: Source, aligned: bool) {
    let dir = base.join(format!("{source:?}-{aligned}"));
    // The stale image, written first.
    let stale = match source {
        Source::OlderIncarnation => {
            write(storage, &dir, ShardId(0), OLD, OLD_RECORDS);
            let b = std::fs::read(first_segment(&dir, ShardId(0))).expect("read");
            std::fs::remove_dir_all(shard_dir(&dir, ShardId(0))).expect("forget the old shard");
            b
        }
        Source::AnotherLog => {
            let other = base.join(format!("other-log-{aligned}"));
            write(storage, &other, ShardId(0), OLD, OLD_RECORDS);
            std::fs::read(first_segment(&other, ShardId(0))).expect("read")
        }
        Source::AnotherShard => {
            write(storage, &dir, ShardId(1), OLD, OLD_RECORDS);
            std::fs::read(first_segment(&dir, ShardId(1))).expect("read")
        }
    };
    write(storage, &dir, ShardId(0), NEW, NEW_RECORDS);
    let seg = first_segment(&dir, ShardId(0));
    let current = std::fs::read(&seg).expect("read");
    let end = tail_and_aligned_stale_frame(&current, &stale);
    let from = if aligned {
        end.next_multiple_of(BLOCK)
    } else {
        end
    };
    splice(&seg, &stale, from);
    check_only_new_records(storage, &dir, Some((seg, end as u64)));
}

#[test]
fn an_older_incarnation_of_the_segment_past_the_tail_never_replays() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for aligned in [false, true] {
        stale_tail(StdStorage, tmp.path(), Source::OlderIncarnation, aligned);
    }
}

#[test]
fn another_logs_segment_past_the_tail_never_replays_direct_io() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for aligned in [false, true] {
        stale_tail(DmaStorage, tmp.path(), Source::AnotherLog, aligned);
    }
}

#[test]
fn another_shards_segment_past_the_tail_never_replays() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for aligned in [false, true] {
        stale_tail(StdStorage, tmp.path(), Source::AnotherShard, aligned);
    }
}

#[test]
fn a_whole_stale_frame_in_a_segment_zeroed_before_use_is_reported_as_damage() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let other = base.join("other-log");
    let dir = base.join("log");
    write_with(
        StdStorage,
        &other,
        ShardId(0),
        OLD,
        OLD_RECORDS,
        zeroed_config(),
    );
    let stale = std::fs::read(first_segment(&other, ShardId(0))).expect("read");
    write_with(
        StdStorage,
        &dir,
        ShardId(0),
        NEW,
        NEW_RECORDS,
        zeroed_config(),
    );
    let seg = first_segment(&dir, ShardId(0));
    let current = std::fs::read(&seg).expect("read");
    assert!(common::segment_zeroed(&current));
    let end = tail_and_aligned_stale_frame(&current, &stale);
    splice(&seg, &stale, end);
    let d = dir.clone();
    run("check-zeroed", move || async move {
        match ShardLog::open(StdStorage, &d, ShardId(0), zeroed_config()).await {
            Err(Error::Corruption {
                segment,
                offset,
                cause,
                ..
            }) => {
                assert_eq!((segment, offset), (seg, end as u64));
                assert!(
                    matches!(cause, CorruptionCause::LandedFrameDamaged(_)),
                    "{cause:?}"
                );
            }
            other => panic!(
                "expected corruption, got {:?}",
                other.map(|l| l.recovery().clone())
            ),
        }
    });
}

#[test]
fn whole_segment_files_of_another_shard_after_the_tail_are_dropped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("AnotherShard");
    write(StdStorage, &dir, ShardId(1), OLD, OLD_RECORDS);
    let stale = first_segment(&dir, ShardId(1));
    write(StdStorage, &dir, ShardId(0), NEW, NEW_RECORDS);
    // Replace every file after segment 0 (the prepared next segment) with
    // the stale one, under the next segment's name.
    let segs = common::segment_paths(&dir, ShardId(0));
    for p in &segs[1..] {
        std::fs::remove_file(p).expect("remove prepared segment");
    }
    let next = shard_dir(&dir, ShardId(0)).join(segment_name(1));
    std::fs::copy(&stale, &next).expect("copy stale segment");
    check_only_new_records(StdStorage, &dir, Some((next.clone(), 0)));
    let stale_bytes = std::fs::read(&stale).expect("read stale segment");
    assert!(
        !common::segment_paths(&dir, ShardId(0))
            .iter()
            .any(|p| std::fs::read(p).expect("read") == stale_bytes),
        "the stale segment file is gone"
    );
}

/// Every file of `dir` and its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            (p, b)
        })
        .collect();
    out.sort();
    out
}

/// A segment whose header is whole and valid (its CRC checks) but names
/// another log id is not stale bytes to drop: it may hold acknowledged
/// records written under that id (issue 10: a writer that raced `LOG_ID`'s
/// creation). Opening the shard is refused with `ForeignLogId`, with or
/// without repair, wherever the segment lies, and recovery leaves every
/// file of the shard as it was, byte for byte.
#[test]
fn a_segment_of_another_log_id_is_refused_and_left_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let other = base.join("other-log");
    write(StdStorage, &other, ShardId(0), OLD, OLD_RECORDS);
    let theirs = first_segment(&other, ShardId(0));
    let their_id = futures_lite::future::block_on(shardwal::log_dir::load(&StdStorage, &other))
        .expect("other LOG_ID");
    // Where the foreign segment goes: after the end of the log (the next
    // segment's name), or as the whole log (segment 0, nothing of ours).
    for (case, index) in [("after-the-tail", 1u64), ("the-only-segment", 0)] {
        let dir = base.join(case);
        write(StdStorage, &dir, ShardId(0), NEW, NEW_RECORDS);
        let our_id = futures_lite::future::block_on(shardwal::log_dir::load(&StdStorage, &dir))
            .expect("LOG_ID");
        let sdir = shard_dir(&dir, ShardId(0));
        for p in common::segment_paths(&dir, ShardId(0)) {
            let i = shardwal::segment::parse_segment_name(
                p.file_name().and_then(|n| n.to_str()).expect("name"),
            );
            if i.is_some_and(|i| i >= index) {
                std::fs::remove_file(&p).expect("remove segment");
            }
        }
        let planted = sdir.join(segment_name(index));
        std::fs::copy(&theirs, &planted).expect("copy foreign segment");
        let before = files(&sdir);
        for repair in [false, true] {
            let d = dir.clone();
            let r = run("open", move || async move {
                let cfg = ShardConfig { repair, ..config() };
                ShardLog::open(StdStorage, &d, ShardId(0), cfg)
                    .await
                    .map(|log| log.next_seq())
            });
            match r {
                Err(shardwal::Error::Corruption {
                    shard,
                    segment,
                    offset: 0,
                    cause: shardwal::error::CorruptionCause::ForeignLogId { found, expected },
                }) => {
                    assert_eq!(shard, ShardId(0));
                    assert_eq!(segment, planted, "{case}");
                    assert_eq!((found, expected), (their_id, our_id), "{case}");
                }
                other => panic!("{case}, repair {repair}: expected ForeignLogId, got {other:?}"),
            }
            assert!(
                files(&sdir) == before,
                "{case}, repair {repair}: recovery changed the shard's files"
            );
        }
    }
}
