//! A linear support vector classifier on one feature, solved exactly: scikit-learn's
//! `LinearSVC(C, class_weight="balanced")` (liblinear: squared hinge loss, L2 penalty on the weight
//! *and* the intercept, one-vs-rest over classes), which SAP uses for discrete factors.
//!
//! liblinear stops at a tolerance (scikit-learn's `tol=1e-4`); here the strictly convex primal
//! problem in two unknowns is solved by Newton's method with a backtracking line search to machine
//! precision, so the two differ only where liblinear had not converged.

/// A fitted one-feature, one-vs-rest model: one `(weight, intercept)` per class, or a single one for
/// two classes (positive = class 1), as liblinear stores them.
#[derive(Debug, Clone)]
pub(crate) struct LinearSvc {
    planes: Vec<(f64, f64)>,
}

impl LinearSvc {
    /// Fits on `x` with dense labels `y < num_classes` (every class present, `num_classes ≥ 2`).
    #[cfg(test)]
    pub fn fit(x: &[f64], y: &[u32], num_classes: usize, c: f64) -> LinearSvc {
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
        let xs: Vec<f64> = order.iter().map(|&i| x[i]).collect();
        let ys: Vec<u32> = order.iter().map(|&i| y[i]).collect();
        LinearSvc::fit_sorted(&Prefix::new(xs.iter().copied()), &xs, &ys, num_classes, c)
    }

    /// Fits on values `x` in increasing order (`all` their prefix sums, shared by every factor of
    /// one dimension) with the matching dense labels `y < num_classes` (every class present,
    /// `num_classes ≥ 2`).
    pub fn fit_sorted(all: &Prefix, x: &[f64], y: &[u32], num_classes: usize, c: f64) -> LinearSvc {
        let n = x.len() as f64;
        // Each class's values, still in increasing order, with their prefix sums: one pass.
        let mut counts = vec![0usize; num_classes];
        for &v in y {
            counts[v as usize] += 1;
        }
        let mut members: Vec<Vec<f64>> = counts.iter().map(|&k| Vec::with_capacity(k)).collect();
        for (&v, &xi) in y.iter().zip(x) {
            members[v as usize].push(xi);
        }
        let classes: Vec<Prefix> = members.into_iter().map(|m| Prefix::new(m.into_iter())).collect();
        // scikit-learn's "balanced" weights: n / (classes · count).
        let weight: Vec<f64> = counts.iter().map(|&k| n / (num_classes as f64 * k as f64)).collect();
        // Every problem's points fall in two groups of constant sign and cost: the class's points
        // and the rest. The rest's sums are those of all points less the class's.
        if num_classes == 2 {
            let groups = [
                Group { points: &classes[1], less: None, sign: 1.0, cost: c * weight[1] },
                Group { points: &classes[0], less: None, sign: -1.0, cost: c * weight[0] },
            ];
            return LinearSvc { planes: vec![solve(&groups)] };
        }
        let planes = classes
            .iter()
            .enumerate()
            .map(|(k, class)| {
                // liblinear's one-vs-rest: the class's weight on its own points, plain C on the rest.
                let groups = [
                    Group { points: class, less: None, sign: 1.0, cost: c * weight[k] },
                    Group { points: all, less: Some(class), sign: -1.0, cost: c },
                ];
                solve(&groups)
            })
            .collect();
        LinearSvc { planes }
    }

    /// The predicted dense label of `x`: the class with the largest decision value (the first on a
    /// tie), or for two classes 1 when the decision value is positive.
    pub fn predict(&self, x: f64) -> u32 {
        if let [(w, b)] = self.planes[..] {
            return u32::from(w * x + b > 0.0);
        }
        let mut best = 0;
        let mut best_value = f64::NEG_INFINITY;
        for (k, &(w, b)) in self.planes.iter().enumerate() {
            let v = w * x + b;
            if v > best_value {
                best_value = v;
                best = k as u32;
            }
        }
        best
    }
}

/// Values in increasing order with prefix sums of `x` and `x²`.
pub(crate) struct Prefix {
    x: Vec<f64>,
    s1: Vec<f64>,
    s2: Vec<f64>,
}

