//! One process (one runtime) owns a log directory at a time: a second
//! `Runtime::start` on a directory in use fails with `Error::Locked` and
//! leaves the running runtime undisturbed; once the first shuts down, the
//! directory can be opened again.

use crate::runtime_common;

use std::time::Duration;

use runtime_common::*;
use shardwal::{Epoch, Error, Runtime, RuntimeConfig};

fn auto_config() -> RuntimeConfig {
    RuntimeConfig {
        auto_barriers: true,
        ..runtime_config(2, small_shard())
    }
}

fn start(dir: &std::path::Path) -> shardwal::Result<Runtime> {
    Runtime::start(dir, auto_config(), |ctx| async move {
        while !ctx.is_shutting_down() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    })
}

#[test]
fn a_second_runtime_on_a_locked_directory_gets_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path()).expect("first runtime");
    let c = first.coordinator();
    assert_eq!(c.advance_epoch().unwrap().wait().unwrap(), Epoch(1));

    for _ in 0..2 {
        match start(dir.path()) {
            Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
            Err(e) => panic!("expected Error::Locked, got {e}"),
            Ok(_) => panic!("a second runtime started on a locked directory"),
        }
    }
    // The refused start did not disturb the first runtime.
    assert_eq!(c.advance_epoch().unwrap().wait().unwrap(), Epoch(2));
    within(Duration::from_secs(60), "shutdown", move || {
        first.shutdown()
    })
    .expect("shutdown");

    // Released on shutdown: the directory opens again, with its epochs.
    let again = start(dir.path()).expect("restart after the lock is released");
    assert!(again.coordinator().sealed_epoch() >= Epoch(2));
    within(Duration::from_secs(60), "shutdown", move || {
        again.shutdown()
    })
    .expect("shutdown");
}
