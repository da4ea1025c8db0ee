//! The `transfer` experiment: every transfer method on the same frozen backbones and target task.
//!
//! 1. Backbones: a small ViT pretrained here, supervised and as a masked autoencoder (MAE), on one
//!    data set (smoke: MNIST), each checkpoint cached by a hash of its pretraining settings
//!    (`<cache>/<kind>-<hash>.safetensors`, reused by later runs); or a user-provided timm
//!    checkpoint (paper preset).
//! 2. Burstiness of each backbone's prompt–key interactions on the target's training images
//!    (`<backbone>/burstiness.json`).
//! 3. Each method tuned on the target task (smoke: Fashion-MNIST), its test accuracy measured every
//!    `tune.eval_every` steps; `<backbone>/<method>/result.json` and `metrics.jsonl`.
//!
//! A finished piece is never redone, so an interrupted run resumes at the method it was in (which
//! restarts from its beginning) and ends with the same results.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tch::nn;
use tch::{Device, Kind, Tensor};
use vrl_config::ExperimentFile;
use vrl_data::{FashionMnist, ImageFolder, ImageSet, Mnist, permutation};
use vrl_loader::TensorDataset;
use vrl_models::vision_transformer::VitConfig;
use vrl_models::{Model, VisionTransformer};
use vrl_optim::{HParams, HValue};
use vrl_run::MetricsLog;
use vrl_train::{Opened, Outcome, RunOptions, StopSignal, seed_step, to_device_pinned};

use crate::burstiness::{Histogram, interaction_values, kurtosis};
use crate::config::{BackboneConfig, PretrainRun, TransferConfig};
use crate::mae::{MaeConfig, MaskedAutoencoder};
use crate::settings::{invalid, lr_of, methods_of, peak_lr};
pub use crate::settings::{method_of, validate, vit_config};
use crate::{FrozenBackbone, TransferModel, steps_to_90pct_final};

/// The method names of the experiment, in report order.
pub const METHODS: [&str; 10] = [
    "linear",
    "full_ft",
    "vpt_shallow",
    "vpt_deep",
    "bpt_full_shallow",
    "bpt_full_deep",
    "bpt_lowrank_shallow",
    "bpt_lowrank_deep",
    "lora",
    "toast",
];
/// ImageNet's channel statistics (timm's defaults) for image-folder data.
const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Images and labels in memory (CPU).
struct Split {
    images: Tensor,
    labels: Tensor,
}

impl Split {
    fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    /// A seeded subset of `k` examples (all for 0 or more than there are).
    fn subset(self, k: usize, seed: u64, stream: u64) -> Self {
        let n = self.len();
        if k == 0 || k >= n {
            return self;
        }
        let idx: Vec<i64> = permutation(n, seed, stream).into_iter().take(k).map(|i| i as i64).collect();
        let idx = Tensor::from_slice(&idx);
        Split { images: self.images.index_select(0, &idx), labels: self.labels.index_select(0, &idx) }
    }
}

/// A pretrained network's tensors by name and the pretraining's figures.
type Pretrained = (Vec<(String, Tensor)>, Value);

