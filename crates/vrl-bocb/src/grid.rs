//! The cells of a grid: one training run per backbone × optimizer × learning rate × weight decay × seed.

use serde::{Deserialize, Serialize};

use crate::BocbConfig;

/// One cell: everything that identifies a training run of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// `backbone__optimizer__lrI__wdJ__sSEED`: unique in the grid, a valid file name.
    pub id: String,
    /// The backbone's label.
    pub backbone: String,
    /// The optimizer's label.
    pub optimizer: String,
    /// Index into the optimizer's learning-rate grid.
    pub lr_index: usize,
    /// Index into the optimizer's weight-decay grid.
    pub wd_index: usize,
    /// The peak learning rate.
    pub lr: f64,
    /// The weight decay.
    pub weight_decay: f64,
    /// The seed.
    pub seed: u64,
}

impl Cell {
    /// The id of a cell.
    pub fn make_id(backbone: &str, optimizer: &str, lr_index: usize, wd_index: usize, seed: u64) -> String {
        format!("{backbone}__{optimizer}__lr{lr_index}__wd{wd_index}__s{seed}")
    }
}

/// The cells of the configuration's selection, in table order: backbones, then optimizers, then
/// learning rates, weight decays and seeds (so cells of one backbone run together, and a partial grid
/// fills its table row by row).
pub fn cells(cfg: &BocbConfig) -> Vec<Cell> {
    let mut out = Vec::new();
    for b in &cfg.select.backbones {
        for o in &cfg.select.optimizers {
            let Some(opt) = cfg.optimizers.get(o) else { continue };
            for (li, wi) in hp_pairs(cfg, o) {
                for &seed in &cfg.seeds {
                    out.push(Cell {
                        id: Cell::make_id(b, o, li, wi, seed),
                        backbone: b.clone(),
                        optimizer: o.clone(),
                        lr_index: li,
                        wd_index: wi,
                        lr: opt.lr[li],
                        weight_decay: opt.weight_decay[wi],
                        seed,
                    });
                }
            }
        }
    }
    out
}

/// The (lr index, wd index) pairs of optimizer `label` in the selection.
pub fn hp_pairs(cfg: &BocbConfig, label: &str) -> Vec<(usize, usize)> {
    let Some(opt) = cfg.optimizers.get(label) else { return Vec::new() };
    let lrs: Vec<usize> =
        if cfg.select.lr.is_empty() { (0..opt.lr.len()).collect() } else { cfg.select.lr.clone() };
    let wds: Vec<usize> = if cfg.select.weight_decay.is_empty() {
        (0..opt.weight_decay.len()).collect()
    } else {
        cfg.select.weight_decay.clone()
    };
    let mut out = Vec::new();
    for &li in &lrs {
        for &wi in &wds {
            out.push((li, wi));
        }
    }
    out
}
