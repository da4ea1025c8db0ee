//! The `longtail` experiment: every method on a long-tailed data set (Fashion-MNIST, CIFAR-10/100,
//! an image folder with split lists) at each imbalance factor.
//!
//! One training job per (model, imbalance factor) in its own directory (`<job>-if<IF>/`, with
//! `metrics.jsonl` and `result.json`); a job whose `result.json` exists is not run again, so an
//! interrupted run resumes at the job it was in (which restarts from its beginning). Several methods
//! share a job: `ce` gives `ce`, `la_posthoc` and (after stage 2) `ce_crt`; `causal` gives `causal`
//! and the ablations `causal-no_stage2` and `causal-no_calibration`.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde_json::{Map, Value, json};
use tch::{Device, Kind, Tensor, nn};
use vrl_config::{ConfigError, ExperimentFile};
use vrl_data::longtail::{Sampler, ShotGroups, longtail_counts, longtail_subset};
use vrl_models::VisionTransformer;
use vrl_run::MetricsLog;
use vrl_train::{Opened, Outcome, RunOptions, StopSignal, seed_step, to_device_pinned};

use crate::causal::{CausalConfig, CausalVit};
use crate::counterfactual::{calibrate, counterfactual_images, counterfactual_pairs, logit_bias};
use crate::data::{DATASETS, Dataset, Split};
use crate::eval::{Figures, figures};
use crate::losses;
use crate::{LongtailConfig, TdeConfig};

pub(crate) const METHODS: [&str; 8] = ["ce", "la_posthoc", "ce_crt", "cb", "la", "bs", "tde", "causal"];
pub(crate) const ABLATIONS: [&str; 4] = ["no_patch", "no_global", "no_calibration", "no_stage2"];

/// The training loss of a job.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Loss {
    Ce,
    ClassBalanced,
    LogitAdjusted,
    BalancedSoftmax,
}

/// One training job.
struct Job {
    name: String,
    loss: Loss,
    causal: Option<CausalConfig>,
    tde: bool,
}

