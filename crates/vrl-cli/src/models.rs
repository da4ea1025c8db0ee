//! `vrl models`: list the zoo, run a model on an array.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tch::{Device, Kind, Tensor, nn};
use vrl_config::Override;
use vrl_data::DataError;
use vrl_data::npy::{NpyData, encode_npy_f32, read_npy_file};
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
    /// Output logits `[N, num_classes]` (float32 `.npy`), written atomically; its directory must exist.
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
    crate::output::check_output(&args.output, "a .npy file")?;
    let margs = model_args(&args.set)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = vrl_models::create(&args.model, &vs.root(), &margs)?;
    if let Some(w) = &args.weights {
        let (tensors, _) = vrl_models::weights::load_safetensors(w)?;
        vrl_models::weights::load_into_varstore(&vs, &tensors, w)?;
    }
    let input = read_input(&args.input)?;
    let logits = tch::no_grad(|| vrl_train::catch_torch(|| model.forward_t(&input, false))).map_err(|e| {
        UserError(format!(
            "model `{}` cannot take input of shape {:?} from {} (see its in_chans and img_size): {e}",
            args.model,
            input.size(),
            args.input.display()
        ))
    })?;
    write_logits(&args.output, &logits)?;
    eprintln!("wrote logits {:?} to {}", logits.size(), args.output.display());
    Ok(ExitCode::SUCCESS)
}

/// The float32 `[N, C, H, W]` array of `path`, read with vrl's bounds-checked `.npy` reader.
fn read_input(path: &Path) -> anyhow::Result<Tensor> {
    let array = read_npy_file(path).map_err(|e| {
        UserError(match e {
            DataError::Format { message, .. } => format!("--input {}: {message}", path.display()),
            e => format!("--input: {e}"),
        })
    })?;
    let descr = array.descr();
    let (&[n, c, h, w], NpyData::F32(data)) = (array.shape.as_slice(), &array.data) else {
        return Err(UserError(format!(
            "--input {}: expected a float32 array [N, C, H, W], found '{descr}' of shape {:?}",
            path.display(),
            array.shape
        ))
        .into());
    };
    // The reader bounds every count by isize::MAX, so each dimension fits in i64.
    let size = [n, c, h, w].map(|d| i64::try_from(d).unwrap_or(i64::MAX));
    Tensor::f_from_slice(data)
        .and_then(|t| t.f_view(size))
        .with_context(|| format!("cannot make a tensor of {}", path.display()))
}

/// Writes the logits as a float32 `.npy` file, atomically (a temporary file beside `path`, renamed).
fn write_logits(path: &Path, logits: &Tensor) -> anyhow::Result<()> {
    let logits = logits.to_kind(Kind::Float).contiguous();
    let shape = logits.size().iter().map(|&d| usize::try_from(d)).collect::<Result<Vec<_>, _>>()?;
    let data = Vec::<f32>::try_from(logits.flatten(0, -1))?;
    vrl_cache::write_atomic(path, &encode_npy_f32(&shape, &data))
        .with_context(|| format!("cannot write {}", path.display()))
}
