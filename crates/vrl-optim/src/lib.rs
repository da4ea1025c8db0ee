//! Optimizers with explicit state, PyTorch's hyper-parameter names and defaults, found by name.
//!
//! Each optimizer owns the parameters it updates (tch tensors share storage with the model's
//! `VarStore`), keeps its state as named tensors so that a checkpoint can save and restore it, and
//! takes its learning rate from the caller at every step, so schedules are plain functions of the step.
//!
//! Weight decay: by default ([`create`]) it applies to parameters with two or more dimensions only
//! (biases, normalisation weights and 1-d tokens get none; [`decays`]). [`create_with_groups`] takes,
//! in addition, one no-decay flag per parameter — usually [`ParamGroups::flags`], which also exempts
//! names such as `cls_token`, `pos_embed` or `*prompt*` — and builds the optimizer as two parameter
//! groups, exactly like timm's `param_groups_weight_decay`: the flagged parameters in a group with
//! `weight_decay = 0`, the others with the given hyper-parameters. The dim ≥ 2 rule still holds inside
//! the decayed group, so a parameter decays when it has two or more dimensions and is not flagged.
//! [`clip_grad_norm`] is `torch.nn.utils.clip_grad_norm_`.
//!
//! How weight decay enters the update is the hyper-parameter `weight_decay_mode` ([`WeightDecayMode`]:
//! `"coupled"`, `"decoupled"` or Adan's `"proximal"`), defaulting to each reference's own; modes an
//! optimizer does not implement are refused. On the CPU, for contiguous float32 / float64 tensors,
//! every update is a fused loop over the parameter's, gradient's and state's memory (one pass, or a
//! reduction pass and an update pass where a norm is needed); elsewhere, and with `fused = false`, it
//! is a chain of tensor operations. Both paths follow the references' order of operations.
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

// The fused kernels index several equally long slices in one loop on purpose (it is the form the
// compiler vectorises); iterator chains over five zipped slices would obscure the update formulas.
#![allow(clippy::needless_range_loop)]

mod adabelief;
mod adabound;
mod adadelta;
mod adafactor;
mod adagrad;
mod adam;
mod adamax;
mod adamp;
mod adamw;
mod adan;
mod decay;
mod fused;
mod groups;
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
mod sophia;

use std::collections::HashMap;

pub use adabelief::AdaBelief;
pub use adabound::AdaBound;
pub use adadelta::Adadelta;
pub use adafactor::AdaFactor;
pub use adagrad::Adagrad;
pub use adam::Adam;
pub use adamax::Adamax;
pub use adamp::AdamP;
pub use adamw::AdamW;
pub use adan::Adan;
pub use decay::WeightDecayMode;
pub use groups::{ParamGroups, clip_grad_norm};
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
pub use sophia::{HessianNoise, SophiaH, hutchinson_estimate, hutchinson_sample};
use tch::Tensor;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A gradient holds NaN or infinity; the step was not taken.
    #[error(
        "optimizer `{optimizer}`: the gradient of `{param}` is not finite (NaN or infinity); step refused"
    )]
    NonFinite {
        /// The optimizer.
        optimizer: String,
        /// The first parameter with a non-finite gradient.
        param: String,
    },
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
    /// A Hessian-diagonal estimate is missing where the step needs one, not taken by the optimizer, or
    /// of the wrong number or shape.
    #[error("optimizer `{optimizer}`, Hessian estimate: {message}")]
    Hessian {
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
    /// Whether the next [`Optimizer::step`] needs a Hessian-diagonal estimate given through
    /// [`Optimizer::update_hessian`] (second-order optimizers such as `sophia`; never for the others).
    fn hessian_due(&self) -> bool {
        false
    }
    /// Gives the next step one Hessian-diagonal estimate per parameter, in parameter order and of the
    /// parameters' shapes (see [`hutchinson_estimate`]). First-order optimizers refuse it.
    fn update_hessian(&mut self, estimates: Vec<Tensor>) -> Result<(), OptimError> {
        let _ = estimates;
        Err(OptimError::Hessian {
            optimizer: self.name().to_string(),
            message: "this optimizer takes no Hessian estimates".into(),
        })
    }
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
    Entry {
        name: "adabound",
        defaults: AdaBound::defaults,
        build: |h, p| Ok(Box::new(AdaBound::new(h, p)?)),
    },
    Entry {
        name: "adafactor",
        defaults: AdaFactor::defaults,
        build: |h, p| Ok(Box::new(AdaFactor::new(h, p)?)),
    },
    Entry { name: "sophia", defaults: SophiaH::defaults, build: |h, p| Ok(Box::new(SophiaH::new(h, p)?)) },
];

