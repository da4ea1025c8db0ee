"""Reference values for vrl-disentangle: disentanglement_lib's metric definitions, transcribed.

disentanglement_lib (google-research/disentanglement_lib, `evaluation/metrics/`) needs TensorFlow 1
and gin and does not install today; the functions below copy its code (mig.py, sap_score.py, dci.py,
modularity_explicitness.py, utils.py, the scikit-learn part of beta_vae.py and the vote counting of
factor_vae.py) line for line, with numpy and scikit-learn (pinned: scikit-learn==1.9.1, numpy 2.4),
in its layout: codes `mus` are `[num_codes, num_points]`, factors `ys` `[num_factors, num_points]`.

Writes `crates/vrl-disentangle/tests/fixtures/reference.safetensors` (the input arrays, `CASE/codes`
`[N, D]` float64 and `CASE/factors` `[N, K]` int64, rows as vrl takes them; `beta/...` feature
vectors and labels) and `reference.json` (the expected values), read by
`crates/vrl-disentangle/tests/reference.rs`. Run: `$VRL_PYTHON python/disentangle_reference.py`
(after `pip install scikit-learn==1.9.1`).

Settings are disentanglement_lib's study defaults: 20 histogram bins; SAP with discrete factors
(`LinearSVC(C=0.01, class_weight="balanced")`); DCI with `GradientBoostingClassifier()`; training
/ test split of fixed points as `split_train_test` with `train_percentage = 2/3` (its 10,000 / 5,000
sample counts). Besides the classifiers at scikit-learn's default tolerances (what
disentanglement_lib ran), LinearSVC and LogisticRegression are also fitted to convergence
(`tol=1e-12`, many iterations): vrl solves those convex problems exactly and is compared with both.
"""

import json
import pathlib

import numpy as np
import scipy
import scipy.stats
import sklearn
import sklearn.metrics
from safetensors.numpy import save_file
from sklearn import ensemble, linear_model, svm

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/vrl-disentangle/tests/fixtures"
TRAIN_PERCENTAGE = 2.0 / 3.0
DCI_SEEDS = 8


# --- utils.py -------------------------------------------------------------------------------------


def discrete_mutual_info(mus, ys):
    num_codes = mus.shape[0]
    num_factors = ys.shape[0]
    m = np.zeros([num_codes, num_factors])
    for i in range(num_codes):
        for j in range(num_factors):
            m[i, j] = sklearn.metrics.mutual_info_score(ys[j, :], mus[i, :])
    return m


def discrete_entropy(ys):
    num_factors = ys.shape[0]
    h = np.zeros(num_factors)
    for j in range(num_factors):
        h[j] = sklearn.metrics.mutual_info_score(ys[j, :], ys[j, :])
    return h


def histogram_discretize(target, num_bins=20):
    discretized = np.zeros_like(target)
    for i in range(target.shape[0]):
        discretized[i, :] = np.digitize(target[i, :], np.histogram(target[i, :], num_bins)[1][:-1])
    return discretized


def split_train_test(observations, train_percentage):
    num_labelled_samples = observations.shape[1]
    num_labelled_samples_train = int(np.ceil(num_labelled_samples * train_percentage))
    return observations[:, :num_labelled_samples_train], observations[:, num_labelled_samples_train:]


# --- mig.py ---------------------------------------------------------------------------------------


def compute_mig(mus_train, ys_train):
    discretized_mus = histogram_discretize(mus_train)
    m = discrete_mutual_info(discretized_mus, ys_train)
    entropy = discrete_entropy(ys_train)
    sorted_m = np.sort(m, axis=0)[::-1]
    per_factor = np.divide(sorted_m[0, :] - sorted_m[1, :], entropy[:])
    return {
        "score": float(np.mean(per_factor)),
        "per_factor": per_factor.tolist(),
        "mutual_information": m.tolist(),
        "factor_entropy": entropy.tolist(),
    }


# --- sap_score.py ---------------------------------------------------------------------------------


def compute_score_matrix(mus, ys, mus_test, ys_test, continuous_factors, tight=False):
    num_latents = mus.shape[0]
    num_factors = ys.shape[0]
    score_matrix = np.zeros([num_latents, num_factors])
    for i in range(num_latents):
        for j in range(num_factors):
            mu_i = mus[i, :]
            y_j = ys[j, :]
            if continuous_factors:
                cov_mu_i_y_j = np.cov(mu_i, y_j, ddof=1)
                cov_mu_y = cov_mu_i_y_j[0, 1] ** 2
                var_mu = cov_mu_i_y_j[0, 0]
                var_y = cov_mu_i_y_j[1, 1]
                if var_mu > 1e-12:
                    score_matrix[i, j] = cov_mu_y * 1.0 / (var_mu * var_y)
                else:
                    score_matrix[i, j] = 0.0
            else:
                mu_i_test = mus_test[i, :]
                y_j_test = ys_test[j, :]
                if tight:
                    classifier = svm.LinearSVC(C=0.01, class_weight="balanced", tol=1e-12, max_iter=1_000_000)
                else:
                    classifier = svm.LinearSVC(C=0.01, class_weight="balanced")
                classifier.fit(mu_i[:, np.newaxis], y_j)
                pred = classifier.predict(mu_i_test[:, np.newaxis])
                score_matrix[i, j] = np.mean(pred == y_j_test)
    return score_matrix


