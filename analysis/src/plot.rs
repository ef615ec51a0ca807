//! One drawing helper for every plot: a [`Figure`] is a stack of [`Panel`]s, each with axes and curves, drawn the
//! same way to PNG and to SVG. Text uses the embedded DejaVu Sans, so nothing depends on the system's fonts.

use std::error::Error;
use std::iter::once;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::full_palette::{
    BLUE_700, BROWN_700, GREEN_700, GREY_700, ORANGE_700, PINK_700, RED_700, TEAL_700,
};
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::output::ReportError;

/// Curve colours, by series index (a run keeps its colour across panels and figures).
const PALETTE: [RGBColor; 8] = [BLUE_700, RED_700, GREEN_700, ORANGE_700, TEAL_700, PINK_700, BROWN_700, GREY_700];

/// Colour `index` of the palette, repeating after the last.
fn palette(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// Curves with at most this many points also get a marker per point (one window or five functions still show).
const MARKER_LIMIT: usize = 40;

/// Marker labels cycle through this many rows below the panel's top, so that close markers stay readable.
const MARKER_LABEL_ROWS: i32 = 3;

const LEGEND_HEIGHT: u32 = 44;
const FONT: &str = "sans-serif";
const WIDTH: u32 = 1200;
const PANEL_HEIGHT: u32 = 420;
const SINGLE_HEIGHT: u32 = 750;

/// Linear or logarithmic (base 10) axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    /// Linear.
    Linear,
    /// Log 10; non-positive values are not drawn.
    Log,
}

/// One axis.
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    /// Label with unit.
    pub label: String,
    /// Scale.
    pub scale: Scale,
    /// Fixed range, else fitted to the data.
    pub range: Option<(f64, f64)>,
}

impl Axis {
    /// A fitted axis.
    pub fn new(label: impl Into<String>, scale: Scale) -> Self {
        Self { label: label.into(), scale, range: None }
    }

    /// The 0..1 axis of a CDF.
    pub fn fraction(label: impl Into<String>) -> Self {
        Self { label: label.into(), scale: Scale::Linear, range: Some((0.0, 1.0)) }
    }
}

/// One curve.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Legend text.
    pub label: String,
    /// Points in axis units.
    pub points: Vec<(f64, f64)>,
    /// Index into the palette.
    pub color: usize,
    /// Draw a marker at every point (for sparse data such as a sweep).
    pub markers: bool,
}

/// A dashed vertical line across a panel, labelled at its top (e.g. an event on a timeline).
#[derive(Debug, Clone)]
pub(crate) struct Marker {
    /// Where, in x-axis units; a marker outside the drawn range is not drawn.
    pub x: f64,
    /// Short text next to the line's top.
    pub label: String,
    /// Index into the palette.
    pub color: usize,
}

/// One chart.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    /// Caption above the chart.
    pub title: String,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
    /// The curves.
    pub series: Vec<Series>,
    /// Vertical markers, drawn over the curves.
    pub markers: Vec<Marker>,
}

/// Panels stacked vertically under one title.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    /// Title on top.
    pub title: String,
    /// The panels, top to bottom.
    pub panels: Vec<Panel>,
}

/// Draws `figure` to `dir/stem.png` and `dir/stem.svg`; returns both paths.
pub(crate) fn save(figure: &Figure, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, ReportError> {
    register_fonts();
    let size = (WIDTH, if figure.panels.len() > 1 { PANEL_HEIGHT * figure.panels.len() as u32 } else { SINGLE_HEIGHT });
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let plot_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error: Box<dyn Error>| ReportError::Plot { path, message: error.to_string() }
    };
    draw(BitMapBackend::new(&png, size).into_drawing_area(), figure).map_err(plot_error(&png))?;
    draw(SVGBackend::new(&svg, size).into_drawing_area(), figure).map_err(plot_error(&svg))?;
    Ok(vec![png, svg])
}

