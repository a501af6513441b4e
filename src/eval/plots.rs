//! The report's figures, drawn in Rust with plotters into PNG files. Text
//! uses the bundled DejaVu Sans (`assets/fonts`), so nothing is needed from
//! the system. Each figure is drawn on any plotters backend (`*_on`), so the
//! tests can read back the text a figure draws; the public functions draw
//! into a PNG.
use std::path::Path;
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::{Error, Result};

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

/// plotters' errors borrow its backends, so the cause is kept as its text.
fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Plot {
        path: path.to_path_buf(),
        source: e.to_string().into(),
    }
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The legend box of a chart's labelled series.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    at: SeriesLabelPosition,
) -> std::result::Result<(), String> {
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

/// Lines on shared axes, with a legend; `diagonal` adds the y = x reference
/// line under that name in the legend (ROC's is "chance").
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x: (f64, f64),
    pub y: (f64, f64),
    pub diagonal: Option<&'a str>,
    /// Draw markers on the points (few points, e.g. per hour).
    pub markers: bool,
    /// Whole-number x labels (hours).
    pub integer_x: bool,
}

impl LineChart<'_> {
    pub fn draw(&self, path: &Path, series: &[Series]) -> Result<()> {
        fonts();
        let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        self.draw_on(&root, path, series)
    }

    /// Draw on `root`; `path` names the figure in errors.
    pub fn draw_on<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        path: &Path,
        series: &[Series],
    ) -> Result<()> {
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, (FONT, 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(self.x.0..self.x.1, self.y.0..self.y.1)
            .map_err(|e| err(path, e))?;
        let mut mesh = chart.configure_mesh();
        // Otherwise plotters' own short decimals (never `{x}`, which prints
        // 0.30000000000000004).
        if self.integer_x {
            mesh.x_label_formatter(&|x| format!("{x:.0}"));
        }
        mesh.x_desc(self.x_label)
            .y_desc(self.y_label)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .max_light_lines(1)
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(|e| err(path, e))?;
        if let Some(name) = self.diagonal {
            let lo = self.x.0.max(self.y.0);
            let hi = self.x.1.min(self.y.1);
            chart
                .draw_series(LineSeries::new(
                    vec![(lo, lo), (hi, hi)],
                    ShapeStyle::from(&RGBColor(150, 150, 150)).stroke_width(1),
                ))
                .map_err(|e| err(path, e))?
                .label(name)
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
    reliability_on(&root, path, title, versions)
}

/// [`reliability`] on any backend.
pub fn reliability_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    path: &Path,
    title: &str,
    versions: &[(String, Vec<ReliabilityBin>)],
) -> Result<()> {
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
    let height = (120 + 28 * items.len().max(1) as u32).max(300);
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    bars_on(&root, path, title, x_label, items)
}

/// [`bars`] on any backend.
pub fn bars_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    path: &Path,
    title: &str,
    x_label: &str,
    items: &[(String, f64)],
) -> Result<()> {
    let n = items.len().max(1);
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let lo = items.iter().map(|i| i.1).fold(0.0f64, f64::min);
    let hi = items.iter().map(|i| i.1).fold(0.0f64, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let label_width = items.iter().map(|i| i.0.chars().count()).max().unwrap_or(4) as u32 * 9 + 16;
    let mut chart = ChartBuilder::on(root)
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
        diagonal: None,
        markers: false,
        integer_x: false,
    }
    .draw(path, &shares)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingErrorKind};

    use super::*;

    /// A backend that draws nothing and keeps every text it is given.
    struct Texts {
        size: (u32, u32),
        seen: Rc<RefCell<Vec<String>>>,
    }

    type Drawn = std::result::Result<(), DrawingErrorKind<std::io::Error>>;

    impl DrawingBackend for Texts {
        type ErrorType = std::io::Error;
        fn get_size(&self) -> (u32, u32) {
            self.size
        }
        fn ensure_prepared(&mut self) -> Drawn {
            Ok(())
        }
        fn present(&mut self) -> Drawn {
            Ok(())
        }
        fn draw_pixel(&mut self, _: BackendCoord, _: BackendColor) -> Drawn {
            Ok(())
        }
        fn draw_text<S: BackendTextStyle>(&mut self, text: &str, _: &S, _: BackendCoord) -> Drawn {
            self.seen.borrow_mut().push(text.to_string());
            Ok(())
        }
    }

    fn texts_of(height: u32, draw: impl FnOnce(&DrawingArea<Texts, Shift>)) -> Vec<String> {
        fonts();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let root = Texts {
            size: (WIDTH, height),
            seen: seen.clone(),
        }
        .into_drawing_area();
        draw(&root);
        let texts = seen.borrow().clone();
        texts
    }

    /// The numbers among the texts: tick labels.
    fn ticks(texts: &[String]) -> Vec<String> {
        texts
            .iter()
            .filter(|t| t.parse::<f64>().is_ok())
            .cloned()
            .collect()
    }

    /// A short decimal: at most four digits after the point, as an axis
    /// should print (not `0.30000000000000004` or `0.7999999999999999`).
    fn short(t: &str) -> bool {
        t.split_once('.').is_none_or(|(_, frac)| frac.len() <= 4) && t.len() <= 10
    }

    fn line(x: (f64, f64), y: (f64, f64), integer_x: bool) -> Vec<String> {
        let series = [Series {
            name: "run".into(),
            points: vec![(x.0, y.0), (x.1, y.1)],
        }];
        texts_of(HEIGHT, |root| {
            LineChart {
                title: "t",
                x_label: "x",
                y_label: "y",
                x,
                y,
                diagonal: Some("chance"),
                markers: integer_x,
                integer_x,
            }
            .draw_on(root, Path::new("t.png"), &series)
            .unwrap()
        })
    }

    #[test]
    fn every_figure_kind_labels_its_ticks_with_short_decimals() {
        // The ranges the report and eda figures use: ROC and PR on [0, 1],
        // CTR by hour, a histogram of scores, a log-log long tail.
        let mut all = vec![
            ("roc", line((0.0, 1.0), (0.0, 1.0), false)),
            ("pr", line((0.0, 1.0), (0.0, 0.31), false)),
            ("ctr by hour", line((0.0, 23.0), (0.0, 0.041), true)),
            ("histogram", line((0.0, 0.37), (0.0, 0.12), false)),
            ("long tail", line((0.0, 5.6), (0.0, 4.2), false)),
        ];
        let bins: Vec<ReliabilityBin> = (0..10)
            .map(|i| {
                let p = 0.003 + 0.004 * i as f64;
                ReliabilityBin {
                    lower: p - 0.002,
                    upper: p + 0.002,
                    predicted: p,
                    observed: p * 1.1,
                    count: 1000,
                }
            })
            .collect();
        all.push((
            "reliability",
            texts_of(HEIGHT + 200, |root| {
                reliability_on(root, Path::new("r.png"), "r", &[("run".into(), bins)]).unwrap()
            }),
        ));
        let items = vec![("user_id".to_string(), 0.0123), ("ad_id".into(), 0.0041)];
        all.push((
            "bars",
            texts_of(HEIGHT, |root| {
                bars_on(root, Path::new("b.png"), "b", "gain", &items).unwrap()
            }),
        ));
        for (figure, texts) in &all {
            let ticks = ticks(texts);
            assert!(
                ticks.len() >= 4,
                "{figure}: too few tick labels in {texts:?}"
            );
            for t in &ticks {
                assert!(
                    short(t),
                    "{figure}: tick label {t:?} is not a short decimal"
                );
            }
        }
        // The diagonal is drawn under the name it is given (the report's
        // ROC calls it "chance"; it used to say "ideal").
        assert!(all[0].1.iter().any(|t| t == "chance"));
    }
}
