"""Section 2 of helpers.py: gaussian_mle, clipped_eigh, clipped_covariance, gaussian_logpdf.

Against numpy, scipy and the formulas written out; at extreme scales; a hypothesis
property over dimensions, floors and scales.  (Bad input is in test_validation.py.)
"""

import numpy as np
import pytest
from conftest import random_spd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import helpers

# max_examples comes from the profile loaded in conftest.py (200 by default).
SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])


# --- gaussian_mle -------------------------------------------------------------------------


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


@pytest.mark.parametrize("scale", [1e-200, 1e153, 1e-153])
def test_gaussian_mle_at_extreme_scales(rng, scale):
    X = rng.normal(size=(50, 3))
    mean, cov = helpers.gaussian_mle(X)
    mean_s, cov_s = helpers.gaussian_mle(X * scale)
    np.testing.assert_allclose(mean_s / scale, mean, rtol=1e-12, atol=1e-12)
    assert np.isfinite(cov_s).all()
    # cov * scale**2 as float64 represents it: ~1e306, ~1e-306, and 0 for 1e-200 (the
    # variances, ~1e-400, are below the smallest float64 and underflow to 0).
    np.testing.assert_allclose(cov_s, cov * scale * scale, rtol=1e-12, atol=0)


def test_gaussian_mle_that_cannot_be_represented():
    X = np.array([[1e200, 0.0], [-1e200, 1.0]])
    with pytest.raises(ValueError, match="rescale X"):
        helpers.gaussian_mle(X)


def test_symmetrize_near_the_largest_float():
    a = np.full((3, 3), 1.5e308)
    a[0, 1] = 1.7e308
    out = helpers._symmetrize(a.copy())
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0, 1], 1.6e308)
    np.testing.assert_allclose(out[1, 0], 1.6e308)


# --- clipped_eigh and clipped_covariance -----------------------------------------------------


def test_clipped_eigh_floor_and_reconstruction(rng):
    cov = random_spd(rng, 6, low=1e-6, high=1.0)
    lam, U = helpers.clipped_eigh(cov, eps=0.1)
    assert lam.min() >= 0.1
    np.testing.assert_allclose(U.T @ U, np.eye(6), atol=1e-12)
    raw = np.linalg.eigvalsh(cov)
    np.testing.assert_allclose(lam, np.maximum(raw, 0.1), rtol=1e-10)


def test_clipped_covariance_is_the_clipped_reconstruction(rng):
    cov = random_spd(rng, 6, low=1e-6, high=1.0)
    lam, U = np.linalg.eigh(cov)
    expected = (U * np.maximum(lam, 0.1)) @ U.T
    clipped = helpers.clipped_covariance(cov, eps=0.1)
    np.testing.assert_allclose(clipped, expected, rtol=1e-10, atol=1e-14)
    assert np.array_equal(clipped, clipped.T)
    np.testing.assert_allclose(np.linalg.eigvalsh(clipped), np.maximum(lam, 0.1), rtol=1e-10)


def test_round_off_negative_eigenvalues_are_accepted(rng):
    # np.cov of n < d samples is singular: its zero eigenvalues come out as round-off of
    # either sign, and must pass as zeros (clipped at eps).
    X = rng.normal(size=(5, 12))
    cov = np.cov(X, rowvar=False)
    raw = np.linalg.eigvalsh(cov)
    assert np.abs(raw[:8]).max() <= 1e-12 * raw.max()  # precondition: rank 4, 8 zeros
    lam, _ = helpers.clipped_eigh(cov, eps=1e-6)
    np.testing.assert_array_equal(lam[:8], 1e-6)
    np.testing.assert_allclose(lam[8:], raw[8:], rtol=1e-10)
    # An eigenvalue below zero by round-off (1e-12 relative) by construction: accepted too.
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    cov = (Q * np.array([-2e-12, 0.5, 1.0, 2.0])) @ Q.T
    assert np.linalg.eigvalsh(cov).min() < -1e-12  # precondition: really negative
    lam, _ = helpers.clipped_eigh(cov, eps=1e-6)
    np.testing.assert_allclose(lam, [1e-6, 0.5, 1.0, 2.0], rtol=1e-10)


# --- gaussian_logpdf ----------------------------------------------------------------------


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


