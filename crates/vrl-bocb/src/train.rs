//! Training one cell: data, the model, the optimizer, the loop with checkpoints, resume and divergence
//! detection, evaluation after every epoch, and the final weights.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::{Device, Kind, Tensor, nn};
use vrl_data::transforms::{
    Augment, RandAugment, RandomCrop, RandomErasing, RandomResizedCrop, cutmix, mixup, uniform,
};
use vrl_data::{CifarKind, ColorImages, DataError, FashionMnist, ImageSet, Mnist, SplitMix64};
use vrl_loader::{ImageSource, Loader, LoaderConfig};
use vrl_models::{Model, ModelArgs};
use vrl_optim::{HessianNoise, Optimizer};
use vrl_run::MetricsLog;
use vrl_train::checkpoint::{Checkpoint, load_into_varstore, save_safetensors};
use vrl_train::{Precision, fault_injection, seed_step, to_device_pinned};

use crate::ledger::{CellRecord, Status};
use crate::{BocbConfig, Cell};

/// A data set of either kind, as one image source.
#[derive(Debug)]
pub enum DataSet {
    /// Grayscale (MNIST, Fashion-MNIST).
    Gray(ImageSet),
    /// Color (CIFAR).
    Color(ColorImages),
}

impl ImageSource for DataSet {
    fn len(&self) -> usize {
        match self {
            DataSet::Gray(s) => s.n,
            DataSet::Color(s) => s.n,
        }
    }
    fn shape(&self) -> [usize; 3] {
        match self {
            DataSet::Gray(s) => ImageSource::shape(s),
            DataSet::Color(s) => ImageSource::shape(s),
        }
    }
    fn label(&self, i: usize) -> i64 {
        match self {
            DataSet::Gray(s) => ImageSource::label(s, i),
            DataSet::Color(s) => ImageSource::label(s, i),
        }
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<(), DataError> {
        match self {
            DataSet::Gray(s) => s.read(i, out),
            DataSet::Color(s) => s.read(i, out),
        }
    }
}

/// The train and test sets with what the models need to know about them.
#[derive(Debug)]
pub struct Data {
    /// Training images.
    pub train: Arc<DataSet>,
    /// Test images.
    pub test: Arc<DataSet>,
    /// Classes.
    pub num_classes: usize,
    /// Per-channel mean and standard deviation.
    pub mean: Vec<f32>,
    /// See `mean`.
    pub std: Vec<f32>,
}

impl Data {
    /// Loads the configured data set (the dataset cache when `data.dir` is empty).
    pub fn load(cfg: &BocbConfig) -> anyhow::Result<Data> {
        let d = &cfg.data;
        let dir = || -> anyhow::Result<PathBuf> {
            Ok(match d.dir.as_str() {
                "" => vrl_cache::ready_dataset_dir(&d.dataset)?,
                dir => PathBuf::from(dir),
            })
        };
        let mut data = match d.dataset.as_str() {
            "fashion-mnist" | "mnist" => {
                let (mut train, mut test, mean, std) = if d.dataset == "mnist" {
                    let m = Mnist::load(&dir()?)?;
                    (m.train, m.test, Mnist::MEAN, Mnist::STD)
                } else {
                    let m = FashionMnist::load(&dir()?)?;
                    (m.train, m.test, FashionMnist::MEAN, FashionMnist::STD)
                };
                train.truncate(d.train_limit);
                test.truncate(d.test_limit);
                Data {
                    train: Arc::new(DataSet::Gray(train)),
                    test: Arc::new(DataSet::Gray(test)),
                    num_classes: 10,
                    mean: vec![mean],
                    std: vec![std],
                }
            }
            name => {
                let kind = if name == "cifar10" { CifarKind::Cifar10 } else { CifarKind::Cifar100 };
                anyhow::ensure!(
                    !d.dir.is_empty(),
                    vrl_config::ConfigError::Invalid {
                        experiment: "bocb".into(),
                        key: "data.dir".into(),
                        message: format!(
                            "{name} is not in the dataset cache: set data.dir to the directory of the binary \
                             version (the one holding `{}`)",
                            kind.dir_name()
                        ),
                    }
                );
                let mut train = vrl_data::load_cifar(&dir()?, kind, true)?;
                let mut test = vrl_data::load_cifar(&dir()?, kind, false)?;
                train.truncate(d.train_limit);
                test.truncate(d.test_limit);
                Data {
                    num_classes: kind.num_classes(),
                    train: Arc::new(DataSet::Color(train)),
                    test: Arc::new(DataSet::Color(test)),
                    mean: kind.mean().to_vec(),
                    std: kind.std().to_vec(),
                }
            }
        };
        if data.num_classes == 0 {
            data.num_classes = 10;
        }
        Ok(data)
    }

