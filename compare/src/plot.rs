//! SVG plots (plotters): throughput per workload as one bar per system,
//! and latency CDFs of the durable points for `group` and `sync`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::results::Median;
use crate::system::Role;
use crate::workload::WorkloadKind;

type PlotResult<T> = Result<T, String>;
/// One CDF line: system name, role, `(latency µs, fraction)` points.
type Series<'a> = (&'a String, Role, Vec<(f64, f64)>);

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("plot: {e:?}")
}

fn color(role: Role, i: usize) -> RGBColor {
    match role {
        Role::Subject => RGBColor(0xd6, 0x27, 0x28),
        Role::Raw => RGBColor(0x55, 0x55, 0x55),
        Role::DeviceLimit => RGBColor(0x99, 0x99, 0x99),
        Role::Peer => {
            const PEERS: [RGBColor; 5] = [
                RGBColor(0x1f, 0x77, 0xb4),
                RGBColor(0x2c, 0xa0, 0x2c),
                RGBColor(0xff, 0x7f, 0x0e),
                RGBColor(0x94, 0x67, 0xbd),
                RGBColor(0x8c, 0x56, 0x4b),
            ];
            PEERS[i % PEERS.len()]
        }
    }
}

/// One bar chart per workload: `throughput-<workload>.svg`.
pub fn throughput(dir: &Path, meds: &[Median], reps: usize) -> PlotResult<Vec<PathBuf>> {
    let mut files = Vec::new();
    for w in WorkloadKind::ALL {
        let rows: Vec<&Median> = meds
            .iter()
            .filter(|m| m.workload == w && m.reps_ok > 0)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let (unit, value): (&str, fn(&Median) -> f64) = match w {
            WorkloadKind::Large => ("payload MiB/s", |m| m.figures.mib_per_s),
            WorkloadKind::Open => ("ms to first append (lower is better)", |m| {
                m.figures.open_ms.unwrap_or(0.0)
            }),
            _ => ("records/s (2 threads)", |m| m.figures.records_per_s),
        };
        let path = dir.join(format!("throughput-{}.svg", w.name()));
        let values: Vec<f64> = rows.iter().map(|m| value(m)).collect();
        let ymax = values.iter().copied().fold(0.0, f64::max).max(1e-9) * 1.15;
        let names: Vec<String> = rows.iter().map(|m| m.system.clone()).collect();
        {
            let root = SVGBackend::new(&path, (900, 480)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!("{} — median of {reps} interleaved reps", w.name()),
                    ("sans-serif", 20),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(80)
                // A segmented 0..n has n + 1 segments: one per bar is 0..n-1.
                .build_cartesian_2d((0..rows.len() - 1).into_segmented(), 0f64..ymax)
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_desc(unit)
                .y_label_formatter(&|v| short(*v))
                .x_label_formatter(&|x| match x {
                    SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                    _ => String::new(),
                })
                .draw()
                .map_err(err)?;
            let mut peer = 0;
            chart
                .draw_series(rows.iter().zip(&values).enumerate().map(|(i, (m, v))| {
                    let c = color(m.role, peer);
                    if m.role == Role::Peer {
                        peer += 1;
                    }
                    let mut bar = Rectangle::new(
                        [
                            (SegmentValue::Exact(i), 0.0),
                            (SegmentValue::Exact(i + 1), *v),
                        ],
                        c.filled(),
                    );
                    bar.set_margin(0, 0, 12, 12);
                    bar
                }))
                .map_err(err)?;
            chart
                .draw_series(values.iter().enumerate().map(|(i, v)| {
                    Text::new(
                        short(*v),
                        (SegmentValue::CenterOf(i), *v + ymax * 0.01),
                        ("sans-serif", 14).into_font().color(&BLACK).pos(
                            plotters::style::text_anchor::Pos::new(
                                plotters::style::text_anchor::HPos::Center,
                                plotters::style::text_anchor::VPos::Bottom,
                            ),
                        ),
                    )
                }))
                .map_err(err)?;
            root.present().map_err(err)?;
        }
        files.push(path);
    }
    Ok(files)
}

/// A compact number: 1.23 M, 456 k, 7.8.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0} k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// `(latency in µs, fraction of durable points at or below it)` of `h`.
fn cdf(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = h.len().max(1) as f64;
    let mut seen = 0u64;
    h.iter_recorded()
        .map(|v| {
            seen += v.count_at_value();
            (v.value_iterated_to() as f64 / 1e3, seen as f64 / total)
        })
        .collect()
}

/// Latency CDFs: `latency-cdf-<workload>.svg`, one line per system, over
/// the durable points of every repetition.
pub fn latency_cdfs(
    dir: &Path,
    hists: &BTreeMap<(WorkloadKind, String), (Role, Histogram<u64>)>,
) -> PlotResult<Vec<PathBuf>> {
    let mut files = Vec::new();
    for w in [WorkloadKind::Group, WorkloadKind::Sync] {
        let series: Vec<Series<'_>> = hists
            .iter()
            .filter(|((k, _), _)| *k == w)
            .map(|((_, name), (role, h))| (name, *role, cdf(h)))
            .filter(|(_, _, pts)| !pts.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let lo = series
            .iter()
            .flat_map(|s| s.2.first().map(|p| p.0))
            .fold(f64::INFINITY, f64::min)
            .max(1.0);
        let hi = series
            .iter()
            .flat_map(|s| s.2.last().map(|p| p.0))
            .fold(0.0, f64::max)
            .max(lo * 10.0);
        let path = dir.join(format!("latency-cdf-{}.svg", w.name()));
        {
            let root = SVGBackend::new(&path, (900, 520)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let what = if w == WorkloadKind::Group {
                "64-record group, first append → durable"
            } else {
                "1 KiB record, append → durable"
            };
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!("{} latency CDF: {what}", w.name()),
                    ("sans-serif", 20),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d((lo * 0.8..hi * 1.25).log_scale(), 0f64..1.0)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("latency, µs (log scale)")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_desc("fraction of durable points")
                .draw()
                .map_err(err)?;
            let mut peer = 0;
            for (name, role, pts) in series {
                let c = color(role, peer);
                if role == Role::Peer {
                    peer += 1;
                }
                chart
                    .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                    .map_err(err)?
                    .label(name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
            root.present().map_err(err)?;
        }
        files.push(path);
    }
    Ok(files)
}
