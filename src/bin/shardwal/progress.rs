//! A progress line on stderr for long scans: drawn only when stderr is a
//! terminal, at most ten times a second, and erased when done, so it never
//! reaches a pipe or a test's captured output.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress over a known number of bytes.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    enabled: bool,
    last: Option<Instant>,
    started: Instant,
}

impl Progress {
    /// A progress line for `total` bytes; silent unless stderr is a terminal
    /// and `enabled` is set.
    pub fn new(label: &str, total: u64, enabled: bool) -> Progress {
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            enabled: enabled && std::io::stderr().is_terminal(),
            last: None,
            started: Instant::now(),
        }
    }

    /// A progress line that never draws.
    pub fn hidden() -> Progress {
        Progress::new("", 0, false)
    }

    /// Account for `n` more bytes.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if !self.enabled || self.started.elapsed() < Duration::from_millis(300) {
            return;
        }
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        let width = 30u64;
        let filled = (self.done.min(self.total) * width)
            .checked_div(self.total)
            .unwrap_or(width) as usize;
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r{} [{}{}] {} / {}  {}/s ",
            self.label,
            "#".repeat(filled),
            " ".repeat(width as usize - filled),
            crate::table::bytes(self.done),
            crate::table::bytes(self.total),
            crate::table::bytes((self.done as f64 / secs) as u64),
        );
        let _ = std::io::stderr().flush();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.last.is_some() {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}
