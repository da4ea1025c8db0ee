//! LibTorch from PyPI's torch wheel, in a venv under the cache, linked at `<root>/target/libtorch`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::cmd;

/// The torch version tch 0.24 is built against.
pub const TORCH_VERSION: &str = "2.11.0";

/// The marker file in the venv: first line the torch version, then `version=` (in full), `abi=` and
/// `torch_dir=` lines, so that later runs need not import torch (which takes seconds).
const MARKER: &str = ".vrl-torch-ready";

/// What every cargo and vrl child process needs to find LibTorch and the cache.
#[derive(Debug, Clone)]
pub struct TorchEnv {
    /// The cache root (`VRL_CACHE`), absolute.
    pub cache: PathBuf,
    /// The venv's python (`VRL_PYTHON`).
    pub python: PathBuf,
    /// `<root>/target/libtorch` (`LIBTORCH`), a link to the wheel's `torch` directory.
    pub libtorch: PathBuf,
    /// The directory the link points at.
    pub torch_dir: PathBuf,
    /// `0` or `1` (`LIBTORCH_CXX11_ABI`).
    pub cxx11_abi: String,
    /// `torch.__version__`.
    pub version: String,
}

impl TorchEnv {
    /// The environment variables to set on child processes.
    ///
    /// `LIBTORCH_CXX11_ABI` is set only when it differs from torch-sys's default (`1`): torch-sys
    /// rebuilds whenever the variable changes, and plain `cargo` (with `.cargo/config.toml`'s
    /// `LIBTORCH` only) must share the build with xtask.
    pub fn vars(&self) -> Vec<(&'static str, PathBuf)> {
        let mut vars = vec![("LIBTORCH", self.libtorch.clone())];
        if self.cxx11_abi != "1" {
            vars.push(("LIBTORCH_CXX11_ABI", PathBuf::from(&self.cxx11_abi)));
        }
        vars.push(("VRL_PYTHON", self.python.clone()));
        vars.push(("VRL_CACHE", self.cache.clone()));
        vars
    }

    /// Sets [`TorchEnv::vars`] on `cmd`.
    pub fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        for (k, v) in self.vars() {
            cmd.env(k, v);
        }
        cmd
    }
}

/// What the venv's python says about torch.
struct Probe {
    version: String,
    abi: String,
    torch_dir: PathBuf,
}

/// Makes sure the venv has torch [`TORCH_VERSION`] (installing it if needed) and that
/// `<root>/target/libtorch` points at it.
pub fn prepare(root: &Path) -> Result<TorchEnv> {
    let cache = std::path::absolute(vrl_cache::cache_dir()).context("cannot make the cache path absolute")?;
    let venv = cache.join("venv");
    let python = venv.join("bin").join("python");
    let marker = venv.join(MARKER);

    let probe = match read_marker(&marker, &python) {
        Some(probe) => probe,
        None => {
            let probe = match probe(&python) {
                Ok(p) if p.version.starts_with(TORCH_VERSION) => {
                    cmd::note(format!("found torch {} in {}", p.version, venv.display()));
                    p
                }
                found => {
                    match &found {
                        Ok(p) => cmd::note(format!(
                            "{} has torch {}, want {TORCH_VERSION}",
                            venv.display(),
                            p.version
                        )),
                        Err(_) => cmd::note(format!("no working torch in {}", venv.display())),
                    }
                    install(&venv, &python)?;
                    let p = probe(&python).with_context(|| {
                        format!("torch does not import in {} after installing it", venv.display())
                    })?;
                    ensure!(
                        p.version.starts_with(TORCH_VERSION),
                        "{} has torch {} after `pip install torch=={TORCH_VERSION}`; expected {TORCH_VERSION}",
                        python.display(),
                        p.version
                    );
                    p
                }
            };
            let text = format!(
                "{TORCH_VERSION}\nversion={}\nabi={}\ntorch_dir={}\n",
                probe.version,
                probe.abi,
                probe.torch_dir.display()
            );
            vrl_cache::write_atomic(&marker, text.as_bytes())
                .with_context(|| format!("cannot write {}", marker.display()))?;
            probe
        }
    };

    let libtorch = root.join("target").join("libtorch");
    link(&probe.torch_dir, &libtorch)?;
    Ok(TorchEnv {
        cache,
        python,
        libtorch,
        torch_dir: probe.torch_dir,
        cxx11_abi: probe.abi,
        version: probe.version,
    })
}

