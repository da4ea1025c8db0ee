//! Maximum-likelihood fit of a continuous power law `p(x) ∝ x^(-α)` for `x ≥ x_min`, with `x_min`
//! chosen by the Kolmogorov–Smirnov distance, as WeightWatcher 0.7.7 (`WW_powerlaw.WWFit`) and the
//! `powerlaw` package (Clauset, Shalizi and Newman 2009) do.
//!
//! For each candidate `x_min` — every sorted value but the largest — the tail `x ≥ x_min` of `n`
//! values gives `α = 1 + n / Σ ln(x_i / x_min)` and the KS distance
//! `D = max_k |1 - (x_k / x_min)^(1-α) - k/n|` (`k = 0..n`, the empirical CDF just below each point);
//! the candidate with the smallest `D` wins (the first of equals). A candidate with `α ≤ 1` has
//! `D = 1`. With fewer than [`SMALL_N`] values, WeightWatcher's small-sample variant is used: tails of
//! at least 8 values, the bias-corrected `α = 1 + (n - 1) / Σ ln(x_i / x_min)`, and again the smallest
//! `D`.

use serde::{Deserialize, Serialize};

/// Below this many values, WeightWatcher's small-sample fit is used (its `SMALL_N_CUTOFF`).
pub const SMALL_N: usize = 20;

/// The small-sample fit's shortest tail (WeightWatcher's `k_min`).
const SMALL_N_MIN_TAIL: usize = 8;

/// Which estimator produced a fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitMethod {
    /// Plain MLE, `x_min` by the smallest KS distance (at least [`SMALL_N`] values).
    Mle,
    /// WeightWatcher's small-sample variant (bias-corrected MLE on tails of at least 8 values).
    SmallN,
}

/// A fitted power law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerLawFit {
    /// The exponent α of `p(x) ∝ x^(-α)`.
    pub alpha: f64,
    /// The lower bound of the fitted tail.
    pub xmin: f64,
    /// The KS distance between the tail and the fitted law.
    pub ks_distance: f64,
    /// The standard error of α, `(α - 1) / √n`.
    pub sigma: f64,
    /// Values in the tail (`x ≥ x_min`).
    pub tail_len: usize,
    /// The estimator.
    pub method: FitMethod,
}

/// Why no power law was fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NotFitted {
    /// Too few values to fit.
    #[error("too few eigenvalues to fit a power law ({found} above the threshold {threshold:e}; need {min})")]
    TooFewEigenvalues {
        /// Values available for the fit.
        found: usize,
        /// The least number accepted.
        min: usize,
        /// Values at or below this were left out.
        threshold: f64,
    },
    /// The layer has more eigenvalues than the configured limit, so its ESD was not computed.
    #[error("ESD not computed: {found} eigenvalues (limit {max}, WeightWatcher's max_evals)")]
    TooManyEigenvalues {
        /// Eigenvalues the ESD would have.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// The layer's larger matrix dimension is above the configured limit, so its ESD was not computed.
    #[error("ESD not computed: matrix dimension {n} (limit {max}, WeightWatcher's max_N)")]
    TooLarge {
        /// The larger matrix dimension.
        n: usize,
        /// The limit.
        max: usize,
    },
    /// The weights contain NaN or infinity.
    #[error("the weights are not all finite")]
    NonFiniteWeights,
    /// A value given to the fit is not a positive finite number.
    #[error("cannot fit a power law to {value} (at index {index}): values must be positive and finite")]
    InvalidValue {
        /// The offending value.
        value: f64,
        /// Its index in the input.
        index: usize,
    },
    /// Every candidate tail is degenerate (equal values), so α is infinite or undefined.
    #[error("the tail is degenerate (equal values): α is not finite")]
    Degenerate,
}

/// Fits a power law to `values` (any order; all positive and finite), as WeightWatcher does.
///
/// Needs at least `max(min_len, 2)` values.
pub fn fit_power_law(values: &[f64], min_len: usize) -> Result<PowerLawFit, NotFitted> {
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v > 0.0)) {
        return Err(NotFitted::InvalidValue { value, index });
    }
    let min = min_len.max(2);
    if values.len() < min {
        return Err(NotFitted::TooFewEigenvalues { found: values.len(), min, threshold: 0.0 });
    }
    let mut x = values.to_vec();
    x.sort_by(f64::total_cmp);
    let logs: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    // suffix[i] = Σ_{j ≥ i} ln x_j
    let mut suffix = vec![0.0; x.len() + 1];
    for i in (0..x.len()).rev() {
        suffix[i] = suffix[i + 1] + logs[i];
    }
    let fit = if x.len() < SMALL_N { fit_small_n(&x, &logs, &suffix) } else { fit_mle(&x, &logs, &suffix) };
    if fit.alpha.is_finite() && fit.ks_distance.is_finite() { Ok(fit) } else { Err(NotFitted::Degenerate) }
}

