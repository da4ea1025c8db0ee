//! The grid's outputs: `results.json`, heatmaps, the robustness table and `report.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};
use vrl_run::{Report, RunDir};

use crate::analysis::{self, Entry, PairResult, Robustness};
use crate::grid::Cell;
use crate::ledger::Status;
use crate::plots::{self, Heatmap, heatmap};
use crate::{BocbConfig, depth, layers};

fn pct(v: Option<f64>) -> String {
    v.map_or("✗".into(), |v| format!("{:.2}", 100.0 * v))
}

fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if (1e-3..1e3).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Writes every output of a finished grid and returns `results.json`'s content.
pub fn finish(
    run: &RunDir,
    cfg: &BocbConfig,
    all: &[Cell],
    seconds: f64,
    threads: usize,
) -> anyhow::Result<Value> {
    let dir = run.path();
    let recs = crate::run::records(dir, all)?;
    let entries: Vec<Entry> = recs
        .iter()
        .map(|(c, r)| Entry {
            backbone: c.backbone.clone(),
            optimizer: c.optimizer.clone(),
            lr_index: c.lr_index,
            wd_index: c.wd_index,
            seed: c.seed,
            record: r.clone(),
        })
        .collect();
    let (bbs, opts) = (&cfg.select.backbones, &cfg.select.optimizers);
    let family: BTreeMap<String, String> =
        cfg.optimizers.iter().map(|(k, o)| (k.clone(), o.family.clone())).collect();
    let pairs = analysis::pairs(&entries, bbs, opts);
    let (rob_opt, rob_bb) = analysis::robustness(&pairs, bbs, opts);
    let (majority, coupling) = analysis::coupling(&pairs, bbs, opts, &family);
    let pair = |b: &str, o: &str| pairs.iter().find(|p| p.backbone == b && p.optimizer == o);

    // Figures.
    let mut drawn = Vec::new();
    let main = Heatmap {
        title: format!("{}: top-1 (%) at each pair's best lr and wd", cfg.data.dataset),
        rows: bbs.clone(),
        cols: opts.clone(),
        values: bbs.iter().map(|b| opts.iter().map(|o| pair(b, o).and_then(|p| p.top1)).collect()).collect(),
        note: "✗: every cell of the pair failed (diverged or error)".into(),
    };
    match heatmap(&dir.join("heatmap_top1"), &main) {
        Ok(()) => drawn.push(("backbone × optimizer top-1".to_string(), "heatmap_top1.png".to_string())),
        Err(e) => tracing::warn!("heatmap: {e}"),
    }
    let hp_dir = dir.join("hp");
    for o in opts {
        let opt = &cfg.optimizers[o];
        let grid = crate::grid::hp_pairs(cfg, o);
        let mut lrs: Vec<usize> = grid.iter().map(|p| p.0).collect();
        lrs.dedup();
        let mut wds: Vec<usize> = grid.iter().map(|p| p.1).collect();
        wds.sort();
        wds.dedup();
        // Mean over backbones of each (lr, wd) point; a point failed on every backbone is ✗.
        let values = lrs
            .iter()
            .map(|&li| {
                wds.iter()
                    .map(|&wi| {
                        let v: Vec<f64> = pairs
                            .iter()
                            .filter(|p| &p.optimizer == o)
                            .filter_map(|p| p.grid.iter().find(|h| (h.lr_index, h.wd_index) == (li, wi)))
                            .filter_map(|h| h.top1)
                            .collect();
                        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
                    })
                    .collect()
            })
            .collect();
        let h = Heatmap {
            title: format!("{o}: mean top-1 (%) over the backbones"),
            rows: lrs.iter().map(|&i| format!("lr {}", fmt_num(opt.lr[i]))).collect(),
            cols: wds.iter().map(|&i| format!("wd {}", fmt_num(opt.weight_decay[i]))).collect(),
            values,
            note: "✗: failed on every backbone".into(),
        };
        if let Err(e) = heatmap(&hp_dir.join(o), &h) {
            tracing::warn!("heatmap {o}: {e}");
        }
    }

    // Robustness table.
    let rob_rows = |kind: &str, list: &[Robustness]| -> Vec<Vec<String>> {
        list.iter()
            .map(|r| {
                let mode = r.mode.map(|(l, w)| {
                    let opt = &cfg.optimizers[&r.label];
                    (fmt_num(opt.lr[l]), fmt_num(opt.weight_decay[w]))
                });
                vec![
                    kind.to_string(),
                    r.label.clone(),
                    mode.as_ref().map_or(String::new(), |m| m.0.clone()),
                    mode.as_ref().map_or(String::new(), |m| m.1.clone()),
                    r.mean_distance.map_or("—".into(), |d| format!("{d:.3}")),
                    r.max_distance.map_or("—".into(), |d| d.to_string()),
                ]
            })
            .collect()
    };
    let mut rob = rob_rows("optimizer", &rob_opt);
    rob.extend(rob_rows("backbone", &rob_bb));
    let header = ["kind", "label", "common_lr", "common_wd", "mean_distance", "max_distance"];
    let mut csv = header.join(",") + "\n";
    for r in &rob {
        let _ = writeln!(csv, "{}", r.join(","));
    }
    vrl_run::write_atomic(&dir.join("robustness.csv"), csv.as_bytes())?;
    let mut rob_md = Report::new("Hyper-parameter robustness");
    rob_md.paragraph(
        "Distance, in grid steps (|Δ lr index| + |Δ wd index|), of each pair's optimal learning rate and \
         weight decay from the optimizer's most common optimum over the backbones; mean and largest per \
         optimizer and per backbone. Lower is more robust.",
    );
    rob_md.table(&header, &rob);
    rob_md.write(&dir.join("robustness.md"))?;

    // The table.
    let cells_json: Vec<Value> = recs
        .iter()
        .map(|(c, r)| {
            json!({
                "cell": c.id, "backbone": c.backbone, "optimizer": c.optimizer,
                "family": family.get(&c.optimizer), "lr_index": c.lr_index, "wd_index": c.wd_index,
                "lr": c.lr, "weight_decay": c.weight_decay, "seed": c.seed,
                "status": r.status, "final_top1": r.final_top1, "best_top1": r.best_top1,
                "failed": r.failed(), "failed_step": r.failed_step, "message": r.message,
                "layer_stats": layers::cell_layer_stats(&dir.join("cells").join(&c.id).join("model.safetensors")),
            })
        })
        .collect();
    // Layer statistics by depth (one figure per backbone) and α per optimizer over the backbones.
    let depth = depth_figures(dir, cfg, &cells_json, &pairs);
    let mut files: Vec<String> = Vec::new();
    if drawn.iter().any(|d| d.1 == "heatmap_top1.png") {
        files.extend(["heatmap_top1.png".to_string(), "heatmap_top1.svg".to_string()]);
    }
    for o in opts {
        if hp_dir.join(format!("{o}.png")).exists() {
            files.extend([format!("hp/{o}.png"), format!("hp/{o}.svg")]);
        }
    }
    for f in depth.iter().map(|d| &d.1) {
        files.extend([f.clone(), f.replace(".png", ".svg")]);
    }
    files.extend(["robustness.csv".to_string(), "robustness.md".to_string(), "report.md".to_string()]);
    let table: serde_json::Map<String, Value> = bbs
        .iter()
        .map(|b| {
            let row: serde_json::Map<String, Value> =
                opts.iter().filter_map(|o| pair(b, o).map(|p| (o.clone(), pair_json(cfg, p)))).collect();
            (b.clone(), Value::Object(row))
        })
        .collect();
    let best_per_backbone: serde_json::Map<String, Value> = coupling
        .iter()
        .map(|c| {
            let best = c.best_optimizer.as_ref().and_then(|o| pair(&c.backbone, o)).and_then(|p| p.top1);
            (c.backbone.clone(), json!(best))
        })
        .collect();
    let failed: Vec<&(Cell, crate::ledger::CellRecord)> = recs.iter().filter(|(_, r)| r.failed()).collect();
    let headline_figures: Vec<&str> = ["heatmap_top1.png", "layer_alpha.png"]
        .into_iter()
        .filter(|f| files.iter().any(|g| g == f))
        .collect();
    let results = json!({
        "experiment": "bocb",
        "dataset": cfg.data.dataset,
        "grid": {
            "backbones": bbs, "optimizers": opts, "seeds": cfg.seeds,
            "lr_index": cfg.select.lr, "wd_index": cfg.select.weight_decay, "cells": all.len(),
        },
        "test_accuracy": best_per_backbone,
        "table": table,
        "robustness": { "optimizers": rob_opt, "backbones": rob_bb },
        "coupling": { "majority_family": majority, "backbones": coupling },
        "failed_cells": failed.iter().map(|(c, r)| json!({
            "cell": c.id, "status": r.status, "failed_step": r.failed_step, "message": r.message,
        })).collect::<Vec<_>>(),
        "cells": cells_json,
        "files": files,
        "headline_figures": headline_figures,
        "timing": { "seconds": seconds, "threads": threads, "workers": cfg.exec.workers,
                    "note": "wall-clock of the last invocation only" },
    });

    // report.md
    let mut report = Report::new("bocb: backbone–optimizer coupling bias");
    let d = &cfg.data;
    report.paragraph(&format!(
        "{} backbones × {} optimizers × {} (lr, wd) points × {} seed(s) = {} cells on `{}` ({} training / {} test \
         images, {}×{} input unless a backbone sets its own), {} epoch(s) per cell, batch {}, device `{}`. Each optimizer's learning rate and \
         weight decay come from its own grid centred on the study's recipe; a pair's figure is the top-1 after the \
         last epoch at its best (lr, wd), the mean over seeds.",
        bbs.len(),
        opts.len(),
        crate::grid::hp_pairs(cfg, &opts[0]).len(),
        cfg.seeds.len(),
        all.len(),
        d.dataset,
        if d.train_limit == 0 { "all".into() } else { d.train_limit.to_string() },
        if d.test_limit == 0 { "all".into() } else { d.test_limit.to_string() },
        d.img_size,
        d.img_size,
        cfg.train.epochs,
        cfg.train.batch_size,
        cfg.device,
    ));
    for (title, file) in &drawn {
        report.image(title, file);
    }
    let mut rows = Vec::new();
    for b in bbs {
        let mut row = vec![b.clone()];
        for o in opts {
            row.push(pair(b, o).map_or(String::new(), |p| pct(p.top1)));
        }
        rows.push(row);
    }
    let mut head = vec!["backbone \\ optimizer"];
    head.extend(opts.iter().map(String::as_str));
    report.heading("Top-1 (%)");
    report.table(&head, &rows);

    report.heading("Coupling bias");
    report.paragraph(&format!(
        "Definition: a backbone shows coupling bias when the family of its best optimizer differs from the family \
         that wins on most backbones (here: **{}**), or when its spread — the standard deviation of top-1 over \
         the optimizers, failed pairs counted as 0 — exceeds 1.5 × the median spread of the backbones.",
        majority.as_deref().unwrap_or("none")
    ));
    let mut named = Vec::new();
    let crows: Vec<Vec<String>> = coupling
        .iter()
        .map(|c| {
            let mut why = Vec::new();
            if c.family_bias {
                why.push(format!("prefers {}", c.best_family.as_deref().unwrap_or("?")));
            }
            if c.spread_bias {
                why.push(format!("large spread; worst with {}", c.worst_optimizer.as_deref().unwrap_or("?")));
            }
            if !why.is_empty() {
                named.push(format!("**{}** ({})", c.backbone, why.join("; ")));
            }
            vec![
                c.backbone.clone(),
                c.best_optimizer.clone().unwrap_or_default(),
                c.best_family.clone().unwrap_or_default(),
                format!("{:.2}", 100.0 * c.spread),
                c.failed_optimizers.join(", "),
                if why.is_empty() { "—".into() } else { why.join("; ") },
            ]
        })
        .collect();
    report.table(
        &["backbone", "best optimizer", "family", "spread (pp)", "all cells failed", "coupling bias"],
        &crows,
    );
    report.paragraph(&if named.is_empty() {
        "No backbone shows coupling bias by this definition.".to_string()
    } else {
        format!("Coupling bias shows for: {}.", named.join(", "))
    });

    report.heading("Hyper-parameter robustness");
    report.paragraph("See `robustness.csv` / `robustness.md`. Lower mean distance = the optimum moves less between backbones (optimizers) or optimizers (backbones).");
    report.table(&header, &rob);

    report.heading("Failed cells");
    if failed.is_empty() {
        report.paragraph("None.");
    } else {
        let frows: Vec<Vec<String>> = failed
            .iter()
            .map(|(c, r)| {
                vec![
                    c.id.clone(),
                    match r.status {
                        Status::Diverged => "diverged".into(),
                        Status::Error => "error".into(),
                        Status::Ok => "ok".into(),
                    },
                    r.failed_step.map_or("—".into(), |s| s.to_string()),
                    r.message.clone().unwrap_or_default().chars().take(160).collect(),
                    format!("cells/{}/log.txt", c.id),
                ]
            })
            .collect();
        report.table(&["cell", "status", "step", "message", "log"], &frows);
    }
    report.heading("Learning rate × weight decay");
    for o in opts {
        report.image(&format!("{o}: lr × wd"), &format!("hp/{o}.png"));
    }
    report.heading("Layer statistics");
    report.paragraph(layers::REPORT_NOTE);
    if depth.is_empty() {
        report.paragraph("No finished cell has layer statistics: no depth figures.");
    } else {
        report.paragraph(depth::REPORT_NOTE);
    }
    for (title, file) in &depth {
        report.image(title, file);
    }
    report.paragraph(&format!(
        "Wall-clock {seconds:.1} s with {} worker(s), {threads} thread(s) (last invocation).",
        cfg.exec.workers
    ));
    report.write(&dir.join("report.md"))?;
    run.write_results(&results)?;
    Ok(results)
}

