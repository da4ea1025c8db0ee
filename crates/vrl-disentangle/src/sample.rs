//! Drawing observations from a ground-truth generator and encoding them with a representation
//! function, in batches.

use ndarray::{Array2, ArrayView2};
use vrl_data::GroundTruthData;

use crate::MetricError;

/// Renders the observations of `factors` and encodes them with `representation`, at most
/// `max_batch` observations per call; returns the codes `[factors.len(), D]`. Every call must return
/// finite codes `[batch, D]` with the same `D`.
pub(crate) fn encode<G, F, E>(
    data: &G,
    factors: &[Vec<usize>],
    representation: &mut F,
    max_batch: usize,
) -> Result<Array2<f64>, MetricError>
where
    G: GroundTruthData + ?Sized,
    F: FnMut(ArrayView2<'_, f32>) -> Result<Array2<f64>, E>,
    E: std::fmt::Display,
{
    let per_item = data.observation_len();
    let mut out: Option<Array2<f64>> = None;
    let mut buffer = Vec::new();
    let mut done = 0;
    for chunk in factors.chunks(max_batch.max(1)) {
        buffer.resize(chunk.len() * per_item, 0.0);
        data.sample_observations_from_factors(chunk, &mut buffer)?;
        let view =
            ArrayView2::from_shape((chunk.len(), per_item), &buffer).map_err(|e| MetricError::Shape {
                what: "observations",
                expected: format!("{} × {per_item}", chunk.len()),
                found: e.to_string(),
            })?;
        let codes =
            representation(view).map_err(|e| MetricError::Representation { message: e.to_string() })?;
        let d = out.as_ref().map_or(codes.ncols(), Array2::ncols);
        if codes.nrows() != chunk.len() || codes.ncols() != d || d == 0 {
            return Err(MetricError::Shape {
                what: "representation output",
                expected: format!(
                    "{} rows (one per observation) of {} codes",
                    chunk.len(),
                    if d == 0 { "≥ 1".into() } else { d.to_string() }
                ),
                found: format!("{} × {}", codes.nrows(), codes.ncols()),
            });
        }
        for ((row, column), &value) in codes.indexed_iter() {
            if !value.is_finite() {
                return Err(MetricError::NonFinite {
                    what: "representation output",
                    row: done + row,
                    column,
                    value,
                });
            }
        }
        let all = out.get_or_insert_with(|| Array2::zeros((factors.len(), d)));
        all.slice_mut(ndarray::s![done..done + chunk.len(), ..]).assign(&codes);
        done += chunk.len();
    }
    Ok(out.unwrap_or_else(|| Array2::zeros((0, 0))))
}

/// Checks a sample-count setting.
pub(crate) fn check_count(name: &'static str, value: usize, least: usize) -> Result<(), MetricError> {
    if value < least {
        return Err(MetricError::Setting {
            name,
            value: value.to_string(),
            expected: format!("at least {least}"),
        });
    }
    Ok(())
}