/// How a job ended.
enum Done {
    Figures(Map<String, Value>),
    Interrupted(&'static str),
}

fn invalid(key: &str, message: String) -> anyhow::Error {
    ConfigError::Invalid { experiment: "longtail".into(), key: key.into(), message }.into()
}

fn validate(cfg: &LongtailConfig) -> anyhow::Result<()> {
    if !DATASETS.contains(&cfg.data.dataset.as_str()) {
        return Err(invalid(
            "data.dataset",
            format!("unknown data set `{}`; expected one of {}", cfg.data.dataset, DATASETS.join(", ")),
        ));
    }
    if cfg.data.imbalance_factors.is_empty() {
        return Err(invalid("data.imbalance_factors", "at least one imbalance factor is needed".into()));
    }
    for m in &cfg.methods {
        if !METHODS.contains(&m.as_str()) {
            return Err(invalid("methods", format!("unknown method `{m}`; known: {}", METHODS.join(", "))));
        }
    }
    for a in &cfg.ablations {
        if !ABLATIONS.contains(&a.as_str()) {
            return Err(invalid(
                "ablations",
                format!("unknown ablation `{a}`; known: {}", ABLATIONS.join(", ")),
            ));
        }
    }
    for f in &cfg.ablation_ifs {
        if !cfg.data.imbalance_factors.contains(f) {
            return Err(invalid("ablation_ifs", format!("{f} is not one of data.imbalance_factors")));
        }
    }
    if !matches!(cfg.stage2.train.as_str(), "head" | "all") {
        return Err(invalid("stage2.train", format!("expected `head` or `all`, got `{}`", cfg.stage2.train)));
    }
    check_integers(cfg)
}

/// Every count, size and interval in its range, so that none can overflow what it multiplies.
fn check_integers(cfg: &LongtailConfig) -> anyhow::Result<()> {
    use vrl_config::{
        MAX_BATCH_SIZE, MAX_EPOCHS, MAX_EXAMPLES, MAX_IMAGE_SIZE, MAX_SAMPLES, MAX_SIZE, check_ranges,
    };
    let (d, t) = (&cfg.data, &cfg.train);
    check_ranges(
        "longtail",
        &[
            ("data.image_size", d.image_size as u64, 0..=MAX_IMAGE_SIZE),
            ("data.n_max", d.n_max as u64, 0..=MAX_EXAMPLES),
            ("data.test_per_class", d.test_per_class as u64, 0..=MAX_EXAMPLES),
            ("train.epochs", t.epochs, 1..=MAX_EPOCHS),
            ("train.batch_size", t.batch_size as u64, 1..=MAX_BATCH_SIZE),
            ("train.eval_batch_size", t.eval_batch_size as u64, 1..=MAX_BATCH_SIZE),
            ("stage2.epochs", cfg.stage2.epochs, 0..=MAX_EPOCHS),
            ("calibration.samples", cfg.calibration.samples as u64, 1..=MAX_SAMPLES),
            ("eval.many_above", cfg.eval.many_above as u64, 0..=MAX_EXAMPLES),
            ("eval.few_below", cfg.eval.few_below as u64, 0..=MAX_EXAMPLES),
        ],
    )?;
    let size = 1..=MAX_SIZE as i64;
    if cfg.methods.iter().any(|m| m == "tde") {
        check_ranges("longtail", &[("tde.num_heads", cfg.tde.num_heads, size.clone())])?;
    }
    if cfg.methods.iter().any(|m| m == "causal") || !cfg.ablations.is_empty() {
        for (key, dict) in
            [("causal.patch.size", &cfg.causal.patch), ("causal.global.size", &cfg.causal.global)]
        {
            if dict.enabled {
                check_ranges("longtail", &[(key, dict.size, size.clone())])?;
            }
        }
    }
    Ok(())
}

/// The results key of an imbalance factor: `if100`; `as_given` for 0 (the training split unchanged).
pub(crate) fn if_key(f: f64) -> String {
    if f == 0.0 {
        "as_given".into()
    } else if f.fract() == 0.0 {
        format!("if{}", f as i64)
    } else {
        format!("if{f}")
    }
}

/// How a results key reads in the report: `100` for `if100`, `as given` for `as_given`.
pub(crate) fn if_label(key: &str) -> &str {
    key.strip_prefix("if").unwrap_or("as given")
}

/// Runs the experiment described by `file` with `opts`; see the crate documentation.
pub fn run(
    file: &ExperimentFile,
    opts: &RunOptions,
    stop: &StopSignal,
    vrl_commit: &str,
) -> anyhow::Result<Outcome> {
    let study = match vrl_train::open_study::<LongtailConfig>(file, opts, vrl_commit, validate)? {
        Opened::Finished(outcome) => return Ok(outcome),
        Opened::Ready(study) => study,
    };
    let (cfg, run, threads, device) = (study.config(), &study.run, study.threads, study.device);
    tracing::info!(run = %run.path().display(), device = %vrl_train::device_label(device), threads, "longtail");

    let data = Dataset::load(&cfg.data)?;
    let num_classes = data.num_classes;
    let test_idx = match cfg.data.test_per_class {
        0 => (0..data.test.labels.len()).collect(),
        k => longtail_subset(&data.test.labels, &vec![k; num_classes], cfg.seed)
            .context("data.test_per_class")?,
    };
    let test = data.test.subset(&test_idx, num_classes);
    let full_counts = data.train.class_counts(num_classes);
    let n_max = match cfg.data.n_max {
        0 => full_counts.iter().copied().max().unwrap_or(0),
        n => n,
    };
    let groups = if cfg.eval.many_above == 0 && cfg.eval.few_below == 0 {
        ShotGroups::scaled(n_max)?
    } else {
        ShotGroups::new(cfg.eval.many_above, cfg.eval.few_below)
            .context("eval.many_above / eval.few_below")?
    };

    let started = Instant::now();
    let mut per_method: Map<String, Value> = Map::new();
    let mut counts_by_if = Map::new();
    for &imb in &cfg.data.imbalance_factors {
        let key = if_key(imb);
        let kept: Vec<usize> = if imb == 0.0 {
            (0..data.train.labels.len()).collect()
        } else {
            let counts = longtail_counts(n_max, num_classes, imb).context("data.imbalance_factors")?;
            longtail_subset(&data.train.labels, &counts, cfg.seed).context("data.n_max")?
        };
        let train = data.train.subset(&kept, num_classes);
        counts_by_if.insert(key.clone(), json!(train.counts));
        for job in jobs(cfg, imb) {
            let dir = run.path().join(format!("{}-{key}", job.name));
            let path = dir.join("result.json");
            let evals: Map<String, Value> = if let Ok(text) = std::fs::read_to_string(&path) {
                serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?
            } else {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                let t0 = Instant::now();
                match run_job(cfg, &job, imb, &train, &test, &groups, &dir, device, data.shape, stop)? {
                    Done::Figures(f) => {
                        tracing::info!("{} at IF {imb}: {:.1} s", job.name, t0.elapsed().as_secs_f64());
                        vrl_run::write_json_atomic(&path, &f)?;
                        f
                    }
                    Done::Interrupted(signal) => {
                        return Ok(Outcome::Interrupted { dir: run.path().to_path_buf(), signal });
                    }
                }
            };
            for (method, fig) in evals {
                let entry = per_method.entry(method).or_insert_with(|| json!({}));
                entry[key.as_str()] = fig;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let results = crate::report::finish(
        run,
        cfg,
        per_method,
        counts_by_if,
        &groups,
        n_max,
        seconds,
        threads,
        &test.counts,
    )?;
    Ok(Outcome::Finished { dir: run.path().to_path_buf(), results, already: false })
}

/// The training jobs at imbalance factor `imb`.
fn jobs(cfg: &LongtailConfig, imb: f64) -> Vec<Job> {
    let has = |m: &str| cfg.methods.iter().any(|x| x == m);
    let mut out = Vec::new();
    if has("ce") || has("la_posthoc") || has("ce_crt") {
        out.push(Job { name: "ce".into(), loss: Loss::Ce, causal: None, tde: false });
    }
    for (m, loss) in [("cb", Loss::ClassBalanced), ("la", Loss::LogitAdjusted), ("bs", Loss::BalancedSoftmax)]
    {
        if has(m) {
            out.push(Job { name: m.into(), loss, causal: None, tde: false });
        }
    }
    if has("tde") {
        out.push(Job { name: "tde".into(), loss: Loss::Ce, causal: None, tde: true });
    }
    if has("causal") {
        out.push(Job { name: "causal".into(), loss: Loss::Ce, causal: Some(cfg.causal.clone()), tde: false });
    }
    if cfg.ablation_ifs.contains(&imb) {
        for a in &cfg.ablations {
            let mut c = cfg.causal.clone();
            match a.as_str() {
                "no_patch" => c.patch.enabled = false,
                "no_global" => c.global.enabled = false,
                _ => continue, // no_calibration and no_stage2 come from the `causal` job
            }
            out.push(Job { name: format!("causal-{a}"), loss: Loss::Ce, causal: Some(c), tde: false });
        }
    }
    out
}

/// The job's model; its input channels, size and classes must match the data (`[C, H, W]`, classes).
fn build(
    cfg: &LongtailConfig,
    job: &Job,
    device: Device,
    [c, h, w]: [usize; 3],
    num_classes: usize,
) -> anyhow::Result<(nn::VarStore, CausalVit)> {
    tch::manual_seed(vrl_config::seed::to_torch(cfg.seed));
    let vs = nn::VarStore::new(device);
    let vit = VisionTransformer::named(&vs.root(), &cfg.model.name, &cfg.model.args)
        .with_context(|| format!("model `{}`", cfg.model.name))?;
    let vc = &vit.config;
    let data = &cfg.data.dataset;
    for (key, model, wanted) in [
        ("model.args.in_chans", vc.in_chans, c),
        ("model.args.img_size", vc.img_size, h.max(w)),
        ("model.args.num_classes", vc.num_classes, num_classes),
    ] {
        if model != wanted as i64 {
            return Err(invalid(key, format!("the model has {model}, but `{data}` needs {wanted}")));
        }
    }
    let tde = job.tde.then_some(cfg.tde.num_heads);
    let mut model = CausalVit::new(&vs.root(), vit, job.causal.as_ref(), tde).map_err(anyhow::Error::msg)?;
    if let Some(c) = model.tde.as_mut() {
        let TdeConfig { scale, gamma, alpha, momentum, .. } = cfg.tde;
        (c.scale, c.gamma, c.alpha, c.momentum) = (scale, gamma, alpha, momentum);
    }
    Ok((vs, model))
}

fn loss_of(
    cfg: &LongtailConfig,
    loss: Loss,
    counts: &[usize],
    logits: &Tensor,
    labels: &Tensor,
) -> anyhow::Result<Tensor> {
    let b = &cfg.baselines;
    Ok(match loss {
        Loss::Ce => losses::cross_entropy(logits, labels)?,
        Loss::ClassBalanced => losses::class_balanced_loss(logits, labels, counts, b.cb_beta)?,
        Loss::LogitAdjusted => losses::logit_adjusted_loss(logits, labels, counts, b.la_tau)?,
        Loss::BalancedSoftmax => losses::balanced_softmax_loss(logits, labels, counts)?,
    })
}

/// What a training stage reads.
enum Inputs<'a> {
    /// The training split's images (augmented where the data set has a training transform).
    Images(&'a Split),
    /// Precomputed features `[N, D]`, one row per example of the split (a head-only stage 2).
    Features(&'a Tensor),
}

impl Inputs<'_> {
    /// The inputs at positions `pos`; `epoch` keys the augmentation.
    fn batch(&self, pos: &[usize], seed: u64, epoch: u64) -> anyhow::Result<Tensor> {
        match self {
            Inputs::Images(split) => split.images(pos, Some((seed, epoch))),
            Inputs::Features(t) => {
                Ok(t.index_select(0, &Tensor::from_slice(&pos.iter().map(|&i| i as i64).collect::<Vec<_>>())))
            }
        }
    }
}

/// One stage of training: `forward` maps a batch of inputs to logits; `inputs` are images or, for a
/// head-only stage, precomputed features.
#[allow(clippy::too_many_arguments)]
fn train_stage(
    cfg: &LongtailConfig,
    params: Vec<(String, Tensor)>,
    forward: &dyn Fn(&Tensor) -> Tensor,
    loss: &dyn Fn(&Tensor, &Tensor) -> anyhow::Result<Tensor>,
    inputs: Inputs,
    train: &Split,
    sampler: Sampler,
    epochs: u64,
    hparams: &vrl_optim::HParams,
    schedule: &vrl_optim::Schedule,
    stage: u64,
    metrics: &mut MetricsLog,
    device: Device,
    stop: &StopSignal,
) -> anyhow::Result<Option<&'static str>> {
    let mut opt = vrl_optim::create(&cfg.train.optimizer, hparams, params)?;
    let base_lr = match hparams.0.get("lr") {
        Some(vrl_optim::HValue::Num(x)) => *x,
        _ => return Err(invalid("train.hparams.lr", "a learning rate is required".into())),
    };
    let n = train.label_vec.len();
    let bs = cfg.train.batch_size;
    let per_epoch = n.div_ceil(bs) as u64;
    let key = if stage == 1 { "train.epochs" } else { "stage2.epochs" };
    let total = vrl_config::total_steps("longtail", key, per_epoch, epochs)?;
    let mut step = 0u64;
    for epoch in 0..epochs {
        let order = sampler.epoch_indices(&train.label_vec, epoch as usize, cfg.seed ^ (stage << 32), n)?;
        let (mut sum, mut seen) = (0.0, 0usize);
        let mut lr = base_lr;
        for chunk in order.chunks(bs) {
            seed_step(cfg.seed ^ (stage << 40), step);
            let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>());
            // Each stage and epoch draws its own augmentation of an example.
            let x = to_device_pinned(&inputs.batch(chunk, cfg.seed, (stage << 32) | epoch)?, device)?;
            let y = to_device_pinned(&train.labels.index_select(0, &idx), device)?;
            lr = schedule.lr(base_lr, step, total);
            // Forward and loss under autocast (the loss on float32 outputs); backward and step outside.
            let l = {
                let _amp = vrl_train::autocast(device, cfg.precision)?;
                loss(&forward(&x).f_to_kind(Kind::Float)?, &y)?
            };
            opt.zero_grad();
            l.f_backward()?;
            opt.step(lr).with_context(|| format!("stage {stage}, epoch {epoch}, step {step}"))?;
            sum += l.double_value(&[]) * chunk.len() as f64;
            seen += chunk.len();
            step += 1;
            if let Some(signal) = stop.requested() {
                return Ok(Some(signal));
            }
        }
        metrics.log(&json!({"stage": stage, "epoch": epoch + 1, "step": step, "lr": lr, "loss": sum / seen.max(1) as f64}))?;
    }
    Ok(None)
}

/// Outputs `[N, …]` on the CPU of `f` in evaluation mode, on a split's images (evaluation transform)
/// in batches.
fn predict(
    f: &dyn Fn(&Tensor) -> Tensor,
    split: &Split,
    batch: usize,
    device: Device,
) -> anyhow::Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let pos: Vec<usize> = (0..split.len()).collect();
    let parts = pos
        .chunks(batch.max(1))
        .map(|c| Ok(f(&to_device_pinned(&split.images(c, None)?, device)?).to_device(Device::Cpu)))
        .collect::<anyhow::Result<Vec<Tensor>>>()?;
    Ok(Tensor::cat(&parts, 0))
}

fn figures_of(logits: &Tensor, test: &Split, train: &Split, groups: &ShotGroups) -> anyhow::Result<Value> {
    let probs = Vec::<f32>::try_from(logits.softmax(-1, Kind::Float).flatten(0, -1))?;
    let f: Figures = figures(&probs, &test.label_vec, &train.counts, groups)?;
    Ok(serde_json::to_value(f)?)
}

#[allow(clippy::too_many_arguments)]
fn run_job(
    cfg: &LongtailConfig,
    job: &Job,
    imb: f64,
    train: &Split,
    test: &Split,
    groups: &ShotGroups,
    dir: &Path,
    device: Device,
    shape: [usize; 3],
    stop: &StopSignal,
) -> anyhow::Result<Done> {
    let (vs, model) = build(cfg, job, device, shape, train.counts.len())?;
    let mut metrics = MetricsLog::open(&dir.join("metrics.jsonl"), None)?;
    let counts = train.counts.clone();
    tracing::info!("{} at IF {imb}: {} training images {:?}", job.name, train.label_vec.len(), counts);
    if let Some(c) = &job.causal {
        let k = 256.min(train.len());
        let sample = train.gather(&(0..k).collect::<Vec<_>>())?.to_device(device);
        model.kmeans_init(&sample, c, 10).map_err(|e| anyhow::anyhow!("k-means initialisation: {e}"))?;
    }
    // Stage 1: instance-balanced sampling, the job's loss, every parameter.
    let mut params: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let loss = |z: &Tensor, y: &Tensor| loss_of(cfg, job.loss, &counts, z, y);
    let fwd = |x: &Tensor| model.forward_t(x, true);
    let stop1 = train_stage(
        cfg,
        params,
        &fwd,
        &loss,
        Inputs::Images(train),
        train,
        Sampler::Uniform,
        cfg.train.epochs,
        &cfg.train.hparams,
        &cfg.train.schedule,
        1,
        &mut metrics,
        device,
        stop,
    )?;
    if let Some(signal) = stop1 {
        return Ok(Done::Interrupted(signal));
    }
    let eval_fwd = |x: &Tensor| model.forward_t(x, false);
    let eb = cfg.train.eval_batch_size;
    let z1 = predict(&eval_fwd, test, eb, device)?;
    let mut out = Map::new();
    let has = |m: &str| cfg.methods.iter().any(|x| x == m);
    let ablate = |a: &str| cfg.ablation_ifs.contains(&imb) && cfg.ablations.iter().any(|x| x == a);
    let bias = |label: &str| -> anyhow::Result<Tensor> {
        let pairs =
            counterfactual_pairs(&train.label_vec, train.counts.len(), cfg.calibration.samples, cfg.seed)?;
        // A batch of pairs at a time: their images, the counterfactuals, the logits.
        let _guard = tch::no_grad_guard();
        let mut parts = Vec::new();
        for chunk in pairs.chunks(eb.max(1)) {
            let pos: Vec<usize> = chunk.iter().flat_map(|&(a, b)| [a, b]).collect();
            let local: Vec<(usize, usize)> = (0..chunk.len()).map(|k| (2 * k, 2 * k + 1)).collect();
            let cf = counterfactual_images(&train.gather(&pos)?, &local, cfg.calibration.kind)?;
            parts.push(eval_fwd(&cf.to_device(device)).to_device(Device::Cpu));
        }
        let b = logit_bias(&Tensor::cat(&parts, 0))?;
        metrics_bias(dir, label, &b)?;
        Ok(b)
    };
    match job.name.as_str() {
        "ce" => {
            if has("ce") {
                out.insert("ce".into(), figures_of(&z1, test, train, groups)?);
            }
            if has("la_posthoc") {
                let z = losses::posthoc_adjust(&z1, &counts, cfg.baselines.posthoc_tau)?;
                out.insert("la_posthoc".into(), figures_of(&z, test, train, groups)?);
            }
        }
        name if job.causal.is_some() => {
            if name == "causal" && ablate("no_stage2") {
                let z = if cfg.calibration.enabled {
                    calibrate(&z1, &bias("stage1")?, cfg.calibration.lambda)?
                } else {
                    z1.shallow_clone()
                };
                out.insert("causal-no_stage2".into(), figures_of(&z, test, train, groups)?);
            }
        }
        name => {
            out.insert(name.to_string(), figures_of(&z1, test, train, groups)?);
        }
    }
    // Stage 2: class-balanced re-training (`ce_crt` and the causal models).
    let stage2 = (job.name == "ce" && has("ce_crt")) || job.causal.is_some();
    if stage2 && cfg.stage2.epochs > 0 {
        let mut hp = cfg.train.hparams.clone();
        hp.0.insert("lr".into(), vrl_optim::HValue::Num(cfg.stage2.lr));
        let schedule = vrl_optim::Schedule::Cosine { warmup_steps: 0, min_lr_ratio: 0.0 };
        let ce = |z: &Tensor, y: &Tensor| loss_of(cfg, Loss::Ce, &counts, z, y);
        let stopped = if cfg.stage2.train == "head" {
            let feats = predict(&|x: &Tensor| model.features(x, false), train, eb, device)?;
            let params: Vec<(String, Tensor)> = {
                let mut p: Vec<(String, Tensor)> = vs
                    .variables()
                    .into_iter()
                    .filter(|(n, t)| {
                        t.requires_grad() && (n.starts_with("head.") || n.starts_with("tde_head."))
                    })
                    .collect();
                p.sort_by(|a, b| a.0.cmp(&b.0));
                p
            };
            let head = |f: &Tensor| model.classify(f, true);
            train_stage(
                cfg,
                params,
                &head,
                &ce,
                Inputs::Features(&feats),
                train,
                Sampler::ClassBalanced,
                cfg.stage2.epochs,
                &hp,
                &schedule,
                2,
                &mut metrics,
                device,
                stop,
            )?
        } else {
            let mut p: Vec<(String, Tensor)> =
                vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
            p.sort_by(|a, b| a.0.cmp(&b.0));
            train_stage(
                cfg,
                p,
                &fwd,
                &ce,
                Inputs::Images(train),
                train,
                Sampler::ClassBalanced,
                cfg.stage2.epochs,
                &hp,
                &schedule,
                2,
                &mut metrics,
                device,
                stop,
            )?
        };
        if let Some(signal) = stopped {
            return Ok(Done::Interrupted(signal));
        }
    }
    let z2 = predict(&eval_fwd, test, eb, device)?;
    if job.name == "ce" && has("ce_crt") {
        out.insert("ce_crt".into(), figures_of(&z2, test, train, groups)?);
    }
    if let Some(_c) = &job.causal {
        let full = if cfg.calibration.enabled {
            calibrate(&z2, &bias("final")?, cfg.calibration.lambda)?
        } else {
            z2.shallow_clone()
        };
        out.insert(job.name.clone(), figures_of(&full, test, train, groups)?);
        if job.name == "causal" && ablate("no_calibration") {
            out.insert("causal-no_calibration".into(), figures_of(&z2, test, train, groups)?);
        }
    }
    metrics.sync()?;
    Ok(Done::Figures(out))
}

/// Records an estimated logit bias in the job's directory (`bias_<label>.json`).
fn metrics_bias(dir: &Path, label: &str, b: &Tensor) -> anyhow::Result<()> {
    let v = Vec::<f32>::try_from(b)?;
    vrl_run::write_json_atomic(&dir.join(format!("bias_{label}.json")), &v)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrl_config::Override;

    fn file() -> ExperimentFile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/longtail.toml");
        ExperimentFile::load(&path).unwrap()
    }

