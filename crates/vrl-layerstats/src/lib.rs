//! Per-layer statistics of a network's weights, without tch: for every 2-D or 4-D weight tensor, the
//! power-law exponent α of the empirical spectral density (ESD) of `WᵀW`, the spectral entropy, the
//! L2 (Frobenius) norm and the energy share of the top-k principal components. Layers are computed
//! in parallel (rayon); eigenvalues come from `faer` (pure Rust, no LAPACK).
//!
//! The ESD and α follow WeightWatcher 0.7.7 (`analyze()` with its defaults), and are checked against
//! it (`python/layerstats_reference.py`): a convolution kernel `[out, in, kh, kw]` is `kh·kw`
//! matrices `W[:, :, i, j]` whose eigenvalues are pooled into one ESD, each matrix scaled by `√½`
//! (`conv2d_norm`); α is the maximum-likelihood exponent of the tail `λ ≥ x_min` of the eigenvalues
//! above `1e-5`, with `x_min` chosen by the Kolmogorov–Smirnov distance ([`fit_power_law`]). A
//! layer whose α cannot be fitted says why ([`NotFitted`]) instead of carrying a number. See
//! `docs/layerstats.md` for the definitions.
//!
//! ```
//! use vrl_layerstats::{AlphaFit, Options, analyze};
//!
//! // A 64 × 32 dense weight and a 16 × 8 × 3 × 3 convolution kernel, filled deterministically.
//! let noise = |i: usize| ((i as f32 * 12.9898).sin() * 43758.547).fract() - 0.5;
//! let dense: Vec<f32> = (0..64 * 32).map(noise).collect();
//! let conv: Vec<f32> = (0..16 * 8 * 9).map(|i| noise(i + 7)).collect();
//! let bias = vec![0.0f32; 64];
//! let tensors = [
//!     ("fc.weight", vec![64, 32], dense),
//!     ("fc.bias", vec![64], bias), // 1-D: skipped
//!     ("conv.weight", vec![16, 8, 3, 3], conv),
//! ];
//! let stats = analyze(&tensors, &Options::default()).unwrap();
//! assert_eq!(stats.len(), 2);
//! assert_eq!(stats[0].num_evals, 32); // min(64, 32)
//! assert_eq!(stats[1].num_evals, 8 * 9); // 9 kernel positions of min(16, 8) eigenvalues, pooled
//! for s in &stats {
//!     assert!(s.l2.unwrap() > 0.0 && s.entropy.unwrap() <= 1.0);
//!     match &s.fit {
//!         AlphaFit::Fitted(fit) => assert!(fit.alpha > 1.0),
//!         AlphaFit::NotFitted(why) => println!("{}: no α ({why})", s.name),
//!     }
//! }
//! let csv = vrl_layerstats::to_csv(&stats);
//! assert!(csv.starts_with("name,shape,alpha,entropy,l2,pca_topk_energy,"));
//! ```

mod esd;
mod powerlaw;
mod read;

pub use esd::{GRAM_RANGE, LayerKind};
pub use powerlaw::{FitMethod, NotFitted, PowerLawFit, SMALL_N, fit_power_law};
pub use read::{NamedTensor, load_safetensors};

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::esd::Geometry;

