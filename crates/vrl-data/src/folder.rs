//! Folders of image files: torchvision's `ImageFolder` layout (`root/<class>/<image>`) and split
//! lists in the ImageNet-LT style (`ImageNet_LT_train.txt`: one `relative/path.jpg <label>` a line).
//!
//! [`ImageFolder`] only lists the samples; [`ImageFolder::load_rgb`] decodes one image when it is
//! needed (PNG or JPEG, with the `image` crate), so listing ImageNet's 1.3 million files costs a
//! directory walk, not a decode.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use crate::DataError;

/// File extensions [`ImageFolder::from_dir`] picks up, compared without regard to case (ImageNet's
/// files end in `.JPEG`).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// A decoded image as 8-bit RGB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Pixels, `[height, width, 3]` (HWC, R G B), row-major.
    pub pixels: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// Decodes PNG or JPEG bytes (the format is guessed from the content, not from a file name) into
/// RGB; grayscale and RGBA images are converted (alpha is dropped), 16-bit samples are scaled to 8
/// bits. The error says what was wrong.
///
/// The `image` crate's default limits apply: decoding stops with an error rather than allocate
/// more than 512 MiB for one image.
pub fn decode_image_bytes(bytes: &[u8]) -> Result<RgbImage, String> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read image header: {e}"))?;
    if reader.format().is_none() {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(format!(
            "not a PNG or JPEG image (first bytes: {})",
            if head.is_empty() { "none, the file is empty".to_string() } else { head.join(" ") }
        ));
    }
    let decoded = reader.decode().map_err(|e| format!("cannot decode image: {e}"))?;
    let rgb = decoded.into_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    Ok(RgbImage { pixels: rgb.into_raw(), width, height })
}

/// Reads and decodes one image file with [`decode_image_bytes`]; errors name the file.
pub fn load_image(path: &Path) -> Result<RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    decode_image_bytes(&bytes).map_err(|message| DataError::Format { path: path.to_path_buf(), message })
}

/// The samples of a folder of images, listed but not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFolder {
    /// The directory the sample paths are relative to.
    pub root: PathBuf,
    /// Class names, by label.
    pub classes: Vec<String>,
    /// `(path relative to root, label)` of every sample, in a fixed order (see the constructors).
    pub samples: Vec<(PathBuf, usize)>,
}

