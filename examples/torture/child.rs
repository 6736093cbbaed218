//! The child processes: the runtime workload and the append workload. They
//! report on stdout (a pipe to the parent), one line per fact, written once
//! the fact holds (see `protocol`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use shardwal::rng::SplitMix;
use shardwal::runtime::available_cores;
use shardwal::{
    ControlEvent, CoordinatorConfig, DmaStorage, Error, FsyncPolicy, RecordKind, Runtime,
    RuntimeConfig, ShardConfig, ShardContext, ShardId, ShardLog, SourceOffset,
};

/// Write one line to the parent, at once (one `write` per line).
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    // The parent may be gone: nothing else to do.
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

pub(crate) fn shard_config(fsync: FsyncPolicy) -> ShardConfig {
    ShardConfig {
        segment_size: 256 << 10,
        buffer_size: 32 << 10,
        write_behind: 2,
        max_record_size: 4096,
        fsync,
        ..ShardConfig::default()
    }
}

pub(crate) fn runtime_config(shards: usize, unpinned: bool) -> RuntimeConfig {
    RuntimeConfig {
        shards: Some(shards),
        shard: shard_config(FsyncPolicy::PerEpoch),
        coordinator: CoordinatorConfig {
            keep_checkpoints: 2,
            ..CoordinatorConfig::default()
        },
        // More shards than cores run unpinned anyway (RuntimeConfig::pin).
        pin: !unpinned,
        ..RuntimeConfig::default()
    }
}
use crate::payload::{
    Input, append_payload, input_payload, parse_input, parse_snapshot, snapshot_bytes, source,
};
use crate::{APPENDERS, CHILD_LIFETIME, Lie};

