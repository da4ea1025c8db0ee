//! Build-script helper shared by every vrl crate whose binaries, tests, benches or examples touch LibTorch.
//!
//! tch's own build script tells rustc where LibTorch is (`-L`, `-ltorch`), but two things do not reach
//! the crates that depend on it:
//!
//! * an rpath, so binaries run without `LD_LIBRARY_PATH`;
//! * `libtorch_cuda`, which the linker drops under `--as-needed` because no symbol of it is referenced,
//!   so that `tch::Cuda::is_available()` would be false even on a CUDA machine.
//!
//! Cargo only hands `DEP_TCH_LIBTORCH_LIB` to the build scripts of *direct* dependents of `torch-sys`,
//! and `cargo:rustc-link-arg` only reaches the package's own targets. So each such crate depends on
//! `torch-sys` directly and has a two-line `build.rs`:
//!
//! ```no_run
//! fn main() {
//!     vrl_build::link_libtorch();
//! }
//! ```

#![allow(clippy::needless_doctest_main)] // the example *is* a build script's `main`

use std::path::{Path, PathBuf};

/// Emits the link arguments for LibTorch: an rpath to its library directory and, when the library
/// directory has `libtorch_cuda.so`, `--no-as-needed -ltorch_cuda`.
///
/// Call it from the `build.rs` of a crate that depends on `torch-sys` directly.
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        println!(
            "cargo:warning=DEP_TCH_LIBTORCH_LIB is not set: add `torch-sys` as a direct dependency of this crate"
        );
        return;
    };
    // The workspace reaches LibTorch through the link `target/libtorch`; the rpath must name the real
    // directory so that binaries keep working after `cargo clean`.
    let lib = std::fs::canonicalize(&lib).unwrap_or_else(|_| PathBuf::from(&lib));
    for arg in link_args(&lib) {
        println!("cargo:rustc-link-arg={arg}");
    }
    // Versions for run metadata: `env!("VRL_LIBTORCH_VERSION")`, `env!("VRL_CUDA_VERSION")` (empty for
    // CPU builds), `env!("VRL_TCH_VERSION")`.
    let (torch, cuda) = libtorch_version(&lib);
    println!("cargo:rustc-env=VRL_LIBTORCH_VERSION={torch}");
    println!("cargo:rustc-env=VRL_CUDA_VERSION={cuda}");
    println!("cargo:rustc-env=VRL_TCH_VERSION={}", tch_version().unwrap_or_else(|| "unknown".into()));
}

/// LibTorch's version and the CUDA version it was built with, from the `version.py` (PyPI wheel) or
/// `build-version` (LibTorch archive) next to its library directory.
pub fn libtorch_version(lib: &Path) -> (String, String) {
    let root = lib.parent().unwrap_or(lib);
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.split_once('=').map(|(_, v)| v))
                .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
                .filter(|v| v != "None")
                .unwrap_or_default()
        };
        return (field("__version__"), field("cuda"));
    }
    if let Ok(text) = std::fs::read_to_string(root.join("build-version")) {
        return (text.trim().to_string(), String::new());
    }
    ("unknown".into(), String::new())
}

/// The version of the `tch` crate in the workspace's `Cargo.lock`.
pub fn tch_version() -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let lock = dir.ancestors().map(|d| d.join("Cargo.lock")).find(|p| p.exists())?;
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(lock).ok()?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"tch\"" {
            return lines.next()?.trim().strip_prefix("version = ")?.trim_matches('"').to_string().into();
        }
    }
    None
}

/// The git commit of the working tree (`<hash>` or `<hash>-dirty`), `unknown` outside git. Emits
/// `rerun-if-changed` for `.git/HEAD` and the index so the value follows commits.
pub fn git_commit() -> String {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_default();
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(&dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(git_dir) = run(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/index");
        if let Some(r) = run(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={git_dir}/{r}");
        }
    }
    let Some(hash) = run(&["rev-parse", "--short=12", "HEAD"]) else { return "unknown".into() };
    let dirty = run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{hash}-dirty") } else { hash }
}

/// The linker arguments [`link_libtorch`] emits for a LibTorch library directory.
pub fn link_args(lib: &Path) -> Vec<String> {
    let mut args = vec![format!("-Wl,-rpath,{}", lib.display())];
    if lib.join("libtorch_cuda.so").exists() {
        args.extend([
            "-Wl,--no-as-needed".to_string(),
            format!("-L{}", lib.display()),
            "-ltorch_cuda".to_string(),
            "-Wl,--as-needed".to_string(),
        ]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_only_libtorch_gets_rpath_only() {
        let dir = std::env::temp_dir().join(format!("vrl-build-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let args = link_args(&dir);
        assert_eq!(args, vec![format!("-Wl,-rpath,{}", dir.display())]);
        std::fs::write(dir.join("libtorch_cuda.so"), b"").unwrap();
        let args = link_args(&dir);
        assert!(args.contains(&"-ltorch_cuda".to_string()));
        assert_eq!(args[1], "-Wl,--no-as-needed");
        assert_eq!(args.last().unwrap(), "-Wl,--as-needed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_the_wheel_version_file() {
        let root = std::env::temp_dir().join(format!("vrl-build-ver-{}", std::process::id()));
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::write(
            root.join("version.py"),
            "__version__ = '2.11.0+cu130'\ndebug = False\ncuda: Optional[str] = '13.0'\nhip: Optional[str] = None\n",
        )
        .unwrap();
        assert_eq!(libtorch_version(&root.join("lib")), ("2.11.0+cu130".to_string(), "13.0".to_string()));
        std::fs::write(root.join("version.py"), "__version__ = '2.11.0+cpu'\ncuda: Optional[str] = None\n")
            .unwrap();
        assert_eq!(libtorch_version(&root.join("lib")), ("2.11.0+cpu".to_string(), String::new()));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
