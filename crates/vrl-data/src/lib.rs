//! Data for vrl's studies, without tensors (so it is cheap to reuse): decoders for the formats the
//! studies use, with errors that name the file, what was wrong and the byte offset, and seeded
//! shuffling. `vrl-loader` turns these arrays into tch tensors.
//!
//! * IDX ([`Mnist`], [`FashionMnist`]; plain or `.gz`), CIFAR-10/100 binary batches ([`load_cifar`]),
//!   image folders and ImageNet-LT split lists ([`ImageFolder`], PNG and JPEG).
//!
//! ```
//! use vrl_data::{CifarKind, decode_cifar, decode_idx, permutation};
//!
//! let record = [&[3u8][..], &[0; 3072]].concat();
//! assert_eq!(decode_cifar(&record, CifarKind::Cifar10).unwrap().labels, vec![3]);
//! assert!(decode_cifar(&record[..100], CifarKind::Cifar10).unwrap_err().contains("byte offset 0"));
//!
//! let bytes = [0u8, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9];
//! let labels = decode_idx(&bytes, 1).unwrap();
//! assert_eq!(labels.data, vec![7, 8, 9]);
//! assert!(decode_idx(&bytes[..9], 1).unwrap_err().contains("truncated"));
//! assert_eq!(permutation(3, 1, 0).len(), 3);
//! ```

pub mod cifar;
pub mod dsprites;
pub mod folder;
mod idx;
pub mod longtail;
mod mnist;
pub mod npy;
pub mod randaugment;
mod rng;
pub mod transforms;

pub use cifar::{CifarKind, ColorImages, decode_cifar, load_cifar};
pub use dsprites::{DSprites, FactorError, GroundTruthData};
pub use folder::{ImageFolder, RgbImage, decode_image_bytes};
pub use idx::{IdxArray, decode_idx, encode_idx, read_idx};
pub use longtail::{Sampler, ShotGroups, longtail_counts, longtail_subset};
pub use mnist::{FashionMnist, ImageSet, Mnist};
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
