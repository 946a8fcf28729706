"""Section 4 of helpers.py: the GMM container, naive_gmm, gmm_log_prob, logsumexp, e_step,
gmm_loglik, gmm_responsibilities and gmm_predict.

Against scipy written out component by component; underflow far from every component;
points too far for float64.  (Bad input is in test_validation.py.)
"""

import numpy as np
import pytest
from conftest import make_blobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp as scipy_logsumexp

import helpers

# max_examples comes from the profile loaded in conftest.py (200 by default).
SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])


def two_by_two():
    return helpers.GMM(np.array([0.5, 0.5]), np.zeros((2, 2)), np.stack([np.eye(2)] * 2))


# --- the GMM container --------------------------------------------------------------------


def test_gmm_arrays_are_read_only_copies():
    weights = np.array([0.5, 0.5])
    gmm = helpers.GMM(weights, np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    weights[0] = 0.9
    assert gmm.weights[0] == 0.5
    for a in gmm:
        assert a.dtype == np.float64
        with pytest.raises(ValueError, match="read-only"):
            a[...] = 0


def test_gmm_fields_cannot_be_assigned():
    gmm = two_by_two()
    with pytest.raises(AttributeError):
        gmm.weights = None
    np.testing.assert_array_equal(gmm.weights, [0.5, 0.5])


def test_gmm_takes_no_new_attributes():
    gmm = two_by_two()
    with pytest.raises(AttributeError):
        gmm.anything = 1


def test_gmm_replace_is_checked_like_the_constructor():
    gmm = two_by_two()
    try:
        replaced = gmm._replace(weights=np.array([0.9, 0.9]))
    except (AttributeError, TypeError, ValueError):
        return  # refusing to replace a field is one of the two allowed answers
    assert type(replaced) is helpers.GMM
    assert all(not a.flags.writeable for a in replaced)


def test_gmm_from_lists():
    gmm = helpers.GMM([0.25, 0.75], [[0.0], [1.0]], [[[1.0]], [[2.0]]])
    assert gmm.n_components == 2 and gmm.n_features == 1
    expected = np.log(0.25 * stats.norm(0, 1).pdf(0) + 0.75 * stats.norm(1, np.sqrt(2)).pdf(0))
    np.testing.assert_allclose(helpers.gmm_loglik(np.zeros((3, 1)), gmm), expected, rtol=1e-12)


# --- naive_gmm ----------------------------------------------------------------------------


def test_naive_gmm_per_class(blobs):
    X, y, _ = blobs
    labels = np.array(["b", "a", "c"])[y]  # classes come back in sorted order
    gmm = helpers.naive_gmm(X, labels)
    assert isinstance(gmm, helpers.GMM)
    assert gmm.weights.shape == (3,) and gmm.means.shape == (3, 4)
    assert gmm.covariances.shape == (3, 4, 4)
    for k, c in enumerate(["a", "b", "c"]):
        members = X[labels == c]
        np.testing.assert_allclose(gmm.weights[k], len(members) / len(X))
        np.testing.assert_allclose(gmm.means[k], members.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(
            gmm.covariances[k], np.cov(members, rowvar=False), rtol=1e-10, atol=1e-12
        )
    # The global mean is the weighted average of the class means.
    np.testing.assert_allclose(gmm.weights @ gmm.means, X.mean(axis=0), rtol=1e-10, atol=1e-12)


def test_single_class_naive_gmm():
    X = np.random.default_rng(6).random((30, 4))
    gmm = helpers.naive_gmm(X, np.full(30, 3))
    assert gmm.n_components == 1 and gmm.weights[0] == 1.0
    # One component of weight 1: the log-likelihood is that of the class's Gaussian.
    ref = stats.multivariate_normal(X.mean(axis=0), np.cov(X, rowvar=False)).logpdf(X).mean()
    np.testing.assert_allclose(helpers.gmm_loglik(X, gmm), ref, rtol=1e-10)
    np.testing.assert_array_equal(helpers.gmm_predict(X, gmm), 0)


# --- log-probabilities, logsumexp, the E-step ---------------------------------------------


def test_loglik_matches_bruteforce(blobs):
    X, y, _ = blobs
    gmm = helpers.naive_gmm(X, y)
    per_comp = np.column_stack(
        [np.log(w) + stats.multivariate_normal(m, c).logpdf(X) for w, m, c in zip(*gmm)]
    )
    ref = scipy_logsumexp(per_comp, axis=1).mean()
    np.testing.assert_allclose(helpers.gmm_loglik(X, gmm, eps=1e-12), ref, rtol=1e-10)
    np.testing.assert_allclose(helpers.gmm_log_prob(X, gmm, eps=1e-12), per_comp, rtol=1e-10)
    resp = helpers.gmm_responsibilities(X, gmm, eps=1e-12)
    np.testing.assert_allclose(
        resp, np.exp(per_comp - scipy_logsumexp(per_comp, axis=1, keepdims=True)), atol=1e-12
    )
    assert np.array_equal(helpers.gmm_predict(X, gmm, eps=1e-12), per_comp.argmax(axis=1))


def test_e_step_matches_scipy(rng):
    X, _, _ = make_blobs(rng, n_per=(60, 70), d=3)
    gmm = helpers.GMM(
        np.array([0.3, 0.7]),
        rng.normal(size=(2, 3)),
        np.stack([np.eye(3) * 2, np.diag([1.0, 2.0, 3.0])]),
    )
    a = np.stack(
        [
            np.log(w) + stats.multivariate_normal(m, c).logpdf(X)
            for w, m, c in zip(gmm.weights, gmm.means, gmm.covariances)
        ],
        axis=1,
    )
    resp, loglik = helpers.e_step(X, gmm)
    np.testing.assert_allclose(
        resp, np.exp(a - scipy_logsumexp(a, axis=1, keepdims=True)), rtol=1e-10, atol=1e-14
    )
    np.testing.assert_allclose(loglik, scipy_logsumexp(a, axis=1).mean(), rtol=1e-12)
    np.testing.assert_allclose(helpers.gmm_log_prob(X, gmm), a, rtol=1e-12)


def test_logsumexp_matches_scipy_and_survives_extremes(rng):
    a = rng.normal(scale=1e4, size=(50, 6))
    np.testing.assert_allclose(helpers.logsumexp(a, axis=1), scipy_logsumexp(a, axis=1), rtol=1e-14)
    assert helpers.logsumexp(np.array([-1e5, -1e5 + np.log(3)])) == pytest.approx(-1e5 + np.log(4))
    assert helpers.logsumexp(np.array([-np.inf, -np.inf])) == -np.inf


def test_a_component_of_weight_zero_has_log_prob_minus_inf(rng):
    X = rng.normal(size=(6, 2))
    gmm = helpers.GMM([1.0, 0.0], np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    log_prob = helpers.gmm_log_prob(X, gmm)
    assert np.all(log_prob[:, 1] == -np.inf)
    np.testing.assert_allclose(
        log_prob[:, 0], stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(X), rtol=1e-12
    )
    resp, loglik = helpers.e_step(X, gmm)
    np.testing.assert_array_equal(resp, np.column_stack([np.ones(6), np.zeros(6)]))
    np.testing.assert_allclose(loglik, log_prob[:, 0].mean(), rtol=1e-12)


def test_loglik_underflow_is_finite():
    # Log-densities near -1e5 per sample: exp() would give 0 for every component.
    d = 256
    gmm = helpers.GMM(
        np.array([0.5, 0.5]),
        np.stack([np.zeros(d), np.full(d, 0.5)]),
        np.stack([np.eye(d) * 1e-3] * 2),
    )
    X = np.full((5, d), 2.0)
    log_prob = helpers.gmm_log_prob(X, gmm)
    # log 0.5 + log N(x | mu_k, 1e-3 I) with ||x - mu_k||^2 = 256 * 2^2 and 256 * 1.5^2
    expected = np.log(0.5) - 0.5 * (
        d * np.log(2 * np.pi) + d * np.log(1e-3) + np.array([1024.0, 576.0]) / 1e-3
    )
    np.testing.assert_allclose(log_prob, np.tile(expected, (5, 1)), rtol=1e-12)
    assert log_prob.max() < -1e5
    np.testing.assert_allclose(helpers.gmm_loglik(X, gmm), scipy_logsumexp(expected), rtol=1e-12)
    resp = helpers.gmm_responsibilities(X, gmm)
    # the first component is exp(-224,000) times less likely: 0 in float64
    np.testing.assert_array_equal(resp, np.tile([0.0, 1.0], (5, 1)))


@SETTINGS
@given(st.integers(2, 4), st.integers(2, 40), st.integers(0, 2**32 - 1), st.floats(100.0, 1e5))
def test_responsibilities_finite_under_extreme_underflow(K, d, seed, distance):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(K, d)) * distance
    gmm = helpers.GMM(np.full(K, 1 / K), means, np.stack([np.eye(d) * 1e-3] * K))
    # Every coordinate at least `distance` beyond every mean: Mahalanobis distances of
    # at least d * distance^2 / 1e-3 >= 2e7, so exp() of every log-density is 0.
    X = means.max(axis=0) + distance * (1 + rng.random((5, d)))
    log_prob = helpers.gmm_log_prob(X, gmm)
    assert log_prob.max() < -1e6
    resp = helpers.gmm_responsibilities(X, gmm)
    assert np.isfinite(resp).all()
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)
    # and the values are the formula's, written out
    sq = ((X[:, None, :] - means[None]) ** 2).sum(-1)
    a = np.log(1 / K) - 0.5 * (d * np.log(2 * np.pi) + d * np.log(1e-3) + sq / 1e-3)
    np.testing.assert_allclose(log_prob, a, rtol=1e-9)
    np.testing.assert_allclose(
        helpers.gmm_loglik(X, gmm), scipy_logsumexp(a, axis=1).mean(), rtol=1e-9
    )


def test_predict_and_loglik_agree_on_impossibly_far_points():
    gmm = helpers.GMM([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [np.eye(2)] * 2)
    far = np.array([[0.0, 0.0], [1e200, -1e200]])
    for call in (helpers.gmm_loglik, helpers.gmm_predict, helpers.gmm_responsibilities):
        with pytest.raises(ValueError, match="impossibly far"):
            call(far, gmm)
