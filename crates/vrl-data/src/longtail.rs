//! Long-tailed versions of balanced data sets, the many/medium/few-shot split used to report on them,
//! and the class-aware samplers of decoupled long-tail training.
//!
//! - [`longtail_counts`] is the exponential profile of Cui et al. (2019) and the LDAM-DRW and BBN code:
//!   class `c` of `C` keeps `floor(n_max · IF^(−c/(C−1)))` images, from `n_max` down to `n_max / IF`
//!   (CIFAR-10-LT with IF = 100: 5000, 2997, …, 50). [`longtail_subset`] picks those images, seeded.
//! - [`ShotGroups`] splits classes by their number of training images as in OLTR (Liu et al., 2019)
//!   and Decoupling (Kang et al., 2020): many-shot > 100, medium-shot 20–100, few-shot < 20;
//!   [`group_accuracy`] reports the accuracy of each group.
//! - [`Sampler`] draws the example indices of one epoch: uniform (instance-balanced),
//!   class-balanced, square-root and progressively balanced sampling (Kang et al., 2020).
//!
//! ```
//! use vrl_data::longtail::{Sampler, ShotGroups, longtail_counts, longtail_subset};
//!
//! let counts = longtail_counts(5000, 10, 100.0).unwrap();
//! assert_eq!(counts, [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]);
//! let labels: Vec<u8> = (0..50_000).map(|i| (i % 10) as u8).collect(); // a balanced CIFAR-10
//! let kept = longtail_subset(&labels, &counts, 0).unwrap();
//! assert_eq!(kept.len(), 12_406);
//! let lt_labels: Vec<u8> = kept.iter().map(|&i| labels[i]).collect();
//! let epoch = Sampler::ClassBalanced.epoch_indices(&lt_labels, 0, 7, lt_labels.len()).unwrap();
//! assert_eq!(epoch.len(), 12_406);
//! assert_eq!(ShotGroups::default().group(150), vrl_data::longtail::Shot::Many);
//! ```

use crate::{SplitMix64, permutation};

/// Errors in the arguments of the long-tail helpers; each names the offending value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LongTailError {
    /// The imbalance factor is below 1 or not finite.
    #[error("imbalance factor must be a finite number >= 1 (n_max / n_min), got {0}")]
    ImbalanceFactor(f64),
    /// No classes were asked for.
    #[error("the number of classes must be at least 1")]
    NoClasses,
    /// The largest class size is zero.
    #[error("n_max (images in the largest class) must be at least 1")]
    ZeroMax,
    /// A class has fewer examples than requested.
    #[error("class {class} has {available} examples, {requested} requested")]
    ClassTooSmall {
        /// The class.
        class: usize,
        /// Its number of examples.
        available: usize,
        /// The number requested.
        requested: usize,
    },
    /// A label is not below the number of classes.
    #[error("label {label} of example {index} is out of range 0..{num_classes}")]
    LabelOutOfRange {
        /// The example's index.
        index: usize,
        /// Its label.
        label: usize,
        /// The number of classes.
        num_classes: usize,
    },
    /// Per-class arrays have different lengths.
    #[error("{what}: lengths differ ({lengths:?})")]
    LengthMismatch {
        /// Which arrays.
        what: &'static str,
        /// Their lengths.
        lengths: Vec<usize>,
    },
    /// A class has more correct predictions than test examples.
    #[error("class {class}: {correct} correct out of {total}")]
    MoreCorrectThanTotal {
        /// The class.
        class: usize,
        /// Its number of correct predictions.
        correct: usize,
        /// Its number of test examples.
        total: usize,
    },
    /// There is nothing to sample from.
    #[error("cannot sample from an empty set of labels")]
    EmptyLabels,
    /// A progressive sampler was given zero epochs.
    #[error("Progressive sampler needs total_epochs >= 1")]
    ZeroEpochs,
    /// Shot-group thresholds that leave no room for the medium group.
    #[error("few_below ({few_below}) must not exceed many_above + 1 ({many_above} + 1)")]
    Thresholds {
        /// The many-shot threshold.
        many_above: usize,
        /// The few-shot threshold.
        few_below: usize,
    },
}

