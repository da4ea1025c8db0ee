//! Minibatch estimates of the aggregate posterior `q(z) = (1/N) Σₙ q(z|xₙ)` and of its marginals, and
//! the decomposition of the KL term built on them (Chen, Li, Grosse and Duvenaud, 2018).
//!
//! For a minibatch of `M` samples `zⱼ ~ q(z|xⱼ)` from a data set of `N` points, with
//! `ℓⱼᵢ(S) = log q(zⱼ,S | xᵢ) = Σ_{d∈S} log N(zⱼd; μᵢd, σ²ᵢd)` for a set `S` of latent dimensions,
//!
//! `log q(zⱼ,S) ≈ logsumexpᵢ (log wⱼᵢ + ℓⱼᵢ(S))`,
//!
//! with weights `w` from the [`Estimator`]: minibatch-weighted sampling (MWS, as in Chen et al.'s paper and code)
//! uses `wⱼᵢ = 1/(NM)` everywhere; minibatch-stratified sampling (MSS, from their appendix) uses
//! `1/N` on the diagonal (the sample's own point), `(N − M + 1)/(N(M − 1))` for one other point
//! (`i = j + 1`, and `i = 0` for the last row) and `1/(M − 1)` for the rest, so that every row sums to
//! one. Chen et al.'s code puts the wrap-around weight in row `M − 2` instead of row `M − 1` (so one
//! row sums to more than one and another to less); we keep every row a proper set of weights.
//!
//! With `S` the whole code (`log q(z)`), the groups `g` of `s` consecutive dimensions
//! (`Σ_g log q(z_g)`) and single dimensions (`Σ_d log q(z_d)`), the per-sample terms are
//!
//! | term | per sample |
//! |---|---|
//! | index-code MI | `log q(z|x) − log q(z)` |
//! | between-group TC | `log q(z) − Σ_g log q(z_g)` |
//! | within-group TC | `Σ_g log q(z_g) − Σ_d log q(z_d)` |
//! | dimension-wise KL | `Σ_d log q(z_d) − log p(z)` |
//!
//! and they add up to `log q(z|x) − log p(z)`, the one-sample estimate of `KL(q(z|x) ‖ p(z))`, for
//! any weights: the identity is exact up to rounding. With MWS, `N` shifts `log q(z_S)` by
//! `−log N` for every set `S`, so MI by `+log N`, the between-group TC by `(G − 1)·log N`, the
//! within-group TC by `(D − G)·log N` and the dimension-wise KL by `−D·log N`.

use tch::{Kind, Tensor};

use crate::VaeError;
use crate::conv_vae::check_codes;

/// How the aggregate posterior is estimated from a minibatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// Minibatch-weighted sampling, weights `1/(NM)`.
    #[default]
    MinibatchWeighted,
    /// Minibatch-stratified sampling (needs `M ≥ 2`).
    MinibatchStratified,
}

/// Per-sample log-densities of one minibatch, each `[M]`, in the kind of the inputs.
#[derive(Debug)]
pub struct LogDensities {
    /// `log q(zⱼ|xⱼ)`.
    pub log_qz_given_x: Tensor,
    /// `log q(zⱼ)`, estimated.
    pub log_qz: Tensor,
    /// `Σ_g log q(zⱼ,g)` over groups of `group_size` consecutive dimensions, estimated.
    pub log_qz_groups: Tensor,
    /// `Σ_d log q(zⱼd)`, estimated.
    pub log_qz_dims: Tensor,
    /// `log p(zⱼ)` under the standard normal prior.
    pub log_pz: Tensor,
}

/// Batch means of the KL decomposition's terms, as scalar tensors (differentiable).
#[derive(Debug)]
pub struct KlTerms {
    /// Index-code mutual information.
    pub index_code_mi: Tensor,
    /// Total correlation between groups.
    pub tc_between: Tensor,
    /// Total correlation within groups, summed over groups.
    pub tc_within: Tensor,
    /// Dimension-wise KL.
    pub dimwise_kl: Tensor,
    /// `log q(z|x) − log p(z)` on the same samples: the sum of the four terms.
    pub kl: Tensor,
}