    #[test]
    fn experiment_file_resolves_and_plans_the_jobs() {
        let file = file();
        for preset in ["smoke", "paper", "cifar10_lt", "cifar100_lt"] {
            let r = file.resolve::<LongtailConfig>(Some(preset), &[]).unwrap();
            validate(&r.config).unwrap();
            let names: Vec<String> = jobs(&r.config, 100.0).into_iter().map(|j| j.name).collect();
            assert_eq!(
                names,
                ["ce", "cb", "la", "bs", "tde", "causal", "causal-no_patch", "causal-no_global"]
            );
            assert_eq!(jobs(&r.config, 10.0).len(), 6, "no ablation jobs off ablation_ifs");
        }
        // ImageNet-LT: the split list as given (IF 0), ablations there, OLTR's thresholds.
        let r = file.resolve::<LongtailConfig>(Some("imagenet_lt"), &[]).unwrap();
        validate(&r.config).unwrap();
        assert_eq!(jobs(&r.config, 0.0).len(), 8);
        assert_eq!((r.config.eval.many_above, r.config.eval.few_below), (100, 20));
        assert_eq!(
            (if_key(0.0).as_str(), if_label("as_given"), if_label("if100")),
            ("as_given", "as given", "100")
        );
        let r = file.resolve::<LongtailConfig>(Some("smoke"), &[]).unwrap();
        let j = jobs(&r.config, 100.0);
        assert!(j[4].tde && j[5].causal.as_ref().is_some_and(|c| c.patch.enabled && c.global.enabled));
        assert!(j[6].causal.as_ref().is_some_and(|c| !c.patch.enabled && c.global.enabled));
    }

