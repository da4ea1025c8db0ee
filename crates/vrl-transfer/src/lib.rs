//! Transfer of a frozen Vision Transformer (issue 10): the methods that adapt the zoo's
//! [`vrl_models::VisionTransformer`] to a new task while its weights stay fixed, and the analysis of
//! the "burstiness" of prompt–key interactions.
//!
//! * [`FrozenBackbone`]: the ViT in its own store (timm names), frozen, blocks run one at a time with
//!   additive attention hooks ([`BlockHooks`]: LoRA deltas, an extra value input).
//! * [`Method`] / [`TransferModel`]: linear probe, full fine-tuning (frozen layers by name prefix), VPT
//!   shallow and deep, bilinear prompt tuning (full `P Wᵀ` and low-rank `A Bᵀ`, shallow and deep) with
//!   per-block whitening ([`whitening`]), LoRA on `qkv` / `proj`, TOAST ([`toast`]: task vector,
//!   token and channel selection, top-down feedback into the values, reconstruction loss). Each method's trainable parameter
//!   count is [`Method::trainable_params_formula`].
//! * [`burstiness`]: prompt–key interaction values per block before and after whitening, their
//!   kurtosis against the Gaussian's, histograms with a Gaussian reference.
//! * [`mae`]: MAE's patchify, random masking and loss, for self-supervised pretraining.
//!
//! ```
//! use tch::{Device, Kind, Tensor};
//! use vrl_models::vision_transformer::VitConfig;
//! use vrl_transfer::{FrozenBackbone, Method, TransferModel};
//!
//! let cfg = VitConfig { img_size: 8, patch_size: 4, in_chans: 1, num_classes: 10, embed_dim: 8,
//!     depth: 2, num_heads: 2, mlp_ratio: 2.0, drop_rate: 0.0, drop_path_rate: 0.0 };
//! let backbone = FrozenBackbone::new(cfg, Device::Cpu);
//! let m = TransferModel::new(backbone, Method::Vpt { num_prompts: 3, deep: true }, 5, None).unwrap();
//! let x = Tensor::randn([2, 1, 8, 8], (Kind::Float, Device::Cpu));
//! assert_eq!(m.forward_t(&x, false).size(), [2, 5]);
//! assert_eq!(m.num_trainable(), 2 * 3 * 8 + 5 * 8 + 5);
//! ```

pub mod backbone;
pub mod burstiness;
pub mod config;
pub mod lora;
pub mod mae;
mod method;
pub mod prompts;
mod report;
mod settings;
pub mod study;
pub mod toast;
pub mod whitening;

pub use backbone::{BlockHooks, FrozenBackbone};
pub use config::TransferConfig;
pub use lora::LoraTarget;
pub use method::{Method, TransferModel, steps_to_90pct_final};
pub use prompts::BptForm;
pub use study::run;

/// What can go wrong when setting a method up.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A setting is out of range or inconsistent.
    #[error("bad `{key}`: {message}")]
    BadConfig {
        /// The setting, e.g. `method.num_prompts`.
        key: String,
        /// What was expected and what was given.
        message: String,
    },
    /// A checkpoint that cannot be read or does not fit the backbone.
    #[error(transparent)]
    Weights(#[from] vrl_models::weights::WeightsError),
    /// A frozen-layer prefix that names no backbone parameter.
    #[error(
        "frozen layer prefix `{prefix}` names no backbone parameter (use names such as `patch_embed.` or `blocks.0.`)"
    )]
    NoSuchLayer {
        /// The prefix.
        prefix: String,
    },
}

#[cfg(test)]
mod tests;