impl LogDensities {
    /// The batch means of the decomposition's terms.
    pub fn terms(&self) -> KlTerms {
        KlTerms {
            index_code_mi: (&self.log_qz_given_x - &self.log_qz).mean(None),
            tc_between: (&self.log_qz - &self.log_qz_groups).mean(None),
            tc_within: (&self.log_qz_groups - &self.log_qz_dims).mean(None),
            dimwise_kl: (&self.log_qz_dims - &self.log_pz).mean(None),
            kl: (&self.log_qz_given_x - &self.log_pz).mean(None),
        }
    }
}

/// `log N(z; mean, exp(log_var))` elementwise (broadcasting).
pub fn gaussian_log_density(z: &Tensor, mean: &Tensor, log_var: &Tensor) -> Tensor {
    let diff = z - mean;
    (&diff * &diff * (-log_var).exp() + log_var + (2.0 * std::f64::consts::PI).ln()) * -0.5
}

/// The `[M, M]` matrix of log-weights `log wⱼᵢ` (row `j`: the sample, column `i`: the posterior).
///
/// # Errors
/// When `batch < 1`, when `dataset_size < batch`, or for MSS when `batch < 2`.
pub fn log_importance_weights(
    estimator: Estimator,
    batch: usize,
    dataset_size: usize,
    options: (Kind, tch::Device),
) -> Result<Tensor, VaeError> {
    let min_batch = if estimator == Estimator::MinibatchStratified { 2 } else { 1 };
    if batch < min_batch {
        return Err(VaeError::Hyperparameter {
            name: "batch size".into(),
            value: batch.to_string(),
            expected: format!("at least {min_batch} for {estimator:?}"),
        });
    }
    if dataset_size < batch {
        return Err(VaeError::Hyperparameter {
            name: "dataset_size".into(),
            value: dataset_size.to_string(),
            expected: format!("at least the batch size {batch}"),
        });
    }
    let (n, m) = (dataset_size as f64, batch as f64);
    let b = batch as i64;
    Ok(match estimator {
        Estimator::MinibatchWeighted => Tensor::full([b, b], -(n * m).ln(), options),
        Estimator::MinibatchStratified => {
            let m1 = m - 1.0;
            let strat = (n - m1) / (n * m1);
            let mut w = vec![1.0 / m1; batch * batch];
            for j in 0..batch {
                w[j * batch + j] = 1.0 / n;
                w[j * batch + (j + 1) % batch] = strat;
            }
            Tensor::from_slice(&w).view([b, b]).to_kind(options.0).to_device(options.1).log()
        }
    })
}

