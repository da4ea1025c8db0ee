//! The study's data sets (`data.dataset`): long-tailed Fashion-MNIST (in memory, no augmentation),
//! CIFAR-10-LT / CIFAR-100-LT from the CIFAR binary batches (pad-4 random crop and flip), and image
//! folders with ImageNet-LT-style split lists (random resized crop and flip; evaluation resizes to
//! `8/7` of the input size and takes the centre crop). Long-tailed training sets are subsampled with
//! `vrl_data::longtail`; CIFAR and folder images are read and transformed a batch at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tch::Tensor;
use vrl_config::ConfigError;
use vrl_data::transforms::{Augment, RandomResizedCrop};
use vrl_data::{CifarKind, DataError, FashionMnist, ImageFolder, load_cifar};
use vrl_loader::{FolderSource, ImageSource, TensorDataset, make_batch};

use crate::DataConfig;

/// The data sets `data.dataset` accepts.
pub const DATASETS: [&str; 4] = ["fashion-mnist", "cifar10", "cifar100", "imagefolder"];

/// ImageNet's per-channel mean and standard deviation (image folders).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

fn invalid(key: &str, message: String) -> anyhow::Error {
    ConfigError::Invalid { experiment: "longtail".into(), key: key.into(), message }.into()
}

/// A byte-image source with its transform.
#[derive(Clone)]
struct Transformed {
    source: Arc<dyn ImageSource>,
    augment: Augment,
}

/// Where a split's pixels come from.
enum Pixels {
    /// Normalised float images `[N, C, H, W]` in memory, indexed directly.
    Memory(Tensor),
    /// Byte images read and transformed a batch at a time: the training transform (augmentation)
    /// and the evaluation transform (each may read its own source).
    Source { train: Box<Transformed>, eval: Box<Transformed> },
}

/// One split of a data set, whole: pixels and labels.
pub struct Full {
    pixels: Pixels,
    /// The label of every example.
    pub labels: Vec<usize>,
}

/// A data set: both splits, the number of classes and the model's input shape.
pub struct Dataset {
    /// The training split, whole.
    pub train: Full,
    /// The test split, whole.
    pub test: Full,
    /// Number of classes.
    pub num_classes: usize,
    /// Input `[C, H, W]` of the model.
    pub shape: [usize; 3],
}

/// A subset of a split (a long-tailed training set, or a test set), read by position.
pub struct Split {
    pixels: Pixels,
    /// Source index of each position (for `Pixels::Source`; for memory the tensor is the subset).
    indices: Vec<usize>,
    /// Labels `[N]` int64.
    pub labels: Tensor,
    /// Labels as integers.
    pub label_vec: Vec<usize>,
    /// Examples per class.
    pub counts: Vec<usize>,
}

/// A directory setting resolved: empty means the dataset cache (Fashion-MNIST only).
fn required_dir(cfg: &DataConfig) -> anyhow::Result<PathBuf> {
    if cfg.dir.is_empty() {
        return Err(invalid(
            "data.dir",
            format!("`{}` needs data.dir, the directory that holds its files", cfg.dataset),
        ));
    }
    Ok(PathBuf::from(&cfg.dir))
}

/// A split-list path: relative paths are taken from `data.dir`.
fn list_path(dir: &Path, key: &str, value: &str) -> anyhow::Result<PathBuf> {
    if value.is_empty() {
        return Err(invalid(
            key,
            "`imagefolder` needs a split list (`<relative/path.jpg> <label>` lines, as ImageNet_LT_train.txt)"
                .into(),
        ));
    }
    let p = PathBuf::from(value);
    Ok(if p.is_absolute() { p } else { dir.join(p) })
}

/// A source that reads another (of a larger square size) and keeps its centre `size × size`.
struct CenterCrop {
    inner: FolderSource,
    size: usize,
}

