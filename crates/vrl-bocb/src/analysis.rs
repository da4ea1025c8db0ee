//! The grid's figures: the backbone × optimizer table, hyper-parameter robustness and coupling bias.
//! No tensors here; everything is a function of the finished cells.
//!
//! ```text
//! hp result       mean over seeds of the final top-1 of one (backbone, optimizer, lr, wd); failed when
//!                 every seed failed (a seed that failed is left out of the mean and counted)
//! pair top-1      the best hp result of (backbone, optimizer); its (lr, wd) indices are the pair's optimum
//! robustness      for optimizer o: m(o) = the most common optimum over the backbones (ties: the smaller
//!                 lr index, then the smaller wd index); d(b, o) = |lr(b,o) − lr(m)| + |wd(b,o) − wd(m)|
//!                 in grid steps. An optimizer's robustness is the mean of d over the backbones, a
//!                 backbone's the mean over the optimizers (0: every optimum is the common one).
//! coupling bias   a backbone shows it when its best optimizer's family differs from the family that
//!                 wins on most backbones, or when its spread (standard deviation of top-1 over the
//!                 optimizers, failures counted as 0) exceeds 1.5 × the median spread of the backbones.
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ledger::{CellRecord, Status};

/// One finished cell with its coordinates.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Backbone label.
    pub backbone: String,
    /// Optimizer label.
    pub optimizer: String,
    /// Learning-rate index.
    pub lr_index: usize,
    /// Weight-decay index.
    pub wd_index: usize,
    /// Seed.
    pub seed: u64,
    /// Its figures.
    pub record: CellRecord,
}

/// One (lr, wd) point of a (backbone, optimizer) pair, over the seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HpResult {
    /// Learning-rate index.
    pub lr_index: usize,
    /// Weight-decay index.
    pub wd_index: usize,
    /// Mean final top-1 of the seeds that finished (`None`: all failed).
    pub top1: Option<f64>,
    /// Mean best top-1 of those seeds.
    pub best_top1: Option<f64>,
    /// Seeds run.
    pub seeds: usize,
    /// Seeds that failed.
    pub failed: usize,
}

/// A (backbone, optimizer) pair: its best hyper-parameters and their result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    /// Backbone label.
    pub backbone: String,
    /// Optimizer label.
    pub optimizer: String,
    /// The best hp result's top-1 (`None`: every cell failed).
    pub top1: Option<f64>,
    /// Index of the best learning rate.
    pub lr_index: Option<usize>,
    /// Index of the best weight decay.
    pub wd_index: Option<usize>,
    /// Cells run and cells failed.
    pub cells: usize,
    /// Cells that failed.
    pub failed: usize,
    /// Every (lr, wd) point, in grid order.
    pub grid: Vec<HpResult>,
}

/// Aggregates the finished cells into one [`PairResult`] per (backbone, optimizer), in the given order.
pub fn pairs(entries: &[Entry], backbones: &[String], optimizers: &[String]) -> Vec<PairResult> {
    let mut out = Vec::new();
    for b in backbones {
        for o in optimizers {
            let mut points: BTreeMap<(usize, usize), Vec<&CellRecord>> = BTreeMap::new();
            for e in entries.iter().filter(|e| &e.backbone == b && &e.optimizer == o) {
                points.entry((e.lr_index, e.wd_index)).or_default().push(&e.record);
            }
            let grid: Vec<HpResult> = points
                .iter()
                .map(|(&(li, wi), recs)| {
                    let ok: Vec<&&CellRecord> = recs.iter().filter(|r| r.status == Status::Ok).collect();
                    let mean = |f: fn(&CellRecord) -> Option<f64>| {
                        let v: Vec<f64> = ok.iter().filter_map(|r| f(r)).collect();
                        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
                    };
                    HpResult {
                        lr_index: li,
                        wd_index: wi,
                        top1: mean(|r| r.final_top1),
                        best_top1: mean(|r| r.best_top1),
                        seeds: recs.len(),
                        failed: recs.len() - ok.len(),
                    }
                })
                .collect();
            let best = grid.iter().filter_map(|h| h.top1.map(|t| (t, h))).fold(
                None::<(f64, &HpResult)>,
                |acc, (t, h)| match acc {
                    Some((bt, _)) if bt >= t => acc,
                    _ => Some((t, h)),
                },
            );
            out.push(PairResult {
                backbone: b.clone(),
                optimizer: o.clone(),
                top1: best.map(|(t, _)| t),
                lr_index: best.map(|(_, h)| h.lr_index),
                wd_index: best.map(|(_, h)| h.wd_index),
                cells: grid.iter().map(|h| h.seeds).sum(),
                failed: grid.iter().map(|h| h.failed).sum(),
                grid,
            });
        }
    }
    out
}

