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

use std::path::{Path, PathBuf};

pub use fsx::{write_atomic, write_json_atomic};
pub use metrics::{MetricsLog, read_metrics};
pub use plot::{Series, line_plot_svg, register_fonts};
pub use report::Report;
use serde::{Deserialize, Serialize};

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
         pass --fresh to start it over"
    )]
    ConfigChanged {
        /// The run directory.
        path: PathBuf,
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
    /// `root/<experiment>/latest` at it. With `fresh`, an existing run directory is removed first.
    /// An existing run whose `config.toml` differs from `config_toml` is an error.
    pub fn open(
        root: &Path,
        experiment: &str,
        run_id: &str,
        config_toml: &str,
        fresh: bool,
    ) -> Result<Self, RunError> {
        let exp_dir = root.join(experiment);
        let dir = exp_dir.join(run_id);
        if fresh && dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err("cannot remove", &dir))?;
        }
        std::fs::create_dir_all(dir.join("checkpoints")).map_err(io_err("cannot create", &dir))?;
        let config_path = dir.join("config.toml");
        let state = match std::fs::read_to_string(&config_path) {
            Ok(existing) if existing != config_toml => {
                return Err(RunError::ConfigChanged { path: dir });
            }
            Ok(_) if dir.join("results.json").exists() => RunState::Finished,
            Ok(_) => RunState::Unfinished,
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
        let again = RunDir::open(root.path(), "e", "smoke", "a = 1\n", false).unwrap();
        assert_eq!(again.state(), RunState::Unfinished);
        let changed = RunDir::open(root.path(), "e", "smoke", "a = 2\n", false).unwrap_err();
        assert!(changed.to_string().contains("--fresh"), "{changed}");
        run.write_results(&serde_json::json!({"x": 1})).unwrap();
        assert_eq!(
            RunDir::open(root.path(), "e", "smoke", "a = 1\n", false).unwrap().state(),
            RunState::Finished
        );
        let fresh = RunDir::open(root.path(), "e", "smoke", "a = 2\n", true).unwrap();
        assert_eq!(fresh.state(), RunState::New);
        RunDir::open(root.path(), "e", "other", "a = 1\n", false).unwrap();
        let latest = std::fs::read_link(root.path().join("e/latest")).unwrap();
        assert_eq!(latest, PathBuf::from("other"));
    }
}
