//! Per-layer statistics of each cell's final weights.
//!
//! **Integration point (vrl-layerstats).** Each finished cell saves its final weights as
//! `cells/<cell>/model.safetensors` (timm's state-dict names). The tch-free crate `vrl-layerstats`
//! (power-law α of the empirical spectral density, spectral entropy, L2 norm, top-k PCA energy per 2-D
//! or 4-D weight) computes the statistics from that file. Until it is merged, [`cell_layer_stats`]
//! returns `None` and `results.json` holds `"layer_stats": null` for every cell. To wire it in: add
//! `vrl-layerstats` to this crate's dependencies and make [`cell_layer_stats`] return
//! `serde_json::to_value(vrl_layerstats::analyze_safetensors(path, &Options::default())?)`; the report's
//! "Layer statistics" section (distributions by depth) then reads `cells[*].layer_stats`.

use std::path::Path;

/// What the report says while the statistics are not wired in.
pub const REPORT_NOTE: &str = "Per-layer statistics of the final weights (α of the ESD, spectral entropy, L2 \
    norm, top-k PCA energy) come from the `vrl-layerstats` crate, which is not wired in yet: every cell's \
    final weights are in `cells/<cell>/model.safetensors`, and `results.json` has `layer_stats: null`.";

/// The layer statistics of one cell's final weights (`None` until `vrl-layerstats` is wired in, or when
/// the cell has no final weights because it failed).
pub fn cell_layer_stats(weights: &Path) -> Option<serde_json::Value> {
    let _ = weights;
    None
}
