//! The study: every model in turn (skipping finished ones), then the merged outputs.

use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};
use vrl_config::ExperimentFile;
use vrl_run::{Report, RunDir, Series};
use vrl_train::{Opened, Outcome, RunOptions, StopSignal};
use vrl_vae::Objective;

use crate::VaeStudyConfig;
use crate::config::{group_size, weights};
use crate::evaluate::{score, traversal_png};
use crate::train::{TERMS, Trained, train_one};

/// The metrics of the table, as `(key in a model's result, column heading)`.
pub const TABLE_METRICS: [(&str, &str); 8] = [
    ("mig", "MIG"),
    ("sap", "SAP"),
    ("dci_disentanglement", "DCI D"),
    ("dci_completeness", "DCI C"),
    ("dci_informativeness", "DCI I"),
    ("modularity", "modularity"),
    ("factor_vae", "FactorVAE"),
    ("beta_vae", "β-VAE"),
];

/// Runs the experiment described by `file` with `opts`; see the crate documentation.
pub fn run(
    file: &ExperimentFile,
    opts: &RunOptions,
    stop: &StopSignal,
    vrl_commit: &str,
) -> anyhow::Result<Outcome> {
    let study =
        match vrl_train::open_study::<VaeStudyConfig>(file, opts, vrl_commit, VaeStudyConfig::validate)? {
            Opened::Finished(outcome) => return Ok(outcome),
            Opened::Ready(study) => study,
        };
    let (cfg, run, threads, device) = (study.config(), &study.run, study.threads, study.device);
    tracing::info!(run = %run.path().display(), device = %vrl_train::device_label(device), threads, "vae");

    let labels = cfg.labels();
    let started = Instant::now();
    let mut per_model = serde_json::Map::new();
    for (objective, label) in cfg.models.iter().zip(&labels) {
        let dir = run.path().join(label);
        let result_path = dir.join("result.json");
        let result: Value = if let Ok(text) = std::fs::read_to_string(&result_path) {
            tracing::info!("{label}: finished earlier, skipped");
            serde_json::from_str(&text).with_context(|| format!("reading {}", result_path.display()))?
        } else {
            let t0 = Instant::now();
            let (model, vs) = match train_one(cfg, objective, label, &dir, device, stop)? {
                Trained::Done(model, vs) => (model, vs),
                Trained::Interrupted(signal) => {
                    return Ok(Outcome::Interrupted { dir: run.path().to_path_buf(), signal });
                }
            };
            let train_seconds = t0.elapsed().as_secs_f64();
            tracing::info!("{label}: scoring");
            let t1 = Instant::now();
            let metrics = score(&model, &cfg.metrics, cfg.seed, device)
                .with_context(|| format!("scoring `{label}`"))?;
            let tr = &cfg.metrics.traversal;
            traversal_png(&model, tr.seed_factors, tr.steps, tr.range, device, &dir.join("traversal.png"))?;
            let weights_list: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
            vrl_train::checkpoint::save_safetensors(&dir.join("model.safetensors"), &weights_list)?;
            let result = json!({
                "model": label,
                "objective": objective,
                "group_size": group_size(objective),
                "steps": cfg.train.steps,
                "metrics": metrics,
                "seconds": { "train": train_seconds, "metrics": t1.elapsed().as_secs_f64() },
            });
            vrl_run::write_json_atomic(&result_path, &result)?;
            tracing::info!(
                "{label}: MIG {:.3}, FactorVAE {:.3}",
                result["metrics"]["mig"].as_f64().unwrap_or(f64::NAN),
                result["metrics"]["factor_vae"].as_f64().unwrap_or(f64::NAN)
            );
            result
        };
        per_model.insert(label.clone(), result);
    }
    let results = finish(run, cfg, &labels, per_model, started.elapsed().as_secs_f64(), threads)?;
    Ok(Outcome::Finished { dir: run.path().to_path_buf(), results, already: false })
}

