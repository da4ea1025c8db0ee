//! Gradient-boosted decision trees for classification, built the way scikit-learn's
//! `GradientBoostingClassifier` builds them with its defaults (disentanglement_lib's DCI importance
//! model): features cast to `f32`; an initial log-prior raw prediction; per stage one
//! `DecisionTreeRegressor(criterion="squared_error", max_depth=3)` per class (one in all for two
//! classes) fitted to the negative gradient of the log loss, best split by the squared-error proxy
//! `S_L²/n_L + S_R²/n_R`, split points between consecutive distinct values (more than 10⁻⁷ apart) at
//! their midpoint; leaves then set by one Newton step (with scikit-learn's `(K − 1)/K` factor for
//! more than two classes); raw predictions advanced by the learning rate.
//!
//! Feature importances are scikit-learn's: the impurity decrease `n·i − n_L·i_L − n_R·i_R` of every
//! split, per tree divided by the number of points, summed over the trees that split at all, and
//! normalised to sum 1.
//!
//! Where two features (or two split points) give exactly the same improvement, scikit-learn breaks
//! the tie by a random feature order; here the lower feature index wins. Apart from such ties and
//! the last bits of the sums, the trees are scikit-learn's.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// scikit-learn's `FEATURE_THRESHOLD`: values closer than this do not admit a split between them.
const FEATURE_THRESHOLD: f64 = 1e-7;

/// Hyper-parameters of the boosted trees (scikit-learn's `GradientBoostingClassifier` defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GbtSettings {
    /// The number of boosting stages (100).
    pub n_estimators: usize,
    /// The shrinkage of every tree's contribution (0.1).
    pub learning_rate: f64,
    /// The depth of every tree (3).
    pub max_depth: usize,
}

impl Default for GbtSettings {
    fn default() -> Self {
        GbtSettings { n_estimators: 100, learning_rate: 0.1, max_depth: 3 }
    }
}

/// Features `[D][N]` as `f32`, with every feature's sample order by value.
pub(crate) struct Features {
    columns: Vec<Vec<f32>>,
    order: Vec<Vec<u32>>,
}

impl Features {
    /// Casts columns to `f32` and sorts each.
    pub fn new(columns: Vec<Vec<f64>>) -> Features {
        let columns: Vec<Vec<f32>> =
            columns.into_iter().map(|c| c.into_iter().map(|v| v as f32).collect()).collect();
        let order = columns
            .par_iter()
            .map(|c| {
                let mut o: Vec<u32> = (0..c.len() as u32).collect();
                o.sort_by(|&a, &b| c[a as usize].total_cmp(&c[b as usize]));
                o
            })
            .collect();
        Features { columns, order }
    }

    fn len(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }
}

#[derive(Debug, Clone)]
enum Node {
    Split { feature: usize, threshold: f64, left: usize, right: usize },
    Leaf { value: f64 },
}

/// One regression tree.
#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn predict(&self, row: &[f32]) -> f64 {
        let mut at = 0;
        loop {
            match self.nodes[at] {
                Node::Split { feature, threshold, left, right } => {
                    at = if f64::from(row[feature]) <= threshold { left } else { right };
                }
                Node::Leaf { value } => return value,
            }
        }
    }
}

/// Statistics of a node being grown.
#[derive(Debug, Clone, Copy)]
struct Grow {
    id: usize,
    n: usize,
    sum: f64,
    sq_sum: f64,
    impurity: f64,
}

#[derive(Debug, Clone, Copy)]
struct Best {
    proxy: f64,
    feature: usize,
    threshold: f64,
}

