"""The self-checks of notebook 05's exercises, run as a student would meet them.

Each starter cell (tagged ``exercise``) is executed from the notebook file in a namespace that holds
what the notebook defines before it (the digits, the split into fitting and validation digits, a
fitted pixel GMM for the comparison of Exercise 5), rebuilt cheaply. Its check must say "not done
yet" for the untouched stub, "correct" for a right answer written differently from the solution
cell, and must not say "correct" for plausible wrong answers; where the check has a hint for a
mistake, the test asserts that hint. Exercise 4 must also reject the linear-space ratio
exp(a) / sum exp(a) without letting a floating-point warning through.
"""

import warnings

import matplotlib

matplotlib.use("Agg")  # Exercise 5 draws a figure

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import ROOT, exercise_starters, requires_mnist, run_starters

import helpers

NOTEBOOK = ROOT / "notebooks" / "05_em_kmeans_init.ipynb"
SEED = 0

pytestmark = requires_mnist


@pytest.fixture(scope="module")
def base_namespace():
    """What the notebook has defined when the exercises start (only what the starters read)."""
    X, y = helpers.load_mnist("train", root=ROOT / ".tmp")
    shuffled = np.random.default_rng(SEED).permutation(len(X))  # the notebook's split
    X_fit, X_val = X[shuffled[:5000]], X[shuffled[5000:15000]]
    return {
        "np": np,
        "plt": plt,
        "warnings": warnings,
        "helpers": helpers,
        "SEED": SEED,
        "X": X,
        "y": y,
        "K": 10,
        "X_fit": X_fit,
        "X_val": X_val,
        "TOL": 1e-2,
        "MAX_ITER": 100,
    }


@pytest.fixture(scope="module")
def sources():
    """{exercise number: source} of the code cells tagged ``exercise``: exercises 1 to 5."""
    return exercise_starters(NOTEBOOK, expected=[1, 2, 3, 4, 5])


@pytest.fixture(scope="module")
def starters(base_namespace, sources):
    """{N: (namespace after the untouched starter cell, what it printed)}, each run once."""
    return run_starters(base_namespace, sources)


@pytest.fixture
def check(starters, capsys):
    """check(N, *answer) -> what check_exercise_N prints for that answer (stdout, stripped)."""

    def run_check(number, *answer):
        namespace = starters[number][0]
        capsys.readouterr()
        namespace[f"check_exercise_{number}"](*answer)
        captured = capsys.readouterr()
        assert captured.err == "", captured.err  # nothing on stderr (no warning leaks out)
        return captured.out.strip()

    return run_check


@pytest.fixture
def X2000(base_namespace):
    return base_namespace["X"][:2000]


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
def test_untouched_stub_is_not_done(starters, number):
    printed = starters[number][1]
    assert f"Exercise {number}: not done yet" in printed
    assert "correct" not in printed


def assert_correct(out, number):
    assert out.splitlines()[-1].startswith(f"Exercise {number}: correct"), out


def assert_not_correct(out, number, hint=None):
    assert f"Exercise {number}" in out, out
    assert "correct" not in out, out
    if hint is not None:
        assert hint in out, out


def test_no_solution_is_mentioned_in_the_starters(sources):
    """The student edition drops the solution cells: no starter may point at them."""
    for number, source in sources.items():
        assert "solution" not in source.lower(), number


# --- Exercise 1: the assignment step ---------------------------------------------------------


def squared_distances(X, centres):
    """||x||^2 - 2 x.mu + ||mu||^2, the expansion (the solution cell broadcasts instead)."""
    return (X**2).sum(1)[:, None] - 2 * X @ centres.T + (centres**2).sum(1)[None, :]


def assign_expanded(X, centres):
    D = np.maximum(squared_distances(X, centres), 0)
    labels = D.argmin(axis=1)
    return labels, D[np.arange(len(X)), labels]


def assign_farthest(X, centres):
    D = squared_distances(X, centres)
    labels = D.argmax(axis=1)
    return labels, D[np.arange(len(X)), labels]


def assign_distances(X, centres):
    labels, sq = assign_expanded(X, centres)
    return labels, np.sqrt(sq)


def assign_labels_only(X, centres):
    return assign_expanded(X, centres)[0]


def test_exercise_1_correct_alternative(check):
    assert_correct(check(1, assign_expanded), 1)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (assign_farthest, "FARTHEST centre"),
        (assign_distances, "holds distances: square them"),
        (assign_labels_only, "return a pair"),
    ],
)
def test_exercise_1_wrong_answers(check, answer, hint):
    assert_not_correct(check(1, answer), 1, hint)


