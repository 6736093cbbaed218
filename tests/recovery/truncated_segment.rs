//! A truncated segment is refused, not cut as a torn tail.
//!
//! A segment prepared with `SegmentPrepare::ZeroFill` (the default) or
//! `Fallocate` is flagged `SIZED`: its file was `segment_size` bytes long,
//! durably, before its first write, so no crash leaves it shorter. A shorter
//! one lost bytes after they were written, possibly the last records that
//! were acknowledged (nothing later vouches for them), so recovery refuses
//! it with `CorruptionCause::SegmentTruncated`, naming the file, the first
//! frame that is not wholly in it and the file's length. Both entry points
//! go through the one scanner: a bare `ShardLog::open` and `Runtime::start`.
//!
//! What a crash *can* leave is a segment whose preparation was cut short
//! (an empty or partly zero-filled file, its header blank): that stays a
//! blank segment at the end of the log, removed by recovery, with every
//! record whose sync returned kept.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{frames_in, payload_between, run};
use shardwal::error::CorruptionCause;
use shardwal::format::segment_header::SegmentHeader;
use shardwal::io::sim::CrashMode;
use shardwal::segment::shard_dir;
use shardwal::{
    ControlEvent, DmaStorage, Error, FsyncPolicy, Runtime, RuntimeConfig, SegmentPrepare, Seq,
    ShardConfig, ShardId, ShardLog, SimStorage, StdStorage, Storage,
};

const SHARD: ShardId = ShardId(0);
const TAG: u64 = 0x7c0e;
const SEGMENT: u64 = 16 << 10;
const LOG: &str = "/sim/truncated";

fn rec(seq: u64) -> Vec<u8> {
    payload_between(TAG, seq, 150, 400)
}

fn config(prepare: SegmentPrepare) -> ShardConfig {
    ShardConfig {
        segment_size: SEGMENT,
        buffer_size: 4 << 10,
        write_behind: 2,
        max_record_size: 1024,
        fsync: FsyncPolicy::Never,
        prepare,
        ..ShardConfig::default()
    }
}