impl Prefix {
    /// `x` in increasing order.
    pub fn new(x: impl Iterator<Item = f64>) -> Prefix {
        let x: Vec<f64> = x.collect();
        let (mut s1, mut s2) = (Vec::with_capacity(x.len() + 1), Vec::with_capacity(x.len() + 1));
        let (mut a, mut b) = (0.0, 0.0);
        s1.push(a);
        s2.push(b);
        for &v in &x {
            a += v;
            b += v * v;
            s1.push(a);
            s2.push(b);
        }
        Prefix { x, s1, s2 }
    }

    /// The count, `Σx` and `Σx²` of the points with a positive margin `1 − sign·(w x + b)`. The
    /// margin, rounded as written, is monotone in `x`, so they are a prefix or a suffix of the
    /// sorted points, found by bisection with the same test a loop over the points would make.
    fn active(&self, sign: f64, w: f64, b: f64) -> (f64, f64, f64) {
        let positive = |x: f64| 1.0 - sign * (w * x + b) > 0.0;
        let n = self.x.len();
        let (lo, hi) = if sign * w > 0.0 {
            (0, self.x.partition_point(|&x| positive(x)))
        } else if sign * w < 0.0 {
            (self.x.partition_point(|&x| !positive(x)), n)
        } else if self.x.first().is_some_and(|&x| positive(x)) {
            (0, n)
        } else {
            (0, 0)
        };
        ((hi - lo) as f64, self.s1[hi] - self.s1[lo], self.s2[hi] - self.s2[lo])
    }
}

/// Points of one sign and one cost: those of `points`, less those of `less` (a subset) if given.
struct Group<'a> {
    points: &'a Prefix,
    less: Option<&'a Prefix>,
    sign: f64,
    cost: f64,
}

impl Group<'_> {
    /// The count, `Σx` and `Σx²` of the group's points with a positive margin.
    fn active(&self, w: f64, b: f64) -> (f64, f64, f64) {
        let (n, s1, s2) = self.points.active(self.sign, w, b);
        match self.less {
            None => (n, s1, s2),
            Some(less) => {
                let (m, t1, t2) = less.active(self.sign, w, b);
                (n - m, s1 - t1, s2 - t2)
            }
        }
    }
}

