//! Discrete mutual information and entropy, as `sklearn.metrics.mutual_info_score` computes them
//! (natural logarithm).

/// The mutual information in nats between two dense labellings of the same points (`a[i] < na`,
/// `b[i] < nb`), computed term by term as scikit-learn's `mutual_info_score(a, b)`: 0 when either
/// takes a single value; terms below machine epsilon are dropped; the sum is clipped at 0.
pub(crate) fn mutual_info(a: &[u32], na: usize, b: &[u32], nb: usize) -> f64 {
    let n = a.len();
    let mut counts = vec![0u64; na * nb];
    for (&x, &y) in a.iter().zip(b) {
        counts[x as usize * nb + y as usize] += 1;
    }
    let mut row = vec![0u64; na];
    let mut col = vec![0u64; nb];
    for x in 0..na {
        for y in 0..nb {
            let c = counts[x * nb + y];
            row[x] += c;
            col[y] += c;
        }
    }
    // Classes that do not occur are not classes for scikit-learn.
    if row.iter().filter(|&&c| c > 0).count() <= 1 || col.iter().filter(|&&c| c > 0).count() <= 1 {
        return 0.0;
    }
    let total = n as f64;
    let log_total = total.ln();
    let mut mi = 0.0;
    for x in 0..na {
        for y in 0..nb {
            let c = counts[x * nb + y];
            if c == 0 {
                continue;
            }
            let p = c as f64 / total;
            let log_outer = -((row[x] * col[y]) as f64).ln() + log_total + log_total;
            let term = p * ((c as f64).ln() - log_total) + p * log_outer;
            if term.abs() >= f64::EPSILON {
                mi += term;
            }
        }
    }
    mi.max(0.0)
}

/// The entropy in nats of a dense labelling, `mutual_info_score(a, a)`.
pub(crate) fn entropy(a: &[u32], na: usize) -> f64 {
    mutual_info(a, na, a, na)
}

/// The number of labels needed to hold a labelling (one more than its largest label).
pub(crate) fn num_labels(a: &[u32]) -> usize {
    a.iter().max().map_or(0, |&m| m as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Independent halves: 0. Identical balanced binary labels: ln 2.
        assert_eq!(mutual_info(&[0, 0, 1, 1], 2, &[0, 1, 0, 1], 2), 0.0);
        assert!((mutual_info(&[0, 0, 1, 1], 2, &[1, 1, 0, 0], 2) - 2f64.ln()).abs() < 1e-15);
        assert!((entropy(&[0, 1, 2, 3], 4) - 4f64.ln()).abs() < 1e-15);
        assert_eq!(entropy(&[3, 3, 3], 4), 0.0);
    }
}
