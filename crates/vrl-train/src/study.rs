//! What every study shares around its training loop: run options, the outcome, run metadata.

use std::path::PathBuf;

use tch::Device;
use vrl_config::Override;
use vrl_run::RunMeta;

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