impl ImageFolder {
    /// Lists `root/<class>/**/<image>` like torchvision's `ImageFolder`: every subdirectory of
    /// `root` is a class, classes sorted by name get labels 0, 1, ...; the files under each class
    /// directory (at any depth) whose extension is one of [`IMAGE_EXTENSIONS`] are its samples, in
    /// torchvision's order (by directory path, then file name, comparing bytes). Files with other
    /// extensions and files directly in `root` are ignored; class directories may be symbolic
    /// links, directories below them are not followed through links.
    ///
    /// Errors name `root`: when it has no class directories, or when a class has no images.
    pub fn from_dir(root: &Path) -> Result<Self, DataError> {
        let mut classes = Vec::new();
        for entry in read_dir(root)? {
            let path = entry.path();
            if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                let name = entry.file_name().into_string().map_err(|name| DataError::Format {
                    path: root.to_path_buf(),
                    message: format!("class directory name {name:?} is not valid UTF-8"),
                })?;
                classes.push(name);
            }
        }
        classes.sort();
        if classes.is_empty() {
            return Err(DataError::Format {
                path: root.to_path_buf(),
                message: "no class directories (expected root/<class>/<image>)".to_string(),
            });
        }
        let mut samples = Vec::new();
        let mut empty = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let mut files = Vec::new();
            collect_images(root, Path::new(class), &mut files)?;
            if files.is_empty() {
                empty.push(class.as_str());
            }
            files.sort_by(|(da, fa), (db, fb)| {
                (da.as_os_str().as_encoded_bytes(), fa.as_os_str().as_encoded_bytes())
                    .cmp(&(db.as_os_str().as_encoded_bytes(), fb.as_os_str().as_encoded_bytes()))
            });
            samples.extend(files.into_iter().map(|(dir, name)| (dir.join(name), label)));
        }
        if !empty.is_empty() {
            return Err(DataError::Format {
                path: root.to_path_buf(),
                message: format!(
                    "{} of {} class directories have no images (extensions {}): {}",
                    empty.len(),
                    classes.len(),
                    IMAGE_EXTENSIONS.join(", "),
                    empty.join(", ")
                ),
            });
        }
        Ok(ImageFolder { root: root.to_path_buf(), classes, samples })
    }

    /// Lists the samples of a split list file in the ImageNet-LT style: one `<path> <label>` a line,
    /// the path relative to `root` (it may contain spaces: the label is the last field), the label a
    /// decimal class index. Blank lines are skipped. Samples keep the order of the file.
    ///
    /// With `num_classes`, labels must be below it; without, there are `max label + 1` classes. The
    /// class names are the samples' parent directory names (ImageNet's WordNet ids) when each label's
    /// samples share one parent directory name and no two labels share one; otherwise the labels
    /// written out in decimal.
    ///
    /// The image files are not checked here; [`ImageFolder::load_rgb`] names any that is missing.
    pub fn from_split_list(
        root: &Path,
        list_file: &Path,
        num_classes: Option<usize>,
    ) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(list_file)
            .map_err(|source| DataError::Io { path: list_file.to_path_buf(), source })?;
        let format_err = |message: String| DataError::Format { path: list_file.to_path_buf(), message };
        let mut samples = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            let Some((path, label)) = trimmed.rsplit_once(char::is_whitespace) else {
                return Err(format_err(format!(
                    "line {line_no}: expected `<relative path> <label>`, found {trimmed:?}"
                )));
            };
            let path = path.trim_end();
            let label: usize = label.parse().map_err(|_| {
                format_err(format!("line {line_no}: label {label:?} is not a non-negative integer"))
            })?;
            if let Some(k) = num_classes
                && label >= k
            {
                return Err(format_err(format!(
                    "line {line_no}: label {label} is not below the {k} classes"
                )));
            }
            let path = PathBuf::from(path);
            if path.has_root() {
                return Err(format_err(format!(
                    "line {line_no}: path {} must be relative to the root {}",
                    path.display(),
                    root.display()
                )));
            }
            samples.push((path, label));
        }
        let Some(max_label) = samples.iter().map(|&(_, l)| l).max() else {
            return Err(format_err("no samples (every line is blank)".to_string()));
        };
        let k = num_classes.unwrap_or(max_label + 1);
        Ok(ImageFolder { root: root.to_path_buf(), classes: class_names(&samples, k), samples })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples (never, for a folder built by the constructors).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The full path of sample `i`: `root` joined with its relative path.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn path(&self, i: usize) -> PathBuf {
        self.root.join(&self.samples[i].0)
    }

    /// The label of sample `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn label(&self, i: usize) -> usize {
        self.samples[i].1
    }

    /// The labels of all samples, in order.
    pub fn labels(&self) -> Vec<usize> {
        self.samples.iter().map(|&(_, l)| l).collect()
    }

    /// Number of samples of each class, by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &(_, label) in &self.samples {
            if let Some(c) = counts.get_mut(label) {
                *c += 1;
            }
        }
        counts
    }

    /// Reads and decodes sample `i` as RGB ([`decode_image_bytes`]); errors name the file.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn load_rgb(&self, i: usize) -> Result<RgbImage, DataError> {
        load_image(&self.path(i))
    }
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, DataError> {
    let io = |source| DataError::Io { path: dir.to_path_buf(), source };
    std::fs::read_dir(dir).map_err(io)?.collect::<Result<Vec<_>, _>>().map_err(io)
}

/// Appends `(directory relative to root, file name)` of every image under `root/rel`.
fn collect_images(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<(), DataError> {
    for entry in read_dir(&root.join(rel))? {
        let name = PathBuf::from(entry.file_name());
        let file_type = entry.file_type().map_err(|source| DataError::Io { path: entry.path(), source })?;
        if file_type.is_dir() {
            collect_images(root, &rel.join(&name), out)?;
        } else if has_image_extension(&name) && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            out.push((rel.to_path_buf(), name));
        }
    }
    Ok(())
}