def test_gaussian_logpdf_is_the_whitened_formula(rng):
    d = 6
    A = rng.normal(size=(d, 3))
    cov = A @ A.T  # rank 3: three zero eigenvalues
    mean, X = rng.normal(size=d), rng.normal(size=(40, d))
    lam, U = np.linalg.eigh(cov)
    lam = np.maximum(lam, 0.1)
    z = (X - mean) @ U / np.sqrt(lam)
    expected = -0.5 * (d * np.log(2 * np.pi) + np.log(lam).sum() + (z**2).sum(1))
    np.testing.assert_allclose(helpers.gaussian_logpdf(X, mean, cov, eps=0.1), expected, rtol=1e-12)


def test_logpdf_uses_symmetric_part(rng):
    # An asymmetry at round-off level is accepted and only the symmetric part is used;
    # a real asymmetry (1e-3 here) is not a covariance and is rejected.
    d = 5
    cov = random_spd(rng, d)
    skew = rng.normal(size=(d, d)) * 1e-12
    skew = skew - skew.T
    X = rng.normal(size=(10, d))
    np.testing.assert_allclose(
        helpers.gaussian_logpdf(X, np.zeros(d), cov + skew, eps=1e-12),
        stats.multivariate_normal(np.zeros(d), cov).logpdf(X),
        rtol=1e-9,
    )
    with pytest.raises(ValueError, match="not symmetric"):
        helpers.gaussian_logpdf(X, np.zeros(d), cov + skew * 1e9, eps=1e-12)


def test_logpdf_with_x_and_mean_both_huge():
    x = np.full((1, 2), 1e200)
    out = helpers.gaussian_logpdf(x, np.full(2, 1e200), np.eye(2))
    np.testing.assert_allclose(
        out, helpers.gaussian_logpdf(np.zeros((1, 2)), np.zeros(2), np.eye(2))
    )
    np.testing.assert_allclose(out, [-np.log(2 * np.pi)], rtol=1e-12)  # log N(0 | 0, I_2)


@SETTINGS
@given(
    st.integers(1, 6),
    st.floats(1e-6, 1.0),
    st.sampled_from([1e-3, 1.0, 1e3]),
    st.integers(0, 2**32 - 1),
)
def test_logpdf_equals_clipped_reference(d, eps_relative, scale, seed):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(d, rng.integers(1, d + 1))) * np.sqrt(scale)
    cov = B @ B.T  # possibly singular
    eps = eps_relative * scale  # the floor relative to the data's scale, as a user should choose
    mean = rng.normal(size=d) * np.sqrt(scale)
    X = rng.normal(size=(7, d)) * np.sqrt(scale)
    lam, U = np.linalg.eigh(cov)
    clipped = np.maximum(lam, eps)
    ref = stats.multivariate_normal(mean, (U * clipped) @ U.T).logpdf(X)
    # Both sides lose about cond * machine epsilon to round-off.
    rtol = max(1e-9, 1e-14 * clipped.max() / clipped.min())
    np.testing.assert_allclose(
        helpers.gaussian_logpdf(X, mean, cov, eps=eps), np.atleast_1d(ref), rtol=rtol, atol=1e-9
    )


# ---- appended to tests/test_gaussian.py: round-off is not an error (issue 19, class 3).


def test_a_scatter_that_is_zero_up_to_round_off_is_a_covariance():
    """The scatter of a component that owns one digit: round-off eigenvalues of either sign,
    tiny against eps, which replaces them all (the old check compared them to the largest,
    itself round-off, and raised "eigenvalue -4.59e-87, far below zero")."""
    S = np.diag([-4.59e-87, 1e-90, 0.0, 3e-88])
    np.testing.assert_allclose(helpers.clipped_covariance(S, 1e-3), 1e-3 * np.eye(4), rtol=1e-14)
    lam, _ = helpers.clipped_eigh(S, 1e-3)
    np.testing.assert_array_equal(lam, np.full(4, 1e-3))


def test_a_clearly_negative_eigenvalue_is_still_refused():
    S = np.diag([-1e-6, 1e-3, 1e-3])  # far below zero relative to eps = 1e-3
    with pytest.raises(ValueError, match="far below zero"):
        helpers.clipped_covariance(S, 1e-3)
    with pytest.raises(ValueError, match="far below zero"):
        helpers.clipped_eigh(np.diag([-1e-3, 1.0]), 1e-12)


def test_clipped_covariance_refuses_an_eps_the_matrix_cannot_hold():
    cov = np.diag([1.0, 0.5, 0.0])
    smallest = 3 * np.finfo(np.float64).eps * 1.0
    with pytest.raises(ValueError, match="too small"):
        helpers.clipped_covariance(cov, 0.5 * smallest)
    out = helpers.clipped_covariance(cov, 2 * smallest)
    assert np.linalg.eigvalsh(out).min() >= 0.9 * 2 * smallest