/// `argmin ½(w² + b²) + Σ cost_i · max(0, 1 − sign_i (w x_i + b))²` over the points of `groups`.
/// With `m = a − s·w·x`, `a = 1 − s·b`, each group's active points contribute
/// `cost·(a²·S₀ − 2·a·s·w·S₁ + w²·S₂)` to the objective, and its derivatives likewise, from their
/// count `S₀`, `S₁ = Σx` and `S₂ = Σx²`.
fn solve(groups: &[Group]) -> (f64, f64) {
    let objective = |w: f64, b: f64| {
        let mut f = 0.5 * (w * w + b * b);
        for g in groups {
            let (s0, s1, s2) = g.active(w, b);
            let a = 1.0 - g.sign * b;
            f += g.cost * (a * a * s0 - 2.0 * a * g.sign * w * s1 + w * w * s2);
        }
        f
    };
    let (mut w, mut b) = (0.0, 0.0);
    let mut f = objective(w, b);
    for _ in 0..200 {
        // Gradient and generalised Hessian over the points with a positive margin.
        let (mut gw, mut gb) = (w, b);
        let (mut hww, mut hwb, mut hbb) = (1.0, 0.0, 1.0);
        for g in groups {
            let (s0, s1, s2) = g.active(w, b);
            let a = 1.0 - g.sign * b;
            let k = -2.0 * g.cost * g.sign;
            gw += k * (a * s1 - g.sign * w * s2);
            gb += k * (a * s0 - g.sign * w * s1);
            hww += 2.0 * g.cost * s2;
            hwb += 2.0 * g.cost * s1;
            hbb += 2.0 * g.cost * s0;
        }
        let det = hww * hbb - hwb * hwb;
        let dw = -(hbb * gw - hwb * gb) / det;
        let db = -(hww * gb - hwb * gw) / det;
        let slope = gw * dw + gb * db;
        if slope.is_nan() || slope >= 0.0 {
            break;
        }
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            let (nw, nb) = (w + t * dw, b + t * db);
            let nf = objective(nw, nb);
            if nf <= f + 1e-4 * t * slope {
                accepted = nf < f || (nw == w && nb == b);
                if accepted {
                    w = nw;
                    b = nb;
                    f = nf;
                }
                break;
            }
            t *= 0.5;
        }
        let small = (t * dw).abs() <= 1e-15 * (1.0 + w.abs()) && (t * db).abs() <= 1e-15 * (1.0 + b.abs());
        if !accepted || small {
            break;
        }
    }
    (w, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_scikit_learn_and_the_optimum_is_stationary() {
        let x: Vec<f64> = (0..60).map(|i| f64::from(i) / 10.0).collect();
        let y: Vec<u32> = (0..60).map(|i| i / 20).collect();
        let svc = LinearSvc::fit(&x, &y, 3, 100.0);
        let wrong = x.iter().zip(&y).filter(|&(&xi, &yi)| svc.predict(xi) != yi).count();
        // One-vs-rest cannot carve out the middle class with a single feature perfectly.
        assert!(wrong < 25, "{wrong}");
        let binary: Vec<u32> = (0..60).map(|i| u32::from(i >= 30)).collect();
        let svc = LinearSvc::fit(&x, &binary, 2, 1.0);
        // scikit-learn 1.9.1: LinearSVC(C=1, class_weight="balanced", tol=1e-12).fit(x[:, None], y)
        // has coef_ 0.89160662 and intercept_ -2.57319838 (the intercept is penalised too).
        let (w, b) = svc.planes[0];
        assert!((w - 0.891_606_62).abs() < 1e-7 && (b + 2.573_198_38).abs() < 1e-7, "{w} {b}");
        // Stationarity at the returned point: the gradient vanishes.
        let sign: Vec<f64> = binary.iter().map(|&v| if v == 1 { 1.0 } else { -1.0 }).collect();
        let cost = vec![0.3; 60];
        let (ones, zeros) = (
            Prefix::new(x.iter().zip(&binary).filter(|p| *p.1 == 1).map(|p| *p.0)),
            Prefix::new(x.iter().zip(&binary).filter(|p| *p.1 != 1).map(|p| *p.0)),
        );
        let groups = [
            Group { points: &ones, less: None, sign: 1.0, cost: 0.3 },
            Group { points: &zeros, less: None, sign: -1.0, cost: 0.3 },
        ];
        let (w, b) = solve(&groups);
        let (mut gw, mut gb) = (w, b);
        for i in 0..60 {
            let m = 1.0 - sign[i] * (w * x[i] + b);
            if m > 0.0 {
                gw -= 2.0 * cost[i] * sign[i] * m * x[i];
                gb -= 2.0 * cost[i] * sign[i] * m;
            }
        }
        assert!(gw.abs() < 1e-10 && gb.abs() < 1e-10, "{gw} {gb}");
    }

    #[test]
    fn the_rest_as_all_less_the_class_gives_the_same_planes() {
        // One-vs-rest planes fitted with the rest's sums taken as all points' less the class's agree
        // with planes fitted on the rest's own sorted points.
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let y: Vec<u32> = (0..500).map(|i| i % 5).collect();
        let x: Vec<f64> = y.iter().map(|&v| f64::from(v) * 0.3 + next()).collect();
        let svc = LinearSvc::fit(&x, &y, 5, 0.01);
        for k in 0..5u32 {
            let mut class: Vec<f64> = x.iter().zip(&y).filter(|p| *p.1 == k).map(|p| *p.0).collect();
            let mut rest: Vec<f64> = x.iter().zip(&y).filter(|p| *p.1 != k).map(|p| *p.0).collect();
            class.sort_by(f64::total_cmp);
            rest.sort_by(f64::total_cmp);
            let (class, rest) = (Prefix::new(class.into_iter()), Prefix::new(rest.into_iter()));
            let groups = [
                Group { points: &class, less: None, sign: 1.0, cost: 0.01 },
                Group { points: &rest, less: None, sign: -1.0, cost: 0.01 },
            ];
            let (w, b) = solve(&groups);
            let (w2, b2) = svc.planes[k as usize];
            assert!((w - w2).abs() < 1e-12 && (b - b2).abs() < 1e-12, "class {k}: {w} {b} vs {w2} {b2}");
        }
    }
}
