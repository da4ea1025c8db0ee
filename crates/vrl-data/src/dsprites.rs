//! Procedural dSprites (Matthey, Higgins, Hassabis and Lerchner, 2017), rendered on demand, and the
//! [`GroundTruthData`] trait that disentanglement metrics sample from.
//!
//! The grid is the original's: colour (1 value, white — constant, so not exposed as a factor), shape
//! (square, ellipse, heart), scale (6 values, `linspace(0.5, 1, 6)`), orientation (40 values,
//! `linspace(0, 2π, 40)`), posX and posY (32 values each, `linspace(0, 1, 32)`): 737,280 binary 64×64
//! images indexed in that order, posY varying fastest, so
//! `index = (((shape·6 + scale)·40 + orientation)·32 + posX)·32 + posY`, as in the original
//! `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz` and in disentanglement_lib (whose
//! `latent_factor_indices` are these five).
//!
//! The pixels are not the original's: each sprite is rasterised analytically, a point-in-shape test at
//! every pixel centre in the sprite's own frame. The geometry, in pixels of the 64×64 canvas (row 0 at
//! the top, column 0 at the left; images are row-major `[row][column]`, like the original's `imgs`):
//!
//! - **Size.** One shape unit is [`UNIT_PX`] = 8 pixels at scale 1 (4 at scale 0.5). The square is
//!   `[-1, 1]²` (16 pixels a side at scale 1); the ellipse has semi-axes 1.4 and 0.7 (a 2:1 ratio, its
//!   long axis horizontal at orientation 0); the heart is `(x² + y² − 1)³ − x²y³ ≤ 0`, shifted down by
//!   0.12 so that its bounding box is centred (about 2.3 × 2.2 units, lobes up, point down). Every
//!   shape lies within √2 units of its centre, i.e. at most 11.3 pixels at scale 1, a sprite spanning
//!   up to about a third of the canvas.
//! - **Position.** posX moves the sprite's centre along columns (to the right), posY along rows
//!   (downwards): `centre = MARGIN_PX + pos · (64 − 2 · MARGIN_PX)` with [`MARGIN_PX`] = 12, so centres
//!   range over `[12, 52]` (steps of 1.29 pixels) and every sprite, at any orientation, stays inside
//!   the canvas with the border pixels always blank.
//! - **Orientation.** A counter-clockwise rotation as seen on screen by the orientation's value in
//!   radians. The last value, 2π, is rendered as orientation 0 (the original's first and last
//!   orientations coincide too), so those two images are identical bit for bit.
//!
//! Images are 0/1 bytes ([`DSprites::render`], like the original's `imgs`) or 0.0/1.0 floats
//! ([`DSprites::render_f32`], [`GroundTruthData::render_into`]); each is a pure function of its factors.
//!
//! ```
//! use vrl_data::dsprites::{DSprites, ascii_art};
//!
//! let d = DSprites::new();
//! assert_eq!(d.len(), 737_280);
//! let heart = d.index_of([2, 5, 0, 16, 16]).unwrap(); // heart, scale 1, upright, centred
//! assert_eq!(d.factors_of(heart).unwrap(), [2, 5, 0, 16, 16]);
//! let mut image = vec![0u8; DSprites::IMAGE_LEN];
//! d.render([2, 5, 0, 16, 16], &mut image).unwrap();
//! let art = ascii_art(&image, 64);
//! assert_eq!(art.lines().count(), 64);
//! println!("{art}");
//! ```

use rayon::prelude::*;

use crate::SplitMix64;

