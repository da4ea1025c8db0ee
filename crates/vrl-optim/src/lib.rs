//! Optimizers with explicit state, PyTorch's hyper-parameter names and defaults, found by name.
//!
//! Each optimizer owns the parameters it updates (tch tensors share storage with the model's
//! `VarStore`), keeps its state as named tensors so that a checkpoint can save and restore it, and
//! takes its learning rate from the caller at every step, so schedules are plain functions of the step.
//! Weight decay applies to parameters with two or more dimensions only (biases and normalisation
//! weights get none), as in timm's default parameter groups.
//!
//! ```
//! use tch::{Kind, Tensor};
//! use vrl_optim::{HParams, create};
//!
//! let w = Tensor::ones([2, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
//! let mut opt = create("AdamW", &HParams::parse(&["lr=0.1"]).unwrap(), vec![("w".into(), w.shallow_clone())]).unwrap();
//! (&w * &w).sum(Kind::Float).backward();
//! opt.step(0.1).unwrap();
//! assert!(w.double_value(&[0, 0]) < 1.0);
//! assert_eq!(opt.name(), "adamw");
//! ```

mod adabelief;
mod adadelta;
mod adagrad;
mod adam;
mod adamax;
mod adamp;
mod adamw;
mod adan;
mod hparams;
mod lamb;
mod lars;
mod lion;
mod nadam;
mod novograd;
mod radam;
mod rmsprop;
mod schedule;
mod sgd;
mod sgdp;

use std::collections::HashMap;

pub use adabelief::AdaBelief;
pub use adadelta::Adadelta;
pub use adagrad::Adagrad;
pub use adam::Adam;
pub use adamax::Adamax;
pub use adamp::AdamP;
pub use adamw::AdamW;
pub use adan::Adan;
pub use hparams::{HParams, HValue};
pub use lamb::Lamb;
pub use lars::Lars;
pub use lion::Lion;
pub use nadam::NAdam;
pub use novograd::NovoGrad;
pub use radam::RAdam;
pub use rmsprop::RmsProp;
pub use schedule::{Anneal, Schedule};
pub use sgd::Sgd;
pub use sgdp::Sgdp;
use tch::Tensor;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// No optimizer of that name.
    #[error("unknown optimizer `{name}`; available: {available}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The registered names.
        available: String,
    },
    /// A hyper-parameter is unknown, of the wrong type, or out of range.
    #[error("optimizer `{optimizer}`, hyper-parameter `{key}`: {message}")]
    HParam {
        /// The optimizer.
        optimizer: String,
        /// The hyper-parameter.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// A state tensor is missing or has the wrong shape when loading.
    #[error("optimizer `{optimizer}` state: {message}")]
    State {
        /// The optimizer.
        optimizer: String,
        /// What was wrong.
        message: String,
    },
    /// LibTorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// A named parameter.
pub type NamedParam = (String, Tensor);

/// An optimizer with explicit, checkpointable state.
pub trait Optimizer: Send {
    /// The registry name, e.g. `adamw`.
    fn name(&self) -> &'static str;
    /// Applies one update with learning rate `lr`, using the gradients stored on the parameters.
    /// Parameters without a gradient are left alone.
    fn step(&mut self, lr: f64) -> Result<(), OptimError>;
    /// Zeroes the parameters' gradients.
    fn zero_grad(&mut self);
    /// The state as named tensors (e.g. `conv1.weight.exp_avg`, `step`).
    fn state(&self) -> Vec<NamedParam>;
    /// Restores state saved by [`Optimizer::state`].
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError>;
}

/// Builds an optimizer from hyper-parameters over named parameters.
pub type Builder = fn(&HParams, Vec<NamedParam>) -> Result<Box<dyn Optimizer>, OptimError>;

/// A registry entry.
pub struct Entry {
    /// The name (lower case).
    pub name: &'static str,
    /// The hyper-parameters and their defaults.
    pub defaults: fn() -> HParams,
    /// The constructor.
    pub build: Builder,
}

/// Every optimizer, by name.
pub const REGISTRY: &[Entry] = &[
    Entry { name: "sgd", defaults: Sgd::defaults, build: |h, p| Ok(Box::new(Sgd::new(h, p)?)) },
    Entry { name: "adamw", defaults: AdamW::defaults, build: |h, p| Ok(Box::new(AdamW::new(h, p)?)) },
    Entry { name: "adam", defaults: Adam::defaults, build: |h, p| Ok(Box::new(Adam::new(h, p)?)) },
    Entry { name: "rmsprop", defaults: RmsProp::defaults, build: |h, p| Ok(Box::new(RmsProp::new(h, p)?)) },
    Entry { name: "adagrad", defaults: Adagrad::defaults, build: |h, p| Ok(Box::new(Adagrad::new(h, p)?)) },
    Entry {
        name: "adadelta",
        defaults: Adadelta::defaults,
        build: |h, p| Ok(Box::new(Adadelta::new(h, p)?)),
    },
    Entry { name: "adamax", defaults: Adamax::defaults, build: |h, p| Ok(Box::new(Adamax::new(h, p)?)) },
    Entry { name: "nadam", defaults: NAdam::defaults, build: |h, p| Ok(Box::new(NAdam::new(h, p)?)) },
    Entry { name: "radam", defaults: RAdam::defaults, build: |h, p| Ok(Box::new(RAdam::new(h, p)?)) },
    Entry { name: "lion", defaults: Lion::defaults, build: |h, p| Ok(Box::new(Lion::new(h, p)?)) },
    Entry { name: "lamb", defaults: Lamb::defaults, build: |h, p| Ok(Box::new(Lamb::new(h, p)?)) },
    Entry { name: "adan", defaults: Adan::defaults, build: |h, p| Ok(Box::new(Adan::new(h, p)?)) },
    Entry {
        name: "adabelief",
        defaults: AdaBelief::defaults,
        build: |h, p| Ok(Box::new(AdaBelief::new(h, p)?)),
    },
    Entry { name: "sgdp", defaults: Sgdp::defaults, build: |h, p| Ok(Box::new(Sgdp::new(h, p)?)) },
    Entry { name: "adamp", defaults: AdamP::defaults, build: |h, p| Ok(Box::new(AdamP::new(h, p)?)) },
    Entry { name: "lars", defaults: Lars::defaults, build: |h, p| Ok(Box::new(Lars::new(h, p)?)) },
    Entry {
        name: "novograd",
        defaults: NovoGrad::defaults,
        build: |h, p| Ok(Box::new(NovoGrad::new(h, p)?)),
    },
];

/// Creates the optimizer `name` (case-insensitive) over `params`; `hparams` override its defaults.
pub fn create(
    name: &str,
    hparams: &HParams,
    params: Vec<NamedParam>,
) -> Result<Box<dyn Optimizer>, OptimError> {
    let entry =
        REGISTRY.iter().find(|e| e.name.eq_ignore_ascii_case(name)).ok_or_else(|| OptimError::Unknown {
            name: name.to_string(),
            available: REGISTRY.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
        })?;
    (entry.build)(hparams, params)
}

/// Whether weight decay applies to a parameter: tensors with two or more dimensions (weights of
/// convolutions and linear layers), not biases, normalisation weights or 1-d tokens.
pub fn decays(param: &Tensor) -> bool {
    param.dim() >= 2
}

pub(crate) fn state_tensor<'a>(
    optimizer: &str,
    state: &'a HashMap<String, Tensor>,
    key: &str,
    like: &Tensor,
) -> Result<&'a Tensor, OptimError> {
    let t = state.get(key).ok_or_else(|| OptimError::State {
        optimizer: optimizer.to_string(),
        message: format!("missing tensor `{key}`"),
    })?;
    if t.size() != like.size() {
        return Err(OptimError::State {
            optimizer: optimizer.to_string(),
            message: format!("tensor `{key}` has shape {:?}, expected {:?}", t.size(), like.size()),
        });
    }
    Ok(t)
}

