//! The report's figures, drawn in Rust with plotters into PNG files. Text
//! uses the bundled DejaVu Sans (`assets/fonts`), so nothing is needed from
//! the system.
use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::{DataError, Result};

const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;
const FONT: &str = "sans-serif";

/// Distinct, colour-blind-safe line colours (Okabe-Ito), then plotters' palette.
pub fn color(i: usize) -> RGBColor {
    const OKABE_ITO: [(u8, u8, u8); 7] = [
        (0, 114, 178),
        (230, 159, 0),
        (0, 158, 115),
        (204, 121, 167),
        (86, 180, 233),
        (213, 94, 0),
        (240, 228, 66),
    ];
    match OKABE_ITO.get(i) {
        Some(&(r, g, b)) => RGBColor(r, g, b),
        None => {
            let c = Palette99::pick(i).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        // The bundled font parses; a failure here would be a corrupt checkout,
        // and the charts would then fail with a font error naming the figure.
        let _ = register_font(FONT, FontStyle::Normal, bytes);
        let _ = register_font(FONT, FontStyle::Bold, bytes);
    });
}

fn err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Invalid(format!("{}: drawing failed: {e}", path.display()))
}

type Chart<'a> = ChartContext<
    'a,
    BitMapBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The legend box of a chart's labelled series.
fn legend(chart: &mut Chart<'_>, at: SeriesLabelPosition) -> std::result::Result<(), String> {
    chart
        .configure_series_labels()
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .position(at)
        .draw()
        .map_err(|e| e.to_string())
}

/// One named line.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Lines on shared axes, with a legend; `diagonal` adds the y = x reference.
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x: (f64, f64),
    pub y: (f64, f64),
    pub diagonal: bool,
    /// Draw markers on the points (few points, e.g. per hour).
    pub markers: bool,
    /// Whole-number x labels (hours).
    pub integer_x: bool,
}

impl LineChart<'_> {
    pub fn draw(&self, path: &Path, series: &[Series]) -> Result<()> {
        fonts();
        let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, (FONT, 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(self.x.0..self.x.1, self.y.0..self.y.1)
            .map_err(|e| err(path, e))?;
        let integer_x = self.integer_x;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| {
                if integer_x {
                    format!("{x:.0}")
                } else {
                    format!("{x}")
                }
            })
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .max_light_lines(1)
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(|e| err(path, e))?;
        if self.diagonal {
            let lo = self.x.0.max(self.y.0);
            let hi = self.x.1.min(self.y.1);
            chart
                .draw_series(LineSeries::new(
                    vec![(lo, lo), (hi, hi)],
                    ShapeStyle::from(&RGBColor(150, 150, 150)).stroke_width(1),
                ))
                .map_err(|e| err(path, e))?
                .label("ideal")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(150, 150, 150))
                });
        }
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    ShapeStyle::from(&c).stroke_width(2),
                ))
                .map_err(|e| err(path, e))?
                .label(&s.name)
                .legend(move |(x, y)| {
                    PathElement::new(
                        vec![(x, y), (x + 20, y)],
                        ShapeStyle::from(&c).stroke_width(3),
                    )
                });
            if self.markers {
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|&p| Circle::new(p, 3, ShapeStyle::from(&c).filled())),
                    )
                    .map_err(|e| err(path, e))?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight).map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))
    }
}

/// One reliability bin: mean predicted and observed rate and its rows.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ReliabilityBin {
    /// The lowest and highest predicted CTR in the bin.
    pub lower: f64,
    pub upper: f64,
    pub predicted: f64,
    pub observed: f64,
    pub count: u64,
}

