//! AdamW (Loshchilov and Hutter, 2019), exactly as `torch.optim.AdamW` (single-tensor path,
//! optional `amsgrad`):
//!
//! ```text
//! θ ← θ (1 − η λ)                                   (decoupled weight decay)
//! m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
//! v̂ ← max(v̂, v)  (amsgrad)   or   v̂ ← v
//! θ ← θ − η/(1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! `weight_decay_mode = "coupled"` replaces the first line by `g ← g + λθ`, which makes it `adam`.

use std::collections::HashMap;

use tch::Tensor;

use crate::decay::{WeightDecay, WeightDecayMode};
use crate::fused::{self, Lerp, Real, with_real};
use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, buffers_state, defaults_with, load_buffers,
    zero_grads,
};

/// AdamW with decoupled weight decay.
#[derive(Debug)]
pub struct AdamW {
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

impl AdamW {
    /// PyTorch's defaults.
    pub fn defaults() -> HParams {
        defaults_with(
            [
                ("lr", HValue::Num(1e-3)),
                ("betas", HValue::Pair([0.9, 0.999])),
                ("eps", HValue::Num(1e-8)),
                ("weight_decay", HValue::Num(1e-2)),
                ("amsgrad", HValue::Bool(false)),
            ],
            WeightDecayMode::Decoupled,
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("adamw", Self::defaults())?;
        h.non_negative("lr")?;
        let exp_avg = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let max_exp_avg_sq = if h.flag("amsgrad")? {
            Some(params.iter().map(|(_, p)| p.zeros_like()).collect())
        } else {
            None
        };
        let modes = [WeightDecayMode::Decoupled, WeightDecayMode::Coupled];
        Ok(AdamW {
            params,
            exp_avg,
            exp_avg_sq,
            max_exp_avg_sq,
            betas: h.unit_pair("betas")?,
            eps: h.non_negative("eps")?,
            decay: WeightDecay::resolve(&h, "adamw", &modes, None)?,
            fused: h.flag("fused")?,
            step: 0,
        })
    }
}

impl Optimizer for AdamW {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let [b1, b2] = self.betas;
        let t = self.step as i32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        for (i, (_, p)) in self.params.iter_mut().enumerate() {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let (m, v) = (&mut self.exp_avg[i], &mut self.exp_avg_sq[i]);
            let mut tensors = vec![&*p, &g, &*m, &*v];
            tensors.extend(self.max_exp_avg_sq.as_ref().map(|max| &max[i]));
            if let Some(dtype) = fused::eligible(self.fused, &tensors) {
                let k = AdamKernel {
                    b1,
                    b2,
                    bc2_sqrt,
                    eps: self.eps,
                    neg_step: -lr / bc1,
                    wd: self.decay.coupled_lambda(p).unwrap_or(0.0),
                    factor: self.decay.decoupled_factor(p, lr).unwrap_or(1.0),
                };
                match &self.max_exp_avg_sq {
                    Some(max) => with_real!(dtype, T => crate::adam::amsgrad::<T>(&k, p, &g, m, v, &max[i]))?,
                    None => with_real!(dtype, T => k.run::<T>(p, &g, m, v))?,
                }
                continue;
            }
            let g = self.decay.couple(p, g)?;
            self.decay.decouple(p, lr)?;
            let _ = m.f_lerp_(&g, 1.0 - b1)?;
            let _ = v.f_mul_scalar_(b2)?;
            let _ = v.f_addcmul_(&g, &(&g * (1.0 - b2)))?;
            let v_hat = match &mut self.max_exp_avg_sq {
                Some(max) => {
                    let mx = &mut max[i];
                    mx.f_copy_(&mx.f_maximum(v)?)?;
                    mx.shallow_clone()
                }
                None => v.shallow_clone(),
            };
            let denom = (v_hat.f_sqrt()? / bc2_sqrt).f_add_scalar(self.eps)?;
            let _ = p.f_addcdiv_(&(&*m * (-lr / bc1)), &denom)?;
        }
        Ok(())
    }

    fn zero_grad(&mut self) {
        zero_grads(&mut self.params);
    }

    fn state(&self) -> Vec<NamedParam> {
        let mut buffers: Vec<(&str, &[Tensor])> =
            vec![("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)];
        if let Some(max) = &self.max_exp_avg_sq {
            buffers.push(("max_exp_avg_sq", max));
        }
        buffers_state(self.step, &self.params, &buffers)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        let mut buffers: Vec<(&str, &mut [Tensor])> =
            vec![("exp_avg", &mut self.exp_avg), ("exp_avg_sq", &mut self.exp_avg_sq)];
        if let Some(max) = &mut self.max_exp_avg_sq {
            buffers.push(("max_exp_avg_sq", max));
        }
        self.step = load_buffers("adamw", state, &self.params, &mut buffers)?;
        Ok(())
    }
}

/// The fused Adam / AdamW update of one parameter without `amsgrad`:
/// `g ← g + λ_c θ`, `θ ← f θ`, the moments, then `θ ← θ + s · m / (√v / √(1 − β₂ᵗ) + ε)` with
/// `s = −η/(1 − β₁ᵗ)`. `wd` is 0 and `factor` 1 where no decay applies.
pub(crate) struct AdamKernel {
    pub b1: f64,
    pub b2: f64,
    pub bc2_sqrt: f64,
    pub eps: f64,
    pub neg_step: f64,
    pub wd: f64,
    pub factor: f64,
}

impl AdamKernel {
    pub(crate) fn run<T: Real>(
        &self,
        p: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
    ) -> Result<(), OptimError> {
        let lerp = Lerp::<T>::new(1.0 - self.b1);
        let (b2, omb2) = (T::of(self.b2), T::of(1.0 - self.b2));
        let (bc2_sqrt, eps, step) = (T::of(self.bc2_sqrt), T::of(self.eps), T::of(self.neg_step));
        let (wd, factor) = (T::of(self.wd), T::of(self.factor));
        fused::for_each::<T, 3, 1>(
            [p, m, v],
            [g],
            #[inline(always)]
            move |[p, m, v], [g]| {
                let n = p.len();
                let (m, v, g) = (&mut m[..n], &mut v[..n], &g[..n]);
                for i in 0..n {
                    let gi = g[i] + p[i] * wd;
                    let mi = lerp.at(m[i], gi);
                    let vi = v[i] * b2 + gi * (gi * omb2);
                    m[i] = mi;
                    v[i] = vi;
                    let denom = vi.sqrt() / bc2_sqrt + eps;
                    p[i] = p[i] * factor + (mi * step) / denom;
                }
            },
        )
    }
}