    #[test]
    fn bad_settings_are_named() {
        let file = file();
        let check = |o: &str| {
            let r = file.resolve::<LongtailConfig>(Some("smoke"), &[Override::parse(o).unwrap()]).unwrap();
            validate(&r.config).unwrap_err().to_string()
        };
        assert!(check(r#"methods=["focal"]"#).contains("unknown method `focal`"));
        assert!(check(r#"ablations=["no_head"]"#).contains("no_head"));
        assert!(check("ablation_ifs=[50.0]").contains("50 is not one of"));
        assert!(check(r#"stage2.train="body""#).contains("`body`"));
        assert!(check(r#"data.dataset="svhn""#).contains("unknown data set `svhn`"));
        let e = file.resolve::<LongtailConfig>(Some("smoke"), &[Override::parse("causal.typo=1").unwrap()]);
        assert!(e.unwrap_err().to_string().contains("typo"));
    }

    #[test]
    fn integers_out_of_range_are_named_with_their_range() {
        let file = file();
        let check = |o: &str| {
            let r = file.resolve::<LongtailConfig>(Some("smoke"), &[Override::parse(o).unwrap()]).unwrap();
            validate(&r.config).map_err(|e| e.to_string())
        };
        for (set, key) in [
            ("train.epochs=922337203685477581", "`train.epochs`"),
            ("train.epochs=0", "`train.epochs`"),
            ("stage2.epochs=1000001", "`stage2.epochs`"),
            ("train.batch_size=1048577", "`train.batch_size`"),
            ("data.image_size=100000", "`data.image_size`"),
            ("data.n_max=1099511627777", "`data.n_max`"),
            ("calibration.samples=4294967296", "`calibration.samples`"),
            ("tde.num_heads=-1", "`tde.num_heads`"),
            ("causal.patch.size=9223372036854775807", "`causal.patch.size`"),
        ] {
            let e = check(set).unwrap_err();
            assert!(e.contains(key) && e.contains("must be an integer from"), "{set}: {e}");
        }
        check("seed=18446744073709551615").unwrap();
        check("stage2.epochs=0").unwrap();
        let r = file.resolve::<LongtailConfig>(
            Some("smoke"),
            &[Override::parse("seed=18446744073709551615").unwrap()],
        );
        assert_eq!(r.unwrap().config.seed, u64::MAX);
    }
}
