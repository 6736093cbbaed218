//! The `recovery` test binary: one crate for the test files below, so that a
//! build compiles and links the code they share once instead of once
//! per file. Each file is a module named after what it tests; run one
//! with `cargo test --release --test recovery <module>::`.
//!
//! Which files stay test binaries of their own, and why: ARCHITECTURE.md,
//! `tests/`.

#[path = "../child_process/mod.rs"]
mod child_process;
#[path = "../common/mod.rs"]
mod common;
#[path = "../recovery_common/mod.rs"]
mod recovery_common;
#[path = "../runtime_common/mod.rs"]
mod runtime_common;

mod close_quiesces_io;
mod decoders_survive_arbitrary_bytes;
mod flipped_bits;
mod injected_faults;
mod kill_every_append;
mod lock_across_processes;
mod log_dir_concurrent_open;
mod metrics_shard;
mod open_replaying;
mod recovery_cut;
mod recovery_killed_midway;
mod recovery_lock;
mod recovery_log_shorter_than_checkpoint;
mod recovery_merged_order;
mod recovery_model;
mod recovery_readers_read_only;
mod recovery_refuses_symlinks;
mod recovery_repair;
mod recovery_replay;
mod recovery_reports_what_it_removes;
mod recovery_reshard;
mod recovery_shutdown;
mod recovery_stray_shard_dirs;
mod round_trip;
mod stale_bytes;
mod torn_tail;
mod truncated_segment;
