//! Crash tests re-execute their own test binary as a child process that
//! runs one ignored test (the child body), so the parent can SIGKILL it.
//! This is the command that does it; callers add their environment and
//! stdio.

use std::process::Command;

/// A command running only the ignored test `test` of module `module` (the
/// caller's `module_path!()`) of this test binary, single-threaded, with
/// its output not captured.
pub fn child_test(module: &str, test: &str) -> Command {
    // The harness names a test by its path below the crate root.
    let module = module.split_once("::").map_or("", |(_, m)| m);
    let name = if module.is_empty() {
        test.to_string()
    } else {
        format!("{module}::{test}")
    };
    let mut c = Command::new(std::env::current_exe().expect("test binary"));
    c.args([
        name.as_str(),
        "--exact",
        "--nocapture",
        "--ignored",
        "--test-threads=1",
    ]);
    c
}
