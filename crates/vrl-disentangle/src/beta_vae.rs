//! The β-VAE score (Higgins et al., 2017), as disentanglement_lib's `beta_vae.py`
//! (`compute_beta_vae_sklearn`) computes it: each point is made by picking a factor `k`
//! uniformly, drawing two batches of `batch_size` factor combinations that agree in factor `k`,
//! encoding both and averaging `|z₁ − z₂|` over the batch; a logistic regression
//! (scikit-learn's `LogisticRegression()`, C = 1) learns to tell `k` from that vector; the score is
//! its accuracy on `num_train` training points and on `num_eval` fresh points.
//!
//! Defaults are those of disentanglement_lib's study (`beta_vae_sklearn.gin`): batch 64, 10,000
//! training and 5,000 evaluation points. All draws come from one `SplitMix64` seeded with `seed`.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use vrl_data::{GroundTruthData, SplitMix64};

use crate::MetricError;
use crate::input::{CodeKind, check_codes, relabel};
use crate::logistic::Logistic;
use crate::sample::{check_count, encode};

/// Settings of [`beta_vae_score`], written with the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BetaVaeSettings {
    /// Pairs averaged per point (64).
    pub batch_size: usize,
    /// Training points (10,000).
    pub num_train: usize,
    /// Evaluation points (5,000).
    pub num_eval: usize,
    /// The logistic regression's inverse regularisation strength (scikit-learn's default 1).
    pub c: f64,
    /// The seed of every draw (any `u64`; above `i64::MAX` a TOML string, as [`vrl_config::seed`]
    /// reads it).
    #[serde(with = "vrl_config::seed")]
    pub seed: u64,
    /// The most observations handed to the representation function at once (does not change the
    /// result).
    pub max_encode_batch: usize,
    /// What the codes are.
    pub codes: CodeKind,
}

impl Default for BetaVaeSettings {
    fn default() -> Self {
        BetaVaeSettings {
            batch_size: 64,
            num_train: 10_000,
            num_eval: 5_000,
            c: 1.0,
            seed: 0,
            max_encode_batch: 1024,
            codes: CodeKind::Mean,
        }
    }
}

/// The β-VAE score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BetaVae {
    /// The classifier's accuracy on its training points.
    pub train_accuracy: f64,
    /// Its accuracy on the evaluation points (the score usually reported).
    pub eval_accuracy: f64,
    /// The settings it was computed with.
    pub settings: BetaVaeSettings,
}

