//! The FactorVAE score (Kim and Mnih, 2018), as disentanglement_lib's `factor_vae.py` computes it.
//!
//! 1. Draw `num_variance_estimate` points, encode them, and take each code dimension's variance
//!    (`ddof = 1`); dimensions whose standard deviation is below `prune_threshold` are inactive.
//! 2. A vote: pick a factor `k` uniformly, draw `batch_size` factor combinations, set factor `k` of
//!    all to the first one's value, encode, and divide each active dimension's variance in the batch
//!    by its global variance; the vote is `(k, argmin)`.
//! 3. Each active dimension is assigned the factor with the most training votes for it
//!    (`num_train` votes); the score is the fraction of votes, training (`train_accuracy`) or fresh
//!    evaluation votes (`num_eval`, `eval_accuracy`), that this majority classifier gets right.
//!
//! Defaults are those of disentanglement_lib's study (`factor_vae_metric.gin`): batch 64, 10,000
//! training votes, 5,000 evaluation votes, 10,000 points for the variances, pruning at 0.05.
//! All draws come from one `SplitMix64` seeded with `seed`, in disentanglement_lib's order.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use vrl_data::{GroundTruthData, SplitMix64};

use crate::MetricError;
use crate::input::CodeKind;
use crate::sample::{check_count, encode};

/// Settings of [`factor_vae_score`], written with the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FactorVaeSettings {
    /// Points per vote (64).
    pub batch_size: usize,
    /// Training votes (10,000).
    pub num_train: usize,
    /// Evaluation votes (5,000).
    pub num_eval: usize,
    /// Points for the global variances (10,000).
    pub num_variance_estimate: usize,
    /// Dimensions with a global standard deviation below this are pruned (0.05; a dimension of
    /// variance 0 is always pruned).
    pub prune_threshold: f64,
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

impl Default for FactorVaeSettings {
    fn default() -> Self {
        FactorVaeSettings {
            batch_size: 64,
            num_train: 10_000,
            num_eval: 5_000,
            num_variance_estimate: 10_000,
            prune_threshold: 0.05,
            seed: 0,
            max_encode_batch: 1024,
            codes: CodeKind::Mean,
        }
    }
}

/// The FactorVAE score and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactorVae {
    /// The majority-vote classifier's accuracy on the training votes.
    pub train_accuracy: f64,
    /// Its accuracy on the evaluation votes (the score usually reported).
    pub eval_accuracy: f64,
    /// The code dimensions not pruned.
    pub active_dims: Vec<usize>,
    /// Each code dimension's global variance.
    pub global_variances: Vec<f64>,
    /// `train_votes[k][a]`: training votes of factor `k` for the `a`-th active dimension.
    pub train_votes: Vec<Vec<u64>>,
    /// The settings it was computed with.
    pub settings: FactorVaeSettings,
}

