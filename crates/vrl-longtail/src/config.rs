//! The experiment's configuration (`experiments/longtail.toml`).

use serde::{Deserialize, Serialize};
use vrl_models::ModelArgs;
use vrl_optim::{HParams, Schedule};
use vrl_train::Precision;

use crate::causal::CausalConfig;
use crate::counterfactual::CounterfactualKind;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongtailConfig {
    /// Seed for initialisation, subsampling, sampling and every random draw.
    #[serde(with = "vrl_config::seed")]
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// `fp32` or `bf16` (autocast around forward and loss in training; weights, optimizer and
    /// evaluation stay float32).
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// LibTorch intra-op threads (0: LibTorch's default).
    pub threads: usize,
    /// Data.
    pub data: DataConfig,
    /// The ViT.
    pub model: ModelConfig,
    /// Stage 1 (every method).
    pub train: TrainConfig,
    /// Stage 2: class-balanced re-training.
    pub stage2: Stage2Config,
    /// Hyper-parameters of the baselines.
    pub baselines: BaselineConfig,
    /// TDE.
    pub tde: TdeConfig,
    /// Hierarchical causal representation learning (the causal method).
    pub causal: CausalConfig,
    /// Counterfactual logit-bias calibration (the causal method).
    pub calibration: CalibrationConfig,
    /// Methods to run: `ce`, `la_posthoc`, `ce_crt`, `cb`, `la`, `bs`, `tde`, `causal`.
    pub methods: Vec<String>,
    /// Ablations of the causal method: `no_patch`, `no_global`, `no_calibration`, `no_stage2`.
    pub ablations: Vec<String>,
    /// Imbalance factors on which the ablations run (a subset of `data.imbalance_factors`).
    pub ablation_ifs: Vec<f64>,
    /// Evaluation.
    pub eval: EvalConfig,
}

/// Where the data comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `fashion-mnist`, `cifar10`, `cifar100` (the binary batches) or `imagefolder` (split lists).
    pub dataset: String,
    /// Directory with the data: the IDX files (empty: the dataset cache, `cargo xtask data
    /// fashion-mnist`), the CIFAR `.bin` files or their parent, or the image folder's root.
    pub dir: String,
    /// `imagefolder`: the training split list, `<relative/path.jpg> <label>` lines (ImageNet-LT's
    /// `ImageNet_LT_train.txt`); a relative path is taken from `dir`.
    #[serde(default)]
    pub train_list: String,
    /// `imagefolder`: the test split list (`ImageNet_LT_test.txt`).
    #[serde(default)]
    pub test_list: String,
    /// `imagefolder`: the model's input size (0: 224); images are resized to 8/7 of it, then cropped.
    #[serde(default)]
    pub image_size: usize,
    /// Imbalance factors `n_max / n_min` of the long-tailed training sets; `0` takes the training
    /// split as it is (an ImageNet-LT list is long-tailed already).
    pub imbalance_factors: Vec<f64>,
    /// Training images of the largest class (0: the largest class of the training split: 6000 for
    /// Fashion-MNIST, 5000 for CIFAR-10, 500 for CIFAR-100).
    pub n_max: usize,
    /// Test images per class, drawn seeded (0: all).
    pub test_per_class: usize,
}

/// Which ViT.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Registry name of a Vision Transformer.
    pub name: String,
    /// Model arguments (timm's names).
    #[serde(default)]
    pub args: ModelArgs,
}

/// Stage 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs (instance-balanced sampling).
    pub epochs: u64,
    /// Training batch size.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Optimizer (registry name).
    pub optimizer: String,
    /// Its hyper-parameters; `lr` is the peak of the schedule.
    pub hparams: HParams,
    /// Learning-rate schedule.
    pub schedule: Schedule,
}

/// Stage 2.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage2Config {
    /// Epochs with the class-balanced sampler (0: no second stage).
    pub epochs: u64,
    /// `head` (re-train the classifier, the global dictionary's attention and nothing else, as cRT) or `all`.
    pub train: String,
    /// Learning rate (cosine to 0, no warm-up), same optimizer as stage 1.
    pub lr: f64,
}

/// Baseline hyper-parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {
    /// β of the class-balanced loss (Cui et al.: 0.9999).
    pub cb_beta: f64,
    /// τ of the logit-adjusted loss.
    pub la_tau: f64,
    /// τ of post-hoc logit adjustment.
    pub posthoc_tau: f64,
}

/// TDE's classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdeConfig {
    /// Heads `K`.
    pub num_heads: i64,
    /// Logit scale `τ`.
    pub scale: f64,
    /// `γ` of the weights' causal norm.
    pub gamma: f64,
    /// Counterfactual strength `α` at test time.
    pub alpha: f64,
    /// Momentum of the feature direction.
    pub momentum: f64,
}

/// Counterfactual logit-bias calibration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationConfig {
    /// Calibrate at all.
    pub enabled: bool,
    /// How counterfactual inputs are made.
    pub kind: CounterfactualKind,
    /// Counterfactual inputs (class-balanced pairs of training images).
    pub samples: usize,
    /// Multiple `λ` of the estimated bias subtracted from the logits.
    pub lambda: f64,
}

/// Evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Many-shot: more training images than this. 0 with `few_below` 0: OLTR's 100 / 20 scaled by
    /// `n_max / 500` (`vrl_data::longtail::ShotGroups::scaled`).
    pub many_above: usize,
    /// Few-shot: fewer training images than this.
    pub few_below: usize,
}

impl vrl_train::StudySettings for LongtailConfig {
    fn threads(&self) -> usize {
        self.threads
    }

    fn device(&self) -> &str {
        &self.device
    }
}
