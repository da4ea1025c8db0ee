//! Discretisation of continuous codes for the information-based metrics (MIG, modularity).

use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::MetricError;

/// How a code dimension is cut into bins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Equal-width bins between the dimension's minimum and maximum, exactly as
    /// disentanglement_lib's `histogram_discretizer`:
    /// `np.digitize(x, np.histogram(x, num_bins)[1][:-1])` (bins `1..=num_bins`, the maximum in
    /// the last; a constant dimension falls in one bin).
    #[default]
    Histogram,
    /// Equal-frequency bins: a point's bin is `⌊rank · num_bins / N⌋` with tied values sharing the
    /// rank of the first of them (not in disentanglement_lib; robust to outlying codes).
    Quantile,
}

/// A discretisation: the number of bins and how they are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discretization {
    /// The number of bins per code dimension (disentanglement_lib: 20).
    pub num_bins: usize,
    /// Where the bin edges go.
    pub strategy: Strategy,
}

impl Default for Discretization {
    fn default() -> Self {
        Discretization { num_bins: 20, strategy: Strategy::Histogram }
    }
}

impl Discretization {
    /// Checks the setting.
    pub(crate) fn check(&self) -> Result<(), MetricError> {
        if self.num_bins < 2 {
            return Err(MetricError::Setting {
                name: "num_bins",
                value: self.num_bins.to_string(),
                expected: "at least 2 bins".into(),
            });
        }
        Ok(())
    }

    /// The bin of every point in every code dimension: `D` columns of `N` labels.
    pub(crate) fn apply(&self, codes: ArrayView2<'_, f64>) -> Vec<Vec<u32>> {
        (0..codes.ncols())
            .into_par_iter()
            .map(|j| {
                let column: Vec<f64> = codes.column(j).to_vec();
                match self.strategy {
                    Strategy::Histogram => histogram(&column, self.num_bins),
                    Strategy::Quantile => quantile(&column, self.num_bins),
                }
            })
            .collect()
    }
}

/// `np.digitize(x, np.histogram(x, bins)[1][:-1])` for finite `x`.
pub(crate) fn histogram(x: &[f64], bins: usize) -> Vec<u32> {
    let (mut lo, mut hi) =
        x.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    // numpy.linspace(lo, hi, bins + 1): k · step + lo, step = (hi − lo) / bins.
    let step = (hi - lo) / bins as f64;
    let edges: Vec<f64> = (0..bins).map(|k| k as f64 * step + lo).collect();
    // digitize (right=False): the number of edges ≤ v.
    x.iter().map(|&v| edges.partition_point(|&e| e <= v) as u32).collect()
}

/// Equal-frequency bins by rank; ties share the first tied rank's bin.
pub(crate) fn quantile(x: &[f64], bins: usize) -> Vec<u32> {
    let n = x.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut out = vec![0u32; n];
    let mut first_rank = 0;
    for (rank, &i) in order.iter().enumerate() {
        if rank > 0 && x[i] != x[order[rank - 1]] {
            first_rank = rank;
        }
        out[i] = ((first_rank * bins) / n) as u32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_matches_numpy_by_hand() {
        // np.digitize(x, np.histogram(x, 4)[1][:-1]) for x = [0, 1, 2, 3, 4] is [1, 2, 3, 4, 4].
        assert_eq!(histogram(&[0.0, 1.0, 2.0, 3.0, 4.0], 4), vec![1, 2, 3, 4, 4]);
        // A constant column: edges linspace(-0.5, 1.5, 3)[:-1] = [-0.5, 0.1667], value 1 -> 2.
        assert_eq!(histogram(&[1.0, 1.0], 3), vec![2, 2]);
    }

    #[test]
    fn quantile_bins_have_equal_counts_and_ties_stay_together() {
        let x: Vec<f64> = (0..100).map(|i| f64::from((i * 37) % 100)).collect();
        let b = quantile(&x, 10);
        for bin in 0..10 {
            assert_eq!(b.iter().filter(|&&v| v == bin).count(), 10);
        }
        assert_eq!(quantile(&[1.0, 1.0, 1.0, 2.0], 2), vec![0, 0, 0, 1]);
    }
}
