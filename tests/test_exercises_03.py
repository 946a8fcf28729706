"""The self-checks of notebook 03's exercises, run as a student would meet them.

Each starter cell (tagged ``exercise``) is executed from the notebook file in a namespace that holds
what the notebook defines before it (the digits, the naive GMM of all training digits, the
validation split and its naive GMM, SEED). Its check must say "not done yet" for the untouched
stub, "correct" for a right answer written differently from the solution cell, and must not say
"correct" for plausible wrong answers; where the check has a hint for a mistake, the test asserts
that hint.
"""

import types

import numpy as np
import pytest
from conftest import ROOT, exercise_starters, requires_mnist

import helpers

NOTEBOOK = ROOT / "notebooks" / "03_naive_gmm.ipynb"

pytestmark = requires_mnist


@pytest.fixture(scope="module")
def base_namespace():
    """What the notebook has defined when the exercises start (only what the checks read)."""
    X, y = helpers.load_mnist("train", root=ROOT / ".tmp")
    X_test, y_test = helpers.load_mnist("test", root=ROOT / ".tmp")
    n_val = len(X) // 6  # the notebook's validation split: the last sixth of the training digits
    X_fit, y_fit, X_val, y_val = X[:-n_val], y[:-n_val], X[-n_val:], y[-n_val:]
    return {
        "np": np,
        "helpers": helpers,
        "SEED": 0,
        "X": X,
        "y": y,
        "X_test": X_test,
        "y_test": y_test,
        "naive": helpers.naive_gmm(X, y),
        "X_fit": X_fit,
        "y_fit": y_fit,
        "X_val": X_val,
        "y_val": y_val,
        "naive_fit": helpers.naive_gmm(X_fit, y_fit),
    }


@pytest.fixture(scope="module")
def sources():
    """{exercise number: source} of the code cells tagged ``exercise``: exercises 1 to 5."""
    return exercise_starters(NOTEBOOK, expected=[1, 2, 3, 4, 5])


@pytest.fixture
def run(base_namespace, sources, capsys, experiment_cache):
    """run(N) -> (check function, what the untouched starter cell printed)."""

    def run_starter(number):
        namespace = dict(base_namespace)
        capsys.readouterr()
        exec(compile(sources[number], f"<exercise {number}>", "exec"), namespace)
        if number == 3:  # the same experiment for every answer: run it once per module
            experiment_cache.install(namespace)
        return namespace[f"check_exercise_{number}"], capsys.readouterr().out

    return run_starter


class ExperimentCache:
    """Memoises exercise 3's experiment (its accuracies depend only on eps), so that each answer
    is checked against the same numbers without refitting: the check's code runs unchanged."""

    def __init__(self):
        self.small, self.full = {}, {}

    def install(self, namespace):
        small_sample_accuracy = namespace["small_sample_accuracy"]
        gmm_predict = helpers.gmm_predict

        def cached_small(n_per_class, eps):
            key = (n_per_class, eps)
            if key not in self.small:
                self.small[key] = small_sample_accuracy(n_per_class, eps)
            return self.small[key]

        def cached_predict(X, gmm, eps=helpers.DEFAULT_EPS):
            key = (X.shape, X.__array_interface__["data"][0], id(gmm), eps)
            if key not in self.full:
                self.full[key] = gmm_predict(X, gmm, eps=eps)
            return self.full[key]

        namespace["small_sample_accuracy"] = cached_small
        namespace["helpers"] = types.SimpleNamespace(**vars(helpers))
        namespace["helpers"].gmm_predict = cached_predict


@pytest.fixture(scope="module")
def experiment_cache():
    return ExperimentCache()


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
def test_untouched_stub_is_not_done_yet(run, number):
    _, out = run(number)
    assert out.startswith(f"Exercise {number}: not done yet"), out


def raise_type_error(*args):
    raise TypeError("something went wrong")


@pytest.mark.parametrize("number", [1, 2, 4, 5])
def test_a_raising_function_is_reported_not_raised(run, printed, number):
    check, _ = run(number)
    out = printed(check, raise_type_error)
    assert out == f"Exercise {number}: your function raised TypeError: something went wrong\n", out


def test_starters_do_not_point_at_a_solution(sources):
    """The student edition has no solution cells: no starter may refer to one."""
    for number, text in sources.items():
        assert "solution" not in text.lower(), f"exercise {number} mentions a solution"


