//! The training loop of one model, with checkpoints and resume.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::{Device, Kind, Tensor, nn};
use vrl_data::{DSprites, SplitMix64};
use vrl_run::MetricsLog;
use vrl_train::checkpoint::{Checkpoint, load_into_varstore};
use vrl_train::{StopSignal, fault_injection, progress_bar, seed_step, to_device_pinned};
use vrl_vae::{ConvVae, ConvVaeConfig, ElboTerms, Objective, VaeLoss, VaeOutput};

use crate::VaeStudyConfig;

/// The logged quantities, in the order of the sums in [`LoopState::sums`].
pub const TERMS: [&str; 9] = [
    "reconstruction",
    "index_code_mi",
    "tc_between",
    "tc_within",
    "dimwise_kl",
    "kl",
    "kl_closed_form",
    "elbo",
    "loss",
];

fn values(t: &ElboTerms) -> [f64; 9] {
    [
        t.reconstruction,
        t.index_code_mi,
        t.tc_between,
        t.tc_within,
        t.dimwise_kl,
        t.kl,
        t.kl_closed_form,
        -(t.reconstruction + t.kl_closed_form),
        t.total,
    ]
}

/// What a checkpoint's header holds besides the tensors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LoopState {
    /// Sums of [`TERMS`] over the steps since the last log line.
    sums: Vec<f64>,
    /// Steps in those sums.
    count: u64,
}

/// A trained model, or the signal that stopped its training.
pub(crate) enum Trained {
    /// Training finished (now or in an earlier invocation): the model and its variables.
    Done(Box<ConvVae>, nn::VarStore),
    /// A stop signal arrived; a checkpoint was saved.
    Interrupted(&'static str),
}

/// A minibatch of procedural dSprites for `step`, `[B, 1, 64, 64]` float 0/1: indices drawn uniformly
/// with replacement from the whole grid by a generator seeded with `(seed, step)`, as
/// disentanglement_lib draws them, so a resumed run sees the same batches.
pub fn minibatch(seed: u64, step: u64, batch_size: usize) -> anyhow::Result<Tensor> {
    let data = DSprites::new();
    let mut rng = SplitMix64::with_stream(seed, step);
    let indices: Vec<usize> = (0..batch_size).map(|_| rng.below(DSprites::LEN as u64) as usize).collect();
    let mut pixels = vec![0u8; batch_size * DSprites::IMAGE_LEN];
    data.render_batch(&indices, &mut pixels)?;
    Ok(Tensor::from_slice(&pixels).view([batch_size as i64, 1, 64, 64]).to_kind(Kind::Float))
}

/// The model of `cfg` on `device`, initialised from `cfg.seed` (the same for every objective).
pub(crate) fn build_model(cfg: &VaeStudyConfig, device: Device) -> anyhow::Result<(ConvVae, nn::VarStore)> {
    tch::manual_seed(vrl_config::seed::to_torch(cfg.seed));
    let vs = nn::VarStore::new(device);
    let config = ConvVaeConfig { in_chans: 1, latent_dim: cfg.model.latent_dim as i64 };
    let model = ConvVae::new(&vs.root(), config)?;
    Ok((model, vs))
}

/// The learning rate of the optimizer's settings (`hparams.lr`, else the optimizer's default).
fn learning_rate(cfg: &VaeStudyConfig) -> f64 {
    let get = |h: &vrl_optim::HParams| match h.0.get("lr") {
        Some(vrl_optim::HValue::Num(x)) => Some(*x),
        _ => None,
    };
    get(&cfg.optimizer.hparams).unwrap_or_else(|| {
        vrl_optim::REGISTRY
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(&cfg.optimizer.name))
            .and_then(|e| get(&(e.defaults)()))
            .unwrap_or(1e-4)
    })
}