/// Errors in factors, indices or buffers given to a [`GroundTruthData`] or to [`DSprites`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FactorError {
    /// The number of factors is not the data set's.
    #[error("expected {expected} factors, found {found}")]
    WrongCount {
        /// The number of factors of the data set.
        expected: usize,
        /// The number given.
        found: usize,
    },
    /// A factor's value is outside `0..size`.
    #[error("factor {name} = {value} is out of range 0..{size}")]
    OutOfRange {
        /// The factor's name.
        name: String,
        /// The value given.
        value: usize,
        /// The number of values of the factor.
        size: usize,
    },
    /// An observation index is outside `0..len`.
    #[error("index {index} is out of range 0..{len}")]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// The number of observations.
        len: usize,
    },
    /// An output buffer does not have the length the observations need.
    #[error("output buffer has {found} values, expected {expected} ({count} observations of {per_item})")]
    BufferSize {
        /// The length needed.
        expected: usize,
        /// The length given.
        found: usize,
        /// The number of observations to write.
        count: usize,
        /// The number of values per observation.
        per_item: usize,
    },
}

/// A data set generated from a grid of discrete ground-truth factors, each combination rendering one
/// observation: what disentanglement metrics (β-VAE, FactorVAE, MIG, DCI, SAP…) sample from, as in
/// disentanglement_lib's `GroundTruthData`.
///
/// Implementors supply the factor grid, the observation shape and [`render_into`]; sampling, batch
/// rendering (parallel with rayon, identical for any number of threads) and validation come as
/// default methods. Observations are `f32`, channels first.
///
/// [`render_into`]: GroundTruthData::render_into
pub trait GroundTruthData: Sync {
    /// The factors' names, in order.
    fn factor_names(&self) -> &[&str];

    /// The number of values of each factor, in the order of [`factor_names`](Self::factor_names).
    fn factor_sizes(&self) -> &[usize];

    /// The shape of one observation, `[C, H, W]`.
    fn observation_shape(&self) -> [usize; 3];

    /// Renders the observation for `factors` (one value index per factor) into `out`, which holds
    /// exactly one observation (`C·H·W` values, channels first).
    ///
    /// # Errors
    /// When the factors are not valid (see [`check_factors`](Self::check_factors)) or `out` has the
    /// wrong length.
    fn render_into(&self, factors: &[usize], out: &mut [f32]) -> Result<(), FactorError>;

    /// The number of factors.
    fn num_factors(&self) -> usize {
        self.factor_sizes().len()
    }

    /// The number of values in one observation, `C·H·W`.
    fn observation_len(&self) -> usize {
        self.observation_shape().iter().product()
    }

    /// The number of factor combinations (the product of the factor sizes).
    fn num_points(&self) -> usize {
        self.factor_sizes().iter().product()
    }

    /// Checks that `factors` has one value per factor, each within range.
    ///
    /// # Errors
    /// [`FactorError::WrongCount`] or [`FactorError::OutOfRange`], naming the factor.
    fn check_factors(&self, factors: &[usize]) -> Result<(), FactorError> {
        let sizes = self.factor_sizes();
        if factors.len() != sizes.len() {
            return Err(FactorError::WrongCount { expected: sizes.len(), found: factors.len() });
        }
        for (i, (&value, &size)) in factors.iter().zip(sizes).enumerate() {
            if value >= size {
                let name = self.factor_names().get(i).map_or_else(|| format!("#{i}"), |n| (*n).to_string());
                return Err(FactorError::OutOfRange { name, value, size });
            }
        }
        Ok(())
    }

    /// The row-major (last factor fastest) index of a factor combination.
    ///
    /// # Errors
    /// When the factors are not valid.
    fn index_of_factors(&self, factors: &[usize]) -> Result<usize, FactorError> {
        self.check_factors(factors)?;
        Ok(factors.iter().zip(self.factor_sizes()).fold(0, |acc, (&v, &s)| acc * s + v))
    }