# ----------------------------------------------------------------------------- exercise 1
def naive_by_gaussian_mle(X, y):
    """Right, another way: notebook 2's estimator on each class."""
    classes = np.unique(y)
    fits = [helpers.gaussian_mle(X[y == c]) for c in classes]
    weights = np.array([np.mean(y == c) for c in classes])
    return weights, np.array([m for m, _ in fits]), np.array([S for _, S in fits])


def naive_by_np_cov(X, y):
    """Right, a third way: np.cov (n - 1 by default) and np.bincount."""
    classes = np.unique(y)
    weights = np.bincount(y)[classes] / len(y)
    means = np.array([X[y == c].mean(axis=0) for c in classes])
    covs = np.array([np.cov(X[y == c], rowvar=False) for c in classes])
    return weights, means, covs


@pytest.mark.parametrize("func", [naive_by_gaussian_mle, naive_by_np_cov])
def test_exercise_1_right_answers(run, printed, func):
    check, _ = run(1)
    assert printed(check, func).startswith("Exercise 1: correct")


def with_bias(X, y):
    w, m, _ = naive_by_np_cov(X, y)
    return w, m, np.array([np.cov(X[y == c], rowvar=False, bias=True) for c in np.unique(y)])


@pytest.mark.parametrize(
    "func, hint",
    [
        (lambda X, y: (np.full(10, 0.1),) + naive_by_np_cov(X, y)[1:], "all 1/C"),
        (lambda X, y: (np.bincount(y).astype(float),) + naive_by_np_cov(X, y)[1:], "sum to"),
        (with_bias, "divide by n_c; the practical divides by n_c - 1"),
        (
            lambda X, y: naive_by_np_cov(X, y)[:2] + (np.cov(X, rowvar=False)[None].repeat(10, 0),),
            "the covariances differ",
        ),
        (
            lambda X, y: (
                naive_by_np_cov(X, y)[0],
                np.tile(X.mean(0), (10, 1)),
                naive_by_np_cov(X, y)[2],
            ),
            "the means differ",
        ),
        (lambda X, y: naive_by_np_cov(X, y)[:2], "return three arrays"),
        (lambda X, y: (np.bincount(y) / len(y), "means", "covariances"), "not arrays of numbers"),
    ],
    ids=[
        "equal weights",
        "counts",
        "divided by n_c",
        "pooled covariance",
        "global mean",
        "pair",
        "strings",
    ],
)
def test_exercise_1_wrong_answers(run, printed, func, hint):
    check, _ = run(1)
    out = printed(check, func)
    assert "correct" not in out and hint in out, out


# ----------------------------------------------------------------------------- exercise 2
def draw_components(gmm, n, rng):
    return rng.choice(gmm.n_components, size=n, p=gmm.weights)


def sampler(factor):
    """A sampler that draws x = mu_k + z @ factor(Sigma_k) for the samples of component k."""

    def sample(gmm, n, rng):
        components = draw_components(gmm, n, rng)
        samples = np.empty((n, gmm.n_features))
        for k in range(gmm.n_components):
            rows = components == k
            z = rng.standard_normal((rows.sum(), gmm.n_features))
            samples[rows] = gmm.means[k] + z @ factor(gmm.covariances[k])
        return samples, components

    return sample


def eigen_factor(cov):
    """A^T with A = U sqrt(lam), A A^T = the clipped covariance: x = mu + z A^T (right side)."""
    lam, U = helpers.clipped_eigh(cov)
    return (U * np.sqrt(lam)).T


def numpy_multivariate_normal(gmm, n, rng):
    """Right, with numpy's sampler for each component (it factors Sigma by an SVD)."""
    components = draw_components(gmm, n, rng)
    samples = np.empty((n, gmm.n_features))
    for k in range(gmm.n_components):
        rows = components == k
        samples[rows] = rng.multivariate_normal(gmm.means[k], gmm.covariances[k], rows.sum())
    return samples, components