/// The shard's segment files in `sim`, in index order.
fn segment_files(sim: &SimStorage) -> Vec<PathBuf> {
    let dir = shard_dir(Path::new(LOG), SHARD);
    let mut v: Vec<PathBuf> = sim
        .files()
        .into_iter()
        .filter(|p| p.parent() == Some(&dir) && p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Append `n` records, syncing every 7th and at the end.
async fn append_synced(log: &ShardLog<SimStorage>, n: u64) {
    for _ in 0..n {
        let seq = log.next_seq().0;
        log.append(&rec(seq)).await.expect("append");
        if seq % 7 == 6 {
            log.sync().await.expect("sync");
        }
    }
    log.sync().await.expect("sync");
}

#[test]
fn a_truncated_segment_is_refused_by_shard_log_open_with_zero_fill_and_fallocate() {
    for prepare in [SegmentPrepare::ZeroFill, SegmentPrepare::Fallocate] {
        run("truncated-open", move || async move {
            let sim = SimStorage::new();
            let log = ShardLog::open(sim.clone(), Path::new(LOG), SHARD, config(prepare))
                .await
                .expect("open");
            append_synced(&log, 100).await;
            assert!(log.stats().rolls >= 2, "{prepare:?}: several segments");
            drop(log);
            // The durable disk, as after a kill: nothing vouches for the
            // last synced records.
            let disk = sim.crash(CrashMode::DropAll, 0);
            let files = segment_files(&disk);
            let (last, bytes) = files
                .iter()
                .rev()
                .filter_map(|p| Some((p.clone(), disk.read_file(p)?)))
                .find(|(_, b)| SegmentHeader::decode(b).is_ok())
                .expect("a written segment");
            let h = SegmentHeader::decode(&bytes).expect("header");
            assert!(h.sized && h.zeroed, "{prepare:?}: flagged SIZED and ZEROED");
            assert_eq!(
                bytes.len() as u64,
                SEGMENT,
                "{prepare:?}: prepared to its size"
            );
            let frames = frames_in(&bytes);
            let lastf = *frames.last().expect("frames");
            let end = (lastf.pos + lastf.len) as u64;
            // Into the last frame, and (nothing lost, still damage) into
            // the zeros after the frames.
            for (cut, at) in [
                (lastf.pos + 50, lastf.pos as u64),
                (lastf.pos + lastf.len + 600, end),
            ] {
                let d = disk.crash(CrashMode::KeepAll, 0);
                d.write_file(&last, &bytes[..cut]);
                match ShardLog::open(d.clone(), Path::new(LOG), SHARD, config(prepare)).await {
                    Err(Error::Corruption {
                        segment,
                        offset,
                        cause,
                        ..
                    }) => {
                        assert_eq!(segment, last, "{prepare:?} cut {cut}: the file");
                        assert_eq!(offset, at, "{prepare:?} cut {cut}: the offset");
                        assert_eq!(
                            cause,
                            CorruptionCause::SegmentTruncated {
                                len: cut as u64,
                                size: SEGMENT
                            }
                        );
                    }
                    Err(e) => panic!("{prepare:?} cut {cut}: another error: {e}"),
                    Ok(l) => panic!(
                        "{prepare:?} cut {cut}: opened, recovered {:?}",
                        l.recovery()
                    ),
                }
                // Refused without a change to the disk.
                assert_eq!(d.read_file(&last).expect("still there").len(), cut);
            }
            // Untouched, the same disk opens with every synced record.
            let log = ShardLog::open(disk, Path::new(LOG), SHARD, config(prepare))
                .await
                .expect("the undamaged disk opens");
            assert_eq!(log.recovery().next_seq, Seq(100));
            assert!(log.recovery().torn.is_none());
        });
    }
}

#[test]
fn a_segment_that_grows_as_it_is_written_may_be_short_after_a_crash() {
    run("create-short", || async {
        let sim = SimStorage::new();
        let cfg = config(SegmentPrepare::Create);
        let log = ShardLog::open(sim.clone(), Path::new(LOG), SHARD, cfg.clone())
            .await
            .expect("open");
        append_synced(&log, 30).await;
        drop(log);
        let disk = sim.crash(CrashMode::DropAll, 0);
        let last = segment_files(&disk)
            .into_iter()
            .rev()
            .find(|p| {
                disk.read_file(p)
                    .is_some_and(|b| SegmentHeader::decode(&b).is_ok())
            })
            .expect("a written segment");
        let bytes = disk.read_file(&last).expect("bytes");
        assert!(!SegmentHeader::decode(&bytes).expect("header").sized);
        let frames = frames_in(&bytes);
        let lastf = *frames.last().expect("frames");
        disk.write_file(&last, &bytes[..lastf.pos + 50]);
        let log = ShardLog::open(disk, Path::new(LOG), SHARD, cfg)
            .await
            .expect("not SIZED: a short file is a tear");
        assert_eq!(log.recovery().next_seq, Seq(lastf.seq));
        let torn = log.recovery().torn.clone().expect("torn tail");
        assert_eq!((torn.path, torn.offset), (last, lastf.pos as u64));
    });
}

/// Open a copy of `base`, let `halt` more changes through while appending
/// (each record synced), and return the disks a crash there may leave,
/// with the records whose sync returned and whether the halt was reached.
/// The disks are the simulator's crash in `mode` and, if the halt caught a
/// segment's preparation (its file all zero, maybe short of its size),
/// that disk with the file's name and bytes made durable too: what a real
/// file system may show after a crash there (the simulator alone keeps a
/// created name only once its directory was synced).
async fn crash_while_writing(
    base: &SimStorage,
    prepare: SegmentPrepare,
    halt: u64,
    mode: CrashMode,
) -> (Vec<SimStorage>, u64, bool) {
    let sim = base.crash(CrashMode::KeepAll, 0);
    let log = ShardLog::open(sim.clone(), Path::new(LOG), SHARD, config(prepare))
        .await
        .expect("open the base");
    let mut acked = log.next_seq().0;
    sim.halt_after(halt);
    let mut halted = false;
    for _ in 0..60 {
        let seq = log.next_seq().0;
        let ok = match log.append(&rec(seq)).await {
            Ok(_) => log.sync().await.is_ok(),
            Err(_) => false,
        };
        if !ok {
            halted = true;
            break;
        }
        acked = seq + 1;
    }
    drop(log);
    // Let the background tasks (the preparation among them) run into the
    // halt too.
    glommio::timer::sleep(Duration::from_millis(2)).await;
    sim.heal();
    let mut disks = vec![sim.crash(mode, halt)];
    let preparing = segment_files(&sim).into_iter().find_map(|p| {
        let b = sim.read_file(&p)?;
        b.iter().all(|&x| x == 0).then_some((p, b))
    });
    if let Some((path, bytes)) = preparing {
        let image = sim.crash_image(mode, halt).with_file(&path, &bytes);
        disks.push(SimStorage::from_image(&image));
    }
    (disks, acked, halted)
}

#[test]
fn a_crash_while_a_segment_is_prepared_is_still_harmless() {
    for prepare in [SegmentPrepare::ZeroFill, SegmentPrepare::Fallocate] {
        run("crash-in-prepare", move || async move {
            // A base log with some records, closed.
            let base = SimStorage::new();
            let log = ShardLog::open(base.clone(), Path::new(LOG), SHARD, config(prepare))
                .await
                .expect("open");
            append_synced(&log, 20).await;
            log.close().await.expect("close");
            let mut cut_short = 0;
            let mut points = 0;
            for halt in 0.. {
                let mut halted_any = false;
                for (k, mode) in [CrashMode::DropAll, CrashMode::KeepAll, CrashMode::Random]
                    .into_iter()
                    .enumerate()
                {
                    let (disks, acked, halted) =
                        crash_while_writing(&base, prepare, halt, mode).await;
                    halted_any |= halted;
                    for disk in disks {
                        // A segment file shorter than its size and all zero:
                        // a preparation the crash cut short.
                        cut_short += usize::from(segment_files(&disk).iter().any(|p| {
                            disk.read_file(p).is_some_and(|b| {
                                (b.len() as u64) < SEGMENT && b.iter().all(|&x| x == 0)
                            })
                        }));
                        let log = ShardLog::open(disk, Path::new(LOG), SHARD, config(prepare))
                            .await
                            .unwrap_or_else(|e| {
                                panic!("{prepare:?}: crash after {halt} changes ({k}): {e}")
                            });
                        let r = log.recovery();
                        assert!(
                            r.next_seq.0 >= acked,
                            "{prepare:?}: crash after {halt} changes ({k}): {} of {acked} acknowledged records",
                            r.next_seq.0
                        );
                        assert!(r.repaired.is_none());
                        drop(log);
                    }
                }
                if !halted_any {
                    break;
                }
                points += 1;
            }
            eprintln!("{prepare:?}: {points} crash points, {cut_short} preparations cut short");
            assert!(points > 20, "{prepare:?}: only {points} crash points");
            assert!(
                cut_short > 3,
                "{prepare:?}: only {cut_short} crashes cut a preparation short"
            );
        });
    }
}

/// What the runtime's engine appends in each epoch before its barrier.
const PER_EPOCH: u64 = 12;

fn runtime_config() -> RuntimeConfig {
    RuntimeConfig {
        shards: Some(1),
        pin: false,
        shard: ShardConfig {
            fsync: FsyncPolicy::PerEpoch,
            ..config(SegmentPrepare::ZeroFill)
        },
        ..RuntimeConfig::default()
    }
}

#[test]
fn a_truncated_segment_is_refused_by_runtime_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let rt = Runtime::start(&dir, runtime_config(), |ctx| async move {
        loop {
            while let Some(ev) = ctx.poll_control() {
                let ControlEvent::Barrier(req) = ev else {
                    return Ok(());
                };
                for _ in 0..PER_EPOCH {
                    let seq = ctx.log().next_seq().0;
                    ctx.log().append(&rec(seq)).await?;
                }
                ctx.complete_barrier(req, None).await?;
            }
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
    })
    .expect("start");
    let c = rt.coordinator();
    for _ in 0..8 {
        c.advance_epoch()
            .and_then(|t| t.wait_timeout(Duration::from_secs(30)))
            .expect("epoch seals");
    }
    rt.shutdown().expect("shutdown");
    let sdir = shard_dir(&dir, SHARD);
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&sdir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .filter(|p| SegmentHeader::decode(&std::fs::read(p).expect("read")).is_ok())
        .collect();
    segs.sort();
    assert!(segs.len() >= 2, "several segments: {segs:?}");
    let last = segs.last().expect("a segment").clone();
    let bytes = std::fs::read(&last).expect("read");
    let frames = frames_in(&bytes);
    let f = frames[frames.len() / 2];
    let cut = f.pos + f.used - 1;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .expect("open")
        .set_len(cut as u64)
        .expect("truncate");
    match Runtime::start(&dir, runtime_config(), |_ctx| async { Ok(()) }) {
        Err(Error::Corruption {
            shard,
            segment,
            offset,
            cause,
        }) => {
            assert_eq!(shard, SHARD);
            assert_eq!(segment, last);
            assert_eq!(offset, f.pos as u64);
            assert_eq!(
                cause,
                CorruptionCause::SegmentTruncated {
                    len: cut as u64,
                    size: SEGMENT
                }
            );
        }
        Err(e) => panic!("another error: {e}"),
        Ok(rt) => {
            let report = format!("{:?}", rt.recovery_report());
            let _ = rt.shutdown();
            panic!("the truncated log started: {report}");
        }
    }
    // Nothing was changed: the file is as it was cut.
    assert_eq!(std::fs::metadata(&last).expect("stat").len(), cut as u64);
}

/// Write a log with `Fallocate` on a real file system through `storage`,
/// close it, and return its directory's segment files with their lengths.
fn fallocated_log<S: Storage + Send + Copy + 'static>(storage: S, dir: &Path) -> Vec<(u64, u64)> {
    let d = dir.to_path_buf();
    run("fallocate-real", move || async move {
        let log = ShardLog::open(storage, &d, SHARD, config(SegmentPrepare::Fallocate))
            .await
            .expect("open");
        for seq in 0..100 {
            log.append(&rec(seq)).await.expect("append");
        }
        log.sync().await.expect("sync");
        assert!(log.stats().rolls >= 2, "several segments");
        log.close().await.expect("close");
        let log = ShardLog::open(storage, &d, SHARD, config(SegmentPrepare::Fallocate))
            .await
            .expect("reopen");
        assert_eq!(log.recovery().next_seq, Seq(101), "records and the close");
        log.close().await.expect("close");
    });
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(shard_dir(dir, SHARD))
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            let sized = SegmentHeader::decode(&b).map_or(0, |h| u64::from(h.sized));
            (sized, b.len() as u64)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn fallocated_segments_are_their_full_size_on_a_real_file_system() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, segs) in [
        ("dma", fallocated_log(DmaStorage, &tmp.path().join("dma"))),
        ("std", fallocated_log(StdStorage, &tmp.path().join("std"))),
    ] {
        assert!(
            segs.iter().filter(|s| s.0 == 1).count() >= 3,
            "{name}: {segs:?}"
        );
        // Every segment, the blank prepared one too, is as long as its
        // size (the reservation alone would keep the files short).
        for (_, len) in &segs {
            assert_eq!(*len, SEGMENT, "{name}: {segs:?}");
        }
    }
}
