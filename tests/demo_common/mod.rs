//! Shared by the tests that run `examples/streaming.rs`: the release build
//! of the example, built once if it is missing or older than the sources,
//! and the `shardwal` CLI.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let md = e.metadata().expect("stat");
        let t = if md.is_dir() {
            newest_mtime(&e.path())
        } else {
            md.modified().expect("mtime")
        };
        newest = newest.max(t);
    }
    newest
}

/// The release build of the example, built if missing or stale.
pub fn example() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release/examples/streaming");
    let sources = newest_mtime(&root.join("src"))
        .max(newest_mtime(&root.join("examples")))
        .max(
            std::fs::metadata(root.join("Cargo.toml"))
                .and_then(|m| m.modified())
                .expect("Cargo.toml"),
        );
    let fresh = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= sources);
    if !fresh {
        let st = Command::new(env!("CARGO"))
            .args(["build", "--release", "--example", "streaming"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(st.success(), "building the streaming example failed");
    }
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// Run the `shardwal` CLI: (exit status, stdout + stderr).
pub fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardwal"))
        .args(args)
        .output()
        .expect("run shardwal");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
