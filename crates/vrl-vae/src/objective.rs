//! The training objectives (negative ELBO and its reweightings), minimised per minibatch:
//!
//! | objective | loss |
//! |---|---|
//! | VAE | `rec + KL` |
//! | β-VAE (Higgins et al., 2017) | `rec + β·KL` |
//! | β-TCVAE (Chen et al., 2018) | `rec + α·MI + β·TC + γ·DWKL` |
//! | β-STCVAE | `rec + α·MI + β_between·TC_between + β_within·TC_within + γ·DWKL` |
//!
//! `rec` is the Bernoulli negative log-likelihood (binary cross-entropy with logits, summed over the
//! pixels), `KL` the closed-form `KL(q(z|x) ‖ N(0, I))`, both averaged over the batch; MI, TC and DWKL
//! are the minibatch estimates of [`crate::estimator`]. β-TCVAE's TC is `log q(z) − Σ_d log q(z_d)`
//! computed directly; β-STCVAE splits it over groups of `group_size` consecutive latents, and with
//! `group_size = 1` gives the same loss as β-TCVAE with `β = β_between`.
//!
//! Every objective reports all terms ([`ElboTerms`]); for VAE and β-VAE the decomposition is computed
//! without gradients, for logging only.

use tch::{Kind, Reduction, Tensor};

use crate::VaeError;
use crate::conv_vae::{VaeOutput, gaussian_kl};
use crate::estimator::{Estimator, KlTerms, log_densities};

/// Which objective, with its weights.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Objective {
    /// The plain VAE.
    Vae,
    /// β-VAE: the closed-form KL weighted by `beta`.
    BetaVae {
        /// Weight of the KL term.
        beta: f64,
    },
    /// β-TCVAE.
    #[serde(rename = "beta_tcvae")]
    BetaTcVae {
        /// Weight of the index-code mutual information (1 in Chen et al.).
        alpha: f64,
        /// Weight of the total correlation.
        beta: f64,
        /// Weight of the dimension-wise KL (1 in Chen et al.).
        gamma: f64,
    },
    /// β-STCVAE: total correlation split between and within groups of `group_size` latents.
    #[serde(rename = "beta_stcvae")]
    BetaStcVae {
        /// Latents per group (must divide the latent dimension).
        group_size: usize,
        /// Weight of the index-code mutual information.
        alpha: f64,
        /// Weight of the total correlation between groups.
        beta_between: f64,
        /// Weight of the total correlation within groups.
        beta_within: f64,
        /// Weight of the dimension-wise KL.
        gamma: f64,
    },
}

impl Objective {
    /// β-TCVAE with Chen et al.'s `α = γ = 1`.
    pub fn beta_tcvae(beta: f64) -> Self {
        Objective::BetaTcVae { alpha: 1.0, beta, gamma: 1.0 }
    }

    /// β-STCVAE with `α = γ = 1`.
    pub fn beta_stcvae(group_size: usize, beta_between: f64, beta_within: f64) -> Self {
        Objective::BetaStcVae { group_size, alpha: 1.0, beta_between, beta_within, gamma: 1.0 }
    }

    /// A short name: `vae`, `beta_vae`, `beta_tcvae`, `beta_stcvae`.
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Vae => "vae",
            Objective::BetaVae { .. } => "beta_vae",
            Objective::BetaTcVae { .. } => "beta_tcvae",
            Objective::BetaStcVae { .. } => "beta_stcvae",
        }
    }

    /// Checks that every weight is finite and non-negative and the group size positive.
    ///
    /// # Errors
    /// Naming the first bad value.
    pub fn validate(&self) -> Result<(), VaeError> {
        let weights: Vec<(&str, f64)> = match *self {
            Objective::Vae => vec![],
            Objective::BetaVae { beta } => vec![("beta", beta)],
            Objective::BetaTcVae { alpha, beta, gamma } => {
                vec![("alpha", alpha), ("beta", beta), ("gamma", gamma)]
            }
            Objective::BetaStcVae { group_size, alpha, beta_between, beta_within, gamma } => {
                if group_size == 0 {
                    return Err(VaeError::Hyperparameter {
                        name: "group_size".into(),
                        value: "0".into(),
                        expected: "a positive divisor of the latent dimension".into(),
                    });
                }
                vec![
                    ("alpha", alpha),
                    ("beta_between", beta_between),
                    ("beta_within", beta_within),
                    ("gamma", gamma),
                ]
            }
        };
        for (name, value) in weights {
            if !value.is_finite() || value < 0.0 {
                return Err(VaeError::Hyperparameter {
                    name: name.into(),
                    value: value.to_string(),
                    expected: "a finite, non-negative weight".into(),
                });
            }
        }
        Ok(())
    }
}

