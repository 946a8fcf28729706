"""Section 9 of helpers.py: each speed kernel against the one-line numpy expression in its
docstring, the M-step's skipping of negligible rows, the float32 round-off bound and its
fallback, and the kernels' lack of hidden state."""

import warnings

import numpy as np
import pytest
from conftest import make_blobs

import helpers


def clipped_eighs(rng, K, d, eps, n_low):
    """K random covariances with n_low tiny eigenvalues each, clipped at eps."""
    out = []
    for _ in range(K):
        A = rng.normal(size=(d, d - n_low))
        cov = A @ A.T / d
        out.append(helpers.clipped_eigh(cov, eps))
    return out


def log_gaussians_reference(X, means, eighs):
    d = X.shape[1]
    return np.stack(
        [
            -0.5
            * (
                d * np.log(2 * np.pi)
                + np.log(lam).sum()
                + (((X - means[k]) @ U / np.sqrt(lam)) ** 2).sum(1)
            )
            for k, (lam, U) in enumerate(eighs)
        ],
        axis=1,
    )


@pytest.mark.parametrize("n_low", [0, 1, 5, 20])
def test_log_gaussians_float64(rng, n_low):
    # n_low = 0 or 1: the full whitening; 5 and 20 of 32 at the floor: the reduced product
    X = rng.normal(size=(5000, 32))
    means = rng.normal(scale=0.5, size=(3, 32))
    eighs = clipped_eighs(rng, 3, 32, 1e-3, n_low)
    expected = log_gaussians_reference(X, means, eighs)
    np.testing.assert_allclose(
        helpers._log_gaussians(X, means, eighs, helpers._row_sq_norms(X)),
        expected,
        rtol=1e-11,
        atol=1e-9,
    )


def test_log_gaussians_float32(rng):
    X = rng.normal(size=(3000, 32))
    means = rng.normal(scale=0.5, size=(2, 32))
    eighs = clipped_eighs(rng, 2, 32, 1e-2, 12)
    expected = log_gaussians_reference(X, means, eighs)
    X32 = X.astype(np.float32)
    got = helpers._log_gaussians(X32, means, eighs, helpers._row_sq_norms(X32))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_log_gaussians_uses_fewer_columns_when_clipped(rng, monkeypatch):
    # The reduced path multiplies by d - n_floor columns only.
    X = rng.normal(size=(100, 32))
    eighs = clipped_eighs(rng, 1, 32, 1e-3, 20)
    widths = []
    real_matmul = np.matmul

    def spy(a, b, *args, **kwargs):
        widths.append(b.shape[1])
        return real_matmul(a, b, *args, **kwargs)

    monkeypatch.setattr(helpers.np, "matmul", spy)
    helpers._log_gaussians(X, np.zeros((1, 32)), eighs, helpers._row_sq_norms(X))
    assert widths and max(widths) == 12


def test_weighted_scatter_all_rows(rng):
    X = rng.normal(size=(3000, 6))
    r = rng.random(3000)
    mean = rng.normal(size=6)
    expected = (r[:, None] * (X - mean)).T @ (X - mean)
    np.testing.assert_allclose(helpers._weighted_scatter(X, r, mean), expected, rtol=1e-12)
    np.testing.assert_allclose(helpers._weighted_scatter(X, r, mean, eps=0.0), expected, rtol=1e-12)
    np.testing.assert_allclose(
        helpers._weighted_scatter(X.astype(np.float32), r, mean), expected, rtol=1e-5
    )


@pytest.mark.parametrize("eps", [1e10, 1e13])
def test_weighted_scatter_skips_exactly_the_promised_rows(rng, eps):
    X = rng.normal(size=(2000, 5))
    r = 10.0 ** rng.uniform(-40, 0, size=2000)  # responsibilities over 40 decades
    mean = rng.normal(size=5)
    radius = helpers._data_radius(helpers._row_sq_norms(X))
    tol = np.finfo(np.float64).eps / 2 * eps * r.sum()  # u eps N_k, computed inside the kernel
    rows = r >= tol / (len(X) * (radius + np.linalg.norm(mean)) ** 2)
    assert 0 < rows.sum() < len(X)  # some rows are skipped, some kept
    expected = (r[rows, None] * (X[rows] - mean)).T @ (X[rows] - mean)
    got = helpers._weighted_scatter(X, r, mean, eps, radius)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    full = (r[:, None] * (X - mean)).T @ (X - mean)
    assert np.linalg.norm(got - full, 2) <= tol  # what is left out is below tol


