"""Section 9 of helpers.py: each speed kernel against the one-line numpy expression in its
docstring, the M-step's skipping of negligible rows, the float32 round-off bound and its
fallback, the kernels' lack of hidden state, and the steps' calls side by side on the threads
(``_workers``, ``_in_row_chunks``: the same results as one call after the other)."""

import threading
import time
import warnings

import numpy as np
import pytest
from conftest import make_blobs, with_float32_warning

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
        helpers._log_gaussians(helpers._with_ones(X), means, eighs, helpers._row_sq_norms(X)),
        expected,
        rtol=1e-11,
        atol=1e-9,
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_gaussians_mixed_components_and_short_blocks(rng, monkeypatch, dtype):
    # reduced and full components side by side in one product; blocks that do not divide n
    # (and, with few cells allowed, blocks of a few rows) give the same log-densities
    X = rng.normal(size=(1037, 32))
    means = rng.normal(scale=0.5, size=(4, 32))
    eighs = [clipped_eighs(rng, 1, 32, 1e-2, n_low)[0] for n_low in (0, 20, 3, 12)]
    expected = log_gaussians_reference(X, means, eighs)
    rtol = 1e-11 if dtype == np.float64 else 1e-4
    Xd = X.astype(dtype)
    for cells in (helpers._ESTEP_CELLS, 700):
        monkeypatch.setattr(helpers, "_ESTEP_CELLS", cells)
        got = helpers._log_gaussians(
            helpers._with_ones(Xd), means, eighs, helpers._row_sq_norms(Xd)
        )
        np.testing.assert_allclose(got, expected, rtol=rtol)


def test_log_gaussians_float32(rng):
    X = rng.normal(size=(3000, 32))
    means = rng.normal(scale=0.5, size=(2, 32))
    eighs = clipped_eighs(rng, 2, 32, 1e-2, 12)
    expected = log_gaussians_reference(X, means, eighs)
    X32 = X.astype(np.float32)
    got = helpers._log_gaussians(helpers._with_ones(X32), means, eighs, helpers._row_sq_norms(X32))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_log_gaussians_uses_fewer_columns_when_clipped(rng, monkeypatch):
    # The reduced path multiplies by d - n_floor columns only (plus one per component for
    # x . mu_k), in one product W^T [x, 1]^T per block of rows for all components.
    X = rng.normal(size=(100, 32))
    eighs = clipped_eighs(rng, 1, 32, 1e-3, 20) + clipped_eighs(rng, 1, 32, 1e-3, 0)
    shapes = []
    real_matmul = np.matmul

    def spy(a, b, *args, **kwargs):
        shapes.append((a.shape, b.shape))
        return real_matmul(a, b, *args, **kwargs)

    monkeypatch.setattr(helpers.np, "matmul", spy)
    helpers._log_gaussians(
        helpers._with_ones(X), np.zeros((2, 32)), eighs, helpers._row_sq_norms(X)
    )
    assert shapes == [((12 + 32 + 2, 33), (33, 100))]  # 12 unclipped + 32 (no clipping) + x . mu_k


def weighted_mean_scatter_reference(X, r):
    """The one-line meaning: the weighted mean, and the scatter about it."""
    mean = r @ X / r.sum()
    return mean, (r[:, None] * (X - mean)).T @ (X - mean)


