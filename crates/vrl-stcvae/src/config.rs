//! The experiment's configuration (`experiments/vae.toml`).

use serde::{Deserialize, Serialize};
use vrl_config::{ConfigError, MAX_BATCH_SIZE, MAX_SAMPLES, MAX_SIZE, MAX_STEPS};
use vrl_disentangle::{
    BetaVaeSettings, DciSettings, FactorVaeSettings, MigSettings, ModularitySettings, SapSettings,
};
use vrl_optim::HParams;
use vrl_vae::{Estimator, Objective};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeStudyConfig {
    /// Seed for initialisation, minibatches, posterior samples and every metric's draws.
    #[serde(with = "vrl_config::seed")]
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// `fp32` or `bf16` (autocast around the forward pass in training; the objective, weights,
    /// optimizer and evaluation stay float32).
    #[serde(default, skip_serializing_if = "vrl_train::Precision::is_fp32")]
    pub precision: vrl_train::Precision,
    /// LibTorch intra-op threads (0: LibTorch's default).
    pub threads: usize,
    /// The network.
    pub model: ModelConfig,
    /// The training loop.
    pub train: TrainConfig,
    /// The optimizer (every model gets its own, with these settings).
    pub optimizer: OptimizerConfig,
    /// The objectives to train, one model each, from the same initialisation.
    pub models: Vec<Objective>,
    /// How the trained models are scored.
    pub metrics: MetricsConfig,
}

/// The network: disentanglement_lib's convolutional encoder and decoder for 64×64 images.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Latent dimensions (10 in disentanglement_lib's study).
    pub latent_dim: usize,
}

/// The training loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps per model.
    pub steps: u64,
    /// Minibatch size (64).
    pub batch_size: usize,
    /// How the minibatch terms (MI, TC, dimension-wise KL) are estimated.
    pub estimator: Estimator,
    /// Log the mean ELBO terms of the last N steps every N steps.
    pub log_every: u64,
    /// Save a checkpoint every N steps.
    pub checkpoint_every: u64,
    /// Checkpoints kept per model.
    pub keep_checkpoints: usize,
}

/// The optimizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Registry name (`adam` in disentanglement_lib).
    pub name: String,
    /// Hyper-parameters with PyTorch's names (`lr`, `betas`, `eps`).
    pub hparams: HParams,
}

/// How the trained models are scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Points drawn uniformly from the factor grid and encoded (posterior means) for MIG, SAP, DCI
    /// and modularity; SAP and DCI train on the leading `train_fraction` of them.
    pub num_points: usize,
    /// MIG's settings.
    #[serde(default)]
    pub mig: MigSettings,
    /// SAP's settings.
    #[serde(default)]
    pub sap: SapSettings,
    /// DCI's settings.
    #[serde(default)]
    pub dci: DciSettings,
    /// Modularity's settings.
    #[serde(default)]
    pub modularity: ModularitySettings,
    /// The FactorVAE score's settings (it draws its own points).
    #[serde(default)]
    pub factor_vae: FactorVaeSettings,
    /// The β-VAE score's settings (it draws its own points).
    #[serde(default)]
    pub beta_vae: BetaVaeSettings,
    /// The latent traversal grids.
    pub traversal: TraversalConfig,
}

/// Latent traversals: one row per latent, the seed image's posterior mean moved along that latent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraversalConfig {
    /// The dSprites factors (shape, scale, orientation, posX, posY) of the seed image.
    pub seed_factors: [usize; 5],
    /// Columns per row.
    pub steps: usize,
    /// Offsets run from `−range` to `range` around the posterior mean.
    pub range: f64,
}

impl MetricsConfig {
    /// The sample counts and batch sizes of the FactorVAE and β-VAE scores in their ranges (their
    /// lower bounds are the scores' own), checked before training rather than after it.
    fn check_integers(&self) -> Result<(), ConfigError> {
        let (f, b) = (&self.factor_vae, &self.beta_vae);
        let (samples, batch) = (MAX_SAMPLES as usize, MAX_BATCH_SIZE as usize);
        vrl_config::check_ranges(
            "vae",
            &[
                ("metrics.factor_vae.batch_size", f.batch_size, 2..=batch),
                ("metrics.factor_vae.num_train", f.num_train, 1..=samples),
                ("metrics.factor_vae.num_eval", f.num_eval, 1..=samples),
                ("metrics.factor_vae.num_variance_estimate", f.num_variance_estimate, 2..=samples),
                ("metrics.factor_vae.max_encode_batch", f.max_encode_batch, 0..=batch),
                ("metrics.beta_vae.batch_size", b.batch_size, 1..=batch),
                ("metrics.beta_vae.num_train", b.num_train, 2..=samples),
                ("metrics.beta_vae.num_eval", b.num_eval, 1..=samples),
                ("metrics.beta_vae.max_encode_batch", b.max_encode_batch, 0..=batch),
            ],
        )
    }
}

fn invalid(key: &str, message: String) -> anyhow::Error {
    ConfigError::Invalid { experiment: "vae".into(), key: key.into(), message }.into()
}