impl ImageSource for CenterCrop {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn shape(&self) -> [usize; 3] {
        [3, self.size, self.size]
    }
    fn label(&self, i: usize) -> i64 {
        self.inner.label(i)
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<(), DataError> {
        let [c, h, w] = self.inner.shape();
        let mut full = vec![0u8; c * h * w];
        self.inner.read(i, &mut full)?;
        let (top, left) = ((h - self.size) / 2, (w - self.size) / 2);
        for k in 0..c {
            for y in 0..self.size {
                let src = k * h * w + (top + y) * w + left;
                let dst = (k * self.size + y) * self.size;
                out[dst..dst + self.size].copy_from_slice(&full[src..src + self.size]);
            }
        }
        Ok(())
    }
}

impl Dataset {
    /// Loads `data.dataset` from `data.dir` (and the split lists for `imagefolder`).
    ///
    /// # Errors
    /// An unknown data set, a missing setting (named), or a file that is missing or malformed (named).
    pub fn load(cfg: &DataConfig) -> anyhow::Result<Self> {
        match cfg.dataset.as_str() {
            "fashion-mnist" => {
                let dir = match cfg.dir.as_str() {
                    "" => vrl_cache::ready_dataset_dir("fashion-mnist")?,
                    dir => PathBuf::from(dir),
                };
                let fm = FashionMnist::load(&dir)?;
                let memory = |set| {
                    let t = TensorDataset::from_images(set, FashionMnist::MEAN, FashionMnist::STD);
                    Pixels::Memory(t.images)
                };
                let labels = |set: &vrl_data::ImageSet| set.labels.iter().map(|&l| usize::from(l)).collect();
                Ok(Dataset {
                    train: Full { pixels: memory(&fm.train), labels: labels(&fm.train) },
                    test: Full { pixels: memory(&fm.test), labels: labels(&fm.test) },
                    num_classes: 10,
                    shape: [1, fm.train.rows, fm.train.cols],
                })
            }
            "cifar10" | "cifar100" => {
                let kind = if cfg.dataset == "cifar10" { CifarKind::Cifar10 } else { CifarKind::Cifar100 };
                let dir = required_dir(cfg)?;
                let (mean, std) = (kind.mean(), kind.std());
                let full = |train: bool| -> anyhow::Result<Full> {
                    let set = load_cifar(&dir, kind, train)?;
                    let labels = set.labels.iter().map(|&l| usize::from(l)).collect();
                    let source: Arc<dyn ImageSource> = Arc::new(set);
                    let eval =
                        Transformed { source: source.clone(), augment: Augment::normalize(&mean, &std) };
                    let train_t = Transformed { source, augment: Augment::cifar_train(mean, std) };
                    Ok(Full {
                        pixels: Pixels::Source { train: Box::new(train_t), eval: Box::new(eval) },
                        labels,
                    })
                };
                Ok(Dataset {
                    train: full(true)?,
                    test: full(false)?,
                    num_classes: kind.num_classes(),
                    shape: [3, 32, 32],
                })
            }
            "imagefolder" => {
                let dir = required_dir(cfg)?;
                let size = if cfg.image_size == 0 { 224 } else { cfg.image_size };
                // Decoded images are resized to 8/7 of the input (256 for 224) before cropping.
                let big = size * 8 / 7;
                let train_list = list_path(&dir, "data.train_list", &cfg.train_list)?;
                let test_list = list_path(&dir, "data.test_list", &cfg.test_list)?;
                let train_folder = ImageFolder::from_split_list(&dir, &train_list, None)?;
                let k = train_folder.num_classes();
                let test_folder = ImageFolder::from_split_list(&dir, &test_list, Some(k))?;
                let full = |folder: ImageFolder| -> Full {
                    let labels = folder.labels();
                    let train = Transformed {
                        source: Arc::new(FolderSource { folder: folder.clone(), size: [big, big] }),
                        augment: Augment {
                            resized_crop: Some(RandomResizedCrop {
                                size: [size, size],
                                scale: (0.08, 1.0),
                                ratio: (3.0 / 4.0, 4.0 / 3.0),
                            }),
                            flip_p: 0.5,
                            ..Augment::normalize(&IMAGENET_MEAN, &IMAGENET_STD)
                        },
                    };
                    let eval = Transformed {
                        source: Arc::new(CenterCrop {
                            inner: FolderSource { folder, size: [big, big] },
                            size,
                        }),
                        augment: Augment::normalize(&IMAGENET_MEAN, &IMAGENET_STD),
                    };
                    Full { pixels: Pixels::Source { train: Box::new(train), eval: Box::new(eval) }, labels }
                };
                Ok(Dataset {
                    train: full(train_folder),
                    test: full(test_folder),
                    num_classes: k,
                    shape: [3, size, size],
                })
            }
            other => Err(invalid(
                "data.dataset",
                format!("unknown data set `{other}`; expected one of {}", DATASETS.join(", ")),
            )),
        }
    }
}

impl Full {
    /// Examples per class.
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; num_classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
        counts
    }