/// Errors from bad input. Each names the file or tensor and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum LayerStatsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file (truncated, bad header, offsets out of range).
    #[error("{path} is not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the safetensors reader found.
        message: String,
    },
    /// A tensor's data does not match its shape.
    #[error("tensor `{name}` has shape {shape:?} ({expected} values) but {found} values")]
    Shape {
        /// The tensor.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Values the shape implies.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// An option is out of range.
    #[error("invalid option {option} = {value}: {expected}")]
    Options {
        /// The option.
        option: &'static str,
        /// Its value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// An eigenvalue solver did not converge (a bug or pathological weights).
    #[error("tensor `{name}`: the eigenvalue solver did not converge")]
    NoConvergence {
        /// The tensor.
        name: String,
    },
}

/// How the statistics are computed. The defaults are WeightWatcher 0.7.7's `analyze()` defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Principal components in [`LayerStats::pca_topk_energy`] (default 10).
    pub top_k: usize,
    /// Fewest eigenvalues (in the ESD, and above `eval_threshold`) to fit α (WeightWatcher's
    /// `min_evals`, default 8).
    pub min_evals: usize,
    /// Layers with more eigenvalues get no ESD statistics, only the L2 norm (WeightWatcher's
    /// `max_evals`, default 15000; `None`: no limit).
    pub max_evals: Option<usize>,
    /// Layers whose larger matrix dimension is above this get no ESD statistics (WeightWatcher's
    /// `max_N`, default 50000; `None`: no limit).
    pub max_n: Option<usize>,
    /// Eigenvalues at or below this are left out of the α fit (WeightWatcher's `EVALS_THRESH`, 1e-5).
    pub eval_threshold: f64,
    /// Scale convolution matrices by `√½` before the ESD (WeightWatcher's `conv2d_norm`, default on).
    /// It halves the eigenvalues (and so `xmin` and `spectral_norm`) and leaves α and entropy alone,
    /// except through `eval_threshold`.
    pub conv2d_norm: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            top_k: 10,
            min_evals: 8,
            max_evals: Some(15_000),
            max_n: Some(50_000),
            eval_threshold: 1e-5,
            conv2d_norm: true,
        }
    }
}

impl Options {
    fn check(&self) -> Result<(), LayerStatsError> {
        if self.top_k == 0 {
            return Err(LayerStatsError::Options {
                option: "top_k",
                value: "0".into(),
                expected: "a positive number of components",
            });
        }
        if !(self.eval_threshold.is_finite() && self.eval_threshold >= 0.0) {
            return Err(LayerStatsError::Options {
                option: "eval_threshold",
                value: self.eval_threshold.to_string(),
                expected: "a finite number ≥ 0",
            });
        }
        Ok(())
    }
}

/// The power-law fit of a layer's ESD, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AlphaFit {
    /// α was fitted.
    Fitted(PowerLawFit),
    /// α was not fitted, for the reason given.
    NotFitted(NotFitted),
}

/// The statistics of one weight tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    /// The tensor's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Dense (2-D) or convolution (4-D).
    pub kind: LayerKind,
    /// The larger matrix dimension (`max(out, in)`).
    pub n: usize,
    /// The smaller matrix dimension (`min(out, in)`): eigenvalues per matrix.
    pub m: usize,
    /// Matrices pooled into the ESD: `kh·kw` for a convolution, 1 for a dense weight.
    pub rf: usize,
    /// Eigenvalues in the ESD (`m·rf`; 0 when the ESD was not computed).
    pub num_evals: usize,
    /// The power-law exponent of the ESD, or why it was not fitted.
    pub fit: AlphaFit,
    /// WeightWatcher's spectral entropy: `-Σ p ln p / ln(rank)` with `p = λ / Σλ` over the ESD
    /// (`None` without an ESD, or for rank ≤ 1).
    pub entropy: Option<f64>,
    /// The Frobenius norm `√Σw²` of the tensor as stored (`None` if a weight is not finite).
    pub l2: Option<f64>,
    /// The largest ESD eigenvalue (the squared spectral norm, after `conv2d_norm`).
    pub spectral_norm: Option<f64>,
    /// The share of the variance of the rows of `W` reshaped to `[out, in·kh·kw]` (centred) in its
    /// top `top_k` principal components (`None` without variance).
    pub pca_topk_energy: Option<f64>,
    /// The `k` of `pca_topk_energy`.
    pub top_k: usize,
}

impl LayerStats {
    /// α, when fitted.
    pub fn alpha(&self) -> Option<f64> {
        match &self.fit {
            AlphaFit::Fitted(f) => Some(f.alpha),
            AlphaFit::NotFitted(_) => None,
        }
    }
}

