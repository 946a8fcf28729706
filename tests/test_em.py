"""Section 6 of helpers.py: m_step, the loop fit_gmm, its initialisations, em_lower_bound.

Against scikit-learn's GaussianMixture and the textbook M-step; the history never
decreases; degenerate data ends in finite parameters or a clear error; the bound F of EM
against its definition.  (Bad input is in test_validation.py.)
"""

import warnings

import numpy as np
import pytest
from conftest import data_and_k, make_blobs, requires_mnist, with_float32_warning
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp as scipy_logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

import helpers

# max_examples comes from the profile loaded in conftest.py (200 by default).
SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])


def precision_from_cov(cov):
    lam, U = np.linalg.eigh(cov)
    return (U / lam) @ U.T  # U diag(1/lam) U^T, the practical's formula


def sklearn_from(X, start, n_iter):
    gm = GaussianMixture(
        start.n_components,
        covariance_type="full",
        reg_covar=0.0,
        tol=0.0,
        max_iter=n_iter,
        weights_init=start.weights,
        means_init=start.means,
        precisions_init=np.stack([precision_from_cov(c) for c in start.covariances]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gm.fit(X)


def textbook_m_step(X, resp, eps):
    n = len(X)
    nk = resp.sum(0)
    means = (resp.T @ X) / nk[:, None]
    covs = []
    for k in range(resp.shape[1]):
        diff = X - means[k]
        S = (resp[:, k, None] * diff).T @ diff / nk[k]
        lam, U = np.linalg.eigh(S)
        covs.append(U @ np.diag(np.maximum(lam, eps)) @ U.T)
    return nk / n, means, np.stack(covs)


def assert_finite_fit(gmm, history, eps=helpers.DEFAULT_EPS):
    for part in gmm:
        assert np.isfinite(part).all()
    assert np.isfinite(history).all()
    np.testing.assert_allclose(gmm.weights.sum(), 1.0)
    lam = np.linalg.eigvalsh(gmm.covariances)
    assert lam.min() >= eps * (1 - 1e-9)


# --- the M-step ---------------------------------------------------------------------------


def test_m_step_matches_textbook_and_mutates_nothing(rng):
    X, _, _ = make_blobs(rng, n_per=(100, 120, 80), d=5)
    X[:, 0] = 0.5  # a constant feature: clipped at eps
    resp = rng.dirichlet(np.ones(3), size=len(X))
    X_before, resp_before = X.copy(), resp.copy()
    gmm = helpers.m_step(X, resp, eps=1e-2)
    weights, means, covs = textbook_m_step(X, resp, 1e-2)
    np.testing.assert_allclose(gmm.weights, weights, rtol=1e-12)
    np.testing.assert_allclose(gmm.means, means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gmm.covariances, covs, rtol=1e-9, atol=1e-12)
    assert np.array_equal(X, X_before) and np.array_equal(resp, resp_before)
    assert np.linalg.eigvalsh(gmm.covariances).min() >= 1e-2 * (1 - 1e-9)


def test_m_step_keeps_a_component_without_data_from_previous(rng):
    X, _, _ = make_blobs(rng, n_per=(50, 50), d=3)
    resp = np.zeros((len(X), 3))
    resp[:, :2] = rng.dirichlet(np.ones(2), size=len(X))
    previous = helpers.GMM(np.full(3, 1 / 3), rng.normal(size=(3, 3)), np.stack([np.eye(3)] * 3))
    gmm = helpers.m_step(X, resp, previous=previous)
    assert gmm.weights[2] == 0.0
    np.testing.assert_allclose(gmm.means[2], previous.means[2])
    np.testing.assert_allclose(gmm.covariances[2], previous.covariances[2], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="previous="):
        helpers.m_step(X, resp)


def test_loop_of_steps_reproduces_fit_gmm(rng):
    X, _, _ = make_blobs(rng, n_per=(150, 150, 150), d=4, spread=2.0)
    start, _ = helpers.fit_gmm(X, 3, init="random", max_iter=0, rng=2)
    gmm, history = helpers.fit_gmm(X, 3, init=start, max_iter=8, tol=0)
    mine, model = [], start
    for _ in range(9):
        resp, loglik = helpers.e_step(X, model)
        mine.append(loglik)
        model = helpers.m_step(X, resp, previous=model)
    np.testing.assert_allclose(mine, history, rtol=1e-10)


# --- fit_gmm against scikit-learn -----------------------------------------------------------


@pytest.mark.parametrize("n_iter", [1, 5, 30])
def test_matches_sklearn_from_same_start(rng, n_iter):
    X, _, _ = make_blobs(rng, n_per=(200, 150, 250), d=4, spread=2.0)
    start = helpers._init_gmm(X, 3, "random", np.random.default_rng(0))
    gmm, history = helpers.fit_gmm(X, 3, init=start, eps=1e-12, max_iter=n_iter, tol=0)
    ref = sklearn_from(X, start, n_iter)
    np.testing.assert_allclose(gmm.weights, ref.weights_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(gmm.means, ref.means_, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(gmm.covariances, ref.covariances_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(history[-1], ref.score(X), rtol=1e-9)
    np.testing.assert_allclose(helpers.gmm_loglik(X, gmm, eps=1e-12), ref.score(X), rtol=1e-9)


@requires_mnist
def test_matches_sklearn_on_mnist_float64_and_float32(mnist_train):
    # Real digits; sklearn fails on singular covariances (pixels that never change),
    # so both fit the pixels that vary most, where no eigenvalue needs clipping.
    X = mnist_train[0][:6000]
    X = X[:, X.std(axis=0) > 0.3]
    start = helpers._init_gmm(X, 4, "kmeans", np.random.default_rng(1))
    assert np.linalg.eigvalsh(start.covariances).min() > 1e-6
    ref = sklearn_from(X, start, 5)
    gmm, history = helpers.fit_gmm(X, 4, init=start, eps=1e-12, max_iter=5, tol=0)
    np.testing.assert_allclose(gmm.means, ref.means_, atol=1e-7)
    np.testing.assert_allclose(gmm.weights, ref.weights_, atol=1e-9)
    np.testing.assert_allclose(history[-1], ref.score(X), rtol=1e-8)
    gmm32, history32 = helpers.fit_gmm(
        X, 4, init=start, eps=1e-12, max_iter=5, tol=0, dtype=np.float32
    )
    np.testing.assert_allclose(history32[-1], ref.score(X), rtol=1e-4)


# --- the history --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("init", ["random", "kmeans"])
def test_history_never_decreases(rng, dtype, init):
    X, _, _ = make_blobs(rng, n_per=(150, 150, 150, 150), d=6, spread=1.5)
    X[:, -1] = 0.25  # a constant feature: its variance is clipped at eps
    gmm, history = helpers.fit_gmm(
        X, 5, init=init, eps=1e-3, max_iter=40, tol=0, rng=0, dtype=dtype
    )
    assert len(history) == 41
    slack = 1e-10 if dtype == np.float64 else 1e-5
    assert np.all(np.diff(history) >= -slack * np.abs(history).max())
    assert history[-1] > history[0]


@requires_mnist
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_history_never_decreases_on_mnist(mnist_train, dtype):
    X = mnist_train[0][:3000]
    _, history = helpers.fit_gmm(X, 5, init="random", max_iter=15, tol=0, rng=0, dtype=dtype)
    assert len(history) == 16
    slack = 1e-10 if dtype == np.float64 else 1e-5
    assert np.all(np.diff(history) >= -slack * np.abs(history).max())


def test_tol_zero_runs_exactly_max_iter(blobs):
    X, _, _ = blobs
    for m in (0, 1, 7):
        _, history = helpers.fit_gmm(X, 3, init="kmeans", max_iter=m, tol=0, rng=0)
        assert len(history) == m + 1


def test_tol_stops_when_improvement_is_small(blobs):
    X, _, _ = blobs
    _, history = helpers.fit_gmm(X, 3, init="kmeans", max_iter=200, tol=1e-3, rng=0)
    assert len(history) < 201
    assert history[-1] - history[-2] < 1e-3
    assert np.all(np.diff(history)[:-1] >= 1e-3)
    # the same iterations as without tol, stopped at the first small improvement
    _, full = helpers.fit_gmm(X, 3, init="kmeans", max_iter=len(history) + 1, tol=0, rng=0)
    np.testing.assert_allclose(history, full[: len(history)], rtol=1e-12)


def test_history_is_loglik_of_returned_model(blobs):
    X, _, _ = blobs
    gmm, history = helpers.fit_gmm(X, 3, init="random", max_iter=10, tol=0, rng=1)
    np.testing.assert_allclose(history[-1], helpers.gmm_loglik(X, gmm), rtol=1e-12)
    start = helpers._init_gmm(X, 3, "random", np.random.default_rng(1))
    np.testing.assert_allclose(history[0], helpers.gmm_loglik(X, start), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:eps=.*exceeds the average variance")  # tiny-n draws
@SETTINGS
@given(data_and_k())
def test_em_invariants(case):
    X, k, scale, seed = case
    eps = 1e-3 * scale**2
    gmm, history = helpers.fit_gmm(X, k, init="random", eps=eps, max_iter=8, tol=0, rng=seed)
    # weights sum to 1, covariances symmetric with eigenvalues >= eps
    np.testing.assert_allclose(gmm.weights.sum(), 1.0, rtol=1e-12)
    assert (gmm.weights >= 0).all()
    np.testing.assert_allclose(
        gmm.covariances, np.swapaxes(gmm.covariances, 1, 2), rtol=0, atol=1e-12 * scale**2
    )
    assert np.linalg.eigvalsh(gmm.covariances).min() >= eps * (1 - 1e-8)
    # the history never decreases (up to round-off)
    assert len(history) == 9
    assert np.all(np.diff(history) >= -1e-9 * (1 + np.abs(history).max()))
    # responsibilities are finite and sum to 1
    resp = helpers.gmm_responsibilities(X, gmm, eps=eps)
    assert np.isfinite(resp).all() and (resp >= 0).all()
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)


# --- initialisations ----------------------------------------------------------------------


def test_kmeans_init_is_cluster_statistics(blobs):
    X, _, _ = blobs
    _, labels, _ = helpers.kmeans(X, 3, rng=4)
    gmm, history = helpers.fit_gmm(X, 3, init="kmeans", max_iter=0, tol=0, rng=4)
    for k in range(3):
        members = X[labels == k]
        np.testing.assert_allclose(gmm.weights[k], len(members) / len(X))
        np.testing.assert_allclose(gmm.means[k], members.mean(axis=0), rtol=1e-10)
        lam, U = np.linalg.eigh(np.cov(members, rowvar=False))
        clipped = (U * np.maximum(lam, helpers.DEFAULT_EPS)) @ U.T
        np.testing.assert_allclose(gmm.covariances[k], clipped, rtol=1e-8, atol=1e-12)


def test_random_init_definition(blobs):
    X, _, _ = blobs
    start = helpers._init_gmm(X, 3, "random", np.random.default_rng(9))
    idx = np.random.default_rng(9).choice(len(X), size=3, replace=False)
    np.testing.assert_allclose(start.means, X[idx])
    np.testing.assert_allclose(start.weights, 1 / 3)
    for c in start.covariances:
        np.testing.assert_allclose(c, np.cov(X, rowvar=False), rtol=1e-10)


def test_init_from_gmm_and_determinism(blobs):
    X, _, _ = blobs
    a, ha = helpers.fit_gmm(X, 3, init="kmeans", rng=np.random.default_rng(2), max_iter=5, tol=0)
    b, hb = helpers.fit_gmm(X, 3, init="kmeans", rng=2, max_iter=5, tol=0)
    assert np.array_equal(ha, hb)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    _, hc = helpers.fit_gmm(X, 3, init=a, max_iter=3, tol=0)
    assert hc[0] == pytest.approx(ha[-1], rel=1e-12)


def test_initial_covariances_are_clipped_too(blobs):
    X, _, _ = blobs
    X[:, 0] = 1.0
    gmm, _ = helpers.fit_gmm(X, 2, init="random", eps=0.05, max_iter=0, tol=0, rng=0)
    assert np.linalg.eigvalsh(gmm.covariances).min() >= 0.05 * (1 - 1e-9)


def test_covariances_have_eigenvalues_at_least_eps(rng):
    X, _, _ = make_blobs(rng, n_per=(20, 20, 20), d=10)  # n_k = 20: rank-deficient-ish
    X[:, :3] = 0.0
    gmm, _ = helpers.fit_gmm(X, 3, init="kmeans", eps=0.01, max_iter=10, tol=0, rng=0)
    lam = np.linalg.eigvalsh(gmm.covariances)
    assert lam.min() >= 0.01 * (1 - 1e-9)
    np.testing.assert_allclose(gmm.covariances, np.swapaxes(gmm.covariances, 1, 2), atol=1e-14)
    np.testing.assert_allclose(gmm.weights.sum(), 1.0)


# --- precision ----------------------------------------------------------------------------


def test_float32_close_to_float64(rng):
    X, _, _ = make_blobs(rng, n_per=(300, 300, 300), d=8, spread=2.0)
    start = helpers._init_gmm(X, 3, "random", np.random.default_rng(3))
    g64, h64 = helpers.fit_gmm(X, 3, init=start, max_iter=20, tol=0)
    g32, h32 = helpers.fit_gmm(X, 3, init=start, max_iter=20, tol=0, dtype=np.float32)
    np.testing.assert_allclose(h32, h64, rtol=1e-5)
    np.testing.assert_allclose(g32.means, g64.means, atol=1e-4)
    assert g32.means.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_input(dtype):
    rng = np.random.default_rng(5)
    X = rng.random((200, 5)).astype(np.float32)
    gmm, history = helpers.fit_gmm(X, 2, max_iter=10, rng=0, dtype=dtype)
    assert_finite_fit(gmm, history)
    assert gmm.means.dtype == np.float64
    mean, cov = helpers.gaussian_mle(X)
    assert mean.dtype == np.float64
    np.testing.assert_allclose(cov, np.cov(X.astype(np.float64), rowvar=False), rtol=1e-10)


# --- degenerate data: finite parameters or a clear error ------------------------------------


def test_all_rows_identical():
    X = np.tile(np.array([0.2, 0.4, 0.0]), (50, 1))
    gmm, history = helpers.fit_gmm(X, 1, max_iter=5, rng=0)
    assert_finite_fit(gmm, history)
    np.testing.assert_allclose(gmm.means[0], X[0])
    # Random init: K equal components, all finite.
    gmm, history = helpers.fit_gmm(X, 3, init="random", max_iter=5, rng=0)
    assert_finite_fit(gmm, history)
    # k-means cannot find 3 clusters in 1 distinct point: a clear error.
    with pytest.raises(ValueError, match="only 1 distinct rows.*n_clusters <= 1"):
        helpers.fit_gmm(X, 3, init="kmeans", rng=0)
    mean, cov = helpers.gaussian_mle(X)
    np.testing.assert_allclose(cov, 0.0, atol=1e-30)  # zero up to the round-off of the mean
    # cov = 0 clipped at eps: every row sits at the mean of N(mean, eps I)
    expected = -0.5 * 3 * (np.log(2 * np.pi) + np.log(helpers.DEFAULT_EPS))
    np.testing.assert_allclose(helpers.gaussian_logpdf(X, mean, cov), expected, rtol=1e-12)


def test_fewer_distinct_points_than_k():
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 20, axis=0)
    with pytest.raises(ValueError, match="only 2 distinct rows"):
        helpers.fit_gmm(X, 3, init="kmeans", rng=0)
    gmm, history = helpers.fit_gmm(X, 3, init="random", max_iter=10, rng=0)
    assert_finite_fit(gmm, history)


def test_component_losing_all_responsibility_is_kept_and_warns():
    # Start one component far from all data: its responsibility underflows to 0.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)) * 0.1
    start = helpers.GMM(
        np.array([0.5, 0.5]),
        np.array([[0.0, 0.0], [1e3, 1e3]]),
        np.stack([np.eye(2) * 0.01] * 2),
    )
    with pytest.warns(RuntimeWarning, match=r"components \[1\] lost"):
        gmm, history = helpers.fit_gmm(X, 2, init=start, max_iter=5, tol=0)
    assert_finite_fit(gmm, history)
    # 1e3 away at variance 0.01: a log-density of about -1e8, exactly 0 after exp()
    assert gmm.weights[1] == 0.0 and gmm.weights[0] == 1.0
    np.testing.assert_allclose(gmm.means[1], [1e3, 1e3])  # kept, not NaN
    np.testing.assert_allclose(gmm.covariances[1], start.covariances[1], rtol=1e-12)
    assert np.all(np.diff(history) >= -1e-12)


def test_constant_features():
    rng = np.random.default_rng(1)
    X = rng.random((300, 6))
    X[:, [0, 3]] = 0.0
    gmm, history = helpers.fit_gmm(X, 3, max_iter=20, rng=0)
    assert_finite_fit(gmm, history)
    assert np.all(np.diff(history) >= -1e-10 * abs(history).max())


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_extreme_scales(scale):
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(400, 4)) + np.repeat(np.eye(4) * 5, 100, axis=0)) * scale
    eps = 1e-3 * scale**2  # eps relative to the variance: no warning
    gmm, history = helpers.fit_gmm(X, 4, eps=eps, max_iter=30, rng=0)
    assert_finite_fit(gmm, history, eps=eps)
    # The same fit as on unit-scale data, rescaled (EM is scale-equivariant).
    ref, ref_history = helpers.fit_gmm(X / scale, 4, eps=1e-3, max_iter=30, rng=0)
    np.testing.assert_allclose(gmm.means / scale, ref.means, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        history - X.shape[1] * np.log(1 / scale), ref_history, rtol=1e-8, atol=1e-6
    )


def test_tiny_scale_with_default_eps_warns_but_is_finite():
    X = np.random.default_rng(3).random((100, 3)) * 1e-6
    with pytest.warns(UserWarning, match="exceeds the average variance"):
        gmm, history = helpers.fit_gmm(X, 2, max_iter=5, rng=0)
    assert_finite_fit(gmm, history)


def test_data_scaled_by_255():
    rng = np.random.default_rng(4)
    X = rng.integers(0, 256, size=(300, 8)).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gmm, history = helpers.fit_gmm(X, 3, max_iter=10, rng=0)
    assert_finite_fit(gmm, history)


@pytest.mark.parametrize("n, d", [(16, 16), (8, 30)])
def test_n_equal_and_below_d(n, d):
    X = np.random.default_rng(7).random((n, d))
    mean, cov = helpers.gaussian_mle(X)
    assert np.linalg.matrix_rank(cov) < d  # singular
    logpdf = helpers.gaussian_logpdf(X, mean, cov)
    lam, U = np.linalg.eigh(cov)
    clipped = (U * np.maximum(lam, helpers.DEFAULT_EPS)) @ U.T
    np.testing.assert_allclose(
        logpdf, stats.multivariate_normal(mean, clipped).logpdf(X), rtol=1e-9
    )
    gmm, history = helpers.fit_gmm(X, 2, max_iter=10, rng=0)
    assert_finite_fit(gmm, history)
    X2, comp = helpers.sample_gmm(gmm, 10, rng=0)
    assert np.isfinite(X2).all()


def test_one_sample():
    X = np.array([[0.5, 0.5]])
    gmm, history = helpers.fit_gmm(X, 1, max_iter=3)
    assert_finite_fit(gmm, history)
    np.testing.assert_allclose(gmm.means[0], X[0])
    with pytest.raises(ValueError, match="at least 2 samples"):
        helpers.gaussian_mle(X)


def test_determinism_bit_identical():
    X = np.random.default_rng(9).random((500, 6))
    runs = [
        helpers.fit_gmm(X, 4, init=init, max_iter=10, tol=0, rng=42)
        for init in ("random", "random", "kmeans", "kmeans")
    ]
    for a, b in (runs[:2], runs[2:]):
        assert np.array_equal(a[1], b[1])
        for x, y in zip(a[0], b[0]):
            assert np.array_equal(x, y)
    c1 = helpers.kmeans(X, 4, rng=1)
    c2 = helpers.kmeans(X, 4, rng=1)
    assert all(np.array_equal(a, b) for a, b in zip(c1, c2))


# --- overflow and extreme inputs ------------------------------------------------------------


def test_fit_gmm_overflow_is_a_value_error(rng):
    X, _, _ = make_blobs(rng, d=3)
    with pytest.raises(ValueError, match="rescale"):
        helpers.fit_gmm(X * 1e200, 2, rng=0, max_iter=3)


@settings(max_examples=40)
@given(log_scale=st.floats(-150, 150), offset=st.floats(-1e8, 1e8), seed=st.integers(0, 2**16))
def test_finite_input_gives_finite_parameters(log_scale, offset, seed):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(40, 3)) + offset) * 10.0**log_scale  # offset in units of the spread
    mean, cov = helpers.gaussian_mle(X)
    assert np.isfinite(mean).all() and np.isfinite(cov).all()
    centres, labels, history = helpers.kmeans(X, 3, rng=0)
    assert np.isfinite(centres).all() and np.isfinite(history).all()
    assert np.all(np.diff(history) <= 1e-9 * history[0])
    eps = max(1e-3 * 10.0 ** (2 * log_scale), 1e-300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm, hist = helpers.fit_gmm(X, 2, eps=eps, rng=0, max_iter=5)
    assert all(np.isfinite(a).all() for a in gmm) and np.isfinite(hist).all()


# --- em_lower_bound: the bound F of EM -------------------------------------------------------


def log_joint(X, gmm):
    """a_ik = log pi_k + log N(x_i | mu_k, Sigma_k), by scipy (no clipping needed here)."""
    with np.errstate(divide="ignore"):
        return np.column_stack(
            [
                np.log(w) + stats.multivariate_normal(m, c).logpdf(X)
                for w, m, c in zip(gmm.weights, gmm.means, gmm.covariances)
            ]
        )


def mean_kl(q, log_post):
    """(1/n) sum_i KL(q_i || p(z | x_i)), with 0 log 0 = 0, term by term."""
    total = 0.0
    for qi, lpi in zip(q, log_post):
        total += sum(qk * (np.log(qk) - lk) for qk, lk in zip(qi, lpi) if qk > 0)
    return total / len(q)


@pytest.fixture
def bound_case(rng):
    """Blobs and a fitted-ish GMM (naive_gmm of the true labels): eigenvalues well above eps."""
    X, y, _ = make_blobs(rng, n_per=(40, 30, 50), d=3, spread=2.0)
    return X, helpers.naive_gmm(X, y)


def test_em_lower_bound_equals_loglik_at_the_e_step(bound_case):
    X, gmm = bound_case
    resp, loglik = helpers.e_step(X, gmm)
    np.testing.assert_allclose(helpers.em_lower_bound(X, gmm, resp), loglik, rtol=1e-12)


def test_em_lower_bound_is_loglik_minus_mean_kl(bound_case, rng):
    X, gmm = bound_case
    a = log_joint(X, gmm)
    log_px = scipy_logsumexp(a, axis=1)
    loglik = log_px.mean()
    log_post = a - log_px[:, None]
    for alpha in (0.05, 1.0, 20.0):
        q = rng.dirichlet(np.full(3, alpha), size=len(X))
        F = helpers.em_lower_bound(X, gmm, q)
        kl = mean_kl(q, log_post)
        assert kl > 0  # precondition: q is not the posterior
        np.testing.assert_allclose(F, loglik - kl, rtol=1e-10)
        assert F < loglik
        # and the definition, (1/n) sum_i sum_k q_ik (a_ik - log q_ik), term by term
        direct = np.mean(
            [
                sum(qk * (ak - np.log(qk)) for qk, ak in zip(qi, ai) if qk > 0)
                for qi, ai in zip(q, a)
            ]
        )
        np.testing.assert_allclose(F, direct, rtol=1e-10)


def test_em_lower_bound_of_hard_assignments(bound_case, rng):
    # One-hot q: 0 log 0 = 0 and 1 log 1 = 0, so F is the mean of a_{i, c_i}.
    X, gmm = bound_case
    c = rng.integers(0, 3, size=len(X))
    q = np.eye(3)[c]
    a = log_joint(X, gmm)
    np.testing.assert_allclose(
        helpers.em_lower_bound(X, gmm, q), a[np.arange(len(X)), c].mean(), rtol=1e-10
    )


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.floats(0.01, 10.0), st.floats(0.0, 0.9), st.integers(1, 4))
def test_em_lower_bound_never_exceeds_loglik(seed, alpha, p_zero, K):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(12, 2)) * 2.0
    gmm = helpers.GMM(
        rng.dirichlet(np.ones(K)),
        rng.normal(size=(K, 2)),
        np.stack([np.eye(2) * s for s in rng.uniform(0.3, 3.0, size=K)]),
    )
    q = rng.dirichlet(np.full(K, alpha), size=len(X))
    q[rng.random(q.shape) < p_zero] = 0.0  # some exact zeros (0 log 0 = 0)
    q[q.sum(axis=1) == 0, 0] = 1.0
    q /= q.sum(axis=1, keepdims=True)
    loglik = helpers.gmm_loglik(X, gmm)
    F = helpers.em_lower_bound(X, gmm, q)
    assert F <= loglik + 1e-12 * abs(loglik)
    a = log_joint(X, gmm)
    log_px = scipy_logsumexp(a, axis=1)
    np.testing.assert_allclose(F, loglik - mean_kl(q, a - log_px[:, None]), rtol=1e-9, atol=1e-12)


