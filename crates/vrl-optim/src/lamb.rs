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
//!
//! `weight_decay_mode = "coupled"` (the reference's `weight_decouple = False`, the paper's form)
//! drops the decoupled decay and adds λθ to the direction before the trust ratio: `u ← m / (√v + ε)
//! + λθ`. The fused path is two passes: the moments and both norms, then the update.
//!
//! The fused path computes ‖θ‖ after the decoupled decay as `(1 − η λ) ‖θ‖` rather than as the norm of
//! the decayed tensor (the two agree to a few units in the last place). That lets the update pass
//! also sum the squares of the weights it writes, so that the next step's first pass need not read
//! the weights at all: one pass fewer over the parameters' memory. The saved sum is used only while
//! the parameter is exactly as that pass left it (same storage and autograd version counter, which
//! every in-place change bumps); otherwise the first pass reads the weights again, to the same bits.

use std::collections::HashMap;

use tch::Tensor;

use crate::decay::{WeightDecay, WeightDecayMode};
use crate::fused::{self, Real, with_real};
use crate::{
    HParams, HValue, NamedParam, OptimError, Optimizer, buffers_state, defaults_with, load_buffers,
    zero_grads,
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
    decay: WeightDecay,
    fused: bool,
    step: i64,
    /// Per parameter, Σθ² as the last fused update left it (see the module docs).
    weight_sq: Vec<Option<WeightSq>>,
}

/// Σθ² of a parameter, and what identifies the state of the weights it was summed over.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WeightSq {
    /// The storage (`data_ptr`).
    ptr: usize,
    /// The autograd version counter right after the update.
    version: i64,
    /// Σθ², in `f64`, summed chunk by chunk as the first pass would.
    sq: f64,
}

impl WeightSq {
    /// The identity of `p`'s current weights, if the version counter tracks every write to them
    /// (it does for tensors that require grad: the fused kernels bump it).
    fn key(p: &Tensor) -> Option<(usize, i64)> {
        p.requires_grad().then(|| (p.data_ptr() as usize, p.internal_version()))
    }

    /// The saved sum, if `p` is still as the update that saved it left it.
    fn lookup(saved: Option<WeightSq>, p: &Tensor) -> Option<f64> {
        let saved = saved?;
        (WeightSq::key(p)? == (saved.ptr, saved.version)).then_some(saved.sq)
    }
}

impl Lamb {
    /// `pytorch_optimizer.Lamb`'s defaults.
    pub fn defaults() -> HParams {
        defaults_with(
            [
                ("lr", HValue::Num(1e-3)),
                ("betas", HValue::Pair([0.9, 0.999])),
                ("eps", HValue::Num(1e-6)),
                ("weight_decay", HValue::Num(0.0)),
            ],
            WeightDecayMode::Decoupled,
        )
    }