/// The number of images kept per class: `floor(n_max · IF^(−c/(C−1)))` for class `c` of `C`, as in the
/// LDAM-DRW and BBN code (`int(img_max * (imb_factor ** (-cls_idx / (cls_num - 1.0))))`). With one
/// class, `[n_max]`.
///
/// # Errors
/// When `imbalance_factor` is below 1 or not finite, `num_classes` is 0 or `n_max` is 0.
pub fn longtail_counts(
    n_max: usize,
    num_classes: usize,
    imbalance_factor: f64,
) -> Result<Vec<usize>, LongTailError> {
    if !imbalance_factor.is_finite() || imbalance_factor < 1.0 {
        return Err(LongTailError::ImbalanceFactor(imbalance_factor));
    }
    if num_classes == 0 {
        return Err(LongTailError::NoClasses);
    }
    if n_max == 0 {
        return Err(LongTailError::ZeroMax);
    }
    if num_classes == 1 {
        return Ok(vec![n_max]);
    }
    let last = (num_classes - 1) as f64;
    Ok((0..num_classes)
        .map(|c| (n_max as f64 * imbalance_factor.powf(-(c as f64) / last)).floor() as usize)
        .collect())
}

/// Checks the labels against the number of classes and returns each class's example indices, in order.
fn class_members<L: Copy + Into<usize>>(
    labels: &[L],
    num_classes: usize,
) -> Result<Vec<Vec<usize>>, LongTailError> {
    let mut members = vec![Vec::new(); num_classes];
    for (index, &l) in labels.iter().enumerate() {
        let label: usize = l.into();
        let Some(m) = members.get_mut(label) else {
            return Err(LongTailError::LabelOutOfRange { index, label, num_classes });
        };
        m.push(index);
    }
    Ok(members)
}

/// The indices (ascending) of a subset of `labels` with `counts[c]` examples of class `c`, chosen
/// uniformly within each class; it depends on `seed` alone (class `c` is shuffled with stream `c`).
///
/// # Errors
/// When a label is `>= counts.len()`, or a class has fewer examples than its count (the class is named).
pub fn longtail_subset<L: Copy + Into<usize>>(
    labels: &[L],
    counts: &[usize],
    seed: u64,
) -> Result<Vec<usize>, LongTailError> {
    let members = class_members(labels, counts.len())?;
    let mut kept = Vec::with_capacity(counts.iter().sum());
    for (class, (m, &requested)) in members.iter().zip(counts).enumerate() {
        if m.len() < requested {
            return Err(LongTailError::ClassTooSmall { class, available: m.len(), requested });
        }
        let order = permutation(m.len(), seed, class as u64);
        kept.extend(order[..requested].iter().map(|&k| m[k]));
    }
    kept.sort_unstable();
    Ok(kept)
}

/// The number of examples of each class `0..=max label` (0 for an empty slice).
pub fn class_counts<L: Copy + Into<usize>>(labels: &[L]) -> Vec<usize> {
    let mut counts = Vec::new();
    for &l in labels {
        let l: usize = l.into();
        if l >= counts.len() {
            counts.resize(l + 1, 0);
        }
        counts[l] += 1;
    }
    counts
}

/// A class's shot group, by its number of training images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shot {
    /// More than [`ShotGroups::many_above`] training images.
    Many,
    /// Between the two thresholds, inclusive.
    Medium,
    /// Fewer than [`ShotGroups::few_below`] training images.
    Few,
}

/// Thresholds of the many/medium/few-shot split on a class's number of training images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShotGroups {
    /// Classes with more training images than this are many-shot (OLTR, Decoupling: 100).
    pub many_above: usize,
    /// Classes with fewer training images than this are few-shot (OLTR, Decoupling: 20).
    pub few_below: usize,
}

