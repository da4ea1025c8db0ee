//! The bridge from vrl's data (plain arrays, in the tch-free `vrl-data` crate) to training: data sets
//! held as tch tensors and batches whose order depends only on the seed and the epoch (never on
//! the thread count), so an interrupted epoch can be resumed at any batch.
//!
//! ```no_run
//! use vrl_data::Mnist;
//! use vrl_loader::TensorDataset;
//!
//! let mnist = Mnist::load(std::path::Path::new("/path/to/mnist")).unwrap();
//! let train = TensorDataset::from_images(&mnist.train, Mnist::MEAN, Mnist::STD);
//! for (images, labels) in train.batches(128, 0, /*seed*/ 7, /*shuffle*/ true, 0) {
//!     assert_eq!(images.size()[1..], [1, 28, 28]);
//!     # let _ = labels;
//! }
//! ```

mod tensor_dataset;

pub use tensor_dataset::{Batches, TensorDataset};
