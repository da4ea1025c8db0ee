//! The training loop, with checkpoints, resume and divergence detection.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};
use vrl_config::ExperimentFile;
use vrl_data::Mnist;
use vrl_loader::TensorDataset;
use vrl_run::{MetricsLog, Report, RunDir, Series};
use vrl_train::checkpoint::{Checkpoint, load_into_varstore, save_safetensors};
use vrl_train::{
    Opened, Outcome, RunOptions, StopSignal, fault_injection, progress_bar, seed_step, to_device_pinned,
};

use crate::{MnistConfig, OptimizerConfig, TrainStep};

/// What a checkpoint's header holds besides the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoopState {
    /// Sum and count of the training losses since the last log line.
    window_loss: f64,
    window_correct: i64,
    window_seen: i64,
    /// The first logged loss, the reference for divergence.
    first_loss: Option<f64>,
}

/// How one optimizer's training ended.
enum Trained {
    Done(Value),
    Interrupted(&'static str),
}

/// Runs the experiment described by `file` with `opts`; see the crate documentation.
pub fn run(
    file: &ExperimentFile,
    opts: &RunOptions,
    stop: &StopSignal,
    vrl_commit: &str,
) -> anyhow::Result<Outcome> {
    let study = match vrl_train::open_study::<MnistConfig>(file, opts, vrl_commit, validate)? {
        Opened::Finished(outcome) => return Ok(outcome),
        Opened::Ready(study) => study,
    };
    let (cfg, run, threads, device) = (study.config(), &study.run, study.threads, study.device);
    tracing::info!(run = %run.path().display(), device = %vrl_train::device_label(device), precision = %cfg.precision, threads, "mnist");

    let data_dir = match cfg.data.dir.as_str() {
        "" => vrl_cache::ready_dataset_dir("mnist")?,
        dir => PathBuf::from(dir),
    };
    let mut mnist = Mnist::load(&data_dir)?;
    mnist.train.truncate(cfg.data.train_limit);
    mnist.test.truncate(cfg.data.test_limit);
    let train = TensorDataset::from_images(&mnist.train, Mnist::MEAN, Mnist::STD);
    let test = TensorDataset::from_images(&mnist.test, Mnist::MEAN, Mnist::STD);

    let labels = OptimizerConfig::labels(&cfg.optimizers);
    let started = Instant::now();
    let mut per_optimizer = serde_json::Map::new();
    for (opt, label) in cfg.optimizers.iter().zip(&labels) {
        let dir = run.path().join(label);
        let result_path = dir.join("result.json");
        let result = if let Ok(text) = std::fs::read_to_string(&result_path) {
            serde_json::from_str(&text).with_context(|| format!("reading {}", result_path.display()))?
        } else {
            match train_one(cfg, opt, label, &dir, &train, &test, device, stop)? {
                Trained::Done(result) => {
                    vrl_run::write_json_atomic(&result_path, &result)?;
                    result
                }
                Trained::Interrupted(signal) => {
                    return Ok(Outcome::Interrupted { dir: run.path().to_path_buf(), signal });
                }
            }
        };
        per_optimizer.insert(label.clone(), result);
    }

    let results = finish(run, cfg, &labels, per_optimizer, started.elapsed().as_secs_f64(), threads)?;
    Ok(Outcome::Finished { dir: run.path().to_path_buf(), results, already: false })
}

fn validate(cfg: &MnistConfig) -> anyhow::Result<()> {
    use vrl_config::{MAX_BATCH_SIZE, MAX_EPOCHS, MAX_EXAMPLES, MAX_STEPS};
    let t = &cfg.train;
    vrl_config::check_ranges(
        "mnist",
        &[
            ("data.train_limit", cfg.data.train_limit as u64, 0..=MAX_EXAMPLES),
            ("data.test_limit", cfg.data.test_limit as u64, 0..=MAX_EXAMPLES),
            ("train.epochs", t.epochs, 1..=MAX_EPOCHS),
            ("train.batch_size", t.batch_size as u64, 1..=MAX_BATCH_SIZE),
            ("train.eval_batch_size", t.eval_batch_size as u64, 1..=MAX_BATCH_SIZE),
            ("train.log_every", t.log_every, 1..=MAX_STEPS),
            ("train.checkpoint_every", t.checkpoint_every, 1..=MAX_STEPS),
        ],
    )?;
    let v = t.divergence_factor;
    anyhow::ensure!(
        v > 0.0 && v.is_finite(),
        vrl_config::ConfigError::Invalid {
            experiment: "mnist".into(),
            key: "train.divergence_factor".into(),
            message: format!("must be positive, got {v}"),
        }
    );
    anyhow::ensure!(
        !cfg.optimizers.is_empty(),
        vrl_config::ConfigError::Invalid {
            experiment: "mnist".into(),
            key: "optimizers".into(),
            message: "at least one optimizer is needed".into(),
        }
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn train_one(
    cfg: &MnistConfig,
    opt: &OptimizerConfig,
    label: &str,
    dir: &Path,
    train: &TensorDataset,
    test: &TensorDataset,
    device: Device,
    stop: &StopSignal,
) -> anyhow::Result<Trained> {
    let t = &cfg.train;
    let ckpt_dir = dir.join("checkpoints");
    std::fs::create_dir_all(&ckpt_dir).with_context(|| format!("creating {}", ckpt_dir.display()))?;
    // Same initialisation for every optimizer.
    tch::manual_seed(vrl_config::seed::to_torch(cfg.seed));
    let mut ts = TrainStep::new(&cfg.model.name, &cfg.model.args, &opt.name, &opt.hparams, device)
        .with_context(|| format!("setting up optimizer `{label}`"))?
        .with_precision(cfg.precision);
    let per_epoch = train.num_batches(t.batch_size) as u64;
    let total = vrl_config::total_steps("mnist", "train.epochs", per_epoch, t.epochs)?;
    let base_lr = opt.lr();

    let mut state = LoopState { window_loss: 0.0, window_correct: 0, window_seen: 0, first_loss: None };
    let mut start = 0u64;
    if let Some(ckpt) = Checkpoint::latest(&ckpt_dir)? {
        load_into_varstore(&ts.vs, &ckpt.group("model"), &ckpt.path)?;
        ts.optimizer.load_state(&ckpt.group("optim")).with_context(|| format!("{}", ckpt.path.display()))?;
        state = ckpt.state()?;
        start = ckpt.step;
        tracing::info!("{label}: resuming from step {start} ({})", ckpt.path.display());
    }
    let mut metrics = MetricsLog::open(&dir.join("metrics.jsonl"), (start > 0).then_some(start))?;
    let bar = progress_bar(total, label);
    bar.set_position(start);

    let save =
        |ts: &TrainStep, step: u64, state: &LoopState, metrics: &mut MetricsLog| -> anyhow::Result<()> {
            metrics.sync()?;
            let model: Vec<(String, Tensor)> = ts.vs.variables().into_iter().collect();
            Checkpoint::save(
                &ckpt_dir,
                step,
                state,
                &[("model", model), ("optim", ts.optimizer.state())],
                t.keep_checkpoints,
            )?;
            Ok(())
        };

    let mut step = start;
    while step < total {
        let epoch = step / per_epoch;
        let skip = (step % per_epoch) as usize;
        for (images, labels) in train.batches(t.batch_size, epoch, cfg.seed, true, skip) {
            seed_step(cfg.seed, step);
            let lr = t.schedule.lr(base_lr, step, total);
            let labels = to_device_pinned(&labels, device)?;
            let epoch_end = (step + 1).is_multiple_of(per_epoch);
            let (loss, logits) = ts.step(&to_device_pinned(&images, device)?, &labels, lr)?;
            let correct = logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
            let loss = loss.double_value(&[]);
            step += 1;
            state.window_loss += loss * labels.size()[0] as f64;
            state.window_correct += correct.int64_value(&[]);
            state.window_seen += labels.size()[0];
            let reference = *state.first_loss.get_or_insert(loss);
            if !loss.is_finite() || loss > t.divergence_factor * reference.max(1e-3) {
                bar.abandon_with_message(format!("diverged at step {step}"));
                metrics
                    .log(&json!({"step": step, "epoch": epoch, "lr": lr, "loss": loss, "diverged": true}))?;
                tracing::warn!("{label}: diverged at step {step} (loss {loss})");
                return Ok(Trained::Done(json!({
                    "optimizer": label, "status": "diverged", "diverged_at_step": step, "loss": finite_or_null(loss),
                    "test_accuracy": Value::Null,
                })));
            }
            if step.is_multiple_of(t.log_every) || epoch_end {
                let seen = state.window_seen.max(1) as f64;
                let mean = state.window_loss / seen;
                metrics.log(&json!({
                    "step": step, "epoch": epoch, "lr": lr, "loss": mean,
                    "train_accuracy": state.window_correct as f64 / seen,
                }))?;
                bar.set_message(format!("loss {mean:.4}"));
                state.window_loss = 0.0;
                state.window_correct = 0;
                state.window_seen = 0;
            }
            if epoch_end {
                let (test_loss, test_acc) = evaluate(&ts, test, t.eval_batch_size, device)?;
                metrics.log(&json!({"step": step, "epoch": epoch + 1, "test_loss": test_loss, "test_accuracy": test_acc}))?;
                tracing::info!("{label}: epoch {} test accuracy {test_acc:.4}", epoch + 1);
            }
            bar.set_position(step);
            fault_injection(step);
            let stop_now = stop.requested();
            if step.is_multiple_of(t.checkpoint_every) || epoch_end || stop_now.is_some() {
                save(&ts, step, &state, &mut metrics)?;
            }
            if let Some(signal) = stop_now {
                bar.abandon_with_message(format!("stopped by {signal} at step {step}"));
                return Ok(Trained::Interrupted(signal));
            }
        }
    }
    bar.finish_with_message("done");
    let (test_loss, test_accuracy) = evaluate(&ts, test, t.eval_batch_size, device)?;
    let weights: Vec<(String, Tensor)> = ts.vs.variables().into_iter().collect();
    save_safetensors(&dir.join("model.safetensors"), &weights)?;
    Ok(Trained::Done(json!({
        "optimizer": label, "status": "ok", "steps": total, "epochs": t.epochs,
        "test_loss": test_loss, "test_accuracy": test_accuracy,
    })))
}

fn finite_or_null(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// Mean cross-entropy and accuracy on a data set, in evaluation mode.
fn evaluate(
    ts: &TrainStep,
    data: &TensorDataset,
    batch_size: usize,
    device: Device,
) -> anyhow::Result<(f64, f64)> {
    let _guard = tch::no_grad_guard();
    let mut loss = Tensor::zeros([], (Kind::Double, device));
    let mut correct = Tensor::zeros([], (Kind::Int64, device));
    for (images, labels) in data.batches(batch_size, 0, 0, false, 0) {
        let (images, labels) = (to_device_pinned(&images, device)?, to_device_pinned(&labels, device)?);
        let (l, logits) = ts.forward_loss(&images, &labels, false, tch::Reduction::Sum)?;
        loss += l.to_kind(Kind::Double);
        correct += logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
    }
    let n = data.len().max(1) as f64;
    Ok((loss.double_value(&[]) / n, correct.int64_value(&[]) as f64 / n))
}

/// Writes the merged metrics, `results.json`, the plots and `report.md`.
fn finish(
    run: &RunDir,
    cfg: &MnistConfig,
    labels: &[String],
    per_optimizer: serde_json::Map<String, Value>,
    seconds: f64,
    threads: usize,
) -> anyhow::Result<Value> {
    let mut merged = String::new();
    let mut loss_series = Vec::new();
    let mut acc_series = Vec::new();
    for label in labels {
        let entries =
            vrl_run::read_metrics(&run.path().join(label).join("metrics.jsonl")).unwrap_or_default();
        let mut loss = Vec::new();
        let mut acc = Vec::new();
        for mut e in entries {
            let step = e["step"].as_f64().unwrap_or(0.0);
            if let Some(l) = e.get("loss").and_then(Value::as_f64) {
                loss.push((step, l));
            }
            if let Some(a) = e.get("test_accuracy").and_then(Value::as_f64) {
                acc.push((e["epoch"].as_f64().unwrap_or(0.0), a));
            }
            e["optimizer"] = json!(label);
            merged.push_str(&e.to_string());
            merged.push('\n');
        }
        loss_series.push(Series { label: label.clone(), points: loss });
        acc_series.push(Series { label: label.clone(), points: acc });
    }
    vrl_run::write_atomic(&run.path().join("metrics.jsonl"), merged.as_bytes())?;
    let plots = [
        ("loss.svg", "Training loss", "step", "cross-entropy", &loss_series),
        ("test_accuracy.svg", "Test accuracy", "epoch", "accuracy", &acc_series),
    ];
    let mut drawn = Vec::new();
    for (file, title, x, y, series) in plots {
        match vrl_run::line_plot_svg(&run.path().join(file), title, x, y, series) {
            Ok(()) => drawn.push((file, title)),
            Err(e) => tracing::warn!("{e}"),
        }
    }

    let accuracy: serde_json::Map<String, Value> =
        per_optimizer.iter().map(|(k, v)| (k.clone(), v["test_accuracy"].clone())).collect();
    let results = json!({
        "experiment": "mnist",
        "test_accuracy": accuracy,
        "optimizers": per_optimizer,
        "timing": { "seconds": seconds, "threads": threads, "note": "wall-clock of the last invocation only" },
    });

    let mut report = Report::new("mnist: a small CNN with SGD-momentum and AdamW");
    report.paragraph(&format!(
        "Model `{}`, {} epoch(s), batch {}, {} schedule, seed {}. Test accuracy is on the {} test images.",
        cfg.model.name,
        cfg.train.epochs,
        cfg.train.batch_size,
        match cfg.train.schedule {
            vrl_optim::Schedule::Constant { .. } => "constant",
            vrl_optim::Schedule::Cosine { .. } => "cosine",
            vrl_optim::Schedule::Step { .. } => "step",
            vrl_optim::Schedule::OneCycle { .. } => "one-cycle",
        },
        cfg.seed,
        if cfg.data.test_limit == 0 { "10,000".to_string() } else { cfg.data.test_limit.to_string() },
    ));
    let rows: Vec<Vec<String>> = labels
        .iter()
        .map(|l| {
            let r = &per_optimizer[l];
            let opt = cfg.optimizers[labels.iter().position(|x| x == l).unwrap_or(0)].hparams.0.iter();
            vec![
                l.clone(),
                opt.map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
                r["status"].as_str().unwrap_or("?").to_string(),
                r["test_accuracy"].as_f64().map_or("—".into(), |a| format!("{:.2}%", 100.0 * a)),
                r["test_loss"].as_f64().map_or("—".into(), |a| format!("{a:.4}")),
            ]
        })
        .collect();
    report.table(&["optimizer", "hyper-parameters", "status", "test accuracy", "test loss"], &rows);
    for (file, title) in drawn {
        report.image(title, file);
    }
    report.paragraph(&format!("Wall-clock {seconds:.1} s on {threads} thread(s) (last invocation)."));
    report.write(&run.path().join("report.md"))?;
    run.write_results(&results)?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use vrl_config::Override;

    use super::*;

    fn resolve(set: &str) -> MnistConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/mnist.toml");
        let file = ExperimentFile::load(&path).unwrap();
        file.resolve::<MnistConfig>(None, &[Override::parse(set).unwrap()]).unwrap().config
    }

    #[test]
    fn integers_out_of_range_are_named_with_their_range() {
        for (set, key) in [
            ("train.epochs=922337203685477581", "`train.epochs`"),
            ("train.epochs=0", "`train.epochs`"),
            ("train.batch_size=0", "`train.batch_size`"),
            ("train.eval_batch_size=1048577", "`train.eval_batch_size`"),
            ("train.log_every=1099511627777", "`train.log_every`"),
            ("train.checkpoint_every=0", "`train.checkpoint_every`"),
            ("data.train_limit=1099511627777", "`data.train_limit`"),
        ] {
            let e = validate(&resolve(set)).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("must be an integer from"), "{set}: {e}");
        }
        let e = validate(&resolve("train.divergence_factor=0")).unwrap_err().to_string();
        assert!(e.contains("`train.divergence_factor`"), "{e}");
        for preset_like in ["train.epochs=10", "train.batch_size=128", "seed=18446744073709551615"] {
            validate(&resolve(preset_like)).unwrap();
        }
        assert_eq!(resolve("seed=18446744073709551615").seed, u64::MAX);
    }
}
