"""EM against scikit-learn's GaussianMixture, monotonicity, initialisations, float32."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

import helpers
from conftest import make_blobs, requires_mnist


def precision_from_cov(cov):
    lam, U = np.linalg.eigh(cov)
    return (U / lam) @ U.T  # U diag(1/lam) U^T, the practical's formula


def sklearn_from(X, start, n_iter):
    gm = GaussianMixture(
        start.n_components, covariance_type="full", reg_covar=0.0, tol=0.0, max_iter=n_iter,
        weights_init=start.weights, means_init=start.means,
        precisions_init=np.stack([precision_from_cov(c) for c in start.covariances]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gm.fit(X)


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
    gmm32, history32 = helpers.fit_gmm(X, 4, init=start, eps=1e-12, max_iter=5, tol=0, dtype=np.float32)
    np.testing.assert_allclose(history32[-1], ref.score(X), rtol=1e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("init", ["random", "kmeans"])
def test_history_never_decreases(rng, dtype, init):
    X, _, _ = make_blobs(rng, n_per=(150, 150, 150, 150), d=6, spread=1.5)
    X[:, -1] = 0.25  # a constant feature: its variance is clipped at eps
    gmm, history = helpers.fit_gmm(X, 5, init=init, eps=1e-3, max_iter=40, tol=0, rng=0, dtype=dtype)
    assert len(history) == 41
    slack = 1e-10 if dtype == np.float64 else 1e-5
    assert np.all(np.diff(history) >= -slack * np.abs(history).max())
    assert history[-1] > history[0]


@requires_mnist
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_history_never_decreases_on_mnist(mnist_train, dtype):
    X = mnist_train[0][:3000]
    _, history = helpers.fit_gmm(X, 5, init="random", max_iter=15, tol=0, rng=0, dtype=dtype)
    slack = 1e-10 if dtype == np.float64 else 1e-5
    assert np.all(np.diff(history) >= -slack * np.abs(history).max())


def test_tol_zero_runs_exactly_max_iter(rng):
    X, _, _ = make_blobs(rng)
    for m in (0, 1, 7):
        _, history = helpers.fit_gmm(X, 3, init="kmeans", max_iter=m, tol=0, rng=0)
        assert len(history) == m + 1


def test_tol_stops_when_improvement_is_small(rng):
    X, _, _ = make_blobs(rng)
    _, history = helpers.fit_gmm(X, 3, init="kmeans", max_iter=200, tol=1e-3, rng=0)
    assert len(history) < 201
    assert history[-1] - history[-2] < 1e-3
    assert np.all(np.diff(history)[:-1] >= 1e-3)


def test_history_is_loglik_of_returned_model(rng):
    X, _, _ = make_blobs(rng)
    gmm, history = helpers.fit_gmm(X, 3, init="random", max_iter=10, tol=0, rng=1)
    np.testing.assert_allclose(history[-1], helpers.gmm_loglik(X, gmm), rtol=1e-12)
    start = helpers._init_gmm(X, 3, "random", np.random.default_rng(1))
    np.testing.assert_allclose(history[0], helpers.gmm_loglik(X, start), rtol=1e-12)


def test_kmeans_init_is_cluster_statistics(rng):
    X, _, _ = make_blobs(rng)
    _, labels, _ = helpers.kmeans(X, 3, rng=4)
    gmm, history = helpers.fit_gmm(X, 3, init="kmeans", max_iter=0, tol=0, rng=4)
    for k in range(3):
        members = X[labels == k]
        np.testing.assert_allclose(gmm.weights[k], len(members) / len(X))
        np.testing.assert_allclose(gmm.means[k], members.mean(axis=0), rtol=1e-10)
        lam, U = np.linalg.eigh(np.cov(members, rowvar=False))
        clipped = (U * np.maximum(lam, helpers.DEFAULT_EPS)) @ U.T
        np.testing.assert_allclose(gmm.covariances[k], clipped, rtol=1e-8, atol=1e-12)


def test_random_init_definition(rng):
    X, _, _ = make_blobs(rng)
    start = helpers._init_gmm(X, 3, "random", np.random.default_rng(9))
    idx = np.random.default_rng(9).choice(len(X), size=3, replace=False)
    np.testing.assert_allclose(start.means, X[idx])
    np.testing.assert_allclose(start.weights, 1 / 3)
    for c in start.covariances:
        np.testing.assert_allclose(c, np.cov(X, rowvar=False), rtol=1e-10)


def test_init_from_gmm_and_determinism(rng):
    X, _, _ = make_blobs(rng)
    a, ha = helpers.fit_gmm(X, 3, init="kmeans", rng=np.random.default_rng(2), max_iter=5, tol=0)
    b, hb = helpers.fit_gmm(X, 3, init="kmeans", rng=2, max_iter=5, tol=0)
    assert np.array_equal(ha, hb)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    c, hc = helpers.fit_gmm(X, 3, init=a, max_iter=3, tol=0)
    assert hc[0] == pytest.approx(ha[-1], rel=1e-12)


def test_float32_close_to_float64(rng):
    X, _, _ = make_blobs(rng, n_per=(300, 300, 300), d=8, spread=2.0)
    start = helpers._init_gmm(X, 3, "random", np.random.default_rng(3))
    g64, h64 = helpers.fit_gmm(X, 3, init=start, max_iter=20, tol=0)
    g32, h32 = helpers.fit_gmm(X, 3, init=start, max_iter=20, tol=0, dtype=np.float32)
    np.testing.assert_allclose(h32, h64, rtol=1e-5)
    np.testing.assert_allclose(g32.means, g64.means, atol=1e-4)
    assert g32.means.dtype == np.float64


def test_initial_covariances_are_clipped_too(rng):
    X, _, _ = make_blobs(rng)
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


def test_m_step_skipping_is_exact(rng, monkeypatch):
    # The M-step leaves out rows whose responsibility is below round-off; forcing the
    # threshold to zero (every row) must give the same parameters to round-off.
    X, _, _ = make_blobs(rng, n_per=(300, 300, 300), d=6, spread=4.0)
    start = helpers._init_gmm(X, 3, "random", np.random.default_rng(0))
    fast, hf = helpers.fit_gmm(X, 3, init=start, max_iter=10, tol=0)
    monkeypatch.setattr(helpers, "_SKIP_ROUNDOFF", 0.0)
    full, hfull = helpers.fit_gmm(X, 3, init=start, max_iter=10, tol=0)
    np.testing.assert_allclose(fast.covariances, full.covariances, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hf, hfull, rtol=1e-13)
