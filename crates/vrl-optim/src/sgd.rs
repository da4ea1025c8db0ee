//! Stochastic gradient descent with momentum, exactly as `torch.optim.SGD`:
//!
//! ```text
//! g ← ∇θ + λθ                       (λ = weight_decay, coupled L2)
//! b ← g                   at the first step
//! b ← μ b + (1 − τ) g     afterwards   (μ = momentum, τ = dampening)
//! g ← g + μ b  (nesterov)  or  g ← b
//! θ ← θ − η g
//! ```

use std::collections::HashMap;

use tch::Tensor;

use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, decays, state_tensor, step_count, zero_grads,
};

/// SGD with momentum, dampening, Nesterov and coupled weight decay.
#[derive(Debug)]
pub struct Sgd {
    params: Vec<NamedParam>,
    momentum_buffers: Vec<Option<Tensor>>,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
    step: i64,
}

impl Sgd {
    /// PyTorch's defaults (`lr` is required there; 0.1 here, the usual starting point).
    pub fn defaults() -> HParams {
        HParams(
            [
                ("lr", HValue::Num(0.1)),
                ("momentum", HValue::Num(0.0)),
                ("dampening", HValue::Num(0.0)),
                ("weight_decay", HValue::Num(0.0)),
                ("nesterov", HValue::Bool(false)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("sgd", Self::defaults())?;
        h.non_negative("lr")?;
        let momentum = h.unit("momentum")?;
        let dampening = h.non_negative("dampening")?;
        let nesterov = h.flag("nesterov")?;
        if nesterov && (momentum <= 0.0 || dampening != 0.0) {
            return Err(OptimError::HParam {
                optimizer: "sgd".into(),
                key: "nesterov".into(),
                message: "Nesterov momentum requires momentum > 0 and dampening = 0".into(),
            });
        }
        let n = params.len();
        Ok(Sgd {
            params,
            momentum_buffers: (0..n).map(|_| None).collect(),
            momentum,
            dampening,
            nesterov,
            weight_decay: h.non_negative("weight_decay")?,
            step: 0,
        })
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        let _guard = tch::no_grad_guard();
        for ((_, p), buf) in self.params.iter_mut().zip(self.momentum_buffers.iter_mut()) {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let mut g = if self.weight_decay != 0.0 && decays(p) {
                grad.f_add(&(&*p * self.weight_decay))?
            } else {
                grad
            };
            if self.momentum != 0.0 {
                let b = match buf {
                    Some(b) => {
                        let _ = b.f_mul_scalar_(self.momentum)?;
                        let _ = b.f_add_(&(&g * (1.0 - self.dampening)))?;
                        b
                    }
                    None => buf.insert(g.f_detach_copy()?),
                };
                g = if self.nesterov { g.f_add(&(&*b * self.momentum))? } else { b.shallow_clone() };
            }
            let _ = p.f_sub_(&(g * lr))?;
        }
        self.step += 1;
        Ok(())
    }

    fn zero_grad(&mut self) {
        zero_grads(&mut self.params);
    }

    fn state(&self) -> Vec<NamedParam> {
        let mut out = vec![("step".to_string(), Tensor::from(self.step))];
        for ((name, _), buf) in self.params.iter().zip(&self.momentum_buffers) {
            if let Some(b) = buf {
                out.push((format!("{name}.momentum_buffer"), b.shallow_clone()));
            }
        }
        out
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        self.step = step_count("sgd", state)?;
        for ((name, p), buf) in self.params.iter().zip(self.momentum_buffers.iter_mut()) {
            let key = format!("{name}.momentum_buffer");
            *buf = match state.contains_key(&key) || (self.momentum != 0.0 && self.step > 0) {
                true => {
                    Some(state_tensor("sgd", state, &key, p)?.to_kind(p.kind()).to_device(p.device()).copy())
                }
                false => None,
            };
        }
        Ok(())
    }
}
