//! Weight tensors as WeightWatcher sees them, and the eigenvalues of their matrices.
//!
//! A 2-D weight `[out, in]` is one `N × M` matrix (`N = max`, `M = min`). A 4-D convolution kernel
//! `[out, in, kh, kw]` (PyTorch's layout) is `kh·kw` matrices `W[:, :, i, j]` of `out × in`, one per
//! kernel position, whose eigenvalues are pooled into one ESD of `M·kh·kw` values (WeightWatcher's
//! `conv2D_Wmats` with `pool=True`). Eigenvalues of `WᵀW` are computed from the smaller Gram matrix
//! in f64; a matrix whose Gram eigenvalues span more than [`GRAM_RANGE`] (nearly rank-deficient,
//! where the Gram matrix loses the small ones) is redone by an SVD, as WeightWatcher does throughout.

use faer::linalg::matmul::triangular::{BlockStructure, matmul};
use faer::{Accum, Mat, Par, Side};
use rayon::prelude::*;

/// Below `GRAM_RANGE × λ_max`, eigenvalues of a Gram matrix are not trusted (their absolute error is
/// about `n·ε·λ_max`); such matrices get an SVD instead.
pub const GRAM_RANGE: f64 = 1e-9;

/// What a weight tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// A 2-D weight (Linear, embedding).
    Dense,
    /// A 4-D convolution kernel `[out, in, kh, kw]`.
    Conv2d,
}

/// WeightWatcher's view of a weight tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Dense or convolution.
    pub kind: LayerKind,
    /// Output units (rows of each matrix as stored).
    pub out: usize,
    /// Input units (columns of each matrix as stored).
    pub inp: usize,
    /// Kernel height and width (1 × 1 for dense).
    pub kernel: (usize, usize),
}

impl Geometry {
    /// The geometry of a tensor of `shape`, or `None` when it is neither 2-D nor 4-D.
    pub fn of(shape: &[usize]) -> Option<Self> {
        match *shape {
            [out, inp] => Some(Self { kind: LayerKind::Dense, out, inp, kernel: (1, 1) }),
            [out, inp, kh, kw] => Some(Self { kind: LayerKind::Conv2d, out, inp, kernel: (kh, kw) }),
            _ => None,
        }
    }
    /// The larger matrix dimension `N`.
    pub fn n(&self) -> usize {
        self.out.max(self.inp)
    }
    /// The smaller matrix dimension `M`: eigenvalues per matrix.
    pub fn m(&self) -> usize {
        self.out.min(self.inp)
    }
    /// The receptive field `kh·kw`: matrices in the tensor.
    pub fn rf(&self) -> usize {
        self.kernel.0 * self.kernel.1
    }
    /// Eigenvalues in the pooled ESD, `M·rf`.
    pub fn num_evals(&self) -> usize {
        self.m() * self.rf()
    }
}

/// A numerical routine did not converge.
#[derive(Debug, Clone, Copy)]
pub struct NoConvergence;

/// The matrix `small × large` whose Gram matrix `A Aᵀ` has the nonzero eigenvalues of `WᵀW`, for the
/// `out × in` matrix `w(o, c)`.
fn oriented(out: usize, inp: usize, w: impl Fn(usize, usize) -> f64) -> Mat<f64> {
    if out <= inp { Mat::from_fn(out, inp, &w) } else { Mat::from_fn(inp, out, |r, c| w(c, r)) }
}