    /// The factor combination at a row-major index (the inverse of
    /// [`index_of_factors`](Self::index_of_factors)).
    ///
    /// # Errors
    /// [`FactorError::IndexOutOfRange`] when `index >= num_points()`.
    fn factors_of_index(&self, index: usize) -> Result<Vec<usize>, FactorError> {
        let len = self.num_points();
        if index >= len {
            return Err(FactorError::IndexOutOfRange { index, len });
        }
        let sizes = self.factor_sizes();
        let mut factors = vec![0; sizes.len()];
        let mut rest = index;
        for (f, &s) in factors.iter_mut().zip(sizes).rev() {
            *f = rest % s;
            rest /= s;
        }
        Ok(factors)
    }

    /// `n` factor combinations drawn independently and uniformly from the grid.
    fn sample_factors(&self, n: usize, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
        let sizes = self.factor_sizes();
        (0..n).map(|_| sizes.iter().map(|&s| rng.below(s as u64) as usize).collect()).collect()
    }

    /// Renders one observation per factor combination into `out` (`factors.len()` observations,
    /// back to back), in parallel; the result does not depend on the number of threads.
    ///
    /// # Errors
    /// When `out` has the wrong length or a combination is invalid (the first invalid one is named;
    /// nothing is rendered then).
    fn sample_observations_from_factors(
        &self,
        factors: &[Vec<usize>],
        out: &mut [f32],
    ) -> Result<(), FactorError> {
        let per_item = self.observation_len();
        let expected = factors.len() * per_item;
        if out.len() != expected {
            return Err(FactorError::BufferSize {
                expected,
                found: out.len(),
                count: factors.len(),
                per_item,
            });
        }
        for f in factors {
            self.check_factors(f)?;
        }
        if per_item == 0 {
            return Ok(());
        }
        out.par_chunks_mut(per_item).zip(factors.par_iter()).try_for_each(|(o, f)| self.render_into(f, o))
    }

    /// Draws `n` uniform factor combinations and renders them: `(factors, observations)` with the
    /// observations back to back, `[n, C, H, W]`.
    fn sample(&self, n: usize, rng: &mut SplitMix64) -> Result<(Vec<Vec<usize>>, Vec<f32>), FactorError> {
        let factors = self.sample_factors(n, rng);
        let mut out = vec![0.0; n * self.observation_len()];
        self.sample_observations_from_factors(&factors, &mut out)?;
        Ok((factors, out))
    }
}

/// The three dSprites shapes, in the original's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// `[-1, 1]²`.
    Square,
    /// Semi-axes 1.4 (along x) and 0.7.
    Ellipse,
    /// `(x² + y² − 1)³ − x²(y + 0.12)³ ≤ 0` after shifting y by 0.12 (lobes towards +y).
    Heart,
}

impl Shape {
    /// The shapes in factor order.
    pub const ALL: [Shape; 3] = [Shape::Square, Shape::Ellipse, Shape::Heart];

    /// Whether the point `(x, y)` of the shape's own frame (units of [`UNIT_PX`] pixels at scale 1,
    /// y pointing up) is inside the shape.
    pub fn contains(self, x: f64, y: f64) -> bool {
        match self {
            Shape::Square => x.abs() <= 1.0 && y.abs() <= 1.0,
            Shape::Ellipse => (x / ELLIPSE_A).powi(2) + (y / ELLIPSE_B).powi(2) <= 1.0,
            Shape::Heart => {
                let y = y + HEART_SHIFT;
                let r = x * x + y * y - 1.0;
                r * r * r - x * x * y * y * y <= 0.0
            }
        }
    }
}

/// Pixels per shape unit at scale 1.
pub const UNIT_PX: f64 = 8.0;
/// Distance in pixels from the canvas edge to the extreme sprite centres (posX or posY of 0 or 1).
pub const MARGIN_PX: f64 = 12.0;
/// The ellipse's semi-axis along its own x axis, in shape units.
const ELLIPSE_A: f64 = 1.4;
/// The ellipse's semi-axis along its own y axis, in shape units.
const ELLIPSE_B: f64 = 0.7;
/// How far the heart curve is moved down so its bounding box is centred, in shape units.
const HEART_SHIFT: f64 = 0.12;
/// A radius (shape units) containing every shape: the square's half-diagonal.
const BOUND_RADIUS: f64 = std::f64::consts::SQRT_2;