impl Default for ShotGroups {
    /// The thresholds of OLTR and Decoupling: many-shot > 100, medium-shot 20–100, few-shot < 20.
    fn default() -> Self {
        ShotGroups { many_above: 100, few_below: 20 }
    }
}

impl ShotGroups {
    /// The largest class size for which the default thresholds are used as they are: CIFAR-100-LT's
    /// (and the default split gives its usual 35 many, 35 medium and 30 few-shot classes at IF = 100).
    pub const REFERENCE_N_MAX: usize = 500;

    /// Thresholds for a data set whose largest class has `n_max` training images: the defaults scaled
    /// by `n_max / 500`, rounded to the nearest integer, with `few_below` at least 1.
    ///
    /// The rule keeps the split's meaning for a given imbalance profile: with the exponential profile
    /// class `c` has `n_max · IF^(−c/(C−1))` images, so scaling both thresholds with `n_max` puts the
    /// same fraction of classes in each group whatever `n_max`, up to the flooring of small counts:
    /// CIFAR-100-LT at IF = 100 splits 35/35/30 for `n_max` of 200, 500 or 1000, 34/36/30 for 100 and
    /// 33/37/30 for 50. It leaves the ImageNet-LT and Places-LT conventions (which
    /// use the fixed 100/20 thresholds) aside: use [`ShotGroups::default`] for those.
    ///
    /// # Errors
    /// When `n_max` is 0.
    pub fn scaled(n_max: usize) -> Result<Self, LongTailError> {
        if n_max == 0 {
            return Err(LongTailError::ZeroMax);
        }
        let d = ShotGroups::default();
        let scale = |t: usize| ((t * n_max) as f64 / Self::REFERENCE_N_MAX as f64).round() as usize;
        Ok(ShotGroups { many_above: scale(d.many_above), few_below: scale(d.few_below).max(1) })
    }

    /// Custom thresholds.
    ///
    /// # Errors
    /// When `few_below > many_above + 1`, which would put a class in both the many and few groups.
    pub fn new(many_above: usize, few_below: usize) -> Result<Self, LongTailError> {
        if few_below > many_above + 1 {
            return Err(LongTailError::Thresholds { many_above, few_below });
        }
        Ok(ShotGroups { many_above, few_below })
    }

    /// The group of a class with `count` training images.
    pub fn group(&self, count: usize) -> Shot {
        if count > self.many_above {
            Shot::Many
        } else if count < self.few_below {
            Shot::Few
        } else {
            Shot::Medium
        }
    }
}

/// Accuracy overall and per shot group; a group with no (tested) class has `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupAccuracy {
    /// Mean per-class accuracy over many-shot classes.
    pub many: Option<f64>,
    /// Mean per-class accuracy over medium-shot classes.
    pub medium: Option<f64>,
    /// Mean per-class accuracy over few-shot classes.
    pub few: Option<f64>,
    /// Correct predictions over all test examples.
    pub overall: Option<f64>,
    /// The number of classes (with test examples) in the many, medium and few groups.
    pub classes: [usize; 3],
}

/// Accuracy per shot group as in the OLTR and Decoupling code (`shot_acc`): each group's accuracy is
/// the mean over its classes of `correct / total`, skipping classes without test examples; overall is
/// total correct over total test examples (the same as the mean per-class accuracy on a balanced test
/// set). Classes are grouped by `train_counts`.
///
/// # Errors
/// When the three arrays differ in length or a class has more correct than total.
pub fn group_accuracy(
    per_class_correct: &[usize],
    per_class_total: &[usize],
    train_counts: &[usize],
    groups: &ShotGroups,
) -> Result<GroupAccuracy, LongTailError> {
    let lengths = vec![per_class_correct.len(), per_class_total.len(), train_counts.len()];
    if lengths.iter().any(|&l| l != lengths[0]) {
        return Err(LongTailError::LengthMismatch {
            what: "per_class_correct, per_class_total, train_counts",
            lengths,
        });
    }
    let mut sums = [0.0; 3];
    let mut classes = [0usize; 3];
    for (class, ((&correct, &total), &train)) in
        per_class_correct.iter().zip(per_class_total).zip(train_counts).enumerate()
    {
        if correct > total {
            return Err(LongTailError::MoreCorrectThanTotal { class, correct, total });
        }
        if total == 0 {
            continue;
        }
        let g = match groups.group(train) {
            Shot::Many => 0,
            Shot::Medium => 1,
            Shot::Few => 2,
        };
        sums[g] += correct as f64 / total as f64;
        classes[g] += 1;
    }
    let mean = |g: usize| (classes[g] > 0).then(|| sums[g] / classes[g] as f64);
    let correct: usize = per_class_correct.iter().sum();
    let total: usize = per_class_total.iter().sum();
    Ok(GroupAccuracy {
        many: mean(0),
        medium: mean(1),
        few: mean(2),
        overall: (total > 0).then(|| correct as f64 / total as f64),
        classes,
    })
}

