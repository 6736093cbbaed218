//! The `checkpoint` workload: epochs and checkpoints of a 2-shard runtime
//! with the engine answering barriers inline, as a user would write it
//! (default `RuntimeConfig` and `ShardConfig`, 128 B records), in phases of
//! one run:
//!
//! 1. idle: engines wait on `ShardContext::control().await`; epochs back to
//!    back: the seal latency, and the barrier's delivery (from the
//!    `advance_epoch` call to the engine's wake-up);
//! 2. full load without epochs, then with an epoch every 10 ms: append
//!    throughput, and the seal latency under load;
//! 3. half of that load (paced), 10 ms epochs: the seal latency;
//! 4. the same, plus three checkpoints in a row of `--state-mib` MiB of
//!    state per shard, each streamed with a `SnapshotWriter` while the engine goes on: the
//!    seal latency of the checkpoint's epoch, appends during the snapshot,
//!    the snapshot's write bandwidth and the process's peak RSS above the
//!    engines' own state;
//! 5. a raw O_DIRECT sequential write of as many bytes as both snapshots
//!    (the device's write bandwidth, same run).

use std::rc::Rc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardwal::{ControlEvent, DmaStorage, Runtime, RuntimeConfig, ShardContext};

use super::measure::{Measure, Report};
use super::setup::{Scratch, err, lib, payload};
use crate::Fail;

const IDLE: u8 = 0;
const FULL: u8 = 1;
const PACED: u8 = 2;
/// Records appended between two looks at the control channel and the pace.
const BATCH: u64 = 256;
/// The epoch interval of the loaded phases.
const EPOCH: Duration = Duration::from_millis(10);
/// Bytes per `SnapshotWriter::write`.
const CHUNK: usize = 1 << 20;
/// Checkpoints taken in the checkpoint phase.
const CHECKPOINTS: usize = 3;

/// What the driver and the two engines share.
struct Shared {
    base: Instant,
    mode: AtomicU8,
    /// Records per second per shard in `PACED` mode.
    rate: AtomicU64,
    /// Records appended, per shard.
    appended: [AtomicU64; 2],
    /// Nanoseconds since `base` at the last `advance_epoch` call.
    sent: AtomicU64,
    /// Barrier delivery latencies seen by the engines (idle phase).
    delivery: Mutex<Vec<u64>>,
    /// Per shard, (barrier answered → snapshot finished) of each checkpoint.
    snapshot: Mutex<Vec<Duration>>,
    state_bytes: usize,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn total(&self) -> u64 {
        self.appended
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }
}

async fn engine(ctx: Rc<ShardContext<DmaStorage>>, sh: Arc<Shared>) -> shardwal::Result<()> {
    let me = ctx.shard().0 as usize;
    // The engine's state, frozen for the run (so a snapshot of it needs no
    // copy): every page touched.
    let state = Rc::new(vec![0x5a_u8 ^ me as u8; sh.state_bytes]);
    let rec = payload(128);
    let log = ctx.log().clone();
    let mut pace: Option<(Instant, u64, u8)> = None;
    loop {
        let mode = sh.mode.load(Ordering::Acquire);
        let mut ev = if mode == IDLE {
            Some(ctx.control().await)
        } else {
            ctx.poll_control()
        };
        while let Some(e) = ev.take() {
            let ControlEvent::Barrier(req) = e else {
                return Ok(());
            };
            if mode == IDLE {
                let d = sh.now_ns().saturating_sub(sh.sent.load(Ordering::Acquire));
                sh.delivery.lock().expect("delivery").push(d);
            }
            let (_, writer) = ctx.complete_barrier_streamed(req).await?;
            if let Some(mut w) = writer {
                let (state, sh) = (state.clone(), sh.clone());
                glommio::spawn_local(async move {
                    let t0 = Instant::now();
                    for c in state.chunks(CHUNK) {
                        if w.write(c).await.is_err() {
                            return;
                        }
                    }
                    if w.finish().await.is_ok() {
                        sh.snapshot.lock().expect("snapshot").push(t0.elapsed());
                    }
                })
                .detach();
            }
            ev = ctx.poll_control();
        }
        if mode == IDLE {
            pace = None;
            continue;
        }
        for _ in 0..BATCH {
            log.append(&rec).await?;
        }
        sh.appended[me].fetch_add(BATCH, Ordering::Relaxed);
        if mode == PACED {
            let rate = sh.rate.load(Ordering::Acquire).max(1);
            let (t0, n, _) = match pace {
                Some(p) if p.2 == PACED => p,
                _ => (Instant::now(), 0, PACED),
            };
            let n = n + BATCH;
            pace = Some((t0, n, PACED));
            let due = t0 + Duration::from_secs_f64(n as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                glommio::timer::sleep(due - now).await;
            }
        } else {
            pace = None;
            // Let the shard's own tasks (writes, syncs) run.
            glommio::executor().yield_if_needed().await;
        }
    }
}