# --- Exercise 2: the update step -------------------------------------------------------------


def cluster_sums(X, labels, K):
    sums = np.zeros((K, X.shape[1]))
    np.add.at(sums, labels, X)
    return sums


def update_one_hot(X, labels, K):
    """Correct, written differently: a one-hot matrix product divided by the counts."""
    onehot = np.eye(K)[labels]
    return onehot.T @ X / onehot.sum(axis=0)[:, None]


def update_sums(X, labels, K):
    return cluster_sums(X, labels, K)


def update_over_n(X, labels, K):
    return cluster_sums(X, labels, K) / len(X)


def update_over_nk_minus_1(X, labels, K):
    return cluster_sums(X, labels, K) / (np.bincount(labels, minlength=K)[:, None] - 1)


def test_exercise_2_correct_alternative(check):
    assert_correct(check(2, update_one_hot), 2)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (update_sums, "sums of each cluster"),
        (update_over_n, "divided by n (all digits)"),
        (update_over_nk_minus_1, "divided by n_k - 1"),
    ],
)
def test_exercise_2_wrong_answers(check, answer, hint):
    assert_not_correct(check(2, answer), 2, hint)


# --- Exercise 3: predict J / n ---------------------------------------------------------------


def test_exercise_3_correct_alternative(check):
    # within 10 % of the measured values (8.38, 7.21, 6.11 for SEED = 0), not the solution's numbers
    assert_correct(check(3, [8.0, 7.0, 6.0]), 3)


@pytest.mark.parametrize(
    "prediction, hint",
    [
        ([6.0, 7.0, 8.0], "does not decrease as K grows"),  # more centres, larger J
        ([14.4, 7.2, 3.6], "off by more than 10 %"),  # J proportional to 1 / K
        ([7.0, 6.0], "give three numbers"),
    ],
)
def test_exercise_3_wrong_predictions(check, prediction, hint):
    assert_not_correct(check(3, prediction), 3, hint)


# --- Exercise 4: spherical responsibilities in log space ---------------------------------------