/// How the examples of an epoch are drawn from a (long-tailed) training set.
///
/// All but [`Uniform`](Sampler::Uniform) draw `num_samples` examples independently, with replacement:
/// a class `c` with probability `p_c`, then one of its examples uniformly. Classes without examples
/// (labels below the largest that never occur) get probability 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampler {
    /// Instance-balanced: a random permutation of the examples (`p_c ∝ n_c`). For more than
    /// `labels.len()` samples, further independent permutations follow; fewer, a prefix.
    Uniform,
    /// Class-balanced: `p_c = 1/C` (over the classes that have examples).
    ClassBalanced,
    /// Square-root sampling: `p_c ∝ n_c^(1/2)`.
    SquareRoot,
    /// Progressively balanced (Kang et al., 2020): at epoch `t`,
    /// `p_c(t) = (1 − t/T) · n_c/N + (t/T) · 1/C`, with `t` capped at `T` = `total_epochs`.
    Progressive {
        /// `T`, the epoch at which sampling becomes class-balanced.
        total_epochs: usize,
    },
}

impl Sampler {
    /// The probability of drawing each class at `epoch`, given the number of examples of each class.
    ///
    /// # Errors
    /// When all counts are zero, or for a progressive sampler with zero epochs.
    pub fn class_probabilities(&self, counts: &[usize], epoch: usize) -> Result<Vec<f64>, LongTailError> {
        let n: usize = counts.iter().sum();
        if n == 0 {
            return Err(LongTailError::EmptyLabels);
        }
        let present = counts.iter().filter(|&&c| c > 0).count() as f64;
        let instance = || counts.iter().map(|&c| c as f64 / n as f64).collect::<Vec<_>>();
        let balanced = || counts.iter().map(|&c| if c > 0 { 1.0 / present } else { 0.0 }).collect::<Vec<_>>();
        Ok(match *self {
            Sampler::Uniform => instance(),
            Sampler::ClassBalanced => balanced(),
            Sampler::SquareRoot => {
                let total: f64 = counts.iter().map(|&c| (c as f64).sqrt()).sum();
                counts.iter().map(|&c| (c as f64).sqrt() / total).collect()
            }
            Sampler::Progressive { total_epochs } => {
                if total_epochs == 0 {
                    return Err(LongTailError::ZeroEpochs);
                }
                let t = epoch.min(total_epochs) as f64 / total_epochs as f64;
                instance().iter().zip(balanced()).map(|(i, b)| (1.0 - t) * i + t * b).collect()
            }
        })
    }