def test_m_step_raises_the_bound_for_fixed_q(bound_case, rng):
    # EM as coordinate ascent on F: the E-step makes F = loglik, the M-step maximises F
    # over the parameters for fixed q (under eigenvalues >= eps), so both steps raise it.
    X, gmm = bound_case
    q = rng.dirichlet(np.ones(3), size=len(X))
    new = helpers.m_step(X, q, previous=gmm)
    assert helpers.em_lower_bound(X, new, q) >= helpers.em_lower_bound(X, gmm, q)
    resp, loglik = helpers.e_step(X, new)
    F = helpers.em_lower_bound(X, new, q)
    assert F <= loglik
    np.testing.assert_allclose(helpers.em_lower_bound(X, new, resp), loglik, rtol=1e-12)


def test_em_lower_bound_uses_the_floor_eps(bound_case):
    # The bound of the model whose covariances are clipped at eps, as gmm_log_prob.
    X, gmm = bound_case
    assert np.linalg.eigvalsh(gmm.covariances).min() < 1.0  # precondition: eps=1 clips
    resp = helpers.gmm_responsibilities(X, gmm, eps=1.0)
    a = helpers.gmm_log_prob(X, gmm, eps=1.0)
    safe = np.where(resp > 0, resp, 1.0)  # log 1 = 0 where q = 0: 0 log 0 = 0
    expected = np.mean(np.sum(resp * (a - np.log(safe)), axis=1))
    np.testing.assert_allclose(helpers.em_lower_bound(X, gmm, resp, eps=1.0), expected, rtol=1e-12)
    np.testing.assert_allclose(
        helpers.em_lower_bound(X, gmm, resp, eps=1.0),
        helpers.gmm_loglik(X, gmm, eps=1.0),
        rtol=1e-12,
    )