/// Creates the optimizer `name` (case-insensitive) over `params`; `hparams` override its defaults.
pub fn create(
    name: &str,
    hparams: &HParams,
    params: Vec<NamedParam>,
) -> Result<Box<dyn Optimizer>, OptimError> {
    let watch = watch_list(&params);
    Ok(Box::new(Checked { inner: (find(name)?.build)(hparams, params)?, params: watch }))
}

fn watch_list(params: &[NamedParam]) -> Vec<NamedParam> {
    params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
}

/// Refuses a step whose gradients hold NaN or infinity (naming the first such parameter), so that a
/// bad gradient is reported instead of spreading into the parameters and the state. One reduction per
/// parameter and a single device sync per step.
struct Checked {
    inner: Box<dyn Optimizer>,
    params: Vec<NamedParam>,
}

impl Checked {
    fn check(&self) -> Result<(), OptimError> {
        // CPU gradients the fused path can read are scanned in place, all in one parallel loop; the
        // others by tensor ops.
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
        let (finite, unread) = fused::all_finite_many(&grads.iter().collect::<Vec<_>>())?;
        let flags = unread.iter().map(|&i| grads[i].f_isfinite()?.f_all()).collect::<Result<Vec<_>, _>>()?;
        if finite && (flags.is_empty() || Tensor::stack(&flags, 0).all().int64_value(&[]) == 1) {
            return Ok(());
        }
        let bad = self
            .params
            .iter()
            .find(|(_, p)| {
                let g = p.grad();
                g.defined() && g.isfinite().all().int64_value(&[]) == 0
            })
            .map_or_else(String::new, |(n, _)| n.clone());
        Err(OptimError::NonFinite { optimizer: self.inner.name().to_string(), param: bad })
    }
}

impl Optimizer for Checked {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(OptimError::HParam {
                optimizer: self.inner.name().to_string(),
                key: "lr".into(),
                message: format!("the learning rate given to step must be a finite number >= 0, got {lr}"),
            });
        }
        self.check()?;
        self.inner.step(lr)
    }
    fn zero_grad(&mut self) {
        self.inner.zero_grad()
    }
    fn state(&self) -> Vec<NamedParam> {
        self.inner.state()
    }
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        self.inner.load_state(state)
    }
    fn hessian_due(&self) -> bool {
        self.inner.hessian_due()
    }
    /// Checks count, shapes and finiteness of all estimates before the optimizer (or either of its
    /// groups) takes any, so that a refused estimate leaves nothing half-taken.
    fn update_hessian(&mut self, estimates: Vec<Tensor>) -> Result<(), OptimError> {
        let bad = |message: String| OptimError::Hessian { optimizer: self.inner.name().to_string(), message };
        if estimates.len() != self.params.len() {
            return Err(bad(format!("{} estimates for {} parameters", estimates.len(), self.params.len())));
        }
        for ((name, p), h) in self.params.iter().zip(&estimates) {
            if h.size() != p.size() {
                return Err(bad(format!("`{name}`: estimate of shape {:?} for {:?}", h.size(), p.size())));
            }
            if h.f_isfinite()?.f_all()?.f_int64_value(&[])? == 0 {
                return Err(bad(format!(
                    "the estimate for `{name}` is not finite (NaN or infinity); not taken"
                )));
            }
        }
        self.inner.update_hessian(estimates)
    }
}

