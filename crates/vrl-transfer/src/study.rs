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
use vrl_config::{ConfigError, ExperimentFile};
use vrl_data::{FashionMnist, ImageFolder, ImageSet, Mnist, permutation};
use vrl_loader::TensorDataset;
use vrl_models::vision_transformer::VitConfig;
use vrl_models::{Model, VisionTransformer};
use vrl_optim::{HParams, HValue};
use vrl_run::{MetricsLog, Report, RunDir, Series};
use vrl_train::{Opened, Outcome, RunOptions, StopSignal, seed_step, to_device_pinned};

use crate::burstiness::{Histogram, gaussian_density, interaction_values, kurtosis};
use crate::config::{BackboneConfig, PretrainRun, TransferConfig};
use crate::mae::{MaeConfig, MaskedAutoencoder};
use crate::{BptForm, FrozenBackbone, Method, TransferModel, steps_to_90pct_final};

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
const SOURCES: [&str; 3] = ["supervised", "mae", "checkpoint"];
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
/// piece and one that resumes from its file see the same numbers (JSON's decimal floats do not
/// round-trip every bit).
fn persist(path: &Path, value: &Value) -> anyhow::Result<Value> {
    let text = serde_json::to_string_pretty(value)?;
    vrl_run::write_atomic(path, text.as_bytes())?;
    Ok(serde_json::from_str(&text)?)
}

fn invalid(key: &str, message: String) -> anyhow::Error {
    ConfigError::Invalid { experiment: "transfer".into(), key: key.into(), message }.into()
}

/// The [`Method`] of a method name with the experiment's settings.
pub fn method_of(name: &str, cfg: &TransferConfig) -> anyhow::Result<Method> {
    let s = &cfg.settings;
    let bpt = |deep: bool, form: BptForm| Method::Bpt {
        num_prompts: s.num_prompts,
        deep,
        form,
        whitening_images: s.whitening_images,
        eps: s.eps,
    };
    let low = BptForm::LowRank { rank: s.lowrank_rank };
    Ok(match name {
        "linear" => Method::LinearProbe,
        "full_ft" => Method::FullFineTune { frozen: s.full_ft_frozen.clone() },
        "vpt_shallow" => Method::Vpt { num_prompts: s.num_prompts, deep: false },
        "vpt_deep" => Method::Vpt { num_prompts: s.num_prompts, deep: true },
        "bpt_full_shallow" => bpt(false, BptForm::Full),
        "bpt_full_deep" => bpt(true, BptForm::Full),
        "bpt_lowrank_shallow" => bpt(false, low),
        "bpt_lowrank_deep" => bpt(true, low),
        "lora" => Method::Lora { rank: s.lora.rank, alpha: s.lora.alpha, targets: s.lora.targets.clone() },
        "toast" => Method::Toast { lambda_var: s.toast.lambda_var },
        other => {
            return Err(invalid(
                "methods",
                format!("unknown method `{other}`; known: {}", METHODS.join(", ")),
            ));
        }
    })
}

/// The methods run on `b`.
fn methods_of<'a>(cfg: &'a TransferConfig, b: &'a BackboneConfig) -> &'a [String] {
    if b.methods.is_empty() { &cfg.methods } else { &b.methods }
}

/// The backbone's ViT configuration (its `num_classes` is that of the supervised pretraining head).
pub fn vit_config(cfg: &TransferConfig) -> anyhow::Result<VitConfig> {
    let name = &cfg.model.name;
    let base = VitConfig::named(name)
        .ok_or_else(|| invalid("model.name", format!("`{name}` is not a registered Vision Transformer")))?;
    base.with_args(name, &cfg.model.args).with_context(|| "model.args".to_string())
}

