//! LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes"),
//! exactly as `pytorch_optimizer.Lamb` 4.1.0 with its defaults: decoupled weight decay scaled by the
//! learning rate, gradient averaging, the first moment's bias correction in the step size but none in
//! the second moment, the weight norm clamped to at most 10, and no rectification, pre-normalisation,
//! AdaNorm or Adam mode:
//!
//! ```text
//! m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
//! θ ← θ (1 − η λ)                                   (decoupled weight decay, dim ≥ 2 only)
//! u ← m / (√v + ε)
//! r ← min(‖θ‖, 10) / (‖u‖ + ε),   or 1 where ‖θ‖ = 0 or ‖u‖ = 0   (trust ratio, per tensor)
//! θ ← θ − η/(1 − β₁ᵗ) · r · u
//! ```

use std::collections::HashMap;

use tch::Tensor;

use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, buffers_state, decays, load_buffers, zero_grads,
};

/// The reference's clamp on the weight norm in the trust ratio.
const WEIGHT_NORM_CLAMP: f64 = 10.0;

/// LAMB: Adam's direction scaled per tensor by the trust ratio ‖θ‖ / ‖u‖.
#[derive(Debug)]
pub struct Lamb {
    params: Vec<NamedParam>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    step: i64,
}

impl Lamb {
    /// `pytorch_optimizer.Lamb`'s defaults.
    pub fn defaults() -> HParams {
        HParams(
            [
                ("lr", HValue::Num(1e-3)),
                ("betas", HValue::Pair([0.9, 0.999])),
                ("eps", HValue::Num(1e-6)),
                ("weight_decay", HValue::Num(0.0)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("lamb", Self::defaults())?;
        h.non_negative("lr")?;
        let exp_avg = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Ok(Lamb {
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

impl Optimizer for Lamb {
    fn name(&self) -> &'static str {
        "lamb"
    }

    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let [b1, b2] = self.betas;
        let step_size = lr / (1.0 - b1.powi(self.step as i32));
        for (((_, p), m), v) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = m.f_mul_scalar_(b1)?;
            let _ = m.f_add_(&(&g * (1.0 - b1)))?;
            let _ = v.f_mul_scalar_(b2)?;
            let _ = v.f_addcmul_(&g, &(&g * (1.0 - b2)))?;
            if self.weight_decay != 0.0 && decays(p) {
                let _ = p.f_mul_scalar_(1.0 - self.weight_decay * lr)?;
            }
            let update = m.f_div(&v.f_sqrt()?.f_add_scalar(self.eps)?)?;
            let weight_norm = p.f_norm()?.f_clamp_max(WEIGHT_NORM_CLAMP)?;
            let update_norm = update.f_norm()?;
            let scale = if weight_norm.double_value(&[]) == 0.0 || update_norm.double_value(&[]) == 0.0 {
                -step_size
            } else {
                // The trust ratio in the parameter's dtype, as the reference computes it.
                (weight_norm / update_norm.f_add_scalar(self.eps)? * -step_size).double_value(&[])
            };
            let _ = p.f_add_(&(update * scale))?;
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
        self.step = load_buffers("lamb", state, &self.params, buffers)?;
        Ok(())
    }
}
