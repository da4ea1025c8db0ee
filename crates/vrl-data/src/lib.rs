//! Data for vrl's studies: decoders for the formats the studies use, and deterministic batching into
//! tch tensors.
//!
//! Today: the IDX format (MNIST), with errors that name the file, what was wrong and the byte offset,
//! and [`TensorDataset`], which holds a whole small data set as tensors and hands out shuffled
//! batches whose order depends only on the seed and the epoch (never on thread count), so an
//! interrupted epoch can be resumed at any batch.
//!
//! ```no_run
//! use vrl_data::{Mnist, TensorDataset};
//!
//! let mnist = Mnist::load(std::path::Path::new("/path/to/mnist")).unwrap();
//! let train = TensorDataset::from_images(&mnist.train, Mnist::MEAN, Mnist::STD);
//! for (images, labels) in train.batches(128, 0, /*seed*/ 7, /*shuffle*/ true, 0) {
//!     assert_eq!(images.size()[1..], [1, 28, 28]);
//!     # let _ = labels;
//! }
//! ```

mod dataset;
mod idx;
mod mnist;
mod rng;

pub use dataset::{Batches, TensorDataset};
pub use idx::{IdxArray, decode_idx, read_idx};
pub use mnist::{ImageSet, Mnist};
pub use rng::{SplitMix64, permutation};

use std::path::PathBuf;

/// Errors while reading data. Each names the file and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's contents do not have the expected format.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong, with the byte offset where that applies.
        message: String,
    },
}
