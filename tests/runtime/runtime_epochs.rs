//! Four shards append concurrently across 1,000 coordinator epochs. While
//! they run, another thread watches the sealed-epoch watermark and checks it
//! never goes backwards. Afterwards every shard's log is read back: each data
//! record carries the epoch it was appended in, and barriers sit exactly
//! between epochs (barrier(e) has epoch e; everything between barrier(e-1)
//! and barrier(e) has epoch e; barriers 1..=N in order).

use crate::runtime_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use runtime_common::*;
use shardwal::{ControlEvent, Epoch, RecordKind, Runtime};

const SHARDS: usize = 4;
const EPOCHS: u64 = 1_000;

#[test]
fn records_carry_their_epoch_and_barriers_sit_between_epochs() {
    let dir = tempfile::tempdir().unwrap();
    // Per shard: data records appended, as the engine counted them.
    let appended: Arc<Vec<AtomicU64>> = Arc::new((0..SHARDS).map(|_| AtomicU64::new(0)).collect());
    let counts = appended.clone();
    // Per shard: the last barrier epoch polled, and the last one completed
    // (to tell which shard a slow seal waits for).
    let progress: Arc<Vec<[AtomicU64; 2]>> = Arc::new(
        (0..SHARDS)
            .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
            .collect(),
    );
    let seen = progress.clone();
    let rt = Runtime::start(
        dir.path(),
        runtime_config(SHARDS, small_shard()),
        move |ctx| {
            let counts = counts.clone();
            let progress = seen.clone();
            async move {
                let shard = ctx.shard().0;
                let log = ctx.log().clone();
                let mut index = 0u64;
                let append = |index: u64| {
                    let log = log.clone();
                    async move {
                        let epoch = log.epoch().0;
                        let d = Data {
                            shard,
                            epoch,
                            index,
                        };
                        let lsn = log.append(&data_payload(d, pad_len(index, 48))).await?;
                        if lsn.epoch.0 != epoch {
                            return Err(engine_err(format!(
                                "record appended in epoch {epoch} got lsn {lsn}"
                            )));
                        }
                        Ok::<_, shardwal::Error>(())
                    }
                };
                loop {
                    while let Some(ev) = ctx.poll_control() {
                        match ev {
                            ControlEvent::Barrier(req) => {
                                let p = &progress[shard as usize];
                                p[0].store(req.epoch.0, Ordering::SeqCst);
                                if req.epoch != log.epoch() || req.checkpoint.is_some() {
                                    return Err(engine_err(format!(
                                        "barrier {req:?} while in {}",
                                        log.epoch()
                                    )));
                                }
                                let lsn = ctx.complete_barrier(req, None).await?;
                                p[1].store(req.epoch.0, Ordering::SeqCst);
                                if lsn.epoch != req.epoch || log.epoch() != req.epoch.next() {
                                    return Err(engine_err(format!(
                                        "barrier {req:?} logged as {lsn}, now in {}",
                                        log.epoch()
                                    )));
                                }
                                // Every epoch gets at least one record, the
                                // first thing after its predecessor's barrier.
                                append(index).await?;
                                index += 1;
                            }
                            ControlEvent::Shutdown => {
                                counts[shard as usize].store(index, Ordering::SeqCst);
                                return Ok(());
                            }
                            other => return Err(engine_err(format!("unexpected {other:?}"))),
                        }
                    }
                    for _ in 0..4 {
                        append(index).await?;
                        index += 1;
                    }
                    glommio::timer::sleep(Duration::from_micros(200)).await;
                }
            }
        },
    )
    .expect("start runtime");
    let c = rt.coordinator();
    assert_eq!(c.sealed_epoch(), Epoch(0), "a new log has no sealed epoch");

    // The watcher: the sealed watermark never goes backwards.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (c, stop) = (c.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut last = 0u64;
            let mut changes = 0u64;
            loop {
                // One last read after the stop flag: by then every epoch
                // is sealed.
                let stopping = stop.load(Ordering::Acquire);
                let now = c.sealed_epoch().0;
                assert!(now >= last, "sealed epoch went back from {last} to {now}");
                changes += u64::from(now > last);
                last = now;
                if stopping {
                    break (last, changes);
                }
                std::thread::sleep(Duration::from_micros(20));
            }
        })
    };

    let t0 = Instant::now();
    for e in 1..=EPOCHS {
        let t = c.advance_epoch().expect("advance epoch");
        assert_eq!(t.epoch, Epoch(e), "epochs are issued in order");
        let sealed = t.wait_timeout(Duration::from_secs(30)).unwrap_or_else(|e| {
            let per_shard: Vec<(u64, u64)> = progress
                .iter()
                .map(|p| (p[0].load(Ordering::SeqCst), p[1].load(Ordering::SeqCst)))
                .collect();
            panic!(
                "epoch did not seal: {e}; per shard (last barrier polled, last completed): {per_shard:?}"
            )
        });
        assert_eq!(sealed, Epoch(e));
        assert!(
            c.sealed_epoch() >= Epoch(e),
            "the ticket resolved before the watermark showed epoch {e}"
        );
    }
    let took = t0.elapsed();
    stop.store(true, Ordering::Release);
    let (watched_last, watched_changes) = watcher.join().expect("watcher thread");
    assert_eq!(watched_last, EPOCHS);
    assert!(watched_changes > 0, "the watcher saw the watermark move");
    eprintln!(
        "{EPOCHS} epochs on {SHARDS} shards in {took:?} ({:?} per epoch); watcher saw {watched_changes} advances",
        took / EPOCHS as u32
    );

    within(Duration::from_secs(60), "shutdown", move || rt.shutdown()).expect("clean shutdown");
    // Shutdown may seal one final epoch of its own.
    let last = c.sealed_epoch().0;
    assert!(
        last == EPOCHS || last == EPOCHS + 1,
        "sealed epoch {last} after shutdown"
    );

    for shard in 0..SHARDS as u32 {
        let recs = read_log(dir.path(), shard, 0);
        assert_eq!(
            recs.first().map(|r| r.seq),
            Some(0),
            "shard {shard} starts at seq 0"
        );
        assert_dense(shard, &recs);
        let mut epoch = 1u64; // the epoch the next record belongs to
        let mut next_index = 0u64;
        let mut data_in_epoch = 0u64;
        let mut closed = false;
        for r in &recs {
            assert!(!closed, "shard {shard}: record after the close record");
            match r.kind {
                RecordKind::Data => {
                    let d = parse_data(&r.payload);
                    assert_eq!(d.shard, shard);
                    assert_eq!(
                        d.epoch, r.epoch,
                        "shard {shard} seq {}: appended in epoch {} but logged in {}",
                        r.seq, d.epoch, r.epoch
                    );
                    assert_eq!(
                        r.epoch,
                        epoch,
                        "shard {shard} seq {}: record of epoch {} between barrier({}) and barrier({})",
                        r.seq,
                        r.epoch,
                        epoch - 1,
                        epoch
                    );
                    assert_eq!(d.index, next_index, "shard {shard}: data records in order");
                    next_index += 1;
                    data_in_epoch += 1;
                }
                RecordKind::Barrier => {
                    assert_eq!(
                        r.epoch, epoch,
                        "shard {shard} seq {}: barriers in order",
                        r.seq
                    );
                    assert!(r.payload.is_empty());
                    assert!(
                        epoch == 1 || data_in_epoch > 0,
                        "shard {shard}: epoch {epoch} has no data record"
                    );
                    epoch += 1;
                    data_in_epoch = 0;
                }
                RecordKind::Close => closed = true,
                other => panic!("shard {shard}: unexpected {other:?} record"),
            }
        }
        assert!(
            closed,
            "shard {shard}: clean shutdown writes a close record"
        );
        assert_eq!(
            epoch,
            last + 1,
            "shard {shard}: barriers 1..={last}, then epoch {} is open",
            last + 1
        );
        assert_eq!(
            next_index,
            appended[shard as usize].load(Ordering::SeqCst),
            "shard {shard}: every appended record is in the log"
        );
    }
}