/// Checks the settings, and that every file the run needs exists, before anything runs.
pub fn validate(cfg: &TransferConfig) -> anyhow::Result<()> {
    let vit = vit_config(cfg)?;
    if cfg.backbones.is_empty() {
        return Err(invalid("backbones", "at least one backbone is needed".into()));
    }
    let known = |m: &String, key: &str| -> anyhow::Result<()> {
        if METHODS.contains(&m.as_str()) {
            Ok(())
        } else {
            Err(invalid(key, format!("unknown method `{m}`; known: {}", METHODS.join(", "))))
        }
    };
    for m in &cfg.methods {
        known(m, "methods")?;
    }
    for m in cfg.tune.lr_by_method.keys() {
        known(m, "tune.lr_by_method")?;
    }
    let s = &cfg.settings;
    let mut all_methods: Vec<&String> = Vec::new();
    for (i, b) in cfg.backbones.iter().enumerate() {
        let key = |k: &str| format!("backbones[{i}].{k}");
        if b.name.is_empty() || !b.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(invalid(
                &key("name"),
                format!("expected letters, digits, `_` or `-`, got `{}`", b.name),
            ));
        }
        if cfg.backbones[..i].iter().any(|o| o.name == b.name) {
            return Err(invalid(&key("name"), format!("`{}` is used twice", b.name)));
        }
        if !SOURCES.contains(&b.source.as_str()) {
            return Err(invalid(
                &key("source"),
                format!("unknown source `{}`; known: {}", b.source, SOURCES.join(", ")),
            ));
        }
        if b.source == "checkpoint" {
            if b.checkpoint.is_empty() {
                return Err(invalid(
                    &key("checkpoint"),
                    "source `checkpoint` needs the path of a timm ViT checkpoint in safetensors \
                     (e.g. vit_base_patch16_224 weights)"
                        .into(),
                ));
            }
            if !Path::new(&b.checkpoint).is_file() {
                return Err(invalid(
                    &key("checkpoint"),
                    format!(
                        "checkpoint file `{}` does not exist; give the path of a timm ViT checkpoint in \
                         safetensors (nothing is downloaded)",
                        b.checkpoint
                    ),
                ));
            }
        }
        for m in &b.methods {
            known(m, &key("methods"))?;
        }
        all_methods.extend(methods_of(cfg, b));
    }
    if all_methods.is_empty() {
        return Err(invalid("methods", "no method to run".into()));
    }
    check_integers(cfg)?;
    let uses = |prefix: &str| all_methods.iter().any(|m| m.starts_with(prefix));
    if (uses("vpt") || uses("bpt")) && s.num_prompts < 1 {
        return Err(invalid(
            "settings.num_prompts",
            format!("VPT and bilinear prompts need at least one prompt, got {}", s.num_prompts),
        ));
    }
    if uses("bpt_lowrank") && !(1..s.num_prompts).contains(&s.lowrank_rank) {
        return Err(invalid(
            "settings.num_prompts",
            format!(
                "bpt_lowrank needs more prompts than its rank (settings.lowrank_rank = {}), so that A Bᵀ is \
                 of low rank; got num_prompts = {} (use bpt_full for so few prompts)",
                s.lowrank_rank, s.num_prompts
            ),
        ));
    }
    if uses("bpt") && cfg.data.train_images != 0 && s.whitening_images as usize > cfg.data.train_images {
        return Err(invalid(
            "settings.whitening_images",
            format!(
                "{} whitening images but only data.train_images = {} training images",
                s.whitening_images, cfg.data.train_images
            ),
        ));
    }
    let mut seen = Vec::new();
    for m in all_methods {
        if seen.contains(&m) {
            continue;
        }
        seen.push(m);
        method_of(m, cfg)?
            .validate(vit.embed_dim)
            .with_context(|| format!("method `{m}` (the `settings` table)"))?;
    }
    if s.toast.pretune_steps > 0 && !(s.toast.pretune_lr > 0.0 && s.toast.pretune_lr.is_finite()) {
        return Err(invalid(
            "settings.toast.pretune_lr",
            format!("must be positive, got {}", s.toast.pretune_lr),
        ));
    }
    let r = cfg.burstiness.range;
    if r.is_nan() || r <= 0.0 {
        return Err(invalid("burstiness.range", format!("must be positive, got {r}")));
    }
    if cfg.burstiness.images == 1 || cfg.burstiness.images < 0 {
        return Err(invalid(
            "burstiness.images",
            format!("must be 0 (off) or ≥ 2, got {}", cfg.burstiness.images),
        ));
    }
    lr_of(cfg, "linear")?;
    // The data.
    match cfg.data.dataset.as_str() {
        "mnist" | "fashion-mnist" => {
            if (vit.img_size, vit.in_chans) != (28, 1) {
                return Err(invalid(
                    "model.args",
                    format!(
                        "{} images are 28×28 with 1 channel; the model expects {0}×{0} with {1} (set img_size = 28, in_chans = 1)",
                        vit.img_size, vit.in_chans
                    ),
                ));
            }
            if !cfg.data.dir.is_empty() && !Path::new(&cfg.data.dir).is_dir() {
                return Err(invalid("data.dir", format!("directory `{}` does not exist", cfg.data.dir)));
            }
        }
        "folder" => {
            for (key, dir) in [("data.train_dir", &cfg.data.train_dir), ("data.test_dir", &cfg.data.test_dir)]
            {
                if dir.is_empty() || !Path::new(dir).is_dir() {
                    return Err(invalid(
                        key,
                        format!(
                            "image folder `{dir}` does not exist; give a directory of `<class>/<image>` files \
                             (FGVC / VTAB-1k layout, prepared by the user)"
                        ),
                    ));
                }
            }
            if vit.in_chans != 3 {
                return Err(invalid(
                    "model.args.in_chans",
                    format!("image folders are RGB, got {}", vit.in_chans),
                ));
            }
        }
        other => {
            return Err(invalid(
                "data.dataset",
                format!("unknown data set `{other}`; expected `fashion-mnist`, `mnist` or `folder`"),
            ));
        }
    }
    if cfg.backbones.iter().any(|b| b.source != "checkpoint") {
        let p = &cfg.pretrain;
        if !matches!(p.dataset.as_str(), "mnist" | "fashion-mnist") {
            return Err(invalid(
                "pretrain.dataset",
                format!("expected `mnist` or `fashion-mnist`, got `{}`", p.dataset),
            ));
        }
        if (vit.img_size, vit.in_chans) != (28, 1) {
            return Err(invalid(
                "model.args",
                "pretraining on MNIST needs img_size = 28, in_chans = 1".into(),
            ));
        }
        for (key, run) in [("pretrain.supervised", &p.supervised), ("pretrain.mae", &p.mae.run)] {
            peak_lr(&run.hparams, &format!("{key}.hparams.lr"))?;
        }
        mae_config(cfg, &vit).validate().context("pretrain.mae")?;
    }
    Ok(())
}