def compute_avg_diff_top_two(matrix):
    sorted_matrix = np.sort(matrix, axis=0)
    return np.mean(sorted_matrix[-1, :] - sorted_matrix[-2, :])


def compute_sap(mus, ys, mus_test, ys_test, continuous_factors, tight=False):
    score_matrix = compute_score_matrix(mus, ys, mus_test, ys_test, continuous_factors, tight)
    return {"score": float(compute_avg_diff_top_two(score_matrix)), "score_matrix": score_matrix.tolist()}


# --- dci.py ---------------------------------------------------------------------------------------


def compute_importance_gbt(x_train, y_train, x_test, y_test, random_state=None):
    num_factors = y_train.shape[0]
    num_codes = x_train.shape[0]
    importance_matrix = np.zeros(shape=[num_codes, num_factors], dtype=np.float64)
    train_loss = []
    test_loss = []
    for i in range(num_factors):
        model = ensemble.GradientBoostingClassifier(random_state=random_state)
        model.fit(x_train.T, y_train[i, :])
        importance_matrix[:, i] = np.abs(model.feature_importances_)
        train_loss.append(np.mean(model.predict(x_train.T) == y_train[i, :]))
        test_loss.append(np.mean(model.predict(x_test.T) == y_test[i, :]))
    return importance_matrix, train_loss, test_loss


def disentanglement_per_code(importance_matrix):
    return 1.0 - scipy.stats.entropy(importance_matrix.T + 1e-11, base=importance_matrix.shape[1])


def disentanglement(importance_matrix):
    per_code = disentanglement_per_code(importance_matrix)
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    code_importance = importance_matrix.sum(axis=1) / importance_matrix.sum()
    return np.sum(per_code * code_importance)


def completeness_per_factor(importance_matrix):
    return 1.0 - scipy.stats.entropy(importance_matrix + 1e-11, base=importance_matrix.shape[0])


def completeness(importance_matrix):
    per_factor = completeness_per_factor(importance_matrix)
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    factor_importance = importance_matrix.sum(axis=0) / importance_matrix.sum()
    return np.sum(per_factor * factor_importance)


def compute_dci(mus_train, ys_train, mus_test, ys_test, random_state=None):
    importance_matrix, train_acc, test_acc = compute_importance_gbt(mus_train, ys_train, mus_test, ys_test, random_state)
    return {
        "disentanglement": float(disentanglement(importance_matrix)),
        "completeness": float(completeness(importance_matrix)),
        "informativeness_train": float(np.mean(train_acc)),
        "informativeness_test": float(np.mean(test_acc)),
        "importance": importance_matrix.tolist(),
        "train_accuracy": [float(a) for a in train_acc],
        "test_accuracy": [float(a) for a in test_acc],
        "per_code": disentanglement_per_code(importance_matrix).tolist(),
        "per_factor": completeness_per_factor(importance_matrix).tolist(),
    }


def dci_from_importance(importance_matrix):
    """D and C of a given importance matrix (vrl checks its entropy arithmetic on these)."""
    return {
        "importance": importance_matrix.tolist(),
        "disentanglement": float(disentanglement(importance_matrix)),
        "completeness": float(completeness(importance_matrix)),
    }


# --- modularity_explicitness.py -------------------------------------------------------------------


