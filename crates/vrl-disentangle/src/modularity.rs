//! Modularity (Ridgeway and Zemel, 2018), as disentanglement_lib's `modularity_explicitness.py`
//! computes it: from the same discretised mutual information matrix as MIG, each code dimension's
//! `1 − Σ_{k≠k*} I²(z_j; v_k) / ((K − 1) · I²(z_j; v_{k*}))`, where `k*` is its most informative
//! factor (0 for a dimension carrying no information), averaged over dimensions. (Explicitness, the
//! other half of that file, is not computed here.)

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::discretize::Discretization;
use crate::input::{CodeKind, prepare};
use crate::mig::mutual_information_matrix;

/// Settings of [`modularity`], written with the result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModularitySettings {
    /// How codes are cut into bins (disentanglement_lib: 20 equal-width bins).
    pub discretization: Discretization,
    /// The factor columns that count (`None`: all).
    pub factors: Option<Vec<usize>>,
    /// What the codes are.
    pub codes: CodeKind,
}

/// Modularity and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Modularity {
    /// The mean over code dimensions of their modularity, in `[0, 1]`.
    pub score: f64,
    /// Each code dimension's modularity.
    pub per_code: Vec<f64>,
    /// The factor columns counted.
    pub factors: Vec<usize>,
    /// `mutual_information[j][k]` in nats.
    pub mutual_information: Vec<Vec<f64>>,
    /// The number of points.
    pub num_points: usize,
    /// The settings it was computed with.
    pub settings: ModularitySettings,
}

/// Modularity of codes `[N, D]` against discrete factors `[N, K]` (`K ≥ 2` counted factors).
///
/// # Errors
/// When the row counts differ, a code is not finite, a counted factor takes a single value, fewer
/// than two factors count, or a setting is invalid.
pub fn modularity(
    codes: ArrayView2<'_, f64>,
    factors: ArrayView2<'_, i64>,
    settings: &ModularitySettings,
) -> Result<Modularity, MetricError> {
    settings.discretization.check()?;
    let selected = prepare(codes, factors, settings.factors.as_deref(), true, "codes")?;
    if selected.len() < 2 {
        return Err(MetricError::TooFew {
            metric: "modularity",
            what: "factors",
            found: selected.len(),
            needed: 2,
        });
    }
    let mi = mutual_information_matrix(codes, &selected, &settings.discretization);
    let k = selected.len() as f64;
    let per_code: Vec<f64> = mi
        .iter()
        .map(|row| {
            let squared: Vec<f64> = row.iter().map(|v| v * v).collect();
            let max = squared.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if max == 0.0 {
                return 0.0;
            }
            let numerator = squared.iter().sum::<f64>() - max;
            1.0 - numerator / (max * (k - 1.0))
        })
        .collect();
    let score = per_code.iter().sum::<f64>() / per_code.len() as f64;
    Ok(Modularity {
        score,
        per_code,
        factors: selected.iter().map(|f| f.column).collect(),
        mutual_information: mi,
        num_points: codes.nrows(),
        settings: settings.clone(),
    })
}
