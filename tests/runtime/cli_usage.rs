//! The exit statuses outside corruption: a directory that is not a log is
//! refused with status 2 by every subcommand, and nothing is created in it
//! (no `LOG_ID`, no lock, no shard directory); bad arguments are status 2;
//! `--help` and `--version` succeed.

use crate::cli_common;

use cli_common::*;

#[test]
fn not_a_log_and_bad_arguments_exit_2_and_create_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), b"not a log").unwrap();
    let before = fingerprint(&empty);
    for (cmd, args) in [
        ("inspect", vec![]),
        ("dump", vec![]),
        ("verify", vec![]),
        ("recover", vec!["--dry-run"]),
        ("recover", vec![]),
    ] {
        let r = on(cmd, &empty, &args).expect(2, cmd);
        assert!(
            r.stderr.contains("not a shardwal log"),
            "{cmd}: {}",
            r.stderr
        );
        let r = on(cmd, &tmp.path().join("missing"), &args).expect(2, cmd);
        assert!(r.stderr.contains("not a directory"), "{cmd}: {}", r.stderr);
    }
    assert_eq!(
        before,
        fingerprint(&empty),
        "a refused command created files"
    );

    // A damaged LOG_ID is not a log either.
    std::fs::write(empty.join("LOG_ID"), [7u8; 4096]).unwrap();
    on("verify", &empty, &[]).expect(2, "verify with a bad LOG_ID");

    shardwal(&["frobnicate"]).expect(2, "unknown subcommand");
    shardwal(&["dump"]).expect(2, "missing DIR");
    shardwal(&["bench", "--workload", "nope"]).expect(2, "unknown workload");
    shardwal(&["bench", "--seconds", "0"]).expect(2, "zero seconds");
    let r = shardwal(&["--help"]).expect(0, "--help");
    for cmd in ["inspect", "dump", "verify", "recover", "bench"] {
        assert!(r.stdout.contains(cmd), "{}", r.stdout);
    }
    shardwal(&["--version"]).expect(0, "--version");
}