/// Eigenvalues of `A Aᵀ`, ascending, from the lower triangle of the Gram matrix.
fn gram_eigenvalues(a: &Mat<f64>) -> Result<Vec<f64>, NoConvergence> {
    let k = a.nrows();
    let mut gram = Mat::<f64>::zeros(k, k);
    matmul(
        gram.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        a.as_ref(),
        BlockStructure::Rectangular,
        a.transpose(),
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
    let mut evals = gram.self_adjoint_eigenvalues(Side::Lower).map_err(|_| NoConvergence)?;
    evals.sort_by(f64::total_cmp);
    Ok(evals)
}

/// Squared singular values of `a`, ascending (the eigenvalues of `A Aᵀ`, accurate when small).
fn svd_eigenvalues(a: &Mat<f64>) -> Result<Vec<f64>, NoConvergence> {
    let mut evals: Vec<f64> = a.singular_values().map_err(|_| NoConvergence)?.iter().map(|s| s * s).collect();
    evals.sort_by(f64::total_cmp);
    Ok(evals)
}

/// Eigenvalues of `WᵀW` (`M` of them, ascending, nonnegative) for one `out × in` matrix.
fn matrix_eigenvalues(
    out: usize,
    inp: usize,
    w: impl Fn(usize, usize) -> f64,
) -> Result<Vec<f64>, NoConvergence> {
    let a = oriented(out, inp, w);
    let evals = gram_eigenvalues(&a)?;
    let (lo, hi) = (evals.first().copied().unwrap_or(0.0), evals.last().copied().unwrap_or(0.0));
    if hi > 0.0 && lo < GRAM_RANGE * hi {
        return svd_eigenvalues(&a);
    }
    Ok(evals.into_iter().map(|e| e.max(0.0)).collect())
}

/// The pooled ESD of a 2-D or 4-D weight (row-major `data`), ascending, each matrix multiplied by
/// `scale` first (eigenvalues by `scale²`). Matrices are computed in parallel.
pub fn pooled_esd(g: &Geometry, data: &[f32], scale: f64) -> Result<Vec<f64>, NoConvergence> {
    let (kh, kw) = g.kernel;
    let (out, inp) = (g.out, g.inp);
    let per_matrix: Result<Vec<Vec<f64>>, NoConvergence> = (0..kh * kw)
        .into_par_iter()
        .map(|pos| {
            let (i, j) = (pos / kw, pos % kw);
            matrix_eigenvalues(out, inp, |o, c| f64::from(data[((o * inp + c) * kh + i) * kw + j]) * scale)
        })
        .collect();
    let mut evals: Vec<f64> = per_matrix?.concat();
    evals.sort_by(f64::total_cmp);
    Ok(evals)
}

/// Eigenvalues of the covariance (unnormalised) of the rows of `data` seen as `[rows, cols]`, after
/// subtracting the mean row: the energies of the principal components, descending.
pub fn pca_energies(rows: usize, cols: usize, data: &[f32]) -> Result<Vec<f64>, NoConvergence> {
    let mut mean = vec![0.0f64; cols];
    for r in 0..rows {
        for (m, &v) in mean.iter_mut().zip(&data[r * cols..(r + 1) * cols]) {
            *m += f64::from(v);
        }
    }
    for m in &mut mean {
        *m /= rows as f64;
    }
    let a = oriented(rows, cols, |r, c| f64::from(data[r * cols + c]) - mean[c]);
    let mut evals = gram_eigenvalues(&a)?;
    evals.reverse();
    Ok(evals.into_iter().map(|e| e.max(0.0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_slices_follow_weightwatcher() {
        // [out=2, in=3, kh=1, kw=2]: position (0, j) is the 2×3 matrix W[:, :, 0, j].
        let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let g = Geometry::of(&[2, 3, 1, 2]).expect("4-D");
        assert_eq!((g.n(), g.m(), g.rf(), g.num_evals()), (3, 2, 2, 4));
        let esd = pooled_esd(&g, &data, 1.0).expect("esd");
        let mut expected = Vec::new();
        for j in 0..2 {
            let w = |o: usize, c: usize| f64::from(data[(o * 3 + c) * 2 + j]);
            // Eigenvalues of the 2×2 W Wᵀ in closed form.
            let (a, b, d) = (
                (0..3).map(|c| w(0, c) * w(0, c)).sum::<f64>(),
                (0..3).map(|c| w(0, c) * w(1, c)).sum::<f64>(),
                (0..3).map(|c| w(1, c) * w(1, c)).sum::<f64>(),
            );
            let (t, det) = (a + d, a * d - b * b);
            let disc = (t * t / 4.0 - det).sqrt();
            expected.extend([t / 2.0 - disc, t / 2.0 + disc]);
        }
        expected.sort_by(f64::total_cmp);
        for (e, x) in esd.iter().zip(&expected) {
            assert!((e - x).abs() < 1e-9 * x.abs().max(1.0), "{esd:?} vs {expected:?}");
        }
    }

    #[test]
    fn rank_deficient_matrices_keep_their_zero_eigenvalues() {
        // Rank 1: u vᵀ with 4 × 6. The SVD fallback gives zeros to ~1e-30, not the Gram's ~1e-16.
        let (u, v) = ([1.0f32, -2.0, 0.5, 3.0], [0.25f32, 1.0, -1.0, 2.0, 0.75, -0.5]); // exact products
        let data: Vec<f32> = u.iter().flat_map(|a| v.iter().map(move |b| a * b)).collect();
        let g = Geometry::of(&[4, 6]).expect("2-D");
        let esd = pooled_esd(&g, &data, 1.0).expect("esd");
        let top: f64 = esd[3];
        let expected: f64 =
            u.iter().map(|a| f64::from(a * a)).sum::<f64>() * v.iter().map(|b| f64::from(b * b)).sum::<f64>();
        assert!((top - expected).abs() < 1e-9 * expected);
        assert!(esd[..3].iter().all(|e| *e < 1e-24 * top), "{esd:?}");
    }

    #[test]
    fn pca_energy_is_centred() {
        // Rows that differ only by a constant offset along one direction: one component after centring.
        let data = [1.0f32, 2.0, 3.0, 2.0, 3.0, 4.0, 3.0, 4.0, 5.0];
        let e = pca_energies(3, 3, &data).expect("pca");
        assert!((e[0] - 6.0).abs() < 1e-9, "{e:?}");
        assert!(e[1..].iter().all(|x| x.abs() < 1e-9), "{e:?}");
    }
}
