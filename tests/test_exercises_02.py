"""The self-checks of notebook 02's exercises, run as a student would meet them.

Each starter cell (tagged ``exercise``) is executed from the notebook file in a namespace that holds
what the notebook defines before it (the digits, mu, Sigma, SEED, ...). Its check must say
"not done yet" for the untouched stub, "correct" for a right answer written differently from the
solution cell, and must not say "correct" for plausible wrong answers; where the check has a hint
for a mistake, the test asserts that hint.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import ROOT, exercise_starters, requires_mnist
from scipy.linalg import solve_triangular
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

import helpers

NOTEBOOK = ROOT / "notebooks" / "02_gaussian_mle.ipynb"
EPS = helpers.DEFAULT_EPS

pytestmark = requires_mnist


@pytest.fixture(scope="module")
def base_namespace():
    """What the notebook has defined when the exercises start (only what the checks read)."""
    X, _ = helpers.load_mnist("train", root=ROOT / ".tmp")
    X_test, _ = helpers.load_mnist("test", root=ROOT / ".tmp")
    mu, Sigma = helpers.gaussian_mle(X)
    return {
        "np": np,
        "plt": plt,
        "helpers": helpers,
        "SEED": 0,
        "X": X,
        "X_test": X_test,
        "n": X.shape[0],
        "d": X.shape[1],
        "mu": mu,
        "Sigma": Sigma,
    }


@pytest.fixture(scope="module")
def sources():
    """{exercise number: source} of the code cells tagged ``exercise``: exercises 1 to 5."""
    return exercise_starters(NOTEBOOK, expected=[1, 2, 3, 4, 5])


@pytest.fixture
def run(base_namespace, sources, capsys, monkeypatch):
    """run(N) -> (check function, what the untouched starter cell printed)."""
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)

    def run_starter(number):
        namespace = dict(base_namespace)
        capsys.readouterr()
        exec(compile(sources[number], f"<exercise {number}>", "exec"), namespace)
        return namespace[f"check_exercise_{number}"], capsys.readouterr().out

    yield run_starter
    plt.close("all")


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
def test_untouched_stub_is_not_done_yet(run, number):
    _, out = run(number)
    assert out.startswith(f"Exercise {number}: not done yet"), out


# ----------------------------------------------------------------------------- exercise 1
def log_density_by_cholesky(X, mean, cov, eps=EPS):
    """Right, another way: Cholesky factor of the clipped covariance and a triangular solve."""
    lam, U = np.linalg.eigh(cov)
    L = np.linalg.cholesky((U * np.maximum(lam, eps)) @ U.T)
    W = solve_triangular(L, (X - mean).T, lower=True)
    log_det = 2 * np.sum(np.log(np.diag(L)))
    return -0.5 * (X.shape[1] * np.log(2 * np.pi) + log_det + np.sum(W**2, axis=0))


def log_density_slogdet(X, mean, cov, eps=EPS):
    """Right, a third way: slogdet and solve on the clipped covariance (no det, no inv)."""
    clipped = helpers.clipped_covariance(cov, eps)
    centred = X - mean
    quadratic = np.sum(centred * np.linalg.solve(clipped, centred.T).T, axis=1)
    return -0.5 * (X.shape[1] * np.log(2 * np.pi) + np.linalg.slogdet(clipped)[1] + quadratic)


def log_density_parts(
    X, mean, cov, eps=EPS, constant=True, half=True, clip_log_det=True, sqrt=True
):
    """The log-density with one slip switched on by a flag."""
    lam, U = np.linalg.eigh(cov)
    clipped = np.maximum(lam, eps)
    Z = (X - mean) @ U / (np.sqrt(clipped) if sqrt else clipped)
    log_det = np.sum(np.log(clipped if clip_log_det else lam))
    bracket = (X.shape[1] * np.log(2 * np.pi) if constant else 0) + log_det + np.sum(Z**2, axis=1)
    return (-0.5 if half else -1.0) * bracket


@pytest.mark.parametrize("answer", [log_density_by_cholesky, log_density_slogdet])
def test_exercise_1_accepts_other_correct_methods(run, printed, answer):
    check, _ = run(1)
    assert printed(check, answer) == "Exercise 1: correct\n"


@pytest.mark.parametrize(
    "slip, hint",
    [
        ({"constant": False}, "the constant d log 2pi is missing"),
        ({"half": False}, "the factor 1/2 in front of the bracket is missing"),
        ({"clip_log_det": False}, "nan or inf"),
        ({"sqrt": False}, "check the quadratic term"),
    ],
)
def test_exercise_1_rejects_slips_with_their_hint(run, printed, slip, hint):
    check, _ = run(1)
    out = printed(check, lambda X, mean, cov, eps=EPS: log_density_parts(X, mean, cov, eps, **slip))
    assert "correct" not in out and hint in out, out


def test_exercise_1_rejects_the_wrong_sign(run, printed):
    check, _ = run(1)
    out = printed(check, lambda X, mean, cov, eps=EPS: -log_density_parts(X, mean, cov, eps))
    assert "the sign is wrong" in out, out


@pytest.mark.parametrize(
    "answer",
    [
        lambda X, mean, cov, eps=EPS: log_density_parts(X, mean, cov, EPS),  # eps not passed on
        lambda X, mean, cov, eps=EPS: log_density_parts(X, mean, cov, 1e-3),  # a fixed floor
        lambda X, mean, cov, eps=EPS: log_density_slogdet(X, mean, cov),  # the default only
    ],
    ids=["EPS", "1e-3", "default"],
)
def test_exercise_1_rejects_a_function_that_ignores_eps(run, printed, answer):
    check, _ = run(1)
    out = printed(check, answer)
    assert "correct" not in out and "eps is not used: clip at the eps argument" in out, out


def test_exercise_1_reports_a_raising_function(run, printed):
    check, _ = run(1)
    out = printed(check, lambda X, mean, cov, eps=EPS: np.linalg.inv(cov))
    assert out.startswith("Exercise 1: your function raised LinAlgError"), out


def test_exercise_1_reports_a_function_without_eps(run, printed):
    """Right at the default, but eps cannot be passed: reported, not raised."""
    check, _ = run(1)
    out = printed(check, lambda X, mean, cov: log_density_parts(X, mean, cov))
    assert "correct" not in out and "with eps=0.01 your function raised TypeError" in out, out


# ----------------------------------------------------------------------------- exercise 2
def covariance_uncentred_formula(X):
    """Right, another way: E[x x^T] - mean mean^T, in float64."""
    mean = X.mean(axis=0)
    return X.T @ X / len(X) - np.outer(mean, mean)


def covariance_einsum(X):
    centred = X - X.mean(axis=0)
    return np.einsum("ni,nj->ij", centred, centred) / len(X)


def covariance_float32(X):
    """Right in float32: the check must accept it (or at most say it is the precision)."""
    X32 = np.asarray(X, dtype=np.float32)
    centred = X32 - X32.mean(axis=0)
    return centred.T @ centred / len(X32)


@pytest.mark.parametrize("answer", [covariance_uncentred_formula, covariance_einsum])
def test_exercise_2_accepts_other_correct_formulas(run, printed, answer):
    check, _ = run(2)
    assert printed(check, answer) == "Exercise 2: correct\n"


def test_exercise_2_accepts_float32_and_names_the_precision(run, printed):
    check, _ = run(2)
    out = printed(check, covariance_float32)
    assert out.startswith("Exercise 2: correct") and "float32" in out, out


def unbiased(X):
    centred = X - X.mean(axis=0)
    return centred.T @ centred / (len(X) - 1)


def unbiased_float32(X):
    X32 = np.asarray(X, dtype=np.float32)
    centred = X32 - X32.mean(axis=0)
    return centred.T @ centred / (len(X32) - 1)


def scatter(X):
    centred = X - X.mean(axis=0)
    return centred.T @ centred


def not_centred(X):
    return X.T @ X / len(X)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (unbiased, "unbiased estimate S / (n - 1)"),
        (unbiased_float32, "unbiased estimate S / (n - 1)"),
        (scatter, "the scatter matrix S itself"),
        (not_centred, "not centred"),
        (lambda X: np.cov(X, rowvar=False)[:10, :10], "shape"),
    ],
)
def test_exercise_2_rejects_wrong_covariances_with_their_hint(run, printed, answer, hint):
    check, _ = run(2)
    out = printed(check, answer)
    assert "correct" not in out and hint in out, out


# ----------------------------------------------------------------------------- exercise 3
def sample_through_eigenvectors(mean, cov, n_samples, rng, eps=EPS):
    """Right, another way: x = mean + U diag(sqrt(max(lam, eps))) z (same distribution)."""
    lam, U = np.linalg.eigh(cov)
    z = rng.standard_normal((n_samples, len(mean)))
    return mean + (z * np.sqrt(np.maximum(lam, eps))) @ U.T


def sample_with(mean, cov, n_samples, rng, eps=EPS, slip=None):
    lam, U = np.linalg.eigh(cov)
    if slip == "add eps I":
        L = np.linalg.cholesky(cov + eps * np.eye(len(mean)))
    elif slip == "no clipping":
        L = U * np.sqrt(np.maximum(lam, 0))
    else:
        L = np.linalg.cholesky((U * np.maximum(lam, eps)) @ U.T)
    z = rng.standard_normal((n_samples, len(mean)))
    if slip == "transposed":
        return mean + z @ L
    if slip == "no mean":
        return z @ L.T
    return mean + z @ L.T


def test_exercise_3_accepts_sampling_through_the_eigenvectors(run, printed):
    check, _ = run(3)
    assert printed(check, sample_through_eigenvectors) == "Exercise 3: correct\n"


@pytest.mark.parametrize(
    "slip, hint",
    [
        ("add eps I", "cov + eps I"),
        ("transposed", "z @ L.T (not z @ L)"),
        ("no clipping", "covariance cov, not Sigma_eps"),
        ("no mean", "add the mean"),
    ],
)
def test_exercise_3_rejects_slips_with_their_hint(run, printed, slip, hint):
    check, _ = run(3)
    out = printed(
        check,
        lambda mean, cov, n_samples, rng, eps=EPS: sample_with(
            mean, cov, n_samples, rng, eps, slip
        ),
    )
    assert "correct" not in out and hint in out, out


# ----------------------------------------------------------------------------- exercise 4
def test_exercise_4_accepts_the_right_prediction_as_a_string(run, printed):
    check, _ = run(4)
    assert printed(check, "0.1").endswith("Exercise 4: correct\n")


@pytest.mark.parametrize("answer", [1e-3, 1e-6])
def test_exercise_4_rejects_wrong_predictions(run, printed, answer):
    check, _ = run(4)
    out = printed(check, answer)
    assert "Exercise 4: correct" not in out and "the run says eps = 0.1 gives the most" in out, out


def test_exercise_4_rejects_a_non_number(run, printed):
    check, _ = run(4)
    assert "should be one of the numbers" in printed(check, "the largest")


# ----------------------------------------------------------------------------- exercise 5
def energy_distance(samples, reference):
    """Right, another two-sample statistic: 2 E|a - b| - E|a - a'| - E|b - b'|."""
    A, B = np.asarray(samples, dtype=float), np.asarray(reference, dtype=float)
    return 2 * cdist(A, B).mean() - cdist(A, A).mean() - cdist(B, B).mean()


def mmd_fixed_width(samples, reference, width=10.0):
    """Right: the (biased) squared MMD with a Gaussian kernel of fixed width."""
    A, B = np.asarray(samples, dtype=float), np.asarray(reference, dtype=float)

    def kernel(P, Q):
        return np.exp(-cdist(P, Q, "sqeuclidean") / width)

    return kernel(A, A).mean() + kernel(B, B).mean() - 2 * kernel(A, B).mean()


@pytest.mark.parametrize("answer", [energy_distance, mmd_fixed_width])
def test_exercise_5_accepts_two_sample_statistics(run, printed, answer):
    check, _ = run(5)
    assert printed(check, answer).endswith("Exercise 5: correct\n")


def dark_share_difference(samples, reference):
    return abs(np.mean(samples < 0.05) - np.mean(reference < 0.05))


def total_variance_difference(samples, reference):
    return abs(np.trace(np.cov(samples, rowvar=False)) - np.trace(np.cov(reference, rowvar=False)))


def nearest_neighbour_distance(samples, reference):
    return helpers.nearest_neighbour_distance(samples, reference).mean()


def marginal_difference(samples, reference):
    """Trivial: compares each pixel's mean and spread, ignores every correlation between pixels."""
    return np.linalg.norm(samples.mean(0) - reference.mean(0)) + np.linalg.norm(
        samples.std(0) - reference.std(0)
    )


