//! The `transfer` experiment's report: merged metrics, `results.json`, plots and `report.md`,
//! written from the per-backbone figures that [`crate::study`] computed.

use serde_json::{Map, Value, json};
use vrl_models::vision_transformer::VitConfig;
use vrl_run::{Report, RunDir, Series};

use crate::burstiness::gaussian_density;
use crate::config::TransferConfig;
use crate::settings::methods_of;

fn pct(v: &Value) -> String {
    v.as_f64().map_or("—".into(), |x| format!("{:.1}", 100.0 * x))
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("—".into(), |x| format!("{x:.digits$}"))
}

/// Writes the merged metrics, `results.json`, the plots and `report.md`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
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
