//! MNIST and Fashion-MNIST: four IDX files each, uncompressed or gzip-compressed (`*.gz`, as
//! Debian's `dataset-fashion-mnist` ships them).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{DataError, IdxArray, decode_idx};

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
    /// `t10k-labels-idx1-ubyte` from `dir`; each may instead be gzip-compressed, with `.gz` appended
    /// to its name.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        Ok(Mnist { train: load_split(dir, "train")?, test: load_split(dir, "t10k")? })
    }
}

/// The Fashion-MNIST train and test sets (Zalando's drop-in replacement for MNIST: 28×28 grayscale
/// images of 10 kinds of clothing, in the same four-file IDX layout).
#[derive(Debug, Clone)]
pub struct FashionMnist {
    /// 60,000 training images.
    pub train: ImageSet,
    /// 10,000 test images.
    pub test: ImageSet,
}

impl FashionMnist {
    /// Mean pixel value of the training set (pixels scaled to [0, 1]).
    pub const MEAN: f32 = 0.2860;
    /// Standard deviation of the pixels of the training set.
    pub const STD: f32 = 0.3530;
    /// The class names, by label.
    pub const CLASSES: [&str; 10] = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ];

    /// Loads the four files from `dir`, with the names of [`Mnist::load`], gzip-compressed (`*.gz`,
    /// as `cargo xtask data fashion-mnist` stores them) or not.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        Ok(FashionMnist { train: load_split(dir, "train")?, test: load_split(dir, "t10k")? })
    }
}

/// `dir/name` if it exists, else `dir/name.gz` if that exists, else `dir/name` (so that the error
/// names the uncompressed file).
fn idx_path(dir: &Path, name: &str) -> PathBuf {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if !plain.exists() && gz.exists() { gz } else { plain }
}

fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Reads an IDX file of unsigned bytes, decompressing it first if its name ends in `.gz`.
fn read_idx_maybe_gz(path: &Path, ndim: usize) -> Result<IdxArray, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let bad = |message: String| DataError::Format { path: path.to_path_buf(), message };
    if is_gzip(path) {
        let raw = gunzip_idx(&bytes, ndim).map_err(bad)?;
        decode_idx(&raw, ndim).map_err(|m| bad(format!("{m} (offsets in the decompressed data)")))
    } else {
        decode_idx(&bytes, ndim).map_err(bad)
    }
}

/// The most an IDX file of these readers may hold once decompressed: 8 GiB, 170 times MNIST's
/// training images.
pub const MAX_IDX_BYTES: u64 = 8 << 30;

/// Decompresses gzip data holding an IDX file of `ndim` dimensions, reading no more than its header
/// says it holds (plus one byte, so that [`decode_idx`] sees trailing data) and refusing a header that
/// claims more than [`MAX_IDX_BYTES`]: a small file cannot make the reader allocate without bound.
fn gunzip_idx(gz: &[u8], ndim: usize) -> Result<Vec<u8>, String> {
    let gzip_err = |e: std::io::Error| format!("cannot decompress gzip data: {e}");
    let mut decoder = flate2::read::GzDecoder::new(gz);
    let mut raw = Vec::new();
    let header = 4 + 4 * ndim as u64;
    (&mut decoder).take(header).read_to_end(&mut raw).map_err(gzip_err)?;
    let claimed = if raw.len() as u64 == header {
        raw[4..]
            .chunks(4)
            .fold(1u64, |n, d| n.saturating_mul(u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))))
    } else {
        0
    };
    if claimed > MAX_IDX_BYTES {
        return Err(format!(
            "its IDX header claims {claimed} bytes of data, more than the {MAX_IDX_BYTES} bytes these readers accept"
        ));
    }
    decoder.take(claimed + 1).read_to_end(&mut raw).map_err(gzip_err)?;
    Ok(raw)
}

fn load_split(dir: &Path, prefix: &str) -> Result<ImageSet, DataError> {
    let images_path = idx_path(dir, &format!("{prefix}-images-idx3-ubyte"));
    let labels_path = idx_path(dir, &format!("{prefix}-labels-idx1-ubyte"));
    let images = read_idx_maybe_gz(&images_path, 3)?;
    let labels = read_idx_maybe_gz(&labels_path, 1)?;
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
        let of = if is_gzip(&labels_path) { " of the decompressed data" } else { "" };
        return Err(DataError::Format {
            path: labels_path,
            message: format!("label {l} at index {i} (byte offset {}{of}) is out of range 0-9", 8 + i),
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
        std::fs::write(path, crate::encode_idx(dims, data)).unwrap();
    }

    fn gzip_bytes(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_gzip_bomb_is_refused_without_decompressing_it() {
        let huge = crate::encode_idx(&[u32::MAX, u32::MAX, u32::MAX], &[0; 64]);
        let e = gunzip_idx(&gzip_bytes(&huge), 3).unwrap_err();
        assert!(e.contains("claims 18446744073709551615 bytes"), "{e}");
        // 64 MiB of zeros behind a header of 12 bytes: only 13 are decompressed, then decode_idx
        // reports the trailing data.
        let mut padded = crate::encode_idx(&[3, 2, 2], &[0; 12]);
        padded.resize(padded.len() + (64 << 20), 0);
        let raw = gunzip_idx(&gzip_bytes(&padded), 3).unwrap();
        assert_eq!(raw.len(), 16 + 12 + 1);
        assert!(decode_idx(&raw, 3).unwrap_err().contains("trailing"));
        let ok = crate::encode_idx(&[3, 2, 2], &[7; 12]);
        assert_eq!(gunzip_idx(&gzip_bytes(&ok), 3).unwrap(), ok);
        assert!(gunzip_idx(b"not gzip", 3).unwrap_err().contains("gzip"));
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

    fn gzip(path: &Path) {
        use std::io::Write;
        let raw = std::fs::read(path).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&raw).unwrap();
        std::fs::write(format!("{}.gz", path.display()), enc.finish().unwrap()).unwrap();
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn loads_gzip_compressed_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_idx(&d.join("train-images-idx3-ubyte"), &[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
        write_idx(&d.join("train-labels-idx1-ubyte"), &[2], &[9, 0]);
        write_idx(&d.join("t10k-images-idx3-ubyte"), &[1, 2, 2], &[0; 4]);
        write_idx(&d.join("t10k-labels-idx1-ubyte"), &[1], &[3]);
        for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"] {
            gzip(&d.join(name));
        }
        // Three compressed files and one plain one.
        let f = FashionMnist::load(d).unwrap();
        assert_eq!((f.train.n, f.train.images[7], f.train.labels.as_slice()), (2, 8, &[9, 0][..]));
        assert_eq!(f.test.labels, vec![3]);
        assert_eq!(Mnist::load(d).unwrap().train.images, f.train.images);

        write_idx(&d.join("train-labels-idx1-ubyte"), &[2], &[10, 0]);
        gzip(&d.join("train-labels-idx1-ubyte"));
        let e = FashionMnist::load(d).unwrap_err().to_string();
        assert!(
            e.contains("train-labels-idx1-ubyte.gz")
                && e.contains("label 10 at index 0 (byte offset 8 of the decompressed data)"),
            "{e}"
        );
        std::fs::write(d.join("train-labels-idx1-ubyte.gz"), b"\x1f\x8b not really gzip").unwrap();
        let e = FashionMnist::load(d).unwrap_err().to_string();
        assert!(e.contains("train-labels-idx1-ubyte.gz") && e.contains("cannot decompress gzip"), "{e}");
        let e = FashionMnist::load(&d.join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing/train-images-idx3-ubyte"), "{e}");
    }
}