def per_pixel_wasserstein(samples, reference):
    """Trivial too: the distance between the value distributions of each pixel, summed."""
    return sum(
        wasserstein_distance(samples[:, j], reference[:, j]) for j in range(samples.shape[1])
    )


@pytest.mark.parametrize(
    "answer, hint",
    [
        (dark_share_difference, "(4) it scores digits with shuffled pixels"),
        (total_variance_difference, "(4) it scores digits with shuffled pixels"),
        (nearest_neighbour_distance, "(3) copies of the reference digits"),
        (lambda samples, reference: 1.0, "(1) it does not rank"),
        # it meets requirements (1) to (4): only (5) catches it
        (marginal_difference, "Exercise 5: (5) it scores digits whose pixels were shuffled"),
        (per_pixel_wasserstein, "(5) it scores digits whose pixels were shuffled across"),
    ],
    ids=["dark share", "total variance", "NN distance", "constant", "marginals", "wasserstein"],
)
def test_exercise_5_rejects_trivial_measures_with_their_hint(run, printed, answer, hint):
    check, _ = run(5)
    out = printed(check, answer)
    assert "Exercise 5: correct" not in out and hint in out, out


def test_exercise_5_reports_a_raising_function(run, printed):
    check, _ = run(5)
    out = printed(check, lambda samples, reference: samples @ reference)
    assert out.startswith("Exercise 5: your function raised ValueError"), out