/// Creates the optimizer `name` like [`create`], with weight decay switched off for the parameters
/// whose `no_decay` flag is set (one flag per parameter, e.g. from [`ParamGroups::flags`]): they go
/// into a second parameter group with `weight_decay = 0` (timm's `param_groups_weight_decay`). Every
/// optimizer updates each parameter independently, so this is the same as torch with two param groups.
/// The state holds both groups' tensors under the parameters' names (and one `step`). With no flag set,
/// or for an optimizer without `weight_decay`, it is [`create`].
pub fn create_with_groups(
    name: &str,
    hparams: &HParams,
    params: Vec<NamedParam>,
    no_decay: &[bool],
) -> Result<Box<dyn Optimizer>, OptimError> {
    let entry = find(name)?;
    groups::check_flags(entry.name, params.len(), no_decay.len())?;
    let has_decay = (entry.defaults)().0.contains_key("weight_decay");
    if !has_decay || !no_decay.iter().any(|&f| f) {
        return create(entry.name, hparams, params);
    }
    let watch = watch_list(&params);
    let (mut decay, mut rest) = (Vec::new(), Vec::new());
    for (p, &flag) in params.into_iter().zip(no_decay) {
        if flag { rest.push(p) } else { decay.push(p) }
    }
    let mut zero = hparams.clone();
    zero.0.insert("weight_decay".into(), HValue::Num(0.0));
    let grouped = Grouped {
        decay: (entry.build)(hparams, decay)?,
        no_decay: (entry.build)(&zero, rest)?,
        flags: no_decay.to_vec(),
    };
    Ok(Box::new(Checked { inner: Box::new(grouped), params: watch }))
}

/// Two instances of one optimizer, over the decayed and the non-decayed parameters.
struct Grouped {
    decay: Box<dyn Optimizer>,
    no_decay: Box<dyn Optimizer>,
    /// Per parameter, in the caller's order: whether it went to `no_decay`.
    flags: Vec<bool>,
}

impl Optimizer for Grouped {
    fn name(&self) -> &'static str {
        self.decay.name()
    }

    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        self.decay.step(lr)?;
        self.no_decay.step(lr)
    }

    fn zero_grad(&mut self) {
        self.decay.zero_grad();
        self.no_decay.zero_grad();
    }

    fn state(&self) -> Vec<NamedParam> {
        // Parameter names are distinct, so only the shared counters (`step`) appear twice; keep one.
        let mut out = self.decay.state();
        for (k, t) in self.no_decay.state() {
            if !out.iter().any(|(n, _)| *n == k) {
                out.push((k, t));
            }
        }
        out
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        self.decay.load_state(state)?;
        self.no_decay.load_state(state)
    }

    fn hessian_due(&self) -> bool {
        self.decay.hessian_due() || self.no_decay.hessian_due()
    }

    fn update_hessian(&mut self, estimates: Vec<Tensor>) -> Result<(), OptimError> {
        if estimates.len() != self.flags.len() {
            return Err(OptimError::Hessian {
                optimizer: self.name().into(),
                message: format!("{} estimates for {} parameters", estimates.len(), self.flags.len()),
            });
        }
        let (mut decay, mut rest) = (Vec::new(), Vec::new());
        for (h, &flag) in estimates.into_iter().zip(&self.flags) {
            if flag { rest.push(h) } else { decay.push(h) }
        }
        self.decay.update_hessian(decay)?;
        self.no_decay.update_hessian(rest)
    }
}

fn find(name: &str) -> Result<&'static Entry, OptimError> {
    REGISTRY.iter().find(|e| e.name.eq_ignore_ascii_case(name)).ok_or_else(|| OptimError::Unknown {
        name: name.to_string(),
        available: REGISTRY.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
    })
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

