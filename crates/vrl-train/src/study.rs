//! What every study shares around its training loop: run options, the outcome, run metadata.

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tch::Device;
use vrl_config::{ExperimentFile, Override, Resolved};
use vrl_run::{RunDir, RunMeta, RunState};

/// How a study is asked to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where runs go (`runs/`).
    pub runs_dir: PathBuf,
    /// The preset (`None`: the file's default).
    pub preset: Option<String>,
    /// `--set` overrides.
    pub overrides: Vec<Override>,
    /// Start over even if the run exists.
    pub fresh: bool,
    /// The command line, for `meta.json`.
    pub command: Vec<String>,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The run is complete; `results.json` holds `results`.
    Finished {
        /// The run directory.
        dir: PathBuf,
        /// The final figures.
        results: serde_json::Value,
        /// True when the run had finished before and nothing was run now.
        already: bool,
    },
    /// A stop signal arrived; a checkpoint was saved and the same command resumes the run.
    Interrupted {
        /// The run directory.
        dir: PathBuf,
        /// The signal.
        signal: &'static str,
    },
}

/// The keys every study's configuration has for where it runs, read by [`open_study`].
pub trait StudySettings {
    /// Intra-op threads (0: LibTorch's default).
    fn threads(&self) -> usize;
    /// The device (`auto`, `cpu`, `cuda`, `cuda:N`).
    fn device(&self) -> &str;
}

/// A study's run as [`open_study`] left it: `meta.json` written, threads and device set.
#[derive(Debug)]
pub struct StudyRun<C> {
    /// The configuration, resolved from the file, the preset and the overrides.
    pub resolved: Resolved<C>,
    /// The run directory (new, or an interrupted run to resume).
    pub run: RunDir,
    /// The number of intra-op threads in use.
    pub threads: usize,
    /// The device the study runs on.
    pub device: Device,
}

impl<C> StudyRun<C> {
    /// The resolved configuration.
    pub fn config(&self) -> &C {
        &self.resolved.config
    }
}

/// How [`open_study`] found the run.
#[derive(Debug)]
pub enum Opened<C> {
    /// The run had finished before: its outcome, read back; there is nothing to do.
    Finished(Outcome),
    /// The run is ready for the study's work.
    Ready(StudyRun<C>),
}

/// What every single-process study does before its work: resolves `file` with the options' preset
/// and overrides, checks the configuration with `check`, and opens the run directory (creating it,
/// resuming it, or starting over with `fresh`). A run that had finished is read back and returned as
/// [`Opened::Finished`]; otherwise the thread setting is applied, the device parsed and `meta.json`
/// written.
///
/// # Errors
/// A bad preset, override or configuration value (including what `check` rejects), a run directory
/// that cannot be opened or whose results cannot be read, an unknown or unavailable device, and a
/// `meta.json` that cannot be written.
pub fn open_study<C: DeserializeOwned + Serialize + StudySettings>(
    file: &ExperimentFile,
    opts: &RunOptions,
    vrl_commit: &str,
    check: impl FnOnce(&C) -> anyhow::Result<()>,
) -> anyhow::Result<Opened<C>> {
    let resolved = file.resolve::<C>(opts.preset.as_deref(), &opts.overrides)?;
    check(&resolved.config)?;
    let run_id = resolved.run_id();
    let run = RunDir::open(&opts.runs_dir, &file.name, &run_id, &resolved.toml, opts.fresh)?;
    if run.state() == RunState::Finished {
        let (dir, results) = (run.path().to_path_buf(), run.read_results()?);
        return Ok(Opened::Finished(Outcome::Finished { dir, results, already: true }));
    }
    let threads = configure_threads(resolved.config.threads());
    let device = crate::parse_device(resolved.config.device())?;
    run.write_meta(&run_meta(&file.name, &run_id, device, vrl_commit, &opts.command))?;
    Ok(Opened::Ready(StudyRun { resolved, run, threads, device }))
}

/// Applies the thread setting (0: LibTorch's default, one per core) and returns the thread count in use.
///
/// The count is always set explicitly: measured on 2 cores, LibTorch's intra-op pool left at its
/// implicit default ran the MNIST training step about 15% slower than after `set_num_threads` with
/// the same number (which is what `import torch` does in Python).
///
/// `0` means LibTorch's default as it was before any call here, not the current setting: in one
/// process (the tour) a study that asks for one thread must not leave the next study, which asks for
/// the default, on one thread too.
pub fn configure_threads(threads: usize) -> usize {
    static DEFAULT: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    let default = *DEFAULT.get_or_init(|| tch::get_num_threads().max(1));
    let n = if threads > 0 { threads as i32 } else { default };
    tch::set_num_threads(n);
    tch::get_num_threads().max(1) as usize
}

/// Metadata for `meta.json`: versions of vrl, tch, LibTorch and CUDA, and the device.
pub fn run_meta(
    experiment: &str,
    run_id: &str,
    device: Device,
    vrl_commit: &str,
    command: &[String],
) -> RunMeta {
    let cuda = env!("VRL_CUDA_VERSION");
    RunMeta {
        experiment: experiment.to_string(),
        run_id: run_id.to_string(),
        vrl_version: env!("CARGO_PKG_VERSION").to_string(),
        vrl_commit: vrl_commit.to_string(),
        tch_version: env!("VRL_TCH_VERSION").to_string(),
        libtorch_version: env!("VRL_LIBTORCH_VERSION").to_string(),
        cuda_version: (!cuda.is_empty()).then(|| cuda.to_string()),
        cuda_available: tch::Cuda::is_available(),
        device: crate::device_label(device),
        device_name: crate::device_name(device),
        threads: tch::get_num_threads().max(1) as usize,
        command: command.to_vec(),
    }
}
