//! Ranges of integer settings: limits every study checks when it validates its configuration, so
//! that no count, size or interval can wrap, overflow or reach LibTorch as a nonsensical value.
//!
//! The limits rest on one bound: a data set that vrl holds in memory has fewer than 2⁴⁰ examples
//! (vrl keeps examples as decoded images of at least 28×28 bytes, and 2⁴⁰ of them would take 784 TiB).
//! With at most [`MAX_EPOCHS`] (< 2²⁰) epochs and batches of at most [`MAX_BATCH_SIZE`] (2²⁰)
//! examples, the steps of a run (at most 2⁴⁰ per epoch × 2²⁰ epochs = 2⁶⁰) and the examples it
//! draws (at most (2⁴⁰ + 2²⁰) × 2²⁰ < 2⁶¹, or [`MAX_STEPS`] × [`MAX_BATCH_SIZE`] = 2⁶⁰ for runs
//! counted in steps) stay below 2⁶³: they fit a `u64` and an `i64` (LibTorch's integers, TOML's and
//! JSON's) with room to spare. Studies compute their step counts with [`total_steps`], which checks
//! this rather than relying on it.

use std::fmt::Display;
use std::ops::RangeInclusive;

use crate::ConfigError;

/// Most LibTorch intra-op threads a study may ask for (`threads`; 0 is LibTorch's default). LibTorch
/// takes an `i32`; more threads than this is a typo, not a machine.
pub const MAX_THREADS: u64 = 1024;
/// Most epochs of a training stage (below 2²⁰; see the module documentation).
pub const MAX_EPOCHS: u64 = 1_000_000;
/// Most optimizer steps of a run, and the largest step interval (logging, checkpoints, evaluation):
/// 2⁴⁰, about 1.1 × 10¹².
pub const MAX_STEPS: u64 = 1 << 40;
/// Largest batch size: 2²⁰.
pub const MAX_BATCH_SIZE: u64 = 1 << 20;
/// Most examples a setting may name: subsets and limits of a data set (more than a data set in
/// memory can hold, so a limit this large still means "all").
pub const MAX_EXAMPLES: u64 = 1 << 40;
/// Most examples a study draws or generates itself (metric points, calibration pairs, whitening and
/// analysis images): 2²⁴, about 1.7 × 10⁷, a thousand times what the studies use.
pub const MAX_SAMPLES: u64 = 1 << 24;
/// Largest width-like setting: latent dimensions, prompts, ranks, heads, dictionary entries,
/// histogram bins, grid columns, decoder widths and depths (2¹⁶).
pub const MAX_SIZE: u64 = 1 << 16;
/// Largest image side in pixels, and padding: 4096, beyond any input the model zoo takes.
pub const MAX_IMAGE_SIZE: u64 = 4096;
/// Longest duration in seconds (leases, heartbeats): a year, so that adding it to a clock cannot
/// overflow.
pub const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// Checks that `value` of `key` lies in `range`.
///
/// # Errors
/// [`ConfigError::Invalid`] of `experiment` naming `key`, the value and the range.
pub fn check_range<T: PartialOrd + Display>(
    experiment: &str,
    key: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        experiment: experiment.to_string(),
        key: key.to_string(),
        message: format!("must be an integer from {} to {}, got {value}", range.start(), range.end()),
    })
}

/// Checks every `(key, value, range)` of `checks` with [`check_range`], in order.
///
/// # Errors
/// The first value out of its range, as [`check_range`] reports it.
pub fn check_ranges<T: PartialOrd + Display + Copy>(
    experiment: &str,
    checks: &[(&str, T, RangeInclusive<T>)],
) -> Result<(), ConfigError> {
    checks.iter().try_for_each(|(key, value, range)| check_range(experiment, key, *value, range.clone()))
}

/// The steps of a training stage, `per_epoch × epochs`, where `epochs` is the value of `key`.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `key` when the product exceeds [`MAX_STEPS`] (it never wraps).
pub fn total_steps(experiment: &str, key: &str, per_epoch: u64, epochs: u64) -> Result<u64, ConfigError> {
    match per_epoch.checked_mul(epochs) {
        Some(total) if total <= MAX_STEPS => Ok(total),
        _ => Err(ConfigError::Invalid {
            experiment: experiment.to_string(),
            key: key.to_string(),
            message: format!(
                "{epochs} epochs of {per_epoch} steps exceed the {MAX_STEPS} steps a run may have"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_range_pass_and_others_name_key_value_and_range() {
        assert!(check_range("mnist", "threads", 0u64, 0..=MAX_THREADS).is_ok());
        assert!(check_range("mnist", "threads", MAX_THREADS, 0..=MAX_THREADS).is_ok());
        let e = check_range("mnist", "threads", 4_294_967_296u64, 0..=MAX_THREADS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config key `threads` in experiment `mnist`: must be an integer from 0 to 1024, got 4294967296"
        );
        let e = check_range("t", "a.b", -3i64, 1..=8).unwrap_err();
        assert!(e.to_string().contains("`a.b`") && e.to_string().contains("from 1 to 8, got -3"), "{e}");
    }

    #[test]
    fn check_ranges_reports_the_first_failure() {
        let ok: [(&str, u64, RangeInclusive<u64>); 2] = [("a", 1, 1..=2), ("b", 2, 1..=2)];
        assert!(check_ranges("t", &ok).is_ok());
        let bad: [(&str, u64, RangeInclusive<u64>); 3] = [("a", 1, 1..=2), ("b", 0, 1..=2), ("c", 9, 1..=2)];
        let e = check_ranges("t", &bad).unwrap_err();
        assert!(e.to_string().contains("`b`"), "{e}");
    }

    #[test]
    fn total_steps_never_wraps() {
        assert_eq!(total_steps("t", "train.epochs", 469, 3).unwrap(), 1407);
        let e = total_steps("t", "train.epochs", 4, 922_337_203_685_477_581).unwrap_err();
        assert!(e.to_string().contains("`train.epochs`"), "{e}");
        assert!(total_steps("t", "e", u64::MAX, 2).is_err());
        assert!(total_steps("t", "e", MAX_STEPS, 1).is_ok() && total_steps("t", "e", MAX_STEPS, 2).is_err());
    }

    #[test]
    fn the_limits_keep_products_below_i64_max() {
        // Epoch-based runs: examples in memory (< 2⁴⁰) plus a batch, times the epochs.
        let drawn = ((1u64 << 40) + MAX_BATCH_SIZE).checked_mul(MAX_EPOCHS);
        assert!(drawn.is_some_and(|d| d < i64::MAX as u64));
        // Step-based runs.
        assert!(MAX_STEPS.checked_mul(MAX_BATCH_SIZE).is_some_and(|d| d < i64::MAX as u64));
        // A batch of the largest RGB images, as a tensor's element count.
        let elements = MAX_BATCH_SIZE * 3 * MAX_IMAGE_SIZE * MAX_IMAGE_SIZE;
        assert!(elements < i64::MAX as u64);
        assert!(MAX_THREADS <= i32::MAX as u64 && MAX_EPOCHS < 1 << 20);
    }
}