impl VaeStudyConfig {
    /// Checks values serde cannot: positive counts, valid objectives, group sizes dividing the latent
    /// dimension, distinct model labels, seed factors on the grid.
    ///
    /// # Errors
    /// A [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let t = &self.train;
        vrl_config::check_ranges(
            "vae",
            &[
                ("model.latent_dim", self.model.latent_dim as u64, 1..=MAX_SIZE),
                ("train.steps", t.steps, 1..=MAX_STEPS),
                ("train.log_every", t.log_every, 1..=MAX_STEPS),
                ("train.checkpoint_every", t.checkpoint_every, 1..=MAX_STEPS),
                ("metrics.num_points", self.metrics.num_points as u64, 1..=MAX_SAMPLES),
                ("metrics.traversal.steps", self.metrics.traversal.steps as u64, 1..=MAX_SIZE),
            ],
        )?;
        self.metrics.check_integers()?;
        if t.batch_size < 2 {
            return Err(invalid(
                "train.batch_size",
                format!(
                    "must be at least 2 (the minibatch estimators need two samples), got {}",
                    t.batch_size
                ),
            ));
        }
        if t.batch_size > vrl_data::DSprites::LEN {
            return Err(invalid(
                "train.batch_size",
                format!("exceeds the data set's {}", vrl_data::DSprites::LEN),
            ));
        }
        let r = self.metrics.traversal.range;
        if !(r.is_finite() && r > 0.0) {
            return Err(invalid("metrics.traversal.range", format!("must be a positive number, got {r}")));
        }
        if let Err(e) = vrl_data::DSprites::new().check(self.metrics.traversal.seed_factors) {
            return Err(invalid("metrics.traversal.seed_factors", e.to_string()));
        }
        if self.models.is_empty() {
            return Err(invalid("models", "at least one model is needed".into()));
        }
        for (i, m) in self.models.iter().enumerate() {
            let key = format!("models[{i}]");
            m.validate().map_err(|e| invalid(&key, e.to_string()))?;
            if let Objective::BetaStcVae { group_size, .. } = m
                && !self.model.latent_dim.is_multiple_of(*group_size)
            {
                return Err(invalid(
                    &format!("{key}.group_size"),
                    format!("{group_size} does not divide model.latent_dim = {}", self.model.latent_dim),
                ));
            }
        }
        let labels = self.labels();
        for (i, l) in labels.iter().enumerate() {
            if labels[..i].contains(l) {
                return Err(invalid(&format!("models[{i}]"), format!("repeats the model `{l}`")));
            }
        }
        if vrl_optim::REGISTRY.iter().all(|e| !e.name.eq_ignore_ascii_case(&self.optimizer.name)) {
            return Err(invalid(
                "optimizer.name",
                format!(
                    "unknown optimizer `{}` (known: {})",
                    self.optimizer.name,
                    vrl_optim::REGISTRY.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// A directory name per model: `vae`, `beta_vae`, `beta_tcvae`, `beta_stcvae_s2`, …
    pub fn labels(&self) -> Vec<String> {
        self.models.iter().map(label).collect()
    }
}

/// The directory name of one model.
pub fn label(objective: &Objective) -> String {
    match objective {
        Objective::BetaStcVae { group_size, .. } => format!("beta_stcvae_s{group_size}"),
        other => other.name().to_string(),
    }
}

/// The group size a model's objective uses: 1 for β-TCVAE, `s` for β-STCVAE, none otherwise.
pub fn group_size(objective: &Objective) -> Option<usize> {
    match objective {
        Objective::BetaTcVae { .. } => Some(1),
        Objective::BetaStcVae { group_size, .. } => Some(*group_size),
        _ => None,
    }
}

/// The objective's weights, for tables: `β=4`, `β_b=6, β_w=1`, …
pub fn weights(objective: &Objective) -> String {
    match *objective {
        Objective::Vae => "—".into(),
        Objective::BetaVae { beta } => format!("β={beta}"),
        Objective::BetaTcVae { alpha, beta, gamma } => format!("α={alpha}, β={beta}, γ={gamma}"),
        Objective::BetaStcVae { alpha, beta_between, beta_within, gamma, .. } => {
            format!("α={alpha}, β_b={beta_between}, β_w={beta_within}, γ={gamma}")
        }
    }
}

impl vrl_train::StudySettings for VaeStudyConfig {
    fn threads(&self) -> usize {
        self.threads
    }

    fn device(&self) -> &str {
        &self.device
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use vrl_config::{ExperimentFile, Override};

    use super::*;

    fn resolve(set: &str) -> VaeStudyConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/vae.toml");
        let file = ExperimentFile::load(&path).unwrap();
        file.resolve::<VaeStudyConfig>(None, &[Override::parse(set).unwrap()]).unwrap().config
    }

    #[test]
    fn integers_out_of_range_are_named_with_their_range() {
        for (set, key) in [
            ("train.steps=1099511627777", "`train.steps`"),
            ("train.steps=0", "`train.steps`"),
            ("train.log_every=0", "`train.log_every`"),
            ("train.checkpoint_every=9223372036854775807", "`train.checkpoint_every`"),
            ("model.latent_dim=65537", "`model.latent_dim`"),
            ("metrics.num_points=4294967296", "`metrics.num_points`"),
            ("metrics.traversal.steps=1000000", "`metrics.traversal.steps`"),
            ("metrics.factor_vae.num_train=4294967296", "`metrics.factor_vae.num_train`"),
            ("metrics.beta_vae.batch_size=0", "`metrics.beta_vae.batch_size`"),
        ] {
            let e = resolve(set).validate().unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("must be an integer from"), "{set}: {e}");
        }
        let e = resolve("train.batch_size=4294967296").validate().unwrap_err().to_string();
        assert!(e.contains("`train.batch_size`"), "{e}");
        resolve("train.steps=300000").validate().unwrap();
        let c = resolve("seed=18446744073709551615");
        c.validate().unwrap();
        assert_eq!(c.seed, u64::MAX);
        let c = resolve("metrics.factor_vae.seed=18446744073709551615");
        assert_eq!(c.metrics.factor_vae.seed, u64::MAX);
        let c = resolve("metrics.beta_vae.seed=18446744073709551615");
        assert_eq!(c.metrics.beta_vae.seed, u64::MAX);
    }
}
