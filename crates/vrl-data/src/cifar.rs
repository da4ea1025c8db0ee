//! CIFAR-10 and CIFAR-100 in their binary distributions (`cifar-10-binary.tar.gz`,
//! `cifar-100-binary.tar.gz`, unpacked).
//!
//! Each file is a plain sequence of fixed-size records, no header:
//!
//! * CIFAR-10 (`cifar-10-batches-bin/data_batch_{1..5}.bin`, `test_batch.bin`): one label byte
//!   (0-9), then 3072 pixel bytes; 3073 bytes a record, 10,000 records a file.
//! * CIFAR-100 (`cifar-100-binary/train.bin`, `test.bin`): a coarse label byte (0-19), a fine label
//!   byte (0-99), then 3072 pixel bytes; 3074 bytes a record.
//!
//! The pixels are the 1024 red values, then the 1024 green, then the 1024 blue, each plane a 32×32
//! image in row-major order: exactly PyTorch's `[C, H, W]` layout, so [`ColorImages`] keeps them
//! as they are.

use std::io;
use std::path::{Path, PathBuf};

use crate::DataError;

/// Side of a CIFAR image in pixels.
pub const CIFAR_SIZE: usize = 32;

/// Pixel bytes of one CIFAR image: `3 * 32 * 32`.
pub const CIFAR_PIXELS: usize = 3 * CIFAR_SIZE * CIFAR_SIZE;

/// The CIFAR-10 class names, by label.
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Which CIFAR data set a file belongs to; it fixes the record layout and the label ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CifarKind {
    /// CIFAR-10: 10 classes, one label byte a record.
    Cifar10,
    /// CIFAR-100: 100 fine classes grouped into 20 coarse superclasses, two label bytes a record
    /// (coarse first).
    Cifar100,
}

impl CifarKind {
    /// The data set's usual name, `"CIFAR-10"` or `"CIFAR-100"`.
    pub fn name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "CIFAR-10",
            CifarKind::Cifar100 => "CIFAR-100",
        }
    }

    /// Label bytes at the start of each record: 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine).
    pub fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }

    /// Bytes a record: the label bytes and [`CIFAR_PIXELS`], 3073 or 3074.
    pub fn record_len(self) -> usize {
        self.label_bytes() + CIFAR_PIXELS
    }

    /// Number of (fine) classes: 10 or 100.
    pub fn num_classes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100 => 100,
        }
    }

    /// Number of coarse classes: `None` for CIFAR-10, 20 for CIFAR-100.
    pub fn num_coarse_classes(self) -> Option<usize> {
        match self {
            CifarKind::Cifar10 => None,
            CifarKind::Cifar100 => Some(20),
        }
    }

    /// The directory the archive unpacks to: `cifar-10-batches-bin` or `cifar-100-binary`.
    pub fn dir_name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar-10-batches-bin",
            CifarKind::Cifar100 => "cifar-100-binary",
        }
    }

    /// The files of the training (`train`) or test split, in the order they are concatenated.
    pub fn files(self, train: bool) -> &'static [&'static str] {
        match (self, train) {
            (CifarKind::Cifar10, true) => &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
            (CifarKind::Cifar10, false) => &["test_batch.bin"],
            (CifarKind::Cifar100, true) => &["train.bin"],
            (CifarKind::Cifar100, false) => &["test.bin"],
        }
    }

    /// Number of images in the training (50,000) or test (10,000) split, for both kinds.
    pub fn split_len(self, train: bool) -> usize {
        if train { 50_000 } else { 10_000 }
    }

    /// Per-channel (R, G, B) mean of the training set's pixels scaled to [0, 1].
    pub fn mean(self) -> [f32; 3] {
        match self {
            CifarKind::Cifar10 => [0.4914, 0.4822, 0.4465],
            CifarKind::Cifar100 => [0.5071, 0.4865, 0.4409],
        }
    }

    /// Per-channel (R, G, B) standard deviation of the training set's pixels scaled to [0, 1],
    /// over all pixels (not the often-quoted mean of per-image deviations, `0.2023, 0.1994, 0.2010`).
    pub fn std(self) -> [f32; 3] {
        match self {
            CifarKind::Cifar10 => [0.2470, 0.2435, 0.2616],
            CifarKind::Cifar100 => [0.2673, 0.2564, 0.2762],
        }
    }
}