/// `max_k |1 - (x_{i+k} / x_i)^(1-α) - k/n|` over the tail starting at `i`; stops early (returning
/// `None`) once the running maximum reaches `bound`, when the candidate cannot be the smallest.
fn ks_distance(logs: &[f64], i: usize, alpha: f64, bound: f64) -> Option<f64> {
    let n = (logs.len() - i) as f64;
    let (log_xmin, exponent) = (logs[i], 1.0 - alpha);
    let mut d = 0.0f64;
    for (k, &l) in logs[i..].iter().enumerate() {
        // (x / x_min)^(1-α) as numpy computes it: 1 at x = x_min even for infinite α.
        let ratio_pow = if l == log_xmin { 1.0 } else { (exponent * (l - log_xmin)).exp() };
        let fit = 1.0 - ratio_pow;
        let diff = (fit - k as f64 / n).abs();
        if diff > d {
            d = diff;
            if d >= bound {
                return None;
            }
        }
    }
    Some(d)
}

/// WeightWatcher's `fit_power_law_standard`: every candidate but the largest value.
fn fit_mle(x: &[f64], logs: &[f64], suffix: &[f64]) -> PowerLawFit {
    let len = x.len();
    let (mut best, mut best_d, mut best_alpha) = (0, f64::INFINITY, f64::NAN);
    for i in 0..len - 1 {
        let n = (len - i) as f64;
        let alpha = 1.0 + n / (suffix[i] - n * logs[i]);
        let d = if alpha > 1.0 {
            // Infinite α (all values equal) gives D = (n-1)/n, as numpy's arithmetic does.
            match ks_distance(logs, i, alpha, best_d) {
                Some(d) => d,
                None => continue,
            }
        } else {
            1.0
        };
        if d < best_d {
            (best, best_d, best_alpha) = (i, d, alpha);
        }
    }
    let n = len - best;
    PowerLawFit {
        alpha: best_alpha,
        xmin: x[best],
        ks_distance: best_d,
        sigma: (best_alpha - 1.0) / (n as f64).sqrt(),
        tail_len: n,
        method: FitMethod::Mle,
    }
}