/// The β-VAE score of `representation` on data drawn from `data`.
///
/// `representation` maps a batch of observations `[B, C·H·W]` to codes `[B, D]`.
///
/// # Errors
/// When a setting is invalid, the representation fails or returns codes of the wrong shape or not
/// finite, the data refuses a draw, or the training points hold a single factor.
pub fn beta_vae_score<G, F, E>(
    data: &G,
    mut representation: F,
    settings: &BetaVaeSettings,
) -> Result<BetaVae, MetricError>
where
    G: GroundTruthData + ?Sized,
    F: FnMut(ArrayView2<'_, f32>) -> Result<Array2<f64>, E>,
    E: std::fmt::Display,
{
    check_count("batch_size", settings.batch_size, 1)?;
    check_count("num_train", settings.num_train, 2)?;
    check_count("num_eval", settings.num_eval, 1)?;
    let mut rng = SplitMix64::new(settings.seed);
    let mut points = |count: usize, rng: &mut SplitMix64| -> Result<(Array2<f64>, Vec<i64>), MetricError> {
        let b = settings.batch_size;
        let per_call = (settings.max_encode_batch / (2 * b)).max(1);
        let mut features: Vec<Vec<f64>> = Vec::with_capacity(count);
        let mut labels = Vec::with_capacity(count);
        let mut left = count;
        while left > 0 {
            let group = left.min(per_call);
            left -= group;
            let mut rows = Vec::with_capacity(group * 2 * b);
            for _ in 0..group {
                let k = rng.below(data.num_factors() as u64) as usize;
                let first = data.sample_factors(b, rng);
                let mut second = data.sample_factors(b, rng);
                for (s, f) in second.iter_mut().zip(&first) {
                    s[k] = f[k];
                }
                labels.push(k as i64);
                rows.extend(first);
                rows.extend(second);
            }
            let codes = encode(data, &rows, &mut representation, settings.max_encode_batch)?;
            for g in 0..group {
                let z1 = codes.slice(ndarray::s![2 * g * b..(2 * g + 1) * b, ..]);
                let z2 = codes.slice(ndarray::s![(2 * g + 1) * b..(2 * g + 2) * b, ..]);
                let feature = (&z1 - &z2).mapv(f64::abs).mean_axis(ndarray::Axis(0));
                features.push(feature.map_or_else(Vec::new, |f| f.to_vec()));
            }
        }
        let d = features.first().map_or(0, Vec::len);
        let flat: Vec<f64> = features.into_iter().flatten().collect();
        let array = Array2::from_shape_vec((count, d), flat).map_err(|e| MetricError::Shape {
            what: "β-VAE features",
            expected: format!("{count} × {d}"),
            found: e.to_string(),
        })?;
        Ok((array, labels))
    };
    let (train_x, train_y) = points(settings.num_train, &mut rng)?;
    let (eval_x, eval_y) = points(settings.num_eval, &mut rng)?;
    let (train_accuracy, eval_accuracy) =
        beta_vae_accuracy(train_x.view(), &train_y, eval_x.view(), &eval_y, settings.c)?;
    Ok(BetaVae { train_accuracy, eval_accuracy, settings: settings.clone() })
}

/// The β-VAE classifier on given feature vectors: fits the logistic regression on
/// `(train_points [N, D], train_labels)` and returns its accuracy on them and on
/// `(eval_points, eval_labels)`.
///
/// # Errors
/// When shapes disagree, a feature is not finite, the training labels hold a single class, or
/// `c ≤ 0`.
pub fn beta_vae_accuracy(
    train_points: ArrayView2<'_, f64>,
    train_labels: &[i64],
    eval_points: ArrayView2<'_, f64>,
    eval_labels: &[i64],
    c: f64,
) -> Result<(f64, f64), MetricError> {
    check_codes(train_points, "training features")?;
    check_codes(eval_points, "evaluation features")?;
    if train_points.nrows() != train_labels.len() {
        return Err(MetricError::RowMismatch {
            what: "training features",
            codes: train_points.nrows(),
            factors: train_labels.len(),
        });
    }
    if eval_points.nrows() != eval_labels.len() {
        return Err(MetricError::RowMismatch {
            what: "evaluation features",
            codes: eval_points.nrows(),
            factors: eval_labels.len(),
        });
    }
    if eval_points.ncols() != train_points.ncols() {
        return Err(MetricError::Shape {
            what: "evaluation features",
            expected: format!("{} columns, as the training features", train_points.ncols()),
            found: format!("{} columns", eval_points.ncols()),
        });
    }
    if !(c > 0.0 && c.is_finite()) {
        return Err(MetricError::Setting {
            name: "c",
            value: c.to_string(),
            expected: "a positive number".into(),
        });
    }
    let labels = relabel(train_labels.iter().copied(), 0);
    if labels.num_values() < 2 {
        return Err(MetricError::ConstantFactor {
            what: "β-VAE training labels",
            factor: 0,
            value: labels.values[0],
            points: train_labels.len(),
        });
    }
    let rows: Vec<Vec<f64>> = train_points.rows().into_iter().map(|r| r.to_vec()).collect();
    let model = Logistic::fit(&rows, &labels.labels, labels.num_values(), c);
    let accuracy = |points: ArrayView2<'_, f64>, truth: &[i64]| {
        let right = points
            .rows()
            .into_iter()
            .zip(truth)
            .filter(|(r, t)| labels.values[model.predict(&r.to_vec()) as usize] == **t)
            .count();
        right as f64 / truth.len() as f64
    };
    Ok((accuracy(train_points, train_labels), accuracy(eval_points, eval_labels)))
}
