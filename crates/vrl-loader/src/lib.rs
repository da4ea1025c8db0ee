//! The bridge from vrl's data (plain arrays, in the tch-free `vrl-data` crate) to training.
//!
//! * [`Loader`]: batches assembled in parallel (rayon) on a producer thread with a bounded prefetch
//!   queue, augmented per example with generators seeded by (seed, epoch, index), handed over as tch
//!   tensors; the sequence of batches depends only on the seed, never on the thread count.
//! * [`TensorDataset`]: a small data set held whole as tensors (MNIST-sized), batched by `index_select`.
//!
//! Both can start an epoch at any batch, so an interrupted epoch resumes exactly.
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

mod loader;
mod tensor_dataset;

pub use loader::{Batch, EpochIter, FolderSource, ImageSource, Loader, LoaderConfig, make_batch};
pub use tensor_dataset::{Batches, TensorDataset};
