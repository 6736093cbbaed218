//! A log cut in the middle of its last data record (a torn tail): `verify`
//! reports a torn tail as a warning and exits 0; `dump` and `inspect` show
//! it; `recover --dry-run` predicts what recovery does (the torn bytes, the
//! unsealed epoch cut on every shard) without changing anything; `recover`
//! does exactly that, after which `verify` finds no torn tail.
//!
//! The log's segments grow as they are written (`SegmentPrepare::Create`),
//! so a short file is what a crash leaves. (A segment prepared to its size
//! and cut short is corruption: `tests/recovery/truncated_segment.rs`.)

use crate::cli_common;

use cli_common::*;
use shardwal::RecordKind;

#[test]
fn a_tail_cut_mid_record_is_a_torn_tail_that_recover_truncates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    // The shutdown's final epoch goes to the engines, which log their
    // epoch's records in it: the last data records are in that epoch.
    let sealed = generate_with(&dir, shardwal::SegmentPrepare::Create);
    let fr0 = frames(&dir, 0);
    let fr1 = frames(&dir, 1);

    // Cut shard 1's segment file in the middle of its last data record,
    // which belongs to the last sealed epoch: its barrier goes too.
    let victim = fr1
        .iter()
        .rev()
        .find(|f| f.kind == RecordKind::Data)
        .unwrap()
        .clone();
    assert_eq!(victim.epoch, sealed);
    let cut_at = payload_offset(&victim) + victim.payload_len as u64 / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim.path)
        .and_then(|f| f.set_len(cut_at))
        .expect("cut the segment");
    let name = victim.path.file_name().unwrap().to_str().unwrap();
    let before = fingerprint(&dir);

    // verify: a warning naming the tail, exit 0.
    let r = on("verify", &dir, &[]).expect(0, "verify");
    let hits = lines_with(
        &r.stdout,
        &[
            "WARNING: torn tail",
            "shard 1",
            name,
            &format!("offset {}", victim.offset),
        ],
    );
    assert_eq!(hits.len(), 1, "{}", r.stdout);
    assert!(!r.stdout.contains("CORRUPTION"), "{}", r.stdout);
    assert!(
        r.stdout.contains("verify: OK with 1 warning"),
        "{}",
        r.stdout
    );
    let r = on("verify", &dir, &["--json"]).expect(0, "verify --json");
    assert!(r.stdout.contains("\"ok\":true,\"status\":\"torn_tail\""));

    // inspect and dump see the same end.
    let r = on("inspect", &dir, &[]).expect(0, "inspect");
    assert!(
        r.stdout.contains(&format!("torn@{}", victim.offset)),
        "{}",
        r.stdout
    );
    // The smallest last barrier is now the epoch before.
    assert!(
        r.stdout.contains(&format!("sealed epoch {} ", sealed - 1)),
        "{}",
        r.stdout
    );
    let r = on("dump", &dir, &["--shard", "1", "--json"]).expect(0, "dump");
    let last = r.stdout.lines().last().unwrap();
    assert_eq!(json_u64(last, "seq"), Some(victim.seq - 1), "{last}");
    assert!(r.stderr.contains("torn tail"), "{}", r.stderr);

    // recover --dry-run: the plan.
    let dry = on("recover", &dir, &["--dry-run", "--json"]).expect(0, "dry run");
    let want_sealed = sealed - 1;
    assert_eq!(json_u64(&dry.stdout, "sealed_epoch"), Some(want_sealed));
    assert!(shard_u64(&dry.stdout, 1, "torn_bytes").unwrap() > 0);
    assert_eq!(shard_u64(&dry.stdout, 0, "torn_bytes"), Some(0));
    let unsealed = |fr: &[FrameAt], upto: u64| {
        fr.iter()
            .filter(|f| f.epoch > want_sealed && f.seq < upto)
            .count() as u64
    };
    assert_eq!(
        shard_u64(&dry.stdout, 0, "unsealed_records_cut"),
        Some(unsealed(&fr0, u64::MAX))
    );
    assert_eq!(
        shard_u64(&dry.stdout, 1, "unsealed_records_cut"),
        Some(unsealed(&fr1, victim.seq))
    );
    let r = on("recover", &dir, &["--dry-run"]).expect(0, "dry run text");
    assert!(
        lines_with(&r.stdout, &["torn tail", "shard 1", name, "would be cut"]).len() == 1,
        "{}",
        r.stdout
    );
    assert_eq!(
        before,
        fingerprint(&dir),
        "a read-only command changed the log"
    );

    // recover: does what the dry run said.
    let done = on("recover", &dir, &["--json"]).expect(0, "recover");
    assert_eq!(json_u64(&done.stdout, "sealed_epoch"), Some(want_sealed));
    for s in 0..2 {
        for key in [
            "records",
            "segments",
            "epochs",
            "torn_bytes",
            "unsealed_records_cut",
            "removed_segments",
            "next_seq",
            "next_epoch",
        ] {
            assert_eq!(
                shard_u64(&done.stdout, s, key),
                shard_u64(&dry.stdout, s, key),
                "shard {s} {key}: dry run {} vs recovery {}",
                dry.stdout,
                done.stdout
            );
        }
    }

    // Afterwards: no torn tail, and the shutdown sealed one more epoch.
    let r = on("verify", &dir, &[]).expect(0, "verify after recover");
    assert!(r.stdout.contains("verify: OK\n"), "{}", r.stdout);
    assert!(!r.stdout.contains("torn"), "{}", r.stdout);
    let j = on("inspect", &dir, &["--json"]).expect(0, "inspect after recover");
    assert_eq!(json_u64(&j.stdout, "sealed_epoch"), Some(want_sealed + 1));
    let r = on("recover", &dir, &["--dry-run", "--json"]).expect(0, "dry run again");
    assert_eq!(shard_u64(&r.stdout, 1, "torn_bytes"), Some(0));
}
