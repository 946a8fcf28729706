"""Property-based tests (hypothesis) over shapes, scales and seeds."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import helpers

# max_examples comes from the profile loaded in conftest.py (200 by default).
SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])


@st.composite
def data_and_k(draw, max_n=40, max_d=5):
    n = draw(st.integers(2, max_n))
    d = draw(st.integers(1, max_d))
    k = draw(st.integers(1, min(4, n)))
    scale = draw(st.sampled_from([1e-2, 1.0, 1e2]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * scale
    if draw(st.booleans()):
        X[:, 0] = 0.5 * scale  # a constant feature
    return X, k, scale, seed


def eps_for(scale):
    return 1e-3 * scale ** 2


@pytest.mark.filterwarnings("ignore:eps=.*exceeds the average variance")  # tiny-n draws; tested elsewhere
@SETTINGS
@given(data_and_k())
def test_em_invariants(case):
    X, k, scale, seed = case
    eps = eps_for(scale)
    gmm, history = helpers.fit_gmm(X, k, init="random", eps=eps, max_iter=8, tol=0, rng=seed)
    # weights sum to 1, covariances symmetric with eigenvalues >= eps
    np.testing.assert_allclose(gmm.weights.sum(), 1.0, rtol=1e-12)
    assert (gmm.weights >= 0).all()
    np.testing.assert_allclose(gmm.covariances, np.swapaxes(gmm.covariances, 1, 2), rtol=0, atol=1e-12 * scale ** 2)
    assert np.linalg.eigvalsh(gmm.covariances).min() >= eps * (1 - 1e-8)
    # the history never decreases (up to round-off)
    assert np.all(np.diff(history) >= -1e-9 * (1 + np.abs(history).max()))
    # responsibilities are finite and sum to 1
    resp = helpers.gmm_responsibilities(X, gmm, eps=eps)
    assert np.isfinite(resp).all() and (resp >= 0).all()
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)


@SETTINGS
@given(data_and_k())
def test_kmeans_objective_never_increases(case):
    X, k, scale, seed = case
    X = X + np.random.default_rng(seed).normal(size=X.shape) * 1e-3 * scale  # distinct rows
    centres, labels, history = helpers.kmeans(X, k, rng=seed)
    assert np.isfinite(centres).all()
    assert np.all(np.diff(history) <= 1e-9 * history[0] + 1e-300)
    np.testing.assert_allclose(history[-1], ((X - centres[labels]) ** 2).sum(), rtol=1e-7, atol=1e-12 * scale ** 2)


@SETTINGS
@given(st.integers(1, 6), st.floats(1e-6, 1.0), st.sampled_from([1e-3, 1.0, 1e3]),
       st.integers(0, 2**32 - 1))
def test_logpdf_equals_clipped_reference(d, eps_relative, scale, seed):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(d, rng.integers(1, d + 1))) * np.sqrt(scale)
    cov = B @ B.T  # possibly singular
    eps = eps_relative * scale  # the floor relative to the data's scale, as a user should choose it
    mean = rng.normal(size=d) * np.sqrt(scale)
    X = rng.normal(size=(7, d)) * np.sqrt(scale)
    lam, U = np.linalg.eigh(cov)
    clipped = np.maximum(lam, eps)
    ref = stats.multivariate_normal(mean, (U * clipped) @ U.T).logpdf(X)
    # Both sides lose about cond * machine epsilon to round-off.
    rtol = max(1e-9, 1e-14 * clipped.max() / clipped.min())
    np.testing.assert_allclose(helpers.gaussian_logpdf(X, mean, cov, eps=eps), np.atleast_1d(ref),
                               rtol=rtol, atol=1e-9)


@SETTINGS
@given(st.lists(st.floats(0.05, 1.0), min_size=1, max_size=5), st.integers(0, 2**32 - 1))
def test_sample_gmm_respects_weights(raw, seed):
    w = np.array(raw) / np.sum(raw)
    K = len(w)
    gmm = helpers.GMM(w, np.zeros((K, 2)), np.stack([np.eye(2)] * K))
    n = 4000
    _, comp = helpers.sample_gmm(gmm, n, rng=seed)
    freq = np.bincount(comp, minlength=K) / n
    # 6 standard errors of a binomial proportion
    assert np.all(np.abs(freq - w) <= 6 * np.sqrt(w * (1 - w) / n) + 1e-12)


@SETTINGS
@given(st.integers(2, 4), st.integers(2, 40), st.integers(0, 2**32 - 1),
       st.floats(100.0, 1e5))
def test_responsibilities_finite_under_extreme_underflow(K, d, seed, distance):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(K, d)) * distance
    gmm = helpers.GMM(np.full(K, 1 / K), means, np.stack([np.eye(d) * 1e-3] * K))
    # Every coordinate at least `distance` beyond every mean: Mahalanobis distances of
    # at least d * distance^2 / 1e-3 >= 2e7, so exp() of every log-density is 0.
    X = means.max(axis=0) + distance * (1 + rng.random((5, d)))
    assert helpers.gmm_log_prob(X, gmm).max() < -1e6
    resp = helpers.gmm_responsibilities(X, gmm)
    assert np.isfinite(resp).all()
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)
    assert np.isfinite(helpers.gmm_loglik(X, gmm))