/// How a piece of work ended.
enum Done<T> {
    Finished(T),
    Interrupted(&'static str),
}

/// Writes `value` to `path` atomically and returns it as read back, so that a run that computes a
/// piece and one that resumes from its file go on from the same value (with serde_json's
/// `float_roundtrip`, floats read back bit for bit; the read also normalises what JSON cannot hold).
fn persist(path: &Path, value: &Value) -> anyhow::Result<Value> {
    let text = serde_json::to_string_pretty(value)?;
    vrl_run::write_atomic(path, text.as_bytes())?;
    Ok(serde_json::from_str(&text)?)
}

pub(crate) fn mae_config(cfg: &TransferConfig, vit: &VitConfig) -> MaeConfig {
    let m = &cfg.pretrain.mae;
    MaeConfig {
        vit: vit.clone(),
        decoder_embed_dim: m.decoder_embed_dim,
        decoder_depth: m.decoder_depth,
        decoder_num_heads: m.decoder_num_heads,
        mask_ratio: m.mask_ratio,
        norm_pix_loss: m.norm_pix_loss,
    }
}

/// An IDX data set (`mnist` or `fashion-mnist`) from `dir` or the dataset cache, normalised.
fn load_idx(name: &str, dir: &str) -> anyhow::Result<(Split, Split)> {
    let dir = match dir {
        "" => vrl_cache::ready_dataset_dir(name)?,
        d => PathBuf::from(d),
    };
    let (train, test, mean, std): (ImageSet, ImageSet, f32, f32) = if name == "mnist" {
        let m = Mnist::load(&dir)?;
        (m.train, m.test, Mnist::MEAN, Mnist::STD)
    } else {
        let m = FashionMnist::load(&dir)?;
        (m.train, m.test, FashionMnist::MEAN, FashionMnist::STD)
    };
    let split = |s: &ImageSet| {
        let t = TensorDataset::from_images(s, mean, std);
        Split { images: t.images, labels: t.labels }
    };
    Ok((split(&train), split(&test)))
}

/// An image folder resized to `size`, normalised with ImageNet's statistics.
fn load_folder(dir: &str, size: i64) -> anyhow::Result<(Split, usize)> {
    let folder = ImageFolder::from_dir(Path::new(dir))?;
    let mean = Tensor::from_slice(&IMAGENET_MEAN).to_kind(Kind::Float).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&IMAGENET_STD).to_kind(Kind::Float).view([1, 3, 1, 1]);
    let mut images = Vec::with_capacity(folder.len());
    for i in 0..folder.len() {
        let img = folder.load_rgb(i)?;
        let t = Tensor::from_slice(&img.pixels)
            .view([img.height as i64, img.width as i64, 3])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .to_kind(Kind::Float)
            / 255.0;
        let t = t.upsample_bilinear2d([size, size], false, None, None);
        images.push((t - &mean) / &std);
    }
    let labels: Vec<i64> = folder.labels().into_iter().map(|l| l as i64).collect();
    Ok((Split { images: Tensor::cat(&images, 0), labels: Tensor::from_slice(&labels) }, folder.num_classes()))
}

/// The target task: training and test split and the number of classes.
fn load_target(cfg: &TransferConfig, vit: &VitConfig) -> anyhow::Result<(Split, Split, i64)> {
    let d = &cfg.data;
    let (train, test, classes) = match d.dataset.as_str() {
        "folder" => {
            let (train, c) = load_folder(&d.train_dir, vit.img_size).context("data.train_dir")?;
            let (test, ct) = load_folder(&d.test_dir, vit.img_size).context("data.test_dir")?;
            if c != ct {
                return Err(invalid(
                    "data.test_dir",
                    format!("{ct} classes in the test split, {c} in the training split"),
                ));
            }
            (train, test, c as i64)
        }
        name => {
            let (train, test) = load_idx(name, &d.dir).with_context(|| format!("data ({name})"))?;
            (train, test, 10)
        }
    };
    Ok((train.subset(d.train_images, cfg.seed, 1), test.subset(d.test_images, cfg.seed, 2), classes))
}

