//! Learning-rate schedules as pure functions of the step, so they need no state in a checkpoint.

use serde::{Deserialize, Serialize};

/// A learning-rate schedule: linear warm-up from 0, then cosine decay to `min_lr_ratio · lr`, constant,
/// or step decay; or a one-cycle schedule (its own warm-up).
///
/// ```text
/// warm-up (step < w):   η · (step + 1) / w                                  (Constant, Cosine, Step)
/// Step:                 η · γ^⌊(step − w) / step_size⌋                       (torch's StepLR after warm-up)
/// OneCycle (cos):       η/div → η over the first pct_start·total − 1 steps, then η → η/(div·final_div)
///                       at step total − 1, each phase a half cosine           (torch's OneCycleLR)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The base rate throughout (after warm-up).
    Constant {
        /// Warm-up steps.
        #[serde(default)]
        warmup_steps: u64,
    },
    /// Cosine decay over the whole run, after warm-up.
    Cosine {
        /// Warm-up steps.
        #[serde(default)]
        warmup_steps: u64,
        /// Final rate as a fraction of the base rate.
        #[serde(default)]
        min_lr_ratio: f64,
    },
    /// `torch.optim.lr_scheduler.StepLR` after warm-up: the rate is multiplied by `gamma` every
    /// `step_size` steps.
    Step {
        /// Warm-up steps.
        #[serde(default)]
        warmup_steps: u64,
        /// Steps between decays (≥ 1).
        step_size: u64,
        /// Multiplicative decay.
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    /// `torch.optim.lr_scheduler.OneCycleLR` (`three_phase=False`): the base rate is the peak (`max_lr`);
    /// the rate rises from `lr / div_factor` to `lr` over the first `pct_start · total − 1` steps, then
    /// falls to `lr / (div_factor · final_div_factor)` at the last step. Has no separate warm-up.
    OneCycle {
        /// Fraction of the run spent rising.
        #[serde(default = "default_pct_start")]
        pct_start: f64,
        /// Initial rate = `lr / div_factor`.
        #[serde(default = "default_div_factor")]
        div_factor: f64,
        /// Final rate = initial rate / `final_div_factor`.
        #[serde(default = "default_final_div_factor")]
        final_div_factor: f64,
        /// How each phase interpolates (torch's `anneal_strategy`).
        #[serde(default)]
        anneal: Anneal,
    },
}

/// Interpolation within a phase of [`Schedule::OneCycle`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anneal {
    /// Half cosine, `end + (start − end) (1 + cos(π t)) / 2` (torch's default).
    #[default]
    Cos,
    /// Straight line, `start + (end − start) t`.
    Linear,
}

impl Anneal {
    fn at(self, start: f64, end: f64, t: f64) -> f64 {
        match self {
            Anneal::Cos => end + (start - end) / 2.0 * ((std::f64::consts::PI * t).cos() + 1.0),
            Anneal::Linear => (end - start) * t + start,
        }
    }
}

fn default_gamma() -> f64 {
    0.1
}
fn default_pct_start() -> f64 {
    0.3
}
fn default_div_factor() -> f64 {
    25.0
}
fn default_final_div_factor() -> f64 {
    1e4
}

impl Schedule {
    /// The rate at `step` (0-based) of `total` steps for base rate `lr` (steps past the end keep the last
    /// step's rate for OneCycle).
    pub fn lr(&self, lr: f64, step: u64, total: u64) -> f64 {
        let warmup = match self {
            Schedule::Constant { warmup_steps }
            | Schedule::Cosine { warmup_steps, .. }
            | Schedule::Step { warmup_steps, .. } => *warmup_steps,
            Schedule::OneCycle { pct_start, div_factor, final_div_factor, anneal } => {
                // torch's phase boundaries, in floating point: the rise ends at `pct_start · total − 1`.
                let last = total.saturating_sub(1) as f64;
                let step = (step as f64).min(last);
                let initial = lr / div_factor;
                let min = initial / final_div_factor;
                let peak = pct_start * total as f64 - 1.0;
                return if step <= peak {
                    anneal.at(initial, lr, step / peak)
                } else {
                    anneal.at(lr, min, (step - peak) / (last - peak))
                };
            }
        };
        if step < warmup {
            return lr * (step + 1) as f64 / warmup as f64;
        }
        match self {
            Schedule::Constant { .. } => lr,
            Schedule::Step { step_size, gamma, .. } => {
                lr * gamma.powi(((step - warmup) / (*step_size).max(1)).min(i32::MAX as u64) as i32)
            }
            Schedule::OneCycle { .. } => unreachable!("returned above"),
            Schedule::Cosine { min_lr_ratio, .. } => {
                let span = total.saturating_sub(warmup).max(1) as f64;
                let t = ((step - warmup) as f64 / span).min(1.0);
                let min = lr * min_lr_ratio;
                min + (lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = Schedule::Cosine { warmup_steps: 10, min_lr_ratio: 0.0 };
        assert!((s.lr(1.0, 0, 110) - 0.1).abs() < 1e-12);
        assert!((s.lr(1.0, 9, 110) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 60, 110) - 0.5).abs() < 1e-12);
        assert!(s.lr(1.0, 109, 110) < 1e-3);
        assert_eq!(Schedule::Constant { warmup_steps: 0 }.lr(0.3, 5, 10), 0.3);
    }
}
