//! MNIST (and any data set in MNIST's four-file IDX layout, such as Fashion-MNIST).

use std::path::Path;

use crate::{DataError, read_idx};

/// Grayscale images with integer labels, as bytes.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Pixels, `[n, rows, cols]` row-major.
    pub images: Vec<u8>,
    /// Labels, `[n]`.
    pub labels: Vec<u8>,
    /// Number of images.
    pub n: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

impl ImageSet {
    /// Keeps the first `limit` images (all if `limit` is 0 or larger than the set).
    pub fn truncate(&mut self, limit: usize) {
        if limit > 0 && limit < self.n {
            self.n = limit;
            self.images.truncate(limit * self.rows * self.cols);
            self.labels.truncate(limit);
        }
    }
}

/// The MNIST train and test sets.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// 60,000 training images.
    pub train: ImageSet,
    /// 10,000 test images.
    pub test: ImageSet,
}

impl Mnist {
    /// Mean pixel value of the training set (pixels scaled to [0, 1]).
    pub const MEAN: f32 = 0.1307;
    /// Standard deviation of the pixels of the training set.
    pub const STD: f32 = 0.3081;

    /// Loads `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
    /// `t10k-labels-idx1-ubyte` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        Ok(Mnist { train: load_split(dir, "train")?, test: load_split(dir, "t10k")? })
    }
}

fn load_split(dir: &Path, prefix: &str) -> Result<ImageSet, DataError> {
    let images_path = dir.join(format!("{prefix}-images-idx3-ubyte"));
    let labels_path = dir.join(format!("{prefix}-labels-idx1-ubyte"));
    let images = read_idx(&images_path, 3)?;
    let labels = read_idx(&labels_path, 1)?;
    if images.dims[0] != labels.dims[0] {
        return Err(DataError::Format {
            path: labels_path,
            message: format!(
                "{} labels, but {} has {} images",
                labels.dims[0],
                images_path.display(),
                images.dims[0]
            ),
        });
    }
    if let Some((i, &l)) = labels.data.iter().enumerate().find(|&(_, &l)| l > 9) {
        return Err(DataError::Format {
            path: labels_path,
            message: format!("label {l} at index {i} (byte offset {}) is not a digit 0-9", 8 + i),
        });
    }
    Ok(ImageSet {
        n: images.dims[0],
        rows: images.dims[1],
        cols: images.dims[2],
        images: images.data,
        labels: labels.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        std::fs::write(path, v).unwrap();
    }

    #[test]
    fn loads_and_checks_counts() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_idx(&d.join("train-images-idx3-ubyte"), &[3, 2, 2], &[0; 12]);
        write_idx(&d.join("train-labels-idx1-ubyte"), &[3], &[1, 2, 3]);
        write_idx(&d.join("t10k-images-idx3-ubyte"), &[1, 2, 2], &[0; 4]);
        write_idx(&d.join("t10k-labels-idx1-ubyte"), &[2], &[1, 2]);
        let e = Mnist::load(d).unwrap_err().to_string();
        assert!(
            e.contains("t10k-labels-idx1-ubyte") && e.contains("2 labels") && e.contains("1 images"),
            "{e}"
        );
        write_idx(&d.join("t10k-labels-idx1-ubyte"), &[1], &[12]);
        let e = Mnist::load(d).unwrap_err().to_string();
        assert!(e.contains("label 12 at index 0"), "{e}");
        write_idx(&d.join("t10k-labels-idx1-ubyte"), &[1], &[7]);
        let m = Mnist::load(d).unwrap();
        assert_eq!((m.train.n, m.train.rows, m.test.labels[0]), (3, 2, 7));
        let e = Mnist::load(&d.join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing/train-images-idx3-ubyte"), "{e}");
    }
}
