//! The `runtime` test binary: one crate for the test files below, so that a
//! build compiles and links the code they share once instead of once
//! per file. Each file is a module named after what it tests; run one
//! with `cargo test --release --test runtime <module>::`.
//!
//! Which files stay test binaries of their own, and why: ARCHITECTURE.md,
//! `tests/`.

#[path = "../child_process/mod.rs"]
mod child_process;
#[path = "../cli_common/mod.rs"]
mod cli_common;
#[path = "../demo_common/mod.rs"]
mod demo_common;
#[path = "../recovery_common/mod.rs"]
mod recovery_common;
#[path = "../runtime_common/mod.rs"]
mod runtime_common;

mod cli_bench;
mod cli_clean;
mod cli_flipped_byte;
mod cli_torn_tail;
mod cli_usage;
mod demo_crash;
mod file_permissions;
mod metrics_runtime;
mod paths_stay_in_the_log_dir;
mod recovery_plan_agrees_with_runtime;
mod runtime_awaited_control;
mod runtime_checkpoints;
mod runtime_epochs;
mod runtime_kill;
mod runtime_lock;
mod runtime_no_call_hangs_on_a_dead_or_stuck_shard;
mod runtime_poison;
mod runtime_replay_offsets_are_exact;
mod runtime_replay_one_pass;
mod runtime_streamed_checkpoints;
mod runtime_truncation;
mod shard_writer_lock;
mod torture_kill_loop;
