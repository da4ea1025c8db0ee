//! The `transfer` experiment's configuration (`experiments/transfer.toml`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vrl_models::ModelArgs;
use vrl_optim::{HParams, Schedule};

use crate::LoraTarget;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferConfig {
    /// Seed for initialisation, subsampling, batch order and masking.
    #[serde(with = "vrl_config::seed")]
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// `fp32` or `bf16` (autocast around forward and loss in pretraining and tuning; weights,
    /// optimizers and evaluation stay float32).
    #[serde(default, skip_serializing_if = "vrl_train::Precision::is_fp32")]
    pub precision: vrl_train::Precision,
    /// LibTorch intra-op threads (0: LibTorch's default).
    pub threads: usize,
    /// The ViT of every backbone.
    pub model: ModelConfig,
    /// Where each backbone comes from and which methods run on it.
    pub backbones: Vec<BackboneConfig>,
    /// Pretraining of the `supervised` and `mae` backbones.
    pub pretrain: PretrainConfig,
    /// The target task.
    pub data: DataConfig,
    /// Methods run on each backbone (unless the backbone lists its own): `linear`, `full_ft`,
    /// `vpt_shallow`, `vpt_deep`, `bpt_full_shallow`, `bpt_full_deep`, `bpt_lowrank_shallow`,
    /// `bpt_lowrank_deep`, `lora`, `toast`.
    pub methods: Vec<String>,
    /// The methods' settings.
    pub settings: MethodSettings,
    /// Tuning on the target task (every method).
    pub tune: TuneConfig,
    /// The burstiness analysis.
    pub burstiness: BurstinessConfig,
}

/// The ViT.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Registry name of a Vision Transformer (its timm configuration).
    pub name: String,
    /// Model arguments (timm's names) applied to it.
    #[serde(default)]
    pub args: ModelArgs,
}

/// One backbone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    /// Label in the results (`supervised`, `mae`, …).
    pub name: String,
    /// `supervised` (pretrained here with labels), `mae` (pretrained here as a masked autoencoder)
    /// or `checkpoint` (a timm safetensors file given by `checkpoint`).
    pub source: String,
    /// Path of the safetensors checkpoint for `source = "checkpoint"`.
    #[serde(default)]
    pub checkpoint: String,
    /// Methods on this backbone; empty: the top-level `methods`.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// Pretraining.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// `mnist` or `fashion-mnist`.
    pub dataset: String,
    /// Directory with the IDX files; empty: the dataset cache (`cargo xtask data NAME`).
    pub dir: String,
    /// Training images used (seeded subset; 0: all).
    pub images: usize,
    /// Test images for the supervised backbone's own accuracy (0: all).
    pub test_images: usize,
    /// Where pretrained checkpoints are cached, by a hash of the pretraining settings; empty:
    /// `<vrl cache>/checkpoints/transfer`.
    pub cache_dir: String,
    /// Supervised pretraining.
    pub supervised: PretrainRun,
    /// MAE pretraining.
    pub mae: MaePretrain,
}

/// One pretraining run's schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainRun {
    /// Epochs over the pretraining images.
    pub epochs: u64,
    /// Batch size.
    pub batch_size: usize,
    /// Optimizer (registry name).
    pub optimizer: String,
    /// Its hyper-parameters; `lr` is the peak of the schedule.
    pub hparams: HParams,
    /// Learning-rate schedule.
    pub schedule: Schedule,
}

/// MAE pretraining: the schedule and the decoder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaePretrain {
    /// The schedule.
    #[serde(flatten)]
    pub run: PretrainRun,
    /// Fraction of the patches removed.
    pub mask_ratio: f64,
    /// Normalise each target patch.
    pub norm_pix_loss: bool,
    /// Decoder width.
    pub decoder_embed_dim: i64,
    /// Decoder blocks.
    pub decoder_depth: i64,
    /// Decoder heads.
    pub decoder_num_heads: i64,
}

/// The target task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `fashion-mnist`, `mnist` (IDX files) or `folder` (image folders, FGVC / VTAB style).
    pub dataset: String,
    /// IDX data sets: the directory with the files; empty: the dataset cache.
    #[serde(default)]
    pub dir: String,
    /// `folder`: the training split, `<class>/<image>` (e.g. VTAB-1k's `train800val200`).
    #[serde(default)]
    pub train_dir: String,
    /// `folder`: the test split, same classes.
    #[serde(default)]
    pub test_dir: String,
    /// Training images (seeded subset; 0: all).
    pub train_images: usize,
    /// Test images (seeded subset; 0: all).
    pub test_images: usize,
}

/// The methods' settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSettings {
    /// Prompts per prompted block (VPT and bilinear prompts).
    pub num_prompts: i64,
    /// Rank of the low-rank bilinear prompts `A Bᵀ` (below `num_prompts`).
    pub lowrank_rank: i64,
    /// Training images for the whitening matrices.
    pub whitening_images: i64,
    /// ε of the covariance (relative to its mean variance).
    pub eps: f64,
    /// Name prefixes of the parameters that stay frozen in full fine-tuning (each must name a
    /// parameter, e.g. `patch_embed.`).
    pub full_ft_frozen: Vec<String>,
    /// LoRA.
    pub lora: LoraSettings,
    /// TOAST.
    pub toast: ToastSettings,
}

/// LoRA's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSettings {
    /// Rank.
    pub rank: i64,
    /// Scale numerator α.
    pub alpha: f64,
    /// `qkv`, `proj`.
    pub targets: Vec<LoraTarget>,
}

/// TOAST's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToastSettings {
    /// Weight of the feedback path's reconstruction loss while tuning.
    pub lambda_var: f64,
    /// Steps of feedback pre-tuning (reconstruction loss only) before tuning (0: none).
    pub pretune_steps: u64,
    /// Learning rate of the pre-tuning (adam).
    pub pretune_lr: f64,
}

/// Tuning on the target task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuneConfig {
    /// Optimizer steps per method.
    pub steps: u64,
    /// Batch size.
    pub batch_size: usize,
    /// Test accuracy is measured every this many steps (the convergence curve).
    pub eval_every: u64,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Optimizer (registry name).
    pub optimizer: String,
    /// Its hyper-parameters; `lr` is the default peak learning rate.
    pub hparams: HParams,
    /// Peak learning rate by method name, overriding `hparams.lr`.
    #[serde(default)]
    pub lr_by_method: BTreeMap<String, f64>,
    /// Learning-rate schedule.
    pub schedule: Schedule,
}

/// The burstiness analysis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstinessConfig {
    /// Target training images whose patch tokens give the interaction values (0: no analysis).
    pub images: i64,
    /// Histogram bins over ±`range` standard deviations.
    pub bins: usize,
    /// Half-width of the histograms in standard deviations.
    pub range: f64,
}

impl vrl_train::StudySettings for TransferConfig {
    fn threads(&self) -> usize {
        self.threads
    }

    fn device(&self) -> &str {
        &self.device
    }
}
