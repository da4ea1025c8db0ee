//! Reading and checking the `transfer` configuration: every key is checked before a run directory
//! exists, and the settings the study derives from it (methods, the ViT, learning rates) are read in
//! one place.

use std::path::Path;

use anyhow::Context;
use vrl_config::ConfigError;
use vrl_models::vision_transformer::VitConfig;
use vrl_optim::{HParams, HValue};

use crate::config::{BackboneConfig, TransferConfig};
use crate::study::{METHODS, mae_config};
use crate::{BptForm, Method};

/// The backbone sources.
const SOURCES: [&str; 3] = ["supervised", "mae", "checkpoint"];

pub(crate) fn invalid(key: &str, message: String) -> anyhow::Error {
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
pub(crate) fn methods_of<'a>(cfg: &'a TransferConfig, b: &'a BackboneConfig) -> &'a [String] {
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

pub(crate) fn peak_lr(hp: &HParams, key: &str) -> anyhow::Result<f64> {
    match hp.0.get("lr") {
        Some(HValue::Num(x)) if *x > 0.0 && x.is_finite() => Ok(*x),
        _ => Err(invalid(key, "a positive learning rate is required".into())),
    }
}

pub(crate) fn lr_of(cfg: &TransferConfig, method: &str) -> anyhow::Result<f64> {
    match cfg.tune.lr_by_method.get(method) {
        Some(&x) if x > 0.0 && x.is_finite() => Ok(x),
        Some(x) => Err(invalid(&format!("tune.lr_by_method.{method}"), format!("must be positive, got {x}"))),
        None => peak_lr(&cfg.tune.hparams, "tune.hparams.lr"),
    }
}
