//! Replay readers only read. A `ShardReader` or `MergedReader` opened on a
//! directory that holds no log (a mistyped path, an empty mount point)
//! fails with an error, and leaves the directory as it was: it must not
//! create a `LOG_ID` there (which would turn any directory into an empty
//! log with a fresh identity) nor anything else.

use std::path::Path;

use shardwal::{MergedReader, Seq, ShardId, ShardReader, StdStorage};

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn readers_on_a_directory_without_a_log_fail_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("notes.txt"), b"not a log").unwrap();
    let before = entries(dir);

    let shard =
        futures_lite::future::block_on(ShardReader::open(StdStorage, dir, ShardId(0), Seq(0)));
    let merged = futures_lite::future::block_on(MergedReader::open(
        StdStorage,
        dir,
        &[(Seq(0), Seq(u64::MAX)); 2],
    ));
    let after = entries(dir);
    assert_eq!(
        after, before,
        "opening readers changed a directory that holds no log"
    );
    assert!(
        shard.is_err(),
        "ShardReader::open succeeded on a directory without a log"
    );
    assert!(
        merged.is_err(),
        "MergedReader::open succeeded on a directory without a log"
    );
}