/// Robustness of one optimizer or one backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Robustness {
    /// The optimizer or backbone label.
    pub label: String,
    /// For an optimizer: its most common optimum (lr index, wd index) over the backbones.
    pub mode: Option<(usize, usize)>,
    /// Mean distance of the optima from the most common one, in grid steps (lower: more robust).
    pub mean_distance: Option<f64>,
    /// Largest distance.
    pub max_distance: Option<usize>,
    /// Distances of the pairs that have an optimum, as (other label, distance).
    pub distances: Vec<(String, usize)>,
}

/// The most common optimum of each optimizer over the backbones (ties: smaller lr index, then wd index).
pub fn modes(pairs: &[PairResult], optimizers: &[String]) -> BTreeMap<String, (usize, usize)> {
    let mut out = BTreeMap::new();
    for o in optimizers {
        let mut counts: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for p in pairs.iter().filter(|p| &p.optimizer == o) {
            if let (Some(l), Some(w)) = (p.lr_index, p.wd_index) {
                *counts.entry((l, w)).or_default() += 1;
            }
        }
        // BTreeMap iterates in ascending (lr, wd) order; keep the first of the largest counts.
        if let Some((k, _)) = counts.iter().fold(None::<(&(usize, usize), usize)>, |acc, (k, &n)| match acc {
            Some((_, m)) if m >= n => acc,
            _ => Some((k, n)),
        }) {
            out.insert(o.clone(), *k);
        }
    }
    out
}

/// Hyper-parameter robustness per optimizer and per backbone, as the study defines it (see the module
/// documentation).
pub fn robustness(
    pairs: &[PairResult],
    backbones: &[String],
    optimizers: &[String],
) -> (Vec<Robustness>, Vec<Robustness>) {
    let modes = modes(pairs, optimizers);
    let distance = |p: &PairResult| -> Option<usize> {
        let (m_l, m_w) = *modes.get(&p.optimizer)?;
        Some(p.lr_index?.abs_diff(m_l) + p.wd_index?.abs_diff(m_w))
    };
    let summarise = |label: &str, mode: Option<(usize, usize)>, distances: Vec<(String, usize)>| {
        let n = distances.len();
        Robustness {
            label: label.to_string(),
            mode,
            mean_distance: (n > 0).then(|| distances.iter().map(|d| d.1 as f64).sum::<f64>() / n as f64),
            max_distance: distances.iter().map(|d| d.1).max(),
            distances,
        }
    };
    let per_optimizer = optimizers
        .iter()
        .map(|o| {
            let d = pairs
                .iter()
                .filter(|p| &p.optimizer == o)
                .filter_map(|p| distance(p).map(|d| (p.backbone.clone(), d)))
                .collect();
            summarise(o, modes.get(o).copied(), d)
        })
        .collect();
    let per_backbone = backbones
        .iter()
        .map(|b| {
            let d = pairs
                .iter()
                .filter(|p| &p.backbone == b)
                .filter_map(|p| distance(p).map(|d| (p.optimizer.clone(), d)))
                .collect();
            summarise(b, None, d)
        })
        .collect();
    (per_optimizer, per_backbone)
}

/// Coupling bias of one backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coupling {
    /// The backbone.
    pub backbone: String,
    /// Its best optimizer and that optimizer's family.
    pub best_optimizer: Option<String>,
    /// The best optimizer's family.
    pub best_family: Option<String>,
    /// Its worst optimizer (failures count as 0).
    pub worst_optimizer: Option<String>,
    /// Standard deviation of top-1 over the optimizers (failures as 0).
    pub spread: f64,
    /// Optimizers all of whose cells failed.
    pub failed_optimizers: Vec<String>,
    /// The best family differs from the family that wins on most backbones.
    pub family_bias: bool,
    /// The spread exceeds 1.5 × the median spread.
    pub spread_bias: bool,
}

