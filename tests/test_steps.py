"""The public step functions against the textbook formulas, written out in numpy."""

import numpy as np
import pytest
from scipy.special import logsumexp as scipy_logsumexp
from scipy.stats import multivariate_normal

import helpers
from conftest import make_blobs


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


def test_m_step_matches_textbook_and_mutates_nothing(rng):
    X, _, _ = make_blobs(rng, n_per=(100, 120, 80), d=5)
    X[:, 0] = 0.5                                         # a constant feature: clipped at eps
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
    with pytest.raises(ValueError, match="previous="):
        helpers.m_step(X, resp)


def test_e_step_matches_scipy(rng):
    X, _, _ = make_blobs(rng, n_per=(60, 70), d=3)
    gmm = helpers.GMM(np.array([0.3, 0.7]), rng.normal(size=(2, 3)),
                      np.stack([np.eye(3) * 2, np.diag([1.0, 2.0, 3.0])]))
    a = np.stack([np.log(w) + multivariate_normal(m, c).logpdf(X)
                  for w, m, c in zip(gmm.weights, gmm.means, gmm.covariances)], axis=1)
    resp, loglik = helpers.e_step(X, gmm)
    np.testing.assert_allclose(resp, np.exp(a - scipy_logsumexp(a, axis=1, keepdims=True)), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(loglik, scipy_logsumexp(a, axis=1).mean(), rtol=1e-12)
    np.testing.assert_allclose(helpers.gmm_log_prob(X, gmm), a, rtol=1e-12)


def test_logsumexp_matches_scipy_and_survives_extremes(rng):
    a = rng.normal(scale=1e4, size=(50, 6))
    np.testing.assert_allclose(helpers.logsumexp(a, axis=1), scipy_logsumexp(a, axis=1), rtol=1e-14)
    assert helpers.logsumexp(np.array([-1e5, -1e5 + np.log(3)])) == pytest.approx(-1e5 + np.log(4))
    assert helpers.logsumexp(np.array([-np.inf, -np.inf])) == -np.inf


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


def test_kmeans_loop_of_steps_reproduces_kmeans(rng):
    X, _, _ = make_blobs(rng, n_per=(200, 200, 200), d=3, spread=1.0)
    centres_ref, labels_ref, history_ref = helpers.kmeans(X, 4, rng=7)
    Xc = X - X.mean(0)
    centres = Xc[np.random.default_rng(7).choice(len(X), 4, replace=False)]
    labels, dist = helpers.assign_clusters(Xc, centres)
    history = [dist.sum()]
    while True:
        centres = helpers.update_centres(Xc, labels, 4)
        new, dist = helpers.assign_clusters(Xc, centres)
        history.append(dist.sum())
        if np.array_equal(new, labels):
            break
        labels = new
    assert np.array_equal(labels, labels_ref)
    np.testing.assert_allclose(history, history_ref, rtol=1e-12)
    np.testing.assert_allclose(centres + X.mean(0), centres_ref, rtol=1e-12, atol=1e-12)


def test_gaussian_logpdf_is_the_whitened_formula(rng):
    d = 6
    A = rng.normal(size=(d, 3))
    cov = A @ A.T                                             # rank 3: three zero eigenvalues
    mean, X = rng.normal(size=d), rng.normal(size=(40, d))
    lam, U = np.linalg.eigh(cov)
    lam = np.maximum(lam, 0.1)
    z = (X - mean) @ U / np.sqrt(lam)
    expected = -0.5 * (d * np.log(2 * np.pi) + np.log(lam).sum() + (z ** 2).sum(1))
    np.testing.assert_allclose(helpers.gaussian_logpdf(X, mean, cov, eps=0.1), expected, rtol=1e-12)
