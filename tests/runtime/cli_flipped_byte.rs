//! A flipped byte in a record in the middle of a log (a record that later
//! records prove was durable): `verify` exits 1 with a line naming the
//! shard, the segment file and the frame's offset; `inspect`, `dump` and
//! `recover --dry-run` report the same corruption with exit status 1;
//! `recover` refuses it (exit 1) without touching the directory.

use crate::cli_common;

use std::os::unix::fs::FileExt;

use cli_common::*;
use shardwal::RecordKind;
use shardwal::checkpoint::manifest;
use shardwal::io::std_fs::StdStorage;

#[test]
fn a_flipped_byte_mid_log_is_corruption_named_by_file_and_offset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    generate(&dir);

    // A data record of shard 0 after the newest checkpoint's replay
    // position (so recovery reads it too), in a segment that is not the last.
    let log_id = futures_lite::future::block_on(shardwal::log_dir::load_or_init(&StdStorage, &dir))
        .expect("log id");
    let (m, _) = futures_lite::future::block_on(manifest::load_newest(&StdStorage, &dir, log_id))
        .expect("manifests");
    let replay_from = m.expect("a checkpoint").shards[0].replay_from;
    let fr = frames(&dir, 0);
    let last_seg = fr.last().unwrap().path.clone();
    let candidates: Vec<&FrameAt> = fr
        .iter()
        .filter(|f| f.seq > replay_from && f.kind == RecordKind::Data && f.path != last_seg)
        .collect();
    assert!(!candidates.is_empty(), "no record to damage");
    let victim = candidates[candidates.len() / 2].clone();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&victim.path)
        .expect("open segment");
    let at = payload_offset(&victim) + 3;
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at).expect("read");
    file.write_all_at(&[b[0] ^ 0x40], at).expect("flip");
    drop(file);
    let name = victim.path.file_name().unwrap().to_str().unwrap();
    let before = fingerprint(&dir);

    // verify: exit 1, one line with shard, file and offset.
    let r = on("verify", &dir, &[]).expect(1, "verify");
    let hits = lines_with(
        &r.stdout,
        &[
            "CORRUPTION",
            "shard 0",
            name,
            &format!("offset {}", victim.offset),
        ],
    );
    assert_eq!(hits.len(), 1, "{}", r.stdout);
    assert!(hits[0].contains("CRC mismatch"), "{}", hits[0]);
    assert!(r.stdout.contains("shard 1: clean"), "{}", r.stdout);
    assert!(r.stdout.contains("verify: FAILED"), "{}", r.stdout);
    let r = on("verify", &dir, &["--json"]).expect(1, "verify --json");
    assert!(r.stdout.contains("\"ok\":false,\"status\":\"corrupt\""));
    assert_eq!(json_u64(&r.stdout, "offset"), Some(victim.offset));

    // inspect shows it on the segment and exits 1.
    let r = on("inspect", &dir, &[]).expect(1, "inspect");
    assert!(
        r.stdout.contains(&format!("CORRUPT@{}", victim.offset)),
        "{}",
        r.stdout
    );

    // dump prints the records before it, then fails naming it.
    let r = on("dump", &dir, &["--shard", "0", "--json"]).expect(1, "dump");
    let last = r.stdout.lines().last().expect("records before the damage");
    assert_eq!(json_u64(last, "seq"), Some(victim.seq - 1), "{last}");
    assert!(
        r.stderr.contains(name) && r.stderr.contains(&format!("offset {}", victim.offset)),
        "{}",
        r.stderr
    );
    // ... but a dump that stops before it succeeds.
    let n = (victim.seq - fr[0].seq).to_string();
    on("dump", &dir, &["--shard", "0", "--limit", &n]).expect(0, "dump before");

    // recover refuses, dry run or not, and leaves everything as it was.
    let r = on("recover", &dir, &["--dry-run"]).expect(1, "recover --dry-run");
    assert!(
        r.stderr.contains(name) && r.stderr.contains(&format!("offset {}", victim.offset)),
        "{}",
        r.stderr
    );
    let r = on("recover", &dir, &[]).expect(1, "recover");
    assert!(r.stderr.contains("corruption"), "{}", r.stderr);
    assert_eq!(
        before,
        fingerprint(&dir),
        "a refused recovery changed the log"
    );
}
