//! Smoke run of the runtime: 4 shards in user mode, 200 epochs, 3 checkpoints.
use std::time::Instant;

use shardwal::{ControlEvent, FsyncPolicy, Runtime, RuntimeConfig, ShardConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let cfg = RuntimeConfig {
        shards: Some(4),
        shard: ShardConfig {
            fsync: FsyncPolicy::PerEpoch,
            segment_size: 1 << 20,
            buffer_size: 64 << 10,
            write_behind: 2,
            max_record_size: 4096,
            ..ShardConfig::default()
        },
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(dir.path(), cfg, |ctx| async move {
        let mut n = 0u64;
        loop {
            while let Some(ev) = ctx.poll_control() {
                match ev {
                    ControlEvent::Barrier(req) => {
                        let snap = format!("shard {} count {n}", ctx.shard().0);
                        ctx.complete_barrier(req, Some(snap.as_bytes())).await?;
                    }
                    _ => return Ok(()),
                }
            }
            for _ in 0..10 {
                ctx.log().append(&n.to_le_bytes()).await?;
                n += 1;
            }
            glommio::yield_if_needed().await;
            glommio::timer::sleep(std::time::Duration::from_micros(100)).await;
        }
    })?;
    let c = rt.coordinator();
    let t0 = Instant::now();
    for i in 0..200 {
        if i % 70 == 69 {
            let info = c.checkpoint()?.wait()?;
            println!("checkpoint {:?}", info);
        } else {
            c.advance_epoch()?.wait()?;
        }
    }
    println!(
        "200 epochs in {:?}, sealed {:?}",
        t0.elapsed(),
        c.sealed_epoch()
    );
    rt.shutdown()?;
    println!(
        "after shutdown: advance -> {:?}",
        c.advance_epoch().map(|t| t.epoch)
    );
    let rt = Runtime::start(
        dir.path(),
        RuntimeConfig {
            shards: Some(4),
            auto_barriers: true,
            ..RuntimeConfig::default()
        },
        |ctx| async move {
            while !ctx.is_shutting_down() {
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            }
            Ok(())
        },
    )?;
    for r in rt.recovered() {
        println!("{:?}", r);
    }
    println!(
        "manifest: checkpoint {:?}",
        rt.manifest().map(|m| (m.checkpoint, m.epoch))
    );
    let c = rt.coordinator();
    println!("sealed at restart {:?}", c.sealed_epoch());
    println!("seal {:?}", c.advance_epoch()?.wait()?);
    rt.shutdown()?;
    Ok(())
}
