//! A clean shutdown loses nothing: `Runtime::shutdown` seals a final epoch
//! "so that what the engines appended survives". Engines that log input
//! continuously (as the README's example does, every 100 µs) keep
//! appending until they see `Shutdown`. After the restart, every data
//! record they appended must still be there.
//!
//! Five shutdown/restart rounds on one directory, two shards.

use crate::recovery_common;

use std::time::Duration;

use recovery_common::*;
use shardwal::{ControlEvent, RecordKind, Runtime};

const SHARDS: usize = 2;

#[test]
fn a_clean_shutdown_keeps_every_record_the_engines_appended() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut appended = [0u64; SHARDS];
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    for round in 0..5u32 {
        let (tx, rx) = crossbeam_channel::unbounded::<(u32, u64)>();
        let rt = Runtime::start(
            dir,
            runtime_config(SHARDS, small_shard(1 << 20)),
            move |ctx| {
                let tx = tx.clone();
                async move {
                    let s = ctx.shard().0;
                    let mut index = 0u64;
                    loop {
                        while let Some(ev) = ctx.poll_control() {
                            let ControlEvent::Barrier(req) = ev else {
                                let _ = tx.send((s, index));
                                return Ok(());
                            };
                            ctx.complete_barrier(req, None).await?;
                        }
                        let t = Tag {
                            generation: round,
                            shard: s,
                            epoch: ctx.log().epoch().0,
                            index,
                        };
                        ctx.log().append(&t.payload(64)).await?;
                        index += 1;
                        glommio::timer::sleep(Duration::from_micros(20)).await;
                    }
                }
            },
        )
        .expect("start");
        let cut: Vec<u64> = rt
            .recovery_report()
            .shards
            .iter()
            .map(|r| r.cut_records)
            .collect();
        if round > 0 {
            notes.push(format!("restart {round}: records cut per shard {cut:?}"));
        }
        let c = rt.coordinator();
        for _ in 0..3 {
            c.advance_epoch().unwrap().wait().unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        within(Duration::from_secs(30), "shutdown", move || rt.shutdown()).expect("shutdown");
        for (s, n) in rx.try_iter() {
            appended[s as usize] += n;
        }
    }
    // What the last round appended, after one more restart.
    let rt = Runtime::start(
        dir,
        shardwal::RuntimeConfig {
            auto_barriers: true,
            ..runtime_config(SHARDS, small_shard(1 << 20))
        },
        |ctx| async move {
            while !ctx.is_shutting_down() {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            Ok(())
        },
    )
    .expect("restart");
    let cut: Vec<u64> = rt
        .recovery_report()
        .shards
        .iter()
        .map(|r| r.cut_records)
        .collect();
    notes.push(format!("final restart: records cut per shard {cut:?}"));
    within(Duration::from_secs(30), "shutdown", move || rt.shutdown()).expect("shutdown");
    for s in 0..SHARDS as u32 {
        let data = read_shard(dir, s, 0)
            .iter()
            .filter(|r| r.kind == RecordKind::Data)
            .count() as u64;
        if data != appended[s as usize] {
            problems.push(format!(
                "shard {s}: the engines appended {} data records, {data} survived",
                appended[s as usize]
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n(each clean shutdown's `Close` record is cut too)\n{}",
        problems.join("\n"),
        notes.join("\n")
    );
}