/// The marker's contents if it names [`TORCH_VERSION`], its torch directory has `include/` and `lib/`,
/// and the venv's python still runs.
fn read_marker(marker: &Path, python: &Path) -> Option<Probe> {
    let text = fs::read_to_string(marker).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim() != TORCH_VERSION {
        return None;
    }
    let (mut version, mut abi, mut torch_dir) = (TORCH_VERSION.to_string(), None, None);
    for line in lines {
        if let Some(v) = line.strip_prefix("version=") {
            version = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("abi=") {
            abi = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("torch_dir=") {
            torch_dir = Some(PathBuf::from(v.trim()));
        }
    }
    let (abi, torch_dir) = (abi?, torch_dir?);
    let ok = (abi == "0" || abi == "1")
        && torch_dir.join("include").is_dir()
        && torch_dir.join("lib").is_dir()
        && cmd::succeeds(Command::new(python).args(["-c", "pass"]));
    ok.then_some(Probe { version, abi, torch_dir })
}

/// Asks `python` for torch's version, C++11 ABI flag and directory.
fn probe(python: &Path) -> Result<Probe> {
    ensure!(python.exists(), "{} does not exist", python.display());
    let out = cmd::quiet_output(Command::new(python).args([
        "-c",
        "import torch; print(torch.__version__); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__file__)",
    ]))?;
    let lines: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let [.., version, abi, file] = lines[..] else {
        bail!("unexpected output from {} probing torch: {out:?}", python.display());
    };
    ensure!(abi == "0" || abi == "1", "torch._C._GLIBCXX_USE_CXX11_ABI printed {abi:?}, expected 0 or 1");
    let torch_dir = Path::new(file).parent().context("torch.__file__ has no parent directory")?.to_path_buf();
    Ok(Probe { version: version.to_string(), abi: abi.to_string(), torch_dir })
}

/// Creates the venv if its python does not run, then `pip install torch==TORCH_VERSION numpy`.
fn install(venv: &Path, python: &Path) -> Result<()> {
    if !cmd::succeeds(Command::new(python).args(["-c", "pass"])) {
        let bootstrap = std::env::var_os("VRL_PYTHON_BOOTSTRAP")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "python3".into());
        if let Some(parent) = venv.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        cmd::run(Command::new(&bootstrap).arg("-m").arg("venv").arg("--clear").arg(venv)).with_context(|| {
            format!(
                "cannot create a Python venv in {} with `{}` (set VRL_PYTHON_BOOTSTRAP to another python 3, or \
                 install the venv module, e.g. `apt-get install python3-venv`)",
                venv.display(),
                bootstrap.to_string_lossy()
            )
        })?;
    }
    cmd::note(format!("installing torch {TORCH_VERSION} from PyPI (about 3 GB, a few minutes)"));
    cmd::run(
        Command::new(python)
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .arg(format!("torch=={TORCH_VERSION}"))
            .arg("numpy"),
    )
    .with_context(|| format!("cannot install torch {TORCH_VERSION} into {}", venv.display()))
}

/// The pinned Python packages of the reference scripts, relative to the workspace root.
pub const REQUIREMENTS: &str = "python/requirements.txt";

/// The marker file in the venv after [`install_requirements`]: the requirements file's text, so that a
/// change of pins installs again.
const REQUIREMENTS_MARKER: &str = ".vrl-requirements";

/// Makes sure the venv of `env` has the packages of [`REQUIREMENTS`] (e.g. `timm==1.0.31`, which the
/// model zoo's tests generate their fixtures with), installing them once with pip. torch stays pinned
/// at [`TORCH_VERSION`] in the same pip call, so that no requirement can move it.
pub fn install_requirements(root: &Path, env: &TorchEnv) -> Result<()> {
    let file = root.join(REQUIREMENTS);
    let text = fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let venv = env.python.parent().and_then(Path::parent).context("the venv python has no venv directory")?;
    let marker = venv.join(REQUIREMENTS_MARKER);
    let wanted = format!("torch=={TORCH_VERSION}\n{text}");
    if fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Ok(());
    }
    let pins: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    cmd::note(format!("installing {} into {}", pins.join(", "), venv.display()));
    cmd::run(
        Command::new(&env.python)
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .arg(format!("torch=={TORCH_VERSION}"))
            .arg("-r")
            .arg(&file),
    )
    .with_context(|| format!("cannot install the packages of {} into {}", file.display(), venv.display()))?;
    vrl_cache::write_atomic(&marker, wanted.as_bytes())
        .with_context(|| format!("cannot write {}", marker.display()))
}

/// Points the symlink `link` at `target`, replacing a link that points elsewhere.
fn link(target: &Path, link: &Path) -> Result<()> {
    if let Ok(current) = fs::read_link(link) {
        if current == target {
            return Ok(());
        }
    } else if link.exists() {
        bail!(
            "{} exists and is not a symbolic link; remove it so that xtask can link it to {}",
            link.display(),
            target.display()
        );
    }
    let dir = link.parent().context("the libtorch link has no parent directory")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Make the new link beside the old one, then rename it over: never a moment without a link.
    let tmp = dir.join(format!(".libtorch.tmp.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create link {}", tmp.display()))?;
    fs::rename(&tmp, link)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), link.display()))?;
    cmd::note(format!("linked {} -> {}", link.display(), target.display()));
    Ok(())
}
