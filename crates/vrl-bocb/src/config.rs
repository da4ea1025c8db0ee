//! The study's configuration (`experiments/bocb.toml`).
//!
//! Everything under `exec` says *how* the grid is run (workers, threads, fail-fast, claim lease) and
//! nothing about its figures: it is left out of the run id and of the run's `config.toml`, so the same
//! grid can be continued with another number of workers, or by Slurm array tasks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vrl_config::ConfigError;
use vrl_models::ModelArgs;
use vrl_optim::{HParams, HValue, Schedule};
use vrl_train::Precision;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BocbConfig {
    /// One training run per seed for every hyper-parameter pair (initialisation, data order, augmentation).
    #[serde(with = "vrl_config::seed::seeds")]
    pub seeds: Vec<u64>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// `fp32` or `bf16` (autocast around forward and loss; weights and optimizer stay float32).
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// How the grid is run; not part of the grid's identity (see the module documentation).
    #[serde(skip_serializing, default)]
    pub exec: ExecConfig,
    /// Data.
    pub data: DataConfig,
    /// The training loop shared by every cell.
    pub train: TrainConfig,
    /// Augmentation and regularisation recipes by name (`classic`, `modern`), chosen per backbone.
    pub recipes: BTreeMap<String, RecipeConfig>,
    /// The backbone catalogue, by label.
    pub backbones: BTreeMap<String, BackboneConfig>,
    /// The optimizer catalogue, by label, each with its learning-rate and weight-decay grid.
    pub optimizers: BTreeMap<String, OptimizerConfig>,
    /// Which part of the catalogues and grids this run covers, in the order of the tables.
    pub select: Select,
}

/// How the grid is run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    /// Worker processes claiming cells (`--workers N`); the threads are split between them.
    pub workers: usize,
    /// LibTorch threads in all (0: one per core), split evenly between the workers.
    pub threads: usize,
    /// Stop the grid at the first cell that fails with an error (`--fail-fast`).
    pub fail_fast: bool,
    /// Seconds without a heartbeat after which a claim held by a process on another host is taken
    /// over (a claim by a dead process on this host is taken over at once).
    pub lease_seconds: u64,
    /// Seconds between heartbeats of a running cell's claim.
    pub heartbeat_seconds: u64,
    /// The Slurm job array of `--backend slurm` ([`crate::slurm`]).
    pub slurm: SlurmConfig,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            workers: 1,
            threads: 0,
            fail_fast: false,
            lease_seconds: 600,
            heartbeat_seconds: 30,
            slurm: SlurmConfig::default(),
        }
    }
}

/// The job array that `--backend slurm` submits: each array task is one worker (`--grid-worker`)
/// with these resources; empty strings and zeros leave a resource to the cluster's defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    /// Array tasks (workers) per submission; a re-submission uses at most one per missing cell.
    pub array_size: usize,
    /// At most this many tasks at once (`--array=0-N%P`; 0: no limit).
    pub array_parallelism: usize,
    /// `--partition` (empty: the cluster's default).
    pub partition: String,
    /// `--gpus-per-task` (0: none).
    pub gpus_per_task: usize,
    /// `--cpus-per-task`; also each worker's LibTorch threads.
    pub cpus_per_task: usize,
    /// `--mem` per task, e.g. `8G` (empty: the cluster's default).
    pub mem: String,
    /// `--time` per task, e.g. `04:00:00` (empty: the partition's default).
    pub time: String,
    /// `--job-name` (empty: `vrl-<experiment>`).
    pub job_name: String,
    /// More `sbatch` options, one per item (`--account=lab`, `--qos=high`); given to every job.
    pub extra_args: Vec<String>,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            array_size: 4,
            array_parallelism: 0,
            partition: String::new(),
            gpus_per_task: 0,
            cpus_per_task: 1,
            mem: String::new(),
            time: String::new(),
            job_name: String::new(),
            extra_args: Vec::new(),
        }
    }
}

/// Where the data comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `fashion-mnist`, `mnist` (IDX files), `cifar100` or `cifar10` (the binary versions).
    pub dataset: String,
    /// Directory of the files; empty: the dataset cache (`cargo xtask data NAME`, IDX sets only).
    pub dir: String,
    /// Use only the first N training images (0: all).
    pub train_limit: usize,
    /// Use only the first N test images (0: all).
    pub test_limit: usize,
    /// Resize every image to this side first (bilinear; 0: keep the native size).
    pub img_size: usize,
}

