"""Section 3 of helpers.py: sample_gaussian and sample_gmm.

Moments and frequencies within stated standard errors, the floor eps, seeding without
global state, samples independent of the eigenbasis.  (Bad input is in test_validation.py.)
"""

import numpy as np
from conftest import random_spd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import helpers

# max_examples comes from the profile loaded in conftest.py (200 by default).
SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])


# --- sample_gaussian ----------------------------------------------------------------------


def test_sample_gaussian_moments(rng):
    d = 4
    cov = random_spd(rng, d)
    mean = rng.normal(size=d)
    S = helpers.sample_gaussian(mean, cov, 200_000, rng=rng, eps=1e-9)
    assert S.shape == (200_000, d)
    # Standard errors: ~ sqrt(var / n) for the mean, ~ sqrt(2 var^2 / n) for the covariance.
    np.testing.assert_allclose(
        S.mean(axis=0), mean, atol=5 * np.sqrt(cov.diagonal().max() / 200_000)
    )
    np.testing.assert_allclose(np.cov(S, rowvar=False), cov, atol=0.05)


def test_sample_gaussian_singular_uses_eps(rng):
    cov = np.diag([1.0, 0.0])
    S = helpers.sample_gaussian(np.zeros(2), cov, 100_000, rng=rng, eps=0.04)
    np.testing.assert_allclose(S.std(axis=0), [1.0, 0.2], rtol=0.02)


def test_sample_gaussian_seeded_and_no_global_state():
    # numpy's legacy global generator, on purpose: sampling must leave it untouched
    np.random.seed(0)  # noqa: NPY002
    before = np.random.random()  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002
    a = helpers.sample_gaussian(np.zeros(3), np.eye(3), 5, rng=7)
    after = np.random.random()  # noqa: NPY002
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


# --- sample_gmm ---------------------------------------------------------------------------


def test_sample_gmm_component_frequencies(rng):
    d = 3
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0] * d, [10.0] * d, [-10.0] * d])
    covs = np.stack([np.eye(d)] * 3)
    gmm = helpers.GMM(weights, means, covs)
    n = 60_000
    X, comp = helpers.sample_gmm(gmm, n, rng=rng)
    assert X.shape == (n, d) and comp.shape == (n,)
    counts = np.bincount(comp, minlength=3)
    # Chi-square goodness of fit of the component counts to the weights.
    chi2 = stats.chisquare(counts, weights * n)
    assert chi2.pvalue > 1e-4
    for k in range(3):
        np.testing.assert_allclose(X[comp == k].mean(axis=0), means[k], atol=0.05)


def test_sample_gmm_deterministic():
    gmm = helpers.GMM(np.array([0.4, 0.6]), np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    a = helpers.sample_gmm(gmm, 50, rng=3)
    b = helpers.sample_gmm(gmm, 50, rng=3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


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