/// Statistics of every 2-D and 4-D tensor in `tensors` (`(name, shape, row-major data)`), in order;
/// tensors of other ranks (biases, norms) are skipped. Layers are computed in parallel.
pub fn analyze<N, S, D>(tensors: &[(N, S, D)], options: &Options) -> Result<Vec<LayerStats>, LayerStatsError>
where
    N: AsRef<str> + Sync,
    S: AsRef<[usize]> + Sync,
    D: AsRef<[f32]> + Sync,
{
    options.check()?;
    let results: Vec<Option<LayerStats>> = tensors
        .par_iter()
        .map(|(name, shape, data)| layer(name.as_ref(), shape.as_ref(), data.as_ref(), options))
        .collect::<Result<_, _>>()?;
    Ok(results.into_iter().flatten().collect())
}

/// Statistics of every 2-D and 4-D floating-point tensor of a safetensors file, in the file's order
/// (see [`load_safetensors`]).
pub fn analyze_safetensors(path: &Path, options: &Options) -> Result<Vec<LayerStats>, LayerStatsError> {
    options.check()?;
    let tensors = load_safetensors(path)?;
    analyze(&tensors, options)
}

/// WeightWatcher's `matrix_entropy` of an ESD: `rank` counts singular values above
/// `σ_max · n · ε`, and `p = λ/Σλ + 1e-10`.
pub fn spectral_entropy(evals: &[f64], n: usize) -> Option<f64> {
    const EPSILON: f64 = 1e-10;
    let max = evals.iter().copied().fold(0.0f64, f64::max);
    let tol = max.sqrt() * n as f64 * f64::EPSILON;
    let rank = evals.iter().filter(|e| e.sqrt() > tol).count();
    let sum: f64 = evals.iter().sum();
    if sum <= 0.0 || rank < 2 {
        return None;
    }
    let h: f64 = evals
        .iter()
        .map(|e| {
            let p = e / sum + EPSILON;
            -p * p.ln()
        })
        .sum();
    Some(h / (rank as f64 + EPSILON).ln())
}

fn layer(
    name: &str,
    shape: &[usize],
    data: &[f32],
    o: &Options,
) -> Result<Option<LayerStats>, LayerStatsError> {
    let Some(g) = Geometry::of(shape) else { return Ok(None) };
    let expected = shape.iter().product::<usize>();
    if data.len() != expected {
        return Err(LayerStatsError::Shape {
            name: name.into(),
            shape: shape.into(),
            expected,
            found: data.len(),
        });
    }
    let finite = data.iter().all(|v| v.is_finite());
    let mut stats = LayerStats {
        name: name.into(),
        shape: shape.into(),
        kind: g.kind,
        n: g.n(),
        m: g.m(),
        rf: g.rf(),
        num_evals: 0,
        fit: AlphaFit::NotFitted(NotFitted::NonFiniteWeights),
        entropy: None,
        l2: finite.then(|| data.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt()),
        spectral_norm: None,
        pca_topk_energy: None,
        top_k: o.top_k,
    };
    if !finite {
        return Ok(Some(stats));
    }
    let found = g.num_evals();
    let too_large = match (o.max_evals, o.max_n) {
        (Some(max), _) if found > max => Some(NotFitted::TooManyEigenvalues { found, max }),
        (_, Some(max)) if g.n() > max => Some(NotFitted::TooLarge { n: g.n(), max }),
        _ => None,
    };
    if let Some(why) = too_large {
        stats.fit = AlphaFit::NotFitted(why);
        return Ok(Some(stats));
    }
    let no_convergence = |_| LayerStatsError::NoConvergence { name: name.into() };
    let scale = if g.kind == LayerKind::Conv2d && o.conv2d_norm { 0.5f64.sqrt() } else { 1.0 };
    let cols = g.inp * g.rf();
    let (esd, pca) = rayon::join(
        || esd::pooled_esd(&g, data, scale),
        || if g.out == 0 || cols == 0 { Ok(Vec::new()) } else { esd::pca_energies(g.out, cols, data) },
    );
    let (esd, pca) = (esd.map_err(no_convergence)?, pca.map_err(no_convergence)?);

    stats.num_evals = esd.len();
    stats.spectral_norm = esd.last().copied();
    stats.entropy = spectral_entropy(&esd, g.n());
    let total: f64 = pca.iter().sum();
    stats.pca_topk_energy = (total > 0.0).then(|| pca.iter().take(o.top_k).sum::<f64>() / total);
    let above: Vec<f64> = esd.iter().copied().filter(|&e| e > o.eval_threshold).collect();
    let min = o.min_evals.max(2);
    stats.fit = if esd.len() < min || above.len() < min {
        AlphaFit::NotFitted(NotFitted::TooFewEigenvalues {
            found: above.len(),
            min,
            threshold: o.eval_threshold,
        })
    } else {
        match fit_power_law(&above, min) {
            Ok(fit) => AlphaFit::Fitted(fit),
            Err(why) => AlphaFit::NotFitted(why),
        }
    };
    Ok(Some(stats))
}