/// The hex SHA-256 of `value`'s JSON, shortened.
fn hash_of(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The checkpoint of backbone `b`: given, cached, or pretrained now (and cached). Also the
/// pretraining's figures (`{}` for a given checkpoint).
#[allow(clippy::too_many_arguments)]
fn backbone_checkpoint(
    cfg: &TransferConfig,
    b: &BackboneConfig,
    vit: &VitConfig,
    pretrain_data: &mut Option<(Split, Split)>,
    device: Device,
    stop: &StopSignal,
) -> anyhow::Result<Done<(PathBuf, Value)>> {
    if b.source == "checkpoint" {
        return Ok(Done::Finished((PathBuf::from(&b.checkpoint), json!({"checkpoint": b.checkpoint}))));
    }
    let p = &cfg.pretrain;
    let key = json!({
        "kind": b.source,
        "model": format!("{vit:?}"),
        "dataset": p.dataset,
        "images": p.images,
        "test_images": p.test_images,
        "seed": cfg.seed,
        "run": if b.source == "mae" { serde_json::to_value(&p.mae)? } else { serde_json::to_value(&p.supervised)? },
    });
    let cache = match p.cache_dir.as_str() {
        "" => vrl_cache::cache_dir().join("checkpoints").join("transfer"),
        d => PathBuf::from(d),
    };
    let stem = format!("{}-{}", b.source, hash_of(&key));
    let path = cache.join(format!("{stem}.safetensors"));
    let info_path = cache.join(format!("{stem}.json"));
    if path.is_file()
        && let Ok(text) = std::fs::read_to_string(&info_path)
    {
        let mut info: Value =
            serde_json::from_str(&text).with_context(|| format!("reading {}", info_path.display()))?;
        tracing::info!("{}: cached pretrained backbone {}", b.name, path.display());
        info["cached"] = json!(true);
        return Ok(Done::Finished((path, info)));
    }
    if pretrain_data.is_none() {
        let (train, test) =
            load_idx(&p.dataset, &p.dir).with_context(|| format!("pretrain ({})", p.dataset))?;
        *pretrain_data = Some((train.subset(p.images, cfg.seed, 3), test.subset(p.test_images, cfg.seed, 4)));
    }
    let Some((train, test)) = pretrain_data.as_ref() else { unreachable!("loaded above") };
    tracing::info!("{}: pretraining ({}) on {} {} images", b.name, b.source, train.len(), p.dataset);
    let t0 = Instant::now();
    let (tensors, mut info) = match pretrain(cfg, b, vit, train, test, device, stop)? {
        Done::Finished(x) => x,
        Done::Interrupted(s) => return Ok(Done::Interrupted(s)),
    };
    info["seconds"] = json!(t0.elapsed().as_secs_f64());
    info["key"] = key;
    vrl_models::weights::save_safetensors(&path, &tensors)?;
    let mut info = persist(&info_path, &info)?;
    info["cached"] = json!(false);
    Ok(Done::Finished((path, info)))
}

/// Pretrains a ViT (with labels, or as MAE's encoder); returns every tensor by name and the
/// figures (final loss; test accuracy for the supervised one).
fn pretrain(
    cfg: &TransferConfig,
    b: &BackboneConfig,
    vit: &VitConfig,
    train: &Split,
    test: &Split,
    device: Device,
    stop: &StopSignal,
) -> anyhow::Result<Done<Pretrained>> {
    let mae = b.source == "mae";
    let run: &PretrainRun = if mae { &cfg.pretrain.mae.run } else { &cfg.pretrain.supervised };
    let stream = if mae { 20 } else { 10 };
    tch::manual_seed(vrl_config::seed::to_torch(cfg.seed ^ stream));
    let vs = nn::VarStore::new(device);
    let (sup, mae_model) = if mae {
        (None, Some(MaskedAutoencoder::new(&vs.root(), mae_config(cfg, vit)).context("pretrain.mae")?))
    } else {
        let mut c = vit.clone();
        c.num_classes = 10;
        (Some(VisionTransformer::new(&vs.root(), c)), None)
    };
    let mut params: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = vrl_optim::create(&run.optimizer, &run.hparams, params)?;
    let base = peak_lr(&run.hparams, "pretrain.hparams.lr")?;
    let n = train.len();
    let per_epoch = n.div_ceil(run.batch_size) as u64;
    let key = if mae { "pretrain.mae.epochs" } else { "pretrain.supervised.epochs" };
    let total = vrl_config::total_steps("transfer", key, per_epoch, run.epochs)?;
    let patches = vit.grid_size() * vit.grid_size();
    let mut step = 0u64;
    let mut last = f64::NAN;
    for epoch in 0..run.epochs {
        let order = permutation(n, cfg.seed ^ stream, 100 + epoch);
        let (mut sum, mut seen) = (0.0, 0usize);
        for chunk in order.chunks(run.batch_size) {
            seed_step(cfg.seed ^ stream, step);
            let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let x = to_device_pinned(&train.images.index_select(0, &idx), device)?;
            // Forward and loss under autocast (the loss in float32); backward and step outside.
            let amp = vrl_train::autocast(device, cfg.precision)?;
            let loss = match (&sup, &mae_model) {
                (Some(v), _) => {
                    let y = to_device_pinned(&train.labels.index_select(0, &idx), device)?;
                    v.forward_t(&x, true).f_to_kind(Kind::Float)?.cross_entropy_for_logits(&y)
                }
                (_, Some(m)) => {
                    let noise = Tensor::rand([chunk.len() as i64, patches], (Kind::Float, device));
                    m.forward(&x, &noise, true).0.f_to_kind(Kind::Float)?
                }
                _ => unreachable!("one model is built"),
            };
            drop(amp);
            opt.zero_grad();
            loss.f_backward()?;
            opt.step(run.schedule.lr(base, step, total))
                .with_context(|| format!("pretraining step {step}"))?;
            sum += loss.double_value(&[]) * chunk.len() as f64;
            seen += chunk.len();
            step += 1;
            if let Some(signal) = stop.requested() {
                return Ok(Done::Interrupted(signal));
            }
        }
        last = sum / seen.max(1) as f64;
        tracing::info!("{} pretraining epoch {}: loss {last:.4}", b.source, epoch + 1);
    }
    let mut info = json!({"kind": b.source, "steps": step, "final_loss": last, "images": n});
    if let Some(v) = &sup {
        let acc = accuracy(&|x| v.forward_t(x, false), test, 500, device)?;
        info["test_accuracy"] = json!(acc);
        tracing::info!("supervised backbone: {:.1}% on its own test set", 100.0 * acc);
    }
    let mut all: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(k, t)| (k, t.to_device(Device::Cpu))).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Done::Finished((all, info)))
}