/// Fits a squared-error regression tree of depth `max_depth` to `target`; returns the tree (leaf
/// values still the raw node ids' placeholders), each point's leaf, and the tree's unnormalised
/// feature importances (zero if it did not split).
fn fit_tree(x: &Features, target: &[f64], max_depth: usize) -> (Tree, Vec<usize>, Vec<f64>) {
    let n = x.len();
    let d = x.columns.len();
    let mut node_of = vec![0usize; n];
    let (sum, sq_sum) = target.iter().fold((0.0, 0.0), |(s, q), &y| (s + y, q + y * y));
    let impurity = sq_sum / n as f64 - (sum / n as f64).powi(2);
    let mut nodes = vec![Node::Leaf { value: 0.0 }];
    let mut importance = vec![0.0; d];
    let mut level = vec![Grow { id: 0, n, sum, sq_sum, impurity }];
    for depth in 0..=max_depth {
        // Nodes of this level that may split.
        let open: Vec<Grow> = level
            .iter()
            .copied()
            .filter(|g| depth < max_depth && g.n >= 2 && g.impurity > f64::EPSILON)
            .collect();
        if open.is_empty() {
            break;
        }
        let mut slot_of = vec![usize::MAX; nodes.len()];
        for (s, g) in open.iter().enumerate() {
            slot_of[g.id] = s;
        }
        let mut best: Vec<Option<Best>> = vec![None; open.len()];
        let mut count = vec![0usize; open.len()];
        let mut left_sum = vec![0.0f64; open.len()];
        let mut prev = vec![0.0f32; open.len()];
        for (f, order) in x.order.iter().enumerate() {
            let column = &x.columns[f];
            count.iter_mut().for_each(|c| *c = 0);
            left_sum.iter_mut().for_each(|s| *s = 0.0);
            for &i in order {
                let i = i as usize;
                let s = slot_of[node_of[i]];
                if s == usize::MAX {
                    continue;
                }
                let v = column[i];
                if count[s] > 0 && f64::from(v) > f64::from(prev[s]) + FEATURE_THRESHOLD {
                    let g = &open[s];
                    let (nl, nr) = (count[s] as f64, (g.n - count[s]) as f64);
                    let sl = left_sum[s];
                    let sr = g.sum - sl;
                    let proxy = sl * sl / nl + sr * sr / nr;
                    if best[s].is_none_or(|b| proxy > b.proxy) {
                        let (a, b) = (f64::from(prev[s]), f64::from(v));
                        let mut threshold = a / 2.0 + b / 2.0;
                        if threshold == b || threshold.is_infinite() {
                            threshold = a;
                        }
                        best[s] = Some(Best { proxy, feature: f, threshold });
                    }
                }
                count[s] += 1;
                left_sum[s] += target[i];
                prev[s] = v;
            }
        }
        // Create the children of every node that found a split, then move its points.
        let mut children = vec![(usize::MAX, usize::MAX); open.len()];
        for (s, b) in best.iter().enumerate() {
            if let Some(b) = b {
                let (l, r) = (nodes.len(), nodes.len() + 1);
                nodes.push(Node::Leaf { value: 0.0 });
                nodes.push(Node::Leaf { value: 0.0 });
                nodes[open[s].id] =
                    Node::Split { feature: b.feature, threshold: b.threshold, left: l, right: r };
                children[s] = (l, r);
            }
        }
        let mut stats = vec![(0usize, 0.0f64, 0.0f64); nodes.len()];
        for i in 0..n {
            let s = slot_of.get(node_of[i]).copied().unwrap_or(usize::MAX);
            if s == usize::MAX || children[s].0 == usize::MAX {
                continue;
            }
            let Some(b) = best[s] else { continue };
            let child =
                if f64::from(x.columns[b.feature][i]) <= b.threshold { children[s].0 } else { children[s].1 };
            node_of[i] = child;
            let y = target[i];
            let st = &mut stats[child];
            st.0 += 1;
            st.1 += y;
            st.2 += y * y;
        }
        let mut next = Vec::new();
        for (s, g) in open.iter().enumerate() {
            let (l, r) = children[s];
            if l == usize::MAX {
                continue;
            }
            let (nl, sl, ql) = stats[l];
            let (nr, sr, qr) = (g.n - nl, g.sum - sl, g.sq_sum - ql);
            let il = ql / nl as f64 - (sl / nl as f64).powi(2);
            let ir = qr / nr as f64 - (sr / nr as f64).powi(2);
            // scikit-learn's min_impurity_decrease = 0 check, weighted by the node's share.
            let n_node = g.n as f64;
            let improvement =
                n_node / n as f64 * (g.impurity - nr as f64 / n_node * ir - nl as f64 / n_node * il);
            if improvement + f64::EPSILON < 0.0 {
                // Undo: the node stays a leaf (its children keep no points).
                for c in node_of.iter_mut() {
                    if *c == l || *c == r {
                        *c = g.id;
                    }
                }
                nodes[g.id] = Node::Leaf { value: 0.0 };
                continue;
            }
            if let Some(b) = best[s] {
                importance[b.feature] += n_node * g.impurity - nl as f64 * il - nr as f64 * ir;
            }
            next.push(Grow { id: l, n: nl, sum: sl, sq_sum: ql, impurity: il });
            next.push(Grow { id: r, n: nr, sum: sr, sq_sum: qr, impurity: ir });
        }
        level = next;
    }
    importance.iter_mut().for_each(|v| *v /= n as f64);
    (Tree { nodes }, node_of, importance)
}

