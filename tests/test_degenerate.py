"""Degenerate data: each case ends with finite parameters and a likelihood, or a clear error."""

import warnings

import numpy as np
import pytest

import helpers


def assert_finite_fit(gmm, history, eps=helpers.DEFAULT_EPS):
    for part in gmm:
        assert np.isfinite(part).all()
    assert np.isfinite(history).all()
    np.testing.assert_allclose(gmm.weights.sum(), 1.0)
    lam = np.linalg.eigvalsh(gmm.covariances)
    assert lam.min() >= eps * (1 - 1e-9)


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
    assert np.isfinite(helpers.gaussian_logpdf(X, mean, cov)).all()


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
    start = helpers.GMM(np.array([0.5, 0.5]), np.array([[0.0, 0.0], [1e3, 1e3]]),
                        np.stack([np.eye(2) * 0.01] * 2))
    with pytest.warns(RuntimeWarning, match=r"components \[1\] lost"):
        gmm, history = helpers.fit_gmm(X, 2, init=start, max_iter=5, tol=0)
    assert_finite_fit(gmm, history)
    assert gmm.weights[1] < 1e-12
    np.testing.assert_allclose(gmm.means[1], [1e3, 1e3])  # kept, not NaN
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
    eps = 1e-3 * scale ** 2  # eps relative to the variance: no warning
    gmm, history = helpers.fit_gmm(X, 4, eps=eps, max_iter=30, rng=0)
    assert_finite_fit(gmm, history, eps=eps)
    # The same fit as on unit-scale data, rescaled (EM is scale-equivariant).
    ref, ref_history = helpers.fit_gmm(X / scale, 4, eps=1e-3, max_iter=30, rng=0)
    np.testing.assert_allclose(gmm.means / scale, ref.means, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(history - X.shape[1] * np.log(1 / scale), ref_history, rtol=1e-8, atol=1e-6)


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


def test_single_class_naive_gmm():
    X = np.random.default_rng(6).random((30, 4))
    gmm = helpers.naive_gmm(X, np.full(30, 3))
    assert gmm.n_components == 1 and gmm.weights[0] == 1.0
    assert np.isfinite(helpers.gmm_loglik(X, gmm))
    np.testing.assert_array_equal(helpers.gmm_predict(X, gmm), 0)


@pytest.mark.parametrize("n, d", [(16, 16), (8, 30)])
def test_n_equal_and_below_d(n, d):
    X = np.random.default_rng(7).random((n, d))
    mean, cov = helpers.gaussian_mle(X)
    assert np.linalg.matrix_rank(cov) < d  # singular
    logpdf = helpers.gaussian_logpdf(X, mean, cov)
    assert np.isfinite(logpdf).all()
    gmm, history = helpers.fit_gmm(X, 2, max_iter=10, rng=0)
    assert_finite_fit(gmm, history)
    X2, comp = helpers.sample_gmm(gmm, 10, rng=0)
    assert np.isfinite(X2).all()


def test_duplicated_rows_kmeans():
    X = np.repeat(np.random.default_rng(8).random((5, 3)), 10, axis=0)
    centres, labels, history = helpers.kmeans(X, 5, rng=0)
    assert len(np.unique(labels)) == 5
    assert history[-1] == pytest.approx(0.0, abs=1e-12)


def test_one_sample():
    X = np.array([[0.5, 0.5]])
    gmm, history = helpers.fit_gmm(X, 1, max_iter=3)
    assert_finite_fit(gmm, history)
    with pytest.raises(ValueError, match="at least 2 samples"):
        helpers.gaussian_mle(X)


def test_determinism_bit_identical():
    X = np.random.default_rng(9).random((500, 6))
    runs = [helpers.fit_gmm(X, 4, init=init, max_iter=10, tol=0, rng=42)
            for init in ("random", "random", "kmeans", "kmeans")]
    for a, b in (runs[:2], runs[2:]):
        assert np.array_equal(a[1], b[1])
        for x, y in zip(a[0], b[0]):
            assert np.array_equal(x, y)
    c1 = helpers.kmeans(X, 4, rng=1)
    c2 = helpers.kmeans(X, 4, rng=1)
    assert all(np.array_equal(a, b) for a, b in zip(c1, c2))
