"""Section 9 of helpers.py: each speed kernel against the one-line numpy expression in its
docstring, the M-step's skipping of negligible rows, and (last, to be deleted or adapted with
the module-level memo of issue 16) the tests of that memo."""

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
        helpers._log_gaussians(X, means, eighs), expected, rtol=1e-11, atol=1e-9
    )


def test_log_gaussians_float32(rng):
    X = rng.normal(size=(3000, 32))
    means = rng.normal(scale=0.5, size=(2, 32))
    eighs = clipped_eighs(rng, 2, 32, 1e-2, 12)
    expected = log_gaussians_reference(X, means, eighs)
    got = helpers._log_gaussians(X.astype(np.float32), means, eighs)
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
    helpers._log_gaussians(X, np.zeros((1, 32)), eighs)
    assert widths and max(widths) == 12


def test_weighted_scatter_all_rows(rng):
    X = rng.normal(size=(3000, 6))
    r = rng.random(3000)
    mean = rng.normal(size=6)
    expected = (r[:, None] * (X - mean)).T @ (X - mean)
    np.testing.assert_allclose(helpers._weighted_scatter(X, r, mean), expected, rtol=1e-12)
    np.testing.assert_allclose(
        helpers._weighted_scatter(X.astype(np.float32), r, mean), expected, rtol=1e-5
    )


def test_weighted_scatter_skips_exactly_the_promised_rows(rng):
    X = rng.normal(size=(2000, 5))
    r = 10.0 ** rng.uniform(-40, 0, size=2000)  # responsibilities over 40 decades
    mean = rng.normal(size=5)
    radius = helpers._max_row_norm(X)
    tol = 1e-3
    rows = r >= tol / (len(X) * (radius + np.linalg.norm(mean)) ** 2)
    assert 0 < rows.sum() < len(X)  # some rows are skipped, some kept
    expected = (r[rows, None] * (X[rows] - mean)).T @ (X[rows] - mean)
    got = helpers._weighted_scatter(X, r, mean, tol, radius)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    full = (r[:, None] * (X - mean)).T @ (X - mean)
    assert np.linalg.norm(got - full, 2) <= tol  # what is left out is below tol


def test_max_row_norm_is_a_tight_upper_bound(rng):
    X = rng.normal(size=(500, 7))
    exact = np.sqrt((X**2).sum(1)).max()
    bound = helpers._max_row_norm(X)
    assert exact <= bound <= exact * (1 + 1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_squared_distances(rng, dtype):
    X = rng.normal(size=(700, 9)).astype(dtype)
    C = rng.normal(size=(4, 9))
    expected = ((X.astype(np.float64)[:, None, :] - C[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(helpers._squared_distances(X, C), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nearest_centres(rng, dtype):
    X = rng.normal(size=(900, 6)).astype(dtype)
    C = rng.normal(size=(5, 6))
    D = ((X.astype(np.float64)[:, None, :] - C[None]) ** 2).sum(-1)
    labels, sq_dist = helpers._nearest_centres(X, C)
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
    start = helpers._init_gmm(X, 3, "random", np.random.default_rng(0))
    fast, hf = helpers.fit_gmm(X, 3, init=start, max_iter=10, tol=0)
    monkeypatch.setattr(helpers, "_SKIP_ROUNDOFF", 0.0)
    full, hfull = helpers.fit_gmm(X, 3, init=start, max_iter=10, tol=0)
    np.testing.assert_allclose(fast.covariances, full.covariances, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hf, hfull, rtol=1e-13)


# --- the memo of read-only arrays (_MEMO; issue 16 removes it: delete or adapt these) -------


def test_memo_cluster_sums_and_their_update(rng):
    X = rng.normal(size=(1000, 4))
    X.flags.writeable = False  # read-only: the kernel remembers sums
    labels = rng.integers(0, 5, size=1000)
    expected = np.stack([X[labels == k].sum(0) for k in range(5)])
    np.testing.assert_allclose(
        helpers._cluster_sums(X, labels, 5), expected, rtol=1e-12, atol=1e-12
    )
    moved = labels.copy()
    moved[:40] = (moved[:40] + 2) % 5  # few rows move: the update path
    expected = np.stack([X[moved == k].sum(0) for k in range(5)])
    np.testing.assert_allclose(helpers._cluster_sums(X, moved, 5), expected, rtol=1e-10, atol=1e-12)


def test_memo_ignores_writeable_arrays(rng):
    X = rng.normal(size=(50, 3))
    assert helpers._memo(X) is None
    helpers._row_sq_norms(X)
    X[0] = 100.0  # a writeable array may change: nothing remembered
    np.testing.assert_allclose(helpers._row_sq_norms(X)[0], 30000.0)
