//! The mutual information gap (Chen, Li, Grosse and Duvenaud, 2018), as disentanglement_lib's
//! `mig.py` computes it: codes discretised per dimension, the discrete mutual information
//! `I(z_j; v_k)` of every code dimension with every factor, and for each factor the gap between its
//! two most informative dimensions divided by the factor's entropy, averaged over factors.

use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::discretize::Discretization;
use crate::info::{entropy, mutual_info, num_labels};
use crate::input::{CodeKind, Factor, prepare};

/// The choices that make published MIG values disagree, all written with the result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigSettings {
    /// How codes are cut into bins (disentanglement_lib: 20 equal-width bins).
    pub discretization: Discretization,
    /// The factor columns that count (`None`: all, as disentanglement_lib; Chen et al. leave
    /// dSprites' shape out).
    pub factors: Option<Vec<usize>>,
    /// What the codes are (posterior means in disentanglement_lib).
    pub codes: CodeKind,
}

/// MIG and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mig {
    /// The mean over the counted factors of `(I₁ − I₂) / H(v_k)`, in `[0, 1]`.
    pub score: f64,
    /// The normalised gap of each counted factor, in the order of `factors`.
    pub per_factor: Vec<f64>,
    /// The factor columns counted.
    pub factors: Vec<usize>,
    /// `mutual_information[j][k]`: `I(z_j; v_k)` in nats, code dimension `j`, counted factor `k`.
    pub mutual_information: Vec<Vec<f64>>,
    /// `H(v_k)` in nats for each counted factor.
    pub factor_entropy: Vec<f64>,
    /// The number of points.
    pub num_points: usize,
    /// The settings it was computed with.
    pub settings: MigSettings,
}

/// The discrete mutual information matrix `[D][K]` between discretised codes and factors.
pub(crate) fn mutual_information_matrix(
    codes: ArrayView2<'_, f64>,
    factors: &[Factor],
    discretization: &Discretization,
) -> Vec<Vec<f64>> {
    let binned = discretization.apply(codes);
    binned
        .par_iter()
        .map(|bins| {
            let nb = num_labels(bins);
            factors.iter().map(|f| mutual_info(&f.labels, f.num_values(), bins, nb)).collect()
        })
        .collect()
}

/// MIG of codes `[N, D]` (`D ≥ 2`) against discrete factors `[N, K]`.
///
/// # Errors
/// When the row counts differ, a code is not finite, a counted factor takes a single value (its
/// entropy is zero), `D < 2`, or a setting is invalid.
pub fn mig(
    codes: ArrayView2<'_, f64>,
    factors: ArrayView2<'_, i64>,
    settings: &MigSettings,
) -> Result<Mig, MetricError> {
    settings.discretization.check()?;
    let selected = prepare(codes, factors, settings.factors.as_deref(), true, "codes")?;
    if codes.ncols() < 2 {
        return Err(MetricError::TooFew {
            metric: "MIG",
            what: "code dimensions",
            found: codes.ncols(),
            needed: 2,
        });
    }
    let mi = mutual_information_matrix(codes, &selected, &settings.discretization);
    let factor_entropy: Vec<f64> = selected.iter().map(|f| entropy(&f.labels, f.num_values())).collect();
    let per_factor: Vec<f64> = (0..selected.len())
        .map(|k| {
            let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
            for row in &mi {
                let v = row[k];
                if v > first {
                    second = first;
                    first = v;
                } else if v > second {
                    second = v;
                }
            }
            (first - second) / factor_entropy[k]
        })
        .collect();
    let score = per_factor.iter().sum::<f64>() / per_factor.len() as f64;
    Ok(Mig {
        score,
        per_factor,
        factors: selected.iter().map(|f| f.column).collect(),
        mutual_information: mi,
        factor_entropy,
        num_points: codes.nrows(),
        settings: settings.clone(),
    })
}