/// Registers the embedded fonts once; plotters' `ab_glyph` text panics on an unregistered family.
fn register_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        for (style, bytes) in [(FontStyle::Normal, dejavu::sans::regular()), (FontStyle::Bold, dejavu::sans::bold())] {
            // The DejaVu faces are valid TrueType fonts; a failure here would be a packaging bug.
            plotters::style::register_font(FONT, style, bytes).unwrap_or_else(|_| panic!("embedded DejaVu font"));
        }
    });
}

fn draw<DB>(root: DrawingArea<DB, plotters::coord::Shift>, figure: &Figure) -> Result<(), Box<dyn Error>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let body = root.titled(&figure.title, (FONT, 30).into_font().style(FontStyle::Bold))?;
    // One legend for the whole figure, above the panels: every panel shows the same curves in the same colours,
    // and a legend inside a chart hides data.
    let (legend, body) = body.split_vertically(LEGEND_HEIGHT);
    draw_legend(&legend, &legend_entries(figure))?;
    for (area, panel) in body.split_evenly((figure.panels.len().max(1), 1)).iter().zip(&figure.panels) {
        draw_panel(area, panel)?;
    }
    root.present()?;
    Ok(())
}

/// The distinct (label, colour) pairs of the figure's curves, in order.
fn legend_entries(figure: &Figure) -> Vec<(&str, usize)> {
    let mut entries: Vec<(&str, usize)> = Vec::new();
    for series in figure.panels.iter().flat_map(|panel| &panel.series) {
        if !series.label.is_empty() && !entries.contains(&(series.label.as_str(), series.color)) {
            entries.push((series.label.as_str(), series.color));
        }
    }
    entries
}

/// Draws the entries in one centred row: a short line in the curve's colour, then its label.
fn draw_legend<DB>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(&str, usize)],
) -> Result<(), Box<dyn Error>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let font = TextStyle::from((FONT, 20).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    let (sample, gap) = (32, 28);
    let widths: Vec<i32> = entries
        .iter()
        .map(|(label, _)| area.estimate_text_size(label, &font).map(|(width, _)| width as i32))
        .collect::<Result<_, _>>()?;
    let total: i32 = widths.iter().map(|width| sample + 8 + width + gap).sum::<i32>() - gap;
    let (area_width, area_height) = area.dim_in_pixel();
    let (mut x, y) = ((area_width as i32 - total).max(0) / 2, area_height as i32 / 2);
    for ((label, color), width) in entries.iter().zip(widths) {
        let color = palette(*color);
        area.draw(&PathElement::new([(x, y), (x + sample, y)], color.stroke_width(4)))?;
        area.draw(&Text::new(label.to_string(), (x + sample + 8, y), font.clone()))?;
        x += sample + 8 + width + gap;
    }
    Ok(())
}

/// An axis as drawn: the scale actually used, the range and the label.
struct Fitted {
    scale: Scale,
    range: (f64, f64),
    label: String,
}

/// Picks the coordinate types for the fitted scales; the drawing itself is [`draw_chart`].
fn draw_panel<DB>(area: &DrawingArea<DB, plotters::coord::Shift>, panel: &Panel) -> Result<(), Box<dyn Error>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let points = || panel.series.iter().flat_map(|series| series.points.iter().copied());
    let x = fit(&panel.x, points().map(|point| point.0));
    let y = fit(&panel.y, points().map(|point| point.1));
    let ((x0, x1), (y0, y1)) = (x.range, y.range);
    match (x.scale, y.scale) {
        (Scale::Linear, Scale::Linear) => draw_chart(area, panel, [&x, &y], x0..x1, y0..y1),
        (Scale::Log, Scale::Linear) => draw_chart(area, panel, [&x, &y], (x0..x1).log_scale(), y0..y1),
        (Scale::Linear, Scale::Log) => draw_chart(area, panel, [&x, &y], x0..x1, (y0..y1).log_scale()),
        (Scale::Log, Scale::Log) => draw_chart(area, panel, [&x, &y], (x0..x1).log_scale(), (y0..y1).log_scale()),
    }
}

