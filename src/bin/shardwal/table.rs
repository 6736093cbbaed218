//! Plain-text tables and human-readable units for the default (non-JSON)
//! output. Columns are padded to their widest cell; numeric-looking columns
//! are right-aligned.

use std::fmt::Write;
use std::time::Duration;

/// A table: a header row and data rows of the same width.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    /// A table with these column titles. A title starting with `>` is
    /// right-aligned (the `>` is not printed).
    pub fn new(cols: &[&str]) -> Table {
        Table {
            header: cols
                .iter()
                .map(|c| c.strip_prefix('>').unwrap_or(c).to_string())
                .collect(),
            right: cols.iter().map(|c| c.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row (missing cells are blank, extra cells are dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// True if no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, each line prefixed with `indent`.
    pub fn render(&self, indent: &str) -> String {
        let n = self.header.len();
        let mut w = vec![0usize; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::from(indent);
            for (i, c) in r.iter().enumerate() {
                let pad = w[i] - c.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    if i + 1 < n {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// Bytes in binary units: `512 B`, `4.0 KiB`, `1.25 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// A duration with a unit suited to its size: `850 ns`, `12.3 µs`, `4.56 ms`, `1.20 s`.
pub fn duration(d: Duration) -> String {
    nanos(d.as_nanos() as f64)
}

/// Nanoseconds with a unit suited to their size.
pub fn nanos(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A rate with an SI prefix: `812`, `6.01 k`, `3.93 M`.
pub fn rate(per_sec: f64) -> String {
    if per_sec >= 1e9 {
        format!("{:.2} G", per_sec / 1e9)
    } else if per_sec >= 1e6 {
        format!("{:.2} M", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.2} k", per_sec / 1e3)
    } else {
        format!("{per_sec:.1}")
    }
}

/// An inclusive range `a..=b` as `a..b`, or `-` when empty.
pub fn range(r: Option<(u64, u64)>) -> String {
    match r {
        Some((a, b)) if a == b => a.to_string(),
        Some((a, b)) => format!("{a}..{b}"),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&["name", ">n"]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["long".into(), "100".into()]);
        assert_eq!(t.render(""), "name    n\na       1\nlong  100\n");
    }

    #[test]
    fn units() {
        assert_eq!(bytes(100), "100 B");
        assert_eq!(bytes(4096), "4.00 KiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(nanos(1500.0), "1.5 µs");
        assert_eq!(range(Some((3, 9))), "3..9");
    }
}
