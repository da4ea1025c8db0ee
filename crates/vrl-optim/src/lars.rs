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

use std::collections::HashMap;

use tch::Tensor;

use crate::{HParams, HValue, NamedParam, OptimError, Optimizer, state_tensor, step_count, zero_grads};

/// LARS: SGD with momentum and a layer-wise trust ratio.
#[derive(Debug)]
pub struct Lars {
    params: Vec<NamedParam>,
    momentum_buffers: Vec<Tensor>,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    trust_coefficient: f64,
    nesterov: bool,
    step: i64,
}

impl Lars {
    /// `pytorch_optimizer.LARS`'s defaults.
    pub fn defaults() -> HParams {
        HParams(
            [
                ("lr", HValue::Num(1e-3)),
                ("weight_decay", HValue::Num(0.0)),
                ("momentum", HValue::Num(0.9)),
                ("dampening", HValue::Num(0.0)),
                ("trust_coefficient", HValue::Num(1e-3)),
                ("nesterov", HValue::Bool(false)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
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
            weight_decay: h.non_negative("weight_decay")?,
            trust_coefficient: h.non_negative("trust_coefficient")?,
            nesterov: h.flag("nesterov")?,
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
            if p.dim() > 1 {
                // Tensors of dim ≥ 2 are exactly those that decay (`crate::decays`).
                let wd = self.weight_decay;
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