fn draw_chart<DB, X, Y>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    [x_axis, y_axis]: [&Fitted; 2],
    x: X,
    y: Y,
) -> Result<(), Box<dyn Error>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 24))
        .margin(18)
        .margin_right(48) // room for the last x tick label
        .x_label_area_size(64)
        .y_label_area_size(96)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(&x_axis.label)
        .y_desc(&y_axis.label)
        .axis_desc_style((FONT, 20))
        .label_style((FONT, 17))
        .x_labels(10)
        .y_labels(8)
        .x_label_formatter(&|value| tick(*value))
        .y_label_formatter(&|value| tick(*value))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(200, 200, 200))
        .draw()?;
    let drawable = |(x, y): (f64, f64)| fits(x_axis.scale, x) && fits(y_axis.scale, y);
    for series in &panel.series {
        let color = palette(series.color);
        let points = series.points.iter().copied().filter(|&point| drawable(point));
        chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))?;
        if series.markers || series.points.len() <= MARKER_LIMIT {
            chart.draw_series(points.map(|point| Circle::new(point, 5, color.filled())))?;
        }
    }
    draw_markers(&mut chart, &panel.markers, [x_axis, y_axis])
}

/// Draws the markers inside the x range as dashed lines from the bottom to the top of the chart, each labelled
/// at the top: right of the line, or left of it in the right fifth of the chart.
fn draw_markers<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    markers: &[Marker],
    [x_axis, y_axis]: [&Fitted; 2],
) -> Result<(), Box<dyn Error>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let ((x0, x1), (y0, y1)) = (x_axis.range, y_axis.range);
    let visible = markers.iter().filter(|marker| fits(x_axis.scale, marker.x) && (x0..=x1).contains(&marker.x));
    let pixels = chart.plotting_area().get_pixel_range().0;
    let flip_from = pixels.end - (pixels.end - pixels.start) / 5;
    for (row, marker) in (0..).zip(visible) {
        let color = palette(marker.color);
        let line = [(marker.x, y0), (marker.x, y1)];
        chart.draw_series(once(DashedPathElement::new(line, 8, 6, color.stroke_width(2))))?;
        let flip = chart.backend_coord(&(marker.x, y1)).0 >= flip_from;
        let (anchor, dx) = if flip { (HPos::Right, -6) } else { (HPos::Left, 6) };
        let font = TextStyle::from((FONT, 18).into_font()).color(&color).pos(Pos::new(anchor, VPos::Top));
        let offset = (dx, 4 + 20 * (row % MARKER_LABEL_ROWS));
        chart.draw_series(once(EmptyElement::at((marker.x, y1)) + Text::new(marker.label.clone(), offset, font)))?;
    }
    Ok(())
}

/// Log axes cannot show non-positive values.
fn fits(scale: Scale, value: f64) -> bool {
    value.is_finite() && (scale == Scale::Linear || value > 0.0)
}

/// Fits an axis to `values`. A fixed range is kept. A linear axis includes 0 when all values are positive. A log
/// axis spans whole decades, so its ticks land on powers of ten; but when the data spans less than one decade a log
/// axis would show a single tick, so it is drawn linear, fitted tightly. Log axes say so in their label.
fn fit(axis: &Axis, values: impl Iterator<Item = f64>) -> Fitted {
    let (low, high) = values
        .filter(|&value| fits(axis.scale, value))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| (low.min(value), high.max(value)));
    let linear = |range| Fitted { scale: Scale::Linear, range, label: axis.label.clone() };
    if let Some(range) = axis.range {
        return Fitted { scale: axis.scale, range, label: axis.label.clone() };
    }
    if low > high {
        return if axis.scale == Scale::Log { log_axis(axis, 1.0, 10.0) } else { linear((0.0, 1.0)) };
    }
    // 5% of the span on each side; a single value gets ±10% so its tick labels stay readable.
    let pad = if high > low { (high - low) * 0.05 } else { high.abs().max(1.0) * 0.1 };
    match axis.scale {
        Scale::Log if high >= low * 10.0 => log_axis(axis, low, high),
        Scale::Log => linear(((low - pad).max(0.0), high + pad)),
        Scale::Linear => linear((low.min(0.0), high.max(0.0) + pad)),
    }
}