/// Every count, size and interval in its range (pretraining's when a backbone is pretrained here, a
/// method's when it runs), so that none can overflow what it multiplies.
fn check_integers(cfg: &TransferConfig) -> anyhow::Result<()> {
    use vrl_config::{
        MAX_BATCH_SIZE, MAX_EPOCHS, MAX_EXAMPLES, MAX_SAMPLES, MAX_SIZE, MAX_STEPS, check_ranges,
    };
    let (d, t, s) = (&cfg.data, &cfg.tune, &cfg.settings);
    check_ranges(
        "transfer",
        &[
            ("data.train_images", d.train_images as u64, 0..=MAX_EXAMPLES),
            ("data.test_images", d.test_images as u64, 0..=MAX_EXAMPLES),
            ("tune.steps", t.steps, 1..=MAX_STEPS),
            ("tune.batch_size", t.batch_size as u64, 1..=MAX_BATCH_SIZE),
            ("tune.eval_every", t.eval_every, 1..=MAX_STEPS),
            ("tune.eval_batch_size", t.eval_batch_size as u64, 1..=MAX_BATCH_SIZE),
            ("settings.toast.pretune_steps", s.toast.pretune_steps, 0..=MAX_STEPS),
            ("burstiness.bins", cfg.burstiness.bins as u64, 1..=MAX_SIZE),
        ],
    )?;
    let (samples, size) = (MAX_SAMPLES as i64, MAX_SIZE as i64);
    check_ranges("transfer", &[("burstiness.images", cfg.burstiness.images, 0..=samples)])?;
    let uses =
        |prefix: &str| cfg.backbones.iter().flat_map(|b| methods_of(cfg, b)).any(|m| m.starts_with(prefix));
    if uses("vpt") || uses("bpt") {
        check_ranges("transfer", &[("settings.num_prompts", s.num_prompts, 1..=size)])?;
    }
    if uses("bpt") {
        check_ranges("transfer", &[("settings.whitening_images", s.whitening_images, 2..=samples)])?;
    }
    if cfg.backbones.iter().all(|b| b.source == "checkpoint") {
        return Ok(());
    }
    let p = &cfg.pretrain;
    check_ranges(
        "transfer",
        &[
            ("pretrain.images", p.images as u64, 0..=MAX_EXAMPLES),
            ("pretrain.test_images", p.test_images as u64, 0..=MAX_EXAMPLES),
            ("pretrain.supervised.epochs", p.supervised.epochs, 1..=MAX_EPOCHS),
            ("pretrain.supervised.batch_size", p.supervised.batch_size as u64, 1..=MAX_BATCH_SIZE),
            ("pretrain.mae.epochs", p.mae.run.epochs, 1..=MAX_EPOCHS),
            ("pretrain.mae.batch_size", p.mae.run.batch_size as u64, 1..=MAX_BATCH_SIZE),
        ],
    )?;
    check_ranges(
        "transfer",
        &[
            ("pretrain.mae.decoder_embed_dim", p.mae.decoder_embed_dim, 1..=size),
            ("pretrain.mae.decoder_depth", p.mae.decoder_depth, 0..=size),
            ("pretrain.mae.decoder_num_heads", p.mae.decoder_num_heads, 1..=size),
        ],
    )?;
    Ok(())
}

