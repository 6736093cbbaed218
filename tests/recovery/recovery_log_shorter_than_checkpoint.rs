//! A log that ends before what its checkpoint proves existed is refused as
//! corruption, never cut like a torn tail: writing must never resume below
//! a durable manifest's replay position, and no sealed record may vanish
//! without a word.
//!
//! The log: 2 shards, 12 epochs, a checkpoint at epoch 12, then a clean
//! shutdown (which seals epoch 13). Two kinds of damage to shard 0:
//! - its segment is truncated inside the records the checkpoint covers
//!   (nothing after the cut is left to vouch for them);
//! - the log is cut just after `barrier(12)` (as a crash right after the
//!   checkpoint leaves it) and one bit of that barrier is flipped.

use crate::runtime_common;

use std::path::Path;

use runtime_common::*;
use shardwal::format::frame::frame_len;
use shardwal::{ControlEvent, Error, RecordKind, Runtime};

fn write_log(dir: &Path) -> u64 {
    let rt = Runtime::start(dir, runtime_config(2, small_shard()), |ctx| async move {
        loop {
            while let Some(ev) = ctx.poll_control() {
                let ControlEvent::Barrier(req) = ev else {
                    return Ok(());
                };
                for i in 0..20u8 {
                    ctx.log().append(&[i; 100]).await?;
                }
                ctx.complete_barrier(req, Some(b"state")).await?;
            }
            glommio::timer::sleep(std::time::Duration::from_micros(200)).await;
        }
    })
    .expect("start");
    let c = rt.coordinator();
    for _ in 1..12 {
        c.advance_epoch().and_then(|t| t.wait()).expect("epoch");
    }
    c.checkpoint().and_then(|t| t.wait()).expect("checkpoint");
    rt.shutdown().expect("shutdown");
    let (m, _) = load_newest(dir);
    m.expect("a checkpoint").shards[0].replay_from
}

/// Shard 0's only segment and the offset of its frame `seq`.
fn frame_at(dir: &Path, seq: u64) -> (std::path::PathBuf, u64, usize) {
    let segs = segments(dir, 0);
    let path = segs
        .iter()
        .rev()
        .find(|s| s.header.is_some())
        .expect("a segment")
        .path
        .clone();
    let recs = read_log(dir, 0, 0);
    // Frames start at 4096 and follow each other.
    let mut pos = 4096u64;
    for r in &recs {
        if r.seq == seq {
            return (path, pos, r.payload.len());
        }
        pos += frame_len(r.payload.len()) as u64;
    }
    panic!("no frame {seq}");
}

fn expect_refused(dir: &Path, what: &str) {
    match Runtime::start(dir, runtime_config(2, small_shard()), |_| async { Ok(()) }) {
        Err(e @ Error::ShardFailed { .. }) | Err(e @ Error::Corruption { .. }) => {
            let s = e.to_string();
            // Either the manifest proves the log was longer, or the damage
            // is caught at the frame itself (a frame that landed whole in a
            // zeroed segment, FORMAT.md §10 row 1a) or at the file (a
            // segment prepared to its size and cut short, row 1b).
            assert!(
                s.contains("shard 0")
                    && (s.contains("checkpoint")
                        || s.contains("damaged, not torn")
                        || s.contains("truncated")),
                "{what}: the error names the shard and the checkpoint or the damaged frame: {s}"
            );
        }
        Err(e) => panic!("{what}: refused, but not as corruption: {e}"),
        Ok(rt) => {
            let r = rt.recovery_report().clone();
            rt.shutdown().ok();
            panic!(
                "{what}: accepted; shard 0 resumes at {} (sealed epoch {})",
                r.shards[0].next_seq.0, r.sealed.0
            );
        }
    }
}

#[test]
fn a_segment_truncated_inside_checkpointed_records_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let replay_from = write_log(dir);
    let (path, offset, _) = frame_at(dir, replay_from - 5);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(offset + 17).unwrap();
    drop(f);
    expect_refused(dir, "truncated segment");
    // Nothing was cut: the file is as the damage left it.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), offset + 17);
}

#[test]
fn a_damaged_last_barrier_below_a_checkpoint_is_refused_not_written_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let replay_from = write_log(dir);
    // barrier(12) is frame replay_from - 1: make it the log's last frame.
    let recs = read_log(dir, 0, 0);
    let barrier = recs.iter().find(|r| r.seq == replay_from - 1).unwrap();
    assert_eq!(barrier.kind, RecordKind::Barrier);
    let (path, offset, len) = frame_at(dir, replay_from - 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let end = (offset as usize) + frame_len(len);
    bytes[end..].fill(0);
    bytes[offset as usize + 9] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    expect_refused(dir, "damaged last barrier");
    // Shard 1 is untouched and still opens as it was.
    assert!(!read_log(dir, 1, 0).is_empty());
}
