//! The progress bar of long scans, drawn by indicatif on stderr: only when
//! stderr is a terminal (otherwise the bar is hidden and draws nothing, so
//! it never reaches a pipe or a test's captured output), at most ten times
//! a second, and cleared when dropped.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// Bytes accounted locally before they are handed to the bar, so the scan's
/// per-frame callback does not pay for indicatif's clock on every frame.
const BATCH: u64 = 1 << 20;

/// Progress over a known number of bytes.
pub struct Progress {
    bar: ProgressBar,
    pending: u64,
}

impl Progress {
    /// A bar labelled `label` for `total` bytes; hidden unless `enabled`
    /// is set and stderr is a terminal.
    pub fn new(label: &'static str, total: u64, enabled: bool) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {binary_bytes} / {binary_total_bytes}  {binary_bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("## ");
        let bar =
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10))
                .with_style(style)
                .with_message(label)
                .with_finish(ProgressFinish::AndClear);
        Progress { bar, pending: 0 }
    }

    /// A bar that never draws.
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            pending: 0,
        }
    }

    /// Account for `n` more bytes.
    pub fn add(&mut self, n: u64) {
        self.pending += n;
        if self.pending >= BATCH {
            self.bar.inc(self.pending);
            self.pending = 0;
        }
    }

    /// Set the bytes done to `done` (e.g. at the end of a shard's files,
    /// whatever part of them held frames).
    pub fn set(&mut self, done: u64) {
        self.pending = 0;
        self.bar.set_position(done);
    }

    /// The bytes done so far.
    pub fn done(&self) -> u64 {
        self.bar.position() + self.pending
    }
}
