//! `shardwal bench` runs every workload end to end (briefly) and prints one
//! JSON object per workload with throughput and latency percentiles for
//! shardwal and its raw baselines, and their ratios; the human table names
//! the same systems. Its scratch files are removed afterwards.

use crate::cli_common;

use cli_common::*;

#[test]
fn bench_runs_every_workload_and_reports_each_system() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().to_str().unwrap();
    let r = shardwal(&[
        "bench",
        "--json",
        "--seconds",
        "0.2",
        "--recover-mib",
        "8",
        "--dir",
        d,
    ])
    .expect(0, "bench --json");
    let lines: Vec<&str> = r.stdout.lines().collect();
    let expect = [
        (
            "buffered",
            &[
                "shardwal",
                "raw_bufwriter",
                "raw_direct_write",
                "raw_direct_read",
            ][..],
        ),
        ("group", &["shardwal", "raw_bufwriter_sync_per_64"][..]),
        ("sync", &["shardwal", "raw_write_fdatasync"][..]),
        (
            "large",
            &[
                "shardwal",
                "raw_bufwriter",
                "raw_direct_write",
                "raw_direct_read",
            ][..],
        ),
        ("recover", &["shardwal_open", "raw_direct_read"][..]),
        (
            "epoch",
            &[
                "shardwal_seal_2_shards",
                "raw_4k_fdatasync_prefilled",
                "raw_4k_fdatasync_append",
            ][..],
        ),
    ];
    assert_eq!(lines.len(), expect.len(), "{}", r.stdout);
    for (line, (name, systems)) in lines.iter().zip(expect) {
        assert!(
            line.starts_with(&format!("{{\"workload\":\"{name}\"")),
            "{line}"
        );
        for s in systems {
            assert!(
                line.contains(&format!("{{\"system\":\"{s}\"")),
                "{name}: {line}"
            );
        }
        for key in [
            "\"ops_per_sec\":",
            "\"p50_us\":",
            "\"p99_us\":",
            "\"p999_us\":",
            "\"ratios\":{\"",
        ] {
            assert_eq!(
                line.matches(key).count(),
                if key.starts_with("\"ratios") {
                    1
                } else {
                    systems.len()
                },
                "{name} {key}: {line}"
            );
        }
        // Every system did some work.
        assert!(!line.contains("\"ops\":0,"), "{line}");
    }
    // Scratch files are gone.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    // The table form of one workload.
    let r = shardwal(&[
        "bench",
        "--workload",
        "sync",
        "--seconds",
        "0.1",
        "--dir",
        d,
    ])
    .expect(0, "bench sync");
    assert!(r.stdout.contains("== sync:"), "{}", r.stdout);
    assert!(r.stdout.contains("raw_write_fdatasync"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("ratio shardwal / raw_write_fdatasync p50 latency")
    );
}
