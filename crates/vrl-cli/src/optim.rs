//! `vrl optim`: replay an optimizer on recorded gradients.

use std::path::PathBuf;
use std::process::ExitCode;

use tch::Kind;
use vrl_optim::{HParams, HValue, NamedParam};

use crate::UserError;

/// `vrl optim …`.
#[derive(clap::Subcommand, Debug)]
pub enum OptimCommand {
    /// Apply N steps of an optimizer to parameters, with gradients read from a file, at a constant
    /// learning rate; write the final parameters.
    Replay(ReplayArgs),
}

/// Arguments of `vrl optim replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Optimizer name, case-insensitive (e.g. `sgd`, `AdamW`).
    #[arg(long)]
    optimizer: String,
    /// Hyper-parameter, e.g. `--hparam lr=0.01 --hparam momentum=0.9` (repeatable); `lr` is the
    /// constant learning rate (default: the optimizer's default `lr`).
    #[arg(long = "hparam", value_name = "KEY=VALUE")]
    hparams: Vec<String>,
    /// Initial parameters (safetensors, float32 or float64).
    #[arg(long)]
    params: PathBuf,
    /// Gradients (safetensors): step k (0-based) uses the tensor `{k}/{name}` for parameter `name`.
    #[arg(long)]
    grads: PathBuf,
    /// Number of steps.
    #[arg(long)]
    steps: u64,
    /// Final parameters (safetensors, same names and dtypes as `--params`).
    #[arg(long)]
    output: PathBuf,
}

pub fn run(command: OptimCommand) -> anyhow::Result<ExitCode> {
    match command {
        OptimCommand::Replay(args) => replay(args),
    }
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let items: Vec<&str> = args.hparams.iter().map(String::as_str).collect();
    let hparams = HParams::parse(&items)?;
    let (initial, _) = vrl_models::weights::load_safetensors(&args.params)?;
    let (grads, _) = vrl_models::weights::load_safetensors(&args.grads)?;
    let mut names: Vec<&String> = initial.keys().collect();
    names.sort();
    let mut params: Vec<NamedParam> = Vec::with_capacity(names.len());
    for name in names {
        let t = &initial[name];
        if !matches!(t.kind(), Kind::Float | Kind::Double) {
            return Err(UserError(format!(
                "{}: parameter `{name}` is {:?}; expected float32 or float64",
                args.params.display(),
                t.kind()
            ))
            .into());
        }
        params.push((name.clone(), t.detach().copy().set_requires_grad(true)));
    }
    let mut opt = vrl_optim::create(
        &args.optimizer,
        &hparams,
        params.iter().map(|(n, p)| (n.clone(), p.shallow_clone())).collect(),
    )?;
    let lr = match hparams.0.get("lr") {
        Some(v) => v.clone(),
        None => {
            let entry = vrl_optim::REGISTRY.iter().find(|e| e.name == opt.name()).expect("a registered name");
            (entry.defaults)().0.get("lr").cloned().unwrap_or(HValue::Num(0.0))
        }
    };
    let HValue::Num(lr) = lr else {
        return Err(UserError(format!("`--hparam lr={lr}`: the learning rate must be a number")).into());
    };
    for k in 0..args.steps {
        opt.zero_grad();
        for (name, p) in &params {
            let key = format!("{k}/{name}");
            let g = grads.get(&key).ok_or_else(|| {
                UserError(format!(
                    "{}: missing gradient `{key}` for parameter `{name}` at step {k} (of {})",
                    args.grads.display(),
                    args.steps
                ))
            })?;
            if g.size() != p.size() {
                return Err(UserError(format!(
                    "{}: gradient `{key}` has shape {:?}, parameter `{name}` has {:?}",
                    args.grads.display(),
                    g.size(),
                    p.size()
                ))
                .into());
            }
            // d/dp Σ p·g = g exactly, accumulated into the zeroed gradient.
            (p * g.to_kind(p.kind()).detach()).sum(p.kind()).backward();
        }
        opt.step(lr)?;
    }
    let out: Vec<NamedParam> = params.iter().map(|(n, p)| (n.clone(), p.detach())).collect();
    vrl_models::weights::save_safetensors(&args.output, &out)?;
    eprintln!(
        "{} steps of {} (lr {lr}) on {} parameter tensor(s); wrote {}",
        args.steps,
        opt.name(),
        out.len(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