    /// `(C, side)` of the images backbone `backbone` sees: its own `img_size`, else `data.img_size`,
    /// else the native size.
    pub fn input(&self, cfg: &BocbConfig, backbone: &str) -> (usize, usize) {
        let [c, h, _] = self.train.shape();
        let own = cfg.backbones.get(backbone).map_or(0, |b| b.img_size);
        let side = if own > 0 {
            own
        } else if cfg.data.img_size > 0 {
            cfg.data.img_size
        } else {
            h
        };
        (c, side)
    }
}

/// The model arguments of a backbone with the data's classes, channels and size filled in.
pub fn model_args(cfg: &BocbConfig, data: &Data, backbone: &str) -> anyhow::Result<(String, ModelArgs)> {
    let b = cfg.backbones.get(backbone).with_context(|| format!("unknown backbone `{backbone}`"))?;
    let (c, side) = data.input(cfg, backbone);
    let mut args = b.args.clone();
    args.num_classes = Some(data.num_classes as i64);
    args.in_chans = Some(c as i64);
    // Families that take no `img_size` (and reject it) leave it unset; the rest are told the size. Found
    // out by building the model once per process and backbone.
    static TAKES_SIZE: Mutex<BTreeMap<String, bool>> = Mutex::new(BTreeMap::new());
    let key = format!("{backbone}@{side}");
    let known = TAKES_SIZE.lock().ok().and_then(|m| m.get(&key).copied());
    let takes_size = match known {
        Some(t) => t,
        None => {
            let sized = ModelArgs { img_size: Some(side as i64), ..args.clone() };
            let t = vrl_models::create(&b.model, &nn::VarStore::new(Device::Cpu).root(), &sized).is_ok();
            if let Ok(mut m) = TAKES_SIZE.lock() {
                m.insert(key, t);
            }
            t
        }
    };
    if takes_size {
        args.img_size = Some(side as i64);
    }
    Ok((b.model.clone(), args))
}

/// What the loop keeps in a checkpoint's header.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LoopState {
    window_loss: f64,
    window_correct: i64,
    window_seen: i64,
    first_loss: Option<f64>,
    best_top1: Option<f64>,
    last_top1: Option<f64>,
}

/// Why a cell's loop stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A signal (SIGTERM, …), the grid's fail-fast stop, or the parent process gone.
    Requested(String),
    /// Another worker took the cell over.
    Lost,
}

/// How a cell's training ended.
#[derive(Debug)]
pub enum CellEnd {
    /// Finished (trained, or diverged): its record.
    Done(CellRecord),
    /// Stopped after saving a checkpoint; the cell resumes there.
    Stopped(Stop),
}

/// A model, its variables and its optimizer.
struct Trainer {
    vs: nn::VarStore,
    model: Box<dyn Model>,
    optimizer: Box<dyn Optimizer>,
    params: Vec<Tensor>,
    precision: Precision,
}

/// The training targets of a batch.
enum Target {
    Hard(Tensor),
    Soft(Tensor),
}

impl Trainer {
    fn step(
        &mut self,
        images: &Tensor,
        target: &Target,
        smoothing: f64,
        clip: f64,
        lr: f64,
    ) -> anyhow::Result<(f64, Tensor)> {
        // Forward and loss under autocast; the loss on float32 logits; backward and step outside.
        let amp = vrl_train::autocast(self.vs.device(), self.precision)?;
        let logits = self.model.forward_t(images, true);
        let float_logits = logits.f_to_kind(Kind::Float)?;
        let loss = match target {
            Target::Hard(labels) => float_logits.f_cross_entropy_loss::<Tensor>(
                labels,
                None,
                tch::Reduction::Mean,
                -100,
                smoothing,
            )?,
            Target::Soft(t) => (t * float_logits.f_log_softmax(-1, Kind::Float)?)
                .f_sum_dim_intlist(-1, false, Kind::Float)?
                .f_neg()?
                .f_mean(Kind::Float)?,
        };
        drop(amp);
        self.optimizer.zero_grad();
        if self.optimizer.hessian_due() {
            // Second-order optimizers (Sophia): a Hutchinson estimate of the Hessian diagonal.
            let grads = Tensor::f_run_backward(&[&loss], &self.params, true, true)?;
            let estimate = vrl_optim::hutchinson_estimate(&grads, &self.params, 1, HessianNoise::Gaussian)?;
            self.optimizer.update_hessian(estimate)?;
        }
        loss.f_backward()?;
        if clip > 0.0 {
            vrl_optim::clip_grad_norm(&self.params, clip);
        }
        match self.optimizer.step(lr) {
            Err(vrl_optim::OptimError::NonFinite { .. }) => return Ok((f64::NAN, logits.detach())),
            other => other?,
        }
        Ok((loss.double_value(&[]), logits.detach()))
    }