/// Top-1 accuracy of `f` (logits) on `split`, in batches, in evaluation mode.
fn accuracy(
    f: &dyn Fn(&Tensor) -> Tensor,
    split: &Split,
    batch: usize,
    device: Device,
) -> anyhow::Result<f64> {
    let _guard = tch::no_grad_guard();
    let n = split.len() as i64;
    let mut correct = 0.0;
    for s in (0..n).step_by(batch.max(1)) {
        let len = (batch as i64).min(n - s);
        let x = to_device_pinned(&split.images.narrow(0, s, len), device)?;
        let y = to_device_pinned(&split.labels.narrow(0, s, len), device)?;
        let pred = f(&x).argmax(-1, false);
        correct += pred.eq_tensor(&y).to_kind(Kind::Float).sum(Kind::Float).f_double_value(&[])?;
    }
    Ok(correct / n.max(1) as f64)
}

/// A small stable number for a name, to give each method its own random streams.
fn stream_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3))
}

/// Tunes one method on the target task; its figures and convergence curve.
#[allow(clippy::too_many_arguments)]
fn tune(
    cfg: &TransferConfig,
    name: &str,
    vit: &VitConfig,
    checkpoint: &Path,
    train: &Split,
    test: &Split,
    classes: i64,
    dir: &Path,
    device: Device,
    stop: &StopSignal,
) -> anyhow::Result<Done<Value>> {
    let stream = cfg.seed ^ stream_of(name);
    tch::manual_seed(vrl_config::seed::to_torch(stream));
    let method = method_of(name, cfg)?;
    let backbone = FrozenBackbone::from_safetensors(vit.clone(), device, checkpoint)
        .with_context(|| format!("loading backbone {}", checkpoint.display()))?;
    let model = TransferModel::new(backbone, method.clone(), classes, Some(&train.images))
        .with_context(|| format!("method `{name}`"))?;
    let mut metrics = MetricsLog::open(&dir.join("metrics.jsonl"), None)?;
    let t0 = Instant::now();
    let n = train.len();
    let bs = cfg.tune.batch_size;
    let per_epoch = n.div_ceil(bs) as u64;
    let batch = |step: u64| -> anyhow::Result<(Tensor, Tensor)> {
        let (epoch, k) = (step / per_epoch, (step % per_epoch) as usize);
        let order = permutation(n, stream, 1000 + epoch);
        let chunk = &order[k * bs..((k + 1) * bs).min(n)];
        let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>());
        Ok((
            to_device_pinned(&train.images.index_select(0, &idx), device)?,
            to_device_pinned(&train.labels.index_select(0, &idx), device)?,
        ))
    };
    // TOAST: pre-tune the feedback path on its reconstruction loss alone.
    let mut pretune = Value::Null;
    if let Some(toast) = model.toast()
        && cfg.settings.toast.pretune_steps > 0
    {
        let params: Vec<(String, Tensor)> = toast
            .decoders
            .iter()
            .enumerate()
            .map(|(i, (f, _))| (format!("decoders.{i}.linear.weight"), f.shallow_clone()))
            .collect();
        let hp = HParams::parse(&[&format!("lr={}", cfg.settings.toast.pretune_lr)])?;
        let mut opt = vrl_optim::create("adam", &hp, params)?;
        let (mut first, mut last) = (f64::NAN, f64::NAN);
        for step in 0..cfg.settings.toast.pretune_steps {
            seed_step(stream ^ 0x70, step);
            let (x, _) = batch(step)?;
            let l = {
                let _amp = vrl_train::autocast(device, cfg.precision)?;
                toast.forward(&model.backbone, &x, true).reconstruction_loss.f_to_kind(Kind::Float)?
            };
            opt.zero_grad();
            l.f_backward()?;
            opt.step(cfg.settings.toast.pretune_lr)?;
            let v = l.double_value(&[]);
            if step == 0 {
                first = v;
            }
            last = v;
            if let Some(signal) = stop.requested() {
                return Ok(Done::Interrupted(signal));
            }
        }
        metrics.log(&json!({"pretune_steps": cfg.settings.toast.pretune_steps, "reconstruction_first": first, "reconstruction_last": last}))?;
        pretune = json!({"steps": cfg.settings.toast.pretune_steps, "reconstruction_loss_first": first, "reconstruction_loss_last": last});
    }
    let params = model.trainable_parameters();
    let trainable = model.num_trainable();
    let formula = {
        let unfrozen: i64 = model.backbone.trainable_parameters().iter().map(|(_, t)| t.numel() as i64).sum();
        method.trainable_params_formula(vit.embed_dim, vit.depth, classes, unfrozen)
    };
    let mut hp = cfg.tune.hparams.clone();
    let base = lr_of(cfg, name)?;
    hp.0.insert("lr".into(), HValue::Num(base));
    let mut opt = vrl_optim::create(&cfg.tune.optimizer, &hp, params)?;
    let eb = cfg.tune.eval_batch_size;
    let eval = |m: &TransferModel| accuracy(&|x| m.forward_t(x, false), test, eb, device);
    let mut curve: Vec<(u64, f64)> = vec![(0, eval(&model)?)];
    let mut train_seconds = 0.0;
    let total = cfg.tune.steps;
    let (mut sum, mut seen) = (0.0, 0u64);
    for step in 0..total {
        let ts = Instant::now();
        let (x, y) = batch(step)?;
        seed_step(stream, step);
        // Forward and loss under autocast (the loss in float32); backward and step outside.
        let loss = {
            let _amp = vrl_train::autocast(device, cfg.precision)?;
            let (logits, aux) = model.forward_with_aux(&x, true);
            logits.f_to_kind(Kind::Float)?.cross_entropy_for_logits(&y) + aux.f_to_kind(Kind::Float)?
        };
        opt.zero_grad();
        loss.f_backward()?;
        let lr = cfg.tune.schedule.lr(base, step, total);
        opt.step(lr).with_context(|| format!("{name}, step {step}"))?;
        sum += loss.double_value(&[]);
        seen += 1;
        train_seconds += ts.elapsed().as_secs_f64();
        if (step + 1) % cfg.tune.eval_every == 0 || step + 1 == total {
            let acc = eval(&model)?;
            curve.push((step + 1, acc));
            metrics.log(
                &json!({"step": step + 1, "lr": lr, "loss": sum / seen.max(1) as f64, "test_top1": acc}),
            )?;
            (sum, seen) = (0.0, 0);
        }
        if let Some(signal) = stop.requested() {
            return Ok(Done::Interrupted(signal));
        }
    }
    metrics.sync()?;
    let top1 = curve.last().map_or(f64::NAN, |c| c.1);
    tracing::info!(
        "{name}: top-1 {:.1}%, {trainable} trainable, {:.1} s",
        100.0 * top1,
        t0.elapsed().as_secs_f64()
    );
    Ok(Done::Finished(json!({
        "method": method,
        "top1": top1,
        "trainable_params": trainable,
        "trainable_params_formula": formula,
        "steps_to_90pct_final": steps_to_90pct_final(&curve),
        "train_seconds": train_seconds,
        "lr": base,
        "curve": curve.iter().map(|(s, a)| json!([s, a])).collect::<Vec<_>>(),
        "toast_pretune": pretune,
    })))
}