fn pair_json(cfg: &BocbConfig, p: &PairResult) -> Value {
    let opt = &cfg.optimizers[&p.optimizer];
    json!({
        "top1": p.top1,
        "failed": p.top1.is_none(),
        "lr": p.lr_index.map(|i| opt.lr[i]),
        "weight_decay": p.wd_index.map(|i| opt.weight_decay[i]),
        "lr_index": p.lr_index, "wd_index": p.wd_index,
        "cells": p.cells, "failed_cells": p.failed,
        "grid": p.grid,
    })
}

/// Draws `depth/<backbone>.{png,svg}` (α, entropy, L2 norm and top-k PCA energy against relative
/// depth, one line per optimizer at its pair's optimum) and `layer_alpha.{png,svg}` (α per
/// optimizer over the backbones); returns (title, PNG path) of each figure written.
fn depth_figures(
    dir: &std::path::Path,
    cfg: &BocbConfig,
    cells: &[Value],
    pairs: &[PairResult],
) -> Vec<(String, String)> {
    let (bbs, opts) = (&cfg.select.backbones, &cfg.select.optimizers);
    let mut drawn = Vec::new();
    // α per optimizer: every layer's α (the box) and each backbone's mean α (the points).
    let mut alpha_all: Vec<Vec<f64>> = vec![Vec::new(); opts.len()];
    let mut alpha_mean: Vec<Vec<Option<f64>>> = vec![vec![None; bbs.len()]; opts.len()];
    for (bi, b) in bbs.iter().enumerate() {
        let profiles = depth::profiles(cells, pairs, b, opts);
        if profiles.is_empty() {
            continue;
        }
        for p in &profiles {
            let Some(oi) = opts.iter().position(|o| o == &p.optimizer) else { continue };
            let alphas: Vec<f64> = p.layers.iter().filter_map(|l| l.2[0]).collect();
            if !alphas.is_empty() {
                alpha_mean[oi][bi] = Some(alphas.iter().sum::<f64>() / alphas.len() as f64);
            }
            alpha_all[oi].extend(alphas);
        }
        let panels = depth::STATS
            .iter()
            .enumerate()
            .map(|(k, (_, label))| plots::Panel {
                y_label: label.to_string(),
                lines: profiles
                    .iter()
                    .map(|p| plots::Line {
                        label: p.optimizer.clone(),
                        points: p.layers.iter().map(|l| (l.1, l.2[k])).collect(),
                    })
                    .collect(),
            })
            .collect();
        let layers = profiles.iter().map(|p| p.layers.len()).max().unwrap_or(0);
        let fig = plots::Panels {
            title: format!("{b}: layer statistics by depth"),
            x_label: "relative depth (layer / layers)".into(),
            x_range: (0.0, 1.0),
            panels,
            note: format!(
                "{layers} layers; each optimizer at its best lr and wd (mean over the seeds that finished)"
            ),
        };
        let file = format!("depth/{b}.png");
        match plots::panels(&dir.join("depth").join(b), &fig) {
            Ok(()) => drawn.push((format!("{b}: layer statistics by depth"), file)),
            Err(e) => tracing::warn!("depth figure {b}: {e}"),
        }
    }
    if alpha_all.iter().any(|a| !a.is_empty()) {
        let fig = plots::BoxStrip {
            title: "α of the layers per optimizer".into(),
            y_label: "α (ESD power law)".into(),
            groups: opts.clone(),
            values: alpha_all,
            point_labels: bbs.clone(),
            points: alpha_mean,
            note: "box: every fitted layer of every backbone (quartiles, whiskers at the extremes); points: each backbone's mean α".into(),
        };
        match plots::box_strip(&dir.join("layer_alpha"), &fig) {
            Ok(()) => drawn.push(("α per optimizer over the backbones".into(), "layer_alpha.png".into())),
            Err(e) => tracing::warn!("layer_alpha figure: {e}"),
        }
    }
    drawn
}