/// WeightWatcher's `fit_powerlaw_smallN` as `WWFit` uses it: tails of at least 8 values, the
/// bias-corrected α, and the candidate with the smallest KS distance (`WWFit.__init__` selects by
/// `argmin(Ds)` after the small-sample routine, so its penalised `J = D - 0.868/√n` only decides
/// whether any candidate was valid). Without a valid candidate, the whole sample is the tail.
fn fit_small_n(x: &[f64], logs: &[f64], suffix: &[f64]) -> PowerLawFit {
    let len = x.len();
    let bias_corrected = |i: usize| {
        let n = (len - i) as f64;
        let s = suffix[i] - n * logs[i];
        (s > 1e-12).then(|| 1.0 + (n - 1.0) / s)
    };
    let mut best: Option<(usize, f64, f64)> = None; // (i, D, α)
    for i in 0..len - 1 {
        if len - i < SMALL_N_MIN_TAIL {
            continue;
        }
        let Some(alpha) = bias_corrected(i).filter(|&a| a > 1.0) else { continue };
        let bound = best.map_or(f64::INFINITY, |(_, d, _)| d);
        if let Some(d) = ks_distance(logs, i, alpha, bound) {
            best = Some((i, d, alpha));
        }
    }
    let (i, d, alpha) = best.unwrap_or_else(|| match bias_corrected(0) {
        Some(alpha) => (0, ks_distance(logs, 0, alpha, f64::INFINITY).unwrap_or(f64::NAN), alpha),
        None => (0, f64::NAN, f64::NAN),
    });
    let n = len - i;
    PowerLawFit {
        alpha,
        xmin: x[i],
        ks_distance: d,
        sigma: (alpha - 1.0) / (n as f64).sqrt(),
        tail_len: n,
        method: FitMethod::SmallN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 uniforms in (0, 1).
    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        /// A draw from `p(x) ∝ x^(-α)`, `x ≥ xmin` (inverse CDF).
        fn pareto(&mut self, alpha: f64, xmin: f64) -> f64 {
            xmin * (1.0 - self.uniform()).powf(-1.0 / (alpha - 1.0))
        }
    }

    #[test]
    fn recovers_the_exponent_of_a_pure_power_law() {
        for (seed, alpha) in [(1, 1.8), (2, 2.5), (3, 4.0)] {
            let mut rng = Rng(seed);
            let n = 4000;
            let x: Vec<f64> = (0..n).map(|_| rng.pareto(alpha, 0.5)).collect();
            let fit = fit_power_law(&x, 8).expect("fit");
            assert_eq!(fit.method, FitMethod::Mle);
            // The KS choice of x_min may cut a little of the head; α stays within 4 standard errors.
            let se = (alpha - 1.0) / (fit.tail_len as f64).sqrt();
            assert!((fit.alpha - alpha).abs() < 4.0 * se, "α = {alpha}: fitted {fit:?}");
            assert!(fit.tail_len > n / 4, "α = {alpha}: tail of {} values", fit.tail_len);
            assert!((fit.sigma - (fit.alpha - 1.0) / (fit.tail_len as f64).sqrt()).abs() < 1e-12);
        }
    }

    #[test]
    fn finds_xmin_above_a_bulk() {
        // A uniform bulk on [0.1, 1) below a power-law tail from x_min = 1: the fit must find the
        // tail's start and ignore the bulk (a fit from the smallest value would give α near 1.4).
        let mut rng = Rng(7);
        let mut x: Vec<f64> = (0..3000).map(|_| 0.1 + 0.9 * rng.uniform()).collect();
        x.extend((0..3000).map(|_| rng.pareto(3.0, 1.0)));
        let fit = fit_power_law(&x, 8).expect("fit");
        assert!((0.95..1.2).contains(&fit.xmin), "xmin {}", fit.xmin);
        assert!((fit.alpha - 3.0).abs() < 4.0 * 2.0 / (fit.tail_len as f64).sqrt(), "{fit:?}");
    }

    #[test]
    fn pruned_search_equals_the_exhaustive_one() {
        let mut rng = Rng(11);
        let x: Vec<f64> = (0..500).map(|_| rng.pareto(2.2, 1.0) + rng.uniform()).collect();
        let fit = fit_power_law(&x, 8).expect("fit");
        let mut sorted = x.clone();
        sorted.sort_by(f64::total_cmp);
        let logs: Vec<f64> = sorted.iter().map(|v| v.ln()).collect();
        let (mut best_i, mut best_d) = (0, f64::INFINITY);
        for i in 0..sorted.len() - 1 {
            let n = (sorted.len() - i) as f64;
            let alpha = 1.0 + n / logs[i..].iter().map(|l| l - logs[i]).sum::<f64>();
            let d = ks_distance(&logs, i, alpha, f64::INFINITY).expect("no bound");
            if d < best_d {
                (best_i, best_d) = (i, d);
            }
        }
        assert_eq!(fit.xmin, sorted[best_i]);
        assert!((fit.ks_distance - best_d).abs() < 1e-12);
    }

    #[test]
    fn small_samples_use_the_small_n_estimator() {
        let mut rng = Rng(5);
        let x: Vec<f64> = (0..12).map(|_| rng.pareto(3.0, 1.0)).collect();
        let fit = fit_power_law(&x, 8).expect("fit");
        assert_eq!(fit.method, FitMethod::SmallN);
        assert!(fit.tail_len >= SMALL_N_MIN_TAIL);
        // Bias-corrected MLE on the chosen tail.
        let mut s = x.clone();
        s.sort_by(f64::total_cmp);
        let tail: Vec<f64> = s.iter().copied().filter(|v| *v >= fit.xmin).collect();
        let n = tail.len() as f64;
        let sum: f64 = tail.iter().map(|v| (v / fit.xmin).ln()).sum();
        assert!((fit.alpha - (1.0 + (n - 1.0) / sum)).abs() < 1e-12);
    }

    #[test]
    fn refuses_what_it_cannot_fit() {
        assert_eq!(
            fit_power_law(&[1.0, 2.0, 3.0], 8),
            Err(NotFitted::TooFewEigenvalues { found: 3, min: 8, threshold: 0.0 })
        );
        assert!(matches!(fit_power_law(&[1.0, -2.0], 1), Err(NotFitted::InvalidValue { index: 1, .. })));
        assert!(matches!(fit_power_law(&[1.0, f64::NAN], 1), Err(NotFitted::InvalidValue { .. })));
        assert_eq!(fit_power_law(&[2.0; 30], 8), Err(NotFitted::Degenerate));
        assert_eq!(fit_power_law(&[2.0; 10], 8), Err(NotFitted::Degenerate));
    }
}
