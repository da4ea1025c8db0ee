//! Run directories: where an experiment writes what it did, so that it can be read, compared and resumed.
//!
//! A run lives in `runs/<experiment>/<run-id>/` and holds the resolved `config.toml`, `meta.json` (the
//! vrl commit, tch / LibTorch / CUDA versions, device), `metrics.jsonl` (one JSON object per logged
//! step), `results.json` (final figures), `checkpoints/`, plots and `report.md`. `runs/<experiment>/latest`
//! links to the newest run. Every file is written atomically (temporary file, then rename), so an
//! interrupted run never leaves a half-written file behind. No tensors here: this crate is cheap to reuse.
//!
//! ```
//! use vrl_run::{RunDir, RunState};
//!
//! let root = tempfile::tempdir().unwrap();
//! let run = RunDir::open(root.path(), "demo", "smoke", "seed = 1\n", false).unwrap();
//! assert_eq!(run.state(), RunState::New);
//! let mut log = run.metrics(None).unwrap();
//! log.log(&serde_json::json!({"step": 1, "loss": 0.5})).unwrap();
//! run.write_results(&serde_json::json!({"test_accuracy": 0.99})).unwrap();
//! assert_eq!(RunDir::open(root.path(), "demo", "smoke", "seed = 1\n", false).unwrap().state(), RunState::Finished);
//! ```

mod fsx;
mod metrics;
mod plot;
mod report;
mod stale;

use std::path::{Path, PathBuf};

pub use fsx::{write_atomic, write_json_atomic};
pub use metrics::{MetricsLog, read_metrics};
pub use plot::{Series, line_plot_svg, register_fonts};
pub use report::Report;
use serde::{Deserialize, Serialize};
pub use stale::remove_stale_temporaries;

/// Errors of this crate. Each names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file or line could not be parsed or written.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The run directory exists with a different configuration.
    #[error(
        "run directory {path} holds a run with a different configuration (the experiment file changed?); \
         pass --fresh to move it aside and start over"
    )]
    ConfigChanged {
        /// The run directory.
        path: PathBuf,
    },
    /// An experiment name or run id is not a plain name, so it cannot become a directory.
    #[error("{0}")]
    BadName(String),
    /// `--fresh` found something at the run's path that vrl did not create, and left it alone.
    #[error(
        "{path} is not a run directory that vrl created ({why}); --fresh moves only vrl's own runs aside, \
         so move or remove it yourself"
    )]
    NotARun {
        /// The path.
        path: PathBuf,
        /// What is there instead.
        why: &'static str,
    },
    /// A file could not be written.
    #[error(transparent)]
    Write(#[from] vrl_cache::CacheError),
    /// A plot could not be drawn.
    #[error("cannot draw plot {path}: {message}")]
    Plot {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RunError + 'a {
    move |source| RunError::Io { action, path: path.to_path_buf(), source }
}

/// Where a run stands when it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Nothing was run yet.
    New,
    /// An earlier attempt stopped before it finished; checkpoints may be there.
    Unfinished,
    /// `results.json` exists: the run is complete.
    Finished,
}

/// Facts about the software and hardware a run used, written to `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunMeta {
    /// The experiment name.
    pub experiment: String,
    /// The run id.
    pub run_id: String,
    /// vrl's version.
    pub vrl_version: String,
    /// The git commit vrl was built from (with `-dirty` if the tree had changes).
    pub vrl_commit: String,
    /// The tch crate's version.
    pub tch_version: String,
    /// LibTorch's version, e.g. `2.11.0+cu130`.
    pub libtorch_version: String,
    /// The CUDA version LibTorch was built with, if any.
    pub cuda_version: Option<String>,
    /// Whether CUDA was available at run time.
    pub cuda_available: bool,
    /// The device the run used, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// A human name of that device (CPU model or GPU name).
    pub device_name: String,
    /// Intra-op threads LibTorch used.
    pub threads: usize,
    /// The command line.
    pub command: Vec<String>,
}

/// A run directory, opened for writing.
#[derive(Debug)]
pub struct RunDir {
    dir: PathBuf,
    state: RunState,
}