/// The burstiness figures of a backbone on `images`: per block, kurtosis and standard deviation
/// before and after whitening, and histograms of the standardised values.
fn burstiness(
    cfg: &TransferConfig,
    vit: &VitConfig,
    checkpoint: &Path,
    images: &Tensor,
    device: Device,
) -> anyhow::Result<Value> {
    let backbone = FrozenBackbone::from_safetensors(vit.clone(), device, checkpoint)?;
    let k = cfg.burstiness.images.min(images.size()[0]);
    let values = interaction_values(&backbone, &images.narrow(0, 0, k).to_device(device), cfg.settings.eps)?;
    let (r, bins) = (cfg.burstiness.range, cfg.burstiness.bins);
    let std = |v: &[f64]| {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt()
    };
    let mut layers = Vec::new();
    let mut centres = Vec::new();
    for (layer, (raw, white)) in values.iter().enumerate() {
        let hist = |v: &[f64]| -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
            let s = std(v).max(1e-12);
            let z: Vec<f64> = v.iter().map(|x| x / s).collect();
            let h = Histogram::new(&z, -r, r, bins)?;
            Ok((h.centres(), h.density()))
        };
        let (c, d_raw) = hist(raw)?;
        let (_, d_white) = hist(white)?;
        centres = c;
        layers.push(json!({
            "layer": layer,
            "kurtosis": kurtosis(raw),
            "kurtosis_whitened": kurtosis(white),
            "std": std(raw),
            "std_whitened": std(white),
            "density": d_raw,
            "density_whitened": d_white,
        }));
    }
    Ok(json!({"images": k, "eps": cfg.settings.eps, "centres": centres, "layers": layers}))
}