    fn evaluate(&self, test: &Loader<DataSet>, device: Device) -> anyhow::Result<f64> {
        let _guard = tch::no_grad_guard();
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        let mut n = 0i64;
        for batch in test.epoch(0, 0) {
            let batch = batch?;
            let labels = to_device_pinned(&batch.labels, device)?;
            let images = to_device_pinned(&batch.images, device)?;
            let logits = {
                let _amp = vrl_train::autocast(device, self.precision)?;
                self.model.forward_t(&images, false)
            };
            correct += logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
            n += labels.size()[0];
        }
        Ok(correct.int64_value(&[]) as f64 / n.max(1) as f64)
    }
}

/// The per-cell log file: one line per event, appended.
pub struct CellLog {
    file: Option<std::fs::File>,
}

impl CellLog {
    /// Opens `path` for appending (logging is best effort).
    pub fn open(path: &Path) -> CellLog {
        CellLog { file: std::fs::OpenOptions::new().create(true).append(true).open(path).ok() }
    }

    /// Appends a line (and sends it to the tracing log).
    pub fn line(&mut self, cell: &str, text: &str) {
        tracing::info!("{cell}: {text}");
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{text}");
        }
    }
}

/// Trains `cell` in `dir` (`checkpoints/`, `metrics.jsonl`, `model.safetensors`), resuming from its
/// newest checkpoint. `stop` is asked after every step whether to stop (it also beats the claim's
/// heartbeat).
pub fn train_cell(
    cfg: &BocbConfig,
    data: &Data,
    device: Device,
    cell: &Cell,
    dir: &Path,
    log: &mut CellLog,
    stop: &mut dyn FnMut() -> Option<Stop>,
) -> anyhow::Result<CellEnd> {
    let t = &cfg.train;
    let b = &cfg.backbones[&cell.backbone];
    let recipe = &cfg.recipes[&b.recipe];
    let opt = &cfg.optimizers[&cell.optimizer];
    let ckpt_dir = dir.join("checkpoints");
    std::fs::create_dir_all(&ckpt_dir).with_context(|| format!("creating {}", ckpt_dir.display()))?;

    let (model_name, args) = model_args(cfg, data, &cell.backbone)?;
    tch::manual_seed(vrl_config::seed::to_torch(cell.seed));
    let vs = nn::VarStore::new(device);
    let model = vrl_models::create(&model_name, &vs.root(), &args)?;
    let mut named: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let flags = vrl_optim::ParamGroups::default().flags(&named);
    let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
    let optimizer =
        vrl_optim::create_with_groups(&opt.name, &opt.hparams_at(cell.lr, cell.weight_decay), named, &flags)?;
    let mut tr = Trainer { vs, model, optimizer, params, precision: cfg.precision };

    let (_, side) = data.input(cfg, &cell.backbone);
    let [_, h, w] = data.train.shape();
    let resize = (side != h || side != w).then_some([side, side]);
    // The study's 224-pixel recipe: a random resized crop of the native image (PIL bicubic) instead of
    // resize-then-crop, and a bicubic resize of the test images (a resized crop of the whole image).
    let bicubic = |min_scale: f64, ratio: (f64, f64)| RandomResizedCrop {
        size: [side, side],
        scale: (min_scale, 1.0),
        ratio,
    };
    let rrc = resize.is_some() && recipe.resized_crop_min_scale > 0.0 && h == w;
    let train_aug = Augment {
        resize: if rrc { None } else { resize },
        crop: (recipe.crop_padding > 0 && !rrc).then_some(RandomCrop {
            size: [side, side],
            padding: recipe.crop_padding,
            reflect: recipe.reflect_padding,
        }),
        resized_crop: rrc.then(|| bicubic(recipe.resized_crop_min_scale, (3.0 / 4.0, 4.0 / 3.0))),
        flip_p: if recipe.flip { 0.5 } else { 0.0 },
        rand_augment: (recipe.rand_augment_magnitude > 0.0)
            .then(|| RandAugment { level: recipe.rand_augment_magnitude, ..RandAugment::cifar() }),
        erasing: (recipe.random_erasing > 0.0)
            .then(|| RandomErasing { p: recipe.random_erasing, ..RandomErasing::cifar() }),
        mean: data.mean.clone(),
        std: data.std.clone(),
    };
    let test_aug = Augment {
        resize: if rrc { None } else { resize },
        crop: None,
        resized_crop: rrc.then(|| bicubic(1.0, (1.0, 1.0))),
        flip_p: 0.0,
        rand_augment: None,
        erasing: None,
        mean: data.mean.clone(),
        std: data.std.clone(),
    };
    let loader_cfg = |batch_size, shuffle| LoaderConfig {
        batch_size,
        shuffle,
        drop_last: false,
        prefetch: 2,
        seed: cell.seed,
        sampler: None,
    };
    let train = Loader::new(Arc::clone(&data.train), train_aug, loader_cfg(t.batch_size, true));
    let test = Loader::new(Arc::clone(&data.test), test_aug, loader_cfg(t.eval_batch_size, false));
    let per_epoch = train.num_batches() as u64;
    let total = vrl_config::total_steps("bocb", "train.epochs", per_epoch, t.epochs)?;

    let mut state = LoopState::default();
    let mut start = 0u64;
    if let Some(ckpt) = Checkpoint::latest(&ckpt_dir)? {
        load_into_varstore(&tr.vs, &ckpt.group("model"), &ckpt.path)?;
        tr.optimizer.load_state(&ckpt.group("optim")).with_context(|| format!("{}", ckpt.path.display()))?;
        state = ckpt.state()?;
        start = ckpt.step;
        log.line(&cell.id, &format!("resuming from step {start} of {total} ({})", ckpt.path.display()));
    } else {
        log.line(
            &cell.id,
            &format!(
                "start: {model_name} {} lr {} wd {} seed {}, {total} steps",
                opt.name, cell.lr, cell.weight_decay, cell.seed
            ),
        );
    }
    let mut metrics = MetricsLog::open(&dir.join("metrics.jsonl"), (start > 0).then_some(start))?;
    let save = |tr: &Trainer, step: u64, state: &LoopState, metrics: &mut MetricsLog| -> anyhow::Result<()> {
        metrics.sync()?;
        let model: Vec<(String, Tensor)> = tr.vs.variables().into_iter().collect();
        Checkpoint::save(
            &ckpt_dir,
            step,
            state,
            &[("model", model), ("optim", tr.optimizer.state())],
            t.keep_checkpoints,
        )?;
        Ok(())
    };

    let mix = recipe.mixup_alpha > 0.0 || recipe.cutmix_alpha > 0.0;
    let mut step = start;
    while step < total {
        let epoch = step / per_epoch;
        let skip = (step % per_epoch) as usize;
        for batch in train.epoch(epoch, skip) {
            let batch = batch?;
            seed_step(cell.seed, step);
            let lr = t.schedule.lr(cell.lr, step, total);
            let labels = to_device_pinned(&batch.labels, device)?;
            let (images, target) = if mix {
                let mut rng = SplitMix64::with_stream(cell.seed ^ 0x6D69_7875_7063_7574, step);
                let size = batch.images.size();
                let dims: Vec<usize> = size.iter().map(|&d| d as usize).collect();
                let mut pixels = Vec::<f32>::try_from(batch.images.flatten(0, -1))?;
                let use_cutmix = match (recipe.mixup_alpha > 0.0, recipe.cutmix_alpha > 0.0) {
                    (true, true) => uniform(&mut rng) < 0.5,
                    (_, c) => c,
                };
                let mixed = if use_cutmix {
                    cutmix(&mut pixels, [dims[0], dims[1], dims[2], dims[3]], recipe.cutmix_alpha, &mut rng)
                } else {
                    mixup(&mut pixels, dims[0], recipe.mixup_alpha, &mut rng)
                };
                let lab: Vec<usize> =
                    Vec::<i64>::try_from(&batch.labels)?.into_iter().map(|l| l as usize).collect();
                let soft = mixed.targets(&lab, data.num_classes, recipe.label_smoothing as f32);
                let soft = to_device_pinned(
                    &Tensor::from_slice(&soft).view([dims[0] as i64, data.num_classes as i64]),
                    device,
                )?;
                (
                    to_device_pinned(&Tensor::from_slice(&pixels).view(size.as_slice()), device)?,
                    Target::Soft(soft),
                )
            } else {
                (to_device_pinned(&batch.images, device)?, Target::Hard(labels.shallow_clone()))
            };
            let (loss, logits) = tr.step(&images, &target, recipe.label_smoothing, recipe.grad_clip, lr)?;
            let correct = logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64).int64_value(&[]);
            step += 1;
            let n = labels.size()[0];
            state.window_loss += loss * n as f64;
            state.window_correct += correct;
            state.window_seen += n;
            let reference = *state.first_loss.get_or_insert(loss);
            if !loss.is_finite() || loss > t.divergence_factor * reference.max(1e-3) {
                metrics.log(
                    &json!({"step": step, "epoch": epoch, "lr": lr, "loss": finite(loss), "diverged": true}),
                )?;
                let message = if loss.is_finite() {
                    format!(
                        "loss {loss:.4} exceeded {} × the first step's {reference:.4} at step {step}",
                        t.divergence_factor
                    )
                } else {
                    format!("loss became {loss} at step {step}")
                };
                log.line(&cell.id, &format!("diverged: {message}"));
                return Ok(CellEnd::Done(CellRecord {
                    cell: cell.id.clone(),
                    status: Status::Diverged,
                    final_top1: None,
                    best_top1: state.best_top1,
                    failed_step: Some(step),
                    message: Some(message),
                    steps: step,
                }));
            }
            let epoch_end = step.is_multiple_of(per_epoch);
            if step.is_multiple_of(t.log_every) || epoch_end {
                let seen = state.window_seen.max(1) as f64;
                metrics.log(&json!({
                    "step": step, "epoch": epoch, "lr": lr, "loss": state.window_loss / seen,
                    "train_accuracy": state.window_correct as f64 / seen,
                }))?;
                state.window_loss = 0.0;
                state.window_correct = 0;
                state.window_seen = 0;
            }
            if epoch_end {
                let top1 = tr.evaluate(&test, device)?;
                state.best_top1 = Some(state.best_top1.map_or(top1, |b| b.max(top1)));
                state.last_top1 = Some(top1);
                metrics.log(&json!({"step": step, "epoch": epoch + 1, "test_top1": top1}))?;
                log.line(&cell.id, &format!("epoch {} test top-1 {:.4}", epoch + 1, top1));
            }
            fault_injection(step);
            let stop_now = stop();
            let due = step.is_multiple_of(t.checkpoint_every) || epoch_end || stop_now.is_some();
            if due && stop_now != Some(Stop::Lost) {
                save(&tr, step, &state, &mut metrics)?;
            }
            if let Some(reason) = stop_now {
                log.line(&cell.id, &format!("stopped at step {step}: {reason:?}"));
                return Ok(CellEnd::Stopped(reason));
            }
        }
    }
    let final_top1 = match state.last_top1 {
        Some(t) => t,
        None => tr.evaluate(&test, device)?,
    };
    // The final weights, for the per-layer statistics (see `crate::layer_stats`).
    let weights: Vec<(String, Tensor)> = tr.vs.variables().into_iter().collect();
    save_safetensors(&dir.join("model.safetensors"), &weights)?;
    log.line(&cell.id, &format!("done: final top-1 {final_top1:.4}"));
    Ok(CellEnd::Done(CellRecord {
        cell: cell.id.clone(),
        status: Status::Ok,
        final_top1: Some(final_top1),
        best_top1: Some(state.best_top1.unwrap_or(final_top1).max(final_top1)),
        failed_step: None,
        message: None,
        steps: total,
    }))
}

fn finite(x: f64) -> serde_json::Value {
    if x.is_finite() { json!(x) } else { serde_json::Value::Null }
}
