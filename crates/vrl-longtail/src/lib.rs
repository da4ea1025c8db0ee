//! The `longtail` study: long-tailed classification with a Vision Transformer, a causal method
//! (hierarchical causal representation learning with confounder dictionaries and backdoor-adjustment
//! attention, counterfactual logit-bias calibration, a two-stage schedule) against the standard
//! baselines (cross-entropy, class-balanced re-weighting, logit adjustment, balanced softmax, TDE).
//!
//! The pieces are usable alone: [`losses`] (the baseline losses and post-hoc adjustment on logits),
//! [`tde`] (the causal normalised classifier with counterfactual inference), [`counterfactual`]
//! (Fourier amplitude swap, logit-bias estimation and calibration), [`eval`] (per-class,
//! many / medium / few-shot accuracy and expected calibration error).
//!
//! ```
//! use tch::Tensor;
//! use vrl_longtail::losses::{balanced_softmax_loss, cross_entropy};
//!
//! let logits = Tensor::from_slice(&[2.0f32, 0.0]).view([1, 2]);
//! let label = Tensor::from_slice(&[1i64]);
//! let ce = cross_entropy(&logits, &label).unwrap().double_value(&[]);
//! let bs = balanced_softmax_loss(&logits, &label, &[300, 1]).unwrap().double_value(&[]);
//! assert!(bs > ce); // the rare class's logit is penalised by log(1/300) relative to the head class
//! ```
//!
//! The experiment (`experiments/longtail.toml`) is run by [`run`] (`vrl experiment longtail`): every
//! method on long-tailed Fashion-MNIST (or CIFAR-10-LT / CIFAR-100-LT from the binary batches, or an
//! image folder with ImageNet-LT split lists: `data.dataset`) at each imbalance factor,
//! `results.json` with `overall`, `many`, `medium`, `few` and `ece` per method and imbalance factor,
//! and `report.md` with the tables, the ablation table and the per-class accuracy plot. See
//! `docs/longtail.md`.

pub mod causal;
mod config;
pub mod counterfactual;
mod data;
pub mod eval;
pub mod losses;
mod report;
mod study;
pub mod tde;

pub use config::{
    BaselineConfig, CalibrationConfig, DataConfig, EvalConfig, LongtailConfig, ModelConfig, Stage2Config,
    TdeConfig, TrainConfig,
};
pub use study::run;