/// Runs the experiment described by `file` with `opts`; see the module documentation.
pub fn run(
    file: &ExperimentFile,
    opts: &RunOptions,
    stop: &StopSignal,
    vrl_commit: &str,
) -> anyhow::Result<Outcome> {
    let study = match vrl_train::open_study::<TransferConfig>(file, opts, vrl_commit, |cfg| {
        validate(cfg)?;
        vit_config(cfg).map(drop)
    })? {
        Opened::Finished(outcome) => return Ok(outcome),
        Opened::Ready(study) => study,
    };
    let (cfg, run, threads, device) = (study.config(), &study.run, study.threads, study.device);
    let vit = vit_config(cfg)?;
    tracing::info!(run = %run.path().display(), device = %vrl_train::device_label(device), threads, "transfer");
    let started = Instant::now();
    let (train, test, classes) = load_target(cfg, &vit)?;
    tracing::info!(
        "target {}: {} training, {} test images, {classes} classes",
        cfg.data.dataset,
        train.len(),
        test.len()
    );
    let mut pretrain_data = None;
    let mut per_backbone = Map::new();
    for b in &cfg.backbones {
        let bdir = run.path().join(&b.name);
        std::fs::create_dir_all(&bdir).with_context(|| format!("creating {}", bdir.display()))?;
        let (ckpt, pre) = match backbone_checkpoint(cfg, b, &vit, &mut pretrain_data, device, stop)? {
            Done::Finished(x) => x,
            Done::Interrupted(signal) => {
                return Ok(Outcome::Interrupted { dir: run.path().to_path_buf(), signal });
            }
        };
        let burst_path = bdir.join("burstiness.json");
        let burst = if cfg.burstiness.images == 0 {
            Value::Null
        } else if let Ok(text) = std::fs::read_to_string(&burst_path) {
            serde_json::from_str(&text).with_context(|| format!("reading {}", burst_path.display()))?
        } else {
            let v = burstiness(cfg, &vit, &ckpt, &train.images, device)
                .with_context(|| format!("burstiness of `{}`", b.name))?;
            persist(&burst_path, &v)?
        };
        let mut methods = Map::new();
        for m in methods_of(cfg, b) {
            let mdir = bdir.join(m);
            let path = mdir.join("result.json");
            let result: Value = if let Ok(text) = std::fs::read_to_string(&path) {
                serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?
            } else {
                std::fs::create_dir_all(&mdir).with_context(|| format!("creating {}", mdir.display()))?;
                // A method that was interrupted starts over.
                let _ = std::fs::remove_file(mdir.join("metrics.jsonl"));
                tracing::info!("{}: {m}", b.name);
                match tune(cfg, m, &vit, &ckpt, &train, &test, classes, &mdir, device, stop)? {
                    Done::Finished(r) => persist(&path, &r)?,
                    Done::Interrupted(signal) => {
                        return Ok(Outcome::Interrupted { dir: run.path().to_path_buf(), signal });
                    }
                }
            };
            methods.insert(m.clone(), result);
        }
        per_backbone.insert(
            b.name.clone(),
            json!({"source": b.source, "pretrain": pre, "burstiness": burst, "methods": methods}),
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let results = crate::report::finish(
        run,
        cfg,
        &vit,
        per_backbone,
        train.len(),
        test.len(),
        classes,
        seconds,
        threads,
    )?;
    Ok(Outcome::Finished { dir: run.path().to_path_buf(), results, already: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrl_config::Override;

    fn file() -> ExperimentFile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/transfer.toml");
        ExperimentFile::load(&path).unwrap()
    }

    #[test]
    fn presets_resolve_and_name_every_method() {
        let file = file();
        let r = file.resolve::<TransferConfig>(Some("smoke"), &[]).unwrap();
        validate(&r.config).unwrap();
        let all: Vec<&String> = r.config.backbones.iter().flat_map(|b| methods_of(&r.config, b)).collect();
        for m in METHODS {
            assert!(all.iter().any(|x| *x == m), "smoke lacks {m}");
            method_of(m, &r.config).unwrap();
        }
        // The paper preset parses; it needs the user's checkpoint and data.
        let r = file.resolve::<TransferConfig>(Some("paper"), &[]).unwrap();
        let e = validate(&r.config).unwrap_err().to_string();
        assert!(e.contains("checkpoint"), "{e}");
        let e = file.resolve::<TransferConfig>(Some("smoke"), &[Override::parse("tune.stepz=3").unwrap()]);
        assert!(e.unwrap_err().to_string().contains("stepz"));
    }

    #[test]
    fn integers_out_of_range_are_named_with_their_range() {
        let file = file();
        let check = |o: &str| {
            let r = file.resolve::<TransferConfig>(Some("smoke"), &[Override::parse(o).unwrap()]).unwrap();
            validate(&r.config).map_err(|e| format!("{e:#}"))
        };
        for (set, key) in [
            ("tune.steps=1099511627777", "`tune.steps`"),
            ("tune.batch_size=0", "`tune.batch_size`"),
            ("tune.eval_every=0", "`tune.eval_every`"),
            ("settings.toast.pretune_steps=9223372036854775807", "`settings.toast.pretune_steps`"),
            ("settings.num_prompts=9223372036854775807", "`settings.num_prompts`"),
            ("settings.whitening_images=-1", "`settings.whitening_images`"),
            ("burstiness.images=-5", "`burstiness.images`"),
            ("burstiness.bins=4294967296", "`burstiness.bins`"),
            ("data.train_images=1099511627777", "`data.train_images`"),
            ("pretrain.supervised.epochs=922337203685477581", "`pretrain.supervised.epochs`"),
            ("pretrain.mae.batch_size=0", "`pretrain.mae.batch_size`"),
            ("pretrain.mae.decoder_depth=-1", "`pretrain.mae.decoder_depth`"),
        ] {
            let e = check(set).unwrap_err();
            assert!(e.contains(key) && e.contains("must be an integer from"), "{set}: {e}");
        }
        check("seed=18446744073709551615").unwrap();
        check("settings.toast.pretune_steps=0").unwrap();
    }
}
