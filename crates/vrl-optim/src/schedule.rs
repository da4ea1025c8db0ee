//! Learning-rate schedules as pure functions of the step, so they need no state in a checkpoint.

use serde::{Deserialize, Serialize};

/// A learning-rate schedule: linear warm-up from 0, then cosine decay to `min_lr_ratio · lr` or constant.
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
}

impl Schedule {
    /// The rate at `step` (0-based) of `total` steps for base rate `lr`.
    pub fn lr(&self, lr: f64, step: u64, total: u64) -> f64 {
        let warmup = match self {
            Schedule::Constant { warmup_steps } | Schedule::Cosine { warmup_steps, .. } => *warmup_steps,
        };
        if step < warmup {
            return lr * (step + 1) as f64 / warmup as f64;
        }
        match self {
            Schedule::Constant { .. } => lr,
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
