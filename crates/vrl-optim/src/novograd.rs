//! NovoGrad (Ginsburg et al., 2019, "Stochastic Gradient Methods with Layer-wise Adaptive Moments for
//! Training of Deep Networks"), exactly as `pytorch_optimizer.NovoGrad` 4.1.0 (its defaults: coupled
//! weight decay, no gradient averaging):
//!
//! ```text
//! v ← ‖g‖²                     at a tensor's first step,   v ← β₂ v + (1 − β₂) ‖g‖²   afterwards
//! ĝ ← g / (√v + ε) + λ θ       (coupled weight decay; with weight_decouple, θ ← θ (1 − η λ) instead)
//! m ← ĝ                        at a tensor's first step,   m ← β₁ m + a ĝ   afterwards
//!                              (a = 1 − β₁ with grad_averaging, 1 without)
//! θ ← θ − η m
//! ```
//!
//! v (`grads_ema`) is one number per tensor. Weight decay applies to parameters with two or more
//! dimensions only. `weight_decay_mode` is `"coupled"` (the default: λθ added to the normalised
//! gradient, as in the reference) or `"decoupled"`; the reference's `weight_decouple` flag is an alias
//! (`true` means `"decoupled"`). The fused path is two passes: ‖g‖², then the update.

use std::collections::HashMap;

use tch::Tensor;

use crate::decay::{LegacyFlag, WeightDecay, WeightDecayMode};
use crate::fused::{self, Real, with_real};
use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, defaults_with, state_tensor, step_count, zero_grads,
};

/// NovoGrad: momentum of gradients normalised by a per-tensor second moment.
#[derive(Debug)]
pub struct NovoGrad {
    params: Vec<NamedParam>,
    /// Per tensor, once it has had a gradient: (`grads_ema`, a 0-d tensor; `moments`).
    states: Vec<Option<(Tensor, Tensor)>>,
    betas: [f64; 2],
    eps: f64,
    decay: WeightDecay,
    grad_averaging: bool,
    fused: bool,
    step: i64,
}