/// `checkpoint`: see the module's docs.
pub(super) fn run(s: &Scratch, dur: Duration, state_mib: u64) -> Result<Report, Fail> {
    let dir = s.sub("checkpoint")?;
    let sh = Arc::new(Shared {
        base: Instant::now(),
        mode: AtomicU8::new(IDLE),
        rate: AtomicU64::new(0),
        appended: [AtomicU64::new(0), AtomicU64::new(0)],
        sent: AtomicU64::new(0),
        delivery: Mutex::new(Vec::new()),
        snapshot: Mutex::new(Vec::new()),
        state_bytes: (state_mib << 20) as usize,
    });
    let cfg = RuntimeConfig {
        shards: Some(2),
        ..RuntimeConfig::default()
    };
    let s2 = sh.clone();
    let rt = Runtime::start(&dir, cfg, move |ctx| engine(ctx, s2.clone())).map_err(lib)?;
    let c = rt.coordinator();
    let seal = |m: &mut Measure| -> Result<(), Fail> {
        let t0 = Instant::now();
        sh.sent.store(sh.now_ns(), Ordering::Release);
        c.advance_epoch().and_then(|t| t.wait()).map_err(lib)?;
        m.record(t0.elapsed());
        m.ops += 1;
        Ok(())
    };
    // Warm up: the first epochs wait for the spare segments being prepared.
    let mut warm = Measure::new("warm-up");
    for _ in 0..20 {
        seal(&mut warm)?;
    }

    // 1. Idle.
    sh.delivery.lock().expect("delivery").clear();
    let mut idle = Measure::new("seal_idle");
    let start = Instant::now();
    while start.elapsed() < dur {
        seal(&mut idle)?;
    }
    idle.elapsed = start.elapsed();
    let mut delivery = Measure::new("barrier_delivery_awaited");
    for &d in sh.delivery.lock().expect("delivery").iter() {
        delivery.record(Duration::from_nanos(d));
        delivery.ops += 1;
    }
    delivery.elapsed = idle.elapsed;

    // 2. Full load, without epochs and then with 10 ms epochs.
    sh.mode.store(FULL, Ordering::Release);
    seal(&mut warm)?; // wakes the idle engines
    let mut no_epochs = Measure::new("appends_no_epochs");
    let n0 = sh.total();
    let start = Instant::now();
    std::thread::sleep(dur);
    no_epochs.elapsed = start.elapsed();
    no_epochs.ops = sh.total() - n0;
    no_epochs.bytes = no_epochs.ops * 128;

    let epochs = |name: &'static str, m: &mut Measure| -> Result<Measure, Fail> {
        let mut a = Measure::new(name);
        let n0 = sh.total();
        let start = Instant::now();
        let mut next = start;
        while start.elapsed() < dur {
            next += EPOCH;
            seal(m)?;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        a.elapsed = start.elapsed();
        m.elapsed = a.elapsed;
        a.ops = sh.total() - n0;
        a.bytes = a.ops * 128;
        Ok(a)
    };
    let mut seal_full = Measure::new("seal_full_load_10ms_epochs");
    let with_epochs = epochs("appends_10ms_epochs", &mut seal_full)?;

    // 3. Half load.
    let half = no_epochs.ops as f64 / no_epochs.elapsed.as_secs_f64() / 2.0;
    sh.rate.store((half / 2.0) as u64, Ordering::Release); // per shard
    sh.mode.store(PACED, Ordering::Release);
    let mut seal_half = Measure::new("seal_half_load");
    let half_appends = epochs("appends_half_load", &mut seal_half)?;

    // 4. Half load and checkpoints, one after the other.
    let rss_before = rss_kib("VmRSS");
    // Reset the peak to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut ckpt_seal = Measure::new("seal_checkpoint_epoch");
    let mut during = Measure::new("appends_during_snapshot");
    let mut snap = Measure::new("snapshot_write");
    let mut seal_during = Measure::new("seal_during_snapshot");
    for _ in 0..CHECKPOINTS {
        sh.snapshot.lock().expect("snapshot").clear();
        let n0 = sh.total();
        let t0 = Instant::now();
        let ticket = c.checkpoint().map_err(lib)?;
        let epoch = ticket.epoch;
        while c.sealed_epoch() < epoch {
            std::thread::sleep(Duration::from_micros(20));
        }
        ckpt_seal.record(t0.elapsed());
        ckpt_seal.ops += 1;
        // Epochs go on every 10 ms while the snapshots stream.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let waiter = std::thread::spawn(move || {
            let r = ticket.wait();
            let _ = tx.send(());
            r
        });
        let mut next = Instant::now();
        while rx.try_recv().is_err() {
            next += EPOCH;
            seal(&mut seal_during)?;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        waiter
            .join()
            .map_err(|_| err(&dir, "checkpoint waiter panicked"))?
            .map_err(lib)?;
        let elapsed = t0.elapsed();
        during.elapsed += elapsed;
        during.ops += sh.total() - n0;
        let longest = sh
            .snapshot
            .lock()
            .expect("snapshot")
            .iter()
            .copied()
            .max()
            .unwrap_or(elapsed);
        snap.ops += 2;
        snap.bytes += 2 * (state_mib << 20);
        snap.elapsed += longest;
        snap.record(longest);
    }
    let peak = rss_kib("VmHWM");
    during.bytes = during.ops * 128;
    seal_during.elapsed = during.elapsed;
    sh.mode.store(IDLE, Ordering::Release);
    rt.shutdown().map_err(lib)?;

    // 5. The device's write bandwidth, same bytes.
    let raw_path = dir.join("raw-direct.bin");
    let raw = super::raw::direct_write(&raw_path, 2 * (state_mib << 20))?;
    let _ = std::fs::remove_file(&raw_path);

    let growth_mib = peak.saturating_sub(rss_before) as f64 / 1024.0;
    let mut r = Report {
        name: "checkpoint",
        what: format!(
            "2-shard runtime, engines answering barriers inline: seal latency idle, under full \
             and half load with 10 ms epochs; {CHECKPOINTS} checkpoints of {state_mib} MiB per \
             shard streamed under half load (peak RSS {growth_mib:.1} MiB above the engines' state)"
        ),
        unit: "op",
        rows: vec![
            idle,
            delivery,
            no_epochs,
            with_epochs,
            seal_full,
            half_appends,
            seal_half,
            ckpt_seal,
            seal_during,
            during,
            snap,
            raw,
        ],
        ratios: Vec::new(),
    };
    r.ratio_ops("appends_10ms_epochs", "appends_no_epochs");
    r.ratio_p50("seal_half_load", "seal_idle");
    r.ratio_p50("seal_checkpoint_epoch", "seal_half_load");
    r.ratio_ops("appends_during_snapshot", "appends_half_load");
    r.ratio_mib("snapshot_write", "raw_direct_write");
    r.ratios.push((
        "peak RSS growth during the checkpoint, MiB".into(),
        growth_mib,
    ));
    Ok(r)
}

/// A `/proc/self/status` field in KiB (0 if unreadable).
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