/// An objective with the estimator of its minibatch terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VaeLoss {
    /// The objective.
    pub objective: Objective,
    /// How `q(z)` is estimated.
    pub estimator: Estimator,
    /// Size `N` of the data set the minibatches are drawn from (737,280 for dSprites).
    pub dataset_size: usize,
}

/// The ELBO terms of one minibatch, batch means in nats.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ElboTerms {
    /// Bernoulli negative log-likelihood, summed over pixels.
    pub reconstruction: f64,
    /// Index-code mutual information (estimated).
    pub index_code_mi: f64,
    /// Total correlation between groups (estimated; the whole TC for single-latent groups).
    pub tc_between: f64,
    /// Total correlation within groups (estimated; 0 for single-latent groups).
    pub tc_within: f64,
    /// Dimension-wise KL (estimated).
    pub dimwise_kl: f64,
    /// The sum of the four estimated terms, `log q(z|x) − log p(z)` on the batch's samples.
    pub kl: f64,
    /// The closed-form `KL(q(z|x) ‖ p(z))`.
    pub kl_closed_form: f64,
    /// The objective's value (what is minimised).
    pub total: f64,
}

/// The loss of one minibatch: the tensor to backpropagate and its terms for logging.
#[derive(Debug)]
pub struct Loss {
    /// The scalar objective.
    pub loss: Tensor,
    /// Its terms.
    pub terms: ElboTerms,
}

/// Bernoulli negative log-likelihood of `x` (values in `[0, 1]`) under `logits`, per sample, `[B]`.
///
/// # Errors
/// When the shapes differ.
pub fn bernoulli_nll(logits: &Tensor, x: &Tensor) -> Result<Tensor, VaeError> {
    if logits.size() != x.size() || logits.dim() < 2 {
        return Err(VaeError::Shape {
            name: "x".into(),
            found: x.size(),
            expected: format!("the logits' shape {:?}", logits.size()),
        });
    }
    let per_pixel = logits.binary_cross_entropy_with_logits::<Tensor>(x, None, None, Reduction::None);
    Ok(per_pixel.flatten(1, -1).sum_dim_intlist(-1, false, None))
}

