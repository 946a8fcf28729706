"""The self-checks of notebook 04's exercises, run as a student would meet them.

Each starter cell (tagged ``exercise``) is executed from the notebook file in a namespace that holds
what the notebook defines before it (the digits, a fitted model ``gmm``, the models of the section on
eps, ...), rebuilt cheaply on a few thousand digits. Its check must say "not done yet" for the
untouched stub, "correct" for a right answer written differently from the solution cell, and must not
say "correct" for plausible wrong answers; where the check has a hint for a mistake, the test
asserts that hint.
"""

import numpy as np
import pytest
from conftest import ROOT, exercise_starters, requires_mnist, run_starters

import helpers

NOTEBOOK = ROOT / "notebooks" / "04_em_random_init.ipynb"
EPS = helpers.DEFAULT_EPS
K = 10

pytestmark = requires_mnist


@pytest.fixture(scope="module")
def base_namespace():
    """What the notebook has defined when the exercises start (only what the starters read)."""
    X, _ = helpers.load_mnist("train", root=ROOT / ".tmp")
    X_fit = X[:2000]
    # The notebook's gmm is fitted on all the digits and its sweep models on 5,000: smaller
    # fits of the same kinds are enough for the checks (a fitted model at eps = 1e-3, one at 1e-6).
    gmm = helpers.fit_gmm(X_fit, K, init="kmeans", max_iter=1, tol=0, rng=0)[0]
    small_eps = helpers.fit_gmm(X_fit, K, init="kmeans", eps=1e-6, max_iter=1, tol=0, rng=0)[0]
    eps_values = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    return {
        "np": np,
        "helpers": helpers,
        "SEED": 0,
        "X": X,
        "K": K,
        "eps": EPS,
        "gmm": gmm,
        "eps_values": eps_values,
        "sweep_models": {1e-6: small_eps},
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
    """check(N, *answer) -> what check_exercise_N prints for that answer."""

    def run_check(number, *answer):
        namespace = starters[number][0]
        capsys.readouterr()
        namespace[f"check_exercise_{number}"](*answer)
        return capsys.readouterr().out.strip()

    return run_check


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
def test_untouched_stub_is_not_done(starters, number):
    printed = starters[number][1]
    assert f"Exercise {number}: not done yet" in printed
    assert "correct" not in printed


def assert_correct(out, number):
    assert out.startswith(f"Exercise {number}: correct"), out


def assert_not_correct(out, number, hint=None):
    assert out.startswith(f"Exercise {number}:"), out
    assert "correct" not in out, out
    if hint is not None:
        assert hint in out, out


# --- Exercise 1: the E-step in log space ----------------------------------------------------


def joint_log_prob(X, gmm, eps, weights=None):
    """a_ik = log pi_k + log N(x_i | mu_k, Sigma_k), column by column."""
    weights = gmm.weights if weights is None else weights
    return np.stack(
        [
            np.log(w) + helpers.gaussian_logpdf(X, m, S, eps)
            for w, m, S in zip(weights, gmm.means, gmm.covariances)
        ],
        axis=1,
    )


def e_step_shifted_softmax(X, gmm, eps=EPS):
    """Correct, written differently: subtract the row maximum, then a plain softmax."""
    a = joint_log_prob(X, gmm, eps)
    m = a.max(axis=1, keepdims=True)
    e = np.exp(a - m)
    return e / e.sum(axis=1, keepdims=True), float(np.mean(m[:, 0] + np.log(e.sum(axis=1))))


def e_step_linear_ratio(X, gmm, eps=EPS):
    """Wrong: the textbook ratio exp(a) / sum exp(a), which overflows at a small eps."""
    dens = np.exp(joint_log_prob(X, gmm, eps))
    return dens / dens.sum(axis=1, keepdims=True), float(np.mean(np.log(dens.sum(axis=1))))


def e_step_no_weights(X, gmm, eps=EPS):
    """Wrong: log N without log pi_k."""
    a = joint_log_prob(X, gmm, eps, weights=np.ones(gmm.n_components))
    log_norm = helpers.logsumexp(a, axis=1)
    return np.exp(a - log_norm[:, None]), float(np.mean(log_norm))


def e_step_sum(X, gmm, eps=EPS):
    """Wrong: the total log-likelihood instead of the mean."""
    a = joint_log_prob(X, gmm, eps)
    log_norm = helpers.logsumexp(a, axis=1)
    return np.exp(a - log_norm[:, None]), float(np.sum(log_norm))


def e_step_default_eps(X, gmm, eps=EPS):
    """Wrong: ignores its eps and always clips at the default floor."""
    a = joint_log_prob(X, gmm, EPS)
    log_norm = helpers.logsumexp(a, axis=1)
    return np.exp(a - log_norm[:, None]), float(np.mean(log_norm))


def e_step_columns(X, gmm, eps=EPS):
    """Wrong: normalised over the digits (axis 0) instead of the components."""
    a = joint_log_prob(X, gmm, eps)
    log_norm = helpers.logsumexp(a, axis=0)
    return np.exp(a - log_norm[None, :]), float(np.mean(helpers.logsumexp(a, axis=1)))


def test_exercise_1_solution_and_alternative(check):
    assert_correct(check(1, e_step_shifted_softmax), 1)
    assert_correct(check(1, lambda X, gmm, eps=EPS: helpers.e_step(X, gmm, eps)), 1)


def test_exercise_1_linear_ratio_is_caught(check, starters):
    namespace = starters[1][0]
    model, eps_small = namespace["cases_1"][1]
    # the data of the check is where the linear form fails: a_ik far beyond np.exp's range
    assert helpers.gmm_log_prob(namespace["X_check"], model, eps_small).max() > 800
    assert_not_correct(check(1, e_step_linear_ratio), 1, hint="stay in log space")


@pytest.mark.parametrize(
    "answer, hint",
    [
        (e_step_no_weights, "ignores the weights"),
        (e_step_sum, "sum over the digits"),
        (e_step_default_eps, "ignores its argument eps"),
        (e_step_columns, "do not sum to 1"),
    ],
)
def test_exercise_1_wrong_answers(check, answer, hint):
    assert_not_correct(check(1, answer), 1, hint=hint)


def test_exercise_1_wrong_return(check):
    assert_not_correct(
        check(1, lambda X, gmm, eps=EPS: helpers.e_step(X, gmm, eps)[0]), 1, hint="return a pair"
    )


# --- Exercise 2: the clipped variance --------------------------------------------------------


def test_exercise_2(check):
    assert_correct(check(2, lambda lam, eps: float(np.clip(lam, eps, None))), 2)
    assert_correct(check(2, lambda lam, eps: lam if lam > eps else eps), 2)
    assert_not_correct(check(2, lambda lam, eps: lam), 2, hint="constraint sigma >= eps is missing")
    assert_not_correct(check(2, lambda lam, eps: lam + eps), 2, hint="lambda + eps")
    assert_not_correct(check(2, lambda lam, eps: min(lam, eps) if lam > 0 else eps), 2)


# --- Exercise 3: the M-step with clipping ---------------------------------------------------


def scatter_matrices(X, resp, denominator_shift=0.0):
    """(weights, means, S_k) with S_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T / (N_k - shift)."""
    N_k = resp.sum(axis=0)
    means = (resp.T @ X) / N_k[:, None]
    S = np.array([(r[:, None] * (X - m)).T @ (X - m) for r, m in zip(resp.T, means)])
    return N_k / len(X), means, S / (N_k - denominator_shift)[:, None, None]


def m_step_clipped_einsum(X, resp, eps=EPS):
    """Correct, written differently: clipping through helpers.clipped_covariance."""
    weights, means, S = scatter_matrices(X, resp)
    return weights, means, np.array([helpers.clipped_covariance(s, eps) for s in S])


def clip(S, eps):
    lam, U = np.linalg.eigh(S)
    return (U * np.maximum(lam, eps)) @ U.T


def test_exercise_3_alternative(check):
    assert_correct(check(3, m_step_clipped_einsum), 3)


def test_exercise_3_wrong_answers(check):
    def add_eps(X, resp, eps=EPS):
        weights, means, S = scatter_matrices(X, resp)
        return weights, means, S + eps * np.eye(X.shape[1])

    def no_clip(X, resp, eps=EPS):
        return scatter_matrices(X, resp)

    def counts_as_weights(X, resp, eps=EPS):
        weights, means, S = scatter_matrices(X, resp)
        return weights * len(X), means, np.array([clip(s, eps) for s in S])

    def unbiased(X, resp, eps=EPS):
        weights, means, S = scatter_matrices(X, resp, denominator_shift=1.0)
        return weights, means, np.array([clip(s, eps) for s in S])

    def unweighted_means(X, resp, eps=EPS):
        weights, means, S = scatter_matrices(X, resp)
        return (
            weights,
            np.broadcast_to(X.mean(axis=0), means.shape),
            np.array([clip(s, eps) for s in S]),
        )

    assert_not_correct(check(3, add_eps), 3, hint="you added eps I")
    assert_not_correct(check(3, no_clip), 3, hint="clip the eigenvalues at eps")
    assert_not_correct(check(3, counts_as_weights), 3, hint="the weights sum to n")
    assert_not_correct(check(3, unbiased), 3, hint="the covariances differ")
    assert_not_correct(check(3, unweighted_means), 3, hint="the means differ")


# --- Exercise 4: the gain of two decades of eps ---------------------------------------------


def test_exercise_4(check, starters):
    at_floor = starters[4][0]["at_floor"]
    assert_correct(check(4, 0.5 * np.log(1e-3 / 1e-5) * at_floor), 4)
    assert_not_correct(check(4, 0.5 * np.log(10) * at_floor), 4, hint="two decades, not one")
    assert_not_correct(check(4, np.log10(100) / 2 * at_floor), 4, hint="natural log")
    assert_not_correct(check(4, -np.log(10) * at_floor), 4, hint="does not go down")
    assert_not_correct(check(4, 2 * np.log(10) * at_floor), 4, hint="too large")


# --- Exercise 5: BIC ------------------------------------------------------------------------


def bic_right(mean_loglik, n, K, d):
    """Correct, counted differently: K full Gaussians plus K weights, minus the sum-to-one."""
    p = K * (1 + d + d * (d + 1) / 2) - 1
    return -2.0 * n * mean_loglik + p * np.log(n)


def choices(namespace, bic):
    """(best_K, price) as a student would compute them with that bic."""
    loglik, n = namespace["loglik_bic"], len(namespace["X_bic"])
    best = min(loglik, key=lambda k: bic(loglik[k], n, k, 256))
    price = (bic(0.0, n, 2, 256) - bic(0.0, n, 1, 256)) / (2 * n)
    return best, price


def test_exercise_5_alternative(check, starters):
    namespace = starters[5][0]
    best, price = choices(namespace, bic_right)
    assert_correct(check(5, bic_right, best, price), 5)
    assert_not_correct(
        check(5, bic_right, None, None), 5, hint="not done yet (set best_K and price)"
    )


@pytest.mark.parametrize(
    "bic, hint",
    [
        (lambda ll, n, K, d: -2 * n * ll + (K - 1 + K * d + K * d * d) * np.log(n), "symmetric"),
        (lambda ll, n, K, d: -2 * n * ll + (K + K * d + K * d * (d + 1) / 2) * np.log(n), "K - 1"),
        (
            lambda ll, n, K, d: -2 * n * ll + (K - 1 + K * d + K * d * (d + 1) / 2) * np.log10(n),
            "natural log",
        ),
        (
            lambda ll, n, K, d: -2 * ll + (K - 1 + K * d + K * d * (d + 1) / 2) * np.log(n),
            "total log-likelihood",
        ),
        (
            lambda ll, n, K, d: 2 * n * ll + (K - 1 + K * d + K * d * (d + 1) / 2) * np.log(n),
            "wrong sign",
        ),
    ],
)
def test_exercise_5_wrong_bic(check, starters, bic, hint):
    best, price = choices(starters[5][0], bic_right)
    assert_not_correct(check(5, bic, best, price), 5, hint=hint)


def test_exercise_5_wrong_choices(check, starters):
    namespace = starters[5][0]
    best, price = choices(namespace, bic_right)
    largest_likelihood = max(namespace["loglik_bic"], key=namespace["loglik_bic"].get)
    assert largest_likelihood != best
    assert_not_correct(check(5, bic_right, largest_likelihood, price), 5, hint="lowest BIC")
    assert_not_correct(check(5, bic_right, best, 2 * price), 5, hint="twice too large")
    assert_not_correct(check(5, bic_right, best, price / 2000), 5, hint="price")
