//! `vrl models`: list the zoo, run a model on an array.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tch::{Device, Kind, Tensor, nn};
use vrl_config::Override;
use vrl_models::{ModelArgs, REGISTRY};

use crate::UserError;

/// `vrl models …`.
#[derive(clap::Subcommand, Debug)]
pub enum ModelsCommand {
    /// Each model with its family and parameter count at the default configuration.
    List,
    /// Run a model in eval mode on a float32 NCHW `.npy` array and write the logits as `.npy`.
    Forward(ForwardArgs),
}

/// Arguments of `vrl models forward`.
#[derive(clap::Args, Debug)]
pub struct ForwardArgs {
    /// Model name (see `vrl models list`).
    #[arg(long)]
    model: String,
    /// Model argument, e.g. `--set model.num_classes=10` (repeatable).
    #[arg(long = "set", value_name = "model.KEY=VALUE")]
    set: Vec<String>,
    /// Weights (safetensors with the model's state-dict keys); without it, the fresh initialisation.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Input array, float32 `[N, C, H, W]`.
    #[arg(long)]
    input: PathBuf,
    /// Output logits `[N, num_classes]`.
    #[arg(long)]
    output: PathBuf,
}

pub fn run(command: ModelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::List => {
            println!("{:<28} {:<20} {:>12}  description", "model", "family", "parameters");
            for entry in REGISTRY {
                let params = vrl_models::num_params(entry.name, &ModelArgs::default())?;
                println!("{:<28} {:<20} {:>12}  {}", entry.name, entry.family, params, entry.description);
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Forward(args) => forward(args),
    }
}

/// Parses `model.KEY=VALUE` overrides into [`ModelArgs`], naming the key of any problem.
pub fn model_args(set: &[String]) -> anyhow::Result<ModelArgs> {
    let mut table = toml::Table::new();
    for s in set {
        let o = Override::parse(s)?;
        let path = match o.path.split_first() {
            Some((first, rest)) if first == "model" && !rest.is_empty() => rest.to_vec(),
            _ => {
                return Err(
                    UserError(format!("`--set {s}`: model arguments are set as `model.KEY=VALUE`")).into()
                );
            }
        };
        vrl_config::set_path(&mut table, &path, o.value)
            .map_err(|m| UserError(format!("`--set {s}`: {m}")))?;
    }
    Ok(vrl_config::from_table::<ModelArgs>(table, "model")?)
}

fn forward(args: ForwardArgs) -> anyhow::Result<ExitCode> {
    let margs = model_args(&args.set)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = vrl_models::create(&args.model, &vs.root(), &margs)?;
    if let Some(w) = &args.weights {
        let (tensors, _) = vrl_models::weights::load_safetensors(w)?;
        vrl_models::weights::load_into_varstore(&vs, &tensors, w)?;
    }
    let input = Tensor::read_npy(&args.input)
        .map_err(|e| UserError(format!("cannot read {} as a .npy array: {e}", args.input.display())))?;
    if input.kind() != Kind::Float || input.dim() != 4 {
        return Err(UserError(format!(
            "{}: expected a float32 array [N, C, H, W], found {:?} {:?}",
            args.input.display(),
            input.kind(),
            input.size()
        ))
        .into());
    }
    let logits = tch::no_grad(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.forward_t(&input, false)))
    })
    .map_err(|_| {
        UserError(format!(
            "model `{}` cannot take input of shape {:?} from {} (see its in_chans and img_size)",
            args.model,
            input.size(),
            args.input.display()
        ))
    })?;
    let tmp = args.output.with_extension("npy.tmp");
    logits.write_npy(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.output).with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!("wrote logits {:?} to {}", logits.size(), args.output.display());
    Ok(ExitCode::SUCCESS)
}
