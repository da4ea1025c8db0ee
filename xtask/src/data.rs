//! `cargo xtask data`: fetch the data sets of `datasets/*.toml` into the cache and verify them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use vrl_cache::{DatasetStatus, Manifest, Source};

use crate::cmd;

/// Makes every named data set (all built-in ones if `names` is empty) ready in the cache.
pub fn fetch(names: &[String]) -> Result<()> {
    let manifests = if names.is_empty() {
        vrl_cache::builtin_manifests()
    } else {
        names.iter().map(|n| vrl_cache::manifest(n)).collect::<Result<_, _>>()?
    };
    for manifest in &manifests {
        fetch_one(manifest).with_context(|| format!("cannot fetch data set `{}`", manifest.name))?;
    }
    Ok(())
}

fn fetch_one(manifest: &Manifest) -> Result<()> {
    let name = &manifest.name;
    let dir = vrl_cache::dataset_dir(name);
    match vrl_cache::status_quick(manifest, &dir) {
        DatasetStatus::Ready => {
            cmd::note(format!("{name}: ready in {}", dir.display()));
            return Ok(());
        }
        DatasetStatus::Unverified => {
            cmd::note(format!("{name}: verifying sha256 of the files in {}", dir.display()));
            match vrl_cache::verify(manifest, &dir) {
                DatasetStatus::Ready => {
                    vrl_cache::write_stamp(manifest, &dir)?;
                    cmd::note(format!("{name}: ready in {}", dir.display()));
                    return Ok(());
                }
                status => cmd::note(format!("{name}: {status}; downloading again")),
            }
        }
        status => cmd::note(format!("{name}: {status}; downloading")),
    }

    let downloads = std::path::absolute(vrl_cache::cache_dir().join("downloads"))?;
    let work = TempDir::create(&downloads.join(format!("{name}.{}", std::process::id())))?;
    let unpacked = work.0.join("unpacked");
    fs::create_dir_all(&unpacked).with_context(|| format!("cannot create {}", unpacked.display()))?;

    let archive = match &manifest.source {
        Source::Npm { package, version, .. } => {
            require("npm", "npm is needed to download data sets of kind \"npm\": install Node.js/npm")?;
            // npm prints the tarball's name on stdout even with --silent; keep stdout for xtask's own output.
            cmd::output(
                Command::new("npm")
                    .args(["pack", "--silent", "--pack-destination"])
                    .arg(&work.0)
                    .arg(format!("{package}@{version}"))
                    .current_dir(&work.0),
            )?;
            single_file(&work.0, ".tgz")?
        }
        Source::Debian { package, version, .. } => {
            require(
                "apt-get",
                "apt-get is needed to download data sets of kind \"debian\" (a Debian or Ubuntu system)",
            )?;
            let download = || {
                cmd::run(
                    Command::new("apt-get")
                        .arg("download")
                        .arg(format!("{package}={version}"))
                        .current_dir(&work.0),
                )
            };
            if download().is_err() {
                // A fresh machine often has no package lists yet; as root, fetch them once and retry.
                let root = cmd::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0");
                if !root {
                    bail!(
                        "cannot download {package}={version} with apt-get; if apt does not know the package, \
                         run `sudo apt-get update` and try again"
                    );
                }
                cmd::note("apt-get download failed; running `apt-get update` once and retrying");
                cmd::run(Command::new("apt-get").arg("update")).context("apt-get update failed")?;
                download().with_context(|| format!("cannot download {package}={version} with apt-get"))?;
            }
            single_file(&work.0, ".deb")?
        }
    };

    let expected = manifest.source.archive_sha256();
    let actual =
        vrl_cache::sha256_file(&archive).with_context(|| format!("cannot read {}", archive.display()))?;
    ensure!(
        actual == expected,
        "archive {} has sha256 {actual}, expected {expected} (from the manifest for {} {}@{})",
        archive.display(),
        manifest.source.kind(),
        manifest.source.package(),
        manifest.source.version()
    );

    match &manifest.source {
        Source::Npm { .. } => {
            cmd::run(Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(&unpacked))?
        }
        Source::Debian { .. } => {
            require("dpkg-deb", "dpkg-deb is needed to unpack data sets of kind \"debian\"")?;
            cmd::run(Command::new("dpkg-deb").arg("-x").arg(&archive).arg(&unpacked))?
        }
    }

    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stamp = dir.join(vrl_cache::STAMP_FILE);
    if stamp.exists() {
        fs::remove_file(&stamp).with_context(|| format!("cannot remove {}", stamp.display()))?;
    }
    for file in &manifest.files {
        let src = unpacked.join(&file.archive_path);
        let len = fs::metadata(&src)
            .with_context(|| {
                format!("the archive has no file `{}` (expected by the manifest)", file.archive_path)
            })?
            .len();
        ensure!(
            len == file.size,
            "`{}` in the archive is {len} bytes, expected {} (from the manifest)",
            file.archive_path,
            file.size
        );
        vrl_cache::copy_atomic(&src, &dir.join(&file.path))?;
    }

    cmd::note(format!("{name}: verifying sha256 of the files in {}", dir.display()));
    match vrl_cache::verify(manifest, &dir) {
        DatasetStatus::Ready => vrl_cache::write_stamp(manifest, &dir)?,
        status => bail!("{name} in {}: {status}", dir.display()),
    }
    drop(work);
    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    cmd::note(format!(
        "{name}: ready in {} ({} files, {:.1} MB)",
        dir.display(),
        manifest.files.len(),
        total as f64 / 1e6
    ));
    Ok(())
}

/// Fails with `hint` unless `program --version` runs.
fn require(program: &str, hint: &str) -> Result<()> {
    if cmd::succeeds(Command::new(program).arg("--version")) {
        Ok(())
    } else {
        bail!("`{program}` not found on PATH: {hint}")
    }
}

/// The one file in `dir` whose name ends with `suffix`.
fn single_file(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() && path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(suffix)) {
            found.push(path);
        }
    }
    match <[PathBuf; 1]>::try_from(found) {
        Ok([path]) => Ok(path),
        Err(found) => {
            bail!("expected one `*{suffix}` file in {} after the download, found {found:?}", dir.display())
        }
    }
}

/// A work directory, removed (with its contents) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create(path: &Path) -> Result<Self> {
        if path.exists() {
            fs::remove_dir_all(path).with_context(|| format!("cannot remove stale {}", path.display()))?;
        }
        fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path.to_path_buf()))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