fn model_name(objective: &Objective) -> String {
    match objective {
        Objective::Vae => "VAE".into(),
        Objective::BetaVae { .. } => "β-VAE".into(),
        Objective::BetaTcVae { .. } => "β-TCVAE".into(),
        Objective::BetaStcVae { .. } => "β-STCVAE".into(),
    }
}

/// Writes the merged metrics, `results.json`, the plots and `report.md`.
fn finish(
    run: &RunDir,
    cfg: &VaeStudyConfig,
    labels: &[String],
    per_model: serde_json::Map<String, Value>,
    seconds: f64,
    threads: usize,
) -> anyhow::Result<Value> {
    // Merged metrics and one series per (model, term).
    let mut merged = String::new();
    let mut series: Vec<Vec<Series>> = vec![Vec::new(); TERMS.len()];
    for label in labels {
        let entries =
            vrl_run::read_metrics(&run.path().join(label).join("metrics.jsonl")).unwrap_or_default();
        for (i, term) in TERMS.iter().enumerate() {
            let points =
                entries.iter().filter_map(|e| Some((e["step"].as_f64()?, e.get(*term)?.as_f64()?))).collect();
            series[i].push(Series { label: label.clone(), points });
        }
        for mut e in entries {
            e["model"] = json!(label);
            merged.push_str(&e.to_string());
            merged.push('\n');
        }
    }
    vrl_run::write_atomic(&run.path().join("metrics.jsonl"), merged.as_bytes())?;

    let term_of = |name: &str| TERMS.iter().position(|t| *t == name).unwrap_or(0);
    let mut figures: Vec<(String, String)> = Vec::new();
    let mut draw = |file: String, title: String, y: &str, s: &[Series]| match vrl_run::line_plot_svg(
        &run.path().join(&file),
        &title,
        "step",
        y,
        s,
    ) {
        Ok(()) => figures.push((file, title)),
        Err(e) => tracing::warn!("{e}"),
    };
    for (term, title) in [
        ("elbo", "ELBO (−reconstruction − closed-form KL)"),
        ("reconstruction", "Reconstruction (Bernoulli NLL)"),
        ("index_code_mi", "Index-code mutual information"),
        ("tc_between", "Total correlation between groups"),
        ("tc_within", "Total correlation within groups"),
        ("dimwise_kl", "Dimension-wise KL"),
    ] {
        draw(format!("{term}.svg"), title.into(), "nats", &series[term_of(term)]);
    }
    for (m, label) in labels.iter().enumerate() {
        let s: Vec<Series> = ["index_code_mi", "tc_between", "tc_within", "dimwise_kl", "kl"]
            .iter()
            .map(|t| Series { label: (*t).into(), points: series[term_of(t)][m].points.clone() })
            .collect();
        draw(format!("terms_{label}.svg"), format!("{label}: KL terms"), "nats", &s);
    }

    let table: Vec<Value> = labels
        .iter()
        .zip(&cfg.models)
        .map(|(label, objective)| {
            let r = &per_model[label]["metrics"];
            let mut row = json!({
                "model": label, "objective": model_name(objective), "group_size": group_size(objective),
                "weights": weights(objective),
            });
            for (key, _) in TABLE_METRICS {
                row[key] = r[key].clone();
            }
            row
        })
        .collect();
    let mig: serde_json::Map<String, Value> =
        labels.iter().map(|l| (l.clone(), per_model[l]["metrics"]["mig"].clone())).collect();
    let m = &cfg.metrics;
    let results = json!({
        "experiment": "vae",
        "headline": { "mig": mig },
        "table": table,
        "models": per_model,
        "settings": {
            "steps": cfg.train.steps, "batch_size": cfg.train.batch_size, "estimator": cfg.train.estimator,
            "optimizer": cfg.optimizer, "latent_dim": cfg.model.latent_dim, "seed": cfg.seed,
            "metrics": {
                "num_points": m.num_points, "mig": m.mig, "sap": m.sap, "dci": m.dci,
                "modularity": m.modularity, "factor_vae": m.factor_vae, "beta_vae": m.beta_vae,
            },
        },
        "timing": { "seconds": seconds, "threads": threads, "note": "wall-clock of the last invocation only" },
    });

    let mut report = Report::new("vae: VAE, β-VAE, β-TCVAE and β-STCVAE on procedural dSprites");
    report.paragraph(&format!(
        "disentanglement_lib's convolutional VAE, {} latents, Bernoulli likelihood, `{}` with {}, batch {}, \
         {} steps per model, {:?} estimator of the minibatch terms (N = {} for dSprites), seed {}. Every model \
         starts from the same initialisation and sees the same minibatches.",
        cfg.model.latent_dim,
        cfg.optimizer.name,
        cfg.optimizer.hparams.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
        cfg.train.batch_size,
        cfg.train.steps,
        cfg.train.estimator,
        vrl_data::DSprites::LEN,
        cfg.seed,
    ));
    report.heading("Metrics");
    let mut headers = vec!["model", "s", "weights"];
    headers.extend(TABLE_METRICS.iter().map(|(_, h)| *h));
    let rows: Vec<Vec<String>> = table
        .iter()
        .map(|row| {
            let mut cells = vec![
                row["objective"].as_str().unwrap_or("?").to_string(),
                row["group_size"].as_u64().map_or("—".into(), |s| s.to_string()),
                row["weights"].as_str().unwrap_or("").to_string(),
            ];
            cells.extend(
                TABLE_METRICS
                    .iter()
                    .map(|(k, _)| row[*k].as_f64().map_or("—".into(), |x| format!("{x:.3}"))),
            );
            cells
        })
        .collect();
    report.table(&headers, &rows);
    report.paragraph(&format!(
        "On posterior means. MIG ({} {:?} bins), SAP ({:?}), DCI ({:?} importances) and modularity on {} points drawn \
         uniformly from the factor grid (SAP and DCI train on the first {:.0}% of them); FactorVAE score with {} \
         training / {} evaluation votes of batch {} and {} points for the variances; β-VAE score with {} / {} points \
         of batch {}. All five dSprites factors count. The settings are in `results.json` (`settings.metrics`).",
        m.mig.discretization.num_bins,
        m.mig.discretization.strategy,
        m.sap.mode,
        m.dci.importance,
        m.num_points,
        100.0 * m.dci.train_fraction,
        m.factor_vae.num_train,
        m.factor_vae.num_eval,
        m.factor_vae.batch_size,
        m.factor_vae.num_variance_estimate,
        m.beta_vae.num_train,
        m.beta_vae.num_eval,
        m.beta_vae.batch_size,
    ));
    report.heading("Per-latent KL");
    let kl_rows: Vec<Vec<String>> = labels
        .iter()
        .map(|l| {
            let kl = per_model[l]["metrics"]["kl_per_latent"].as_array().cloned().unwrap_or_default();
            vec![
                l.clone(),
                kl.iter()
                    .map(|x| format!("{:.2}", x.as_f64().unwrap_or(f64::NAN)))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    report.table(&["model", "KL(q(z_j|x) ‖ N(0,1)) per latent j, nats"], &kl_rows);
    report.heading("Training curves");
    report.paragraph(&format!(
        "Means over each window of {} steps of the minibatch terms. ELBO = −(reconstruction + closed-form KL); \
         MI + TC between + TC within + dimension-wise KL is the estimated KL.",
        cfg.train.log_every
    ));
    for (file, title) in &figures {
        report.image(title, file);
    }
    report.heading("Latent traversals");
    report.paragraph(&format!(
        "Seed image with factors {:?} (shape, scale, orientation, posX, posY); row j moves latent j from its \
         posterior mean by {} offsets in [−{r}, {r}], the other latents held at the mean; decoder means.",
        m.traversal.seed_factors,
        m.traversal.steps,
        r = m.traversal.range,
    ));
    for label in labels {
        report.image(&format!("{label} traversal"), &format!("{label}/traversal.png"));
    }
    report.paragraph(&format!("Wall-clock {seconds:.1} s on {threads} thread(s) (last invocation)."));
    report.write(&run.path().join("report.md"))?;
    run.write_results(&results)?;
    Ok(results)
}