/// The training loop of every cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: u64,
    /// Training batch size.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Learning-rate schedule; the cell's learning rate is its peak.
    pub schedule: Schedule,
    /// Log the mean training loss every N steps.
    pub log_every: u64,
    /// Save a checkpoint every N steps (and at the end of every epoch).
    pub checkpoint_every: u64,
    /// Checkpoints kept per cell.
    pub keep_checkpoints: usize,
    /// A cell whose loss is not finite, or exceeds this multiple of its first step's loss, has failed.
    pub divergence_factor: f64,
}

/// Augmentation and regularisation of a group of backbones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeConfig {
    /// Random crop after zero padding of this many pixels on each side (0: no crop).
    pub crop_padding: usize,
    /// Reflect padding for the random crop (`padding_mode="reflect"`, the study's) instead of zeros.
    #[serde(default)]
    pub reflect_padding: bool,
    /// Random resized crop with area fraction in `[this, 1]` (PIL bicubic, the study's 224-pixel
    /// recipe: 0.8) instead of resize-then-crop, for backbones whose input side differs from the
    /// data's; their test images are resized with the same bicubic filter. 0: off.
    #[serde(default)]
    pub resized_crop_min_scale: f64,
    /// Horizontal flips with probability 0.5.
    pub flip: bool,
    /// RandAugment's magnitude level of 10 (mmcls' implementation with FixMatch's 14 operations, 2 per
    /// image, level noise 0.5, fill 114/123/125: the study's "rand-m9-mstd0.5"). 0: off.
    #[serde(default)]
    pub rand_augment_magnitude: f64,
    /// Probability of random erasing (noise-filled box of 2–33 % of the image, the study's 0.25). 0: off.
    #[serde(default)]
    pub random_erasing: f64,
    /// Mixup's Beta(α, α) (0: off).
    pub mixup_alpha: f64,
    /// CutMix's Beta(α, α) (0: off). With both on, each batch uses one of them with probability 0.5.
    pub cutmix_alpha: f64,
    /// Label smoothing.
    pub label_smoothing: f64,
    /// Clip the gradients' total L2 norm to this value (0: off).
    pub grad_clip: f64,
}

/// One backbone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    /// Registry name (vrl-models).
    pub model: String,
    /// Model arguments (timm's names); `num_classes`, `in_chans` and `img_size` come from the data.
    #[serde(default)]
    pub args: ModelArgs,
    /// The recipe (a key of `recipes`).
    pub recipe: String,
    /// Input side for this backbone (0: `data.img_size`), e.g. 224 for patch-16 transformers on CIFAR.
    #[serde(default)]
    pub img_size: usize,
}

/// One optimizer and its hyper-parameter grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Registry name (vrl-optim).
    pub name: String,
    /// The study's category (e.g. `SGD`, `Adam`, `AdaGrad`), used to find coupling bias.
    pub family: String,
    /// Fixed hyper-parameters (PyTorch's names), everything but `lr` and `weight_decay`.
    #[serde(default)]
    pub hparams: HParams,
    /// Peak learning rates, ascending, centred on the study's recipe.
    pub lr: Vec<f64>,
    /// Weight decays, ascending, centred on the study's recipe.
    pub weight_decay: Vec<f64>,
}

impl OptimizerConfig {
    /// The hyper-parameters of a cell: the fixed ones with `lr` and `weight_decay` set.
    pub fn hparams_at(&self, lr: f64, weight_decay: f64) -> HParams {
        let mut h = self.hparams.clone();
        h.0.insert("lr".into(), HValue::Num(lr));
        h.0.insert("weight_decay".into(), HValue::Num(weight_decay));
        h
    }
}

/// The part of the catalogues and grids a run covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// Backbone labels, in table order.
    pub backbones: Vec<String>,
    /// Optimizer labels, in table order.
    pub optimizers: Vec<String>,
    /// Indices into every optimizer's `lr` grid (empty: all).
    pub lr: Vec<usize>,
    /// Indices into every optimizer's `weight_decay` grid (empty: all).
    pub weight_decay: Vec<usize>,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { experiment: "bocb".into(), key: key.into(), message: message.into() }
}

/// Labels name directories and cell ids: ASCII letters, digits, `-`, `_` and `.`.
fn check_label(key: &str, label: &str) -> Result<(), ConfigError> {
    let ok = !label.is_empty()
        && !label.contains("__")
        && label.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(key, format!("label `{label}` must be ASCII letters, digits, `-`, `_` or `.` (no `__`)")))
    }
}

