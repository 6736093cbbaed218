//! The `group` workload: group commit of many concurrent appenders.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::LocalExecutor;
use shardwal::{FsyncPolicy, ShardConfig};

use super::measure::{Measure, Report};
use super::setup::{Scratch, err, lib, open_log, payload};
use crate::Fail;

/// `group`: 64 concurrent appenders, each record durable, under `EveryAppend`.
pub(super) fn run(ex: &LocalExecutor, s: &Scratch, dur: Duration) -> Result<Report, Fail> {
    const GROUP: u64 = 64;
    const SIZE: usize = 128;
    let p = payload(SIZE);
    let dir = s.sub("group")?;
    let cfg = ShardConfig {
        fsync: FsyncPolicy::EveryAppend,
        ..ShardConfig::default()
    };
    let log = open_log(ex, &dir, cfg)?;
    let sw = Rc::new(RefCell::new(Measure::new("shardwal")));
    ex.run(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..GROUP)
            .map(|_| {
                let (log, sw, p) = (log.clone(), sw.clone(), p.clone());
                glommio::spawn_local(async move {
                    while start.elapsed() < dur {
                        let t0 = Instant::now();
                        let lsn = log.append(&p).await?;
                        log.wait_durable(lsn).await?;
                        let mut m = sw.borrow_mut();
                        m.record(t0.elapsed());
                        m.ops += 1;
                    }
                    Ok::<(), shardwal::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
        let mut m = sw.borrow_mut();
        m.elapsed = start.elapsed();
        m.bytes = m.ops * SIZE as u64;
        Ok::<(), shardwal::Error>(())
    })
    .map_err(lib)?;
    ex.run(log.close()).map_err(lib)?;
    let sw = Rc::try_unwrap(sw)
        .ok()
        .expect("tasks finished")
        .into_inner();

    let path = dir.join("raw.log");
    let mut raw = Measure::new("raw_bufwriter_sync_per_64");
    {
        let f = File::create(&path).map_err(|e| err(&path, e))?;
        let mut w = BufWriter::new(f);
        let start = Instant::now();
        while start.elapsed() < dur {
            let t0 = Instant::now();
            for _ in 0..GROUP {
                w.write_all(&p).map_err(|e| err(&path, e))?;
            }
            w.flush().map_err(|e| err(&path, e))?;
            w.get_ref().sync_data().map_err(|e| err(&path, e))?;
            // Every record of the group waited for the whole group.
            raw.record_n(t0.elapsed(), GROUP);
            raw.ops += GROUP;
        }
        raw.elapsed = start.elapsed();
        raw.bytes = raw.ops * SIZE as u64;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = Report {
        name: "group",
        what: "128 B records, each durable: shardwal 64 concurrent appenders under \
               EveryAppend (append + wait_durable); raw: 64 writes then flush + fdatasync; \
               latency is append-to-durable per record"
            .into(),
        unit: "rec",
        rows: vec![sw, raw],
        ratios: Vec::new(),
    };
    r.ratio_ops("shardwal", "raw_bufwriter_sync_per_64");
    r.ratio_p50("shardwal", "raw_bufwriter_sync_per_64");
    Ok(r)
}