/// Fixed-size color images with integer labels, as bytes: CIFAR, or any other set of equally sized
/// images (see [`crate::folder`] for folders of images of any size).
#[derive(Debug, Clone, PartialEq)]
pub struct ColorImages {
    /// Pixels, `[n, channels, height, width]` (CHW planes, like PyTorch), row-major.
    pub images: Vec<u8>,
    /// Class labels, `[n]`, each below `num_classes`. `u16` so that the same type holds data sets
    /// with more than 256 classes (ImageNet's 1000).
    pub labels: Vec<u16>,
    /// Superclass labels, `[n]`, where the data set has them (CIFAR-100's 20 coarse classes).
    pub coarse_labels: Option<Vec<u16>>,
    /// Number of classes of `labels`.
    pub num_classes: usize,
    /// Number of images.
    pub n: usize,
    /// Channels per image (3: R, G, B).
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

impl ColorImages {
    /// Bytes of one image: `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i`, `[channels, height, width]`.
    ///
    /// # Panics
    ///
    /// If `i >= n`.
    pub fn image(&self, i: usize) -> &[u8] {
        let len = self.image_len();
        &self.images[i * len..(i + 1) * len]
    }

    /// Keeps the first `limit` images (all if `limit` is 0 or larger than the set).
    pub fn truncate(&mut self, limit: usize) {
        if limit > 0 && limit < self.n {
            self.n = limit;
            self.images.truncate(limit * self.image_len());
            self.labels.truncate(limit);
            if let Some(coarse) = &mut self.coarse_labels {
                coarse.truncate(limit);
            }
        }
    }

    /// Appends the images of `other`, which must have the same image shape and label kinds.
    fn extend(&mut self, other: ColorImages) {
        self.images.extend(other.images);
        self.labels.extend(other.labels);
        if let (Some(a), Some(b)) = (&mut self.coarse_labels, other.coarse_labels) {
            a.extend(b);
        }
        self.n += other.n;
    }
}

/// Decodes the bytes of one CIFAR binary file; the error says what was wrong and at which byte
/// offset.
///
/// An empty input is an error: no CIFAR file is empty, and an empty file is usually a failed
/// download.
pub fn decode_cifar(bytes: &[u8], kind: CifarKind) -> Result<ColorImages, String> {
    let record = kind.record_len();
    let name = kind.name();
    if bytes.is_empty() {
        return Err(format!("empty file: no {record}-byte {name} records"));
    }
    let n = bytes.len() / record;
    let partial = bytes.len() % record;
    if partial != 0 {
        return Err(format!(
            "file size {} bytes is not a whole number of {record}-byte {name} records: {n} whole \
             records, then a partial record of {partial} bytes at byte offset {}",
            bytes.len(),
            n * record
        ));
    }
    let mut images = Vec::with_capacity(n * CIFAR_PIXELS);
    let mut labels = Vec::with_capacity(n);
    let mut coarse = kind.num_coarse_classes().map(|_| Vec::with_capacity(n));
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let offset = i * record;
        let (label_bytes, pixels) = rec.split_at(kind.label_bytes());
        let (fine, fine_offset) = match kind {
            CifarKind::Cifar10 => (label_bytes[0], offset),
            CifarKind::Cifar100 => (label_bytes[1], offset + 1),
        };
        check_label(fine, kind.num_classes(), "label", i, fine_offset)?;
        if let (Some(coarse), Some(k)) = (&mut coarse, kind.num_coarse_classes()) {
            check_label(label_bytes[0], k, "coarse label", i, offset)?;
            coarse.push(u16::from(label_bytes[0]));
        }
        labels.push(u16::from(fine));
        images.extend_from_slice(pixels);
    }
    Ok(ColorImages {
        images,
        labels,
        coarse_labels: coarse,
        num_classes: kind.num_classes(),
        n,
        channels: 3,
        height: CIFAR_SIZE,
        width: CIFAR_SIZE,
    })
}

fn check_label(label: u8, classes: usize, what: &str, index: usize, offset: usize) -> Result<(), String> {
    if usize::from(label) < classes {
        Ok(())
    } else {
        Err(format!(
            "{what} {label} of record {index} (byte offset {offset}) is out of range 0-{}",
            classes - 1
        ))
    }
}