/// A reliability diagram (observed against predicted CTR per bin, the ideal
/// diagonal) above the rows in each bin, for one or more versions of a run
/// (before and after calibration).
pub fn reliability(
    path: &Path,
    title: &str,
    versions: &[(String, Vec<ReliabilityBin>)],
) -> Result<()> {
    fonts();
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT + 200)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let (upper, lower) = root.split_vertically(HEIGHT);
    let hi = versions
        .iter()
        .flat_map(|(_, b)| b.iter().map(|b| b.predicted.max(b.observed)))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.05;
    let mut chart = ChartBuilder::on(&upper)
        .caption(title, (FONT, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..hi, 0.0..hi)
        .map_err(|e| err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("mean predicted CTR in bin")
        .y_desc("observed CTR in bin")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(|e| err(path, e))?;
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(LineSeries::new(vec![(0.0, 0.0), (hi, hi)], &grey))
        .map_err(|e| err(path, e))?
        .label("ideal")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    for (i, (name, bins)) in versions.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = bins.iter().map(|b| (b.predicted, b.observed)).collect();
        chart
            .draw_series(LineSeries::new(
                pts.clone(),
                ShapeStyle::from(&c).stroke_width(2),
            ))
            .map_err(|e| err(path, e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 20, y)],
                    ShapeStyle::from(&c).stroke_width(3),
                )
            });
        chart
            .draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, 4, ShapeStyle::from(&c).filled())),
            )
            .map_err(|e| err(path, e))?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft).map_err(|e| err(path, e))?;

    // Where the rows lie: each bin of the first version (equal rows, by its
    // predicted CTR) as a bar over its range, its height the rows per 0.001
    // of predicted CTR.
    let bins = &versions[0].1;
    let density =
        |b: &ReliabilityBin| b.count as f64 / ((b.upper - b.lower).max(hi / 500.0) / 1e-3);
    let max = bins.iter().map(density).fold(0.0f64, f64::max).max(1e-9);
    let mut counts = ChartBuilder::on(&lower)
        .margin_left(16)
        .margin_right(16)
        .margin_bottom(8)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..hi, 0.0..max * 1.1)
        .map_err(|e| err(path, e))?;
    counts
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(1)
        .y_labels(4)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_desc("predicted CTR: rows per 0.001 (the bins above, equal rows each)")
        .y_desc("rows")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| err(path, e))?;
    counts
        .draw_series(bins.iter().map(|b| {
            Rectangle::new(
                [
                    (b.lower, 0.0),
                    (b.upper.max(b.lower + hi / 500.0), density(b)),
                ],
                color(0).mix(0.5).filled(),
            )
        }))
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// Horizontal bars, largest first.
pub fn bars(path: &Path, title: &str, x_label: &str, items: &[(String, f64)]) -> Result<()> {
    fonts();
    let n = items.len().max(1);
    let height = (120 + 28 * n as u32).max(300);
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let lo = items.iter().map(|i| i.1).fold(0.0f64, f64::min);
    let hi = items.iter().map(|i| i.1).fold(0.0f64, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let label_width = items.iter().map(|i| i.0.chars().count()).max().unwrap_or(4) as u32 * 9 + 16;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(label_width.min(360))
        .build_cartesian_2d((lo - pad)..(hi + pad), -0.5..(n as f64 - 0.5))
        .map_err(|e| err(path, e))?;
    // Item i is drawn at height n - 1 - i, so the first is on top.
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&|y| {
            let r = y.round();
            if (y - r).abs() > 1e-6 || r < 0.0 || r >= n as f64 {
                return String::new();
            }
            items
                .get(n - 1 - r as usize)
                .map_or(String::new(), |it| it.0.clone())
        })
        .x_desc(x_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(|e| err(path, e))?;
    chart
        .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            let c = (n - 1 - i) as f64;
            Rectangle::new([(0.0, c - 0.35), (*v, c + 0.35)], color(0).filled())
        }))
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// Normalised histograms (share of each series' rows per bin) drawn as
/// step lines on shared bins over `x`.
pub fn histograms(
    path: &Path,
    title: &str,
    x_label: &str,
    x: (f64, f64),
    series: &[(String, Vec<f64>)],
) -> Result<()> {
    const BINS: usize = 50;
    let width = (x.1 - x.0).max(1e-12) / BINS as f64;
    let shares: Vec<Series> = series
        .iter()
        .map(|(name, values)| {
            let mut counts = [0u64; BINS];
            for &v in values {
                let b = (((v - x.0) / width).floor().max(0.0) as usize).min(BINS - 1);
                counts[b] += 1;
            }
            let total = values.len().max(1) as f64;
            let mut points = Vec::with_capacity(2 * BINS);
            for (b, &c) in counts.iter().enumerate() {
                let share = c as f64 / total;
                points.push((x.0 + b as f64 * width, share));
                points.push((x.0 + (b + 1) as f64 * width, share));
            }
            Series {
                name: format!("{name} ({} rows)", values.len()),
                points,
            }
        })
        .collect();
    let top = shares
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.08;
    LineChart {
        title,
        x_label,
        y_label: "share of rows",
        x,
        y: (0.0, top),
        diagonal: false,
        markers: false,
        integer_x: false,
    }
    .draw(path, &shares)
}
