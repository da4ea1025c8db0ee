//! AdamW (Loshchilov and Hutter, 2019), exactly as `torch.optim.AdamW` (without `amsgrad`):
//!
//! ```text
//! θ ← θ (1 − η λ)                                   (decoupled weight decay)
//! m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
//! θ ← θ − η/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```

use std::collections::HashMap;

use tch::Tensor;

use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, buffers_state, decays, load_buffers, zero_grads,
};

/// AdamW with decoupled weight decay.
#[derive(Debug)]
pub struct AdamW {
    params: Vec<NamedParam>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    step: i64,
}

impl AdamW {
    /// PyTorch's defaults.
    pub fn defaults() -> HParams {
        HParams(
            [
                ("lr", HValue::Num(1e-3)),
                ("betas", HValue::Pair([0.9, 0.999])),
                ("eps", HValue::Num(1e-8)),
                ("weight_decay", HValue::Num(1e-2)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("adamw", Self::defaults())?;
        h.non_negative("lr")?;
        let exp_avg = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Ok(AdamW {
            params,
            exp_avg,
            exp_avg_sq,
            betas: h.unit_pair("betas")?,
            eps: h.non_negative("eps")?,
            weight_decay: h.non_negative("weight_decay")?,
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
        for (((_, p), m), v) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            if self.weight_decay != 0.0 && decays(p) {
                let _ = p.f_mul_scalar_(1.0 - lr * self.weight_decay)?;
            }
            let _ = m.f_lerp_(&g, 1.0 - b1)?;
            let _ = v.f_mul_scalar_(b2)?;
            let _ = v.f_addcmul_(&g, &(&g * (1.0 - b2)))?;
            let denom = (v.f_sqrt()? / bc2_sqrt).f_add_scalar(self.eps)?;
            let _ = p.f_addcdiv_(&(&*m * (-lr / bc1)), &denom)?;
        }
        Ok(())
    }

    fn zero_grad(&mut self) {
        zero_grads(&mut self.params);
    }

    fn state(&self) -> Vec<NamedParam> {
        buffers_state(
            self.step,
            &self.params,
            &[("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)],
        )
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        let buffers: &mut [(&str, &mut [Tensor])] =
            &mut [("exp_avg", &mut self.exp_avg), ("exp_avg_sq", &mut self.exp_avg_sq)];
        self.step = load_buffers("adamw", state, &self.params, buffers)?;
        Ok(())
    }
}
