//! Per-layer statistics of each cell's final weights.
//!
//! Each finished cell saves its final weights as `cells/<cell>/model.safetensors` (timm's state-dict
//! names); the tch-free crate [`vrl_layerstats`] computes, from that file, the power-law α of the
//! empirical spectral density, the spectral entropy, the L2 norm and the top-k PCA energy of every 2-D
//! or 4-D weight, with WeightWatcher's conventions (docs/layerstats.md). `results.json` holds them per
//! cell as `layer_stats` (a list, one entry per layer; an object with `error` if the file could not be
//! analysed; `null` for a cell without final weights, e.g. a failed one).

use std::path::Path;

/// What the report says about the statistics.
pub const REPORT_NOTE: &str = "Per-layer statistics of the final weights (α of the ESD, spectral entropy, L2 \
    norm, top-k PCA energy; `vrl-layerstats`, WeightWatcher's conventions) are in `results.json` under \
    `cells[*].layer_stats`; `vrl inspect layers --weights cells/<cell>/model.safetensors` prints them for one cell.";

/// The layer statistics of one cell's final weights (`None` when the cell has no final weights because
/// it failed; an object with `error` when the file cannot be analysed).
pub fn cell_layer_stats(weights: &Path) -> Option<serde_json::Value> {
    if !weights.exists() {
        return None;
    }
    let value = match vrl_layerstats::analyze_safetensors(weights, &vrl_layerstats::Options::default()) {
        Ok(stats) => {
            serde_json::to_value(stats).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
        }
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    Some(value)
}