/// The child of the runtime workload: start (recover), then run epochs and
/// checkpoints until killed.
pub(crate) fn child_runtime(
    dir: &Path,
    shards: usize,
    seed: u64,
    unpinned: bool,
    lie: Option<Lie>,
) {
    say(format_args!("BEGIN"));
    let rt = match Runtime::start(dir, runtime_config(shards, unpinned), move |ctx| {
        engine(ctx, seed, lie)
    }) {
        Ok(rt) => rt,
        Err(e) => {
            say(format_args!("FAIL - Runtime::start: {e}"));
            std::process::exit(3);
        }
    };
    say(format_args!("STARTED {}", rt.recovery_report().sealed.0));
    let c = rt.coordinator();
    // Sealed epochs are reported the moment the watermark moves.
    {
        let c = c.clone();
        std::thread::spawn(move || {
            let mut last = c.sealed_epoch().0;
            while !c.is_stopped() {
                let now = c.sealed_epoch().0;
                if now > last {
                    let told = if lie == Some(Lie::Sealed) {
                        now + 1000
                    } else {
                        now
                    };
                    say(format_args!("SEALED {told}"));
                    last = now;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        });
    }
    let (ckpt_tx, ckpt_rx) = mpsc::channel::<shardwal::CheckpointTicket>();
    let in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let in_flight = in_flight.clone();
        std::thread::spawn(move || {
            for t in ckpt_rx {
                match t.wait() {
                    Ok(info) => say(format_args!("CKPT {} {}", info.id.0, info.epoch.0)),
                    Err(e) => say(format_args!("FAIL - checkpoint {}: {e}", t.id.0)),
                }
                in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
        });
    }
    let mut rng = SplitMix(seed ^ 0xd71e);
    let t0 = Instant::now();
    while t0.elapsed() < CHILD_LIFETIME {
        std::thread::sleep(Duration::from_micros(rng.below(4000)));
        let flying = in_flight.load(std::sync::atomic::Ordering::Acquire);
        if flying < 2 && rng.below(5) == 0 {
            match c.checkpoint() {
                Ok(t) => {
                    in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    let _ = ckpt_tx.send(t);
                }
                Err(e) => {
                    say(format_args!("FAIL - checkpoint: {e}"));
                    std::process::exit(3);
                }
            }
        } else if let Err(e) = c.advance_epoch().and_then(|t| t.wait()) {
            say(format_args!("FAIL - epoch: {e}"));
            std::process::exit(3);
        }
    }
    say(format_args!("TIMEOUT"));
    std::process::exit(4);
}

/// One shard's engine in the runtime workload.
pub(crate) async fn engine(
    ctx: Rc<ShardContext<DmaStorage>>,
    seed: u64,
    lie: Option<Lie>,
) -> shardwal::Result<()> {
    let s = ctx.shard().0;
    let plan = ctx.replay_plan().clone();
    let fail = |msg: String| say(format_args!("FAIL {s} {msg}"));
    // Restore: the snapshot, then the replay, counting inputs.
    let mut snap_count = 0;
    for (sh, bytes) in ctx.snapshots().await? {
        match parse_snapshot(sh.0, plan.checkpoint.map_or(0, |c| c.0), &bytes) {
            Ok(n) => snap_count = n,
            Err(e) => fail(e),
        }
    }
    let mut count = snap_count;
    let mut replayed = 0u64;
    let mut replay = ctx.replay().await?;
    while let Some(r) = replay.next().await? {
        if r.kind != RecordKind::Data {
            continue;
        }
        match parse_input(r.payload) {
            Ok(d) if d.input == count && d.shard == s => {}
            Ok(d) => fail(format!(
                "replayed {d:?} at {} where input {count} was due",
                r.lsn
            )),
            Err(e) => fail(format!("replayed {}: {e}", r.lsn)),
        }
        count += 1;
        replayed += 1;
    }
    drop(replay);
    let offset = plan
        .offsets
        .iter()
        .find(|o| o.source == source(s))
        .map_or(0, |o| o.offset);
    say(format_args!(
        "RESTORED {s} {} {} {} {} {snap_count} {replayed} {offset}",
        plan.sealed.0,
        plan.from.0,
        plan.until.0,
        plan.checkpoint.map_or(0, |c| c.0),
    ));
    if count != offset {
        fail(format!(
            "restored {count} inputs (snapshot {snap_count} + {replayed} replayed) but resumes at offset {offset}"
        ));
    }
    let mut rng = SplitMix(seed ^ (u64::from(s) << 40) ^ 0xe6);
    let log = ctx.log().clone();
    // The source rewinds to the committed offset.
    let mut input = offset;
    if s == 0 && lie == Some(Lie::Offset) {
        input += 1;
    }
    let mut first = input;
    let mut barriers = 0u64;
    loop {
        while let Some(ev) = ctx.poll_control() {
            let ControlEvent::Barrier(req) = ev else {
                return Ok(());
            };
            // Reported before the barrier is logged: any barrier on disk
            // has its epoch's count on the parent's side.
            let e = log.epoch().0;
            barriers += 1;
            let extra = u64::from(s == 0 && barriers == 3 && lie == Some(Lie::Count));
            say(format_args!(
                "COUNT {s} {e} {first} {}",
                input - first + extra
            ));
            for empty in e + 1..=req.epoch.0 {
                say(format_args!("COUNT {s} {empty} {input} 0"));
            }
            ctx.commit(
                vec![SourceOffset {
                    source: source(s),
                    offset: input,
                }],
                0,
            )
            .await?;
            let (_, writer) = ctx.complete_barrier_streamed(req).await?;
            first = input;
            if let Some(w) = writer {
                let len = (256 << 10) + rng.below(4 << 20) as usize;
                let pace = rng.below(400);
                glommio::spawn_local(stream_snapshot(w, s, input, len, pace)).detach();
            }
        }
        for _ in 0..rng.below(8) {
            let d = Input {
                shard: s,
                epoch: log.epoch().0,
                input,
            };
            log.append(&input_payload(d)).await?;
            input += 1;
        }
        glommio::timer::sleep(Duration::from_micros(100 + rng.below(300))).await;
    }
}

/// Stream a snapshot of `len` bytes holding `count` in 64 KiB chunks,
/// pausing up to `pace_us` between chunks, then finish it.
pub(crate) async fn stream_snapshot(
    mut w: shardwal::SnapshotWriter<DmaStorage>,
    s: u32,
    count: u64,
    len: usize,
    pace_us: u64,
) {
    let id = w.checkpoint().0;
    say(format_args!("SNAP_BEGIN {s} {id}"));
    let bytes = snapshot_bytes(s, id, count, len);
    for c in bytes.chunks(64 << 10) {
        if let Err(e) = w.write(c).await {
            say(format_args!("SNAP_FAIL {s} {id} {e}"));
            return;
        }
        if pace_us > 0 {
            glommio::timer::sleep(Duration::from_micros(pace_us)).await;
        }
    }
    match w.finish().await {
        Ok(_) => say(format_args!("SNAP_END {s} {id}")),
        Err(e) => say(format_args!("SNAP_FAIL {s} {id} {e}")),
    }
}

/// The child of the append workload: one `ShardLog` per executor under
/// `EveryAppend`, appending from 16 tasks each until killed.
pub(crate) fn child_append(dir: &Path, shards: usize, seed: u64, unpinned: bool, lie: Option<Lie>) {
    say(format_args!("BEGIN"));
    let cores = available_cores();
    let handles: Vec<_> = (0..shards)
        .map(|i| {
            let placement = if !unpinned && shards <= cores.len() {
                Placement::Fixed(cores[i])
            } else {
                Placement::Unbound
            };
            let dir = dir.to_path_buf();
            LocalExecutorBuilder::new(placement)
                .name(&format!("torture-{i}"))
                .io_memory(1 << 20)
                .spawn(move || appender_shard(dir, i as u32, seed, lie))
                .expect("spawn executor")
        })
        .collect();
    for h in handles {
        if let Err(e) = h.join() {
            say(format_args!("FAIL - executor: {e}"));
        }
    }
    say(format_args!("TIMEOUT"));
    std::process::exit(4);
}

pub(crate) async fn appender_shard(dir: PathBuf, s: u32, seed: u64, lie: Option<Lie>) {
    let cfg = shard_config(FsyncPolicy::EveryAppend);
    let log = match ShardLog::open(DmaStorage, &dir, ShardId(s), cfg).await {
        Ok(l) => l,
        Err(e) => {
            say(format_args!("FAIL {s} open: {e}"));
            std::process::exit(3);
        }
    };
    say(format_args!("READY {s} {}", log.next_seq().0));
    let deadline = Instant::now() + CHILD_LIFETIME;
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|k| {
            let log = log.clone();
            let mut rng = SplitMix(seed ^ (u64::from(s) << 32) ^ k as u64);
            glommio::spawn_local(async move {
                while Instant::now() < deadline {
                    // The payload is derived from the seq the record gets:
                    // read it and append with no await between.
                    let seq = log.next_seq().0;
                    let lsn = match log.try_append(&append_payload(s, seq)) {
                        Ok(l) => l,
                        Err(Error::Backpressure) => {
                            glommio::timer::sleep(Duration::from_micros(100)).await;
                            continue;
                        }
                        Err(e) => {
                            say(format_args!("FAIL {s} append: {e}"));
                            std::process::exit(3);
                        }
                    };
                    if lsn.seq.0 != seq {
                        say(format_args!("FAIL {s} appended at {} not {seq}", lsn.seq));
                    }
                    // Before this task yields: the record cannot be on disk yet.
                    say(format_args!("A {s} {seq}"));
                    if let Err(e) = log.wait_durable(lsn).await {
                        say(format_args!("FAIL {s} wait_durable: {e}"));
                        std::process::exit(3);
                    }
                    let told = if s == 0 && k == 0 && lie == Some(Lie::Durable) {
                        seq + 1_000_000_000
                    } else {
                        seq
                    };
                    say(format_args!("D {s} {told}"));
                    if rng.below(4) == 0 {
                        glommio::timer::sleep(Duration::from_micros(rng.below(500))).await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
}
