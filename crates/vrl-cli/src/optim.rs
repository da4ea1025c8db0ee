//! `vrl optim`: replay an optimizer on recorded gradients.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tch::{Kind, Tensor};
use vrl_optim::{HParams, HValue, NamedParam, OptimError};

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
    /// Second-order optimizers (`sophia`) also take Hessian-diagonal estimates, `hessian/{k}/{name}`,
    /// given before step k (required at the steps where the optimizer needs one). Every tensor must
    /// name a parameter of `--params`.
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
    crate::output::check_output(&args.output, "a safetensors file")?;
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
    check_gradient_names(&grads, &params, &args.grads)?;
    let file = args.grads.display();
    for k in 0..args.steps {
        opt.zero_grad();
        for (name, p) in &params {
            let g = step_tensor(&grads, &format!("{k}/{name}"), p, &args.grads, "gradient")?.ok_or_else(
                || {
                    UserError(format!(
                        "{file}: missing gradient `{k}/{name}` for parameter `{name}` at step {k} (of {})",
                        args.steps
                    ))
                },
            )?;
            // d/dp Σ p·g = g exactly, accumulated into the zeroed gradient.
            (p * g.to_kind(p.kind()).detach()).sum(p.kind()).backward();
        }
        let estimates = (params.iter())
            .map(|(name, p)| {
                step_tensor(&grads, &format!("hessian/{k}/{name}"), p, &args.grads, "Hessian estimate")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if estimates.iter().any(Option::is_some) || opt.hessian_due() {
            let estimates = (params.iter().zip(estimates))
                .map(|((name, _), h)| {
                    h.ok_or_else(|| {
                        UserError(format!(
                            "{file}: `{}` needs a Hessian-diagonal estimate for every parameter before step {k}; \
                             missing `hessian/{k}/{name}`",
                            opt.name()
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            opt.update_hessian(estimates).map_err(|e| step_error(e, &file, k))?;
        }
        opt.step(lr).map_err(|e| step_error(e, &file, k))?;
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

/// The tensor `key` of the gradient file if present, checked against the parameter's shape.
fn step_tensor(
    grads: &HashMap<String, Tensor>,
    key: &str,
    param: &Tensor,
    path: &Path,
    what: &str,
) -> anyhow::Result<Option<Tensor>> {
    let Some(t) = grads.get(key) else { return Ok(None) };
    if t.size() != param.size() {
        return Err(UserError(format!(
            "{}: {what} `{key}` has shape {:?}, the parameter has {:?}",
            path.display(),
            t.size(),
            param.size()
        ))
        .into());
    }
    Ok(Some(t.shallow_clone()))
}

/// Every tensor of the gradient file must be `{k}/{param}` or `hessian/{k}/{param}` for a parameter
/// `param` and a step number `k`: a misspelt name is an error rather than a gradient silently unused.
fn check_gradient_names(
    grads: &HashMap<String, Tensor>,
    params: &[NamedParam],
    path: &Path,
) -> anyhow::Result<()> {
    let mut keys: Vec<&String> = grads.keys().collect();
    keys.sort();
    for key in keys {
        let rest = key.strip_prefix("hessian/").unwrap_or(key);
        let ok = rest
            .split_once('/')
            .is_some_and(|(k, name)| k.parse::<u64>().is_ok() && params.iter().any(|(n, _)| n == name));
        if !ok {
            let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
            return Err(UserError(format!(
                "{}: tensor `{key}` is not `{{step}}/{{param}}` or `hessian/{{step}}/{{param}}` for a parameter \
                 of --params ({})",
                path.display(),
                names.join(", ")
            ))
            .into());
        }
    }
    Ok(())
}

/// A refused step or estimate: bad input (a non-finite gradient, a missing or bad Hessian estimate) is
/// the user's; anything else is reported as it is, with the step.
fn step_error(e: OptimError, file: &impl std::fmt::Display, k: u64) -> anyhow::Error {
    match e {
        OptimError::NonFinite { .. } | OptimError::Hessian { .. } => {
            UserError(format!("{file}, step {k}: {e}")).into()
        }
        other => anyhow::Error::from(other).context(format!("{file}, step {k}")),
    }
}