/// One CSV row per layer: `name, shape, alpha, entropy, l2, pca_topk_energy, top_k, kind, num_evals,
/// xmin, ks_distance, sigma, tail_len, spectral_norm, fit, reason`. Missing values are empty; `fit`
/// is `mle`, `small_n` or `not_fitted`, and `reason` says why α is missing.
pub fn to_csv(stats: &[LayerStats]) -> String {
    let mut out = String::from(
        "name,shape,alpha,entropy,l2,pca_topk_energy,top_k,kind,num_evals,xmin,ks_distance,sigma,tail_len,\
         spectral_norm,fit,reason\n",
    );
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for s in stats {
        let shape: Vec<String> = s.shape.iter().map(usize::to_string).collect();
        let kind = match s.kind {
            LayerKind::Dense => "dense",
            LayerKind::Conv2d => "conv2d",
        };
        let (fit_cols, status, reason) = match &s.fit {
            AlphaFit::Fitted(f) => (
                [num(Some(f.xmin)), num(Some(f.ks_distance)), num(Some(f.sigma)), f.tail_len.to_string()],
                match f.method {
                    FitMethod::Mle => "mle",
                    FitMethod::SmallN => "small_n",
                },
                String::new(),
            ),
            AlphaFit::NotFitted(why) => (Default::default(), "not_fitted", why.to_string()),
        };
        let row = [
            csv_field(&s.name),
            shape.join("x"),
            num(s.alpha()),
            num(s.entropy),
            num(s.l2),
            num(s.pca_topk_energy),
            s.top_k.to_string(),
            kind.into(),
            s.num_evals.to_string(),
            fit_cols[0].clone(),
            fit_cols[1].clone(),
            fit_cols[2].clone(),
            fit_cols[3].clone(),
            num(s.spectral_norm),
            status.into(),
            csv_field(&reason),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// Quotes a CSV field when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i + seed) as f32 * 12.9898).sin() * 43758.547).fract() - 0.5).collect()
    }

    #[test]
    fn skips_other_ranks_and_keeps_order() {
        let t = [
            ("a", vec![8], noise(8, 0)),
            ("b", vec![40, 30], noise(1200, 1)),
            ("c", vec![2, 3, 4], noise(24, 2)),
            ("d", vec![6, 4, 3, 3], noise(216, 3)),
        ];
        let s = analyze(&t, &Options::default()).expect("analyze");
        assert_eq!(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["b", "d"]);
        assert_eq!((s[1].n, s[1].m, s[1].rf, s[1].num_evals), (6, 4, 9, 36));
        assert_eq!(s[1].kind, LayerKind::Conv2d);
    }

    #[test]
    fn bad_input_is_an_error_naming_the_tensor() {
        let t = [("w", vec![4, 5], noise(19, 0))];
        let err = analyze(&t, &Options::default()).expect_err("length mismatch").to_string();
        assert!(err.contains("`w`") && err.contains("[4, 5]") && err.contains("19"), "{err}");
        let zero_k = Options { top_k: 0, ..Options::default() };
        assert!(analyze(&[("w", vec![2, 2], noise(4, 0))], &zero_k).is_err());
    }

    #[test]
    fn too_few_eigenvalues_and_non_finite_weights_are_not_fitted() {
        let mut bad = noise(100, 0);
        bad[3] = f32::NAN;
        let t = [("small", vec![10, 5], noise(50, 1)), ("nan", vec![10, 10], bad)];
        let s = analyze(&t, &Options::default()).expect("analyze");
        assert_eq!(
            s[0].fit,
            AlphaFit::NotFitted(NotFitted::TooFewEigenvalues { found: 5, min: 8, threshold: 1e-5 })
        );
        assert!(s[0].entropy.is_some() && s[0].l2.is_some());
        assert_eq!(s[1].fit, AlphaFit::NotFitted(NotFitted::NonFiniteWeights));
        assert_eq!((s[1].l2, s[1].entropy), (None, None));
        let csv = to_csv(&s);
        assert!(csv.lines().nth(1).expect("row").contains(",not_fitted,too few eigenvalues"), "{csv}");
    }

    #[test]
    fn empty_and_single_row_weights_give_no_invented_numbers() {
        let t = [("empty", vec![0, 5], vec![]), ("row", vec![1, 16], noise(16, 2))];
        let s = analyze(&t, &Options::default()).expect("analyze");
        assert_eq!((s[0].num_evals, s[0].l2, s[0].entropy, s[0].pca_topk_energy), (0, Some(0.0), None, None));
        assert!(matches!(s[0].fit, AlphaFit::NotFitted(NotFitted::TooFewEigenvalues { found: 0, .. })));
        // One eigenvalue (rank 1): no entropy; one row: no variance after centring.
        assert_eq!((s[1].num_evals, s[1].entropy, s[1].pca_topk_energy), (1, None, None));
    }

    #[test]
    fn max_evals_skips_the_esd() {
        let t = [("big", vec![30, 20], noise(600, 0))];
        let o = Options { max_evals: Some(10), ..Options::default() };
        let s = analyze(&t, &o).expect("analyze");
        assert_eq!(s[0].fit, AlphaFit::NotFitted(NotFitted::TooManyEigenvalues { found: 20, max: 10 }));
        assert!(s[0].l2.is_some() && s[0].entropy.is_none());
    }

    #[test]
    fn norms_entropy_and_pca_by_hand() {
        // Orthogonal rows with norms 3 and 4: ESD {9, 16}, entropy of p = (9/25, 16/25) over ln 2.
        let t = [("w", vec![2, 3], vec![3.0f32, 0.0, 0.0, 0.0, 4.0, 0.0])];
        let s = &analyze(&t, &Options { top_k: 1, ..Options::default() }).expect("analyze")[0];
        assert_eq!(s.l2, Some(5.0));
        assert_eq!(s.spectral_norm, Some(16.0));
        let (p, q) = (9.0 / 25.0 + 1e-10, 16.0 / 25.0 + 1e-10);
        let h = (-p * f64::ln(p) - q * f64::ln(q)) / (2.0f64 + 1e-10).ln();
        assert!((s.entropy.expect("entropy") - h).abs() < 1e-12);
        // Two rows: after centring they are ±(1.5, -2, 0): one component holds all the variance.
        assert!((s.pca_topk_energy.expect("pca") - 1.0).abs() < 1e-12);
    }

    #[test]
    fn stats_round_trip_through_json() {
        let t = [("b", vec![40, 30], noise(1200, 1)), ("s", vec![10, 5], noise(50, 1))];
        let s = analyze(&t, &Options::default()).expect("analyze");
        let json = serde_json::to_string(&s).expect("serialize");
        assert!(
            json.contains("\"status\":\"fitted\"") && json.contains("\"reason\":\"too_few_eigenvalues\"")
        );
        let back: Vec<LayerStats> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, s);
    }

    #[test]
    fn csv_quotes_awkward_names() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("plain.weight"), "plain.weight");
    }
}