@pytest.mark.parametrize("centre_scale", [0.0, 1.0, 30.0])
def test_weighted_scatter_all_rows(rng, centre_scale):
    # exact for every centre c (it changes the round-off only)
    X = rng.normal(size=(3000, 6)) + 2.0
    r = rng.random(3000)
    mean, expected = weighted_mean_scatter_reference(X, r)
    centre = mean + centre_scale * rng.normal(size=6)
    for eps in (0.0, 1e-3):
        got_mean, got = helpers._weighted_scatter(
            helpers._with_ones(X), r, centre, eps, helpers._data_radius(helpers._row_sq_norms(X))
        )
        np.testing.assert_allclose(got_mean, mean, rtol=1e-12)
        np.testing.assert_allclose(got, expected, rtol=1e-11)
    got_mean, got = helpers._weighted_scatter(
        helpers._with_ones(X, dtype=np.float32), r, centre, 1e-3, 1e3
    )
    np.testing.assert_allclose(got_mean, mean, rtol=1e-5)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize("u_eps", [1e-6, 1e-3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_scatter_skips_exactly_the_promised_rows(rng, u_eps, dtype):
    X = rng.normal(size=(2000, 5))
    r = 10.0 ** rng.uniform(-40, 0, size=2000)  # responsibilities over 40 decades
    radius = helpers._data_radius(helpers._row_sq_norms(X))
    u = np.finfo(dtype).eps / 2  # the unit round-off of the working precision
    eps = u_eps / u
    tol = u * eps * r.sum()  # u eps N_k, computed inside the kernel
    rows = r >= tol / (len(X) * 4 * radius**2)
    assert 0 < rows.sum() < len(X)  # some rows are skipped, some kept
    mean, expected = weighted_mean_scatter_reference(X[rows], r[rows])
    got_mean, got = helpers._weighted_scatter(
        helpers._with_ones(X, dtype=dtype), r, mean, eps, radius
    )
    rtol = 1e-11 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got_mean, mean, rtol=rtol)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    if dtype == np.float64:  # what is left out is below tol, and moves the mean by < u eps / 2R
        full_mean, full = weighted_mean_scatter_reference(X, r)
        assert np.linalg.norm(got - full, 2) <= tol
        assert np.linalg.norm(got_mean - full_mean) <= u * eps / (2 * radius) + 1e-15


def test_weighted_scatter_far_centre_is_recentred_in_float32(rng):
    # a centre far from the mean would cost float32 its digits: the kernel sums again about
    # the mean it found (no warning), and agrees with float64
    X = (rng.normal(size=(4000, 4)) * 0.1).astype(np.float32)
    r = rng.random(4000)
    mean, expected = weighted_mean_scatter_reference(X.astype(np.float64), r)
    radius = helpers._data_radius(helpers._row_sq_norms(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error", helpers.Float32PrecisionWarning)
        got_mean, got = helpers._weighted_scatter(
            helpers._with_ones(X), r, mean + 1e3, 1e-3, radius
        )
    np.testing.assert_allclose(got_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


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
    monkeypatch.setattr(helpers, "_SKIP_RTOL", 0.0)
    full, hfull = helpers.fit_gmm(X, 3, init=start, max_iter=10, tol=0)
    scale = np.abs(full.covariances).max()  # round-off of a scatter entry: ~u trace / N_k
    np.testing.assert_allclose(fast.covariances, full.covariances, rtol=1e-12, atol=1e-13 * scale)
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
    exact = helpers._log_gaussians(helpers._with_ones(X64), mean[None], eighs, sq)[:, 0]
    bound = helpers._maha_roundoff(sq, ((X64 - mean) ** 2).sum(1), mean, lam[0], d)
    got, fell_back = with_float32_warning(
        helpers._log_gaussians, helpers._with_ones(X32), mean[None], eighs, sq
    )
    got = got[:, 0]
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
        S32 = helpers._weighted_scatter(helpers._with_ones(X), r, mean, 1e-8, radius)[1]
    S64 = helpers._weighted_scatter(helpers._with_ones(X, dtype=np.float64), r, mean, 1e-8, radius)[
        1
    ]
    np.testing.assert_allclose(S32, S64, rtol=1e-12, atol=1e-12 * np.abs(S64).max())


@pytest.mark.parametrize("x_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dtype", [None, np.float32, np.float64])
def test_with_ones(rng, x_dtype, dtype):
    # its one-line meaning: [X - offset, 1], the difference rounded once to dtype
    X = (rng.normal(size=(50, 7)) + 1e7).astype(x_dtype)
    offset = X.astype(np.float64).mean(axis=0)
    got = helpers._with_ones(X, offset, dtype)
    want = dtype or x_dtype
    expected = np.hstack([X - offset, np.ones((50, 1))]).astype(want)
    assert got.dtype == want
    np.testing.assert_array_equal(got, expected)
    # far from the origin, rounding X to float32 before subtracting would keep no digit
    if x_dtype == np.float64 and want == np.float32:
        np.testing.assert_allclose(got[:, :-1], X - offset, rtol=1e-6)
        assert not np.allclose(np.subtract(X, offset, dtype=np.float32), X - offset, rtol=1e-2)


def test_exp_tiny_to_zero(rng):
    # its one-line meaning, on the edges (the flush point, the float64 underflow range,
    # infinities, nan) and on random exponents; within 1e-304 of np.exp everywhere
    edges = np.array([-np.inf, -1e6, -800.0, -745.2, -708.5, -700.0, -699.999, -50.0, 0.0, 3.0])
    a = np.concatenate([edges, rng.uniform(-900, 5, size=10_000), [np.inf, np.nan]])
    with np.errstate(over="ignore"):
        got = helpers._exp_tiny_to_zero(a)
        plain = np.exp(a)
    np.testing.assert_array_equal(got, np.where(a <= -700, 0, plain))
    assert np.isnan(got[-1]) and got[-2] == np.inf
    finite = np.isfinite(plain)
    assert np.all(np.abs(got[finite] - plain[finite]) < 1e-304)
    assert got[a > -700].min() > 0  # nothing above the flush point is lost


def test_logsumexp_equals_the_plain_formula(rng):
    # the terms _exp_tiny_to_zero drops are below 1e-304 next to the largest, exp(0) = 1:
    # on these rows (and on any not built to sit on a rounding boundary) to the last bit
    a = rng.normal(size=(2000, 12)) * 400.0
    a[:5] = -np.inf  # rows of only -inf (weight-0 components)
    a[5:50, 3] = -np.inf
    a[50:60, :] = rng.uniform(-1, 1, size=(10, 12)) - 1e5  # tiny likelihoods, same scale
    m = np.max(a, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        plain = m[:, 0] + np.log(np.sum(np.exp(a - m), axis=1))
    np.testing.assert_array_equal(helpers.logsumexp(a, axis=1), plain)
    assert np.all(helpers.logsumexp(a, axis=1)[:5] == -np.inf)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_negligible_to_zero(rng, dtype):
    # its one-line meaning, and what it promises: no subnormal entry, products unchanged
    # beyond u ||x|| ||w|| / sqrt(d)
    d = 64
    W = rng.normal(size=(d, 5)) * 10.0 ** rng.uniform(-45, 0, size=(d, 5))
    Wd = W.astype(dtype)
    u = np.finfo(dtype).eps / 2
    expected = np.where(np.abs(Wd) < u / d * np.abs(Wd).max(0), 0, Wd)
    got = helpers._negligible_to_zero(W, dtype)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)
    nonzero = np.abs(got[got != 0])
    assert nonzero.min() >= np.finfo(dtype).tiny  # no subnormal left
    x = rng.normal(size=(100, d))
    change = np.abs(x @ (got.astype(np.float64) - Wd.astype(np.float64)))
    allowed = (
        u
        * np.linalg.norm(x, axis=1)[:, None]
        * np.linalg.norm(Wd.astype(np.float64), axis=0)
        / np.sqrt(d)
    )
    assert np.all(change <= allowed)


def test_log_gaussians_with_subnormal_eigenvector_entries(rng):
    # eigenvector entries below float32's smallest normal number (MNIST's border pixels)
    # reach the float32 product as zeros, and the log-densities stay within the bound
    d = 32
    # four "border pixels" (coordinates 0-3) with weights of about 1e-42 in the other
    # directions; orthogonal to float64's precision
    Q = np.zeros((d, d))
    Q[:4, :4] = np.eye(4)
    Q[4:, 4:] = np.linalg.qr(rng.normal(size=(d - 4, d - 4)))[0]
    E = 1e-42 * rng.normal(size=(4, d - 4))
    Q[:4, 4:], Q[4:, :4] = E, -E.T
    np.testing.assert_allclose(Q.T @ Q, np.eye(d), atol=1e-15)
    tiny = (np.abs(Q[:4, 16:]) < np.finfo(np.float32).tiny) & (Q[:4, 16:] != 0)
    assert tiny.all()  # the premise: float32 would hold these as subnormals
    lam = np.geomspace(1e-3, 1.0, d)
    lam[: d // 2] = 1e-3
    X = rng.normal(size=(2000, d)) * np.sqrt(lam) @ Q.T
    X[:, :4] = 0.0
    eighs = [(lam, Q)]
    exact = helpers._log_gaussians(
        helpers._with_ones(X), np.zeros((1, d)), eighs, helpers._row_sq_norms(X)
    )
    X32 = X.astype(np.float32)
    got = helpers._log_gaussians(
        helpers._with_ones(X32), np.zeros((1, d)), eighs, helpers._row_sq_norms(X32)
    )
    maha = -2 * exact - (d * np.log(2 * np.pi) + np.log(lam).sum())
    assert np.all(np.abs(got - exact) <= helpers._F32_RTOL * (d + maha) / 2)  # the guarantee


@pytest.mark.parametrize("scale", [1e-21, 1e-8, 1.0, 1e8, 1e19])
def test_float32_log_gaussians_at_extreme_scales_keep_the_promise_or_warn(rng, scale):
    # (review of issue 20) the last row of W multiplies the constant 1: zeroing it with the
    # x rows was wrong at large and small scales; x . mu_k can overflow float32 at 1e19
    d, K = 40, 2
    X = rng.normal(size=(200, d)) * scale
    means = rng.normal(size=(K, d)) * scale * 0.3
    eighs = []
    for _ in range(K):
        A = rng.normal(size=(d, d))
        lam, U = np.linalg.eigh(A @ A.T / d * scale**2)
        eighs.append((np.maximum(lam, lam[9]), U))  # ten directions at the floor
    exact = helpers._log_gaussians(helpers._with_ones(X), means, eighs, helpers._row_sq_norms(X))
    X32 = X.astype(np.float32)
    got, warned = with_float32_warning(
        helpers._log_gaussians, helpers._with_ones(X32), means, eighs, helpers._row_sq_norms(X32)
    )
    X32_64 = X32.astype(np.float64)  # what float32 holds of the data
    held = helpers._log_gaussians(
        helpers._with_ones(X32_64), means, eighs, helpers._row_sq_norms(X32_64)
    )
    logdet = np.array([np.log(lam).sum() for lam, _ in eighs])
    maha = -2 * held - (d * np.log(2 * np.pi) + logdet)
    assert np.all(np.isfinite(got))
    assert warned or np.all(np.abs(got - held) <= helpers._F32_RTOL * (d + maha) / 2)
    if scale in (1e-8, 1.0, 1e8):
        assert not warned  # ordinary scales stay in float32
    assert exact.shape == got.shape


def test_e_step_is_accurate_far_from_the_origin(rng):
    # (review of issue 20) e_step and gmm_log_prob centre the data, so that
    # ||x||^2 - 2 x.mu + ||mu||^2 does not cancel: data offset by 1e7 in float64
    d = 6
    X = rng.normal(size=(300, d)) + 1e7
    gmm = helpers.GMM([0.5, 0.5], X[:2], [np.eye(d), 2 * np.eye(d)])
    expected = np.stack(
        [
            np.log(0.5) - 0.5 * (d * np.log(2 * np.pi) + d * np.log(v) + ((X - m) ** 2).sum(1) / v)
            for m, v in zip(X[:2], (1.0, 2.0))
        ],
        axis=1,
    )
    np.testing.assert_allclose(helpers.gmm_log_prob(X, gmm, eps=1e-6), expected, rtol=1e-9)
    resp, _ = helpers.e_step(X, gmm, eps=1e-6)
    np.testing.assert_allclose(
        resp, np.exp(expected - helpers.logsumexp(expected)[:, None]), rtol=1e-8
    )


# --- The calls side by side: _workers and _in_row_chunks ---------------------------------


def _blas_threads_now():
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_workers_map_is_the_list_comprehension(monkeypatch, threads):
    monkeypatch.setattr(helpers, "_blas_threads", lambda blas: threads)
    items = list(range(7))
    with helpers._workers() as workers:
        assert workers.threads == threads
        # the late items finish first: the results still come in the order of the items
        got = list(workers.map(lambda i: (time.sleep(0.01 * (7 - i)), i * i)[1], items))
        assert list(workers.map(lambda i: i, [])) == []
    assert got == [i * i for i in items]


def test_workers_run_side_by_side_with_one_blas_thread_each(monkeypatch):
    # two calls that wait for each other finish only if they run at the same time
    from threadpoolctl import threadpool_limits

    monkeypatch.setattr(helpers, "_blas_threads", lambda blas: 2)
    barrier = threading.Barrier(2, timeout=10)
    with threadpool_limits(2, user_api="blas"):  # (so that "its threads back" can fail)
        before = _blas_threads_now()
        with helpers._workers() as workers:
            got = list(workers.map(lambda i: (barrier.wait(), _blas_threads_now())[1], [0, 1]))
            assert set(_blas_threads_now()) == {1}  # in the caller's thread too
        assert _blas_threads_now() == before == [2] * len(before)  # BLAS has its threads back
    assert all(threads and set(threads) == {1} for threads in got)  # one BLAS thread each


def test_workers_calls_keep_the_callers_numpy_error_settings(monkeypatch):
    monkeypatch.setattr(helpers, "_blas_threads", lambda blas: 2)

    def divide(i):
        return np.float64(1.0) / np.float64(i)

    with helpers._workers() as workers, np.errstate(divide="raise"):
        with pytest.raises(FloatingPointError):
            list(workers.map(divide, [1, 0]))
    with helpers._workers() as workers, np.errstate(divide="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert list(workers.map(divide, [2, 0])) == [0.5, np.inf]


def test_blas_threads_is_the_most_threads_of_the_blas_libraries():
    class Lib:
        def __init__(self, n):
            self.num_threads = n

    class Blas:
        def __init__(self, *threads):
            self.lib_controllers = [Lib(n) for n in threads]

    assert helpers._blas_threads(Blas()) == 1  # no BLAS found: one after the other
    assert helpers._blas_threads(Blas(2, 4)) == 4
    from threadpoolctl import ThreadpoolController, threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        assert helpers._blas_threads(ThreadpoolController().select(user_api="blas")) == 1


def test_workers_for_little_work_run_the_calls_in_turn_with_one_blas_thread(monkeypatch):
    monkeypatch.setattr(helpers, "_blas_threads", lambda blas: 2)
    with helpers._workers(helpers._PARALLEL_WORK - 1) as workers:
        assert workers.threads == 1
        got = list(workers.map(lambda i: (threading.get_ident(), _blas_threads_now()), [0, 1]))
    assert {ident for ident, _ in got} == {threading.get_ident()}  # in the caller's thread
    assert all(set(threads) == {1} for _, threads in got)  # the same numbers as with threads
    with helpers._workers(helpers._PARALLEL_WORK) as workers:
        assert workers.threads == 2


def test_workers_raise_the_exception_of_a_call(monkeypatch):
    from threadpoolctl import threadpool_limits

    monkeypatch.setattr(helpers, "_blas_threads", lambda blas: 2)

    def fn(i):
        if i == 3:
            raise ValueError("item 3")
        return i

    with threadpool_limits(2, user_api="blas"):
        with pytest.raises(ValueError, match="item 3"):
            with helpers._workers() as workers:
                list(workers.map(fn, range(6)))
        assert set(_blas_threads_now()) == {2}  # BLAS has its threads back


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("threads, cells", [(2, None), (3, None), (7, 700), (64, None)])
def test_in_row_chunks_equals_one_call(rng, monkeypatch, dtype, threads, cells):
    # n not a multiple of the block, more threads than blocks, blocks of a few rows (few
    # cells allowed): the E-step in chunks is the E-step on all the rows, to the last bit
    from threadpoolctl import threadpool_limits

    n, d, K = 5 * helpers._ESTEP_BLOCK + 37, 12, 3
    X = rng.normal(size=(n, d))
    means = rng.normal(scale=0.5, size=(K, d))
    eighs = clipped_eighs(rng, K, d, 1e-3, 4)
    weights = np.array([0.2, 0.3, 0.5])
    if cells is not None:
        monkeypatch.setattr(helpers, "_ESTEP_CELLS", cells)
    X_one, sq = helpers._with_ones(X, dtype=dtype), helpers._row_sq_norms(X)
    with threadpool_limits(1):
        resp, log_norm = helpers._e_step(X_one, weights, means, eighs, sq)
        log_prob = helpers._log_prob(X_one, weights, means, eighs, sq)
    monkeypatch.setattr(helpers, "_blas_threads", lambda blas: threads)
    with helpers._workers() as workers:
        got_resp, got_norm = helpers._in_row_chunks(
            workers, helpers._e_step, X_one, weights, means, eighs, row_sq_norms=sq
        )
        got = helpers._in_row_chunks(
            workers, helpers._log_prob, X_one, weights, means, eighs, row_sq_norms=sq
        )
    np.testing.assert_array_equal(got_resp, resp)
    np.testing.assert_array_equal(got_norm, log_norm)
    np.testing.assert_array_equal(got, log_prob)


def test_float32_fallback_in_chunks_is_that_of_one_call(rng, monkeypatch):
    # one chunk of rows needs float64 for a component, the other does not: each chunk keeps
    # the guarantee, so the E-step in chunks does too
    d, n = 8, 4 * helpers._ESTEP_BLOCK
    eighs = [(np.full(d, 1e-3), np.eye(d))]
    mean = np.zeros((1, d))
    mean[0, 0] = 3e3  # far from the origin
    X = rng.normal(size=(n, d)) * 0.03
    X[: n // 2] += mean  # the first chunk's rows near the mean: ||x||^2 / f - ... cancels
    X = X.astype(np.float32).astype(np.float64)  # (the data as float32 holds them)
    sq = helpers._row_sq_norms(X)
    exact = helpers._log_gaussians(helpers._with_ones(X), mean, eighs, sq)[:, 0]
    maha = -2 * exact - (d * np.log(2 * np.pi) + d * np.log(1e-3))
    X_one32 = helpers._with_ones(X, dtype=np.float32)
    for rows, falls_back in ((slice(0, n // 2), True), (slice(n // 2, n), False)):
        assert (
            with_float32_warning(helpers._log_gaussians, X_one32[rows], mean, eighs, sq[rows])[1]
            == falls_back
        )
    monkeypatch.setattr(helpers, "_blas_threads", lambda blas: 2)
    with helpers._workers() as workers:
        got, warned = with_float32_warning(
            helpers._in_row_chunks,
            workers,
            helpers._log_gaussians,
            X_one32,
            mean,
            eighs,
            row_sq_norms=sq,
        )
    assert warned
    assert np.all(np.abs(got[:, 0] - exact) <= helpers._F32_RTOL * (d + maha) / 2)
    np.testing.assert_allclose(got[: n // 2, 0], exact[: n // 2], rtol=1e-12)  # in float64
    # decided block by block, the fallback is the same in chunks as in one call
    one, _ = with_float32_warning(helpers._log_gaussians, X_one32, mean, eighs, sq)
    np.testing.assert_array_equal(got, one)
