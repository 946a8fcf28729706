"""Gaussian MLE, log-density and sampling against independent references."""

import numpy as np
import pytest
from scipy import stats

import helpers


def random_spd(rng, d, low=0.2, high=3.0):
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (Q * rng.uniform(low, high, size=d)) @ Q.T


def test_mle_matches_numpy(rng):
    X = rng.normal(size=(300, 7)) @ rng.normal(size=(7, 7))
    mean, cov = helpers.gaussian_mle(X)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(X, rowvar=False, ddof=1), rtol=1e-10, atol=1e-12)
    assert np.array_equal(cov, cov.T)


def test_mle_two_samples_is_unbiased(rng):
    X = rng.normal(size=(2, 3))
    _, cov = helpers.gaussian_mle(X)
    diff = X[0] - X[1]
    # With n = 2: sum of squared deviations = diff diff^T / 2, divided by n - 1 = 1.
    np.testing.assert_allclose(cov, np.outer(diff, diff) / 2, rtol=1e-12)


def test_logpdf_matches_scipy_well_conditioned(rng):
    d = 6
    cov = random_spd(rng, d)
    mean = rng.normal(size=d)
    X = rng.multivariate_normal(mean, cov, size=50)
    ours = helpers.gaussian_logpdf(X, mean, cov, eps=1e-12)
    ref = stats.multivariate_normal(mean, cov).logpdf(X)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_logpdf_singular_matches_clipped_reference(rng):
    d, eps = 8, 1e-2
    B = rng.normal(size=(d, 3))
    cov = B @ B.T  # rank 3: five zero eigenvalues
    mean = rng.normal(size=d)
    X = rng.normal(size=(40, d))
    lam, U = np.linalg.eigh(cov)
    clipped = (U * np.maximum(lam, eps)) @ U.T
    ref = stats.multivariate_normal(mean, clipped).logpdf(X)
    ours = helpers.gaussian_logpdf(X, mean, cov, eps=eps)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, ref, rtol=1e-9)


def test_logpdf_uses_symmetric_part(rng):
    # An asymmetry at round-off level is accepted and only the symmetric part is used;
    # a real asymmetry (1e-3 here) is not a covariance and is rejected (see test_reliability).
    d = 5
    cov = random_spd(rng, d)
    skew = rng.normal(size=(d, d)) * 1e-12
    skew = skew - skew.T
    X = rng.normal(size=(10, d))
    np.testing.assert_allclose(
        helpers.gaussian_logpdf(X, np.zeros(d), cov + skew, eps=1e-12),
        stats.multivariate_normal(np.zeros(d), cov).logpdf(X), rtol=1e-9)
    with pytest.raises(ValueError, match="not symmetric"):
        helpers.gaussian_logpdf(X, np.zeros(d), cov + skew * 1e9, eps=1e-12)


def test_clipped_eigh_floor_and_reconstruction(rng):
    cov = random_spd(rng, 6, low=1e-6, high=1.0)
    lam, U = helpers.clipped_eigh(cov, eps=0.1)
    assert lam.min() >= 0.1
    np.testing.assert_allclose(U.T @ U, np.eye(6), atol=1e-12)
    raw = np.linalg.eigvalsh(cov)
    np.testing.assert_allclose(lam, np.maximum(raw, 0.1), rtol=1e-10)


def test_sample_gaussian_moments(rng):
    d = 4
    cov = random_spd(rng, d)
    mean = rng.normal(size=d)
    S = helpers.sample_gaussian(mean, cov, 200_000, rng=rng, eps=1e-9)
    assert S.shape == (200_000, d)
    # Standard errors: ~ sqrt(var / n) for the mean, ~ sqrt(2 var^2 / n) for the covariance.
    np.testing.assert_allclose(S.mean(axis=0), mean, atol=5 * np.sqrt(cov.diagonal().max() / 200_000))
    np.testing.assert_allclose(np.cov(S, rowvar=False), cov, atol=0.05)


def test_sample_gaussian_singular_uses_eps(rng):
    cov = np.diag([1.0, 0.0])
    S = helpers.sample_gaussian(np.zeros(2), cov, 100_000, rng=rng, eps=0.04)
    np.testing.assert_allclose(S.std(axis=0), [1.0, 0.2], rtol=0.02)


def test_sample_gaussian_seeded_and_no_global_state():
    np.random.seed(0)
    before = np.random.random()
    np.random.seed(0)
    a = helpers.sample_gaussian(np.zeros(3), np.eye(3), 5, rng=7)
    after = np.random.random()
    b = helpers.sample_gaussian(np.zeros(3), np.eye(3), 5, rng=np.random.default_rng(7))
    assert before == after  # the global state was not touched
    assert np.array_equal(a, b)


def test_samples_do_not_depend_on_the_eigenbasis(rng):
    # A covariance with a repeated (clipped) eigenvalue: a rotation inside that
    # eigenspace changes nothing mathematically, and must not change the samples.
    d = 6
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    cov = (Q * np.array([2.0, 1.0, 0.0, 0.0, 0.0, 0.0])) @ Q.T
    perturbed = cov + 1e-13 * np.eye(d)
    a = helpers.sample_gaussian(np.zeros(d), cov, 50, rng=1, eps=1e-2)
    b = helpers.sample_gaussian(np.zeros(d), perturbed, 50, rng=1, eps=1e-2)
    np.testing.assert_allclose(a, b, atol=1e-9)
