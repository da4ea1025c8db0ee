//! The experiment's configuration (`experiments/mnist.toml`).

use serde::{Deserialize, Serialize};
use vrl_models::ModelArgs;
use vrl_optim::{HParams, Schedule};
use vrl_train::Precision;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnistConfig {
    /// Seed for initialisation, shuffling and every random draw.
    #[serde(with = "vrl_config::seed")]
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// `fp32` or `bf16` (autocast around forward and loss; weights and optimizer stay float32).
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// LibTorch intra-op threads (0: LibTorch's default).
    pub threads: usize,
    /// Data.
    pub data: DataConfig,
    /// The network.
    pub model: ModelConfig,
    /// The training loop.
    pub train: TrainConfig,
    /// The optimizers to compare; each trains its own copy of the network from the same initialisation.
    pub optimizers: Vec<OptimizerConfig>,
}

/// Where the data comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Directory with the four IDX files; empty: the dataset cache (`cargo xtask data mnist`).
    pub dir: String,
    /// Use only the first N training images (0: all).
    pub train_limit: usize,
    /// Use only the first N test images (0: all).
    pub test_limit: usize,
}

/// Which network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Registry name.
    pub name: String,
    /// Model arguments (timm's names).
    #[serde(default)]
    pub args: ModelArgs,
}

/// The training loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: u64,
    /// Training batch size.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Log the mean training loss every N steps.
    pub log_every: u64,
    /// Save a checkpoint every N steps (and at the end of every epoch).
    pub checkpoint_every: u64,
    /// Checkpoints kept per optimizer.
    pub keep_checkpoints: usize,
    /// A run whose loss exceeds this multiple of its first logged loss, or is not finite, is diverged.
    pub divergence_factor: f64,
}

/// One optimizer to compare.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Registry name (`sgd`, `adamw`).
    pub name: String,
    /// Hyper-parameters with PyTorch's names; `lr` is the peak of the schedule.
    pub hparams: HParams,
}

impl OptimizerConfig {
    /// The base learning rate (`hparams.lr`, else the optimizer's default).
    pub fn lr(&self) -> f64 {
        match self.hparams.0.get("lr") {
            Some(vrl_optim::HValue::Num(x)) => *x,
            _ => vrl_optim::REGISTRY
                .iter()
                .find(|e| e.name.eq_ignore_ascii_case(&self.name))
                .and_then(|e| match (e.defaults)().0.get("lr") {
                    Some(vrl_optim::HValue::Num(x)) => Some(*x),
                    _ => None,
                })
                .unwrap_or(0.0),
        }
    }

    /// A label unique within the experiment (the name, or `name-2` for a repeated name).
    pub fn labels(list: &[OptimizerConfig]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for o in list {
            let base = o.name.to_lowercase();
            let n = out.iter().filter(|l| *l == &base || l.starts_with(&format!("{base}-"))).count();
            out.push(if n == 0 { base } else { format!("{base}-{}", n + 1) });
        }
        out
    }
}

impl vrl_train::StudySettings for MnistConfig {
    fn threads(&self) -> usize {
        self.threads
    }

    fn device(&self) -> &str {
        &self.device
    }
}
