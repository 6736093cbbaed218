//! The demo crash test: `examples/streaming.rs` killed with SIGKILL at
//! random points (drawn from a seeded RNG across the length of a clean run),
//! then restarted on the same directory, always finishes with the
//! `state_hash` of a run that never crashed. Some directories are killed
//! twice or three times in a row before the final run.
//!
//! The example binary is the release build at
//! `target/release/examples/streaming` (CI runs `cargo test --release`,
//! which builds it); if it is missing or older than the sources, the test
//! builds it once with `cargo build --release --example streaming`.
//!
//! After the crashes, `shardwal verify` must find no corruption in the
//! directory (a kill leaves at most a torn tail), and on some directories
//! `shardwal recover` repairs the log before the demo restarts.

use crate::demo_common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shardwal::rng::SplitMix;

/// Events per source partition: a clean run takes under two seconds, most
/// of it processing (start-up takes a few hundred ms), with several
/// checkpoints, a segment roll and a truncation on each shard.
const RECORDS: &str = "200000";
const SEED: &str = "7";
/// Directories crashed (at least); with the repeated crashes below, 22
/// crash points.
const TRIALS: u64 = 14;

/// How one run ended.
enum End {
    Hash(u64),
    Killed,
}

fn run(bin: &Path, dir: &Path, crash_ms: Option<u64>) -> End {
    let mut cmd = Command::new(bin);
    cmd.arg("--dir")
        .arg(dir)
        .args(["--seed", SEED, "--records-per-core", RECORDS]);
    if let Some(ms) = crash_ms {
        cmd.args(["--crash-after-ms", &ms.to_string()]);
    }
    let out = cmd.output().expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.signal() == Some(libc::SIGKILL) {
        assert!(crash_ms.is_some(), "killed without --crash-after-ms");
        return End::Killed;
    }
    assert!(
        out.status.success(),
        "the demo failed ({:?}) on {}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("state_hash="))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("no state_hash line in:\n{stdout}"));
    End::Hash(hash)
}

#[test]
fn killed_at_random_points_the_demo_recovers_the_clean_state() {
    let bin = demo_common::example();
    let tmp = tempfile::tempdir().expect("tempdir");
    let t0 = Instant::now();
    // Durations of complete runs: crash points are drawn across the median
    // of them (the machine may be loaded; the estimate follows it).
    let mut spans: Vec<u64> = Vec::new();
    // Only runs on a fresh directory count: a restart does less work.
    let timed = |dir: &Path, crash: Option<u64>, spans: &mut Vec<u64>| {
        let fresh = !dir.exists();
        let t = Instant::now();
        let end = run(&bin, dir, crash);
        if let (End::Hash(_), true) = (&end, fresh) {
            spans.push(t.elapsed().as_millis() as u64);
        }
        end
    };
    let End::Hash(clean) = timed(&tmp.path().join("clean"), None, &mut spans) else {
        unreachable!()
    };
    // A second clean run: the hash does not depend on timing.
    let End::Hash(again) = timed(&tmp.path().join("clean2"), None, &mut spans) else {
        unreachable!()
    };
    assert_eq!(clean, again, "two clean runs disagree");

    let mut rng = SplitMix(0x5eed_c0de);
    let (mut crashes, mut kills, mut repeated, mut trial) = (0u64, 0u64, 0u64, 0u64);
    // At least TRIALS directories, 20 real kills and 3 directories killed
    // more than once; bounded in case runs end before their crash points.
    while (trial < TRIALS || kills < 20 || repeated < 3) && trial < 3 * TRIALS {
        let dir = tmp.path().join(format!("crash-{trial}"));
        // Some directories are killed twice or three times in a row.
        let times = if trial % 5 == 4 {
            3
        } else if trial % 3 == 1 {
            2
        } else {
            1
        };
        let mut points = Vec::new();
        let mut killed_here = 0;
        for _ in 0..times {
            let mut sorted = spans.clone();
            sorted.sort_unstable();
            let span = sorted[sorted.len() / 2];
            // From start-up to the end of a typical run.
            let ms = 5 + rng.below(span);
            points.push(ms);
            crashes += 1;
            match timed(&dir, Some(ms), &mut spans) {
                End::Killed => {
                    kills += 1;
                    killed_here += 1;
                }
                // The run finished before the kill: it must be right too.
                End::Hash(h) => assert_eq!(
                    h, clean,
                    "trial {trial}: a run that outlived its crash point {ms} ms differs"
                ),
            }
        }
        if killed_here > 1 {
            repeated += 1;
        }
        // A kill never leaves corruption: `shardwal verify` exits 0 (clean or
        // a torn tail). On some directories, `shardwal recover` repairs the
        // log before the demo restarts, which must not change the outcome.
        // A kill in the first milliseconds may come before the log existed:
        // `LOG_ID` is published whole or not at all, so a directory without
        // it holds no log, which `verify` must say (exit 2) and the restart
        // below must create.
        let (code, out) = demo_common::cli(&["verify", dir.to_str().unwrap()]);
        let created = dir.join("LOG_ID").exists();
        if created {
            assert_eq!(
                code, 0,
                "trial {trial}: verify after crashes at {points:?}:\n{out}"
            );
        } else {
            assert!(
                code == 2 && out.contains("not a shardwal log"),
                "trial {trial}: verify of a directory killed before its LOG_ID \
                 existed, after crashes at {points:?}:\n{out}"
            );
        }
        if created && trial % 4 == 2 {
            let (code, out) = demo_common::cli(&["recover", dir.to_str().unwrap()]);
            assert_eq!(code, 0, "trial {trial}: shardwal recover:\n{out}");
            let (code, out) = demo_common::cli(&["verify", dir.to_str().unwrap()]);
            assert!(
                code == 0 && out.contains("verify: OK\n"),
                "trial {trial}: verify after recover:\n{out}"
            );
        }
        match timed(&dir, None, &mut spans) {
            End::Hash(h) => assert_eq!(
                h, clean,
                "trial {trial}: after crashes at {points:?} ms the state differs: {h:016x} != {clean:016x}"
            ),
            End::Killed => unreachable!(),
        }
        let _ = std::fs::remove_dir_all(&dir);
        trial += 1;
    }
    eprintln!(
        "{trial} directories, {crashes} crash points, {kills} kills, {repeated} directories \
         killed more than once; complete runs on fresh directories {spans:?} ms; \
         whole test {:?}",
        t0.elapsed()
    );
    assert!(
        kills >= 20,
        "only {kills} of {crashes} crash points killed a run"
    );
    assert!(repeated >= 3, "too few repeated crashes: {repeated}");
    assert!(t0.elapsed() < Duration::from_secs(600));
}
