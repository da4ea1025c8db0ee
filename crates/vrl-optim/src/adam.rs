//! Adam (Kingma and Ba, 2015), exactly as `torch.optim.Adam` (single-tensor path, coupled weight decay,
//! optional `amsgrad`):
//!
//! ```text
//! g ← ∇θ + λθ                                       (λ = weight_decay, coupled L2)
//! m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
//! v̂ ← max(v̂, v)  (amsgrad)   or   v̂ ← v
//! θ ← θ − η/(1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! Weight decay applies only to parameters with two or more dimensions ([`crate::decays`]).
//!
//! `weight_decay_mode = "decoupled"` replaces the first line by `θ ← θ (1 − η λ)`, which makes it
//! `adamw` (with `amsgrad` if asked for).

use std::collections::HashMap;

use tch::Tensor;

use crate::adamw::AdamKernel;
use crate::decay::{WeightDecay, WeightDecayMode};
use crate::fused::{self, Lerp, Real, with_real};
use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, defaults_with, load_into, step_count, zero_grads,
};

/// Adam with coupled (L2) weight decay and optional AMSGrad.
#[derive(Debug)]
pub struct Adam {
    params: Vec<NamedParam>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// `max_exp_avg_sq`, only with `amsgrad`.
    max_exp_avg_sq: Option<Vec<Tensor>>,
    betas: [f64; 2],
    eps: f64,
    decay: WeightDecay,
    fused: bool,
    step: i64,
}

impl Adam {
    /// PyTorch's defaults.
    pub fn defaults() -> HParams {
        defaults_with(
            [
                ("lr", HValue::Num(1e-3)),
                ("betas", HValue::Pair([0.9, 0.999])),
                ("eps", HValue::Num(1e-8)),
                ("weight_decay", HValue::Num(0.0)),
                ("amsgrad", HValue::Bool(false)),
            ],
            WeightDecayMode::Coupled,
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("adam", Self::defaults())?;
        h.non_negative("lr")?;
        let zeros = |params: &[NamedParam]| params.iter().map(|(_, p)| p.zeros_like()).collect::<Vec<_>>();
        Ok(Adam {
            exp_avg: zeros(&params),
            exp_avg_sq: zeros(&params),
            max_exp_avg_sq: if h.flag("amsgrad")? { Some(zeros(&params)) } else { None },
            params,
            betas: h.unit_pair("betas")?,
            eps: h.non_negative("eps")?,
            decay: WeightDecay::resolve(
                &h,
                "adam",
                &[WeightDecayMode::Coupled, WeightDecayMode::Decoupled],
                None,
            )?,
            fused: h.flag("fused")?,
            step: 0,
        })
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let [b1, b2] = self.betas;
        let t = self.step as f64;
        let step_size = lr / (1.0 - b1.powf(t));
        let bc2_sqrt = (1.0 - b2.powf(t)).powf(0.5);
        for (i, (_, p)) in self.params.iter_mut().enumerate() {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let (m, v) = (&mut self.exp_avg[i], &mut self.exp_avg_sq[i]);
            let mut tensors = vec![&*p, &grad, &*m, &*v];
            tensors.extend(self.max_exp_avg_sq.as_ref().map(|max| &max[i]));
            if let Some(dtype) = fused::eligible(self.fused, &tensors) {
                let k = AdamKernel {
                    b1,
                    b2,
                    bc2_sqrt,
                    eps: self.eps,
                    neg_step: -step_size,
                    wd: self.decay.coupled_lambda(p).unwrap_or(0.0),
                    factor: self.decay.decoupled_factor(p, lr).unwrap_or(1.0),
                };
                match &self.max_exp_avg_sq {
                    Some(max) => with_real!(dtype, T => amsgrad::<T>(&k, p, &grad, m, v, &max[i]))?,
                    None => with_real!(dtype, T => k.run::<T>(p, &grad, m, v))?,
                }
                continue;
            }
            let g = self.decay.couple(p, grad)?;
            self.decay.decouple(p, lr)?;
            let _ = m.f_lerp_(&g, 1.0 - b1)?;
            let _ = v.f_mul_scalar_(b2)?;
            let _ = v.f_addcmul_(&(&g * (1.0 - b2)), &g)?;
            let v_hat = match &mut self.max_exp_avg_sq {
                Some(max) => {
                    let mx = &mut max[i];
                    mx.f_copy_(&mx.f_maximum(v)?)?;
                    mx.shallow_clone()
                }
                None => v.shallow_clone(),
            };
            let denom = (v_hat.f_sqrt()? / bc2_sqrt).f_add_scalar(self.eps)?;
            let _ = p.f_addcdiv_(&(&*m * -step_size), &denom)?;
        }
        Ok(())
    }

    fn zero_grad(&mut self) {
        zero_grads(&mut self.params);
    }

    fn state(&self) -> Vec<NamedParam> {
        let mut out = vec![("step".to_string(), Tensor::from(self.step))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("{name}.exp_avg"), self.exp_avg[i].shallow_clone()));
            out.push((format!("{name}.exp_avg_sq"), self.exp_avg_sq[i].shallow_clone()));
            if let Some(max) = &self.max_exp_avg_sq {
                out.push((format!("{name}.max_exp_avg_sq"), max[i].shallow_clone()));
            }
        }
        out
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        self.step = step_count("adam", state)?;
        for (i, (name, _)) in self.params.iter().enumerate() {
            load_into("adam", state, &format!("{name}.exp_avg"), &mut self.exp_avg[i])?;
            load_into("adam", state, &format!("{name}.exp_avg_sq"), &mut self.exp_avg_sq[i])?;
            if let Some(max) = &mut self.max_exp_avg_sq {
                load_into("adam", state, &format!("{name}.max_exp_avg_sq"), &mut max[i])?;
            }
        }
        Ok(())
    }
}

/// [`AdamKernel`] with AMSGrad: the denominator uses `v̂ ← max(v̂, v)` (`adam` and `adamw`).
pub(crate) fn amsgrad<T: Real>(
    k: &AdamKernel,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    max: &Tensor,
) -> Result<(), OptimError> {
    let lerp = Lerp::<T>::new(1.0 - k.b1);
    let (b2, omb2) = (T::of(k.b2), T::of(1.0 - k.b2));
    let (bc2_sqrt, eps, step) = (T::of(k.bc2_sqrt), T::of(k.eps), T::of(k.neg_step));
    let (wd, factor) = (T::of(k.wd), T::of(k.factor));
    fused::for_each::<T, 4, 1>(
        [p, m, v, max],
        [g],
        #[inline(always)]
        move |[p, m, v, mx], [g]| {
            let n = p.len();
            let (m, v, mx, g) = (&mut m[..n], &mut v[..n], &mut mx[..n], &g[..n]);
            for i in 0..n {
                let gi = g[i] + p[i] * wd;
                let mi = lerp.at(m[i], gi);
                let vi = v[i] * b2 + gi * (gi * omb2);
                let hi = fused::max(mx[i], vi);
                m[i] = mi;
                v[i] = vi;
                mx[i] = hi;
                let denom = hi.sqrt() / bc2_sqrt + eps;
                p[i] = p[i] * factor + (mi * step) / denom;
            }
        },
    )
}
