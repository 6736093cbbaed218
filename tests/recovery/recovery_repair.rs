//! Repair: mid-log corruption is refused by default, and dropped on
//! explicit request (`ShardConfig::repair`), with what was dropped reported
//! and the consistent cut moved back to the last epoch every shard still
//! holds.
//!
//! A 2-shard log is written over 12 epochs and shut down cleanly; then one
//! byte of a data record in epoch 5 of shard 1 is flipped (later records
//! vouch for it, so it is corruption, not a torn tail).
//! * Without repair, `Runtime::start` fails with `Error::Corruption` naming
//!   shard 1, its segment and the frame's offset.
//! * With repair, it starts: shard 1 reports the drop at that segment and
//!   offset; the sealed epoch is 4 (the last barrier shard 1 still holds);
//!   shard 0 is cut back to it too; the replay holds exactly the records of
//!   epochs 1..=4 on both shards; and writing continues.
//! * A later start without repair finds a clean log.

use crate::runtime_common;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use runtime_common::*;
use shardwal::format::frame::{Decoded, decode_at};
use shardwal::format::segment_header::RECORDS_START;
use shardwal::{ControlEvent, Error, RecordKind, Runtime, RuntimeConfig, ShardConfig};

const EPOCHS: u64 = 12;
const PER_EPOCH: u64 = 20;
const BAD_EPOCH: u64 = 5;

fn config(repair: bool) -> RuntimeConfig {
    runtime_config(
        2,
        ShardConfig {
            segment_size: 1 << 20,
            repair,
            ..small_shard()
        },
    )
}

/// Write `EPOCHS` epochs of `PER_EPOCH` data records per shard, each record
/// saying (shard, epoch, index), then shut down cleanly.
fn write_log(dir: &Path) {
    let rt = Runtime::start(dir, config(false), |ctx| async move {
        let shard = ctx.shard().0;
        let mut written = 0;
        loop {
            while let Some(ev) = ctx.poll_control() {
                match ev {
                    ControlEvent::Barrier(req) => {
                        ctx.complete_barrier(req, None).await?;
                        written = 0;
                    }
                    _ => return Ok(()),
                }
            }
            if written < PER_EPOCH {
                let epoch = ctx.log().epoch().0;
                let d = Data {
                    shard,
                    epoch,
                    index: written,
                };
                ctx.log().append(&data_payload(d, 100)).await?;
                written += 1;
            } else {
                glommio::timer::sleep(Duration::from_micros(200)).await;
            }
        }
    })
    .expect("start");
    let c = rt.coordinator();
    for _ in 0..EPOCHS {
        // Let every shard write its records of the epoch first.
        std::thread::sleep(Duration::from_millis(20));
        c.advance_epoch().and_then(|t| t.wait()).expect("epoch");
    }
    rt.shutdown().expect("shutdown");
}

/// Flip a payload byte of the first data record of `BAD_EPOCH` in shard 1;
/// return the segment path and the frame's offset.
fn damage(dir: &Path) -> (std::path::PathBuf, u64) {
    for seg in segments(dir, 1) {
        let Some(h) = seg.header else { continue };
        let mut bytes = std::fs::read(&seg.path).unwrap();
        let mut pos = RECORDS_START;
        while let Decoded::Frame(f) =
            decode_at(&bytes, pos, h.seed(), shardwal::format::MAX_RECORD_HARD)
        {
            if f.meta.kind == RecordKind::Data && parse_data(f.payload).epoch == BAD_EPOCH {
                let at = pos + f.len - 16;
                bytes[at] ^= 0x20;
                std::fs::write(&seg.path, &bytes).unwrap();
                return (seg.path, pos as u64);
            }
            pos += f.len;
        }
    }
    panic!("no data record of epoch {BAD_EPOCH} in shard 1");
}

/// What an engine replays: (shard, epoch) of each data record, in order.
type Replayed = Vec<(u32, u64)>;

