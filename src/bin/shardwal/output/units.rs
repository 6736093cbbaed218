//! Human-readable units for the default (non-JSON) output.

use std::time::Duration;

/// Bytes in binary units: `512 B`, `4.00 KiB`, `64.0 MiB`, `100 GiB`.
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

/// A rate with an SI prefix: `812.0`, `6.01 k`, `3.93 M`.
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

/// An inclusive range `a..=b` as `a..b` (or `a` when `a == b`), or `-` when empty.
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
    fn units() {
        assert_eq!(bytes(100), "100 B");
        assert_eq!(bytes(4096), "4.00 KiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(nanos(1500.0), "1.5 µs");
        assert_eq!(rate(6010.0), "6.01 k");
        assert_eq!(range(Some((3, 9))), "3..9");
        assert_eq!(range(Some((4, 4))), "4");
        assert_eq!(range(None), "-");
    }
}