impl RunDir {
    /// Opens (or creates) `root/<experiment>/<run_id>/`, writes `config.toml` and points
    /// `root/<experiment>/latest` at it. With `fresh`, an existing run directory is moved aside to
    /// `<run_id>.bak-<unix seconds>` first (see [`move_aside`]). An existing run whose `config.toml`
    /// differs from `config_toml` is an error.
    ///
    /// Opening an unfinished run removes the temporary files that a killed process left in it
    /// ([`remove_stale_temporaries`]).
    ///
    /// `experiment` and `run_id` must be plain names ([`vrl_config::check_name`]), so that the run
    /// stays inside `root`; they are checked before anything is created.
    pub fn open(
        root: &Path,
        experiment: &str,
        run_id: &str,
        config_toml: &str,
        fresh: bool,
    ) -> Result<Self, RunError> {
        vrl_config::check_name("experiment name", experiment).map_err(RunError::BadName)?;
        vrl_config::check_name("run id", run_id).map_err(RunError::BadName)?;
        let exp_dir = root.join(experiment);
        let dir = exp_dir.join(run_id);
        if fresh {
            move_aside(&dir)?;
        }
        std::fs::create_dir_all(dir.join("checkpoints")).map_err(io_err("cannot create", &dir))?;
        let config_path = dir.join("config.toml");
        let state = match std::fs::read_to_string(&config_path) {
            Ok(existing) if existing != config_toml => {
                return Err(RunError::ConfigChanged { path: dir });
            }
            Ok(_) if dir.join("results.json").exists() => RunState::Finished,
            Ok(_) => {
                remove_stale_temporaries(&dir);
                RunState::Unfinished
            }
            Err(_) => {
                write_atomic(&config_path, config_toml.as_bytes())?;
                RunState::New
            }
        };
        update_latest(&exp_dir, run_id)?;
        Ok(RunDir { dir, state })
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where the run stood when it was opened.
    pub fn state(&self) -> RunState {
        self.state
    }

    /// The checkpoint directory.
    pub fn checkpoints(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    /// Opens `metrics.jsonl` for appending. With `resume_step = Some(s)`, entries whose `step` is past
    /// `s` (logged after the checkpoint the run resumes from) are dropped first, so a resumed run ends
    /// with the same file as an uninterrupted one.
    pub fn metrics(&self, resume_step: Option<u64>) -> Result<MetricsLog, RunError> {
        MetricsLog::open(&self.dir.join("metrics.jsonl"), resume_step)
    }

    /// Writes `meta.json`.
    pub fn write_meta(&self, meta: &RunMeta) -> Result<(), RunError> {
        write_json_atomic(&self.dir.join("meta.json"), meta)
    }

    /// Writes `results.json`, which marks the run finished.
    pub fn write_results<T: Serialize>(&self, results: &T) -> Result<(), RunError> {
        write_json_atomic(&self.dir.join("results.json"), results)
    }

    /// Reads `results.json`.
    pub fn read_results(&self) -> Result<serde_json::Value, RunError> {
        let path = self.dir.join("results.json");
        let text = std::fs::read_to_string(&path).map_err(io_err("cannot read", &path))?;
        serde_json::from_str(&text).map_err(|e| RunError::Json { path, message: e.to_string() })
    }
}

/// Moves the run directory `dir`, if there is one, to `<dir>.bak-<unix seconds>` (with `-2`, `-3`, …
/// when that exists) and returns where it went. Only a real directory that vrl created is moved: one
/// holding `config.toml`, or nothing but an empty `checkpoints/` (a run killed while it was being
/// created); a link, a file or another directory is left alone and is an error.
pub fn move_aside(dir: &Path) -> Result<Option<PathBuf>, RunError> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot inspect", dir)(e)),
    };
    let not_a_run = |why| RunError::NotARun { path: dir.to_path_buf(), why };
    if meta.file_type().is_symlink() {
        return Err(not_a_run("a symbolic link"));
    }
    if !meta.is_dir() {
        return Err(not_a_run("a file"));
    }
    if !dir.join("config.toml").is_file() && !is_bare_run(dir)? {
        return Err(not_a_run("a directory without vrl's config.toml"));
    }
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mut target = dir.with_file_name(format!("{name}.bak-{secs}"));
    for n in 2.. {
        if std::fs::symlink_metadata(&target).is_err() {
            break;
        }
        target = dir.with_file_name(format!("{name}.bak-{secs}-{n}"));
    }
    std::fs::rename(dir, &target).map_err(io_err("cannot move aside", dir))?;
    tracing::info!("--fresh: moved the old run to {}", target.display());
    Ok(Some(target))
}

/// Whether `dir` holds nothing but an empty `checkpoints/`.
fn is_bare_run(dir: &Path) -> Result<bool, RunError> {
    let names: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err("cannot read", dir))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    let empty = |p: &Path| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none());
    Ok(names.is_empty() || (names == ["checkpoints"] && empty(&dir.join("checkpoints"))))
}

