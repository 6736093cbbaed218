//! Every `shardwal` subcommand on a clean log written by a 2-shard runtime
//! (60 epochs, checkpoints at 10, 20 and 30, several segments per shard):
//! `inspect`, `dump`, `verify` and `recover --dry-run` report it correctly
//! and change nothing on disk; `recover` then runs the real recovery.

use crate::cli_common;

use cli_common::*;

#[test]
fn every_subcommand_on_a_clean_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let sealed = generate(&dir);
    let before = fingerprint(&dir);
    let frames0 = frames(&dir, 0);
    let frames1 = frames(&dir, 1);
    assert!(segments(&dir, 0).len() >= 3, "want several segments");

    // inspect: shards, segments, sealed epoch, checkpoints.
    let r = on("inspect", &dir, &[]).expect(0, "inspect");
    assert!(
        r.stdout.contains(&format!("sealed epoch {sealed} ")),
        "{}",
        r.stdout
    );
    for s in 0..2u32 {
        assert!(r.stdout.contains(&format!("shard {s}  ")), "{}", r.stdout);
        for p in segments(&dir, s) {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            assert!(r.stdout.contains(&name), "segment {name} not listed");
        }
    }
    // keep_checkpoints = 2: checkpoints 2 and 3 remain.
    assert!(r.stdout.contains("newest valid: 3"), "{}", r.stdout);
    assert_eq!(lines_with(&r.stdout, &["status: clean"]).len(), 2);
    let j = on("inspect", &dir, &["--json"]).expect(0, "inspect --json");
    assert_eq!(json_u64(&j.stdout, "sealed_epoch"), Some(sealed));
    assert_eq!(json_u64(&j.stdout, "checkpoint"), Some(3));
    assert!(j.stdout.contains(&format!("\"records\":{}", frames0.len())));
    assert!(j.stdout.contains(&format!("\"records\":{}", frames1.len())));
    assert!(j.stdout.contains("\"epoch\":20") && j.stdout.contains("\"epoch\":30"));

    // dump: one shard from a seq, with a limit.
    let mid = &frames0[frames0.len() / 2];
    let r = on(
        "dump",
        &dir,
        &[
            "--shard",
            "0",
            "--from",
            &mid.seq.to_string(),
            "--limit",
            "50",
        ],
    )
    .expect(0, "dump");
    let recs: Vec<&str> = r.stdout.lines().skip(1).collect();
    assert_eq!(recs.len(), 50, "{}", r.stdout);
    assert!(
        recs[0].starts_with(&format!("0/{}/{} ", mid.epoch, mid.seq)),
        "{}",
        recs[0]
    );
    // Text payloads as text, binary ones as hex, control records decoded.
    assert!(
        lines_with(&r.stdout, &[" data ", "\"shard 0 epoch ", " record "]).len() >= 20,
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("0x00ff0180"), "{}", r.stdout);
    assert!(r.stdout.contains("commit of epoch"), "{}", r.stdout);
    assert!(r.stdout.contains("end of epoch"), "{}", r.stdout);
    // JSON: every record of shard 1, in order.
    let r = on("dump", &dir, &["--shard", "1", "--json"]).expect(0, "dump --json");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), frames1.len());
    for (l, f) in lines.iter().zip(&frames1) {
        assert_eq!(json_u64(l, "seq"), Some(f.seq), "{l}");
        assert_eq!(json_u64(l, "epoch"), Some(f.epoch), "{l}");
        assert_eq!(json_u64(l, "offset"), Some(f.offset), "{l}");
    }
    // All shards, limit across them.
    let r = on("dump", &dir, &["--limit", "7"]).expect(0, "dump --limit");
    assert_eq!(r.stdout.lines().count(), 8);
    on("dump", &dir, &["--shard", "9"]).expect(2, "dump of a missing shard");

    // verify: clean.
    let r = on("verify", &dir, &[]).expect(0, "verify");
    assert!(r.stdout.contains("verify: OK\n"), "{}", r.stdout);
    assert!(!r.stdout.contains("WARNING"), "{}", r.stdout);
    let r = on("verify", &dir, &["--json"]).expect(0, "verify --json");
    assert!(r.stdout.contains("\"ok\":true,\"status\":\"clean\""));

    // recover --dry-run: the plan a restart would follow.
    let r = on("recover", &dir, &["--dry-run"]).expect(0, "recover --dry-run");
    assert!(r.stdout.contains("dry run"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("sealed epoch  {sealed}:")),
        "{}",
        r.stdout
    );
    let r = on("recover", &dir, &["--dry-run", "--json"]).expect(0, "dry run json");
    assert_eq!(json_u64(&r.stdout, "sealed_epoch"), Some(sealed));
    assert_eq!(json_u64(&r.stdout, "checkpoint"), Some(3));
    assert!(!r.stdout.contains("\"torn_bytes\":1"), "{}", r.stdout);
    // Only the close records (in the unsealed epoch after the last barrier) are cut.
    assert_eq!(
        r.stdout.matches("\"unsealed_records_cut\":1,").count(),
        2,
        "{}",
        r.stdout
    );

    // None of the above changed a byte, a name or an mtime.
    assert_eq!(
        before,
        fingerprint(&dir),
        "a read-only command changed the log"
    );

    // recover: the real thing, then the log is still clean and one epoch later.
    let r = on("recover", &dir, &[]).expect(0, "recover");
    assert!(r.stdout.contains("recovered"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("sealed through epoch {}", sealed + 1)),
        "{}",
        r.stdout
    );
    on("verify", &dir, &[]).expect(0, "verify after recover");
    let j = on("inspect", &dir, &["--json"]).expect(0, "inspect after recover");
    assert_eq!(json_u64(&j.stdout, "sealed_epoch"), Some(sealed + 1));
}
