//! The `mnist` experiment: a small CNN trained on MNIST with each optimizer of the configuration
//! (SGD with Nesterov momentum and AdamW by default), from the same initialisation, resumable at any
//! step. It is vrl's first real experiment and the template for the studies.
//!
//! Each optimizer trains in its own sub-directory of the run (`sgd/`, `adamw/`: `metrics.jsonl`,
//! `checkpoints/`, `model.safetensors`, `result.json`); the run directory gets the merged
//! `metrics.jsonl`, `results.json` (`test_accuracy` per optimizer, a fraction), plots and `report.md`.
//!
//! ```no_run
//! use vrl_config::ExperimentFile;
//! use vrl_train::{RunOptions, StopSignal};
//!
//! let file = ExperimentFile::load("experiments/mnist.toml".as_ref()).unwrap();
//! let opts = RunOptions {
//!     runs_dir: "runs".into(),
//!     preset: Some("smoke".into()),
//!     overrides: vec![],
//!     fresh: false,
//!     command: vec![],
//! };
//! let outcome = vrl_mnist::run(&file, &opts, &StopSignal::install().unwrap(), "unknown").unwrap();
//! # let _ = outcome;
//! ```

mod config;
mod step;
mod train;

pub use config::{DataConfig, MnistConfig, ModelConfig, OptimizerConfig, TrainConfig};
pub use step::TrainStep;
pub use train::run;
