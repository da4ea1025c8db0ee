//! The `longtail` study's report: `results.json`, the plots and `report.md`, written from the
//! figures that [`crate::study`] computed for every method and imbalance factor.

use serde_json::{Map, Value, json};
use vrl_data::longtail::ShotGroups;
use vrl_run::{Report, RunDir, Series};

use crate::LongtailConfig;
use crate::study::{ABLATIONS, METHODS, if_key, if_label};

/// The model arguments that are set, as `key = value` pairs.
fn model_args(args: &vrl_models::ModelArgs) -> String {
    match serde_json::to_value(args) {
        Ok(Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

fn pct(v: &Value) -> String {
    v.as_f64().map_or("—".into(), |x| format!("{:.1}", 100.0 * x))
}

/// Writes the merged metrics, `results.json`, the plot and `report.md`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    run: &RunDir,
    cfg: &LongtailConfig,
    per_method: Map<String, Value>,
    counts_by_if: Map<String, Value>,
    groups: &ShotGroups,
    n_max: usize,
    seconds: f64,
    threads: usize,
    test_counts: &[usize],
) -> anyhow::Result<Value> {
    // Merge the jobs' metrics.
    let mut merged = String::new();
    let mut entries: Vec<_> =
        std::fs::read_dir(run.path())?.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for dir in entries.iter().filter(|p| p.is_dir()) {
        let job = dir.file_name().and_then(|s| s.to_str()).unwrap_or("").to_string();
        for mut e in vrl_run::read_metrics(&dir.join("metrics.jsonl")).unwrap_or_default() {
            e["job"] = json!(job);
            merged.push_str(&e.to_string());
            merged.push('\n');
        }
    }
    vrl_run::write_atomic(&run.path().join("metrics.jsonl"), merged.as_bytes())?;

    let ifs: Vec<String> = cfg.data.imbalance_factors.iter().map(|&f| if_key(f)).collect();
    // results: method → IF → the five figures; per-class accuracy apart.
    let mut table = Map::new();
    let mut per_class = Map::new();
    for (m, by_if) in &per_method {
        let mut t = Map::new();
        let mut p = Map::new();
        for (k, f) in by_if.as_object().into_iter().flatten() {
            t.insert(k.clone(), json!({"overall": f["overall"], "many": f["many"], "medium": f["medium"], "few": f["few"], "ece": f["ece"]}));
            p.insert(k.clone(), f["per_class"].clone());
        }
        table.insert(m.clone(), Value::Object(t));
        per_class.insert(m.clone(), Value::Object(p));
    }
    // The tour's one-line summary: overall and few-shot top-1 of every method (ablations aside) at the
    // largest imbalance factor.
    let mut headline = Map::new();
    if let Some(top) = cfg.data.imbalance_factors.iter().copied().reduce(f64::max).map(if_key) {
        for figure in ["overall", "few"] {
            let by_method: Map<String, Value> = (table.iter())
                .filter(|(m, _)| !m.contains("-no_"))
                .map(|(m, by_if)| (m.clone(), by_if[top.as_str()][figure].clone()))
                .collect();
            headline.insert(format!("{figure}_{top}"), Value::Object(by_method));
        }
    }
    let results = json!({
        "experiment": "longtail",
        "headline": headline,
        "dataset": cfg.data.dataset,
        "results": table,
        "per_class": per_class,
        "train_counts": counts_by_if,
        "shot_groups": {"many_above": groups.many_above, "few_below": groups.few_below, "n_max": n_max},
        "timing": {"seconds": seconds, "threads": threads, "note": "wall-clock of the last invocation only"},
    });

    let mut report = Report::new(&format!(
        "longtail: a ViT on long-tailed {}, causal method against baselines",
        cfg.data.dataset
    ));
    report.paragraph(&format!(
        "Model `{}` ({}), stage 1: {} epoch(s) of {} (batch {}), stage 2: {} epoch(s) class-balanced ({}), seed {}. \
         Largest class: {n_max} training images. Shot groups by training images, OLTR's thresholds \
         (many > 100, few < 20) scaled by n_max / 500: many > {}, medium {}–{}, few < {}. Accuracies are top-1 in %, \
         ECE with 15 bins in %. Test images per class: {:?}. With τ = 1 the logit-adjusted loss and \
         balanced softmax are the same function (log π and log n differ by a constant), so `la` and `bs` agree.",
        cfg.model.name,
        model_args(&cfg.model.args),
        cfg.train.epochs,
        cfg.train.optimizer,
        cfg.train.batch_size,
        cfg.stage2.epochs,
        cfg.stage2.train,
        cfg.seed,
        groups.many_above,
        groups.few_below,
        groups.many_above,
        groups.few_below,
        test_counts,
    ));
    let order: Vec<String> = METHODS
        .iter()
        .map(|s| s.to_string())
        .chain(ABLATIONS.iter().map(|a| format!("causal-{a}")))
        .filter(|m| per_method.contains_key(m))
        .collect();
    for k in &ifs {
        report.heading(&format!("Imbalance factor {}", if_label(k)));
        report.paragraph(&format!("Training images per class: {}.", results["train_counts"][k]));
        let rows: Vec<Vec<String>> = order
            .iter()
            .filter(|m| !m.starts_with("causal-") && !per_method[*m][k].is_null())
            .map(|m| {
                let f = &per_method[m][k];
                vec![
                    m.clone(),
                    pct(&f["overall"]),
                    pct(&f["many"]),
                    pct(&f["medium"]),
                    pct(&f["few"]),
                    pct(&f["ece"]),
                ]
            })
            .collect();
        report.table(&["method", "overall", "many", "medium", "few", "ECE"], &rows);
    }
    for f in &cfg.ablation_ifs {
        let k = if_key(*f);
        report.heading(&format!("Ablation of the causal method, IF {}", if_label(&k)));
        let rows: Vec<Vec<String>> = order
            .iter()
            .filter(|m| m.starts_with("causal") && !per_method[*m][&k].is_null())
            .map(|m| {
                let f = &per_method[m][&k];
                let name = match m.as_str() {
                    "causal" => "full",
                    "causal-no_patch" => "− patch dictionary",
                    "causal-no_global" => "− global dictionary",
                    "causal-no_calibration" => "− counterfactual calibration",
                    "causal-no_stage2" => "− stage 2 (calibrated stage-1 model)",
                    other => other,
                }
                .to_string();
                vec![
                    name,
                    pct(&f["overall"]),
                    pct(&f["many"]),
                    pct(&f["medium"]),
                    pct(&f["few"]),
                    pct(&f["ece"]),
                ]
            })
            .collect();
        report.table(&["variant", "overall", "many", "medium", "few", "ECE"], &rows);
    }
    // Per-class accuracy against class frequency at the largest IF.
    if let Some(k) = cfg.data.imbalance_factors.iter().copied().max_by(f64::total_cmp).map(if_key) {
        let counts: Vec<f64> = results["train_counts"][&k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let series: Vec<Series> = order
            .iter()
            .filter(|m| ["ce", "cb", "la", "bs", "tde", "causal"].contains(&m.as_str()))
            .map(|m| {
                let acc: Vec<f64> = per_method[m][&k]["per_class"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                let mut pts: Vec<(f64, f64)> =
                    counts.iter().zip(&acc).map(|(&c, &a)| (c.max(1.0).log10(), a)).collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series { label: m.clone(), points: pts }
            })
            .collect();
        let file = "per_class_accuracy.svg";
        let title = format!("Per-class accuracy against training images, IF {}", if_label(&k));
        match vrl_run::line_plot_svg(
            &run.path().join(file),
            &title,
            "log10 training images of the class",
            "test accuracy",
            &series,
        ) {
            Ok(()) => {
                report.image(&title, file);
            }
            Err(e) => tracing::warn!("{e}"),
        }
        // The check, stated as measured.
        let few = |m: &str| per_method.get(m).and_then(|v| v[&k]["few"].as_f64());
        if let Some(ce) = few("ce") {
            let lines: Vec<String> = ["cb", "la", "la_posthoc", "bs", "tde", "causal"]
                .iter()
                .filter_map(|m| {
                    few(m).map(|f| {
                        format!(
                            "{m} {:+.1} points ({})",
                            100.0 * (f - ce),
                            if f > ce { "better" } else { "not better" }
                        )
                    })
                })
                .collect();
            report.paragraph(&format!(
                "Few-shot accuracy at IF {} against cross-entropy ({:.1}%): {}.",
                if_label(&k),
                100.0 * ce,
                lines.join("; ")
            ));
        }
    }
    report.paragraph(&format!("Wall-clock {seconds:.1} s on {threads} thread(s) (last invocation)."));
    report.write(&run.path().join("report.md"))?;
    run.write_results(&results)?;
    Ok(results)
}
