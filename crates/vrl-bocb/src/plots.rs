//! Heatmaps as SVG and PNG. The PNG's text is drawn with DejaVu Sans, embedded from the `dejavu`
//! crate and registered with plotters' `ab_glyph` text renderer (`vrl_run::register_fonts`), so no
//! system font is needed.

use std::path::Path;

use plotters::prelude::*;

/// A heatmap: `values[row][col]` (a fraction, shown in percent), `None` for a failed cell (drawn grey
/// and marked ✗).
#[derive(Debug, Clone)]
pub struct Heatmap {
    /// Title above the map.
    pub title: String,
    /// Row labels (left).
    pub rows: Vec<String>,
    /// Column labels (top).
    pub cols: Vec<String>,
    /// Values, row-major.
    pub values: Vec<Vec<Option<f64>>>,
    /// A short note under the map.
    pub note: String,
}

fn register() {
    vrl_run::register_fonts();
}

/// Viridis-like ramp over `t` in [0, 1].
fn colour(t: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [68.0, 1.0, 84.0]),
        (0.25, [59.0, 82.0, 139.0]),
        (0.5, [33.0, 145.0, 140.0]),
        (0.75, [94.0, 201.0, 98.0]),
        (1.0, [253.0, 231.0, 37.0]),
    ];
    let t = t.clamp(0.0, 1.0);
    let i = STOPS.iter().rposition(|(s, _)| *s <= t).unwrap_or(0).min(STOPS.len() - 2);
    let (t0, a) = STOPS[i];
    let (t1, b) = STOPS[i + 1];
    let f = (t - t0) / (t1 - t0);
    let mix = |k: usize| (a[k] + f * (b[k] - a[k])).round() as u8;
    RGBColor(mix(0), mix(1), mix(2))
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    h: &Heatmap,
    cell: (i32, i32),
    left: i32,
    top: i32,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (cw, ch) = cell;
    let font = |size: f64| ("sans-serif", size).into_font();
    root.draw(&Text::new(h.title.clone(), (10, 10), font(18.0).color(&BLACK))).map_err(e)?;
    let finite: Vec<f64> = h.values.iter().flatten().flatten().copied().collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    for (j, c) in h.cols.iter().enumerate() {
        let x = left + j as i32 * cw + 4;
        root.draw(&Text::new(c.clone(), (x, top - 18), font(12.0).color(&BLACK))).map_err(e)?;
    }
    for (i, r) in h.rows.iter().enumerate() {
        let y = top + i as i32 * ch;
        root.draw(&Text::new(r.clone(), (10, y + ch / 2 - 7), font(13.0).color(&BLACK))).map_err(e)?;
        for (j, v) in h.values[i].iter().enumerate() {
            let x = left + j as i32 * cw;
            let (fill, text, dark) = match v {
                Some(v) => {
                    let t = (v - lo) / span;
                    (colour(t), format!("{:.1}", 100.0 * v), t < 0.6)
                }
                None => (RGBColor(190, 190, 190), "✗".to_string(), false),
            };
            root.draw(&Rectangle::new([(x, y), (x + cw - 2, y + ch - 2)], fill.filled())).map_err(e)?;
            let colour = if dark { WHITE } else { BLACK };
            root.draw(&Text::new(text, (x + cw / 2 - 14, y + ch / 2 - 7), font(13.0).color(&colour)))
                .map_err(e)?;
        }
    }
    let bottom = top + h.rows.len() as i32 * ch + 8;
    root.draw(&Text::new(h.note.clone(), (10, bottom), font(12.0).color(&BLACK))).map_err(e)?;
    root.present().map_err(e)
}

/// Writes `<stem>.svg` and `<stem>.png` (each atomically).
pub fn heatmap(stem: &Path, h: &Heatmap) -> Result<(), String> {
    register();
    let label_w = h.rows.iter().map(|r| r.chars().count()).max().unwrap_or(4) as i32 * 8 + 20;
    let col_w = h.cols.iter().map(|c| c.chars().count()).max().unwrap_or(4).max(5) as i32 * 8 + 10;
    let (cw, ch) = (col_w, 28);
    let (left, top) = (label_w, 60);
    let text_w = |t: &str| t.chars().count() as i32 * 10 + 20;
    let width = (left + h.cols.len() as i32 * cw + 20).max(text_w(&h.title)).max(text_w(&h.note)) as u32;
    let height = (top + h.rows.len() as i32 * ch + 40) as u32;
    let svg_path = stem.with_extension("svg");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        draw(root, h, (cw, ch), left, top)?;
    }
    vrl_run::write_atomic(&svg_path, svg.as_bytes()).map_err(|e| e.to_string())?;
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        draw(root, h, (cw, ch), left, top)?;
    }
    let png_path = stem.with_extension("png");
    let img = image::RgbImage::from_raw(width, height, rgb).ok_or("PNG buffer of the wrong size")?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).map_err(|e| format!("{}: {e}", png_path.display()))?;
    vrl_run::write_atomic(&png_path, bytes.get_ref()).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg_and_a_png_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let h = Heatmap {
            title: "top-1".into(),
            rows: vec!["resnet".into(), "vit".into()],
            cols: vec!["sgd".into(), "adamw".into()],
            values: vec![vec![Some(0.9), None], vec![Some(0.5), Some(0.7)]],
            note: "✗: failed".into(),
        };
        heatmap(&dir.path().join("map"), &h).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("map.svg")).unwrap();
        assert!(svg.contains("resnet") && svg.contains("90.0") && svg.contains("✗"), "{svg}");
        let png = image::open(dir.path().join("map.png")).unwrap().to_rgb8();
        // Text was rendered: the title row holds dark pixels on the white background.
        let dark = (0..png.width())
            .flat_map(|x| (8..28).map(move |y| (x, y)))
            .filter(|&(x, y)| png.get_pixel(x, y)[0] < 100)
            .count();
        assert!(dark > 20, "no text drawn in the PNG ({dark} dark pixels)");
        assert_eq!(colour(0.0), RGBColor(68, 1, 84));
        assert_eq!(colour(1.0), RGBColor(253, 231, 37));
    }
}
