//! The cost of idle shards: a runtime with 2 shards in auto-barrier mode
//! whose engines have nothing to do, measured with getrusage over 3 s of
//! nothing (CPU seconds per wall second), then the latency of 200 epoch
//! seals on those idle shards. `cargo bench --bench idle`.

use std::time::{Duration, Instant};

use shardwal::{Runtime, RuntimeConfig};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let cfg = RuntimeConfig {
        shards: Some(2),
        auto_barriers: true,
        ..RuntimeConfig::default()
    };
    // The engines return at once: the runtime answers barriers for them.
    let rt = Runtime::start(dir.path(), cfg, |_ctx| async { Ok(()) })?;
    std::thread::sleep(Duration::from_millis(500));
    let (c0, t0) = (cpu_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let idle = (cpu_seconds() - c0) / t0.elapsed().as_secs_f64();
    let c = rt.coordinator();
    let mut lat: Vec<Duration> = Vec::with_capacity(200);
    for _ in 0..200 {
        let s = Instant::now();
        c.advance_epoch()?.wait()?;
        lat.push(s.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    lat.sort();
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    println!(
        "idle: {:.1}% of a core for 2 idle shards; seal of an idle 2-shard runtime (200, 5 ms apart): p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        idle * 100.0,
        q(0.5),
        q(0.9),
        q(0.99),
        lat[lat.len() - 1]
    );
    rt.shutdown()?;
    Ok(())
}