/// A fitted classifier.
pub(crate) struct Gbt {
    init: Vec<f64>,
    stages: Vec<Vec<Tree>>,
    learning_rate: f64,
    /// Normalised feature importances.
    pub importances: Vec<f64>,
    /// The predicted dense labels of the training points.
    pub train_predictions: Vec<u32>,
}

/// Softmax probabilities and the negative gradient `y − p` of the multinomial log loss, per point.
fn multinomial_neg_gradient(raw: &[f64], y: &[u32], k: usize) -> Vec<f64> {
    let mut out = vec![0.0; raw.len()];
    out.par_chunks_mut(k).zip(raw.par_chunks(k)).zip(y.par_iter()).for_each(|((o, r), &label)| {
        let max = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for (oc, &rc) in o.iter_mut().zip(r) {
            *oc = (rc - max).exp();
            sum += *oc;
        }
        for (c, oc) in o.iter_mut().enumerate() {
            let gradient = *oc / sum - f64::from(u8::from(c == label as usize));
            *oc = -gradient;
        }
    });
    out
}

/// The negative gradient of the binomial log loss (scikit-learn's numerically stable form).
fn binomial_neg_gradient(raw: &[f64], y: &[u32]) -> Vec<f64> {
    raw.par_iter()
        .zip(y.par_iter())
        .map(|(&r, &label)| {
            let t = f64::from(label);
            let gradient = if r > -37.0 {
                let e = (-r).exp();
                ((1.0 - t) - t * e) / (1.0 + e)
            } else {
                r.exp() - t
            };
            -gradient
        })
        .collect()
}

