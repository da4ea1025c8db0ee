//! What every study shares around its training loop: run options, the outcome, run metadata.

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tch::Device;
use vrl_config::{ExperimentFile, Override, Resolved};
use vrl_run::{RunDir, RunError, RunMeta, RunState};

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

impl Outcome {
    /// The outcome of a run that had finished before (`already: true`), its results read back from
    /// `results.json`.
    ///
    /// # Errors
    /// When `results.json` cannot be read or parsed.
    pub fn finished_before(run: &RunDir) -> Result<Outcome, RunError> {
        Ok(Outcome::Finished { dir: run.path().to_path_buf(), results: run.read_results()?, already: true })
    }
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
/// and overrides, checks the thread count (0 to [`vrl_config::MAX_THREADS`]), the configuration with
/// `check` and the device key, and opens the run directory (creating it, resuming it, or starting
/// over with `fresh`); nothing is written before those checks pass. A run that had finished is read back and returned as [`Opened::Finished`];
/// otherwise the thread setting is applied and `meta.json` written.
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
    let threads = resolved.config.threads() as u64;
    vrl_config::check_range(&file.name, "threads", threads, 0..=vrl_config::MAX_THREADS)?;
    check(&resolved.config)?;
    let device = crate::parse_device(resolved.config.device())?;
    let run_id = resolved.run_id();
    let run = RunDir::open(&opts.runs_dir, &file.name, &run_id, &resolved.toml, opts.fresh)?;
    if run.state() == RunState::Finished {
        return Ok(Opened::Finished(Outcome::finished_before(&run)?));
    }
    let threads = configure_threads(resolved.config.threads());
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
///
/// A count above [`vrl_config::MAX_THREADS`] (which validation refuses) is clamped to it, never
/// wrapped into LibTorch's `i32`.
pub fn configure_threads(threads: usize) -> usize {
    static DEFAULT: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    let default = *DEFAULT.get_or_init(|| tch::get_num_threads().max(1));
    tch::set_num_threads(thread_count(threads, default));
    tch::get_num_threads().max(1) as usize
}

/// The count [`configure_threads`] asks LibTorch for: `default` for 0, else `threads` clamped to
/// [`vrl_config::MAX_THREADS`].
fn thread_count(threads: usize, default: i32) -> i32 {
    let cap = i32::try_from(vrl_config::MAX_THREADS).unwrap_or(i32::MAX);
    match threads {
        0 => default,
        n => i32::try_from(n).map_or(cap, |n| n.min(cap)),
    }
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

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        seed: u64,
        threads: usize,
        device: String,
    }

    impl StudySettings for Demo {
        fn threads(&self) -> usize {
            self.threads
        }

        fn device(&self) -> &str {
            &self.device
        }
    }

    fn file() -> ExperimentFile {
        let text = r#"
            [experiment]
            name = "demo"
            description = "A demo."
            [config]
            seed = 0
            threads = 1
            device = "cpu"
            [presets.smoke]
            description = "tiny"
            config = {}
        "#;
        ExperimentFile::parse(text, "demo.toml").unwrap()
    }

    fn options(root: &std::path::Path, overrides: &[&str]) -> RunOptions {
        RunOptions {
            runs_dir: root.to_path_buf(),
            preset: None,
            overrides: overrides.iter().map(|o| Override::parse(o).unwrap()).collect(),
            fresh: false,
            command: vec!["vrl".into(), "experiment".into(), "demo".into()],
        }
    }

    fn accept(_: &Demo) -> anyhow::Result<()> {
        Ok(())
    }

    #[test]
    fn opens_a_run_then_reads_back_the_finished_one() {
        let root = tempfile::tempdir().unwrap();
        let opts = options(root.path(), &[]);
        let Opened::Ready(study) = open_study::<Demo>(&file(), &opts, "abc123", accept).unwrap() else {
            panic!("a new run is ready");
        };
        assert_eq!((study.threads, study.device, study.config().seed), (1, Device::Cpu, 0));
        let meta = std::fs::read_to_string(study.run.path().join("meta.json")).unwrap();
        assert!(meta.contains("abc123"), "{meta}");
        study.run.write_results(&serde_json::json!({"top1": 0.5})).unwrap();

        let outcome = open_study::<Demo>(&file(), &opts, "abc123", accept).unwrap();
        let Opened::Finished(Outcome::Finished { results, already, .. }) = outcome else {
            panic!("the finished run is read back: {outcome:?}");
        };
        assert!(already);
        assert_eq!(results["top1"], 0.5);
        configure_threads(0);
    }

    #[test]
    fn a_rejected_configuration_or_device_is_an_error_and_writes_no_run() {
        let root = tempfile::tempdir().unwrap();
        let opts = options(root.path(), &["seed=3"]);
        let err = open_study::<Demo>(&file(), &opts, "x", |c| {
            anyhow::ensure!(c.seed != 3, "seed 3 is not allowed");
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("seed 3"), "{err}");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);

        let opts = options(root.path(), &["device=\"tpu\""]);
        let err = open_study::<Demo>(&file(), &opts, "x", accept).unwrap_err();
        assert!(format!("{err:#}").contains("tpu"), "{err:#}");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
        configure_threads(0);
    }

    #[test]
    fn a_thread_count_out_of_range_is_refused_before_the_run_and_never_wraps() {
        let root = tempfile::tempdir().unwrap();
        let opts = options(root.path(), &["threads=4294967296"]);
        let err = open_study::<Demo>(&file(), &opts, "x", accept).unwrap_err();
        assert!(err.is::<vrl_config::ConfigError>(), "{err:#}");
        assert!(err.to_string().contains("`threads`") && err.to_string().contains("4294967296"), "{err}");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
        assert_eq!(thread_count(0, 7), 7);
        assert_eq!(thread_count(3, 7), 3);
        assert_eq!(thread_count(4_294_967_297, 7), 1024, "2³² + 1 would wrap to 1 as an i32");
        assert_eq!(thread_count(usize::MAX, 7), 1024);
    }
}