impl NovoGrad {
    /// `pytorch_optimizer.NovoGrad`'s defaults.
    pub fn defaults() -> HParams {
        defaults_with(
            [
                ("lr", HValue::Num(1e-3)),
                ("betas", HValue::Pair([0.95, 0.98])),
                ("eps", HValue::Num(1e-8)),
                ("weight_decay", HValue::Num(0.0)),
                ("weight_decouple", HValue::Bool(false)),
                ("grad_averaging", HValue::Bool(false)),
            ],
            WeightDecayMode::Coupled,
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("novograd", Self::defaults())?;
        h.non_negative("lr")?;
        let states = params.iter().map(|_| None).collect();
        Ok(NovoGrad {
            params,
            states,
            betas: h.unit_pair("betas")?,
            eps: h.non_negative("eps")?,
            decay: WeightDecay::resolve(
                &h,
                "novograd",
                &[WeightDecayMode::Coupled, WeightDecayMode::Decoupled],
                Some(LegacyFlag {
                    key: "weight_decouple",
                    when_true: WeightDecayMode::Decoupled,
                    when_false: WeightDecayMode::Coupled,
                }),
            )?,
            grad_averaging: h.flag("grad_averaging")?,
            fused: h.flag("fused")?,
            step: 0,
        })
    }
}

impl Optimizer for NovoGrad {
    fn name(&self) -> &'static str {
        "novograd"
    }

    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let [b1, b2] = self.betas;
        for ((_, p), state) in self.params.iter_mut().zip(&mut self.states) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let mut tensors = vec![&*p, &g];
            tensors.extend(state.as_ref().map(|(_, m)| m));
            if let Some(dtype) = fused::eligible(self.fused, &tensors) {
                let grad_sq = with_real!(dtype, T => grad_sq::<T>(&g))?;
                let (ema, first) = match state {
                    Some((ema, _)) => (ema.f_lerp_(&grad_sq, 1.0 - b2)?, false),
                    None => (grad_sq, true),
                };
                let denom =
                    ema.f_sqrt()?.f_add_scalar(self.eps)?.f_to_kind(tch::Kind::Double)?.f_double_value(&[])?;
                let moments = match state {
                    Some((_, m)) => m.shallow_clone(),
                    None => state.insert((ema, p.f_zeros_like()?)).1.shallow_clone(),
                };
                let k = Kernel {
                    denom,
                    wd: self.decay.coupled_lambda(p).unwrap_or(0.0),
                    factor: self.decay.decoupled_factor(p, lr).unwrap_or(1.0),
                    // At the first step, m ← 0 · 0 + ĝ · 1 = ĝ exactly.
                    b1: if first { 0.0 } else { b1 },
                    scale: if !first && self.grad_averaging { 1.0 - b1 } else { 1.0 },
                    lr,
                };
                with_real!(dtype, T => k.run::<T>(p, &g, &moments))?;
                continue;
            }
            let grad_sq = g.f_square()?.f_sum(g.kind())?;
            let ema = match state {
                Some((ema, _)) => ema.f_lerp_(&grad_sq, 1.0 - b2)?,
                None => grad_sq,
            };
            let mut g = g.f_div(&ema.f_sqrt()?.f_add_scalar(self.eps)?)?;
            g = self.decay.couple(p, g)?;
            self.decay.decouple(p, lr)?;
            let moments = match state {
                Some((_, m)) => {
                    if self.grad_averaging {
                        g = g.f_mul_scalar(1.0 - b1)?;
                    }
                    let _ = m.f_mul_scalar_(b1)?;
                    m.f_add_(&g)?
                }
                None => state.insert((ema, g)).1.shallow_clone(),
            };
            let _ = p.f_sub_(&(moments * lr))?;
        }
        Ok(())
    }

    fn zero_grad(&mut self) {
        zero_grads(&mut self.params);
    }

    fn state(&self) -> Vec<NamedParam> {
        let mut out = vec![("step".to_string(), Tensor::from(self.step))];
        for ((name, _), state) in self.params.iter().zip(&self.states) {
            if let Some((ema, m)) = state {
                out.push((format!("{name}.grads_ema"), ema.shallow_clone()));
                out.push((format!("{name}.moments"), m.shallow_clone()));
            }
        }
        out
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        self.step = step_count("novograd", state)?;
        let scalar = Tensor::from(0.0);
        for ((name, p), s) in self.params.iter().zip(&mut self.states) {
            // Both absent for a parameter that has not had a gradient yet.
            let (ema_key, m_key) = (format!("{name}.grads_ema"), format!("{name}.moments"));
            *s = match state.contains_key(&ema_key) || state.contains_key(&m_key) {
                true => {
                    let load = |key: &str, like: &Tensor| {
                        state_tensor("novograd", state, key, like)
                            .map(|t| t.to_kind(p.kind()).to_device(p.device()).copy())
                    };
                    Some((load(&ema_key, &scalar)?, load(&m_key, p)?))
                }
                false => None,
            };
        }
        Ok(())
    }
}

/// `Σ g²` as a 0-d tensor of the gradient's dtype.
fn grad_sq<T: Real>(g: &Tensor) -> Result<Tensor, OptimError> {
    let partials = fused::map_chunks::<T, 0, 1, _>(
        [],
        [g],
        #[inline(always)]
        move |[], [g]| {
            fused::block_sq_sums(
                g.len(),
                #[inline(always)]
                |r, [sq]| sq[..r.len()].copy_from_slice(&g[r]),
            )
        },
    )?;
    let [sq] = fused::total(&partials);
    Ok(Tensor::f_full([], T::of(sq).f64(), (T::KIND, tch::Device::Cpu))?)
}

/// The fused NovoGrad update of one parameter: `ĝ = g / d + λ_c θ`, `θ ← f θ`, `m ← β₁ m + s ĝ`,
/// `θ ← θ − η m`.
struct Kernel {
    /// `√v + ε`.
    denom: f64,
    wd: f64,
    factor: f64,
    b1: f64,
    scale: f64,
    lr: f64,
}

impl Kernel {
    fn run<T: Real>(&self, p: &Tensor, g: &Tensor, m: &Tensor) -> Result<(), OptimError> {
        let [denom, wd, factor, b1, scale, lr] =
            [self.denom, self.wd, self.factor, self.b1, self.scale, self.lr].map(T::of);
        fused::for_each::<T, 2, 1>(
            [p, m],
            [g],
            #[inline(always)]
            move |[p, m], [g]| {
                let n = p.len();
                let (m, g) = (&mut m[..n], &g[..n]);
                for i in 0..n {
                    let gi = (g[i] / denom + p[i] * wd) * scale;
                    let mi = m[i] * b1 + gi;
                    m[i] = mi;
                    p[i] = p[i] * factor - mi * lr;
                }
            },
        )
    }
}
