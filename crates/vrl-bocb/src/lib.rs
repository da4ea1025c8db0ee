//! The `bocb` study (Li et al., 2024, "Unveiling the Backbone-Optimizer Coupling Bias in Visual
//! Representation Learning"): every backbone trained with every optimizer over each optimizer's own
//! learning-rate × weight-decay grid and several seeds, then the backbone × optimizer table, the
//! hyper-parameter robustness of each optimizer and backbone, and the combinations where coupling bias
//! shows.
//!
//! Each **cell** (backbone, optimizer, lr, wd, seed) is one training run in `cells/<id>/` with its own
//! `log.txt`, `metrics.jsonl`, checkpoints, `result.json` and final weights (`model.safetensors`).
//! **Workers** (`exec.workers`, `--workers N`: processes, with the threads split between them) claim
//! cells through files created atomically ([`claim`]), so neither two workers nor two grids started
//! by mistake on one run directory ever run a cell twice, and a claim left by a killed worker is taken
//! over. Every finished cell is appended to `cells.jsonl` ([`ledger`]). A grid started again skips
//! finished cells and resumes unfinished ones from their last checkpoint; it ends with the same table
//! as an uninterrupted grid (on CPU, bit for bit). A cell whose loss is not finite or explodes is
//! recorded as failed with its step; a cell that errors is recorded with its error, and the grid goes
//! on (`exec.fail_fast` stops it instead). At the end: `results.json`, `heatmap_top1.{png,svg}`,
//! `hp/<optimizer>.{png,svg}`, the layer statistics by depth `depth/<backbone>.{png,svg}` and
//! `layer_alpha.{png,svg}` ([`depth`]), `robustness.{csv,md}` and `report.md` ([`report`]). On a
//! cluster, the workers are the tasks of a Slurm job array, and a dependent job writes the outputs
//! ([`slurm`]).
//!
//! ```no_run
//! use vrl_config::ExperimentFile;
//! use vrl_train::{RunOptions, StopSignal};
//!
//! let file = ExperimentFile::load("experiments/bocb.toml".as_ref()).unwrap();
//! let opts = RunOptions {
//!     runs_dir: "runs".into(),
//!     preset: Some("smoke".into()),
//!     overrides: vec![],
//!     fresh: false,
//!     command: vec![],
//! };
//! let stop = StopSignal::install().unwrap();
//! let mode = vrl_bocb::Mode::Grid { spawner: None };
//! let outcome = vrl_bocb::run(&file, &opts, &stop, "unknown", mode).unwrap();
//! # let _ = outcome;
//! ```
//!
//! The analysis is plain functions of the finished cells, usable alone:
//!
//! ```
//! use vrl_bocb::analysis::{Entry, pairs, robustness};
//! use vrl_bocb::ledger::{CellRecord, Status};
//!
//! let cell = |b: &str, li, acc| Entry {
//!     backbone: b.into(), optimizer: "sgd".into(), lr_index: li, wd_index: 0, seed: 0,
//!     record: CellRecord { cell: String::new(), status: Status::Ok, final_top1: Some(acc),
//!                          best_top1: Some(acc), failed_step: None, message: None, steps: 1 },
//! };
//! let entries = [cell("cnn", 0, 0.9), cell("cnn", 1, 0.5), cell("vit", 0, 0.2), cell("vit", 1, 0.6)];
//! let (bb, opt) = (vec!["cnn".to_string(), "vit".to_string()], vec!["sgd".to_string()]);
//! let p = pairs(&entries, &bb, &opt);
//! assert_eq!((p[0].lr_index, p[1].lr_index), (Some(0), Some(1)));
//! let (per_optimizer, _) = robustness(&p, &bb, &opt);
//! // The most common optimum is the tie-break (lr 0); vit's optimum is one step away.
//! assert_eq!(per_optimizer[0].mean_distance, Some(0.5));
//! ```

pub mod analysis;
pub mod claim;
mod config;
pub mod depth;
pub mod grid;
pub mod layers;
pub mod ledger;
pub mod plots;
pub mod report;
mod run;
pub mod slurm;
mod train;

pub use config::{
    BackboneConfig, BocbConfig, DataConfig, ExecConfig, OptimizerConfig, RecipeConfig, Select, SlurmConfig,
    TrainConfig,
};
pub use grid::{Cell, cells};
pub use run::{Mode, Opened, PARENT_ENV, STOP_FILE, Spawner, open, run};
pub use train::{CellEnd, CellLog, Data, DataSet, Stop, model_args, train_cell};
