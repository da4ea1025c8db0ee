//! The separated attribute predictability score (Kumar, Sattigeri and Balakrishnan, 2018), as
//! disentanglement_lib's `sap_score.py` computes it: a score matrix of how well each single code
//! dimension predicts each factor, then per factor the difference between its two best dimensions,
//! averaged over factors.
//!
//! For discrete factors (disentanglement_lib's setting in its study, `continuous_factors=False`) the
//! score is the test accuracy of a one-feature `LinearSVC(C=0.01, class_weight="balanced")` trained
//! on the training points; for continuous factors it is the squared correlation
//! `cov(z_j, v_k)² / (var z_j · var v_k)` on the training points (0 where `var z_j ≤ 10⁻¹²`).

use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::input::{CodeKind, Factor, on_fixed_data, prepare_split};
use crate::svm::{LinearSvc, Prefix};

/// How a single dimension's predictiveness of a factor is scored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SapMode {
    /// Test accuracy of a balanced linear SVM with penalty `c` (disentanglement_lib: 0.01).
    Discrete {
        /// The inverse regularisation strength.
        c: f64,
    },
    /// Squared Pearson correlation on the training points.
    Continuous,
}

/// Settings of [`sap`], written with the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SapSettings {
    /// The score of one dimension for one factor (default: discrete, `c = 0.01`).
    pub mode: SapMode,
    /// For [`sap`] on one set of points: the leading fraction used for training, the rest for
    /// testing (default 2/3, disentanglement_lib's 10,000 training and 5,000 test points).
    pub train_fraction: f64,
    /// The factor columns that count (`None`: all).
    pub factors: Option<Vec<usize>>,
    /// What the codes are.
    pub codes: CodeKind,
}

impl Default for SapSettings {
    fn default() -> Self {
        SapSettings {
            mode: SapMode::Discrete { c: 0.01 },
            train_fraction: 2.0 / 3.0,
            factors: None,
            codes: CodeKind::Mean,
        }
    }
}

/// SAP and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sap {
    /// The mean over counted factors of the gap between the two best dimensions' scores.
    pub score: f64,
    /// The gap of each counted factor.
    pub per_factor: Vec<f64>,
    /// The factor columns counted.
    pub factors: Vec<usize>,
    /// `score_matrix[j][k]`: dimension `j`'s score for counted factor `k`.
    pub score_matrix: Vec<Vec<f64>>,
    /// The number of training points.
    pub num_train: usize,
    /// The number of test points.
    pub num_test: usize,
    /// The settings it was computed with.
    pub settings: SapSettings,
}

/// SAP on one set of points, split into training and test points by `settings.train_fraction`
/// (leading rows train), as disentanglement_lib's `compute_sap_on_fixed_data`.
///
/// # Errors
/// As [`sap_split`], and when the fraction leaves either side empty.
pub fn sap(
    codes: ArrayView2<'_, f64>,
    factors: ArrayView2<'_, i64>,
    settings: &SapSettings,
) -> Result<Sap, MetricError> {
    on_fixed_data(codes, factors, settings.factors.as_deref(), settings.train_fraction, |a, b, c, d| {
        sap_split(a, b, c, d, settings)
    })
}