impl Gbt {
    /// Fits on features and dense labels `y < num_classes` (`num_classes ≥ 2`, all present).
    pub fn fit(x: &Features, y: &[u32], num_classes: usize, settings: &GbtSettings) -> Gbt {
        let n = x.len();
        let k_trees = if num_classes == 2 { 1 } else { num_classes };
        let eps = f64::EPSILON;
        let mut counts = vec![0usize; num_classes];
        for &v in y {
            counts[v as usize] += 1;
        }
        let prior: Vec<f64> = counts.iter().map(|&c| (c as f64 / n as f64).clamp(eps, 1.0 - eps)).collect();
        let init: Vec<f64> = if k_trees == 1 {
            vec![(prior[1] / (1.0 - prior[1])).ln()]
        } else {
            let logs: Vec<f64> = prior.iter().map(|p| p.ln()).collect();
            let mean = logs.iter().sum::<f64>() / logs.len() as f64;
            logs.iter().map(|l| l - mean).collect()
        };
        let mut raw: Vec<f64> = (0..n).flat_map(|_| init.iter().copied()).collect();
        let mut stages = Vec::with_capacity(settings.n_estimators);
        let mut importance_sum = vec![0.0; x.columns.len()];
        let mut relevant = 0usize;
        let factor = (num_classes as f64 - 1.0) / num_classes as f64;
        for _ in 0..settings.n_estimators {
            let neg = if k_trees == 1 {
                binomial_neg_gradient(&raw, y)
            } else {
                multinomial_neg_gradient(&raw, y, k_trees)
            };
            let fitted: Vec<(Tree, Vec<usize>, Vec<f64>)> = (0..k_trees)
                .into_par_iter()
                .map(|k| {
                    let target: Vec<f64> = (0..n).map(|i| neg[i * k_trees + k]).collect();
                    let (mut tree, leaf_of, importance) = fit_tree(x, &target, settings.max_depth);
                    // One Newton step per leaf.
                    let mut num = vec![0.0; tree.nodes.len()];
                    let mut den = vec![0.0; tree.nodes.len()];
                    let mut cnt = vec![0usize; tree.nodes.len()];
                    for i in 0..n {
                        let truth = if k_trees == 1 {
                            f64::from(y[i])
                        } else {
                            f64::from(u8::from(y[i] as usize == k))
                        };
                        let prob = truth - target[i];
                        num[leaf_of[i]] += target[i];
                        den[leaf_of[i]] += prob * (1.0 - prob);
                        cnt[leaf_of[i]] += 1;
                    }
                    for (id, node) in tree.nodes.iter_mut().enumerate() {
                        if let Node::Leaf { value } = node {
                            if cnt[id] == 0 {
                                continue;
                            }
                            let c = cnt[id] as f64;
                            let mut numerator = num[id] / c;
                            if k_trees > 1 {
                                numerator *= factor;
                            }
                            let denominator = den[id] / c;
                            *value = if denominator.abs() < 1e-150 { 0.0 } else { numerator / denominator };
                        }
                    }
                    (tree, leaf_of, importance)
                })
                .collect();
            let mut stage = Vec::with_capacity(k_trees);
            for (k, (tree, leaf_of, importance)) in fitted.into_iter().enumerate() {
                for i in 0..n {
                    if let Node::Leaf { value } = tree.nodes[leaf_of[i]] {
                        raw[i * k_trees + k] += settings.learning_rate * value;
                    }
                }
                if tree.nodes.len() > 1 {
                    relevant += 1;
                    importance_sum.iter_mut().zip(&importance).for_each(|(a, b)| *a += b);
                }
                stage.push(tree);
            }
            stages.push(stage);
        }
        let total: f64 = importance_sum.iter().sum();
        let importances = if relevant == 0 || total == 0.0 {
            vec![0.0; importance_sum.len()]
        } else {
            importance_sum.iter().map(|v| v / total).collect()
        };
        let train_predictions = raw.chunks(k_trees).map(decide).collect();
        Gbt { init, stages, learning_rate: settings.learning_rate, importances, train_predictions }
    }

    /// The predicted dense label of every row of `columns` (`[D][M]`, as `f64`; cast to `f32`).
    pub fn predict(&self, columns: &[Vec<f64>]) -> Vec<u32> {
        let m = columns.first().map_or(0, Vec::len);
        (0..m)
            .into_par_iter()
            .map(|i| {
                let row: Vec<f32> = columns.iter().map(|c| c[i] as f32).collect();
                let mut raw = self.init.clone();
                for stage in &self.stages {
                    for (r, tree) in raw.iter_mut().zip(stage) {
                        *r += self.learning_rate * tree.predict(&row);
                    }
                }
                decide(&raw)
            })
            .collect()
    }
}

/// The label of raw predictions: `raw ≥ 0` for one output, else the first largest.
fn decide(raw: &[f64]) -> u32 {
    if let [r] = raw {
        return u32::from(*r >= 0.0);
    }
    let mut best = 0;
    for (k, &v) in raw.iter().enumerate() {
        if v > raw[best] {
            best = k;
        }
    }
    best as u32
}