fn has_image_extension(name: &Path) -> bool {
    name.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Class names for labels `0..k`: parent directory names if they identify the labels one to one,
/// else the labels in decimal.
fn class_names(samples: &[(PathBuf, usize)], k: usize) -> Vec<String> {
    let numbers = || (0..k).map(|c| c.to_string()).collect();
    let mut names: Vec<Option<String>> = vec![None; k];
    for (path, label) in samples {
        let Some(parent) = path.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()) else {
            return numbers();
        };
        match &names[*label] {
            None => names[*label] = Some(parent.to_string()),
            Some(name) if name == parent => {}
            Some(_) => return numbers(),
        }
    }
    let Some(names) = names.into_iter().collect::<Option<Vec<String>>>() else {
        return numbers();
    };
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() == names.len() { names } else { numbers() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn png_bytes(width: u32, height: u32) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 200]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg_bytes(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(width, height, image::Rgb([200, 100, 50]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    /// `root/{cat,dog,emu}` with PNG (RGB, gray, RGBA) and JPEG files, a text file and a nested dir.
    fn make_tree(root: &Path) {
        for class in ["dog", "cat", "emu"] {
            std::fs::create_dir(root.join(class)).unwrap();
        }
        std::fs::write(root.join("cat/b.png"), png_bytes(3, 2)).unwrap();
        image::GrayImage::from_pixel(4, 4, image::Luma([77])).save(root.join("cat/a.PNG")).unwrap();
        std::fs::write(root.join("cat/notes.txt"), "not an image").unwrap();
        std::fs::write(root.join("dog/x.jpg"), jpeg_bytes(16, 8)).unwrap();
        image::RgbaImage::from_pixel(2, 2, image::Rgba([1, 2, 3, 0])).save(root.join("dog/y.png")).unwrap();
        std::fs::create_dir(root.join("dog/deep")).unwrap();
        std::fs::write(root.join("dog/deep/z.jpeg"), jpeg_bytes(8, 8)).unwrap();
        std::fs::write(root.join("emu/e.png"), png_bytes(1, 1)).unwrap();
        std::fs::write(root.join("stray.png"), png_bytes(1, 1)).unwrap();
    }

    #[test]
    fn lists_classes_and_samples_like_torchvision() {
        let tmp = tempfile::tempdir().unwrap();
        make_tree(tmp.path());
        let f = ImageFolder::from_dir(tmp.path()).unwrap();
        assert_eq!(f.classes, ["cat", "dog", "emu"]);
        let listed: Vec<_> = f.samples.iter().map(|(p, l)| (p.to_str().unwrap(), *l)).collect();
        assert_eq!(
            listed,
            [
                ("cat/a.PNG", 0),
                ("cat/b.png", 0),
                ("dog/x.jpg", 1),
                ("dog/y.png", 1),
                ("dog/deep/z.jpeg", 1),
                ("emu/e.png", 2)
            ]
        );
        assert_eq!(f.class_counts(), [2, 3, 1]);
        assert_eq!((f.len(), f.num_classes(), f.label(4)), (6, 3, 1));
        assert_eq!(f.labels(), [0, 0, 1, 1, 1, 2]);
    }

    #[test]
    fn decodes_to_rgb() {
        let tmp = tempfile::tempdir().unwrap();
        make_tree(tmp.path());
        let f = ImageFolder::from_dir(tmp.path()).unwrap();
        let gray = f.load_rgb(0).unwrap();
        assert_eq!((gray.width, gray.height, gray.pixels.len()), (4, 4, 48));
        assert!(gray.pixels.iter().all(|&p| p == 77));
        let rgb = f.load_rgb(1).unwrap();
        assert_eq!((rgb.width, rgb.height), (3, 2));
        // Pixel (x=2, y=1), HWC: row 1, column 2.
        assert_eq!(&rgb.pixels[(3 + 2) * 3..(3 + 2) * 3 + 3], [20, 10, 200]);
        let jpeg = f.load_rgb(2).unwrap();
        assert_eq!((jpeg.width, jpeg.height, jpeg.pixels.len()), (16, 8, 16 * 8 * 3));
        let mean_r = jpeg.pixels.iter().step_by(3).map(|&p| f64::from(p)).sum::<f64>() / 128.0;
        assert!((mean_r - 200.0).abs() < 4.0, "{mean_r}");
        let rgba = f.load_rgb(3).unwrap();
        assert_eq!(rgba.pixels, [1, 2, 3].repeat(4));
    }

    #[test]
    fn errors_name_the_file_or_root() {
        let tmp = tempfile::tempdir().unwrap();
        make_tree(tmp.path());
        std::fs::write(tmp.path().join("emu/e.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
        let f = ImageFolder::from_dir(tmp.path()).unwrap();
        let e = f.load_rgb(5).unwrap_err().to_string();
        assert!(e.contains("emu/e.png") && e.contains("cannot decode"), "{e}");
        std::fs::write(tmp.path().join("emu/e.png"), b"").unwrap();
        let e = f.load_rgb(5).unwrap_err().to_string();
        assert!(e.contains("emu/e.png") && e.contains("empty"), "{e}");
        std::fs::remove_file(tmp.path().join("emu/e.png")).unwrap();
        let e = f.load_rgb(5).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("emu/e.png"), "{e}");

        let e = ImageFolder::from_dir(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains(&tmp.path().display().to_string()) && e.contains("1 of 3") && e.contains("emu"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        let e = ImageFolder::from_dir(empty.path()).unwrap_err().to_string();
        assert!(e.contains(&empty.path().display().to_string()) && e.contains("no class directories"), "{e}");
        let e = ImageFolder::from_dir(&empty.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("nope"), "{e}");
    }

    #[test]
    fn split_lists() {
        let tmp = tempfile::tempdir().unwrap();
        make_tree(tmp.path());
        let list = tmp.path().join("ImageNet_LT_train.txt");
        std::fs::write(&list, "dog/x.jpg 1\ncat/b.png 0\n\n  dog/deep/z.jpeg\t1\r\n").unwrap();
        let f = ImageFolder::from_split_list(tmp.path(), &list, None).unwrap();
        assert_eq!(f.samples[2], (PathBuf::from("dog/deep/z.jpeg"), 1));
        // `dog/x.jpg` and `dog/deep/z.jpeg` have different parents, so the names are numbers.
        assert_eq!(f.classes, ["0", "1"]);
        assert_eq!(f.load_rgb(1).unwrap().width, 3);

        std::fs::write(&list, "train/n01/a b.JPEG 0\ntrain/n02/c.JPEG 2\ntrain/n01/d.JPEG 0\n").unwrap();
        let f = ImageFolder::from_split_list(tmp.path(), &list, Some(4)).unwrap();
        assert_eq!(f.samples[0].0, PathBuf::from("train/n01/a b.JPEG"));
        assert_eq!(f.classes, ["0", "1", "2", "3"]);
        assert_eq!(f.class_counts(), [2, 0, 1, 0]);
        let f = ImageFolder::from_split_list(tmp.path(), &list, None).unwrap();
        assert_eq!(f.classes, ["0", "1", "2"]);
        std::fs::write(&list, "train/n01/a.JPEG 0\ntrain/n02/c.JPEG 1\n").unwrap();
        let f = ImageFolder::from_split_list(tmp.path(), &list, None).unwrap();
        assert_eq!(f.classes, ["n01", "n02"]);
        let e = f.load_rgb(0).unwrap_err().to_string();
        assert!(e.contains("train/n01/a.JPEG"), "{e}");

        for (text, want) in [
            ("a.png 0\nb.png\n", "line 2: expected"),
            ("a.png 0\n\nb.png x\n", "line 3: label \"x\""),
            ("a.png -1\n", "line 1: label \"-1\""),
            ("a.png 0\nb.png 5\n", "line 2: label 5 is not below the 5 classes"),
            ("/abs/a.png 0\n", "line 1: path /abs/a.png must be relative"),
            ("\n  \n", "no samples"),
        ] {
            std::fs::write(&list, text).unwrap();
            let e = ImageFolder::from_split_list(tmp.path(), &list, Some(5)).unwrap_err().to_string();
            assert!(e.contains("ImageNet_LT_train.txt") && e.contains(want), "{text:?}: {e}");
        }
        let e = ImageFolder::from_split_list(tmp.path(), &tmp.path().join("missing.txt"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.txt"), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            prop_assert!(decode_image_bytes(&bytes).is_err());
        }

        #[test]
        fn arbitrary_bytes_after_a_magic_number_never_panic(
            jpeg in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut bytes = if jpeg { vec![0xff, 0xd8, 0xff] } else { b"\x89PNG\r\n\x1a\n".to_vec() };
            bytes.extend(tail);
            prop_assert!(decode_image_bytes(&bytes).is_err());
        }

        #[test]
        fn corrupted_images_never_panic(
            jpeg in any::<bool>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = if jpeg { jpeg_bytes(16, 16) } else { png_bytes(16, 16) };
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len()) + 1);
            // Any outcome but a panic is fine: some edits leave a decodable image.
            if let Ok(img) = decode_image_bytes(&bytes) {
                prop_assert_eq!(img.pixels.len(), img.width * img.height * 3);
            }
        }
    }
}
