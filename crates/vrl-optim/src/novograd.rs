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
//! dimensions only.

use std::collections::HashMap;

use tch::Tensor;

use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, decays, state_tensor, step_count, zero_grads,
};

/// NovoGrad: momentum of gradients normalised by a per-tensor second moment.
#[derive(Debug)]
pub struct NovoGrad {
    params: Vec<NamedParam>,
    /// Per tensor, once it has had a gradient: (`grads_ema`, a 0-d tensor; `moments`).
    states: Vec<Option<(Tensor, Tensor)>>,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    weight_decouple: bool,
    grad_averaging: bool,
    step: i64,
}

impl NovoGrad {
    /// `pytorch_optimizer.NovoGrad`'s defaults.
    pub fn defaults() -> HParams {
        HParams(
            [
                ("lr", HValue::Num(1e-3)),
                ("betas", HValue::Pair([0.95, 0.98])),
                ("eps", HValue::Num(1e-8)),
                ("weight_decay", HValue::Num(0.0)),
                ("weight_decouple", HValue::Bool(false)),
                ("grad_averaging", HValue::Bool(false)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
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
            weight_decay: h.non_negative("weight_decay")?,
            weight_decouple: h.flag("weight_decouple")?,
            grad_averaging: h.flag("grad_averaging")?,
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
            let grad_sq = g.f_square()?.f_sum(g.kind())?;
            let ema = match state {
                Some((ema, _)) => ema.f_lerp_(&grad_sq, 1.0 - b2)?,
                None => grad_sq,
            };
            let mut g = g.f_div(&ema.f_sqrt()?.f_add_scalar(self.eps)?)?;
            if self.weight_decay != 0.0 && decays(p) {
                if self.weight_decouple {
                    let _ = p.f_mul_scalar_(1.0 - self.weight_decay * lr)?;
                } else {
                    g = g.f_add(&(&*p * self.weight_decay))?;
                }
            }
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