/// Loads the training (`train`) or test split of CIFAR-10 or CIFAR-100.
///
/// `dir` is either the directory that holds the `.bin` files or its parent, the directory that holds
/// `cifar-10-batches-bin/` or `cifar-100-binary/` ([`CifarKind::dir_name`]). The CIFAR-10 training
/// batches are concatenated in order, 1 to 5.
pub fn load_cifar(dir: &Path, kind: CifarKind, train: bool) -> Result<ColorImages, DataError> {
    let nested = dir.join(kind.dir_name());
    let base = if nested.is_dir() { nested } else { dir.to_path_buf() };
    let mut all: Option<ColorImages> = None;
    for file in kind.files(train) {
        let path = base.join(file);
        let bytes = std::fs::read(&path).map_err(|source| missing_hint(dir, kind, path.clone(), source))?;
        let part = decode_cifar(&bytes, kind).map_err(|message| DataError::Format { path, message })?;
        match &mut all {
            Some(all) => all.extend(part),
            None => all = Some(part),
        }
    }
    all.ok_or_else(|| DataError::Format {
        path: base,
        message: format!("no {} files listed for this split", kind.name()),
    })
}

/// An I/O error for `path`; a missing file also says where the file was looked for.
fn missing_hint(dir: &Path, kind: CifarKind, path: PathBuf, source: io::Error) -> DataError {
    let source = if source.kind() == io::ErrorKind::NotFound {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no such file (looked in {} and {}; expected the binary version of {}, unpacked)",
                dir.display(),
                dir.join(kind.dir_name()).display(),
                kind.name()
            ),
        )
    } else {
        source
    };
    DataError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One record per `(labels, fill)`: the label bytes, then 3072 pixels counting up from `fill`.
    fn encode(records: &[(&[u8], u8)]) -> Vec<u8> {
        let mut v = Vec::new();
        for (labels, fill) in records {
            v.extend_from_slice(labels);
            v.extend((0..CIFAR_PIXELS).map(|p| fill.wrapping_add(p as u8)));
        }
        v
    }

    #[test]
    fn decodes_cifar10_records() {
        let bytes = encode(&[(&[3], 0), (&[9], 100)]);
        let s = decode_cifar(&bytes, CifarKind::Cifar10).unwrap();
        assert_eq!((s.n, s.channels, s.height, s.width, s.num_classes), (2, 3, 32, 32, 10));
        assert_eq!(s.labels, vec![3, 9]);
        assert_eq!(s.coarse_labels, None);
        assert_eq!(s.images.len(), 2 * 3072);
        // Image 1, channel 0 (red), first pixel; then the first green pixel (plane offset 1024).
        assert_eq!(s.image(1)[0], 100);
        assert_eq!(s.image(1)[1024], 100u8.wrapping_add(1024u32 as u8));
        assert_eq!(&s.images[3072..], s.image(1));
    }

    #[test]
    fn decodes_cifar100_records() {
        let bytes = encode(&[(&[19, 99], 7), (&[0, 0], 8), (&[4, 42], 9)]);
        let mut s = decode_cifar(&bytes, CifarKind::Cifar100).unwrap();
        assert_eq!((s.n, s.num_classes), (3, 100));
        assert_eq!(s.labels, vec![99, 0, 42]);
        assert_eq!(s.coarse_labels.as_deref(), Some(&[19, 0, 4][..]));
        assert_eq!(s.image(2)[0], 9);
        s.truncate(2);
        assert_eq!((s.n, s.images.len(), s.labels.len()), (2, 2 * 3072, 2));
        assert_eq!(s.coarse_labels.as_deref(), Some(&[19, 0][..]));
    }

    #[test]
    fn errors_say_what_and_where() {
        let bytes = encode(&[(&[1], 0), (&[2], 0)]);
        let e = decode_cifar(&bytes[..3073 + 100], CifarKind::Cifar10).unwrap_err();
        assert!(
            e.contains("3173 bytes")
                && e.contains("3073-byte CIFAR-10 records")
                && e.contains("1 whole records")
                && e.contains("partial record of 100 bytes at byte offset 3073"),
            "{e}"
        );
        // A CIFAR-10 file read as CIFAR-100 does not divide into records.
        let e = decode_cifar(&bytes, CifarKind::Cifar100).unwrap_err();
        assert!(e.contains("3074-byte CIFAR-100 records"), "{e}");
        let bytes = encode(&[(&[1], 0), (&[10], 0)]);
        let e = decode_cifar(&bytes, CifarKind::Cifar10).unwrap_err();
        assert!(e.contains("label 10 of record 1 (byte offset 3073) is out of range 0-9"), "{e}");
        let bytes = encode(&[(&[1, 1], 0), (&[2, 100], 0)]);
        let e = decode_cifar(&bytes, CifarKind::Cifar100).unwrap_err();
        assert!(e.contains("label 100 of record 1 (byte offset 3075) is out of range 0-99"), "{e}");
        let bytes = encode(&[(&[20, 1], 0)]);
        let e = decode_cifar(&bytes, CifarKind::Cifar100).unwrap_err();
        assert!(e.contains("coarse label 20 of record 0 (byte offset 0) is out of range 0-19"), "{e}");
        let e = decode_cifar(&[], CifarKind::Cifar10).unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn loads_from_the_bin_dir_or_its_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&bin).unwrap();
        for (i, file) in CifarKind::Cifar10.files(true).iter().enumerate() {
            std::fs::write(bin.join(file), encode(&[(&[i as u8], i as u8), (&[9], 0)])).unwrap();
        }
        for dir in [tmp.path(), bin.as_path()] {
            let s = load_cifar(dir, CifarKind::Cifar10, true).unwrap();
            assert_eq!(s.n, 10);
            assert_eq!(s.labels, vec![0, 9, 1, 9, 2, 9, 3, 9, 4, 9]);
            assert_eq!(s.image(4)[0], 2);
            assert_eq!(s.images.len(), 10 * 3072);
        }
        let e = load_cifar(tmp.path(), CifarKind::Cifar10, false).unwrap_err().to_string();
        assert!(e.contains("cifar-10-batches-bin/test_batch.bin") && e.contains("no such file"), "{e}");
        let e = load_cifar(tmp.path(), CifarKind::Cifar100, true).unwrap_err().to_string();
        assert!(e.contains("train.bin") && e.contains("cifar-100-binary"), "{e}");

        std::fs::write(bin.join("data_batch_3.bin"), [0u8; 10]).unwrap();
        let e = load_cifar(tmp.path(), CifarKind::Cifar10, true).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_3.bin") && e.contains("partial record of 10 bytes at byte offset 0"),
            "{e}"
        );
    }

    #[test]
    fn cifar100_from_its_own_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("cifar-100-binary");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("test.bin"), encode(&[(&[3, 30], 1)])).unwrap();
        let s = load_cifar(tmp.path(), CifarKind::Cifar100, false).unwrap();
        assert_eq!((s.n, s.labels[0], s.coarse_labels.as_deref()), (1, 30, Some(&[3][..])));
    }

    fn kinds() -> impl Strategy<Value = CifarKind> {
        prop_oneof![Just(CifarKind::Cifar10), Just(CifarKind::Cifar100)]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..8000), kind in kinds()) {
            match decode_cifar(&bytes, kind) {
                Ok(s) => {
                    prop_assert_eq!(s.n * kind.record_len(), bytes.len());
                    prop_assert_eq!(s.images.len(), s.n * CIFAR_PIXELS);
                    prop_assert!(s.labels.iter().all(|&l| usize::from(l) < kind.num_classes()));
                }
                Err(e) => prop_assert!(e.contains("CIFAR") || e.contains("out of range"), "{}", e),
            }
        }

        #[test]
        fn whole_records_with_arbitrary_labels(
            labels in proptest::collection::vec((any::<u8>(), any::<u8>()), 1..4),
            kind in kinds(),
        ) {
            let mut bytes = Vec::new();
            for &(a, b) in &labels {
                bytes.push(a);
                if kind == CifarKind::Cifar100 {
                    bytes.push(b);
                }
                bytes.extend(std::iter::repeat_n(0u8, CIFAR_PIXELS));
            }
            let valid = labels.iter().all(|&(a, b)| match kind {
                CifarKind::Cifar10 => a < 10,
                CifarKind::Cifar100 => a < 20 && b < 100,
            });
            let result = decode_cifar(&bytes, kind);
            prop_assert_eq!(result.is_ok(), valid, "{:?}", result.err());
        }
    }
}
