//! LARS (You et al., 2017, "Large Batch Training of Convolutional Networks"), exactly as
//! `pytorch_optimizer.LARS` 4.1.0:
//!
//! ```text
//! for tensors of dim ≥ 2 (others take plain SGD with momentum, no decay and no scaling):
//!   r ← κ ‖θ‖ / (‖g‖ + λ ‖θ‖),   or 1 where ‖θ‖ = 0 or the denominator is 0   (κ = trust_coefficient)
//!   g ← r (g + λ θ)                                                            (coupled weight decay)
//! b ← μ b + (1 − τ) g                  (b starts at 0; μ = momentum, τ = dampening)
//! g ← g + μ b  (nesterov)   or   g ← b
//! θ ← θ − η g
//! ```
//!
//! Only `weight_decay_mode = "coupled"` is supported (the decay is part of the trust ratio). The fused
//! path is two passes for tensors of dim ≥ 2: the norms, then the update.

use std::collections::HashMap;

use tch::Tensor;

use crate::decay::{WeightDecay, WeightDecayMode};
use crate::fused::{self, Real, with_real};
use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, defaults_with, state_tensor, step_count, zero_grads,
};

/// LARS: SGD with momentum and a layer-wise trust ratio.
#[derive(Debug)]
pub struct Lars {
    params: Vec<NamedParam>,
    momentum_buffers: Vec<Tensor>,
    momentum: f64,
    dampening: f64,
    decay: WeightDecay,
    trust_coefficient: f64,
    nesterov: bool,
    fused: bool,
    step: i64,
}

impl Lars {
    /// `pytorch_optimizer.LARS`'s defaults.
    pub fn defaults() -> HParams {
        defaults_with(
            [
                ("lr", HValue::Num(1e-3)),
                ("weight_decay", HValue::Num(0.0)),
                ("momentum", HValue::Num(0.9)),
                ("dampening", HValue::Num(0.0)),
                ("trust_coefficient", HValue::Num(1e-3)),
                ("nesterov", HValue::Bool(false)),
            ],
            WeightDecayMode::Coupled,
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("lars", Self::defaults())?;
        h.non_negative("lr")?;
        let momentum_buffers = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Ok(Lars {
            params,
            momentum_buffers,
            momentum: h.closed_unit("momentum")?,
            dampening: h.closed_unit("dampening")?,
            decay: WeightDecay::resolve(&h, "lars", &[WeightDecayMode::Coupled], None)?,
            trust_coefficient: h.non_negative("trust_coefficient")?,
            nesterov: h.flag("nesterov")?,
            fused: h.flag("fused")?,
            step: 0,
        })
    }
}

impl Optimizer for Lars {
    fn name(&self) -> &'static str {
        "lars"
    }

    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let mu = self.momentum;
        for ((_, p), b) in self.params.iter_mut().zip(&mut self.momentum_buffers) {
            let mut g = p.grad();
            if !g.defined() {
                continue;
            }
            if let Some(dtype) = fused::eligible(self.fused, &[p, &g, b]) {
                let k = Kernel {
                    scaled: p.dim() > 1,
                    wd: self.decay.lambda,
                    trust_coefficient: self.trust_coefficient,
                    momentum: mu,
                    damp: 1.0 - self.dampening,
                    nesterov: self.nesterov,
                    lr,
                };
                with_real!(dtype, T => k.run::<T>(p, &g, b))?;
                continue;
            }
            if p.dim() > 1 {
                // Tensors of dim ≥ 2 are exactly those that decay (`crate::decays`).
                let wd = self.decay.lambda;
                let param_norm = p.f_norm()?;
                let denom = g.f_norm()?.f_add(&(&param_norm * wd))?;
                let trust = match param_norm.double_value(&[]) > 0.0 && denom.double_value(&[]) > 0.0 {
                    true => (param_norm * self.trust_coefficient).f_div(&denom)?,
                    false => Tensor::from(1.0).to_kind(p.kind()),
                };
                g = g.f_add(&(&*p * wd))?.f_mul(&trust)?;
            }
            if mu > 0.0 {
                let _ = b.f_mul_scalar_(mu)?;
                let _ = b.f_add_(&(&g * (1.0 - self.dampening)))?;
                g = match self.nesterov {
                    true => g.f_add(&(&*b * mu))?,
                    false => b.copy(),
                };
            }
            let _ = p.f_sub_(&(g * lr))?;
        }
        Ok(())
    }

    fn zero_grad(&mut self) {
        zero_grads(&mut self.params);
    }

    fn state(&self) -> Vec<NamedParam> {
        let mut out = vec![("step".to_string(), Tensor::from(self.step))];
        for ((name, _), b) in self.params.iter().zip(&self.momentum_buffers) {
            out.push((format!("{name}.momentum_buffer"), b.shallow_clone()));
        }
        out
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        self.step = step_count("lars", state)?;
        let _guard = tch::no_grad_guard();
        for ((name, p), b) in self.params.iter().zip(&mut self.momentum_buffers) {
            b.f_copy_(state_tensor("lars", state, &format!("{name}.momentum_buffer"), p)?)?;
        }
        Ok(())
    }
}

/// The fused LARS update of one parameter.
struct Kernel {
    /// Whether the trust ratio and the decay apply (dim ≥ 2).
    scaled: bool,
    wd: f64,
    trust_coefficient: f64,
    momentum: f64,
    damp: f64,
    nesterov: bool,
    lr: f64,
}

impl Kernel {
    fn run<T: Real>(&self, p: &Tensor, g: &Tensor, b: &Tensor) -> Result<(), OptimError> {
        let (wd, trust) = match self.scaled {
            true => {
                let partials = fused::map_chunks::<T, 0, 2, _>(
                    [],
                    [p, g],
                    #[inline(always)]
                    move |[], [p, g]| {
                        let g = &g[..p.len()];
                        fused::block_sq_sums(
                            p.len(),
                            #[inline(always)]
                            |r, [sp, sg]| {
                                sp[..r.len()].copy_from_slice(&p[r.clone()]);
                                sg[..r.len()].copy_from_slice(&g[r]);
                            },
                        )
                    },
                )?;
                let [pp, gg] = fused::total(&partials);
                let (param_norm, wd) = (T::of(pp.sqrt()), T::of(self.wd));
                let denom = T::of(gg.sqrt()) + param_norm * wd;
                let trust = match param_norm > T::ZERO && denom > T::ZERO {
                    true => param_norm * T::of(self.trust_coefficient) / denom,
                    false => T::ONE,
                };
                (wd, trust)
            }
            false => (T::ZERO, T::ONE),
        };
        let (mu, damp, lr, nesterov, scaled) =
            (T::of(self.momentum), T::of(self.damp), T::of(self.lr), self.nesterov, self.scaled);
        let with_momentum = self.momentum > 0.0;
        fused::for_each::<T, 2, 1>(
            [p, b],
            [g],
            #[inline(always)]
            move |[p, b], [g]| {
                let n = p.len();
                let (b, g) = (&mut b[..n], &g[..n]);
                for i in 0..n {
                    let gi = if scaled { (g[i] + p[i] * wd) * trust } else { g[i] };
                    let d = if with_momentum {
                        let bi = b[i] * mu + gi * damp;
                        b[i] = bi;
                        if nesterov { gi + bi * mu } else { bi }
                    } else {
                        gi
                    };
                    p[i] = p[i] - d * lr;
                }
            },
        )
    }
}