fn log_axis(axis: &Axis, low: f64, high: f64) -> Fitted {
    let (low, high) = (10f64.powf(low.log10().floor()), 10f64.powf(high.log10().ceil()));
    let high = if high > low { high } else { low * 10.0 };
    let label = match axis.label.strip_suffix(')') {
        Some(stem) => format!("{stem}, log scale)"),
        None => format!("{} (log scale)", axis.label),
    };
    // A hair wider than whole decades: log10(0.1) rounds to -0.99999…, which would drop the 0.1 tick.
    Fitted { scale: Scale::Log, range: (low * (1.0 - 1e-9), high * (1.0 + 1e-9)), label }
}

/// A tick label: three significant digits, no trailing zeros (`0.001`, `2.5`, `1000`).
pub(crate) fn tick(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = 10f64.powf(value.abs().log10().floor() - 2.0);
    let rounded = (value / magnitude).round() * magnitude;
    // Printing with enough decimals then trimming avoids binary noise such as 0.30000000000000004.
    let decimals = (-(magnitude.log10().round() as i32)).max(0) as usize;
    let text = format!("{rounded:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        let cases = [(0.001, "0.001"), (0.3, "0.3"), (2.5, "2.5"), (1000.0, "1000"), (12345.0, "12300"), (0.0, "0")];
        for (value, text) in cases {
            assert_eq!(tick(value), text);
        }
    }

    #[test]
    fn log_axes_span_decades_or_fall_back_to_linear() {
        let axis = Axis::new("latency (ms)", Scale::Log);
        let fitted = |values: &[f64]| fit(&axis, values.iter().copied());
        let decades = |fitted: &Fitted| (fitted.range.0.log10().round(), fitted.range.1.log10().round());
        let wide = fitted(&[0.0, 0.02, 350.0]);
        assert_eq!(
            (wide.scale, decades(&wide), wide.label.as_str()),
            (Scale::Log, (-2.0, 3.0), "latency (ms, log scale)")
        );
        let narrow = fitted(&[1.1, 1.5]);
        assert_eq!((narrow.scale, narrow.label.as_str()), (Scale::Linear, "latency (ms)"));
        assert!(narrow.range.0 > 1.0 && narrow.range.0 < 1.1 && narrow.range.1 > 1.5 && narrow.range.1 < 1.6);
        assert_eq!(fitted(&[]).range, (1.0 * (1.0 - 1e-9), 10.0 * (1.0 + 1e-9)));
        let linear = fit(&Axis::new("y", Scale::Linear), [5.0, 10.0].into_iter());
        assert_eq!(linear.range, (0.0, 10.25));
        let zeros = fit(&Axis::new("y", Scale::Linear), [0.0, 0.0].into_iter());
        assert_eq!(zeros.range, (0.0, 0.1));
    }

    #[test]
    fn markers_inside_the_axis_range_are_drawn_with_their_labels() {
        let marker = |x: f64, label: &str| Marker { x, label: label.into(), color: 1 };
        let panel = Panel {
            title: "Throughput".into(),
            x: Axis { range: Some((0.0, 60.0)), ..Axis::new("time (s)", Scale::Linear) },
            y: Axis::new("latency (ms)", Scale::Log),
            series: vec![Series {
                label: "run".into(),
                points: vec![(0.0, 1.0), (60.0, 300.0)],
                color: 0,
                markers: false,
            }],
            markers: vec![
                marker(20.0, "kill worker-1"),
                marker(59.0, "restart worker-1"),
                marker(-1.0, "early"),
                marker(61.0, "late"),
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let files = save(&Figure { title: "Timeline".into(), panels: vec![panel] }, dir.path(), "timeline").unwrap();
        assert!(std::fs::metadata(&files[0]).unwrap().len() > 10_000, "the PNG is nearly empty");
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        for (label, drawn) in [("kill worker-1", true), ("restart worker-1", true), ("early", false), ("late", false)] {
            assert_eq!(svg.contains(&format!("\n{label}\n")), drawn, "{label}");
        }
        // Each drawn marker is a dashed line in the marker's colour (RED_700): many short segments.
        let red = svg.matches("#D32F2F").count();
        assert!(red > 20, "{red} red elements");
    }
}
