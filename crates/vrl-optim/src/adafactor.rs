//! AdaFactor (Shazeer and Stern, 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory
//! Cost"), exactly as `pytorch_optimizer.AdaFactor` 4.1.0 (its BigVision variant) without AMSBound,
//! with decoupled weight decay scaled by the effective rate (`weight_decouple = true`,
//! `fixed_decay = false`, the reference's defaults) and the momentum kept in the parameter's dtype
//! (the reference's `momentum_dtype` defaults to bfloat16; the fixture passes the parameter's dtype):
//!
//! ```text
//! ρ ← η                                  (relative_step = false, vrl's default: the scheduled rate)
//! ρ ← min(10⁻² or 10⁻⁶ t (warmup_init), 1/√t)             (relative_step = true: η is ignored)
//! α ← max(ε₂, RMS(θ)) ρ  (scale_parameter)   or   α ← ρ
//! θ ← θ (1 − α λ)                                   (decoupled weight decay, dim ≥ 2 only)
//! β̂₂ ← min(β₂, 1 − t^decay_rate),   u ← g² + ε₁
//! dim ≥ 2 (factored over the last two dimensions, rows R and columns C):
//!     R ← lerp(R, mean₋₁(u), 1 − β̂₂),   C ← lerp(C, mean₋₂(u), 1 − β̂₂)
//!     u ← (R / mean₋₁(R))^(−½) ⊗ C^(−½)
//! dim < 2:   V ← lerp(V, u, 1 − β̂₂),   u ← V^(−½)
//! u ← u g,   u ← α u / max(1, RMS(u) / clip_threshold)
//! m ← β₁ m + (1 − β₁) u,   θ ← θ − m
//! ```
//!
//! # The learning rate
//!
//! The reference defaults to `relative_step = true`, which ignores the given rate and uses its own
//! schedule `min(10⁻², 1/√t)`. vrl passes a scheduled rate to every [`Optimizer::step`], so its
//! default is `relative_step = false` (the one default that differs from the reference): the rate η
//! given to `step` is ρ above, still multiplied by `max(ε₂, RMS(θ))` while `scale_parameter` is true
//! (the reference's default, kept). With `relative_step = true` the rate passed to `step` is ignored.

use std::collections::HashMap;

use tch::Tensor;

use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, decays, state_tensor, step_count, zero_grads,
};

/// The second-moment estimate of one parameter.
#[derive(Debug)]
enum SecondMoment {
    /// Row and column averages, for parameters with two or more dimensions.
    Factored { row: Tensor, col: Tensor },
    /// The full estimate, for 1-d parameters.
    Full(Tensor),
}

/// AdaFactor: factored second moments, update clipping, parameter-scaled step sizes.
#[derive(Debug)]
pub struct AdaFactor {
    params: Vec<NamedParam>,
    exp_avg: Vec<Tensor>,
    second: Vec<SecondMoment>,
    betas: [f64; 2],
    decay_rate: f64,
    weight_decay: f64,
    clip_threshold: f64,
    scale_parameter: bool,
    relative_step: bool,
    warmup_init: bool,
    eps1: f64,
    eps2: f64,
    step: i64,
}

/// The effective rate α: a 0-d tensor when it comes from the parameter's RMS (as in the reference,
/// where it is a tensor of the parameter's dtype), a number otherwise.
enum Rate {
    Tensor(Tensor),
    Num(f64),
}

impl Rate {
    fn scale(&self, x: &Tensor) -> Result<Tensor, OptimError> {
        Ok(match self {
            Rate::Tensor(a) => x.f_mul(a)?,
            Rate::Num(a) => x.f_mul_scalar(*a)?,
        })
    }