/// SAP with separate training and test points (`settings.train_fraction` is not used).
///
/// # Errors
/// When codes and factors disagree in rows, the two sets in columns, a code is not finite, a counted
/// factor takes one value in the training points, there are fewer than two code dimensions, or
/// `c ≤ 0`.
pub fn sap_split(
    train_codes: ArrayView2<'_, f64>,
    train_factors: ArrayView2<'_, i64>,
    test_codes: ArrayView2<'_, f64>,
    test_factors: ArrayView2<'_, i64>,
    settings: &SapSettings,
) -> Result<Sap, MetricError> {
    let selected = prepare_split(
        "SAP",
        train_codes,
        train_factors,
        test_codes,
        test_factors,
        settings.factors.as_deref(),
    )?;
    let d = train_codes.ncols();
    if let SapMode::Discrete { c } = settings.mode
        && !(c > 0.0 && c.is_finite())
    {
        return Err(MetricError::Setting {
            name: "mode.c",
            value: c.to_string(),
            expected: "a positive number".into(),
        });
    }
    // One task per dimension: its training values are sorted once (with their prefix sums) for
    // every factor's classifiers.
    let score_matrix: Vec<Vec<f64>> = (0..d)
        .into_par_iter()
        .map(|j| {
            let z = train_codes.column(j);
            match settings.mode {
                SapMode::Continuous => {
                    let z = z.to_vec();
                    selected.iter().map(|f| squared_correlation(&z, &f.values, &f.labels)).collect()
                }
                SapMode::Discrete { c } => {
                    let mut order: Vec<usize> = (0..z.len()).collect();
                    order.sort_by(|&a, &b| z[a].total_cmp(&z[b]));
                    let x: Vec<f64> = order.iter().map(|&i| z[i]).collect();
                    let all = Prefix::new(x.iter().copied());
                    selected
                        .iter()
                        .map(|f| {
                            let y: Vec<u32> = order.iter().map(|&i| f.labels[i]).collect();
                            let svc = LinearSvc::fit_sorted(&all, &x, &y, f.num_values(), c);
                            accuracy(
                                &svc,
                                test_codes.column(j).iter().copied(),
                                test_factors.column(f.column).iter().copied(),
                                f,
                            )
                        })
                        .collect()
                }
            }
        })
        .collect();
    let per_factor = top_two_gaps(&score_matrix, selected.len());
    Ok(Sap {
        score: per_factor.iter().sum::<f64>() / per_factor.len() as f64,
        per_factor,
        factors: selected.iter().map(|f| f.column).collect(),
        score_matrix,
        num_train: train_codes.nrows(),
        num_test: test_codes.nrows(),
        settings: settings.clone(),
    })
}

/// The fraction of test points whose factor value the classifier predicts.
fn accuracy(svc: &LinearSvc, z: impl Iterator<Item = f64>, v: impl Iterator<Item = i64>, f: &Factor) -> f64 {
    let (mut right, mut n) = (0usize, 0usize);
    for (zi, vi) in z.zip(v) {
        right += usize::from(f.values[svc.predict(zi) as usize] == vi);
        n += 1;
    }
    right as f64 / n as f64
}

/// `cov(z, v)² / (var z · var v)` with `ddof = 1`, 0 when `var z ≤ 1e-12` (as `np.cov`).
fn squared_correlation(z: &[f64], values: &[i64], labels: &[u32]) -> f64 {
    let n = z.len() as f64;
    let v: Vec<f64> = labels.iter().map(|&l| values[l as usize] as f64).collect();
    let mz = z.iter().sum::<f64>() / n;
    let mv = v.iter().sum::<f64>() / n;
    let (mut szz, mut svv, mut szv) = (0.0, 0.0, 0.0);
    for (&a, &b) in z.iter().zip(&v) {
        let (da, db) = (a - mz, b - mv);
        szz += da * da;
        svv += db * db;
        szv += da * db;
    }
    let (var_z, var_v, cov) = (szz / (n - 1.0), svv / (n - 1.0), szv / (n - 1.0));
    if var_z > 1e-12 { cov * cov / (var_z * var_v) } else { 0.0 }
}

/// For each column `k` of a `[D][K]` matrix, its largest minus its second largest entry.
pub(crate) fn top_two_gaps(matrix: &[Vec<f64>], k: usize) -> Vec<f64> {
    (0..k)
        .map(|c| {
            let mut column: Vec<f64> = matrix.iter().map(|row| row[c]).collect();
            column.sort_by(|a, b| b.total_cmp(a));
            column[0] - column[1]
        })
        .collect()
}
