//! The `archive` test binary: one crate for the test files below, so that a
//! build compiles and links the code they share once instead of once
//! per file. Each file is a module named after what it tests; run one
//! with `cargo test --release --test archive <module>::`.
//!
//! Which files stay test binaries of their own, and why: ARCHITECTURE.md,
//! `tests/`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../demo_common/mod.rs"]
mod demo_common;
#[path = "../runtime_common/mod.rs"]
mod runtime_common;

mod archive_restore;
mod demo_archive;
mod object_store_backends;