/// Coupling bias per backbone, and the family that wins on most backbones (ties: the first in optimizer
/// order).
pub fn coupling(
    pairs: &[PairResult],
    backbones: &[String],
    optimizers: &[String],
    family: &BTreeMap<String, String>,
) -> (Option<String>, Vec<Coupling>) {
    let mut rows: Vec<Coupling> = backbones
        .iter()
        .map(|b| {
            let row: Vec<&PairResult> = pairs.iter().filter(|p| &p.backbone == b).collect();
            let acc = |p: &PairResult| p.top1.unwrap_or(0.0);
            let best = row.iter().filter(|p| p.top1.is_some()).fold(None::<&&PairResult>, |a, p| match a {
                Some(q) if acc(q) >= acc(p) => a,
                _ => Some(p),
            });
            let worst = row.iter().fold(None::<&&PairResult>, |a, p| match a {
                Some(q) if acc(q) <= acc(p) => a,
                _ => Some(p),
            });
            let values: Vec<f64> = row.iter().map(|p| acc(p)).collect();
            let n = values.len().max(1) as f64;
            let mean = values.iter().sum::<f64>() / n;
            let spread = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            Coupling {
                backbone: b.clone(),
                best_optimizer: best.map(|p| p.optimizer.clone()),
                best_family: best.and_then(|p| family.get(&p.optimizer).cloned()),
                worst_optimizer: worst.map(|p| p.optimizer.clone()),
                spread,
                failed_optimizers: row
                    .iter()
                    .filter(|p| p.top1.is_none())
                    .map(|p| p.optimizer.clone())
                    .collect(),
                family_bias: false,
                spread_bias: false,
            }
        })
        .collect();
    // The majority family, ties broken by the order of the optimizers' families.
    let order: Vec<&String> = optimizers.iter().filter_map(|o| family.get(o)).collect();
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for r in &rows {
        if let Some(f) = &r.best_family {
            *counts.entry(f).or_default() += 1;
        }
    }
    let max = counts.values().copied().max().unwrap_or(0);
    let majority = order.iter().find(|f| counts.get(**f) == Some(&max) && max > 0).map(|f| (*f).clone());
    let mut spreads: Vec<f64> = rows.iter().map(|r| r.spread).collect();
    spreads.sort_by(f64::total_cmp);
    let median = match spreads.len() {
        0 => 0.0,
        n if n % 2 == 1 => spreads[n / 2],
        n => 0.5 * (spreads[n / 2 - 1] + spreads[n / 2]),
    };
    for r in &mut rows {
        r.family_bias = r.best_family.is_some() && r.best_family != majority;
        r.spread_bias = backbones.len() > 1 && r.spread > 1.5 * median && r.spread > 0.0;
    }
    (majority, rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(b: &str, o: &str, li: usize, wi: usize, seed: u64, acc: Option<f64>) -> Entry {
        Entry {
            backbone: b.into(),
            optimizer: o.into(),
            lr_index: li,
            wd_index: wi,
            seed,
            record: CellRecord {
                cell: format!("{b}__{o}__lr{li}__wd{wi}__s{seed}"),
                status: if acc.is_some() { Status::Ok } else { Status::Diverged },
                final_top1: acc,
                best_top1: acc.map(|a| a + 0.01),
                failed_step: acc.is_none().then_some(3),
                message: None,
                steps: 10,
            },
        }
    }

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// A hand-made 3 × 2 table on a 3 × 2 grid. Optima (lr, wd):
    ///   sgd:   cnn (1,0), vit (2,1), mlp (1,0)  → mode (1,0); distances 0, 2, 0
    ///   adamw: cnn (0,1), vit (0,1), mlp (2,0)  → mode (0,1); distances 0, 0, 3
    fn table() -> Vec<Entry> {
        let mut e = Vec::new();
        let best = |b: &str, o: &str| match (b, o) {
            ("cnn", "sgd") => ((1, 0), 0.90),
            ("vit", "sgd") => ((2, 1), 0.60),
            ("mlp", "sgd") => ((1, 0), 0.70),
            ("cnn", "adamw") => ((0, 1), 0.80),
            ("vit", "adamw") => ((0, 1), 0.85),
            ("mlp", "adamw") => ((2, 0), 0.75),
            _ => unreachable!(),
        };
        for b in ["cnn", "vit", "mlp"] {
            for o in ["sgd", "adamw"] {
                let ((bl, bw), acc) = best(b, o);
                for li in 0..3 {
                    for wi in 0..2 {
                        // Two seeds; the optimum's seeds straddle its value, every other point is worse.
                        let (a0, a1) =
                            if (li, wi) == (bl, bw) { (acc - 0.01, acc + 0.01) } else { (0.1, 0.2) };
                        e.push(entry(b, o, li, wi, 0, Some(a0)));
                        e.push(entry(b, o, li, wi, 1, Some(a1)));
                    }
                }
            }
        }
        // A diverged seed does not count in the mean, and a point whose seeds all failed is not an optimum.
        e.push(entry("mlp", "sgd", 1, 1, 2, None));
        e
    }

    #[test]
    fn pairs_pick_the_best_mean_over_seeds() {
        let p = pairs(&table(), &labels(&["cnn", "vit", "mlp"]), &labels(&["sgd", "adamw"]));
        assert_eq!(p.len(), 6);
        let cnn_sgd = &p[0];
        assert_eq!((cnn_sgd.lr_index, cnn_sgd.wd_index), (Some(1), Some(0)));
        assert!((cnn_sgd.top1.unwrap() - 0.90).abs() < 1e-12);
        assert_eq!(cnn_sgd.cells, 12);
        let mlp_sgd = &p[4];
        assert_eq!((mlp_sgd.cells, mlp_sgd.failed), (13, 1));
        let point = mlp_sgd.grid.iter().find(|h| (h.lr_index, h.wd_index) == (1, 1)).unwrap();
        assert_eq!((point.seeds, point.failed), (3, 1));
        assert!((point.top1.unwrap() - 0.15).abs() < 1e-12);
        assert!((point.best_top1.unwrap() - 0.16).abs() < 1e-12);
    }

    #[test]
    fn robustness_is_the_distance_from_the_most_common_optimum() {
        let (b, o) = (labels(&["cnn", "vit", "mlp"]), labels(&["sgd", "adamw"]));
        let p = pairs(&table(), &b, &o);
        let (per_opt, per_bb) = robustness(&p, &b, &o);
        assert_eq!(per_opt[0].mode, Some((1, 0)));
        assert_eq!(per_opt[0].distances, vec![("cnn".into(), 0), ("vit".into(), 2), ("mlp".into(), 0)]);
        assert!((per_opt[0].mean_distance.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(per_opt[1].mode, Some((0, 1)));
        assert_eq!(per_opt[1].max_distance, Some(3));
        // Per backbone: cnn 0 and 0, vit 2 and 0, mlp 0 and 3.
        let means: Vec<f64> = per_bb.iter().map(|r| r.mean_distance.unwrap()).collect();
        assert_eq!(means, vec![0.0, 1.0, 1.5]);
    }

    #[test]
    fn mode_ties_go_to_the_smaller_indices_and_failed_pairs_have_no_optimum() {
        let e = vec![
            entry("a", "o", 2, 0, 0, Some(0.9)),
            entry("b", "o", 0, 1, 0, Some(0.9)),
            entry("c", "o", 1, 1, 0, None),
        ];
        let (b, o) = (labels(&["a", "b", "c"]), labels(&["o"]));
        let p = pairs(&e, &b, &o);
        assert_eq!(p[2].top1, None);
        assert_eq!(modes(&p, &o)["o"], (0, 1));
        let (per_opt, _) = robustness(&p, &b, &o);
        assert_eq!(per_opt[0].distances, vec![("a".into(), 3), ("b".into(), 0)]);
    }

    #[test]
    fn coupling_flags_the_backbone_whose_best_family_is_not_the_majority() {
        let (b, o) = (labels(&["cnn", "vit", "mlp"]), labels(&["sgd", "adamw"]));
        let p = pairs(&table(), &b, &o);
        let family: BTreeMap<String, String> =
            [("sgd".to_string(), "SGD".to_string()), ("adamw".to_string(), "Adam".to_string())].into();
        let (majority, rows) = coupling(&p, &b, &o, &family);
        // Best: cnn sgd (SGD), vit adamw (Adam), mlp adamw (Adam) → majority Adam; cnn is coupled to SGD.
        assert_eq!(majority.as_deref(), Some("Adam"));
        assert_eq!(rows.iter().map(|r| r.family_bias).collect::<Vec<_>>(), vec![true, false, false]);
        // Spreads (population std of two values): cnn 0.05, vit 0.125, mlp 0.025 → median 0.05; vit > 0.075.
        assert!((rows[1].spread - 0.125).abs() < 1e-12);
        assert_eq!(rows.iter().map(|r| r.spread_bias).collect::<Vec<_>>(), vec![false, true, false]);
        assert_eq!(rows[1].worst_optimizer.as_deref(), Some("sgd"));
    }
}
