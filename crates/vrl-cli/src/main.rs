//! `vrl`: run experiments, check the installation, benchmark.
//!
//! Exit status: 0 done; 2 bad input (unknown key, bad value, missing or corrupt data, unknown name,
//! a shape, dtype or device that LibTorch refuses), with a one-paragraph message and no C++ trace
//! (`RUST_BACKTRACE=1` shows it); 75 stopped by a signal after saving a checkpoint (run the same
//! command again to resume); 1 any other failure, including a write that failed (a full disk, a
//! read-only file system: the message has the operating system's reason, and a scheduler may retry).

mod bench;
mod doctor;
mod experiments;
mod inspect;
mod malloc;
mod metrics;
mod models;
mod optim;
mod output;
mod slurm;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The commit vrl was built from.
pub const GIT_COMMIT: &str = env!("VRL_GIT_COMMIT");

#[derive(Parser, Debug)]
#[command(name = "vrl", version, about = "Visual representation learning studies on LibTorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print versions, threads, CUDA availability and device, and the state of the dataset cache.
    Doctor,
    /// Run an experiment (`tour`: the smoke preset of every experiment); without a name, list them.
    Experiment(experiments::ExperimentArgs),
    /// Time a training step; `--json` prints one JSON line (used by `cargo xtask bench`).
    Bench(bench::BenchArgs),
    /// The model zoo.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// The optimizer zoo: `replay` applies an optimizer to recorded gradients.
    Optim {
        #[command(subcommand)]
        command: optim::OptimCommand,
    },
    /// Look inside weight files: `layers` writes per-layer statistics (α, entropy, norms) as CSV.
    Inspect {
        #[command(subcommand)]
        command: inspect::InspectCommand,
    },
    /// Score saved representations: `disentanglement` computes MIG, SAP, DCI and modularity of codes
    /// against ground-truth factors (.npy) and prints JSON.
    Metrics {
        #[command(subcommand)]
        command: metrics::MetricsCommand,
    },
}

/// An error in what the user asked for (exit status 2).
#[derive(Debug)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UserError {}

/// Whether an error was caused by the user's input (exit status 2) rather than a failure of vrl.
fn is_user_error(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<UserError>()
            || e.is::<vrl_config::ConfigError>()
            || e.is::<vrl_data::DataError>()
            || e.downcast_ref::<vrl_cache::CacheError>()
                .is_some_and(|c| !matches!(c, vrl_cache::CacheError::Io { .. }))
            || e.is::<vrl_models::ModelError>()
            || e.is::<vrl_train::DeviceError>()
            || e.downcast_ref::<vrl_train::TorchError>().is_some_and(|t| !t.is_out_of_memory())
            || matches!(
                e.downcast_ref::<vrl_optim::OptimError>(),
                Some(vrl_optim::OptimError::Unknown { .. } | vrl_optim::OptimError::HParam { .. })
            )
            || matches!(
                e.downcast_ref::<vrl_run::RunError>(),
                Some(
                    vrl_run::RunError::ConfigChanged { .. }
                        | vrl_run::RunError::BadName(_)
                        | vrl_run::RunError::NotARun { .. }
                )
            )
            || e.downcast_ref::<vrl_models::weights::WeightsError>()
                .is_some_and(|w| !matches!(w, vrl_models::weights::WeightsError::Write { .. }))
            || e.is::<vrl_disentangle::MetricError>()
            || e.downcast_ref::<vrl_layerstats::LayerStatsError>()
                .is_some_and(|e| !matches!(e, vrl_layerstats::LayerStatsError::NoConvergence { .. }))
    })
}

fn main() -> ExitCode {
    malloc::tune_by_reexec();
    std::panic::set_hook(Box::new(|info| {
        if vrl_train::caught_torch_panic(info) {
            if backtrace_requested() {
                eprintln!("LibTorch error, with its trace as RUST_BACKTRACE is set: {info}");
            }
            return;
        }
        eprintln!(
            "error: internal error in vrl ({info}). This is a bug: please report it with the command you ran. \
             Set RUST_BACKTRACE=1 for a backtrace."
        );
        if std::env::var("RUST_BACKTRACE").is_ok_and(|v| v == "full") {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = vrl_train::catch_torch(|| dispatch(cli.command)).unwrap_or_else(|e| {
        Err(anyhow::Error::from(e)
            .context("LibTorch refused an operation (a shape, dtype or device that does not fit)"))
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            let text = format!("{err:#}");
            eprintln!(
                "error: {}",
                if backtrace_requested() { text } else { vrl_train::strip_cpp_traces(&text) }
            );
            ExitCode::from(if is_user_error(&err) { 2 } else { 1 })
        }
    }
}

/// Whether `RUST_BACKTRACE` asks for backtraces (and so for LibTorch's C++ traces too).
fn backtrace_requested() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Doctor => doctor::run(),
        Command::Experiment(args) => experiments::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Models { command } => models::run(command),
        Command::Optim { command } => optim::run(command),
        Command::Inspect { command } => inspect::run(command),
        Command::Metrics { command } => metrics::run(command),
    }
}

/// The default directory of experiment files: `./experiments`, else the source tree's.
pub fn default_experiments_dir() -> PathBuf {
    let local = PathBuf::from("experiments");
    if local.is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../experiments")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn a_failed_write_is_not_the_users_fault() {
        let full = || std::io::Error::from_raw_os_error(28); // ENOSPC
        let cache =
            vrl_cache::CacheError::Io { action: "cannot write", path: PathBuf::from("x"), source: full() };
        assert!(!is_user_error(&anyhow::Error::from(cache).context("saving")));
        let run = vrl_run::RunError::Io { action: "cannot write", path: PathBuf::from("x"), source: full() };
        assert!(!is_user_error(&run.into()));
        let weights =
            vrl_models::weights::WeightsError::Write { path: PathBuf::from("x"), reason: "full".into() };
        assert!(!is_user_error(&weights.into()));
        let bad = vrl_models::weights::file_err(std::path::Path::new("w"), "not a valid safetensors file");
        assert!(is_user_error(&bad.into()));
        let missing = vrl_data::DataError::Io {
            path: PathBuf::from("d"),
            source: std::io::Error::from_raw_os_error(2),
        };
        assert!(is_user_error(&missing.into()));
    }
}