impl BocbConfig {
    /// Every count, size, interval and duration in its range, so that none can overflow what it
    /// multiplies (a worker is at least one thread, so there are at most as many as threads).
    fn check_integers(&self) -> Result<(), ConfigError> {
        use vrl_config::{
            MAX_BATCH_SIZE, MAX_EPOCHS, MAX_EXAMPLES, MAX_IMAGE_SIZE, MAX_SECONDS, MAX_STEPS, MAX_THREADS,
        };
        let (t, e, d) = (&self.train, &self.exec, &self.data);
        vrl_config::check_ranges(
            "bocb",
            &[
                ("data.train_limit", d.train_limit as u64, 0..=MAX_EXAMPLES),
                ("data.test_limit", d.test_limit as u64, 0..=MAX_EXAMPLES),
                ("data.img_size", d.img_size as u64, 0..=MAX_IMAGE_SIZE),
                ("train.epochs", t.epochs, 1..=MAX_EPOCHS),
                ("train.batch_size", t.batch_size as u64, 1..=MAX_BATCH_SIZE),
                ("train.eval_batch_size", t.eval_batch_size as u64, 1..=MAX_BATCH_SIZE),
                ("train.log_every", t.log_every, 1..=MAX_STEPS),
                ("train.checkpoint_every", t.checkpoint_every, 1..=MAX_STEPS),
                ("exec.workers", e.workers as u64, 1..=MAX_THREADS),
                ("exec.threads", e.threads as u64, 0..=MAX_THREADS),
                ("exec.lease_seconds", e.lease_seconds, 1..=MAX_SECONDS),
                ("exec.heartbeat_seconds", e.heartbeat_seconds, 1..=MAX_SECONDS),
                ("exec.slurm.array_size", e.slurm.array_size as u64, 1..=u64::MAX),
                ("exec.slurm.cpus_per_task", e.slurm.cpus_per_task as u64, 1..=MAX_THREADS),
            ],
        )?;
        for (label, b) in &self.backbones {
            let key = format!("backbones.{label}.img_size");
            vrl_config::check_range("bocb", &key, b.img_size as u64, 0..=MAX_IMAGE_SIZE)?;
        }
        for (name, r) in &self.recipes {
            let key = format!("recipes.{name}.crop_padding");
            vrl_config::check_range("bocb", &key, r.crop_padding as u64, 0..=MAX_IMAGE_SIZE)?;
        }
        Ok(())
    }