/// An optimizer's hyper-parameters and defaults: its own `entries`, then `weight_decay_mode` (the
/// reference's mode) and `fused` (true: fused updates where the tensors allow, see the crate docs).
pub(crate) fn defaults_with<const N: usize>(entries: [(&str, HValue); N], mode: WeightDecayMode) -> HParams {
    HParams(
        entries
            .into_iter()
            .chain([decay::mode_default(mode), ("fused", HValue::Bool(true))])
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
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

/// Zeroes the gradients of `params`.
pub(crate) fn zero_grads(params: &mut [NamedParam]) {
    for (_, p) in params {
        p.zero_grad();
    }
}

/// The state of an optimizer with per-parameter buffers: `step`, then `<param>.<buffer>` for every
/// parameter and buffer (`buffers[k].1[i]` belongs to `params[i]`).
pub(crate) fn buffers_state(
    step: i64,
    params: &[NamedParam],
    buffers: &[(&str, &[Tensor])],
) -> Vec<NamedParam> {
    let mut out = vec![("step".to_string(), Tensor::from(step))];
    for (i, (name, _)) in params.iter().enumerate() {
        for (key, b) in buffers {
            out.push((format!("{name}.{key}"), b[i].shallow_clone()));
        }
    }
    out
}

/// Restores buffers saved by [`buffers_state`] (shapes checked) and returns the saved step.
pub(crate) fn load_buffers(
    optimizer: &str,
    state: &HashMap<String, Tensor>,
    params: &[NamedParam],
    buffers: &mut [(&str, &mut [Tensor])],
) -> Result<i64, OptimError> {
    let step = step_count(optimizer, state)?;
    for (i, (name, _)) in params.iter().enumerate() {
        for (key, b) in buffers.iter_mut() {
            load_into(optimizer, state, &format!("{name}.{key}"), &mut b[i])?;
        }
    }
    Ok(step)
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

    /// For every optimizer: a NaN gradient is refused (naming the parameter) and leaves the parameters
    /// untouched; zero gradients leave parameters and state finite.
    #[test]
    fn nan_gradients_are_refused_and_zero_gradients_are_harmless() {
        for entry in REGISTRY {
            let w = Tensor::from_slice(&[1.0f64, -2.0, 0.5, 3.0]).reshape([2, 2]).set_requires_grad(true);
            let b = Tensor::from_slice(&[0.1f64, 0.2]).set_requires_grad(true);
            let mut opt = create(
                entry.name,
                &HParams::default(),
                vec![("w".into(), w.shallow_clone()), ("b".into(), b.shallow_clone())],
            )
            .unwrap();
            // Zero gradients, five steps.
            for _ in 0..5 {
                opt.zero_grad();
                ((&w * 0.0).sum(tch::Kind::Double) + (&b * 0.0).sum(tch::Kind::Double)).backward();
                if opt.hessian_due() {
                    opt.update_hessian(vec![w.zeros_like(), b.zeros_like()]).unwrap();
                }
                opt.step(0.01).unwrap();
            }
            let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) == 1;
            assert!(finite(&w) && finite(&b), "{}: zero gradients made parameters non-finite", entry.name);
            for (k, t) in opt.state() {
                assert!(finite(&t), "{}: state `{k}` is not finite after zero gradients", entry.name);
            }
            // A NaN in `b`'s gradient.
            let before = (w.copy(), b.copy());
            opt.zero_grad();
            ((&w * 1.0).sum(tch::Kind::Double) + (&b * f64::NAN).sum(tch::Kind::Double)).backward();
            let err = opt.step(0.01).unwrap_err().to_string();
            assert!(err.contains("`b`") && err.contains("not finite"), "{}: {err}", entry.name);
            assert!(
                w.equal(&before.0) && b.equal(&before.1),
                "{}: a refused step changed parameters",
                entry.name
            );
        }
    }

    /// For every optimizer with weight decay: the flagged 2-d parameter follows the same optimizer with
    /// `weight_decay = 0`, the unflagged one the optimizer with decay; the state round-trips.
    #[test]
    fn groups_switch_decay_off_per_parameter() {
        let param = |seed: f64| {
            Tensor::from_slice(&[1.0, -2.0, 0.5, 3.0])
                .reshape([2, 2])
                .g_mul_scalar(seed)
                .set_requires_grad(true)
        };
        let run = |opt: &mut Box<dyn Optimizer>, ps: &[&Tensor]| {
            for k in 0..3 {
                opt.zero_grad();
                // The linear term keeps the gradient off the parameter's direction (LARS is blind to
                // decay along it).
                let shift = Tensor::from_slice(&[0.3, -0.1, 0.2, 0.5]).reshape([2, 2]);
                let loss = ps
                    .iter()
                    .map(|p| {
                        (*p * *p).sum(tch::Kind::Double) * (k + 1) as f64
                            + (*p * &shift).sum(tch::Kind::Double)
                    })
                    .sum::<Tensor>();
                loss.backward();
                if opt.hessian_due() {
                    // Second-order optimizers (Sophia): a fixed positive curvature estimate.
                    opt.update_hessian(ps.iter().map(|p| p.ones_like() * 2.0).collect()).unwrap();
                }
                opt.step(0.01).unwrap();
            }
        };
        for entry in REGISTRY.iter().filter(|e| (e.defaults)().0.contains_key("weight_decay")) {
            let mut h = HParams::parse(&["weight_decay=0.1"]).unwrap();
            h.0.insert("lr".into(), HValue::Num(0.01));
            let (w, v) = (param(1.0), param(0.7));
            let flags = [true, false];
            let mut grouped = create_with_groups(
                entry.name,
                &h,
                vec![("w".into(), w.shallow_clone()), ("v".into(), v.shallow_clone())],
                &flags,
            )
            .unwrap();
            run(&mut grouped, &[&w, &v]);
            let mut zero = h.clone();
            zero.0.insert("weight_decay".into(), HValue::Num(0.0));
            let (w0, v0) = (param(1.0), param(0.7));
            let mut a = create(entry.name, &zero, vec![("w".into(), w0.shallow_clone())]).unwrap();
            let mut b = create(entry.name, &h, vec![("v".into(), v0.shallow_clone())]).unwrap();
            run(&mut a, &[&w0]);
            run(&mut b, &[&v0]);
            assert!(w.allclose(&w0, 0.0, 0.0, false) && v.allclose(&v0, 0.0, 0.0, false), "{}", entry.name);
            let w1 = param(1.0);
            let mut c = create(entry.name, &h, vec![("w".into(), w1.shallow_clone())]).unwrap();
            run(&mut c, &[&w1]);
            assert!(!w.allclose(&w1, 0.0, 0.0, false), "{}: the flag made no difference", entry.name);
            let state = grouped.state();
            assert_eq!(state.iter().filter(|(k, _)| k == "step").count(), 1, "{}", entry.name);
            let map: HashMap<_, _> = state.into_iter().collect();
            let mut fresh = create_with_groups(
                entry.name,
                &h,
                vec![("w".into(), param(1.0)), ("v".into(), param(0.7))],
                &flags,
            )
            .unwrap();
            fresh.load_state(&map).unwrap_or_else(|e| panic!("{}: {e}", entry.name));
            let again: HashMap<_, _> = fresh.state().into_iter().collect();
            assert_eq!(again.len(), map.len(), "{}", entry.name);
            for (k, t) in &map {
                assert!(again[k].allclose(t, 0.0, 0.0, false), "{}: {k}", entry.name);
            }
        }
        let e = create_with_groups("sgd", &HParams::default(), vec![("w".into(), param(1.0))], &[])
            .err()
            .unwrap();
        assert!(e.to_string().contains("0 no-decay flags for 1 parameters"), "{e}");
    }
}