@pytest.mark.parametrize(
    "func", [sampler(eigen_factor), numpy_multivariate_normal], ids=["eigen factor", "numpy"]
)
def test_exercise_2_right_answers(run, printed, func):
    check, _ = run(2)
    assert printed(check, func) == "Exercise 2: correct.\n"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exercise_2_right_answer_for_other_seeds(run, printed, base_namespace, seed):
    """The covariance tolerance holds for a changed SEED, not just for the notebook's."""
    check, _ = run(2)
    check.__globals__["SEED"] = seed
    assert printed(check, sampler(eigen_factor)) == "Exercise 2: correct.\n"


def pixel_std_factor(cov):
    """Wrong: each pixel sampled on its own with its variance (all correlations dropped)."""
    return np.diag(np.sqrt(np.diag(cov)))


def wrong_side_factor(cov):
    """Wrong: x = mu + z @ (U sqrt(lam)), the factor on the wrong side (covariance diag(lam))."""
    lam, U = helpers.clipped_eigh(cov)
    return U * np.sqrt(lam)


def uniform_components(gmm, n, rng):
    samples, _ = sampler(eigen_factor)(gmm, n, rng)
    components = rng.integers(0, gmm.n_components, n)
    for k in range(gmm.n_components):
        rows = components == k
        samples[rows] = helpers.sample_gaussian(gmm.means[k], gmm.covariances[k], rows.sum(), rng)
    return samples, components


def shuffled_labels(gmm, n, rng):
    samples, components = sampler(eigen_factor)(gmm, n, rng)
    return samples, rng.permutation(components)


@pytest.mark.parametrize(
    "func, hint",
    [
        (sampler(pixel_std_factor), "nearly uncorrelated"),
        (sampler(wrong_side_factor), "nearly uncorrelated"),
        # z @ Sigma has covariance Sigma^2, whose trace happens to be near trace(Sigma) here:
        # only the covariance comparison catches it
        (sampler(lambda cov: helpers.clipped_covariance(cov)), "away from Sigma_k"),
        (sampler(lambda cov: 2 * eigen_factor(cov)), "mean squared distance"),
        (uniform_components, "drawn uniformly"),
        (shuffled_labels, "do not average to mean"),
        (lambda gmm, n, rng: sampler(eigen_factor)(gmm, n, rng)[0], "return a pair"),
        (lambda gmm, n, rng: (1, 2, 3), "return a pair"),
    ],
    ids=[
        "pixel std",
        "wrong side",
        "Sigma as factor",
        "twice the factor",
        "uniform",
        "shuffled",
        "samples only",
        "three things",
    ],
)
def test_exercise_2_wrong_answers(run, printed, func, hint):
    check, _ = run(2)
    out = printed(check, func)
    assert "correct" not in out and hint in out, out


def test_exercise_2_trace_alone_would_be_fooled(base_namespace):
    """The dropped-correlation sampler has the right total variance: only the covariance tells."""
    naive = base_namespace["naive"]
    gmm = helpers.GMM([1.0], naive.means[[0]], naive.covariances[[0]])
    samples, _ = sampler(pixel_std_factor)(gmm, 3000, np.random.default_rng(0))
    spread = np.mean(np.sum((samples - gmm.means[0]) ** 2, axis=1))
    assert abs(spread / np.trace(helpers.clipped_covariance(gmm.covariances[0])) - 1) < 0.1


# ----------------------------------------------------------------------------- exercise 3
def test_exercise_3_half_answered_is_not_done(run, printed):
    check, _ = run(3)
    assert printed(check, 90, None).startswith("Exercise 3: not done yet")


@pytest.mark.parametrize("answer", [(85, True), (np.float64(93.5), np.True_)])
def test_exercise_3_right_answers(run, printed, answer):
    check, _ = run(3)
    out = printed(check, *answer)
    assert "Exercise 3: correct." in out, out


@pytest.mark.parametrize(
    "answer, hint",
    [
        ((90, False), "not what happens: eps = 0.01 does better"),
        ((0.9, True), "looks like a fraction"),
        (("90%", True), "must be a number"),
        ((90, "yes"), "must be True or False"),
        ((190, True), "between 0 and 100"),
    ],
    ids=["eps does not help", "fraction", "string", "not a bool", "over 100"],
)
def test_exercise_3_wrong_answers(run, printed, answer, hint):
    check, _ = run(3)
    out = printed(check, *answer)
    assert "correct" not in out and hint in out, out


