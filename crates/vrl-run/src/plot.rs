//! Line plots as SVG. Text is measured with DejaVu Sans, embedded from the `dejavu` crate and
//! registered once with plotters' `ab_glyph` renderer ([`register_fonts`]), so no system font is needed.

use std::path::Path;
use std::sync::Once;

use plotters::style::{FontStyle, register_font};

use plotters::prelude::*;

use crate::{RunError, write_atomic};

/// One named line: `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

static FONTS: Once = Once::new();

/// Registers the embedded DejaVu Sans as plotters' `sans-serif` (once per process). Every plot of vrl
/// calls it before drawing text; without a registered font plotters cannot lay out text.
pub fn register_fonts() {
    FONTS.call_once(|| {
        if register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_err() {
            tracing::warn!("cannot register the embedded DejaVu Sans font; plot text may be missing");
        }
    });
}

/// Draws the series as lines on shared axes and writes an SVG file atomically. Non-finite points are skipped.
pub fn line_plot_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), RunError> {
    register_fonts();
    let err = |e: String| RunError::Plot { path: path.to_path_buf(), message: e };
    let finite =
        || series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in finite() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err(err("no finite points to plot".into()));
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(|e| err(e.to_string()))?;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts = s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite());
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    write_atomic(path, svg.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_each_series() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("loss.svg");
        let s = |label: &str, k: f64| Series {
            label: label.into(),
            points: (0..20).map(|i| (i as f64, k / (1.0 + i as f64))).collect(),
        };
        line_plot_svg(&p, "loss", "step", "loss", &[s("sgd", 1.0), s("adamw", 2.0)]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("<svg"));
        assert!(text.contains("adamw") && text.contains("sgd"));
        let e = line_plot_svg(
            &p,
            "t",
            "x",
            "y",
            &[Series { label: "nan".into(), points: vec![(f64::NAN, 1.0)] }],
        );
        assert!(e.is_err());
    }
}
