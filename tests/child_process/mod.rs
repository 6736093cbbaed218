//! Crash tests re-execute their own test binary as a child process that
//! runs one ignored test (the child body), so the parent can SIGKILL it.
//! This is the command that does it; callers add their environment and
//! stdio.

use std::process::Command;

/// A command running only the ignored test `test` of this test binary,
/// single-threaded, with its output not captured.
pub fn child_test(test: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("test binary"));
    c.args([
        test,
        "--exact",
        "--nocapture",
        "--ignored",
        "--test-threads=1",
    ]);
    c
}
