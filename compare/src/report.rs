//! The human tables (comfy-table).

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};

use crate::device::Fio;
use crate::results::{Median, Ratio};
use crate::system::Role;
use crate::workload::WorkloadKind;

fn rate(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn us(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 1e3 {
        format!("{:.2} ms", v / 1e3)
    } else {
        format!("{v:.0} µs")
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().map(Cell::new));
    t
}

fn right(s: String) -> Cell {
    Cell::new(s).set_alignment(CellAlignment::Right)
}

/// The medians table: one row per workload and system.
pub fn medians_table(meds: &[Median], reps: usize) -> Table {
    let mut t = table(&[
        "workload",
        "system",
        "records/s",
        "MiB/s",
        "per thread rec/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "open",
        "reps ok",
    ]);
    for m in meds {
        let f = &m.figures;
        let name = match m.role {
            Role::DeviceLimit => format!("{} (device limit)", m.system),
            _ => m.system.clone(),
        };
        if m.reps_ok == 0 {
            let err = m.errors.first().cloned().unwrap_or_default();
            t.add_row(vec![
                Cell::new(m.workload.name()),
                Cell::new(name),
                Cell::new(format!("failed: {}", truncate(&err, 60))),
            ]);
            continue;
        }
        let lat = f.latency;
        // `open` appends one record: its time is the figure, not a rate.
        let rates = m.workload != WorkloadKind::Open;
        t.add_row(vec![
            Cell::new(m.workload.name()),
            Cell::new(name),
            right(if rates {
                rate(f.records_per_s)
            } else {
                String::new()
            }),
            right(if rates {
                format!("{:.1}", f.mib_per_s)
            } else {
                String::new()
            }),
            right(if rates {
                f.thread_records_per_s
                    .iter()
                    .map(|v| rate(*v))
                    .collect::<Vec<_>>()
                    .join(" / ")
            } else {
                String::new()
            }),
            right(lat.map_or("".into(), |l| us(l.p50_us))),
            right(lat.map_or("".into(), |l| us(l.p99_us))),
            right(lat.map_or("".into(), |l| us(l.p999_us))),
            right(lat.map_or("".into(), |l| us(l.max_us))),
            right(f.open_ms.map_or("".into(), |v| format!("{v:.2} ms"))),
            right(format!("{}/{reps}", m.reps_ok)),
        ]);
    }
    t
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// The ratios table.
pub fn ratios_table(ratios: &[Ratio]) -> Table {
    let mut t = table(&["workload", "ratio (medians, this run)", "value", "target"]);
    for r in ratios {
        let value = if r.what.ends_with("ms") {
            format!("{:.2} ms", r.value)
        } else {
            format!("{:.2}×", r.value)
        };
        t.add_row(vec![
            Cell::new(r.workload.name()),
            Cell::new(&r.what),
            right(value),
            Cell::new(&r.target),
        ]);
    }
    t
}

/// The fio calibration table (medians over repetitions).
pub fn fio_table(fio: &[Fio]) -> Table {
    let med = |f: &dyn Fn(&Fio) -> f64| {
        let mut v: Vec<f64> = fio.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let mut t = table(&["fio, same run (median of reps)", "value"]);
    t.add_row(vec![
        Cell::new("O_DIRECT sequential write, 1 MiB, QD 4"),
        right(format!("{:.0} MiB/s", med(&|f| f.seq_write_mib_s))),
    ]);
    t.add_row(vec![
        Cell::new("O_DIRECT sequential read, 1 MiB, QD 8"),
        right(format!("{:.0} MiB/s", med(&|f| f.seq_read_mib_s))),
    ]);
    t.add_row(vec![
        Cell::new("4 KiB O_DIRECT write + fdatasync, file already written"),
        right(format!(
            "{} ops/s, {}/op",
            rate(med(&|f| f.write_fdatasync_4k_ops_s)),
            us(med(&|f| f.write_fdatasync_4k_us))
        )),
    ]);
    t.add_row(vec![
        Cell::new("  fdatasync p50"),
        right(us(med(&|f| f.fdatasync_p50_us.unwrap_or(f64::NAN)))),
    ]);
    t
}

/// What each system's durable point does.
pub fn sync_table(notes: &[(&str, &str)]) -> Table {
    let mut t = table(&[
        "system",
        "what its durable point really does (checked in its source)",
    ]);
    t.set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(150);
    for (name, note) in notes {
        t.add_row(vec![Cell::new(name), Cell::new(note)]);
    }
    t
}