def modularity(mutual_information):
    squared_mi = np.square(mutual_information)
    max_squared_mi = np.max(squared_mi, axis=1)
    numerator = np.sum(squared_mi, axis=1) - max_squared_mi
    denominator = max_squared_mi * (squared_mi.shape[1] - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = numerator / denominator
    modularity_score = 1.0 - delta
    index = max_squared_mi == 0.0
    modularity_score[index] = 0.0
    return modularity_score


def compute_modularity(mus_train, ys_train):
    discretized_mus = histogram_discretize(mus_train)
    mutual_information = discrete_mutual_info(discretized_mus, ys_train)
    per_code = modularity(mutual_information)
    return {"score": float(np.mean(per_code)), "per_code": per_code.tolist()}


# --- beta_vae.py (the classifier on given features) -------------------------------------------------


def beta_vae_accuracy(train_points, train_labels, eval_points, eval_labels, tight=False):
    if tight:
        model = linear_model.LogisticRegression(tol=1e-12, max_iter=100_000)
    else:
        model = linear_model.LogisticRegression(random_state=np.random.RandomState(0))
    model.fit(train_points, train_labels)
    train_accuracy = np.mean(model.predict(train_points) == train_labels)
    eval_accuracy = model.score(eval_points, eval_labels)
    return {"train_accuracy": float(train_accuracy), "eval_accuracy": float(eval_accuracy), "n_iter": int(model.n_iter_[0])}


# --- the cases --------------------------------------------------------------------------------------


def make_cases(rng):
    cases = {}
    n = 600
    sizes = [3, 5, 8, 2]
    # Random codes: no relation to the factors.
    factors = np.stack([rng.integers(0, s, n) for s in sizes], axis=1)
    cases["random"] = (rng.normal(size=(n, 6)), factors)
    # Mixed codes: each code a noisy mixture of factors, two codes pure noise, one nearly constant.
    factors = np.stack([rng.integers(0, s, n) for s in sizes], axis=1).astype(np.int64)
    f = factors.astype(np.float64)
    codes = np.stack(
        [
            f[:, 0] + 0.3 * rng.normal(size=n),
            0.5 * f[:, 1] - 0.2 * f[:, 2] + 0.3 * rng.normal(size=n),
            np.sin(f[:, 2]) + 0.1 * rng.normal(size=n),
            f[:, 3] * 2.0 + f[:, 0] + rng.normal(size=n),
            rng.normal(size=n),
            1e-3 * rng.normal(size=n),
            rng.uniform(size=n),
        ],
        axis=1,
    )
    cases["mixed"] = (codes, factors)
    # Factors with unsorted, negative and sparse values; codes of float32 precision.
    factors = np.stack([rng.choice([-7, 2, 40], n), rng.choice([10, 20, 30, 50, 90, 100], n)], axis=1)
    codes = np.stack(
        [factors[:, 0] / 40.0 + 0.2 * rng.normal(size=n), rng.normal(size=n), factors[:, 1] / 100.0 + 0.05 * rng.normal(size=n)],
        axis=1,
    ).astype(np.float32).astype(np.float64)
    cases["relabelled"] = (codes, factors.astype(np.int64))
    return cases


def main():
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, scipy {scipy.__version__}")
    rng = np.random.default_rng(20261123)
    # disentanglement_lib's calls leave scikit-learn's random_state unset, which draws from numpy's
    # global RandomState: seed it so that this script writes the same fixtures every time.
    np.random.seed(0)
    tensors = {}
    expected = {"versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__, "scipy": scipy.__version__}}
    expected["train_percentage"] = TRAIN_PERCENTAGE
    expected["cases"] = {}
    for name, (codes, factors) in make_cases(rng).items():
        tensors[f"{name}/codes"] = np.ascontiguousarray(codes, dtype=np.float64)
        tensors[f"{name}/factors"] = np.ascontiguousarray(factors, dtype=np.int64)
        mus, ys = codes.T, factors.T
        mus_train, mus_test = split_train_test(mus, TRAIN_PERCENTAGE)
        ys_train, ys_test = split_train_test(ys, TRAIN_PERCENTAGE)
        expected["cases"][name] = {
            "mig": compute_mig(mus, ys),
            "modularity": compute_modularity(mus, ys),
            "sap_discrete": compute_sap(mus_train, ys_train, mus_test, ys_test, False),
            "sap_discrete_tight": compute_sap(mus_train, ys_train, mus_test, ys_test, False, tight=True),
            "sap_continuous": compute_sap(mus_train, ys_train, mus_test, ys_test, True),
            "dci": compute_dci(mus_train, ys_train, mus_test, ys_test),
            # disentanglement_lib leaves the trees' random_state unset, and scikit-learn breaks ties
            # between equally good splits by a random feature order: the same call gives slightly
            # different importances from run to run. These seeds show that spread.
            "dci_seeds": [compute_dci(mus_train, ys_train, mus_test, ys_test, seed) for seed in range(DCI_SEEDS)],
        }
        print(name, {k: v.get("score", v.get("disentanglement")) for k, v in expected["cases"][name].items() if isinstance(v, dict)})
    # D and C of hand-made importance matrices, including an all-zero one.
    expected["dci_matrices"] = [
        dci_from_importance(m)
        for m in [rng.uniform(size=(5, 3)), np.eye(4)[:, :3] * 0.7, np.zeros((3, 2)), np.array([[1.0, 0.0], [1.0, 0.0]])]
    ]
    # The beta-VAE classifier on fixed features: 5 classes, 6 features, signal in the class's feature.
    for name, (n_train, n_eval, k) in {"beta5": (1000, 500, 5), "beta2": (400, 200, 2)}.items():
        def draw(count):
            labels = rng.integers(0, k, count)
            points = np.abs(rng.normal(size=(count, 6))) * 0.5 + 0.3
            points[np.arange(count), labels] *= 0.4
            return points, labels.astype(np.int64)

        (tx, ty), (ex, ey) = draw(n_train), draw(n_eval)
        tensors[f"{name}/train_points"], tensors[f"{name}/train_labels"] = tx, ty
        tensors[f"{name}/eval_points"], tensors[f"{name}/eval_labels"] = ex, ey
        expected[name] = {"default": beta_vae_accuracy(tx, ty, ex, ey), "tight": beta_vae_accuracy(tx, ty, ex, ey, tight=True)}
        print(name, expected[name])
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT / "reference.safetensors"))
    (OUT / "reference.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {OUT / 'reference.safetensors'} and reference.json")


if __name__ == "__main__":
    main()
