//! Disentanglement metrics for any representation, without tensors: MIG, SAP, DCI, modularity, and
//! the FactorVAE and β-VAE scores, computed as Locatello et al.'s disentanglement_lib computes
//! them (checked against `python/disentangle_reference.py`, a numpy + scikit-learn transcription
//! of its code), with its defaults. See `docs/disentanglement.md` for the definitions and how every
//! setting maps to disentanglement_lib.
//!
//! * Metrics over fixed points take codes `[N, D]` (`f64`) and integer factors `[N, K]`:
//!   [`mig`], [`sap`] / [`sap_split`], [`dci`] / [`dci_split`], [`modularity`].
//! * The FactorVAE and β-VAE scores draw their own points from a [`GroundTruthData`] (e.g.
//!   [`vrl_data::DSprites`]) and encode them with a representation function, a closure from a
//!   batch of observations `[B, C·H·W]` to codes `[B, D]`: [`factor_vae_score`],
//!   [`beta_vae_score`]. Every draw comes from the `seed` setting.
//! * Every result carries the settings it was computed with (serde), including the choices that
//!   make published numbers disagree: posterior means or samples ([`CodeKind`]), which factors
//!   count, and the discretisation ([`Discretization`]).
//! * Bad input — shapes that disagree, non-finite codes, a factor with a single value — is a
//!   [`MetricError`] naming what was wrong.
//!
//! ```
//! use ndarray::{Array2, ArrayView2};
//! use vrl_data::DSprites;
//! use vrl_disentangle::{FactorVaeSettings, MigSettings, factor_vae_score, mig};
//!
//! // Two factors with 4 and 3 values; the codes are the factors themselves, rescaled and swapped.
//! let factors = Array2::from_shape_fn((120, 2), |(i, k)| if k == 0 { (i % 4) as i64 } else { (i % 3) as i64 });
//! let codes = Array2::from_shape_fn((120, 2), |(i, j)| if j == 0 { 0.5 * (i % 3) as f64 } else { -2.0 * (i % 4) as f64 });
//! let m = mig(codes.view(), factors.view(), &MigSettings::default()).unwrap();
//! assert!((m.score - 1.0).abs() < 1e-12);
//! let json = serde_json::to_string(&m).unwrap();
//! assert!(json.contains("\"num_bins\":20") && json.contains("\"codes\":\"mean\""));
//!
//! // The FactorVAE score of a representation that reads the sprite's position from its ink.
//! let centroid = |images: ArrayView2<'_, f32>| -> Result<Array2<f64>, String> {
//!     Ok(Array2::from_shape_fn((images.nrows(), 2), |(b, axis)| {
//!         let (mut sum, mut ink) = (0.0, 0.0);
//!         for (p, &v) in images.row(b).iter().enumerate() {
//!             sum += f64::from(v) * if axis == 0 { (p % 64) as f64 } else { (p / 64) as f64 };
//!             ink += f64::from(v);
//!         }
//!         sum / ink
//!     }))
//! };
//! let settings = FactorVaeSettings { batch_size: 16, num_train: 100, num_eval: 50, num_variance_estimate: 200, ..Default::default() };
//! let score = factor_vae_score(&DSprites::new(), centroid, &settings).unwrap();
//! // Position is found (2 of 5 factors); the majority classifier is right on posX and posY votes.
//! assert!(score.eval_accuracy > 0.3, "{score:?}");
//! ```

mod beta_vae;
mod dci;
mod discretize;
mod factor_vae;
mod gbt;
mod info;
mod input;
mod logistic;
mod mig;
mod modularity;
mod sample;
mod sap;
mod svm;

pub use beta_vae::{BetaVae, BetaVaeSettings, beta_vae_accuracy, beta_vae_score};
pub use dci::{Dci, DciSettings, Importance, dci, dci_split, disentanglement_completeness};
pub use discretize::{Discretization, Strategy};
pub use factor_vae::{FactorVae, FactorVaeSettings, factor_vae_score, majority_vote_accuracy};
pub use gbt::GbtSettings;
pub use input::{CodeKind, factors_to_array};
pub use mig::{Mig, MigSettings, mig};
pub use modularity::{Modularity, ModularitySettings, modularity};
pub use sap::{Sap, SapMode, SapSettings, sap, sap_split};
pub use vrl_data::{FactorError, GroundTruthData};

/// What went wrong in a metric's input or settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// An array has no rows or no columns.
    #[error("{what} are empty ({rows} × {columns}); expected at least one point and one column")]
    Empty {
        /// Which array.
        what: &'static str,
        /// Its rows.
        rows: usize,
        /// Its columns.
        columns: usize,
    },
    /// A code is NaN or infinite.
    #[error("{what} hold the non-finite value {value} at row {row}, column {column}; expected finite codes")]
    NonFinite {
        /// Which array.
        what: &'static str,
        /// The row.
        row: usize,
        /// The column.
        column: usize,
        /// The value.
        value: f64,
    },
    /// Codes and factors have different numbers of rows.
    #[error("{what} have {codes} rows but the factors have {factors}; expected one row of factors per point")]
    RowMismatch {
        /// Which array.
        what: &'static str,
        /// The codes' rows.
        codes: usize,
        /// The factors' rows.
        factors: usize,
    },
    /// A factor to be scored takes a single value.
    #[error(
        "factor column {factor} takes the single value {value} in all {points} points ({what}): its entropy is \
         zero, so it cannot be scored; leave it out with the `factors` setting"
    )]
    ConstantFactor {
        /// Which points.
        what: &'static str,
        /// The factor column.
        factor: usize,
        /// Its only value.
        value: i64,
        /// The number of points.
        points: usize,
    },
    /// Too few code dimensions or factors for the metric's definition.
    #[error("{metric} needs at least {needed} {what}, found {found}")]
    TooFew {
        /// The metric.
        metric: &'static str,
        /// What is counted.
        what: &'static str,
        /// How many there are.
        found: usize,
        /// How many are needed.
        needed: usize,
    },
    /// A setting is out of range.
    #[error("setting {name} = {value} is invalid; expected {expected}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: String,
    },
    /// An array has the wrong shape.
    #[error("{what}: expected {expected}, found {found}")]
    Shape {
        /// Which array.
        what: &'static str,
        /// The shape expected.
        expected: String,
        /// The shape found.
        found: String,
    },
    /// The representation function failed.
    #[error("the representation function failed: {message}")]
    Representation {
        /// Its error message.
        message: String,
    },
    /// The ground-truth data refused a draw.
    #[error(transparent)]
    Data(#[from] FactorError),
}