fn start_and_replay(dir: &Path, repair: bool) -> shardwal::Result<(Runtime, Vec<Replayed>)> {
    let (tx, rx) = mpsc::channel();
    let rt = Runtime::start(dir, config(repair), move |ctx| {
        let tx = tx.clone();
        async move {
            let mut r = ctx.replay().await?;
            let mut got = Vec::new();
            while let Some(rec) = r.next().await? {
                if rec.kind == RecordKind::Data {
                    let d = parse_data(rec.payload);
                    got.push((d.shard, rec.lsn.epoch.0));
                }
            }
            let _ = tx.send((ctx.shard().0, got));
            // Writing goes on after a repair.
            let d = Data {
                shard: ctx.shard().0,
                epoch: ctx.log().epoch().0,
                index: 1_000,
            };
            ctx.log().append(&data_payload(d, 8)).await?;
            while !ctx.is_shutting_down() {
                while let Some(ev) = ctx.poll_control() {
                    match ev {
                        ControlEvent::Barrier(req) => {
                            ctx.complete_barrier(req, None).await?;
                        }
                        _ => return Ok(()),
                    }
                }
                glommio::timer::sleep(Duration::from_micros(200)).await;
            }
            Ok(())
        }
    })?;
    let mut out = vec![Vec::new(); 2];
    for _ in 0..2 {
        let (s, got) = rx.recv_timeout(Duration::from_secs(30)).expect("replay");
        out[s as usize] = got;
    }
    Ok((rt, out))
}

#[test]
fn corruption_is_refused_unless_repair_drops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_log(dir);
    let (path, offset) = damage(dir);

    // Refused, located.
    match start_and_replay(dir, false) {
        Err(Error::ShardFailed { shard, cause, .. }) => {
            assert_eq!(shard.0, 1, "the error names shard 1");
            assert!(
                cause.contains(&path.display().to_string()) && cause.contains(&offset.to_string()),
                "the error names the segment and offset {offset}: {cause}"
            );
        }
        Err(e) if e.is_corruption() => {
            let s = e.to_string();
            assert!(s.contains(&offset.to_string()), "offset in {s}");
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("a corrupt log opened without repair"),
    }

    // Dropped on request, reported, and cut consistently.
    let (rt, replayed) = start_and_replay(dir, true).expect("start with repair");
    let rep = rt.recovery_report().clone();
    let r1 = rep.shards[1]
        .repaired
        .clone()
        .expect("shard 1 reports a repair");
    assert_eq!(
        (r1.path.clone(), r1.offset),
        (path.clone(), offset),
        "{r1:?}"
    );
    assert!(r1.bytes > 0, "bytes dropped are reported");
    assert!(rep.shards[0].repaired.is_none());
    assert_eq!(rep.sealed.0, BAD_EPOCH - 1, "sealed epoch after the repair");
    assert!(
        rep.shards[0].cut_records >= (EPOCHS - BAD_EPOCH) * PER_EPOCH,
        "shard 0 is cut back to the sealed epoch: {:?}",
        rep.shards[0]
    );
    for (s, got) in replayed.iter().enumerate() {
        let want: Replayed = (1..BAD_EPOCH)
            .flat_map(|e| std::iter::repeat_n((s as u32, e), PER_EPOCH as usize))
            .collect();
        assert_eq!(got, &want, "shard {s}: replayed records after the repair");
    }
    let c = rt.coordinator();
    c.advance_epoch()
        .and_then(|t| t.wait())
        .expect("an epoch after repair");
    rt.shutdown().expect("shutdown after repair");

    // Clean from now on.
    let (rt, _) = start_and_replay(dir, false).expect("start after repair");
    let rep = rt.recovery_report().clone();
    assert!(rep.shards.iter().all(|s| s.repaired.is_none()));
    assert!(
        rep.sealed.0 > BAD_EPOCH - 1,
        "writing went on: {:?}",
        rep.sealed
    );
    rt.shutdown().expect("shutdown");
}
