//! `vrl inspect`: look inside weight files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use vrl_layerstats::{AlphaFit, Options};

/// `vrl inspect …`.
#[derive(clap::Subcommand, Debug)]
pub enum InspectCommand {
    /// Per-layer statistics of every 2-D and 4-D weight of a safetensors file, as CSV: power-law α of
    /// the ESD (WeightWatcher's conventions), spectral entropy, L2 norm, top-k PCA energy share.
    Layers(LayersArgs),
}

/// Arguments of `vrl inspect layers`.
#[derive(clap::Args, Debug)]
pub struct LayersArgs {
    /// Weights (safetensors; f32, f16, bf16 or f64).
    #[arg(long)]
    weights: PathBuf,
    /// Write the CSV here (atomically) instead of to standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Principal components counted in `pca_topk_energy`.
    #[arg(long, default_value_t = Options::default().top_k)]
    top_k: usize,
}

pub fn run(command: InspectCommand) -> anyhow::Result<ExitCode> {
    match command {
        InspectCommand::Layers(args) => layers(args),
    }
}

fn layers(args: LayersArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.output {
        crate::output::check_output(path, "a CSV file")?;
    }
    let options = Options { top_k: args.top_k, ..Options::default() };
    let stats = vrl_layerstats::analyze_safetensors(&args.weights, &options)?;
    let csv = vrl_layerstats::to_csv(&stats);
    let fitted = stats.iter().filter(|s| matches!(s.fit, AlphaFit::Fitted(_))).count();
    match &args.output {
        Some(path) => {
            vrl_cache::write_atomic(path, csv.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} layers of {} to {} (α fitted for {fitted}, not for {})",
                stats.len(),
                args.weights.display(),
                path.display(),
                stats.len() - fitted
            );
        }
        None => print!("{csv}"),
    }
    Ok(ExitCode::SUCCESS)
}