/// Trains one model for `cfg.train.steps` steps in `dir` (`metrics.jsonl`, `checkpoints/`), resuming
/// from the newest checkpoint there.
pub(crate) fn train_one(
    cfg: &VaeStudyConfig,
    objective: &Objective,
    label: &str,
    dir: &Path,
    device: Device,
    stop: &StopSignal,
) -> anyhow::Result<Trained> {
    let t = &cfg.train;
    let ckpt_dir = dir.join("checkpoints");
    std::fs::create_dir_all(&ckpt_dir).with_context(|| format!("creating {}", ckpt_dir.display()))?;
    let (model, vs) = build_model(cfg, device)?;
    let mut params: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optimizer = vrl_optim::create(&cfg.optimizer.name, &cfg.optimizer.hparams, params)
        .with_context(|| format!("setting up the optimizer for `{label}`"))?;
    let lr = learning_rate(cfg);
    let criterion = VaeLoss { objective: *objective, estimator: t.estimator, dataset_size: DSprites::LEN };

    let mut state = LoopState { sums: vec![0.0; TERMS.len()], count: 0 };
    let mut start = 0u64;
    if let Some(ckpt) = Checkpoint::latest(&ckpt_dir)? {
        load_into_varstore(&vs, &ckpt.group("model"), &ckpt.path)?;
        optimizer.load_state(&ckpt.group("optim")).with_context(|| format!("{}", ckpt.path.display()))?;
        state = ckpt.state()?;
        start = ckpt.step;
        tracing::info!("{label}: resuming from step {start} ({})", ckpt.path.display());
    }
    if start >= t.steps {
        return Ok(Trained::Done(Box::new(model), vs));
    }
    let mut metrics = MetricsLog::open(&dir.join("metrics.jsonl"), (start > 0).then_some(start))?;
    let bar = progress_bar(t.steps, label);
    bar.set_position(start);
    let save = |optimizer: &dyn vrl_optim::Optimizer,
                step: u64,
                state: &LoopState,
                metrics: &mut MetricsLog|
     -> anyhow::Result<()> {
        metrics.sync()?;
        let weights: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        Checkpoint::save(
            &ckpt_dir,
            step,
            state,
            &[("model", weights), ("optim", optimizer.state())],
            t.keep_checkpoints,
        )?;
        Ok(())
    };

    let mut step = start;
    while step < t.steps {
        let x = to_device_pinned(&minibatch(cfg.seed, step, t.batch_size)?, device)?;
        seed_step(cfg.seed, step);
        // The forward pass under autocast; the objective on its outputs in float32, outside it.
        let out = {
            let _amp = vrl_train::autocast(device, cfg.precision)?;
            model.forward(&x)?
        };
        let out = VaeOutput {
            mean: out.mean.f_to_kind(Kind::Float)?,
            log_var: out.log_var.f_to_kind(Kind::Float)?,
            z: out.z.f_to_kind(Kind::Float)?,
            logits: out.logits.f_to_kind(Kind::Float)?,
        };
        let loss = criterion.compute(&x, &out)?;
        optimizer.zero_grad();
        loss.loss.f_backward()?;
        optimizer.step(lr).with_context(|| format!("{label}: step {}", step + 1))?;
        step += 1;
        let v = values(&loss.terms);
        if v.iter().any(|x| !x.is_finite()) {
            bar.abandon_with_message(format!("non-finite loss at step {step}"));
            anyhow::bail!("{label}: the loss is not finite at step {step} ({:?})", loss.terms);
        }
        for (s, x) in state.sums.iter_mut().zip(v) {
            *s += x;
        }
        state.count += 1;
        if step.is_multiple_of(t.log_every) || step == t.steps {
            let n = state.count.max(1) as f64;
            let mut entry = serde_json::Map::new();
            entry.insert("step".into(), json!(step));
            entry.insert("lr".into(), json!(lr));
            for (name, s) in TERMS.iter().zip(&state.sums) {
                entry.insert((*name).into(), json!(s / n));
            }
            metrics.log(&entry)?;
            bar.set_message(format!("ELBO {:.1}", -(state.sums[0] + state.sums[6]) / n));
            state.sums.iter_mut().for_each(|s| *s = 0.0);
            state.count = 0;
        }
        bar.set_position(step);
        fault_injection(step);
        let stop_now = stop.requested();
        if step.is_multiple_of(t.checkpoint_every) || step == t.steps || stop_now.is_some() {
            save(optimizer.as_ref(), step, &state, &mut metrics)?;
        }
        if let Some(signal) = stop_now {
            bar.abandon_with_message(format!("stopped by {signal} at step {step}"));
            return Ok(Trained::Interrupted(signal));
        }
    }
    bar.finish_with_message("done");
    Ok(Trained::Done(Box::new(model), vs))
}