/// Procedural dSprites: the original's 737,280-point factor grid, images rendered on demand (see the
/// [module documentation](self) for the exact geometry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DSprites;

impl DSprites {
    /// The varying factors, in index order (colour, constant white, is left out).
    pub const FACTOR_NAMES: [&'static str; 5] = ["shape", "scale", "orientation", "posX", "posY"];
    /// The number of values of each factor in [`FACTOR_NAMES`](Self::FACTOR_NAMES).
    pub const FACTOR_SIZES: [usize; 5] = [3, 6, 40, 32, 32];
    /// The number of images, the product of the factor sizes.
    pub const LEN: usize = 737_280;
    /// The side of the square canvas in pixels.
    pub const SIZE: usize = 64;
    /// The number of pixels in one image.
    pub const IMAGE_LEN: usize = Self::SIZE * Self::SIZE;

    /// The data set.
    pub fn new() -> Self {
        DSprites
    }

    /// The number of images, 737,280.
    pub fn len(&self) -> usize {
        Self::LEN
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Checks that every factor is within range.
    ///
    /// # Errors
    /// [`FactorError::OutOfRange`] naming the first factor out of range.
    pub fn check(&self, factors: [usize; 5]) -> Result<(), FactorError> {
        for ((&value, &size), name) in factors.iter().zip(&Self::FACTOR_SIZES).zip(Self::FACTOR_NAMES) {
            if value >= size {
                return Err(FactorError::OutOfRange { name: name.to_string(), value, size });
            }
        }
        Ok(())
    }

    /// The factors (shape, scale, orientation, posX, posY) of an image index.
    ///
    /// # Errors
    /// [`FactorError::IndexOutOfRange`] when `index >= 737_280`.
    pub fn factors_of(&self, index: usize) -> Result<[usize; 5], FactorError> {
        if index >= Self::LEN {
            return Err(FactorError::IndexOutOfRange { index, len: Self::LEN });
        }
        let mut factors = [0; 5];
        let mut rest = index;
        for (f, &s) in factors.iter_mut().zip(&Self::FACTOR_SIZES).rev() {
            *f = rest % s;
            rest /= s;
        }
        Ok(factors)
    }

    /// The image index of a factor combination.
    ///
    /// # Errors
    /// When a factor is out of range.
    pub fn index_of(&self, factors: [usize; 5]) -> Result<usize, FactorError> {
        self.check(factors)?;
        Ok(factors.iter().zip(&Self::FACTOR_SIZES).fold(0, |acc, (&v, &s)| acc * s + v))
    }

    /// The factors' values, as in the original's `latents_values` without the colour column: shape
    /// 1, 2 or 3 (the original's codes), scale in `[0.5, 1]`, orientation in radians `[0, 2π]`,
    /// posX and posY in `[0, 1]`, each grid computed like `numpy.linspace` (last value exact).
    ///
    /// # Errors
    /// When a factor is out of range.
    pub fn values_of(&self, factors: [usize; 5]) -> Result<[f64; 5], FactorError> {
        self.check(factors)?;
        let [shape, scale, orientation, x, y] = factors;
        Ok([
            shape as f64 + 1.0,
            linspace(0.5, 1.0, 6, scale),
            linspace(0.0, std::f64::consts::TAU, 40, orientation),
            linspace(0.0, 1.0, 32, x),
            linspace(0.0, 1.0, 32, y),
        ])
    }

    /// Renders the image of `factors` as 0/1 bytes, row-major `[64][64]`, into `out`.
    ///
    /// # Errors
    /// When a factor is out of range or `out` does not hold exactly 4096 bytes.
    pub fn render(&self, factors: [usize; 5], out: &mut [u8]) -> Result<(), FactorError> {
        self.check(factors)?;
        check_len(out.len(), 1)?;
        rasterise(factors, |i, ink| out[i] = u8::from(ink));
        Ok(())
    }

    /// Renders the image of `factors` as 0.0/1.0 floats, row-major `[64][64]`, into `out`.
    ///
    /// # Errors
    /// When a factor is out of range or `out` does not hold exactly 4096 values.
    pub fn render_f32(&self, factors: [usize; 5], out: &mut [f32]) -> Result<(), FactorError> {
        self.check(factors)?;
        check_len(out.len(), 1)?;
        rasterise(factors, |i, ink| out[i] = if ink { 1.0 } else { 0.0 });
        Ok(())
    }

    /// The image at `index` as 0/1 bytes.
    ///
    /// # Errors
    /// When `index` is out of range.
    pub fn image(&self, index: usize) -> Result<Vec<u8>, FactorError> {
        let mut out = vec![0; Self::IMAGE_LEN];
        self.render(self.factors_of(index)?, &mut out)?;
        Ok(out)
    }

    /// Renders the images at `indices` into `out` (4096 bytes each, back to back), in parallel; the
    /// result does not depend on the number of threads.
    ///
    /// # Errors
    /// When an index is out of range (the first is named; nothing is rendered then) or `out` has the
    /// wrong length.
    pub fn render_batch(&self, indices: &[usize], out: &mut [u8]) -> Result<(), FactorError> {
        check_len(out.len(), indices.len())?;
        let factors = indices.iter().map(|&i| self.factors_of(i)).collect::<Result<Vec<_>, _>>()?;
        out.par_chunks_mut(Self::IMAGE_LEN)
            .zip(factors.par_iter())
            .for_each(|(o, &f)| rasterise(f, |i, ink| o[i] = u8::from(ink)));
        Ok(())
    }
}

impl GroundTruthData for DSprites {
    fn factor_names(&self) -> &[&str] {
        &Self::FACTOR_NAMES
    }

    fn factor_sizes(&self) -> &[usize] {
        &Self::FACTOR_SIZES
    }

    fn observation_shape(&self) -> [usize; 3] {
        [1, Self::SIZE, Self::SIZE]
    }

    fn render_into(&self, factors: &[usize], out: &mut [f32]) -> Result<(), FactorError> {
        let factors: [usize; 5] =
            factors.try_into().map_err(|_| FactorError::WrongCount { expected: 5, found: factors.len() })?;
        self.render_f32(factors, out)
    }
}

/// The `k`-th of `n` values of `numpy.linspace(start, end, n)`.
fn linspace(start: f64, end: f64, n: usize, k: usize) -> f64 {
    if k + 1 == n { end } else { start + (end - start) / (n - 1) as f64 * k as f64 }
}

/// Checks that a byte or float buffer holds `count` images.
fn check_len(found: usize, count: usize) -> Result<(), FactorError> {
    let expected = count * DSprites::IMAGE_LEN;
    if found == expected {
        Ok(())
    } else {
        Err(FactorError::BufferSize { expected, found, count, per_item: DSprites::IMAGE_LEN })
    }
}

/// Calls `put(pixel, ink)` for every pixel of the image of valid `factors`, row-major.
fn rasterise(factors: [usize; 5], mut put: impl FnMut(usize, bool)) {
    let [shape, scale, orientation, x, y] = factors;
    let shape = Shape::ALL[shape];
    let unit = linspace(0.5, 1.0, 6, scale) * UNIT_PX;
    // The last orientation, 2π, is drawn as the first so the two coincide exactly.
    let angle = linspace(0.0, std::f64::consts::TAU, 40, orientation % 39);
    let (sin, cos) = angle.sin_cos();
    let span = DSprites::SIZE as f64 - 2.0 * MARGIN_PX;
    let cx = MARGIN_PX + linspace(0.0, 1.0, 32, x) * span;
    let cy = MARGIN_PX + linspace(0.0, 1.0, 32, y) * span;
    let reach = BOUND_RADIUS * unit;
    for row in 0..DSprites::SIZE {
        // Upward offset of the pixel centre from the sprite's centre.
        let dy = cy - (row as f64 + 0.5);
        for col in 0..DSprites::SIZE {
            let dx = col as f64 + 0.5 - cx;
            let ink = dx.abs() <= reach && dy.abs() <= reach && {
                // Rotate back by the orientation, then measure in shape units.
                let u = (cos * dx + sin * dy) / unit;
                let v = (-sin * dx + cos * dy) / unit;
                shape.contains(u, v)
            };
            put(row * DSprites::SIZE + col, ink);
        }
    }
}

/// Draws a binary image (nonzero = ink) `width` pixels wide as text: `#` for ink, `.` for blank, one
/// line per row.
pub fn ascii_art(image: &[u8], width: usize) -> String {
    if width == 0 {
        return String::new();
    }
    let mut s = String::with_capacity(image.len() + image.len() / width);
    for row in image.chunks(width) {
        s.extend(row.iter().map(|&p| if p != 0 { '#' } else { '.' }));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn img(f: [usize; 5]) -> Vec<u8> {
        let mut out = vec![0; DSprites::IMAGE_LEN];
        DSprites.render(f, &mut out).unwrap();
        out
    }

    fn ink(image: &[u8]) -> usize {
        image.iter().map(|&p| usize::from(p)).sum()
    }

    /// (column, row) centroid of the ink.
    fn centroid(image: &[u8]) -> (f64, f64) {
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        for (i, &p) in image.iter().enumerate() {
            if p != 0 {
                sx += (i % 64) as f64;
                sy += (i / 64) as f64;
                n += 1.0;
            }
        }
        (sx / n, sy / n)
    }

    #[test]
    fn grid_and_index_order() {
        let d = DSprites::new();
        assert_eq!(d.len(), DSprites::FACTOR_SIZES.iter().product::<usize>());
        assert_eq!(GroundTruthData::num_points(&d), 737_280);
        assert_eq!(d.index_of([0, 0, 0, 0, 1]).unwrap(), 1);
        assert_eq!(d.index_of([0, 0, 0, 1, 0]).unwrap(), 32);
        assert_eq!(d.index_of([0, 0, 1, 0, 0]).unwrap(), 1024);
        assert_eq!(d.index_of([0, 1, 0, 0, 0]).unwrap(), 40_960);
        assert_eq!(d.index_of([1, 0, 0, 0, 0]).unwrap(), 245_760);
        assert_eq!(d.index_of([2, 5, 39, 31, 31]).unwrap(), 737_279);
        let e = d.factors_of(737_280).unwrap_err().to_string();
        assert!(e.contains("737280") && e.contains("out of range"), "{e}");
        let e = d.index_of([0, 6, 0, 0, 0]).unwrap_err().to_string();
        assert!(e.contains("scale = 6") && e.contains("0..6"), "{e}");
        let e = d.render_into(&[0, 0, 0], &mut [0.0; 4096]).unwrap_err().to_string();
        assert!(e.contains("expected 5 factors, found 3"), "{e}");
        let e = d.render([0; 5], &mut [0; 10]).unwrap_err().to_string();
        assert!(e.contains("10 values") && e.contains("4096"), "{e}");
    }

    #[test]
    fn latent_values_match_the_original_grid() {
        let d = DSprites;
        assert_eq!(d.values_of([0, 0, 0, 0, 0]).unwrap(), [1.0, 0.5, 0.0, 0.0, 0.0]);
        assert_eq!(d.values_of([2, 5, 39, 31, 31]).unwrap(), [3.0, 1.0, std::f64::consts::TAU, 1.0, 1.0]);
        let v = d.values_of([1, 1, 1, 1, 1]).unwrap();
        assert!((v[1] - 0.6).abs() < 1e-12 && (v[2] - std::f64::consts::TAU / 39.0).abs() < 1e-12);
        assert!((v[3] - 1.0 / 31.0).abs() < 1e-12 && (v[4] - 1.0 / 31.0).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn index_factor_round_trip(index in 0usize..737_280) {
            let d = DSprites;
            let f = d.factors_of(index).unwrap();
            prop_assert_eq!(d.index_of(f).unwrap(), index);
            prop_assert_eq!(d.factors_of_index(index).unwrap(), f.to_vec());
            prop_assert_eq!(d.index_of_factors(&f).unwrap(), index);
            prop_assert_eq!(f[4], index % 32);
        }
    }

    #[test]
    fn every_shape_has_ink_growing_with_scale_and_stays_inside() {
        for shape in 0..3 {
            for orientation in 0..40 {
                let mut last = 0;
                for scale in 0..6 {
                    let n = ink(&img([shape, scale, orientation, 16, 16]));
                    assert!(n > last, "shape {shape} orientation {orientation} scale {scale}: {n} <= {last}");
                    last = n;
                }
                for (x, y) in [(0, 0), (0, 31), (31, 0), (31, 31)] {
                    let im = img([shape, 5, orientation, x, y]);
                    let border = (0..64).any(|k| {
                        im[k] != 0 || im[63 * 64 + k] != 0 || im[k * 64] != 0 || im[k * 64 + 63] != 0
                    });
                    assert!(
                        !border,
                        "shape {shape} orientation {orientation} at ({x}, {y}) touches the border"
                    );
                }
            }
        }
    }

    #[test]
    fn position_translates_the_sprite() {
        for shape in 0..3 {
            let (x0, y0) = centroid(&img([shape, 3, 7, 0, 10]));
            let mut last_x = f64::NEG_INFINITY;
            for x in 0..32 {
                let (cx, cy) = centroid(&img([shape, 3, 7, x, 10]));
                assert!(cx > last_x, "shape {shape}: centroid x {cx} did not grow at posX {x}");
                assert!((cy - y0).abs() < 0.5, "shape {shape}: centroid y moved {cy} vs {y0} with posX");
                last_x = cx;
            }
            let mut last_y = f64::NEG_INFINITY;
            for y in 0..32 {
                let (cx, cy) = centroid(&img([shape, 3, 7, 10, y]));
                assert!(cy > last_y, "shape {shape}: centroid y {cy} did not grow at posY {y}");
                assert!((cx - centroid(&img([shape, 3, 7, 10, 0])).0).abs() < 0.5);
                last_y = cy;
            }
            // The full posX range moves the centroid by the documented 40 pixels.
            let (x31, _) = centroid(&img([shape, 3, 7, 31, 10]));
            assert!((x31 - x0 - 40.0).abs() < 1.0, "shape {shape}: {x0} -> {x31}");
        }
    }

    #[test]
    fn first_and_last_orientations_coincide_and_others_differ() {
        for shape in 0..3 {
            for scale in 0..6 {
                assert_eq!(img([shape, scale, 0, 5, 20]), img([shape, scale, 39, 5, 20]));
            }
        }
        // Neighbouring orientations of the heart (no rotational symmetry) differ.
        for o in 0..39 {
            assert_ne!(img([2, 5, o, 16, 16]), img([2, 5, o + 1, 16, 16]), "orientation {o}");
        }
    }

    #[test]
    fn rendering_is_deterministic_and_batches_match_singles() {
        let d = DSprites;
        let indices: Vec<usize> = (0..64).map(|k| k * 11_519 + 7).collect();
        let mut batch = vec![0; indices.len() * 4096];
        d.render_batch(&indices, &mut batch).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let mut single_thread = vec![0; indices.len() * 4096];
        pool.install(|| d.render_batch(&indices, &mut single_thread)).unwrap();
        assert_eq!(batch, single_thread);
        for (k, &i) in indices.iter().enumerate() {
            assert_eq!(&batch[k * 4096..(k + 1) * 4096], d.image(i).unwrap().as_slice());
        }
        let e = d.render_batch(&[1, 737_280], &mut vec![0; 8192]).unwrap_err().to_string();
        assert!(e.contains("index 737280"), "{e}");
    }

    #[test]
    fn ground_truth_sampling() {
        let d = DSprites;
        let mut rng = SplitMix64::new(5);
        let (factors, obs) = d.sample(50, &mut rng).unwrap();
        assert_eq!(obs.len(), 50 * 4096);
        for (k, f) in factors.iter().enumerate() {
            d.check_factors(f).unwrap();
            let bytes = d.image(d.index_of_factors(f).unwrap()).unwrap();
            let floats: Vec<u8> = obs[k * 4096..(k + 1) * 4096].iter().map(|&v| v as u8).collect();
            assert_eq!(bytes, floats);
        }
        let mut rng2 = SplitMix64::new(5);
        assert_eq!(d.sample_factors(50, &mut rng2), factors);
        // Each factor value is hit over many draws.
        let many = d.sample_factors(20_000, &mut rng);
        for (i, &s) in DSprites::FACTOR_SIZES.iter().enumerate() {
            let mut seen = vec![false; s];
            for f in &many {
                seen[f[i]] = true;
            }
            assert!(seen.iter().all(|&b| b), "factor {i} not covered");
        }
        let e = d.sample_observations_from_factors(&[vec![0, 0, 40, 0, 0]], &mut [0.0; 4096]).unwrap_err();
        assert!(e.to_string().contains("orientation = 40"), "{e}");
    }

    #[test]
    fn the_heart_looks_like_a_heart() {
        let im = img([2, 5, 0, 16, 16]);
        let art = ascii_art(&im, 64);
        println!("{art}");
        let rows: Vec<&str> = art.lines().filter(|l| l.contains('#')).collect();
        let runs = |l: &str| l.split('.').filter(|s| !s.is_empty()).count();
        // Two lobes on top, one point at the bottom, widest in the upper half.
        assert_eq!(runs(rows[0]), 2, "{art}");
        assert_eq!(runs(rows[rows.len() - 1]), 1, "{art}");
        let widths: Vec<usize> = rows.iter().map(|l| l.matches('#').count()).collect();
        let widest = widths.iter().enumerate().max_by_key(|&(i, w)| (w, std::cmp::Reverse(i))).unwrap().0;
        assert!(widest < rows.len() / 2, "{art}");
        assert!(widths[widths.len() - 1] <= 3, "{art}");
        // Upside down at orientation π (index 19.5 does not exist; 20 is just past π).
        let flipped = ascii_art(&img([2, 5, 20, 16, 16]), 64);
        let rows: Vec<&str> = flipped.lines().filter(|l| l.contains('#')).collect();
        assert!(rows[0].matches('#').count() <= 4, "{flipped}");
    }

    #[test]
    fn ink_at_scale_one() {
        let counts: Vec<usize> = (0..3).map(|s| ink(&img([s, 5, 0, 16, 16]))).collect();
        println!("ink at scale 1, orientation 0 (square, ellipse, heart): {counts:?}");
        // Analytic areas: 4·8² = 256, π·1.4·0.7·8² ≈ 197, ≈ 3.66·8² ≈ 234 pixels.
        for (n, area) in counts.iter().zip([256.0, 197.0, 234.0]) {
            assert!((*n as f64 - area).abs() < 0.1 * area, "{counts:?}");
        }
        let small: Vec<usize> = (0..3).map(|s| ink(&img([s, 0, 0, 16, 16]))).collect();
        println!("ink at scale 0.5: {small:?}");
    }
}
