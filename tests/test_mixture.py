"""naive_gmm, sample_gmm, gmm_loglik, responsibilities."""

import numpy as np
from scipy import stats
from scipy.special import logsumexp

import helpers
from conftest import make_blobs


def test_naive_gmm_per_class(rng):
    X, y, _ = make_blobs(rng)
    labels = np.array(["b", "a", "c"])[y]  # classes come back in sorted order
    gmm = helpers.naive_gmm(X, labels)
    assert isinstance(gmm, helpers.GMM)
    assert gmm.weights.shape == (3,) and gmm.means.shape == (3, 4) and gmm.covariances.shape == (3, 4, 4)
    for k, c in enumerate(["a", "b", "c"]):
        members = X[labels == c]
        np.testing.assert_allclose(gmm.weights[k], len(members) / len(X))
        np.testing.assert_allclose(gmm.means[k], members.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(gmm.covariances[k], np.cov(members, rowvar=False), rtol=1e-10, atol=1e-12)
    # The global mean is the weighted average of the class means.
    np.testing.assert_allclose(gmm.weights @ gmm.means, X.mean(axis=0), rtol=1e-10, atol=1e-12)


def test_gmm_is_immutable(rng):
    X, y, _ = make_blobs(rng)
    gmm = helpers.naive_gmm(X, y)
    try:
        gmm.weights = None
    except AttributeError:
        pass
    else:
        raise AssertionError("GMM fields must not be assignable")


def test_loglik_matches_bruteforce(rng):
    X, y, _ = make_blobs(rng)
    gmm = helpers.naive_gmm(X, y)
    per_comp = np.column_stack([
        np.log(w) + stats.multivariate_normal(m, c).logpdf(X)
        for w, m, c in zip(*gmm)
    ])
    ref = logsumexp(per_comp, axis=1).mean()
    np.testing.assert_allclose(helpers.gmm_loglik(X, gmm, eps=1e-12), ref, rtol=1e-10)
    np.testing.assert_allclose(helpers.gmm_log_prob(X, gmm, eps=1e-12), per_comp, rtol=1e-10)
    resp = helpers.gmm_responsibilities(X, gmm, eps=1e-12)
    np.testing.assert_allclose(resp, np.exp(per_comp - logsumexp(per_comp, axis=1, keepdims=True)), atol=1e-12)
    assert np.array_equal(helpers.gmm_predict(X, gmm, eps=1e-12), per_comp.argmax(axis=1))


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


def test_loglik_underflow_is_finite():
    # Log-densities near -1e5 per sample: exp() would give 0 for every component.
    d = 256
    gmm = helpers.GMM(np.array([0.5, 0.5]), np.stack([np.zeros(d), np.full(d, 0.5)]),
                      np.stack([np.eye(d) * 1e-3] * 2))
    X = np.full((5, d), 2.0)
    log_prob = helpers.gmm_log_prob(X, gmm)
    assert log_prob.max() < -1e5
    assert np.isfinite(helpers.gmm_loglik(X, gmm))
    resp = helpers.gmm_responsibilities(X, gmm)
    assert np.isfinite(resp).all()
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)