def sq_dist(X, means):
    return ((X[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)


def resp_softmax_shift(X, means, sigma):
    """Correct, written differently: shift by the nearest centre's distance, then a plain ratio."""
    D = sq_dist(X, means)
    e = np.exp(-(D - D.min(axis=1, keepdims=True)) / (2 * sigma**2))
    return e / e.sum(axis=1, keepdims=True)


def resp_scipy(X, means, sigma):
    """Correct: scipy's softmax, which subtracts the maximum itself."""
    from scipy.special import softmax

    return softmax(-sq_dist(X, means) / (2 * sigma**2), axis=1)


def resp_linear(X, means, sigma):
    """Wrong: the linear-space ratio exp(a) / sum exp(a); 0 / 0 once exp underflows."""
    e = np.exp(-sq_dist(X, means) / (2 * sigma**2))
    return e / e.sum(axis=1, keepdims=True)


def resp_linear_guarded(X, means, sigma):
    """Wrong: the linear ratio with a guard against 0 / 0 (rows of zeros instead of NaN)."""
    e = np.exp(-sq_dist(X, means) / (2 * sigma**2))
    return e / np.maximum(e.sum(axis=1, keepdims=True), 1e-300)


def resp_log(X, means, sigma):
    """Wrong: returns log r_ik (normalised in log space, never exponentiated)."""
    a = -sq_dist(X, means) / (2 * sigma**2)
    return a - helpers.logsumexp(a, axis=1)[:, None]


def resp_over_2sigma(X, means, sigma):
    return resp_softmax_shift(X, means, np.sqrt(sigma))  # -D / (2 sigma)


def resp_over_sigma2(X, means, sigma):
    return resp_softmax_shift(X, means, sigma / np.sqrt(2))  # -D / sigma^2


def resp_plus_sign(X, means, sigma):
    a = sq_dist(X, means) / (2 * sigma**2)
    return np.exp(a - helpers.logsumexp(a, axis=1)[:, None])


def resp_wrong_axis(X, means, sigma):
    a = -sq_dist(X, means) / (2 * sigma**2)
    return np.exp(a - helpers.logsumexp(a, axis=0)[None, :])


@pytest.mark.parametrize("answer", [resp_softmax_shift, resp_scipy])
def test_exercise_4_correct_alternatives(check, answer):
    out = check(4, answer)
    assert_correct(out, 4)
    assert "sigma = 0.1: largest responsibility > 0.99" in out


@pytest.mark.parametrize("answer", [resp_linear, resp_linear_guarded])
def test_exercise_4_linear_ratio_is_wrong_and_silent(check, answer):
    """The linear form passes at sigma = 0.3 and must fail at 0.05, without a warning leaking out."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = check(4, answer)
    assert_not_correct(out, 4, "underflows to 0")
    assert "sigma = 0.05" in out
    assert caught == [], [str(w.message) for w in caught]


def test_exercise_4_linear_ratio_really_fails_on_the_check_data(base_namespace):
    """The check data are such that the linear form breaks: NaN rows at sigma = 0.05."""
    Xs = base_namespace["X"][:2000]
    means = helpers.kmeans(Xs, 10, rng=SEED)[0]
    with np.errstate(all="ignore"):
        r = resp_linear(Xs, means, 0.05)
    assert np.mean(~np.isfinite(r).all(axis=1)) > 0.5


@pytest.mark.parametrize(
    "answer, hint",
    [
        (resp_log, "these are log r_ik"),
        (resp_over_2sigma, "you divided by 2 sigma"),
        (resp_over_sigma2, "you divided by sigma^2"),
        (resp_plus_sign, "farthest mean"),
        (resp_wrong_axis, "rows do not sum to 1"),
    ],
)
def test_exercise_4_wrong_answers(check, answer, hint):
    assert_not_correct(check(4, answer), 4, hint)


# --- Exercise 5: PCA ----------------------------------------------------------------------------


def pca_svd(X, n_dims):
    """Correct, written differently: the right singular vectors of the centred data."""
    mean = X.mean(axis=0)
    _, _, Vt = np.linalg.svd(X - mean, full_matrices=False)
    return mean, Vt[:n_dims]


def eigh_cov(X):
    return np.linalg.eigh(np.cov(X, rowvar=False))[1]  # ascending eigenvalues


def pca_columns(X, n_dims):
    return X.mean(axis=0), eigh_cov(X)[:, ::-1][:, :n_dims]


def pca_smallest(X, n_dims):
    return X.mean(axis=0), eigh_cov(X)[:, :n_dims].T


def pca_ascending(X, n_dims):
    """The right directions, smallest of the 40 first."""
    return X.mean(axis=0), eigh_cov(X)[:, -n_dims:].T


def pca_no_mean(X, n_dims):
    return np.zeros(X.shape[1]), eigh_cov(X)[:, ::-1][:, :n_dims].T


def pca_uncentred(X, n_dims):
    """Eigenvectors of X^T X / n, the second moment, instead of the covariance."""
    U = np.linalg.eigh(X.T @ X / len(X))[1]
    return X.mean(axis=0), U[:, ::-1][:, :n_dims].T


def pca_scaled(X, n_dims):
    """Directions scaled by their standard deviations: not orthonormal."""
    lam, U = np.linalg.eigh(np.cov(X, rowvar=False))
    return X.mean(axis=0), (U * np.sqrt(np.maximum(lam, 0)))[:, ::-1][:, :n_dims].T


def test_exercise_5_correct_alternative(check):
    assert check(5, pca_svd) == "Exercise 5: correct"


@pytest.mark.parametrize(
    "answer, hint",
    [
        (pca_columns, "return the directions as ROWS"),
        (pca_smallest, "SMALLEST-variance directions"),
        (pca_ascending, "not leading first"),
        (pca_no_mean, "mean is not the mean"),
        (pca_uncentred, "does not span the 40 leading eigenvectors"),
        (pca_scaled, "not orthonormal"),
    ],
)
def test_exercise_5_wrong_answers(check, answer, hint):
    assert_not_correct(check(5, answer), 5, hint)


def test_exercise_5_comparison_runs(starters, base_namespace, capsys):
    """Once pca passes, the starter goes on to compare samples with the pixel GMM fitted before."""
    namespace = starters[5][0]
    X_fit = base_namespace["X_fit"]
    pixels = helpers.fit_gmm(X_fit, 10, init="kmeans", max_iter=2, tol=0, rng=SEED)[0]
    namespace["runs"] = [{"init": "kmeans", "seed": SEED, "model": pixels}]
    capsys.readouterr()
    namespace["compare_with_pixels"](pca_svd)
    plt.close("all")
    out = capsys.readouterr().out
    assert "GMM on 40 PCA dims: mean distance" in out
    assert "GMM on 256 pixels: mean distance" in out
    assert "real validation digits" in out