/// Estimates the log-densities of the decomposition for samples `z` of posteriors
/// `N(mean, exp(log_var))`, all `[M, D]`, from a data set of `dataset_size` points, with groups of
/// `group_size` consecutive dimensions (`None`: groups are not computed and `log_qz_groups` is
/// `log_qz_dims`, i.e. single-dimension groups).
///
/// Memory is `M²·D` values; the computation runs in the inputs' kind and device.
///
/// # Errors
/// On mismatched or non-matrix shapes, a group size that is zero or does not divide `D`, and the
/// cases of [`log_importance_weights`].
pub fn log_densities(
    z: &Tensor,
    mean: &Tensor,
    log_var: &Tensor,
    group_size: Option<usize>,
    estimator: Estimator,
    dataset_size: usize,
) -> Result<LogDensities, VaeError> {
    let d = *z.size().last().unwrap_or(&0);
    check_codes("z", z, d)?;
    let b = z.size()[0];
    for (name, t) in [("mean", mean), ("log_var", log_var)] {
        if t.size() != [b, d] || !t.is_floating_point() {
            return Err(VaeError::Shape {
                name: name.into(),
                found: t.size(),
                expected: format!("a floating-point [{b}, {d}] matrix like z"),
            });
        }
    }
    if let Some(s) = group_size
        && (s == 0 || d % s as i64 != 0)
    {
        return Err(VaeError::Hyperparameter {
            name: "group_size".into(),
            value: s.to_string(),
            expected: format!("a positive divisor of the latent dimension {d}"),
        });
    }
    let log_w = log_importance_weights(estimator, b as usize, dataset_size, (z.kind(), z.device()))?;
    // [j, i, d]: log q(z_jd | x_i).
    let log_q = gaussian_log_density(&z.unsqueeze(1), &mean.unsqueeze(0), &log_var.unsqueeze(0));
    let log_w3 = log_w.unsqueeze(-1);
    let marginal = |l: &Tensor| (l + &log_w3).logsumexp(1, false).sum_dim_intlist(-1, false, None);
    let log_qz = (log_q.sum_dim_intlist(-1, false, None) + &log_w).logsumexp(1, false);
    let log_qz_dims = marginal(&log_q);
    let log_qz_groups = match group_size {
        Some(s) => marginal(&log_q.view([b, b, d / s as i64, s as i64]).sum_dim_intlist(-1, false, None)),
        None => log_qz_dims.shallow_clone(),
    };
    let zeros = z.zeros_like();
    Ok(LogDensities {
        log_qz_given_x: gaussian_log_density(z, mean, log_var).sum_dim_intlist(-1, false, None),
        log_qz,
        log_qz_groups,
        log_qz_dims,
        log_pz: gaussian_log_density(z, &zeros, &zeros).sum_dim_intlist(-1, false, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

    fn batch(seed: i64, b: i64, d: i64) -> (Tensor, Tensor, Tensor) {
        tch::manual_seed(seed);
        let mean = Tensor::randn([b, d], F64);
        let log_var = Tensor::randn([b, d], F64) * 0.5 - 1.0;
        let z = &mean + (&log_var * 0.5).exp() * Tensor::randn([b, d], F64);
        (z, mean, log_var)
    }

    fn v(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    #[test]
    fn mss_rows_sum_to_one() {
        for (m, n) in [(2, 2), (5, 7), (64, 737_280)] {
            let w = log_importance_weights(Estimator::MinibatchStratified, m, n, F64).expect("weights").exp();
            let rows = w.sum_dim_intlist(1, false, None);
            let err = v(&(rows - 1.0).abs().max());
            assert!(err < 1e-12, "m={m} n={n}: {err}");
            assert!((w.double_value(&[0, 0]) - 1.0 / n as f64).abs() < 1e-15);
        }
    }

    #[test]
    fn terms_add_up_to_the_kl_estimate() {
        let (z, mean, log_var) = batch(0, 32, 10);
        for estimator in [Estimator::MinibatchWeighted, Estimator::MinibatchStratified] {
            for s in [1, 2, 5, 10] {
                let t =
                    log_densities(&z, &mean, &log_var, Some(s), estimator, 1000).expect("densities").terms();
                let sum = v(&t.index_code_mi) + v(&t.tc_between) + v(&t.tc_within) + v(&t.dimwise_kl);
                assert!((sum - v(&t.kl)).abs() < 1e-10 * v(&t.kl).abs().max(1.0), "{estimator:?} s={s}");
            }
        }
    }

    #[test]
    fn dataset_size_shifts_mws_terms_as_the_formula_says() {
        let (z, mean, log_var) = batch(1, 16, 10);
        let (n1, n2) = (100usize, 737_280usize);
        let shift = (n2 as f64 / n1 as f64).ln();
        for s in [1, 2, 5, 10] {
            let g = (10 / s) as f64;
            let t1 = log_densities(&z, &mean, &log_var, Some(s), Estimator::MinibatchWeighted, n1)
                .expect("n1")
                .terms();
            let t2 = log_densities(&z, &mean, &log_var, Some(s), Estimator::MinibatchWeighted, n2)
                .expect("n2")
                .terms();
            let close = |a: &Tensor, b: &Tensor, want: f64| {
                let got = v(b) - v(a);
                assert!((got - want).abs() < 1e-9, "s={s}: shift {got}, expected {want}");
            };
            close(&t1.index_code_mi, &t2.index_code_mi, shift);
            close(&t1.tc_between, &t2.tc_between, (g - 1.0) * shift);
            close(&t1.tc_within, &t2.tc_within, (10.0 - g) * shift);
            close(&t1.dimwise_kl, &t2.dimwise_kl, -10.0 * shift);
            close(&t1.kl, &t2.kl, 0.0);
        }
        // MSS depends on N through the weights; it changes too, the MI by less than log(N2/N1).
        let mss = |n| {
            log_densities(&z, &mean, &log_var, Some(1), Estimator::MinibatchStratified, n)
                .expect("mss")
                .terms()
        };
        let (a, b) = (mss(n1), mss(n2));
        let d = v(&b.index_code_mi) - v(&a.index_code_mi);
        assert!(d > 0.1 && d <= shift + 1e-9, "{d}");
    }

    #[test]
    fn groups_of_one_and_of_all() {
        let (z, mean, log_var) = batch(2, 8, 6);
        let one = log_densities(&z, &mean, &log_var, Some(1), Estimator::MinibatchWeighted, 50).expect("s=1");
        assert_eq!(v(&one.terms().tc_within), 0.0);
        let all = log_densities(&z, &mean, &log_var, Some(6), Estimator::MinibatchWeighted, 50).expect("s=D");
        assert!(v(&all.terms().tc_between).abs() < 1e-12);
    }

    #[test]
    fn mss_matches_a_direct_loop() {
        let (z, mean, log_var) = batch(3, 5, 4);
        let n = 11usize;
        let got =
            log_densities(&z, &mean, &log_var, Some(2), Estimator::MinibatchStratified, n).expect("mss");
        let m = 5usize;
        let weight = |j: usize, i: usize| {
            if i == j {
                1.0 / n as f64
            } else if i == (j + 1) % m {
                (n as f64 - (m - 1) as f64) / (n as f64 * (m - 1) as f64)
            } else {
                1.0 / (m - 1) as f64
            }
        };
        let lq = |j: usize, i: usize, d: usize| {
            let (zj, mi, lv) = (
                z.double_value(&[j as i64, d as i64]),
                mean.double_value(&[i as i64, d as i64]),
                log_var.double_value(&[i as i64, d as i64]),
            );
            -0.5 * ((zj - mi).powi(2) * (-lv).exp() + lv + (2.0 * std::f64::consts::PI).ln())
        };
        for j in 0..m {
            let dens = |dims: &[usize]| -> f64 {
                (0..m)
                    .map(|i| weight(j, i) * dims.iter().map(|&d| lq(j, i, d)).sum::<f64>().exp())
                    .sum::<f64>()
                    .ln()
            };
            let joint = dens(&[0, 1, 2, 3]);
            let groups = dens(&[0, 1]) + dens(&[2, 3]);
            let dims: f64 = (0..4).map(|d| dens(&[d])).sum();
            assert!((got.log_qz.double_value(&[j as i64]) - joint).abs() < 1e-10);
            assert!((got.log_qz_groups.double_value(&[j as i64]) - groups).abs() < 1e-10);
            assert!((got.log_qz_dims.double_value(&[j as i64]) - dims).abs() < 1e-10);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let (z, mean, log_var) = batch(4, 4, 6);
        let e = log_densities(&z, &mean, &log_var, Some(4), Estimator::MinibatchWeighted, 10).unwrap_err();
        assert!(e.to_string().contains("group_size"), "{e}");
        let e = log_densities(&z, &mean, &log_var, Some(2), Estimator::MinibatchWeighted, 3).unwrap_err();
        assert!(e.to_string().contains("dataset_size"), "{e}");
        let e = log_densities(&z, &mean.narrow(0, 0, 2), &log_var, None, Estimator::MinibatchWeighted, 10)
            .unwrap_err();
        assert!(e.to_string().contains("mean"), "{e}");
        let (z1, m1, l1) = batch(5, 1, 6);
        assert!(log_densities(&z1, &m1, &l1, None, Estimator::MinibatchStratified, 10).is_err());
    }
}
