//! Errors of the crate.

/// Bad input to a model or an objective.
#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    /// A tensor does not have the expected shape.
    #[error("`{name}` has shape {found:?}, expected {expected}")]
    Shape {
        /// Which tensor.
        name: String,
        /// Its shape.
        found: Vec<i64>,
        /// What was expected, in words.
        expected: String,
    },
    /// A hyper-parameter is out of range.
    #[error("`{name}` = {value} is invalid: {expected}")]
    Hyperparameter {
        /// The hyper-parameter.
        name: String,
        /// Its value, as written.
        value: String,
        /// What was expected.
        expected: String,
    },
}