    /// `1 − α λ`, applied to `p` in place.
    fn decay(&self, p: &mut Tensor, weight_decay: f64) -> Result<(), OptimError> {
        match self {
            Rate::Tensor(a) => {
                let _ = p.f_mul_(&(a * weight_decay).f_neg()?.f_add_scalar(1.0)?)?;
            }
            Rate::Num(a) => {
                let _ = p.f_mul_scalar_(1.0 - weight_decay * a)?;
            }
        }
        Ok(())
    }
}

fn rms(x: &Tensor) -> Result<Tensor, OptimError> {
    Ok(x.f_norm()?.f_div_scalar((x.numel() as f64).sqrt())?)
}

impl AdaFactor {
    /// `pytorch_optimizer.AdaFactor`'s defaults, except `relative_step = false` (see the module doc).
    pub fn defaults() -> HParams {
        HParams(
            [
                ("lr", HValue::Num(1e-3)),
                ("betas", HValue::Pair([0.9, 0.999])),
                ("decay_rate", HValue::Num(-0.8)),
                ("weight_decay", HValue::Num(0.0)),
                ("clip_threshold", HValue::Num(1.0)),
                ("scale_parameter", HValue::Bool(true)),
                ("relative_step", HValue::Bool(false)),
                ("warmup_init", HValue::Bool(false)),
                ("eps1", HValue::Num(1e-30)),
                ("eps2", HValue::Num(1e-3)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("adafactor", Self::defaults())?;
        h.non_negative("lr")?;
        // A negative number, which the typed getters do not cover (the type is already checked).
        let decay_rate = match hparams
            .0
            .get("decay_rate")
            .cloned()
            .unwrap_or_else(|| Self::defaults().0["decay_rate"].clone())
        {
            HValue::Num(x) if x.is_finite() && x < 0.0 => x,
            v => {
                return Err(OptimError::HParam {
                    optimizer: "adafactor".into(),
                    key: "decay_rate".into(),
                    message: format!("must be a finite number < 0, got {v}"),
                });
            }
        };
        let exp_avg = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let second = params
            .iter()
            .map(|(_, p)| {
                let size = p.size();
                let opts = (p.kind(), p.device());
                if size.len() >= 2 {
                    let n = size.len();
                    let col: Vec<i64> = size[..n - 2].iter().chain(&size[n - 1..]).copied().collect();
                    SecondMoment::Factored {
                        row: Tensor::zeros(&size[..n - 1], opts),
                        col: Tensor::zeros(col, opts),
                    }
                } else {
                    SecondMoment::Full(p.zeros_like())
                }
            })
            .collect();
        Ok(AdaFactor {
            params,
            exp_avg,
            second,
            betas: h.unit_pair("betas")?,
            decay_rate,
            weight_decay: h.non_negative("weight_decay")?,
            clip_threshold: h.non_negative("clip_threshold")?,
            scale_parameter: h.flag("scale_parameter")?,
            relative_step: h.flag("relative_step")?,
            warmup_init: h.flag("warmup_init")?,
            eps1: h.non_negative("eps1")?,
            eps2: h.non_negative("eps2")?,
            step: 0,
        })
    }

    /// ρ: the given rate, or the reference's relative step size.
    fn relative_step_size(&self, lr: f64) -> f64 {
        if !self.relative_step {
            return lr;
        }
        let t = self.step as f64;
        let min_step = if self.warmup_init { 1e-6 * t } else { 1e-2 };
        min_step.min(1.0 / t.sqrt())
    }
}

impl Optimizer for AdaFactor {
    fn name(&self) -> &'static str {
        "adafactor"
    }

    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let [b1, b2] = self.betas;
        let beta2_t = b2.min(1.0 - (self.step as f64).powf(self.decay_rate));
        let bc2 = 1.0 - beta2_t;
        let rho = self.relative_step_size(lr);
        for (((_, p), m), second) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.second) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let alpha = if self.scale_parameter {
                // Python's `max(eps2, rms)`: the RMS tensor where it is larger, the number otherwise.
                let r = rms(p)?;
                if r.double_value(&[]) > self.eps2 {
                    Rate::Tensor(r.f_mul_scalar(rho)?)
                } else {
                    Rate::Num(self.eps2 * rho)
                }
            } else {
                Rate::Num(rho)
            };
            if self.weight_decay != 0.0 && decays(p) {
                alpha.decay(p, self.weight_decay)?;
            }
            let u = g.f_square()?.f_add_scalar(self.eps1)?;
            let mut u = match second {
                SecondMoment::Factored { row, col } => {
                    let _ = row.f_lerp_(&u.f_mean_dim(-1, false, None)?, bc2)?;
                    let _ = col.f_lerp_(&u.f_mean_dim(-2, false, None)?, bc2)?;
                    let r = row.f_div(&row.f_mean_dim(-1, true, None)?)?.f_rsqrt()?.f_unsqueeze(-1)?;
                    let c = col.f_unsqueeze(-2)?.f_rsqrt()?;
                    r.f_mul(&c)?
                }
                SecondMoment::Full(v) => {
                    let _ = v.f_lerp_(&u, bc2)?;
                    v.f_rsqrt()?
                }
            };
            let _ = u.f_mul_(&g)?;
            let factor = rms(&u)?.f_div_scalar(self.clip_threshold)?.f_clamp_min(1.0)?;
            let u = alpha.scale(&u.f_div(&factor)?)?;
            let _ = m.f_lerp_(&u, 1.0 - b1)?;
            let _ = p.f_sub_(m)?;
        }
        Ok(())
    }

    fn zero_grad(&mut self) {
        zero_grads(&mut self.params);
    }

    fn state(&self) -> Vec<NamedParam> {
        let mut out = vec![("step".to_string(), Tensor::from(self.step))];
        for (((name, _), m), second) in self.params.iter().zip(&self.exp_avg).zip(&self.second) {
            out.push((format!("{name}.exp_avg"), m.shallow_clone()));
            match second {
                SecondMoment::Factored { row, col } => {
                    out.push((format!("{name}.exp_avg_sq_row"), row.shallow_clone()));
                    out.push((format!("{name}.exp_avg_sq_col"), col.shallow_clone()));
                }
                SecondMoment::Full(v) => out.push((format!("{name}.exp_avg_sq"), v.shallow_clone())),
            }
        }
        out
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        self.step = step_count("adafactor", state)?;
        let _guard = tch::no_grad_guard();
        for (((name, p), m), second) in self.params.iter().zip(&mut self.exp_avg).zip(&mut self.second) {
            m.f_copy_(state_tensor("adafactor", state, &format!("{name}.exp_avg"), p)?)?;
            match second {
                SecondMoment::Factored { row, col } => {
                    let r = state_tensor("adafactor", state, &format!("{name}.exp_avg_sq_row"), row)?;
                    row.f_copy_(r)?;
                    let c = state_tensor("adafactor", state, &format!("{name}.exp_avg_sq_col"), col)?;
                    col.f_copy_(c)?;
                }
                SecondMoment::Full(v) => {
                    v.f_copy_(state_tensor("adafactor", state, &format!("{name}.exp_avg_sq"), v)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tch::Kind;

    use super::*;

    /// With `relative_step` the rate given to `step` is ignored.
    #[test]
    fn relative_step_ignores_the_given_rate() {
        let run = |lr: f64| {
            let w = Tensor::ones([3, 2], (Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
            let h = HParams::parse(&["relative_step=true"]).unwrap();
            let mut opt = AdaFactor::new(&h, vec![("w".into(), w.shallow_clone())]).unwrap();
            for _ in 0..3 {
                opt.zero_grad();
                (&w * &w).sum(Kind::Double).backward();
                opt.step(lr).unwrap();
            }
            w.detach()
        };
        let (a, b) = (run(0.5), run(1e-4));
        assert!(a.equal(&b));
        assert!(a.double_value(&[0, 0]) < 1.0);
    }
}