    /// Checks everything that can be checked without building models or reading data: positive sizes,
    /// known labels, grids of the same length, ascending and positive, indices in range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_integers()?;
        let v = self.train.divergence_factor;
        if !(v > 0.0 && v.is_finite()) {
            return Err(invalid("train.divergence_factor", format!("must be positive, got {v}")));
        }
        if self.exec.heartbeat_seconds * 2 > self.exec.lease_seconds {
            return Err(invalid(
                "exec.lease_seconds",
                format!(
                    "must be at least twice exec.heartbeat_seconds ({}), got {}",
                    self.exec.heartbeat_seconds, self.exec.lease_seconds
                ),
            ));
        }
        if self.seeds.is_empty() {
            return Err(invalid("seeds", "at least one seed is needed"));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(s) = self.seeds.iter().find(|s| !seen.insert(**s)) {
            return Err(invalid("seeds", format!("seed {s} appears twice")));
        }
        if !["fashion-mnist", "mnist", "cifar100", "cifar10"].contains(&self.data.dataset.as_str()) {
            return Err(invalid(
                "data.dataset",
                format!(
                    "unknown data set `{}` (expected fashion-mnist, mnist, cifar100 or cifar10)",
                    self.data.dataset
                ),
            ));
        }
        for (name, r) in &self.recipes {
            for (key, v) in
                [("mixup_alpha", r.mixup_alpha), ("cutmix_alpha", r.cutmix_alpha), ("grad_clip", r.grad_clip)]
            {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(invalid(format!("recipes.{name}.{key}"), format!("must be ≥ 0, got {v}")));
                }
            }
            for (key, v, hi) in [
                ("resized_crop_min_scale", r.resized_crop_min_scale, 1.0),
                ("rand_augment_magnitude", r.rand_augment_magnitude, 10.0),
                ("random_erasing", r.random_erasing, 1.0),
            ] {
                if !(0.0..=hi).contains(&v) {
                    return Err(invalid(
                        format!("recipes.{name}.{key}"),
                        format!("must be in [0, {hi}], got {v}"),
                    ));
                }
            }
            if !(0.0..1.0).contains(&r.label_smoothing) {
                return Err(invalid(
                    format!("recipes.{name}.label_smoothing"),
                    format!("must be in [0, 1), got {}", r.label_smoothing),
                ));
            }
        }
        for (label, b) in &self.backbones {
            check_label(&format!("backbones.{label}"), label)?;
            if !self.recipes.contains_key(&b.recipe) {
                return Err(invalid(
                    format!("backbones.{label}.recipe"),
                    format!(
                        "unknown recipe `{}` (defined: {})",
                        b.recipe,
                        self.recipes.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        for (label, o) in &self.optimizers {
            check_label(&format!("optimizers.{label}"), label)?;
            for key in ["lr", "weight_decay"] {
                if o.hparams.0.contains_key(key) {
                    return Err(invalid(
                        format!("optimizers.{label}.hparams.{key}"),
                        format!("`{key}` is set by the grid (optimizers.{label}.{key}), not in hparams"),
                    ));
                }
            }
            for (key, grid) in [("lr", &o.lr), ("weight_decay", &o.weight_decay)] {
                let key = format!("optimizers.{label}.{key}");
                if grid.is_empty() {
                    return Err(invalid(key, "the grid is empty"));
                }
                if grid.iter().any(|v| !(v.is_finite() && *v >= 0.0)) || grid.windows(2).any(|w| w[0] >= w[1])
                {
                    return Err(invalid(
                        key,
                        format!("must be finite, ≥ 0 and strictly ascending, got {grid:?}"),
                    ));
                }
            }
        }
        let lens: Vec<(String, usize, usize)> =
            self.optimizers.iter().map(|(k, o)| (k.clone(), o.lr.len(), o.weight_decay.len())).collect();
        if self.select.backbones.is_empty() {
            return Err(invalid("select.backbones", "at least one backbone is needed"));
        }
        if self.select.optimizers.is_empty() {
            return Err(invalid("select.optimizers", "at least one optimizer is needed"));
        }
        for (key, list, known) in [
            ("select.backbones", &self.select.backbones, self.backbones.keys().cloned().collect::<Vec<_>>()),
            (
                "select.optimizers",
                &self.select.optimizers,
                self.optimizers.keys().cloned().collect::<Vec<_>>(),
            ),
        ] {
            let mut seen = std::collections::BTreeSet::new();
            for l in list {
                if !known.contains(l) {
                    return Err(invalid(key, format!("unknown label `{l}` (defined: {})", known.join(", "))));
                }
                if !seen.insert(l) {
                    return Err(invalid(key, format!("`{l}` appears twice")));
                }
            }
        }
        for (key, indices, which) in
            [("select.lr", &self.select.lr, 0usize), ("select.weight_decay", &self.select.weight_decay, 1)]
        {
            let mut seen = std::collections::BTreeSet::new();
            for &i in indices {
                if !seen.insert(i) {
                    return Err(invalid(key, format!("index {i} appears twice")));
                }
                for (label, nlr, nwd) in &lens {
                    if !self.select.optimizers.contains(label) {
                        continue;
                    }
                    let n = if which == 0 { *nlr } else { *nwd };
                    if i >= n {
                        return Err(invalid(
                            key,
                            format!(
                                "index {i} is out of range for optimizer `{label}`, whose grid has {n} values"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use vrl_config::{ExperimentFile, Override};

    use super::*;

    fn resolve(sets: &[&str]) -> Result<BocbConfig, ConfigError> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/bocb.toml");
        let file = ExperimentFile::load(&path).unwrap();
        let sets: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
        Ok(file.resolve::<BocbConfig>(None, &sets)?.config)
    }

    #[test]
    fn integers_out_of_range_are_named_with_their_range() {
        for (set, key) in [
            ("train.epochs=922337203685477581", "`train.epochs`"),
            ("train.batch_size=0", "`train.batch_size`"),
            ("train.checkpoint_every=1099511627777", "`train.checkpoint_every`"),
            ("exec.threads=4294967296", "`exec.threads`"),
            ("exec.workers=100000", "`exec.workers`"),
            ("exec.slurm.cpus_per_task=4294967296", "`exec.slurm.cpus_per_task`"),
            ("exec.heartbeat_seconds=9223372036854775807", "`exec.heartbeat_seconds`"),
            ("exec.lease_seconds=0", "`exec.lease_seconds`"),
            ("data.img_size=100000", "`data.img_size`"),
            ("backbones.resnet18.img_size=100000", "`backbones.resnet18.img_size`"),
            ("recipes.classic.crop_padding=100000", "`recipes.classic.crop_padding`"),
        ] {
            let e = resolve(&[set]).unwrap().validate().unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("must be an integer from"), "{set}: {e}");
        }
        resolve(&["exec.threads=0", "exec.workers=4"]).unwrap().validate().unwrap();
    }

    #[test]
    fn seeds_are_full_u64s() {
        let cfg = resolve(&["seeds=[0, \"18446744073709551615\"]"]).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.seeds, vec![0, u64::MAX]);
        let e = resolve(&["seeds=[1, -1]"]).unwrap_err().to_string();
        assert!(e.contains("`seeds[1]`") && e.contains(vrl_config::seed::EXPECTED), "{e}");
        let e = resolve(&["seeds=[3, \"3\"]"]).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("seed 3 appears twice"), "{e}");
    }
}