    /// Creates the optimizer; `lr` in `hparams` is only validated (the step takes the scheduled rate).
    pub fn new(hparams: &HParams, params: Vec<NamedParam>) -> Result<Self, OptimError> {
        let h = hparams.resolve("lamb", Self::defaults())?;
        h.non_negative("lr")?;
        let exp_avg = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let weight_sq = vec![None; params.len()];
        Ok(Lamb {
            params,
            exp_avg,
            exp_avg_sq,
            betas: h.unit_pair("betas")?,
            eps: h.non_negative("eps")?,
            decay: WeightDecay::resolve(
                &h,
                "lamb",
                &[WeightDecayMode::Decoupled, WeightDecayMode::Coupled],
                None,
            )?,
            fused: h.flag("fused")?,
            step: 0,
            weight_sq,
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
        let state = self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq);
        for ((((_, p), m), v), saved) in state.zip(&mut self.weight_sq) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let wd = self.decay.coupled_lambda(p);
            if let Some(dtype) = fused::eligible(self.fused, &[p, &g, m, v]) {
                let k = Kernel {
                    betas: self.betas,
                    eps: self.eps,
                    step_size,
                    wd: wd.unwrap_or(0.0),
                    factor: self.decay.decoupled_factor(p, lr).unwrap_or(1.0),
                };
                let known = WeightSq::lookup(saved.take(), p);
                let sq = with_real!(dtype, T => k.run::<T>(p, &g, m, v, known))?;
                *saved = sq.zip(WeightSq::key(p)).map(|(sq, (ptr, version))| WeightSq { ptr, version, sq });
                continue;
            }
            let _ = m.f_mul_scalar_(b1)?;
            let _ = m.f_add_(&(&g * (1.0 - b1)))?;
            let _ = v.f_mul_scalar_(b2)?;
            let _ = v.f_addcmul_(&g, &(&g * (1.0 - b2)))?;
            self.decay.decouple(p, lr)?;
            let mut update = m.f_div(&v.f_sqrt()?.f_add_scalar(self.eps)?)?;
            if let Some(wd) = wd {
                let _ = update.f_add_(&(&*p * wd))?;
            }
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
        self.weight_sq.fill(None);
        Ok(())
    }
}

/// The fused LAMB update of one parameter: pass 1 updates the moments and sums ‖u‖² (and Σθ², unless
/// it is known); pass 2 recomputes u from the stored moments and takes the step (summing the new
/// Σθ² where that saves the next step's pass 1 from reading θ).
struct Kernel {
    betas: [f64; 2],
    eps: f64,
    step_size: f64,
    /// Coupled decay λ (0 where none applies).
    wd: f64,
    /// Decoupled decay factor `1 − η λ` (1 where none applies).
    factor: f64,
}

impl Kernel {
    /// Takes the step; `known` is Σθ² of the current weights where it is known. Returns Σθ² of the
    /// new weights where the direction does not depend on them (no coupled decay), so that the next
    /// step's pass 1 need not read them.
    fn run<T: Real>(
        &self,
        p: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
        known: Option<f64>,
    ) -> Result<Option<f64>, OptimError> {
        let [b1, b2] = self.betas;
        let (b1, omb1, b2, omb2) = (T::of(b1), T::of(1.0 - b1), T::of(b2), T::of(1.0 - b2));
        let (eps, wd, factor) = (T::of(self.eps), T::of(self.wd), T::of(self.factor));
        let moments = move |m: T, v: T, g: T| (m * b1 + g * omb1, v * b2 + g * (g * omb2));
        // Pass 1: the moments, ‖u‖² and (unless known, or where u needs θ) Σθ².
        let (sq, uu) = match known.filter(|_| self.wd == 0.0) {
            Some(sq) => {
                let partials = fused::map_chunks::<T, 2, 1, _>(
                    [m, v],
                    [g],
                    #[inline(always)]
                    move |[m, v], [g]| {
                        let n = m.len();
                        let (v, g) = (&mut v[..n], &g[..n]);
                        fused::block_sq_sums(
                            n,
                            #[inline(always)]
                            |r, [su]| {
                                let (m, v, g) = (&mut m[r.clone()], &mut v[r.clone()], &g[r]);
                                let len = m.len();
                                let (v, g, su) = (&mut v[..len], &g[..len], &mut su[..len]);
                                for i in 0..len {
                                    let (mi, vi) = moments(m[i], v[i], g[i]);
                                    m[i] = mi;
                                    v[i] = vi;
                                    su[i] = mi / (vi.sqrt() + eps);
                                }
                            },
                        )
                    },
                )?;
                (sq, fused::total(&partials)[0])
            }
            None => {
                let partials = fused::map_chunks::<T, 2, 2, _>(
                    [m, v],
                    [g, p],
                    #[inline(always)]
                    move |[m, v], [g, p]| {
                        let n = m.len();
                        let (v, g, p) = (&mut v[..n], &g[..n], &p[..n]);
                        fused::block_sq_sums(
                            n,
                            #[inline(always)]
                            |r, [sp, su]| {
                                let (m, v, g, p) =
                                    (&mut m[r.clone()], &mut v[r.clone()], &g[r.clone()], &p[r]);
                                let len = m.len();
                                let (v, g, p, sp, su) =
                                    (&mut v[..len], &g[..len], &p[..len], &mut sp[..len], &mut su[..len]);
                                for i in 0..len {
                                    let (mi, vi) = moments(m[i], v[i], g[i]);
                                    m[i] = mi;
                                    v[i] = vi;
                                    sp[i] = p[i];
                                    su[i] = mi / (vi.sqrt() + eps) + p[i] * factor * wd;
                                }
                            },
                        )
                    },
                )?;
                let [sq, uu] = fused::total(&partials);
                (sq, uu)
            }
        };
        // ‖θ (1 − η λ)‖, as (1 − η λ) ‖θ‖.
        let pp = sq * factor.f64() * factor.f64();
        let weight_norm = fused::min(T::of(pp.sqrt()), T::of(WEIGHT_NORM_CLAMP));
        let update_norm = T::of(uu.sqrt());
        let scale = if weight_norm == T::ZERO || update_norm == T::ZERO {
            T::of(-self.step_size)
        } else {
            weight_norm / (update_norm + eps) * T::of(-self.step_size)
        };
        let step = move |p: T, m: T, v: T| {
            let pd = p * factor;
            pd + (m / (v.sqrt() + eps) + pd * wd) * scale
        };
        if self.wd != 0.0 {
            fused::for_each::<T, 1, 2>(
                [p],
                [m, v],
                #[inline(always)]
                move |[p], [m, v]| {
                    let n = p.len();
                    let (m, v) = (&m[..n], &v[..n]);
                    for i in 0..n {
                        p[i] = step(p[i], m[i], v[i]);
                    }
                },
            )?;
            return Ok(None);
        }
        // Pass 2, summing the new Σθ² for the next step.
        let partials = fused::map_chunks::<T, 1, 2, _>(
            [p],
            [m, v],
            #[inline(always)]
            move |[p], [m, v]| {
                let n = p.len();
                let (m, v) = (&m[..n], &v[..n]);
                fused::block_sq_sums(
                    n,
                    #[inline(always)]
                    |r, [sp]| {
                        let (p, m, v) = (&mut p[r.clone()], &m[r.clone()], &v[r]);
                        let len = p.len();
                        let (m, v, sp) = (&m[..len], &v[..len], &mut sp[..len]);
                        for i in 0..len {
                            p[i] = step(p[i], m[i], v[i]);
                            sp[i] = p[i];
                        }
                    },
                )
            },
        )?;
        Ok(Some(fused::total(&partials)[0]))
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    /// `steps` LAMB steps on `w` (weight decay on), calling `between(step, w)` before each.
    fn train(w: &Tensor, fused: bool, steps: usize, between: impl Fn(usize, &Tensor, &Lamb)) -> Tensor {
        let flag = format!("fused={fused}");
        let h = HParams::parse(&["weight_decay=0.1", flag.as_str()]).unwrap();
        let mut opt = Lamb::new(&h, vec![("w".into(), w.shallow_clone())]).unwrap();
        for k in 0..steps {
            opt.zero_grad();
            (w * w * (k as f64 + 1.0) + w.sin()).sum(w.kind()).backward();
            between(k, w, &opt);
            opt.step(1e-2).unwrap();
        }
        w.detach()
    }

    /// Weights whose norm (about 2.8) is below the reference's clamp of 10, so that it matters.
    fn weights(kind: Kind) -> Tensor {
        (Tensor::linspace(-3.0, 2.0, 300_000, (kind, Device::Cpu)) / 300.0)
            .reshape([600, 500])
            .set_requires_grad(true)
    }

    /// The sum of squared weights the update pass saves gives the same bits as reading the weights
    /// again, which the first pass does after any in-place change (here one that keeps the values).
    #[test]
    fn saved_weight_sums_give_the_same_bits_as_reading_the_weights() {
        for kind in [Kind::Float, Kind::Double] {
            let saved = train(&weights(kind), true, 4, |k, w, opt| {
                if k > 0 {
                    assert!(
                        WeightSq::lookup(opt.weight_sq[0], w).is_some(),
                        "saved sum not used at step {k}"
                    );
                }
            });
            let reread = train(&weights(kind), true, 4, |_, w, opt| {
                let _guard = tch::no_grad_guard();
                let _ = w.shallow_clone().f_add_scalar_(0.0).unwrap();
                assert!(WeightSq::lookup(opt.weight_sq[0], w).is_none(), "an in-place change went unseen");
            });
            assert!(saved.equal(&reread), "{kind:?}");
        }
    }

    /// Weights changed in place between steps are read again: the trust ratio follows the new norm,
    /// as on the tensor-op path.
    #[test]
    fn weights_changed_between_steps_are_read_again() {
        let halve = |k: usize, w: &Tensor, _: &Lamb| {
            if k == 2 {
                let _guard = tch::no_grad_guard();
                let _ = w.shallow_clone().f_mul_scalar_(0.5).unwrap();
            }
        };
        let fused = train(&weights(Kind::Double), true, 4, halve);
        let ops = train(&weights(Kind::Double), false, 4, halve);
        let err = (&fused - &ops).abs().max().double_value(&[]);
        assert!(err < 1e-12, "fused and tensor-op paths differ by {err}");
    }
}