    /// The subset at `indices` (ascending source indices).
    pub fn subset(&self, indices: &[usize], num_classes: usize) -> Split {
        let label_vec: Vec<usize> = indices.iter().map(|&i| self.labels[i]).collect();
        let mut counts = vec![0; num_classes];
        for &l in &label_vec {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
        let labels = Tensor::from_slice(&label_vec.iter().map(|&l| l as i64).collect::<Vec<_>>());
        let pixels = match &self.pixels {
            Pixels::Memory(t) => {
                let idx = Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>());
                Pixels::Memory(t.index_select(0, &idx))
            }
            Pixels::Source { train, eval } => Pixels::Source { train: train.clone(), eval: eval.clone() },
        };
        Split { pixels, indices: indices.to_vec(), labels, label_vec, counts }
    }
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.label_vec.len()
    }

    /// The images at positions `pos` as normalised floats `[B, C, H, W]` on the CPU: with the training
    /// transform (augmentation drawn from `(seed, epoch, example)`) when `augment` is `Some((seed,
    /// epoch))`, else with the evaluation transform. In-memory images are never augmented.
    ///
    /// # Errors
    /// A file that cannot be read or decoded (named).
    pub fn images(&self, pos: &[usize], augment: Option<(u64, u64)>) -> anyhow::Result<Tensor> {
        match &self.pixels {
            Pixels::Memory(t) => {
                let idx = Tensor::from_slice(&pos.iter().map(|&i| i as i64).collect::<Vec<_>>());
                Ok(t.index_select(0, &idx))
            }
            Pixels::Source { train, eval } => {
                let idx: Vec<usize> = pos.iter().map(|&p| self.indices[p]).collect();
                let (t, (seed, epoch)) = match augment {
                    Some(se) => (train, se),
                    None => (eval, (0, 0)),
                };
                let (x, _) = make_batch(t.source.as_ref(), &t.augment, &idx, seed, epoch)?;
                Ok(x)
            }
        }
    }

    /// The images at positions `pos`, evaluation transform, in one tensor (small sets: k-means samples,
    /// counterfactual sources).
    pub fn gather(&self, pos: &[usize]) -> anyhow::Result<Tensor> {
        self.images(pos, None).context("reading images")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrl_data::longtail::{longtail_counts, longtail_subset};

    /// `per_class` CIFAR-10 records of every class: label byte, then 3072 pixels of value `label · 20`.
    fn cifar10_bytes(per_class: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..per_class {
            for label in 0..10u8 {
                v.push(label);
                v.extend(std::iter::repeat_n(label * 20, 3072));
            }
        }
        v
    }

    /// A directory with the six CIFAR-10 binary files: `per_class` records per class in each training
    /// batch (so `5 · per_class` per class in all) and in the test batch.
    fn fake_cifar10(per_class: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in CifarKind::Cifar10.files(true).iter().chain(CifarKind::Cifar10.files(false)) {
            std::fs::write(dir.path().join(file), cifar10_bytes(per_class)).expect("write");
        }
        dir
    }

    fn config(dataset: &str, dir: &Path) -> DataConfig {
        DataConfig {
            dataset: dataset.into(),
            dir: dir.display().to_string(),
            train_list: String::new(),
            test_list: String::new(),
            image_size: 0,
            imbalance_factors: vec![10.0],
            n_max: 0,
            test_per_class: 0,
        }
    }

    fn error(cfg: &DataConfig) -> String {
        match Dataset::load(cfg) {
            Ok(_) => panic!("{} loaded", cfg.dataset),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn cifar10_loads_and_subsamples_to_the_long_tail() {
        let dir = fake_cifar10(4);
        let data = Dataset::load(&config("cifar10", dir.path())).expect("load");
        assert_eq!((data.num_classes, data.shape), (10, [3, 32, 32]));
        assert_eq!(data.train.class_counts(10), vec![20; 10]);
        assert_eq!(data.test.class_counts(10), vec![4; 10]);
        // IF 10 from n_max 20: floor(20 · 10^(−c/9)).
        let counts = longtail_counts(20, 10, 10.0).expect("counts");
        assert_eq!(counts, vec![20, 15, 11, 9, 7, 5, 4, 3, 2, 2]);
        let kept = longtail_subset(&data.train.labels, &counts, 0).expect("subset");
        let split = data.train.subset(&kept, 10);
        assert_eq!(split.counts, counts);
        assert_eq!(split.len(), counts.iter().sum::<usize>());
        // Evaluation transform: (x/255 − mean) / std per channel, of the stored bytes.
        let last = split.len() - 1;
        let x = split.images(&[last], None).expect("images");
        assert_eq!(x.size(), [1, 3, 32, 32]);
        let (mean, std) = (CifarKind::Cifar10.mean(), CifarKind::Cifar10.std());
        let value = (20 * split.label_vec[last]) as f32;
        for c in 0..3 {
            let want = (value / 255.0 - mean[c]) / std[c];
            let got = x.double_value(&[0, c as i64, 16, 16]);
            assert!((got - f64::from(want)).abs() < 1e-5, "channel {c}: {got} vs {want}");
        }
        // Training transform: pad 4 (zeros, i.e. −mean/std after normalisation) and crop; same seed and
        // epoch give the same batch, another epoch another crop somewhere in the batch.
        let pos: Vec<usize> = (0..split.len()).collect();
        let a = split.images(&pos, Some((0, 1))).expect("augmented");
        let b = split.images(&pos, Some((0, 1))).expect("augmented");
        let c = split.images(&pos, Some((0, 2))).expect("augmented");
        assert!(a.equal(&b));
        assert!(!a.equal(&c));
        assert_eq!(a.size(), [split.len() as i64, 3, 32, 32]);
    }

    #[test]
    fn cifar_errors_name_the_file_and_the_setting() {
        let dir = fake_cifar10(1);
        std::fs::remove_file(dir.path().join("data_batch_3.bin")).expect("rm");
        let e = error(&config("cifar10", dir.path()));
        assert!(e.contains("data_batch_3.bin") && e.contains("no such file"), "{e}");

        let dir = fake_cifar10(1);
        let truncated = &cifar10_bytes(1)[..3073 + 100];
        std::fs::write(dir.path().join("test_batch.bin"), truncated).expect("write");
        let e = error(&config("cifar10", dir.path()));
        assert!(e.contains("test_batch.bin"), "{e}");

        let e = error(&config("cifar100", dir.path()));
        assert!(e.contains("train.bin"), "{e}");
        let e = error(&config("cifar10", Path::new("")));
        assert!(e.contains("data.dir"), "{e}");
        let e = error(&config("svhn", dir.path()));
        assert!(e.contains("data.dataset") && e.contains("unknown data set `svhn`"), "{e}");
    }

    fn png(path: &Path, w: u32, h: u32, value: u8) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        image::RgbImage::from_pixel(w, h, image::Rgb([value, value / 2, 255 - value]))
            .save(path)
            .expect("png");
    }

    #[test]
    fn image_folder_with_split_lists_loads_and_transforms() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        let mut train = String::new();
        // Class c has 4 − c training images (4, 3, 2), one test image each.
        for c in 0..3usize {
            for k in 0..4 - c {
                png(&r.join(format!("train/n{c}/{k}.png")), 20 + 4 * k as u32, 12, 60 * c as u8);
                train.push_str(&format!("train/n{c}/{k}.png {c}\n"));
            }
            png(&r.join(format!("val/{c}.png")), 16, 16, 60 * c as u8);
        }
        std::fs::write(r.join("LT_train.txt"), &train).expect("write");
        std::fs::write(r.join("LT_test.txt"), "val/0.png 0\nval/1.png 1\n\nval/2.png 2\n").expect("write");
        let mut cfg = config("imagefolder", r);
        cfg.train_list = "LT_train.txt".into();
        cfg.test_list = r.join("LT_test.txt").display().to_string();
        cfg.image_size = 14;
        let data = Dataset::load(&cfg).expect("load");
        assert_eq!((data.num_classes, data.shape), (3, [3, 14, 14]));
        assert_eq!(data.train.class_counts(3), vec![4, 3, 2]);
        assert_eq!(data.test.labels, vec![0, 1, 2]);
        let train = data.train.subset(&(0..9).collect::<Vec<_>>(), 3);
        let test = data.test.subset(&[0, 1, 2], 3);
        let x = train.images(&[0, 5, 8], Some((0, 0))).expect("train batch");
        assert_eq!(x.size(), [3, 3, 14, 14]);
        // A uniform image stays uniform under resize, crop and flip: the class-1 test image's red
        // channel is (60/255 − 0.485) / 0.229 everywhere.
        let y = test.images(&[1], None).expect("test batch");
        assert_eq!(y.size(), [1, 3, 14, 14]);
        let want = (60.0 / 255.0 - 0.485) / 0.229;
        for (i, j) in [(0, 0), (7, 7), (13, 13)] {
            assert!((y.double_value(&[0, 0, i, j]) - want).abs() < 1e-4);
        }

        // A missing image is named when read; a bad list line, a missing list, a missing setting.
        std::fs::remove_file(r.join("val/2.png")).expect("rm");
        let e = format!("{:#}", test.images(&[2], None).expect_err("missing image"));
        assert!(e.contains("val/2.png"), "{e}");
        std::fs::write(r.join("bad.txt"), "train/n0/0.png zero\n").expect("write");
        cfg.test_list = "bad.txt".into();
        let e = error(&cfg);
        assert!(e.contains("bad.txt") && e.contains("line 1"), "{e}");
        cfg.test_list = "missing.txt".into();
        assert!(error(&cfg).contains("missing.txt"));
        cfg.test_list = String::new();
        assert!(error(&cfg).contains("data.test_list"));
    }
}
