//! L2-regularised logistic regression, scikit-learn's `LogisticRegression(C=1.0)` (the β-VAE
//! score's classifier in disentanglement_lib): multinomial for more than two classes (one weight
//! vector per class), binomial for two; the intercepts are not penalised. The objective
//! `Σ_i −log p(y_i | x_i) + ‖W‖² / (2C)` is minimised by L-BFGS to a gradient below 10⁻⁹ per point,
//! where scikit-learn's lbfgs stops after at most 100 iterations (`max_iter=100`): the two agree
//! where scikit-learn converged.

use rayon::prelude::*;

/// A fitted model: `weights[c]` holds `D` weights then the intercept, one row per class (one row in
/// all for two classes, for class 1).
#[derive(Debug, Clone)]
pub(crate) struct Logistic {
    weights: Vec<Vec<f64>>,
}

impl Logistic {
    /// Fits on rows `x` (`N × D`) with dense labels `y < num_classes` (`num_classes ≥ 2`).
    pub fn fit(x: &[Vec<f64>], y: &[u32], num_classes: usize, c: f64) -> Logistic {
        let d = x.first().map_or(0, Vec::len);
        let rows = if num_classes == 2 { 1 } else { num_classes };
        let p = rows * (d + 1);
        // Points in fixed chunks, each summed in order and the chunks' sums added in order: the
        // same numbers whatever the number of threads, and no allocation per point.
        const CHUNK: usize = 512;
        let objective = |theta: &[f64]| -> (f64, Vec<f64>) {
            let partial: Vec<(f64, Vec<f64>)> = x
                .par_chunks(CHUNK)
                .zip(y.par_chunks(CHUNK))
                .map(|(xs, ys)| {
                    let (mut loss, mut grad) = (0.0, vec![0.0; p]);
                    let (mut z, mut residual) = (vec![0.0; rows], vec![0.0; rows]);
                    for (xi, &yi) in xs.iter().zip(ys) {
                        for (r, zr) in z.iter_mut().enumerate() {
                            let w = &theta[r * (d + 1)..(r + 1) * (d + 1)];
                            *zr = w[..d].iter().zip(xi).map(|(a, b)| a * b).sum::<f64>() + w[d];
                        }
                        if rows == 1 {
                            let t = f64::from(yi);
                            // −log σ(z) for t = 1, −log(1 − σ(z)) for t = 0, stably.
                            let m = if t == 1.0 { -z[0] } else { z[0] };
                            loss += if m > 0.0 { m + (-m).exp().ln_1p() } else { m.exp().ln_1p() };
                            residual[0] = 1.0 / (1.0 + (-z[0]).exp()) - t;
                        } else {
                            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                            let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
                            loss += max + sum.ln() - z[yi as usize];
                            for (r, (res, v)) in residual.iter_mut().zip(&z).enumerate() {
                                *res = (v - max).exp() / sum - f64::from(u8::from(r == yi as usize));
                            }
                        }
                        for (r, &g) in residual.iter().enumerate() {
                            let off = r * (d + 1);
                            for (k, &v) in xi.iter().enumerate() {
                                grad[off + k] += g * v;
                            }
                            grad[off + d] += g;
                        }
                    }
                    (loss, grad)
                })
                .collect();
            let (mut loss, mut grad) = (0.0, vec![0.0; p]);
            for (l, g) in partial {
                loss += l;
                grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
            }
            let mut penalty = 0.0;
            for r in 0..rows {
                for k in 0..d {
                    let w = theta[r * (d + 1) + k];
                    penalty += w * w;
                    grad[r * (d + 1) + k] += w / c;
                }
            }
            (loss + penalty / (2.0 * c), grad)
        };
        let theta = lbfgs(objective, vec![0.0; p], 1e-9 * x.len().max(1) as f64, 2000);
        Logistic { weights: theta.chunks(d + 1).map(<[f64]>::to_vec).collect() }
    }

    /// The predicted dense label of a row.
    pub fn predict(&self, xi: &[f64]) -> u32 {
        let d = xi.len();
        let z: Vec<f64> = self
            .weights
            .iter()
            .map(|w| w[..d].iter().zip(xi).map(|(a, b)| a * b).sum::<f64>() + w[d])
            .collect();
        if let [z0] = z[..] {
            return u32::from(z0 > 0.0);
        }
        let mut best = 0;
        for (k, &v) in z.iter().enumerate() {
            if v > z[best] {
                best = k;
            }
        }
        best as u32
    }
}

/// Limited-memory BFGS (10 pairs) with a backtracking Armijo line search, until the largest
/// gradient entry is below `tolerance` or `max_iter` iterations.
pub(crate) fn lbfgs(
    f: impl Fn(&[f64]) -> (f64, Vec<f64>),
    mut x: Vec<f64>,
    tolerance: f64,
    max_iter: usize,
) -> Vec<f64> {
    let m = 10;
    let (mut fx, mut g) = f(&x);
    let mut history: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    for _ in 0..max_iter {
        if g.iter().all(|v| v.abs() <= tolerance) {
            break;
        }
        // Two-loop recursion for the direction −H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        if let Some((s, y, _)) = history.last() {
            let gamma = dot(s, y) / dot(y, y);
            q.iter_mut().for_each(|v| *v *= gamma);
        }
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut direction: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &direction);
        if slope.is_nan() || slope >= 0.0 {
            history.clear();
            direction = g.iter().map(|v| -v).collect();
            slope = dot(&g, &direction);
        }
        let mut t =
            if history.is_empty() { 1.0 / g.iter().map(|v| v.abs()).fold(1.0, f64::max) } else { 1.0 };
        let mut moved = false;
        for _ in 0..60 {
            let next: Vec<f64> = x.iter().zip(&direction).map(|(a, b)| a + t * b).collect();
            let (fn_, gn) = f(&next);
            if fn_ <= fx + 1e-4 * t * slope {
                let s: Vec<f64> = next.iter().zip(&x).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &y);
                if sy > 1e-300 {
                    history.push((s, y, 1.0 / sy));
                    if history.len() > m {
                        history.remove(0);
                    }
                }
                moved = fn_ < fx || next != x;
                x = next;
                fx = fn_;
                g = gn;
                break;
            }
            t *= 0.5;
        }
        if !moved {
            break;
        }
    }
    x
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(u, v)| u * v).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lbfgs_minimises_a_quadratic() {
        let f = |x: &[f64]| {
            let v = (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2);
            (v, vec![2.0 * (x[0] - 1.0), 20.0 * (x[1] + 2.0)])
        };
        let x = lbfgs(f, vec![0.0, 0.0], 1e-12, 100);
        assert!((x[0] - 1.0).abs() < 1e-10 && (x[1] + 2.0).abs() < 1e-10, "{x:?}");
    }

    #[test]
    fn separates_linearly_separable_classes() {
        let x: Vec<Vec<f64>> = (0..90).map(|i| vec![f64::from(i % 3) * 3.0, f64::from(i) / 90.0]).collect();
        let y: Vec<u32> = (0..90).map(|i| i % 3).collect();
        let model = Logistic::fit(&x, &y, 3, 1.0);
        assert!(x.iter().zip(&y).all(|(xi, &yi)| model.predict(xi) == yi));
        let yb: Vec<u32> = (0..90).map(|i| u32::from(i % 3 == 2)).collect();
        let model = Logistic::fit(&x, &yb, 2, 1.0);
        assert!(x.iter().zip(&yb).all(|(xi, &yi)| model.predict(xi) == yi));
    }
}