/// Points `exp_dir/latest` at `run_id` (a relative symbolic link, replaced atomically).
pub fn update_latest(exp_dir: &Path, run_id: &str) -> Result<(), RunError> {
    let link = exp_dir.join("latest");
    let tmp = exp_dir.join(format!(".latest.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    #[cfg(unix)]
    std::os::unix::fs::symlink(run_id, &tmp).map_err(io_err("cannot create link", &tmp))?;
    #[cfg(not(unix))]
    std::fs::write(&tmp, run_id).map_err(io_err("cannot write", &tmp))?;
    std::fs::rename(&tmp, &link).map_err(io_err("cannot replace", &link))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_latest_link() {
        let root = tempfile::tempdir().unwrap();
        let run = RunDir::open(root.path(), "e", "smoke", "a = 1\n", false).unwrap();
        assert_eq!(run.state(), RunState::New);
        let torn = run.checkpoints().join(".ckpt-0000000007.safetensors.tmp.4194304999.0");
        std::fs::write(&torn, b"half a checkpoint").unwrap();
        let again = RunDir::open(root.path(), "e", "smoke", "a = 1\n", false).unwrap();
        assert_eq!(again.state(), RunState::Unfinished);
        assert!(!torn.exists(), "a killed process's temporary file is removed on resume");
        let changed = RunDir::open(root.path(), "e", "smoke", "a = 2\n", false).unwrap_err();
        assert!(changed.to_string().contains("--fresh"), "{changed}");
        run.write_results(&serde_json::json!({"x": 1})).unwrap();
        assert_eq!(
            RunDir::open(root.path(), "e", "smoke", "a = 1\n", false).unwrap().state(),
            RunState::Finished
        );
        let fresh = RunDir::open(root.path(), "e", "smoke", "a = 2\n", true).unwrap();
        assert_eq!(fresh.state(), RunState::New);
        let backups: Vec<_> = std::fs::read_dir(root.path().join("e"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("smoke.bak-"))
            .collect();
        assert_eq!(backups.len(), 1, "{backups:?}");
        let kept = root.path().join("e").join(&backups[0]);
        assert!(kept.join("results.json").is_file(), "--fresh keeps the old run");
        RunDir::open(root.path(), "e", "other", "a = 1\n", false).unwrap();
        let latest = std::fs::read_link(root.path().join("e/latest")).unwrap();
        assert_eq!(latest, PathBuf::from("other"));
    }

    #[test]
    fn names_that_leave_the_runs_directory_are_refused_before_anything_is_created() {
        let root = tempfile::tempdir().unwrap();
        for (exp, id) in
            [("../../x", "smoke"), ("/some/dir", "smoke"), ("e", "../x"), ("e", ".hidden"), ("", "s")]
        {
            let e = RunDir::open(root.path(), exp, id, "a = 1\n", true).unwrap_err();
            assert!(matches!(e, RunError::BadName(_)), "{e}");
        }
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn fresh_moves_only_what_vrl_created() {
        let root = tempfile::tempdir().unwrap();
        let exp = root.path().join("e");
        std::fs::create_dir_all(exp.join("foreign")).unwrap();
        std::fs::write(exp.join("foreign/data.txt"), b"keep me").unwrap();
        let e = RunDir::open(root.path(), "e", "foreign", "a = 1\n", true).unwrap_err();
        assert!(e.to_string().contains("not a run directory that vrl created"), "{e}");
        assert_eq!(std::fs::read(exp.join("foreign/data.txt")).unwrap(), b"keep me");

        std::fs::write(exp.join("file"), b"x").unwrap();
        assert!(matches!(move_aside(&exp.join("file")), Err(RunError::NotARun { why: "a file", .. })));
        #[cfg(unix)]
        {
            let outside = tempfile::tempdir().unwrap();
            std::fs::write(outside.path().join("config.toml"), b"").unwrap();
            std::os::unix::fs::symlink(outside.path(), exp.join("link")).unwrap();
            let e = RunDir::open(root.path(), "e", "link", "a = 1\n", true).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
            assert!(outside.path().join("config.toml").is_file());
        }
        std::fs::create_dir_all(exp.join("bare/checkpoints")).unwrap();
        let moved = move_aside(&exp.join("bare")).unwrap().unwrap();
        assert!(moved.join("checkpoints").is_dir() && !exp.join("bare").exists());
        assert_eq!(move_aside(&exp.join("absent")).unwrap(), None);
    }
}