/// The FactorVAE score of `representation` on data drawn from `data`.
///
/// `representation` maps a batch of observations `[B, C·H·W]` to codes `[B, D]`.
///
/// # Errors
/// When a setting is invalid, the representation fails or returns codes of the wrong shape or not
/// finite, or the data refuses a draw.
pub fn factor_vae_score<G, F, E>(
    data: &G,
    mut representation: F,
    settings: &FactorVaeSettings,
) -> Result<FactorVae, MetricError>
where
    G: GroundTruthData + ?Sized,
    F: FnMut(ArrayView2<'_, f32>) -> Result<Array2<f64>, E>,
    E: std::fmt::Display,
{
    check_count("batch_size", settings.batch_size, 2)?;
    check_count("num_train", settings.num_train, 1)?;
    check_count("num_eval", settings.num_eval, 1)?;
    check_count("num_variance_estimate", settings.num_variance_estimate, 2)?;
    if settings.prune_threshold.is_nan() || settings.prune_threshold < 0.0 {
        return Err(MetricError::Setting {
            name: "prune_threshold",
            value: settings.prune_threshold.to_string(),
            expected: "a non-negative number".into(),
        });
    }
    let mut rng = SplitMix64::new(settings.seed);
    let factors = data.sample_factors(settings.num_variance_estimate, &mut rng);
    let codes = encode(data, &factors, &mut representation, settings.max_encode_batch)?;
    let global_variances = variances(codes.view());
    let active_dims: Vec<usize> = global_variances
        .iter()
        .enumerate()
        .filter(|&(_, &v)| v > 0.0 && v.sqrt() >= settings.prune_threshold)
        .map(|(j, _)| j)
        .collect();
    let settings = settings.clone();
    if active_dims.is_empty() {
        return Ok(FactorVae {
            train_accuracy: 0.0,
            eval_accuracy: 0.0,
            active_dims,
            global_variances,
            train_votes: Vec::new(),
            settings,
        });
    }
    let votes =
        |count: usize, rng: &mut SplitMix64, representation: &mut F| -> Result<Vec<Vec<u64>>, MetricError> {
            let mut votes = vec![vec![0u64; active_dims.len()]; data.num_factors()];
            let per_call = (settings.max_encode_batch / settings.batch_size).max(1);
            let mut left = count;
            while left > 0 {
                let group = left.min(per_call);
                left -= group;
                let mut chosen = Vec::with_capacity(group);
                let mut rows = Vec::with_capacity(group * settings.batch_size);
                for _ in 0..group {
                    let k = rng.below(data.num_factors() as u64) as usize;
                    let mut batch = data.sample_factors(settings.batch_size, rng);
                    let fixed = batch[0][k];
                    batch.iter_mut().for_each(|f| f[k] = fixed);
                    chosen.push(k);
                    rows.extend(batch);
                }
                let codes = encode(data, &rows, representation, settings.max_encode_batch)?;
                for (g, &k) in chosen.iter().enumerate() {
                    let block =
                        codes.slice(ndarray::s![g * settings.batch_size..(g + 1) * settings.batch_size, ..]);
                    let local = variances(block);
                    let mut best = 0;
                    let mut best_ratio = f64::INFINITY;
                    for (a, &j) in active_dims.iter().enumerate() {
                        let ratio = local[j] / global_variances[j];
                        if ratio < best_ratio {
                            best_ratio = ratio;
                            best = a;
                        }
                    }
                    votes[k][best] += 1;
                }
            }
            Ok(votes)
        };
    let train_votes = votes(settings.num_train, &mut rng, &mut representation)?;
    let eval_votes = votes(settings.num_eval, &mut rng, &mut representation)?;
    let (train_accuracy, eval_accuracy) = majority_vote_accuracy(&train_votes, &eval_votes);
    Ok(FactorVae { train_accuracy, eval_accuracy, active_dims, global_variances, train_votes, settings })
}

/// The accuracies of the majority-vote classifier: each dimension (column) is assigned the factor
/// (row) with most training votes (the first on a tie); returns the fraction of training and of
/// evaluation votes it gets right. Votes are `[K][D]`.
pub fn majority_vote_accuracy(train_votes: &[Vec<u64>], eval_votes: &[Vec<u64>]) -> (f64, f64) {
    let d = train_votes.first().map_or(0, Vec::len);
    let classifier: Vec<usize> = (0..d)
        .map(|j| {
            let mut best = 0;
            for (k, row) in train_votes.iter().enumerate() {
                if row[j] > train_votes[best][j] {
                    best = k;
                }
            }
            best
        })
        .collect();
    let accuracy = |votes: &[Vec<u64>]| {
        let total: u64 = votes.iter().flatten().sum();
        let right: u64 = classifier.iter().enumerate().map(|(j, &k)| votes.get(k).map_or(0, |r| r[j])).sum();
        if total == 0 { 0.0 } else { right as f64 / total as f64 }
    };
    (accuracy(train_votes), accuracy(eval_votes))
}

/// Each column's variance with `ddof = 1`.
fn variances(codes: ArrayView2<'_, f64>) -> Vec<f64> {
    let n = codes.nrows() as f64;
    codes
        .columns()
        .into_iter()
        .map(|c| {
            let mean = c.sum() / n;
            c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_vote_by_hand() {
        // Dimension 0 mostly votes factor 1, dimension 1 factor 0.
        let train = vec![vec![1, 8], vec![6, 2]];
        let (train_acc, eval_acc) = majority_vote_accuracy(&train, &[vec![0, 5], vec![5, 0]]);
        assert!((train_acc - 14.0 / 17.0).abs() < 1e-15);
        assert_eq!(eval_acc, 1.0);
    }
}