def test_em_lower_bound_minus_inf_on_a_component_of_weight_zero(rng):
    X = rng.normal(size=(10, 2))
    gmm = helpers.GMM([1.0, 0.0], np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    # no mass on the empty component: finite, and the log-likelihood itself
    q = np.column_stack([np.ones(10), np.zeros(10)])
    np.testing.assert_allclose(
        helpers.em_lower_bound(X, gmm, q), helpers.gmm_loglik(X, gmm), rtol=1e-12
    )
    # any mass on it: log pi_k = -inf
    q[3] = [0.5, 0.5]
    assert helpers.em_lower_bound(X, gmm, q) == -np.inf


# ---- appended to tests/test_em.py: eps at the edge of float64 (issue 19, class 2) and the
# float32 guarantee (issue 20).


def _centred_scale(X):
    Xc = X - X.mean(axis=0)
    return float(np.mean((Xc**2).sum(axis=1)))


def test_subnormal_eps_is_rejected_with_the_reason():
    X = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(ValueError, match="subnormal"):
        helpers.fit_gmm(X, 2, eps=5e-324, rng=0)


@pytest.mark.parametrize("scale", [1.0, 1e-6, 1e6])
def test_smallest_eps_the_fit_can_honour(scale):
    """Below d u (total variance) eps is refused; just above it, it is honoured."""
    X = np.random.default_rng(1).normal(size=(120, 4)) * scale
    smallest = X.shape[1] * np.finfo(np.float64).eps * _centred_scale(X)
    with pytest.raises(ValueError, match="too small for the scale of X"):
        helpers.fit_gmm(X, 2, eps=0.9 * smallest, rng=0, max_iter=3)
    gmm, _ = helpers.fit_gmm(X, 2, eps=1.1 * smallest, rng=0, max_iter=3)
    assert np.linalg.eigvalsh(gmm.covariances).min() >= 0.9 * (1.1 * smallest)


def test_m_step_refuses_an_eps_it_cannot_honour():
    X = np.random.default_rng(2).normal(size=(50, 3))
    resp = np.full((50, 2), 0.5)
    with pytest.raises(ValueError, match="too small"):
        helpers.m_step(X, resp, eps=1e-20)


def test_component_owning_one_sample_is_not_an_error():
    """Its scatter is zero up to round-off; clipping makes it eps I (issue 19, class 3)."""
    X = np.random.default_rng(3).normal(size=(30, 4)) * 1e-40 + 1.0
    resp = np.zeros((30, 2))
    resp[0, 0] = 1.0
    resp[1:, 1] = 1.0
    gmm = helpers.m_step(X, resp, eps=1e-3)
    np.testing.assert_allclose(gmm.covariances[0], 1e-3 * np.eye(4), rtol=1e-12, atol=1e-18)


def _f32_tolerance(X, gmm, eps):
    """The float32 promise on the mean log-likelihood: mean_i sum_k r_ik 1e-3 (d + m_ik) / 2."""
    d = X.shape[1]
    resp = helpers.e_step(X, gmm, eps)[0]
    maha = np.empty_like(resp)
    for k in range(gmm.n_components):
        lam, U = helpers.clipped_eigh(gmm.covariances[k], eps)
        maha[:, k] = (((X - gmm.means[k]) @ (U / np.sqrt(lam))) ** 2).sum(axis=1)
    return float(np.mean((resp * 1e-3 * (d + maha) / 2).sum(axis=1)))


def test_float32_on_features_of_very_different_scales_warns_and_is_right():
    """The issue's example: float32 reported +18,167 and jumped; now it falls back and says so."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)) * np.array([1e3, 1, 1e-3, 1e-3, 1e3])
    g64, h64 = helpers.fit_gmm(X, 3, init="kmeans", eps=1e-5, rng=0, max_iter=8, tol=0)
    with pytest.warns(helpers.Float32PrecisionWarning, match="dtype=np.float64"):
        g32, h32 = helpers.fit_gmm(
            X, 3, init="kmeans", eps=1e-5, rng=0, max_iter=8, tol=0, dtype=np.float32
        )
    assert -9.0 < h64[-1] < -8.0 and np.all(np.diff(h64) >= -1e-9)
    tol = _f32_tolerance(X, g32, 1e-5)
    assert abs(h32[-1] - helpers.gmm_loglik(X, g32, eps=1e-5)) <= tol
    np.testing.assert_allclose(h32, h64, rtol=0, atol=10 * tol)


def _adversarial_case(seed):
    r = np.random.default_rng(seed)
    n, d = int(r.integers(40, 300)), int(r.integers(2, 10))
    spread = 3 if seed % 2 else 1  # odd seeds: scales over 6 decades; even: over 2
    scales = 10.0 ** r.uniform(-spread, spread, d)
    offsets = r.normal(size=d) * 10.0 ** r.uniform(0, 2 * spread, d)
    X = r.normal(size=(n, d)) * scales + offsets
    if r.random() < 0.4:  # duplicated rows
        X[: n // 4] = X[0]
    eps = float(X.var(axis=0).mean() * 10.0 ** r.uniform(-8, -2))
    K = int(r.integers(1, 5))
    init = "kmeans" if r.random() < 0.5 else "random"
    return X, K, eps, init


@pytest.mark.parametrize("seed", range(40))
def test_float32_never_lies(seed):
    """Mixed scales, offsets, duplicated rows, eps from 1e-8 to 1e-2 of the variance: a float32
    history is the true log-likelihood of its models within the stated tolerance, and never
    falls by more than it, or a Float32PrecisionWarning says that float64 took over."""
    X, K, eps, init = _adversarial_case(seed)
    (g32, h32), warned = with_float32_warning(
        helpers.fit_gmm, X, K, init=init, eps=eps, rng=seed, max_iter=12, tol=0, dtype=np.float32
    )
    # where float32 said it could not keep its promise (and computed in float64), the
    # result must be right all the same
    tol = _f32_tolerance(X, g32, eps)
    assert abs(h32[-1] - helpers.gmm_loglik(X, g32, eps=eps)) <= tol
    if not warned:
        assert np.all(np.diff(h32) >= -2 * tol)


@pytest.mark.parametrize(
    "scale, offset",
    [(1e-3, 1e7), (1.0, 1e9), (1e-12, 0.0), (1e-20, 0.0), (1e-150, 0.0), (1e20, 0.0), (1e36, 0.0)],
)
def test_float32_data_outside_float32_range_or_digits(scale, offset):
    """Data far from the origin keep their digits (centred before rounding to float32); data
    whose scale float32 cannot hold are fitted in float64, with the warning: either way the
    history is float64's."""
    X = np.random.default_rng(4).normal(size=(150, 3)) * scale + offset
    eps = 1e-3 * scale**2
    g64, h64 = helpers.fit_gmm(X, 2, eps=eps, rng=0, max_iter=6, tol=0)
    (g32, h32), warned = with_float32_warning(
        helpers.fit_gmm, X, 2, eps=eps, rng=0, max_iter=6, tol=0, dtype=np.float32
    )
    assert warned == (scale < 1e-16 or scale > 1e18)
    np.testing.assert_allclose(h32, h64, rtol=1e-4, atol=1e-4)


def test_some_adversarial_cases_keep_float32():
    """The fallback is not taken everywhere: well-scaled cases stay in float32 without a warning."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error", helpers.Float32PrecisionWarning)
        g32, h32 = helpers.fit_gmm(X, 3, eps=1e-3, rng=0, max_iter=10, tol=0, dtype=np.float32)
    g64, h64 = helpers.fit_gmm(X, 3, eps=1e-3, rng=0, max_iter=10, tol=0)
    np.testing.assert_allclose(h32, h64, rtol=1e-5)


@requires_mnist
def test_float32_on_mnist_needs_no_fallback(mnist_train):
    X = mnist_train[0][:6000]
    with warnings.catch_warnings():
        warnings.simplefilter("error", helpers.Float32PrecisionWarning)
        _, h32 = helpers.fit_gmm(X, 5, rng=0, max_iter=4, tol=0, dtype=np.float32)
    _, h64 = helpers.fit_gmm(X, 5, rng=0, max_iter=4, tol=0)
    np.testing.assert_allclose(h32, h64, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_em_gives_the_same_numbers_whatever_the_thread_count(monkeypatch, dtype):
    """From one start, one BLAS thread, this machine's threads and 3 threads give the same
    model and history, to the last bit (every product of the loop runs on one BLAS thread)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(8)
    n, d, K = 4000, 256, 3
    X = rng.random((n, d)) * (rng.random(d) < 0.8)  # some features always zero (clipped)
    start = helpers.GMM(np.full(K, 1 / K), X[:K], np.broadcast_to(np.cov(X.T), (K, d, d)))
    fits = []
    with threadpool_limits(1):
        fits.append(helpers.fit_gmm(X, K, init=start, max_iter=4, tol=0, dtype=dtype))
    fits.append(helpers.fit_gmm(X, K, init=start, max_iter=4, tol=0, dtype=dtype))
    monkeypatch.setattr(helpers, "_blas_threads", lambda blas: 3)
    fits.append(helpers.fit_gmm(X, K, init=start, max_iter=4, tol=0, dtype=dtype))
    (g1, h1), others = fits[0], fits[1:]
    for g, h in others:
        np.testing.assert_array_equal(h, h1)
        for a, b in zip(g, g1):
            np.testing.assert_array_equal(a, b)


def test_public_steps_give_the_same_numbers_whatever_the_thread_count(monkeypatch):
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(9)
    n, d, K = 4000, 256, 3
    X = rng.random((n, d)) * (rng.random(d) < 0.8)
    covs = [np.cov(X[k::K].T) for k in range(K)]
    gmm = helpers.GMM(np.full(K, 1 / K), X[:K], covs)

    def steps():
        resp, loglik = helpers.e_step(X, gmm)
        return resp, loglik, helpers.gmm_log_prob(X, gmm), helpers.m_step(X, resp).covariances

    with threadpool_limits(1):
        expected = steps()
    for threads in (None, 3):
        if threads is not None:
            monkeypatch.setattr(helpers, "_blas_threads", lambda blas, t=threads: t)
        for got, want in zip(steps(), expected):
            np.testing.assert_array_equal(got, want)