    /// The example indices of one epoch, `num_samples` of them; they depend only on `(seed, epoch)`.
    ///
    /// # Errors
    /// When `labels` is empty, or for a progressive sampler with zero epochs.
    pub fn epoch_indices<L: Copy + Into<usize>>(
        &self,
        labels: &[L],
        epoch: usize,
        seed: u64,
        num_samples: usize,
    ) -> Result<Vec<usize>, LongTailError> {
        if labels.is_empty() {
            return Err(LongTailError::EmptyLabels);
        }
        if let Sampler::Progressive { total_epochs: 0 } = self {
            return Err(LongTailError::ZeroEpochs);
        }
        if let Sampler::Uniform = self {
            let mut out = Vec::with_capacity(num_samples);
            // Stream `epoch · 2³² + round`: independent permutations per epoch and per round.
            let mut round = 0u64;
            while out.len() < num_samples {
                let stream = ((epoch as u64) << 32) ^ round;
                let p = permutation(labels.len(), seed, stream);
                let take = (num_samples - out.len()).min(p.len());
                out.extend_from_slice(&p[..take]);
                round += 1;
            }
            return Ok(out);
        }
        let counts = class_counts(labels);
        let members = class_members(labels, counts.len())?;
        let probs = self.class_probabilities(&counts, epoch)?;
        // Cumulative distribution; the last present class closes it at exactly 1.
        let mut cdf = Vec::with_capacity(probs.len());
        let mut acc = 0.0;
        for &p in &probs {
            acc += p;
            cdf.push(acc);
        }
        if let Some(last) = counts.iter().rposition(|&c| c > 0) {
            for c in &mut cdf[last..] {
                *c = f64::INFINITY;
            }
        }
        let mut rng = SplitMix64::with_stream(seed, epoch as u64);
        let mut out = Vec::with_capacity(num_samples);
        for _ in 0..num_samples {
            let u = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            // First class whose cumulative probability exceeds u; classes of probability 0 are never
            // chosen since their cumulative value equals the previous one.
            let class = cdf.partition_point(|&c| c <= u);
            let m = &members[class];
            out.push(m[rng.below(m.len() as u64) as usize]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_cifar_lt_counts() {
        assert_eq!(
            longtail_counts(5000, 10, 100.0).unwrap(),
            [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
        );
        let if10 = longtail_counts(5000, 10, 10.0).unwrap();
        assert_eq!(if10, [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]);
        assert_eq!(if10.iter().sum::<usize>(), 20_431);
        assert_eq!(longtail_counts(5000, 10, 50.0).unwrap().iter().sum::<usize>(), 13_996);
        let c100 = longtail_counts(500, 100, 100.0).unwrap();
        assert_eq!((c100[0], c100[99]), (500, 5));
        assert_eq!(c100.iter().sum::<usize>(), 10_847);
        assert_eq!(longtail_counts(500, 100, 10.0).unwrap().iter().sum::<usize>(), 19_573);
        assert_eq!(longtail_counts(500, 100, 50.0).unwrap().iter().sum::<usize>(), 12_608);
        assert_eq!(longtail_counts(7, 1, 100.0).unwrap(), [7]);
        assert_eq!(longtail_counts(7, 3, 1.0).unwrap(), [7, 7, 7]);
    }

    #[test]
    fn invalid_profiles_are_named() {
        let e = longtail_counts(10, 10, 0.5).unwrap_err().to_string();
        assert!(e.contains("imbalance factor") && e.contains("0.5"), "{e}");
        assert!(longtail_counts(10, 10, f64::NAN).unwrap_err().to_string().contains("NaN"));
        assert!(longtail_counts(10, 0, 10.0).unwrap_err().to_string().contains("number of classes"));
        assert!(longtail_counts(0, 10, 10.0).unwrap_err().to_string().contains("n_max"));
    }

    #[test]
    fn subsets_are_seeded_and_exact() {
        let labels: Vec<u8> = (0..1000).map(|i| (i % 4) as u8).collect();
        let counts = [250, 100, 10, 0];
        let a = longtail_subset(&labels, &counts, 3).unwrap();
        assert_eq!(a, longtail_subset(&labels, &counts, 3).unwrap());
        assert_ne!(a, longtail_subset(&labels, &counts, 4).unwrap());
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(class_counts(&a.iter().map(|&i| labels[i]).collect::<Vec<_>>()), [250, 100, 10]);
        let e = longtail_subset(&labels, &[250, 251, 0, 0], 0).unwrap_err().to_string();
        assert!(e.contains("class 1 has 250 examples, 251 requested"), "{e}");
        let e = longtail_subset(&labels, &[1, 1, 1], 0).unwrap_err().to_string();
        assert!(e.contains("label 3 of example 3") && e.contains("0..3"), "{e}");
    }

    #[test]
    fn shot_groups() {
        let g = ShotGroups::default();
        assert_eq!(
            (g.group(101), g.group(100), g.group(20), g.group(19)),
            (Shot::Many, Shot::Medium, Shot::Medium, Shot::Few)
        );
        let split = |g: &ShotGroups, counts: &[usize]| {
            [Shot::Many, Shot::Medium, Shot::Few].map(|s| counts.iter().filter(|&&c| g.group(c) == s).count())
        };
        // CIFAR-100-LT at IF = 100: the usual 35/35/30.
        assert_eq!(split(&g, &longtail_counts(500, 100, 100.0).unwrap()), [35, 35, 30]);
        assert_eq!(ShotGroups::scaled(500).unwrap(), g);
        let small = ShotGroups::scaled(50).unwrap();
        assert_eq!(small, ShotGroups { many_above: 10, few_below: 2 });
        assert_eq!(split(&small, &longtail_counts(50, 100, 100.0).unwrap()), [33, 37, 30]);
        let s200 = ShotGroups::scaled(200).unwrap();
        assert_eq!(split(&s200, &longtail_counts(200, 100, 100.0).unwrap()), [35, 35, 30]);
        assert_eq!(ShotGroups::scaled(1).unwrap().few_below, 1);
        assert!(ShotGroups::scaled(0).is_err());
        assert!(ShotGroups::new(10, 12).unwrap_err().to_string().contains("few_below (12)"));
    }

    #[test]
    fn group_accuracies() {
        let train = [500, 150, 50, 30, 10, 5];
        let total = [100, 100, 100, 100, 100, 0];
        let correct = [90, 80, 60, 40, 20, 0];
        let a = group_accuracy(&correct, &total, &train, &ShotGroups::default()).unwrap();
        assert_eq!(a.classes, [2, 2, 1]);
        assert!((a.many.unwrap() - 0.85).abs() < 1e-12);
        assert!((a.medium.unwrap() - 0.5).abs() < 1e-12);
        assert!((a.few.unwrap() - 0.2).abs() < 1e-12);
        assert!((a.overall.unwrap() - 0.58).abs() < 1e-12);
        let none = group_accuracy(&[1], &[2], &[500], &ShotGroups::default()).unwrap();
        assert_eq!((none.medium, none.few), (None, None));
        let e = group_accuracy(&[1, 2], &[2], &[3], &ShotGroups::default()).unwrap_err().to_string();
        assert!(e.contains("[2, 1, 1]"), "{e}");
        let e = group_accuracy(&[3], &[2], &[3], &ShotGroups::default()).unwrap_err().to_string();
        assert!(e.contains("class 0: 3 correct out of 2"), "{e}");
    }

    /// Long-tailed labels 0..6 with a gap (class 4 is empty).
    fn lt_labels() -> Vec<u16> {
        let counts = [400, 200, 100, 50, 0, 10];
        counts.iter().enumerate().flat_map(|(c, &n)| std::iter::repeat_n(c as u16, n)).collect()
    }

    /// Checks empirical class frequencies of `n` draws against `probs` within 5 binomial σ (+1).
    fn assert_frequencies(labels: &[u16], indices: &[usize], probs: &[f64]) {
        let n = indices.len() as f64;
        let drawn = class_counts(&indices.iter().map(|&i| labels[i]).collect::<Vec<_>>());
        for (c, &p) in probs.iter().enumerate() {
            let k = drawn.get(c).copied().unwrap_or(0) as f64;
            let sigma = (n * p * (1.0 - p)).sqrt();
            assert!(
                (k - n * p).abs() <= 5.0 * sigma + 1.0,
                "class {c}: {k} drawn, expected {} ± {sigma}",
                n * p
            );
        }
    }

    #[test]
    fn samplers_match_their_class_probabilities() {
        let labels = lt_labels();
        let counts = class_counts(&labels);
        let n = 200_000;
        let p = |s: Sampler, e| s.class_probabilities(&counts, e).unwrap();
        let cb = p(Sampler::ClassBalanced, 0);
        assert_eq!(cb, [0.2, 0.2, 0.2, 0.2, 0.0, 0.2]);
        let sq = p(Sampler::SquareRoot, 0);
        assert!((sq[0] / sq[2] - 2.0).abs() < 1e-12 && sq[4] == 0.0);
        let prog = Sampler::Progressive { total_epochs: 10 };
        let inst = p(Sampler::Uniform, 0);
        assert_eq!(p(prog, 0), inst);
        assert_eq!(p(prog, 10), cb);
        assert_eq!(p(prog, 25), cb);
        for (c, &q) in p(prog, 3).iter().enumerate() {
            assert!((q - (0.7 * inst[c] + 0.3 * cb[c])).abs() < 1e-12);
        }
        for (sampler, epoch) in [(Sampler::ClassBalanced, 0), (Sampler::SquareRoot, 0), (prog, 3), (prog, 0)]
        {
            let idx = sampler.epoch_indices(&labels, epoch, 11, n).unwrap();
            assert_eq!(idx.len(), n);
            assert_frequencies(&labels, &idx, &p(sampler, epoch));
        }
        // Within a class, examples are drawn uniformly: class 5's ten examples under class balance.
        let idx = Sampler::ClassBalanced.epoch_indices(&labels, 0, 2, n).unwrap();
        let mut hits = [0usize; 10];
        for &i in idx.iter().filter(|&&i| labels[i] == 5) {
            hits[i - 750] += 1;
        }
        let m: usize = hits.iter().sum();
        let probs = [0.1; 10];
        let fake_labels: Vec<u16> = (0..10).collect();
        let fake_idx: Vec<usize> =
            hits.iter().enumerate().flat_map(|(k, &h)| std::iter::repeat_n(k, h)).collect();
        assert_eq!(fake_idx.len(), m);
        assert_frequencies(&fake_labels, &fake_idx, &probs);
    }

    #[test]
    fn uniform_is_a_permutation_per_epoch() {
        let labels = lt_labels();
        let a = Sampler::Uniform.epoch_indices(&labels, 0, 1, labels.len()).unwrap();
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..labels.len()).collect::<Vec<_>>());
        let b = Sampler::Uniform.epoch_indices(&labels, 0, 1, 2 * labels.len() + 5).unwrap();
        assert_eq!(&b[..labels.len()], a.as_slice());
        assert_eq!(b.len(), 2 * labels.len() + 5);
        assert_ne!(&b[labels.len()..2 * labels.len()], a.as_slice());
    }

    #[test]
    fn samplers_are_deterministic_per_seed_and_epoch() {
        let labels = lt_labels();
        for s in [
            Sampler::Uniform,
            Sampler::ClassBalanced,
            Sampler::SquareRoot,
            Sampler::Progressive { total_epochs: 5 },
        ] {
            let a = s.epoch_indices(&labels, 2, 9, 500).unwrap();
            assert_eq!(a, s.epoch_indices(&labels, 2, 9, 500).unwrap(), "{s:?}");
            assert_ne!(a, s.epoch_indices(&labels, 3, 9, 500).unwrap(), "{s:?}");
            assert_ne!(a, s.epoch_indices(&labels, 2, 10, 500).unwrap(), "{s:?}");
        }
        let e = Sampler::Progressive { total_epochs: 0 }.epoch_indices(&labels, 0, 0, 1).unwrap_err();
        assert!(e.to_string().contains("total_epochs"), "{e}");
        assert_eq!(Sampler::Uniform.epoch_indices::<u8>(&[], 0, 0, 1), Err(LongTailError::EmptyLabels));
    }
}
