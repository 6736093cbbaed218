//! Symbolic links never lead a log out of its directory: a shard directory
//! that is a symlink (to another log's shard, say) and a segment file that
//! is a symlink are refused, and the other log is left untouched.

use crate::runtime_common;

use std::path::Path;

use runtime_common::*;
use shardwal::segment::shard_dir;
use shardwal::{Runtime, ShardId};

fn write_log(dir: &Path) {
    let rt = Runtime::start(dir, runtime_config(2, small_shard()), |ctx| async move {
        ctx.log().append(b"a record").await?;
        Ok(())
    })
    .expect("start");
    rt.coordinator()
        .advance_epoch()
        .and_then(|t| t.wait())
        .expect("epoch");
    rt.shutdown().expect("shutdown");
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for e in walk(dir) {
        if e.file_name().is_some_and(|n| n != "LOCK") {
            v.push((e.display().to_string(), std::fs::read(&e).unwrap()));
        }
    }
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_symlinked_shard_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    write_log(&ours);
    write_log(&theirs);
    let before = tree(&theirs);
    let victim = shard_dir(&ours, ShardId(1));
    std::fs::remove_dir_all(&victim).unwrap();
    std::os::unix::fs::symlink(shard_dir(&theirs, ShardId(1)), &victim).unwrap();
    let r = Runtime::start(&ours, runtime_config(2, small_shard()), |_| async {
        Ok(())
    });
    let e = r.err().expect("a symlinked shard directory is refused");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(before, tree(&theirs), "the other log changed");
}

#[test]
fn a_symlinked_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    write_log(&ours);
    write_log(&theirs);
    let before = tree(&theirs);
    let seg = segments(&ours, 0)[0].path.clone();
    let target = segments(&theirs, 0)[0].path.clone();
    std::fs::remove_file(&seg).unwrap();
    std::os::unix::fs::symlink(&target, &seg).unwrap();
    let r = Runtime::start(&ours, runtime_config(2, small_shard()), |_| async {
        Ok(())
    });
    assert!(r.is_err(), "a symlinked segment is refused");
    assert_eq!(before, tree(&theirs), "the other log changed");
}
