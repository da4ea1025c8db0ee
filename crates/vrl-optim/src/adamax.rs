//! Adamax (Kingma and Ba, 2015, section 7), exactly as `torch.optim.Adamax` (single-tensor path):
//!
//! ```text
//! g ← ∇θ + λθ                              (λ = weight_decay, coupled L2)
//! m ← β₁ m + (1 − β₁) g
//! u ← max(β₂ u, |g| + ε)
//! θ ← θ − η/(1 − β₁ᵗ) · m / u
//! ```
//!
//! Weight decay applies only to parameters with two or more dimensions ([`crate::decays`]).

use std::collections::HashMap;

use tch::Tensor;

use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, buffers_state, coupled_weight_decay, load_buffers,
    zero_grads,
};

/// Adamax (Adam with the infinity norm) with coupled weight decay.
#[derive(Debug)]
pub struct Adamax {
    params: Vec<NamedParam>,
    exp_avg: Vec<Tensor>,
    exp_inf: Vec<Tensor>,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    step: i64,
}

impl Adamax {
    /// PyTorch's defaults.
    pub fn defaults() -> HParams {
        HParams(
            [
                ("lr", HValue::Num(2e-3)),
                ("betas", HValue::Pair([0.9, 0.999])),
                ("eps", HValue::Num(1e-8)),
                ("weight_decay", HValue::Num(0.0)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("adamax", Self::defaults())?;
        h.non_negative("lr")?;
        let zeros = |params: &[NamedParam]| params.iter().map(|(_, p)| p.zeros_like()).collect::<Vec<_>>();
        Ok(Adamax {
            exp_avg: zeros(&params),
            exp_inf: zeros(&params),
            params,
            betas: h.unit_pair("betas")?,
            eps: h.non_negative("eps")?,
            weight_decay: h.non_negative("weight_decay")?,
            step: 0,
        })
    }
}

impl Optimizer for Adamax {
    fn name(&self) -> &'static str {
        "adamax"
    }

    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let [b1, b2] = self.betas;
        let clr = lr / (1.0 - b1.powf(self.step as f64));
        for (((_, p), m), u) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_inf) {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let g = coupled_weight_decay(p, grad, self.weight_decay)?;
            let _ = m.f_lerp_(&g, 1.0 - b1)?;
            let _ = u.f_mul_scalar_(b2)?;
            u.f_copy_(&u.f_maximum(&g.f_abs()?.f_add_scalar(self.eps)?)?)?;
            let _ = p.f_addcdiv_(&(&*m * -clr), u)?;
        }
        Ok(())
    }

    fn zero_grad(&mut self) {
        zero_grads(&mut self.params);
    }

    fn state(&self) -> Vec<NamedParam> {
        buffers_state(self.step, &self.params, &[("exp_avg", &self.exp_avg), ("exp_inf", &self.exp_inf)])
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        let buffers: &mut [(&str, &mut [Tensor])] =
            &mut [("exp_avg", &mut self.exp_avg), ("exp_inf", &mut self.exp_inf)];
        self.step = load_buffers("adamax", state, &self.params, buffers)?;
        Ok(())
    }
}