def test_data_radius_is_a_tight_upper_bound(rng):
    X = rng.normal(size=(500, 7))
    exact = np.sqrt((X**2).sum(1)).max()
    bound = helpers._data_radius(helpers._row_sq_norms(X))
    assert exact <= bound <= exact * (1 + 1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_squared_distances(rng, dtype):
    X = rng.normal(size=(700, 9)).astype(dtype)
    C = rng.normal(size=(4, 9))
    expected = ((X.astype(np.float64)[:, None, :] - C[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(helpers._squared_distances(X, C), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_assignment_through_centre_scores(rng, dtype):
    # _assign_clusters = argmin of the kernel _centre_scores, plus ||x||^2 at the minimum
    X = rng.normal(size=(900, 6)).astype(dtype)
    C = rng.normal(size=(5, 6))
    D = ((X.astype(np.float64)[:, None, :] - C[None]) ** 2).sum(-1)
    labels, sq_dist = helpers._assign_clusters(X, C, helpers._row_sq_norms(X))
    assert np.array_equal(labels, D.argmin(1))
    np.testing.assert_allclose(sq_dist, D.min(1), rtol=1e-10, atol=1e-12)


def test_cluster_sums(rng):
    X = rng.normal(size=(1000, 4))  # writeable: the plain one-hot product
    labels = rng.integers(0, 5, size=1000)
    expected = np.stack([X[labels == k].sum(0) for k in range(5)])
    np.testing.assert_allclose(
        helpers._cluster_sums(X, labels, 5), expected, rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(
        helpers._cluster_sums(X.astype(np.float32), labels, 5), expected, rtol=1e-5, atol=1e-5
    )


def test_m_step_skipping_is_exact(rng, monkeypatch):
    # The M-step leaves out rows whose responsibility is below round-off; forcing the
    # threshold to zero (every row) must give the same parameters to round-off.
    X, _, _ = make_blobs(rng, n_per=(300, 300, 300), d=6, spread=4.0)
    start = helpers._init_gmm(X, 3, "random", np.random.default_rng(0), 1e-3)
    fast, hf = helpers.fit_gmm(X, 3, init=start, max_iter=10, tol=0)
    monkeypatch.setattr(helpers, "_SKIP_ROUNDOFF", 0.0)
    full, hfull = helpers.fit_gmm(X, 3, init=start, max_iter=10, tol=0)
    np.testing.assert_allclose(fast.covariances, full.covariances, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hf, hfull, rtol=1e-13)


# --- the kernels keep no state: what a loop reuses is passed in (issue 16) -----------------


def test_cluster_sums_updated_from_the_rows_that_moved(rng):
    # (was: the memo of a read-only array; now the k-means loop passes its previous sums)
    X = rng.normal(size=(1000, 4))
    labels = rng.integers(0, 5, size=1000)
    sums = helpers._cluster_sums(X, labels, 5)
    expected = np.stack([X[labels == k].sum(0) for k in range(5)])
    np.testing.assert_allclose(sums, expected, rtol=1e-12, atol=1e-12)
    moved = labels.copy()
    moved[:40] = (moved[:40] + 2) % 5  # few rows move: the update path
    expected = np.stack([X[moved == k].sum(0) for k in range(5)])
    np.testing.assert_allclose(
        helpers._cluster_sums(X, moved, 5, previous=(labels, sums)),
        expected,
        rtol=1e-10,
        atol=1e-12,
    )


def test_row_sq_norms_of_a_changed_array_are_fresh(rng):
    # (was: the memo ignores writeable arrays; now nothing is remembered for any array)
    X = rng.normal(size=(50, 3))
    helpers._row_sq_norms(X)
    X[0] = 100.0
    np.testing.assert_allclose(helpers._row_sq_norms(X)[0], 30000.0)
    X.flags.writeable = False
    np.testing.assert_allclose(helpers._row_sq_norms(X)[0], 30000.0)


def test_row_sq_norms_and_radius(rng):
    X = rng.normal(size=(5000, 7)).astype(np.float32)
    sq = helpers._row_sq_norms(X)
    np.testing.assert_allclose(sq, (X.astype(np.float64) ** 2).sum(1), rtol=1e-12)
    radius = helpers._data_radius(sq)
    assert np.sqrt(sq.max()) <= radius <= np.sqrt(sq.max()) * (1 + 1e-11)


def test_centre_scores_is_distances_less_row_norms(rng):
    X, C = rng.normal(size=(300, 5)), rng.normal(size=(4, 5))
    D = ((X[None, :, :] - C[:, None, :]) ** 2).sum(-1)
    np.testing.assert_allclose(helpers._centre_scores(X, C), D - (X**2).sum(1), atol=1e-10)


def test_cluster_sums_from_previous_equal_a_fresh_sum(rng):
    X = rng.normal(size=(800, 6))
    old = rng.integers(0, 5, 800)
    new = old.copy()
    new[rng.choice(800, 40, replace=False)] = rng.integers(0, 5, 40)  # a few move
    fresh = np.stack([X[new == k].sum(0) for k in range(5)])
    updated = helpers._cluster_sums(X, new, 5, previous=(old, helpers._cluster_sums(X, old, 5)))
    np.testing.assert_allclose(updated, fresh, atol=1e-10)
    # many moved: computed afresh, not from the previous sums
    stale = (old, np.zeros((5, 6)))
    np.testing.assert_allclose(
        helpers._cluster_sums(X, rng.integers(0, 5, 800), 5, previous=stale).sum(),
        X.sum(),
        atol=1e-9,
    )


def _ill_conditioned_component(rng, d, cond, floor):
    Q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    lam = floor * np.geomspace(1.0, cond, d)
    lam[: d // 3] = floor  # clipped directions: the low-rank form is used
    return Q, lam


@pytest.mark.parametrize("cond", [1e2, 1e4, 1e6])
def test_maha_roundoff_bounds_the_float32_error(rng, cond):
    """State the bound, then test it against the plain float64 formula on ill-conditioned data."""
    d = 24
    Q, lam = _ill_conditioned_component(rng, d, cond, 1e-3)
    mean = rng.normal(size=d) * 0.1
    X64 = (
        (mean + rng.normal(size=(3000, d)) * np.sqrt(lam) @ Q.T)
        .astype(np.float32)
        .astype(np.float64)
    )
    X32 = X64.astype(np.float32)
    eighs = [(lam, Q)]
    sq = helpers._row_sq_norms(X64)
    exact = helpers._log_gaussians(X64, mean[None], eighs, sq)[:, 0]
    bound = helpers._maha_roundoff(sq, ((X64 - mean) ** 2).sum(1), mean, lam[0], d)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = helpers._log_gaussians(X32, mean[None], eighs, sq)[:, 0]
    fell_back = any(issubclass(w.category, helpers.Float32PrecisionWarning) for w in caught)
    if cond <= 1e2:
        assert not fell_back  # well conditioned: float32 keeps its promise
    if fell_back:
        np.testing.assert_allclose(got, exact, rtol=1e-12)  # computed in float64
    else:
        assert np.all(2 * np.abs(got - exact) <= bound)  # the error is within the bound


def test_float32_scatter_falls_back_when_it_would_err_beyond_eps(rng):
    X = (rng.normal(size=(500, 3)) * np.array([1e4, 1.0, 1e-3])).astype(np.float32)
    r = rng.random(500)
    mean = (r @ X.astype(np.float64)) / r.sum()
    radius = helpers._data_radius(helpers._row_sq_norms(X))
    with pytest.warns(helpers.Float32PrecisionWarning, match="scatter"):
        S32 = helpers._weighted_scatter(X, r, mean, 1e-8, radius)
    S64 = helpers._weighted_scatter(X.astype(np.float64), r, mean, 1e-8, radius)
    np.testing.assert_allclose(S32, S64, rtol=1e-12, atol=1e-12 * np.abs(S64).max())
