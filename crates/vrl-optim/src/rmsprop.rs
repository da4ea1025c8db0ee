//! RMSprop (Hinton, 2012; centered variant of Graves, 2013), exactly as `torch.optim.RMSprop`
//! (single-tensor path):
//!
//! ```text
//! g ← ∇θ + λθ                                 (λ = weight_decay, coupled L2)
//! s ← α s + (1 − α) g²
//! a ← α a + (1 − α) g,  d ← √(s − a²) + ε     (centered)
//! d ← √s + ε                                  (otherwise)
//! b ← μ b + g / d,  θ ← θ − η b               (momentum μ > 0)
//! θ ← θ − η g / d                             (otherwise)
//! ```
//!
//! Weight decay applies only to parameters with two or more dimensions ([`crate::decays`]).

use std::collections::HashMap;

use tch::Tensor;

use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, coupled_weight_decay, load_into, step_count,
    zero_grads,
};

/// RMSprop with optional momentum, centering and coupled weight decay.
#[derive(Debug)]
pub struct RmsProp {
    params: Vec<NamedParam>,
    square_avg: Vec<Tensor>,
    /// `momentum_buffer`, only with `momentum > 0`.
    momentum_buffer: Option<Vec<Tensor>>,
    /// `grad_avg`, only when `centered`.
    grad_avg: Option<Vec<Tensor>>,
    alpha: f64,
    eps: f64,
    momentum: f64,
    weight_decay: f64,
    step: i64,
}

impl RmsProp {
    /// PyTorch's defaults.
    pub fn defaults() -> HParams {
        HParams(
            [
                ("lr", HValue::Num(1e-2)),
                ("alpha", HValue::Num(0.99)),
                ("eps", HValue::Num(1e-8)),
                ("weight_decay", HValue::Num(0.0)),
                ("momentum", HValue::Num(0.0)),
                ("centered", HValue::Bool(false)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("rmsprop", Self::defaults())?;
        h.non_negative("lr")?;
        let momentum = h.non_negative("momentum")?;
        let zeros = |params: &[NamedParam]| params.iter().map(|(_, p)| p.zeros_like()).collect::<Vec<_>>();
        Ok(RmsProp {
            square_avg: zeros(&params),
            momentum_buffer: if momentum > 0.0 { Some(zeros(&params)) } else { None },
            grad_avg: if h.flag("centered")? { Some(zeros(&params)) } else { None },
            params,
            alpha: h.non_negative("alpha")?,
            eps: h.non_negative("eps")?,
            momentum,
            weight_decay: h.non_negative("weight_decay")?,
            step: 0,
        })
    }
}

impl Optimizer for RmsProp {
    fn name(&self) -> &'static str {
        "rmsprop"
    }

    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let alpha = self.alpha;
        for (i, (_, p)) in self.params.iter_mut().enumerate() {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let g = coupled_weight_decay(p, grad, self.weight_decay)?;
            let s = &mut self.square_avg[i];
            let _ = s.f_mul_scalar_(alpha)?;
            let _ = s.f_addcmul_(&(&g * (1.0 - alpha)), &g)?;
            let mut avg = match &mut self.grad_avg {
                Some(grad_avg) => {
                    let a = &mut grad_avg[i];
                    let _ = a.f_lerp_(&g, 1.0 - alpha)?;
                    s.f_sub(&(&*a * &*a))?.f_sqrt()?
                }
                None => s.f_sqrt()?,
            };
            let _ = avg.f_add_scalar_(self.eps)?;
            match &mut self.momentum_buffer {
                Some(bufs) => {
                    let b = &mut bufs[i];
                    let _ = b.f_mul_scalar_(self.momentum)?;
                    let _ = b.f_addcdiv_(&g, &avg)?;
                    let _ = p.f_sub_(&(&*b * lr))?;
                }
                None => {
                    let _ = p.f_addcdiv_(&(g * -lr), &avg)?;
                }
            }
        }
        Ok(())
    }

    fn zero_grad(&mut self) {
        zero_grads(&mut self.params);
    }

    fn state(&self) -> Vec<NamedParam> {
        let mut out = vec![("step".to_string(), Tensor::from(self.step))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("{name}.square_avg"), self.square_avg[i].shallow_clone()));
            if let Some(b) = &self.momentum_buffer {
                out.push((format!("{name}.momentum_buffer"), b[i].shallow_clone()));
            }
            if let Some(a) = &self.grad_avg {
                out.push((format!("{name}.grad_avg"), a[i].shallow_clone()));
            }
        }
        out
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        self.step = step_count("rmsprop", state)?;
        for (i, (name, _)) in self.params.iter().enumerate() {
            load_into("rmsprop", state, &format!("{name}.square_avg"), &mut self.square_avg[i])?;
            if let Some(b) = &mut self.momentum_buffer {
                load_into("rmsprop", state, &format!("{name}.momentum_buffer"), &mut b[i])?;
            }
            if let Some(a) = &mut self.grad_avg {
                load_into("rmsprop", state, &format!("{name}.grad_avg"), &mut a[i])?;
            }
        }
        Ok(())
    }
}