fn peak_lr(hp: &HParams, key: &str) -> anyhow::Result<f64> {
    match hp.0.get("lr") {
        Some(HValue::Num(x)) if *x > 0.0 && x.is_finite() => Ok(*x),
        _ => Err(invalid(key, "a positive learning rate is required".into())),
    }
}

fn lr_of(cfg: &TransferConfig, method: &str) -> anyhow::Result<f64> {
    match cfg.tune.lr_by_method.get(method) {
        Some(&x) if x > 0.0 && x.is_finite() => Ok(x),
        Some(x) => Err(invalid(&format!("tune.lr_by_method.{method}"), format!("must be positive, got {x}"))),
        None => peak_lr(&cfg.tune.hparams, "tune.hparams.lr"),
    }
}

fn mae_config(cfg: &TransferConfig, vit: &VitConfig) -> MaeConfig {
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
    let results = finish(run, cfg, &vit, per_backbone, train.len(), test.len(), classes, seconds, threads)?;
    Ok(Outcome::Finished { dir: run.path().to_path_buf(), results, already: false })
}

fn pct(v: &Value) -> String {
    v.as_f64().map_or("—".into(), |x| format!("{:.1}", 100.0 * x))
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("—".into(), |x| format!("{x:.digits$}"))
}

/// Writes the merged metrics, `results.json`, the plots and `report.md`.
#[allow(clippy::too_many_arguments)]
fn finish(
    run: &RunDir,
    cfg: &TransferConfig,
    vit: &VitConfig,
    per_backbone: Map<String, Value>,
    n_train: usize,
    n_test: usize,
    classes: i64,
    seconds: f64,
    threads: usize,
) -> anyhow::Result<Value> {
    // Merge the methods' metrics.
    let mut merged = String::new();
    for b in &cfg.backbones {
        for m in methods_of(cfg, b) {
            for mut e in vrl_run::read_metrics(&run.path().join(&b.name).join(m).join("metrics.jsonl"))
                .unwrap_or_default()
            {
                e["backbone"] = json!(b.name);
                e["method"] = json!(m);
                merged.push_str(&e.to_string());
                merged.push('\n');
            }
        }
    }
    vrl_run::write_atomic(&run.path().join("metrics.jsonl"), merged.as_bytes())?;

    // The tour's line: top-1 of the main methods on the MAE backbone (else the last one).
    let main = cfg
        .backbones
        .iter()
        .find(|b| b.source == "mae" || b.name == "mae")
        .or(cfg.backbones.last())
        .map(|b| b.name.clone())
        .unwrap_or_default();
    let mut top = Map::new();
    for m in ["linear", "full_ft", "vpt_deep", "bpt_full_deep", "bpt_lowrank_deep", "lora", "toast"] {
        if let Some(r) = per_backbone[&main]["methods"].get(m) {
            top.insert(m.into(), r["top1"].clone());
        }
    }
    let headline = json!({ format!("top1_{main}"): top });
    // The table without the curves.
    let mut table = Map::new();
    for (b, v) in &per_backbone {
        let mut t = Map::new();
        for (m, r) in v["methods"].as_object().into_iter().flatten() {
            t.insert(
                m.clone(),
                json!({"top1": r["top1"], "trainable_params": r["trainable_params"], "steps_to_90pct_final": r["steps_to_90pct_final"], "train_seconds": r["train_seconds"]}),
            );
        }
        table.insert(b.clone(), Value::Object(t));
    }
    let results = json!({
        "experiment": "transfer",
        "headline": headline,
        "results": table,
        "backbones": per_backbone,
        "data": {"dataset": cfg.data.dataset, "train_images": n_train, "test_images": n_test, "classes": classes},
        "timing": {"seconds": seconds, "threads": threads, "note": "wall-clock of the last invocation only"},
    });

    let mut report = Report::new(
        "transfer: a frozen ViT adapted by linear probe, fine-tuning, VPT, bilinear prompts, LoRA and TOAST",
    );
    report.paragraph(&format!(
        "ViT `{}`: {}×{} images, patch {}, width {}, depth {}, {} heads. Target: {} ({n_train} training, {n_test} test images, \
         {classes} classes). Every method: {} steps of {} (batch {}), the same new head, seed {}; {} prompts, low rank {}, \
         whitening from {} training images (ε = {}). Accuracies are top-1 in % on the test images; `steps to 90%` is the first \
         evaluated step (every {}) with at least 90% of the method's final accuracy; train s is the time of the tuning steps \
         alone (no evaluation, no TOAST pre-tuning).",
        cfg.model.name,
        vit.img_size,
        vit.img_size,
        vit.patch_size,
        vit.embed_dim,
        vit.depth,
        vit.num_heads,
        cfg.data.dataset,
        cfg.tune.steps,
        cfg.tune.optimizer,
        cfg.tune.batch_size,
        cfg.seed,
        cfg.settings.num_prompts,
        cfg.settings.lowrank_rank,
        cfg.settings.whitening_images,
        cfg.settings.eps,
        cfg.tune.eval_every,
    ));
    for b in &cfg.backbones {
        let v = &per_backbone[&b.name];
        report.heading(&format!("Backbone `{}` ({})", b.name, b.source));
        let pre = &v["pretrain"];
        if b.source != "checkpoint" {
            report.paragraph(&format!(
                "Pretrained on {} ({} images, {} steps, final loss {}{}){}.",
                cfg.pretrain.dataset,
                pre["images"],
                pre["steps"],
                num(&pre["final_loss"], 4),
                pre.get("test_accuracy")
                    .map_or(String::new(), |a| format!(", {}% on its own test set", pct(a))),
                if pre["cached"] == json!(true) { ", loaded from the cache" } else { "" },
            ));
        } else {
            report.paragraph(&format!("Checkpoint `{}`.", b.checkpoint));
        }
        let methods = &v["methods"];
        let rows: Vec<Vec<String>> = methods_of(cfg, b)
            .iter()
            .map(|m| {
                let r = &methods[m];
                vec![
                    m.clone(),
                    pct(&r["top1"]),
                    r["trainable_params"].to_string(),
                    r["steps_to_90pct_final"].to_string(),
                    num(&r["train_seconds"], 1),
                ]
            })
            .collect();
        report.table(&["method", "top-1", "trainable params", "steps to 90%", "train s"], &rows);
        if let Some(lin) = methods.get("linear").and_then(|r| r["top1"].as_f64()) {
            let lines: Vec<String> = methods_of(cfg, b)
                .iter()
                .filter(|m| m.as_str() != "linear")
                .filter_map(|m| methods[m]["top1"].as_f64().map(|a| format!("{m} {:+.1}", 100.0 * (a - lin))))
                .collect();
            report.paragraph(&format!(
                "Against the linear probe ({:.1}%), in points of top-1: {}.",
                100.0 * lin,
                lines.join("; ")
            ));
        }
        // Convergence curves, in two plots of at most six lines.
        let groups: [(&str, &[&str]); 2] = [
            ("prompts", &["linear", "vpt_shallow", "vpt_deep", "bpt_full_shallow", "bpt_full_deep", "toast"]),
            ("others", &["linear", "full_ft", "bpt_lowrank_shallow", "bpt_lowrank_deep", "lora"]),
        ];
        for (g, names) in groups {
            let series: Vec<Series> = names
                .iter()
                .filter_map(|m| methods.get(*m).map(|r| (m, r)))
                .map(|(m, r)| Series {
                    label: m.to_string(),
                    points: r["curve"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                        .collect(),
                })
                .collect();
            if series.len() < 2 {
                continue;
            }
            let file = format!("convergence_{}_{g}.svg", b.name);
            let title = format!("Test top-1 against tuning step, backbone {}", b.name);
            match vrl_run::line_plot_svg(&run.path().join(&file), &title, "step", "test top-1", &series) {
                Ok(()) => {
                    report.image(&title, &file);
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        // Burstiness.
        let burst = &v["burstiness"];
        if let Some(layers) = burst["layers"].as_array() {
            report.paragraph(&format!(
                "Burstiness: the prompt–key interaction values `norm1(x) W_kᵀ W_q` of the patch tokens of {} training \
                 images, per block, centred, before and after whitening; Pearson's kurtosis (a Gaussian has 3).",
                burst["images"]
            ));
            let rows: Vec<Vec<String>> = layers
                .iter()
                .map(|l| {
                    vec![
                        l["layer"].to_string(),
                        num(&l["kurtosis"], 2),
                        num(&l["kurtosis_whitened"], 2),
                        num(&l["std"], 3),
                        num(&l["std_whitened"], 3),
                    ]
                })
                .collect();
            report.table(&["block", "kurtosis", "kurtosis whitened", "std", "std whitened"], &rows);
            let centres: Vec<f64> =
                burst["centres"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
            for (key, label) in [("density", "before"), ("density_whitened", "after")] {
                let mut series: Vec<Series> = layers
                    .iter()
                    .take(5)
                    .map(|l| Series {
                        label: format!("block {}", l["layer"]),
                        points: centres
                            .iter()
                            .zip(l[key].as_array().into_iter().flatten())
                            .filter_map(|(&c, d)| d.as_f64().filter(|d| *d > 0.0).map(|d| (c, d.log10())))
                            .collect(),
                    })
                    .collect();
                series.push(Series {
                    label: "Gaussian".into(),
                    points: centres.iter().map(|&c| (c, gaussian_density(c, 0.0, 1.0).log10())).collect(),
                });
                let file = format!("burstiness_{}_{label}.svg", b.name);
                let title =
                    format!("Interaction values {label} whitening, backbone {} (standardised)", b.name);
                match vrl_run::line_plot_svg(
                    &run.path().join(&file),
                    &title,
                    "value / std",
                    "log10 density",
                    &series,
                ) {
                    Ok(()) => {
                        report.image(&title, &file);
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
    }
    report.paragraph(&format!("Wall-clock {seconds:.1} s on {threads} thread(s) (last invocation)."));
    report.write(&run.path().join("report.md"))?;
    run.write_results(&results)?;
    Ok(results)
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