impl VaeLoss {
    /// The loss of a minibatch `x` whose forward pass gave `out`.
    ///
    /// # Errors
    /// Bad weights or group size, mismatched shapes, a data set smaller than the batch.
    pub fn compute(&self, x: &Tensor, out: &VaeOutput) -> Result<Loss, VaeError> {
        self.objective.validate()?;
        let rec = bernoulli_nll(&out.logits, x)?.mean(None);
        let kl_cf = gaussian_kl(&out.mean, &out.log_var).mean(None);
        let decompose = |groups| {
            log_densities(&out.z, &out.mean, &out.log_var, groups, self.estimator, self.dataset_size)
                .map(|l| l.terms())
        };
        let (loss, t): (Tensor, KlTerms) = match self.objective {
            Objective::Vae => (&rec + &kl_cf, tch::no_grad(|| decompose(None))?),
            Objective::BetaVae { beta } => (&rec + &kl_cf * beta, tch::no_grad(|| decompose(None))?),
            Objective::BetaTcVae { alpha, beta, gamma } => {
                let t = decompose(None)?;
                (&rec + &t.index_code_mi * alpha + &t.tc_between * beta + &t.dimwise_kl * gamma, t)
            }
            Objective::BetaStcVae { group_size, alpha, beta_between, beta_within, gamma } => {
                let t = decompose(Some(group_size))?;
                let loss = &rec
                    + &t.index_code_mi * alpha
                    + &t.tc_between * beta_between
                    + &t.tc_within * beta_within
                    + &t.dimwise_kl * gamma;
                (loss, t)
            }
        };
        let f = |t: &Tensor| t.to_kind(Kind::Double).double_value(&[]);
        let terms = ElboTerms {
            reconstruction: f(&rec),
            index_code_mi: f(&t.index_code_mi),
            tc_between: f(&t.tc_between),
            tc_within: f(&t.tc_within),
            dimwise_kl: f(&t.dimwise_kl),
            kl: f(&t.kl),
            kl_closed_form: f(&kl_cf),
            total: f(&loss),
        };
        Ok(Loss { loss, terms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConvVae, ConvVaeConfig};
    use tch::{Device, nn};

    fn output(seed: i64) -> (Tensor, VaeOutput) {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = ConvVae::new(&vs.root(), ConvVaeConfig::default()).expect("model");
        let x = Tensor::rand([4, 1, 64, 64], (Kind::Float, Device::Cpu)).round();
        let out = model.forward(&x).expect("forward");
        (x, out)
    }

    #[test]
    fn bad_weights_and_shapes_are_errors() {
        let (x, out) = output(0);
        let loss = |objective| {
            VaeLoss { objective, estimator: Estimator::MinibatchWeighted, dataset_size: 100 }
                .compute(&x, &out)
        };
        let e = loss(Objective::BetaVae { beta: -1.0 }).unwrap_err();
        assert!(e.to_string().contains("`beta` = -1"), "{e}");
        let e = loss(Objective::beta_stcvae(2, f64::NAN, 1.0)).unwrap_err();
        assert!(e.to_string().contains("beta_between"), "{e}");
        let e = loss(Objective::beta_stcvae(3, 1.0, 1.0)).unwrap_err();
        assert!(e.to_string().contains("group_size") && e.to_string().contains("10"), "{e}");
        let e = loss(Objective::beta_stcvae(0, 1.0, 1.0)).unwrap_err();
        assert!(e.to_string().contains("group_size"), "{e}");
        let small = x.narrow(2, 0, 32);
        let criterion =
            VaeLoss { objective: Objective::Vae, estimator: Estimator::MinibatchWeighted, dataset_size: 100 };
        assert!(criterion.compute(&small, &out).is_err());
        let criterion = VaeLoss { dataset_size: 3, ..criterion };
        assert!(criterion.compute(&x, &out).unwrap_err().to_string().contains("dataset_size"));
    }

    #[test]
    fn vae_terms_and_determinism() {
        let (x, out) = output(1);
        let criterion = VaeLoss {
            objective: Objective::Vae,
            estimator: Estimator::MinibatchStratified,
            dataset_size: 1000,
        };
        let t = criterion.compute(&x, &out).expect("loss").terms;
        assert!((t.total - (t.reconstruction + t.kl_closed_form)).abs() < 1e-3);
        let sum = t.index_code_mi + t.tc_between + t.tc_within + t.dimwise_kl;
        assert!((sum - t.kl).abs() < 1e-3 * t.kl.abs().max(1.0));
        let (x2, out2) = output(1);
        assert_eq!(criterion.compute(&x2, &out2).expect("again").terms, t);
        let beta = VaeLoss { objective: Objective::BetaVae { beta: 4.0 }, ..criterion };
        let tb = beta.compute(&x, &out).expect("beta").terms;
        assert!((tb.total - (t.reconstruction + 4.0 * t.kl_closed_form)).abs() < 1e-2);
        assert_eq!(Objective::beta_tcvae(6.0).name(), "beta_tcvae");
    }
}