# ----------------------------------------------------------------------------- exercise 4
def diagonal_by_mask(gmm):
    """Right, another way: zero everything off the diagonal with an identity mask."""
    return helpers.GMM(gmm.weights, gmm.means, gmm.covariances * np.eye(gmm.n_features))


def diagonal_by_einsum(gmm):
    """Right, a third way: the diagonals by einsum, then diagonal matrices by broadcasting."""
    variances = np.einsum("cii->ci", gmm.covariances)
    return helpers.GMM(gmm.weights, gmm.means, variances[:, :, None] * np.eye(gmm.n_features))


@pytest.mark.parametrize("func", [diagonal_by_mask, diagonal_by_einsum])
def test_exercise_4_right_answers(run, printed, func):
    check, _ = run(4)
    assert printed(check, func).startswith("Exercise 4: correct.")


@pytest.mark.parametrize(
    "func, hint",
    [
        (lambda gmm: gmm, "non-zero entries off the diagonal"),
        (
            lambda gmm: helpers.GMM(gmm.weights, gmm.means, np.repeat(np.eye(256)[None], 10, 0)),
            "must be the pixel variances",
        ),
        (
            lambda gmm: helpers.GMM(
                gmm.weights, gmm.means, np.sqrt(diagonal_by_mask(gmm).covariances)
            ),
            "must be the pixel variances",
        ),
        (
            lambda gmm: helpers.GMM(np.full(10, 0.1), gmm.means, diagonal_by_mask(gmm).covariances),
            "keep the weights and the means",
        ),
        (
            lambda gmm: (gmm.weights, gmm.means, diagonal_by_mask(gmm).covariances),
            "return a helpers.GMM",
        ),
    ],
    ids=["unchanged", "identity", "standard deviations", "equal weights", "a tuple"],
)
def test_exercise_4_wrong_answers(run, printed, func, hint):
    check, _ = run(4)
    out = printed(check, func)
    assert "correct" not in out and hint in out, out


# ----------------------------------------------------------------------------- exercise 5
def log_joint(X_new, gmm, eps, prior=np.log):
    return np.column_stack(
        [
            prior(gmm.weights[c])
            + helpers.gaussian_logpdf(X_new, gmm.means[c], gmm.covariances[c], eps=eps)
            for c in range(gmm.n_components)
        ]
    )


def test_exercise_5_right_answers(run, printed):
    check, _ = run(5)
    assert printed(check, helpers.gmm_predict) == "Exercise 5: correct.\n"
    assert (
        printed(check, lambda X_new, gmm, eps: np.argmax(log_joint(X_new, gmm, eps), axis=1))
        == "Exercise 5: correct.\n"
    )


def mahalanobis_only(X_new, gmm, eps):
    """Wrong: the log-determinant left out (only the prior and the Mahalanobis term)."""
    d = X_new.shape[1]
    log_dets = [np.sum(np.log(helpers.clipped_eigh(c, eps)[0])) for c in gmm.covariances]
    joint = log_joint(X_new, gmm, eps) + 0.5 * (np.array(log_dets) + d * np.log(2 * np.pi))
    return np.argmax(joint, axis=1)


@pytest.mark.parametrize(
    "func, hint",
    [
        (lambda X_new, gmm, eps: np.argmin(log_joint(X_new, gmm, eps), axis=1), "argmin"),
        (
            lambda X_new, gmm, eps: np.argmax(log_joint(X_new, gmm, eps, lambda w: 0), axis=1),
            "the prior is missing",
        ),
        (
            lambda X_new, gmm, eps: np.argmax(log_joint(X_new, gmm, eps, lambda w: w), axis=1),
            "the prior is missing",
        ),
        (
            lambda X_new, gmm, eps: np.argmax(log_joint(X_new, gmm, helpers.DEFAULT_EPS), axis=1),
            "pass eps on to gaussian_logpdf",
        ),
        (mahalanobis_only, "of the labels agree"),
        (lambda X_new, gmm, eps: log_joint(X_new, gmm, eps), "one label per row"),
    ],
    ids=["argmin", "no prior", "pi not log pi", "eps ignored", "no log-determinant", "scores"],
)
def test_exercise_5_wrong_answers(run, printed, func, hint):
    check, _ = run(5)
    out = printed(check, func)
    assert "correct" not in out and hint in out, out
