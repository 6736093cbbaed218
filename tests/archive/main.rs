//! The `archive` test binary: one crate for the test files below, so that a
//! build compiles and links the code they share once instead of once
//! per file. Each file is a module named after what it tests; run one
//! with `cargo test --release --test archive <module>::`.
//!
//! Four test files stay binaries of their own: `hot_path_alloc` (it installs
//! a global allocator), `faults_at_every_io` (its panic hook counts every
//! panic of the process), and `crash_states` and `corruption_matrix` (each
//! starts thousands of runtimes, and glommio 0.9 leaks an eventfd per
//! executor that ends: together with the others they would exhaust the
//! process's file descriptors).

#[path = "../common/mod.rs"]
mod common;
#[path = "../demo_common/mod.rs"]
mod demo_common;
#[path = "../runtime_common/mod.rs"]
mod runtime_common;

mod archive_restore;
mod demo_archive;
mod object_store_backends;