/// The gradient with coupled L2 weight decay, `g + λθ` (torch's `grad.add(param, alpha=λ)`), for a
/// parameter that [`decays`]; `g` unchanged otherwise.
pub(crate) fn coupled_weight_decay(
    param: &Tensor,
    grad: Tensor,
    weight_decay: f64,
) -> Result<Tensor, OptimError> {
    Ok(if weight_decay != 0.0 && decays(param) { grad.f_add(&(param * weight_decay))? } else { grad })
}

/// Decoupled weight decay, `θ ← θ (1 − η λ)`, on a parameter that [`decays`].
pub(crate) fn decoupled_weight_decay(
    param: &mut Tensor,
    lr: f64,
    weight_decay: f64,
) -> Result<(), OptimError> {
    if weight_decay != 0.0 && decays(param) {
        let _ = param.f_mul_scalar_(1.0 - lr * weight_decay)?;
    }
    Ok(())
}

/// Copies the state tensor `key` into `dst` (same shape required; converted to `dst`'s kind and device).
pub(crate) fn load_into(
    optimizer: &str,
    state: &HashMap<String, Tensor>,
    key: &str,
    dst: &mut Tensor,
) -> Result<(), OptimError> {
    let _guard = tch::no_grad_guard();
    let src = state_tensor(optimizer, state, key, dst)?;
    dst.f_copy_(src)?;
    Ok(())
}

pub(crate) fn step_count(optimizer: &str, state: &HashMap<String, Tensor>) -> Result<i64, OptimError> {
    state.get("step").map(|t| t.int64_value(&[])).ok_or_else(|| OptimError::State {
        optimizer: optimizer.to_string(),
        message: "missing tensor `step`".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_registry() {
        let e = create("adamz", &HParams::default(), vec![]).err().unwrap();
        let names: Vec<_> = REGISTRY.iter().map(|e| e.name).collect();
        assert!(names.starts_with(&["sgd", "adamw"]), "{names:?}");
        assert_eq!(e.to_string(), format!("unknown optimizer `adamz`; available: {}", names.join(", ")));
        assert!(create("SGD", &HParams::default(), vec![]).is_ok());
    }

    #[test]
    fn every_entry_builds_from_its_defaults() {
        for (i, entry) in REGISTRY.iter().enumerate() {
            assert_eq!(entry.name, entry.name.to_lowercase());
            assert!(REGISTRY[..i].iter().all(|e| e.name != entry.name), "`{}` twice", entry.name);
            let w = Tensor::ones([2, 2], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
            let opt = create(entry.name, &(entry.defaults)(), vec![("w".into(), w)])
                .unwrap_or_else(|e| panic!("{}: {e}", entry.name));
            assert_eq!(opt.name(), entry.name);
        }
    }
}
