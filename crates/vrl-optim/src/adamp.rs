//! AdamP (Heo et al., 2021, "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
//! Scale-invariant Weights"), exactly as `pytorch_optimizer.AdamP` 4.1.0 with its defaults (decoupled
//! weight decay scaled by the learning rate; no AdaNorm, cautious updates or gradient centralization):
//!
//! ```text
//! m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
//! u ← m · √(1 − β₂ᵗ) / (√v + ε)        or, with nesterov,  (β₁ m + (1 − β₁) g) · √(1 − β₂ᵗ) / (√v + ε)
//! (u, r) ← project(θ, g, u)            (tensors of dim ≥ 2; r = 1 otherwise)
//! θ ← θ (1 − η λ r)                    (decoupled weight decay, dim ≥ 2 only)
//! θ ← θ − η/(1 − β₁ᵗ) · u
//! ```
//!
//! `project` looks at θ and g first per output channel (rows of θ viewed as `[C, -1]`), then as one
//! row (`[1, -1]`). For the first view where every |cos(g, θ)| < δ / √(row length), the weight is taken
//! as scale invariant: the radial part is removed from the update, u ← u − θ̂ ⟨θ̂, u⟩ per row with
//! θ̂ = θ / (‖θ‖ + ε), and the weight decay is scaled by `wd_ratio` (r).

use std::collections::HashMap;

use tch::Tensor;

use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, buffers_state, decays, load_buffers, zero_grads,
};

/// Removes the radial component of `update` where `param` looks scale invariant (see the module
/// docs); returns the weight-decay ratio, `wd_ratio` if projected and 1 otherwise. Shared with SGDP.
pub(crate) fn project(
    param: &Tensor,
    grad: &Tensor,
    update: &mut Tensor,
    delta: f64,
    wd_ratio: f64,
    eps: f64,
) -> Result<f64, OptimError> {
    let dim = param.dim();
    let mut expand = vec![-1i64];
    expand.resize(dim, 1);
    for rows in [param.size()[0], 1] {
        let view = |t: &Tensor| t.f_view([rows, -1]);
        let (p_rows, g_rows) = (view(param)?, view(grad)?);
        let cos = Tensor::f_cosine_similarity(&g_rows, &p_rows, 1, eps)?.f_abs()?;
        let threshold = delta / (p_rows.size()[1] as f64).sqrt();
        // Compared in the parameter's dtype, as the reference does.
        if cos.f_max()?.f_lt(threshold)?.f_int64_value(&[])? != 0 {
            let norm = p_rows.f_norm_scalaropt_dim(2, [1], false)?.f_view(expand.as_slice())?;
            let p_n = param.f_div(&norm.f_add_scalar(eps)?)?;
            let radial = view(&p_n.f_mul(update)?)?.f_sum_dim_intlist(1, false, param.kind())?;
            let _ = update.f_sub_(&p_n.f_mul(&radial.f_view(expand.as_slice())?)?)?;
            return Ok(wd_ratio);
        }
    }
    Ok(1.0)
}

/// AdamP: Adam whose updates of scale-invariant weights are projected onto the tangent space.
#[derive(Debug)]
pub struct AdamP {
    params: Vec<NamedParam>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    delta: f64,
    wd_ratio: f64,
    nesterov: bool,
    step: i64,
}

impl AdamP {
    /// `pytorch_optimizer.AdamP`'s defaults.
    pub fn defaults() -> HParams {
        HParams(
            [
                ("lr", HValue::Num(1e-3)),
                ("betas", HValue::Pair([0.9, 0.999])),
                ("eps", HValue::Num(1e-8)),
                ("weight_decay", HValue::Num(0.0)),
                ("delta", HValue::Num(0.1)),
                ("wd_ratio", HValue::Num(0.1)),
                ("nesterov", HValue::Bool(false)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("adamp", Self::defaults())?;
        h.non_negative("lr")?;
        let exp_avg = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Ok(AdamP {
            params,
            exp_avg,
            exp_avg_sq,
            betas: h.unit_pair("betas")?,
            eps: h.non_negative("eps")?,
            weight_decay: h.non_negative("weight_decay")?,
            delta: h.non_negative("delta")?,
            wd_ratio: h.closed_unit("wd_ratio")?,
            nesterov: h.flag("nesterov")?,
            step: 0,
        })
    }
}

impl Optimizer for AdamP {
    fn name(&self) -> &'static str {
        "adamp"
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
            let _ = m.f_lerp_(&g, 1.0 - b1)?;
            let _ = v.f_mul_scalar_(b2)?;
            let _ = v.f_addcmul_(&g, &(&g * (1.0 - b2)))?;
            let inv_denom = v.f_sqrt()?.f_add_scalar_(self.eps)?.f_reciprocal_()?.f_mul_scalar_(bc2_sqrt)?;
            let mut update = match self.nesterov {
                true => m.f_lerp(&g, 1.0 - b1)?.f_mul_(&inv_denom)?,
                false => inv_denom.f_mul(m)?,
            };
            let ratio = match p.dim() > 1 {
                true => project(p, &g, &mut update, self.delta, self.wd_ratio, self.eps)?,
                false => 1.0,
            };
            if self.weight_decay != 0.0 && decays(p) {
                let _ = p.f_mul_scalar_(1.0 - self.weight_decay * lr * ratio)?;
            }
            let _ = p.f_sub_(&(update * (lr / bc1)))?;
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
        self.step = load_buffers("adamp", state, &self.params, buffers)?;
        Ok(())
    }
}
