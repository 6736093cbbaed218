//! Kill test: a child process appends under `FsyncPolicy::EveryAppend`
//! with 64 concurrent appender tasks on the production Direct I/O backend
//! and prints each record's sequence number once `wait_durable` resolved.
//! The parent kills it with SIGKILL at a random moment, reopens the log and
//! checks that every record the child reported durable is there with its
//! payload, and that no record was invented: every recovered record is one
//! that was appended (its payload is the one derived from its sequence
//! number, and its sequence number was handed out). Five kills in a row on
//! the same log, with the parent appending in between.
//!
//! The child is this same test binary, re-executed with
//! `--exact child_appender --ignored` and the log directory in
//! `SHARDWAL_KILL_CHILD_DIR` (the sled crash-test pattern).

use crate::child_process;
use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{payload, run};
use shardwal::rng::SplitMix;
use shardwal::{
    DmaStorage, Error, FsyncPolicy, RecordKind, Seq, ShardConfig, ShardId, ShardLog, ShardReader,
};

const DIR_VAR: &str = "SHARDWAL_KILL_CHILD_DIR";
const TAG: u64 = 0x6B111;
const MAX_LEN: usize = 200;
const APPENDERS: usize = 64;
const KILLS: usize = 5;

fn config() -> ShardConfig {
    ShardConfig {
        // Small segments so that rolls happen while the child runs.
        segment_size: 1 << 20,
        buffer_size: 128 << 10,
        max_record_size: 64 << 10,
        fsync: FsyncPolicy::EveryAppend,
        ..ShardConfig::default()
    }
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("write to the parent");
    out.flush().expect("flush to the parent");
}

/// The child: append forever from 64 tasks, printing `a <seq>` when a
/// record is appended (before the task can yield, so before the record can
/// reach the disk) and `d <seq>` when it is durable. Exits on its own after
/// a while in case the parent is gone.
#[test]
#[ignore = "run by kill_every_append_child_and_recover in a child process"]
fn child_appender() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    run("kill-child", move || async move {
        let log = ShardLog::open(DmaStorage, &dir, ShardId(0), config())
            .await
            .expect("child: open");
        // On a line of its own: libtest has printed "test child_appender ... ".
        say(format_args!("\nready {}", log.next_seq().0));
        let deadline = Instant::now() + Duration::from_secs(30);
        let tasks: Vec<_> = (0..APPENDERS)
            .map(|_| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    while Instant::now() < deadline {
                        // The payload is derived from the seq the record
                        // gets: read it and append with no await between.
                        let seq = log.next_seq().0;
                        let lsn = match log.try_append(&payload(TAG, seq, MAX_LEN)) {
                            Ok(lsn) => lsn,
                            Err(Error::Backpressure) => {
                                glommio::timer::sleep(Duration::from_micros(100)).await;
                                continue;
                            }
                            Err(e) => panic!("child: append: {e}"),
                        };
                        assert_eq!(lsn.seq.0, seq);
                        say(format_args!("a {seq}"));
                        log.wait_durable(lsn).await.expect("child: wait_durable");
                        say(format_args!("d {seq}"));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    });
}

/// What one child run reported.
#[derive(Default)]
struct Reported {
    appended_max: Option<u64>,
    durable: Vec<u64>,
    first_seq: Option<u64>,
}

/// Spawn the child on `dir`, let it run until it has reported a durable
/// record plus a random 50–500 ms, and SIGKILL it.
fn run_and_kill_child(dir: &Path, rng: &mut SplitMix) -> Reported {
    let mut child: Child = child_process::child_test(module_path!(), "child_appender")
        .env(DIR_VAR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (first_durable_tx, first_durable_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut rep = Reported::default();
        let mut told = false;
        for line in BufReader::new(stdout).lines() {
            // A line cut by the kill fails to parse and is ignored: its
            // record was not reported.
            let Ok(line) = line else { break };
            let mut parts = line.split(' ');
            let (Some(tag), Some(n), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match tag {
                "ready" => rep.first_seq = Some(n),
                "a" => rep.appended_max = rep.appended_max.max(Some(n)),
                "d" => {
                    rep.durable.push(n);
                    if !told {
                        told = true;
                        let _ = first_durable_tx.send(());
                    }
                }
                _ => {}
            }
        }
        rep
    });
    if first_durable_rx
        .recv_timeout(Duration::from_secs(60))
        .is_err()
    {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child reported no durable record within 60 s");
    }
    std::thread::sleep(Duration::from_millis(50 + rng.below(451)));
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    assert!(
        !status.success(),
        "the child was killed, not finished: {status}"
    );
    reader.join().expect("reader thread")
}

/// Reopen the log, check it against what was reported, append `extra`
/// records and close. Returns the next sequence number.
fn recover_and_check(dir: &Path, durable_max: Option<u64>, appended_max: u64, extra: u64) -> u64 {
    let dir = dir.to_path_buf();
    run("kill-parent", move || async move {
        let log = ShardLog::open(DmaStorage, &dir, ShardId(0), config())
            .await
            .unwrap_or_else(|e| panic!("recovery after SIGKILL failed: {e}"));
        let next = log.next_seq().0;
        if let Some(d) = durable_max {
            assert!(
                next > d,
                "record {d} was reported durable, the log ends before it at {next}"
            );
        }
        assert!(
            next <= appended_max + 1,
            "the log holds seq {} but seq {appended_max} was the last one appended",
            next - 1
        );
        let mut reader = ShardReader::open(DmaStorage, &dir, ShardId(0), Seq(0))
            .await
            .expect("reader");
        let mut expect = 0;
        while let Some(r) = reader.next().await.expect("read") {
            assert_eq!(r.lsn.seq.0, expect, "records are dense");
            match r.kind {
                RecordKind::Data => assert_eq!(
                    r.payload,
                    &payload(TAG, expect, MAX_LEN)[..],
                    "seq {expect} holds the payload it was appended with"
                ),
                RecordKind::Close => assert!(r.payload.is_empty()),
                k => panic!("unexpected record kind {k:?}"),
            }
            expect += 1;
        }
        assert_eq!(expect, next, "the reader sees what recovery found");
        for seq in next..next + extra {
            let lsn = log
                .append(&payload(TAG, seq, MAX_LEN))
                .await
                .expect("append");
            assert_eq!(lsn.seq.0, seq);
        }
        log.close().await.expect("close");
        log_next(next, extra)
    })
}

/// After `extra` appends and a close record (if anything was appended).
fn log_next(next: u64, extra: u64) -> u64 {
    if extra > 0 { next + extra + 1 } else { next }
}

#[test]
fn kill_every_append_child_and_recover() {
    let seed = common::test_seed("kill_every_append_child_and_recover");
    let mut rng = SplitMix(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let mut next = 0;
    let mut durable_total = 0;
    for kill in 0..KILLS {
        let rep = run_and_kill_child(&dir, &mut rng);
        assert_eq!(
            rep.first_seq,
            Some(next),
            "kill {kill}: the child continued the log"
        );
        let appended_max = rep.appended_max.expect("the child appended");
        let durable_max = rep.durable.iter().copied().max();
        assert!(
            rep.durable.iter().all(|&d| d >= next && d <= appended_max),
            "kill {kill}: durable reports are within what was appended"
        );
        durable_total += rep.durable.len();
        let extra = 1 + rng.below(100);
        next = recover_and_check(&dir, durable_max, appended_max, extra);
    }
    assert!(
        durable_total >= KILLS * APPENDERS,
        "{durable_total} durable records reported"
    );
    eprintln!("{KILLS} kills, {durable_total} records reported durable, log ends at {next}");
}
