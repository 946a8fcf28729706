"""Section 5 of helpers.py: assign_clusters, update_centres and the loop kmeans.

Against scikit-learn's Lloyd algorithm from the same starting centres, the objective
written out, re-seeding of empty clusters, extreme scales and far-from-origin data, and a
hypothesis property.  (Bad input is in test_validation.py.)
"""

import numpy as np
import pytest
from conftest import data_and_k, make_blobs, requires_mnist
from hypothesis import HealthCheck, given, settings
from sklearn.cluster import KMeans

import helpers

# max_examples comes from the profile loaded in conftest.py (200 by default).
SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])


def starting_centres(X, K, seed):
    # The documented first step: K distinct samples drawn with the given seed.
    return X[np.random.default_rng(seed).choice(len(X), size=K, replace=False)]


def cluster_sums(X, labels, K):
    sums = np.zeros((K, X.shape[1]))
    np.add.at(sums, labels, X)
    return sums


def objective(X, centres, labels):
    return float(((X - centres[labels]) ** 2).sum())


# --- against scikit-learn and the objective -------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_labels_as_sklearn_on_blobs(seed):
    X, _, _ = make_blobs(np.random.default_rng(seed), n_per=(120, 80, 100, 90), d=5, spread=3.0)
    centres, labels, history = helpers.kmeans(X, 4, rng=seed)
    ref = KMeans(
        4, init=starting_centres(X, 4, seed), n_init=1, algorithm="lloyd", tol=0, max_iter=300
    ).fit(X)
    assert np.array_equal(labels, ref.labels_)
    np.testing.assert_allclose(centres, ref.cluster_centers_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(history[-1], ref.inertia_, rtol=1e-10)


@requires_mnist
def test_same_labels_as_sklearn_on_mnist(mnist_train):
    X = mnist_train[0][:3000]
    centres, labels, history = helpers.kmeans(X, 10, rng=5)
    ref = KMeans(
        10, init=starting_centres(X, 10, 5), n_init=1, algorithm="lloyd", tol=0, max_iter=300
    ).fit(X)
    assert np.array_equal(labels, ref.labels_)
    np.testing.assert_allclose(centres, ref.cluster_centers_, atol=1e-10)


def test_history_is_the_objective_and_never_increases(rng):
    X, _, _ = make_blobs(rng, n_per=(100, 100, 100, 100, 100), d=3, spread=2.0)
    centres, labels, history = helpers.kmeans(X, 5, rng=1)
    start = starting_centres(X, 5, 1)
    d0 = ((X[:, None, :] - start[None]) ** 2).sum(-1)
    np.testing.assert_allclose(history[0], d0.min(axis=1).sum(), rtol=1e-10)
    np.testing.assert_allclose(history[-1], objective(X, centres, labels), rtol=1e-10)
    assert np.all(np.diff(history) <= 1e-9 * history[0])
    # labels are the nearest centres
    d = ((X[:, None, :] - centres[None]) ** 2).sum(-1)
    assert np.array_equal(labels, d.argmin(axis=1))


def test_converged_centres_are_cluster_means(blobs):
    X, _, _ = blobs
    centres, labels, _ = helpers.kmeans(X, 3, rng=0, max_iter=500)
    for k in range(3):
        np.testing.assert_allclose(centres[k], X[labels == k].mean(axis=0), rtol=1e-10)


@SETTINGS
@given(data_and_k())
def test_kmeans_objective_never_increases(case):
    X, k, scale, seed = case
    X = X + np.random.default_rng(seed).normal(size=X.shape) * 1e-3 * scale  # distinct rows
    centres, labels, history = helpers.kmeans(X, k, rng=seed)
    assert np.isfinite(centres).all()
    assert np.all(np.diff(history) <= 1e-9 * history[0] + 1e-300)
    np.testing.assert_allclose(
        history[-1], ((X - centres[labels]) ** 2).sum(), rtol=1e-7, atol=1e-12 * scale**2
    )


# --- the steps ----------------------------------------------------------------------------


def test_assignment_and_sums_match_bruteforce(rng):
    X = rng.normal(size=(1000, 7))
    centres = X[:5] + 0.1
    labels, dist = helpers.assign_clusters(X, centres)
    d2 = ((X[:, None, :] - centres[None]) ** 2).sum(-1)
    assert np.array_equal(labels, d2.argmin(axis=1))
    np.testing.assert_allclose(dist, d2.min(axis=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        helpers._cluster_sums(X, labels, 5), cluster_sums(X, labels, 5), rtol=1e-12
    )
    counts = np.bincount(labels, minlength=5)[:, None]
    np.testing.assert_allclose(
        helpers.update_centres(X, labels, 5), cluster_sums(X, labels, 5) / counts, rtol=1e-12
    )


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


def test_update_centres_sees_edits_of_a_relocked_array(rng):
    X = rng.normal(size=(100, 3))
    X.flags.writeable = False
    labels = rng.integers(0, 3, size=100)
    helpers.update_centres(X, labels, 3)
    X.flags.writeable = True
    X[:5] += 100.0  # the user edits the data, then locks it again
    X.flags.writeable = False
    moved = labels.copy()
    moved[:3] = (moved[:3] + 1) % 3
    np.testing.assert_allclose(
        helpers.update_centres(X, moved, 3),
        helpers.update_centres(X.copy(), moved, 3),
        rtol=1e-12,
    )


# --- stopping -----------------------------------------------------------------------------


def test_max_iter_limits_updates(rng):
    X, _, _ = make_blobs(rng, n_per=(300, 300, 300), spread=1.0)
    _, _, full = helpers.kmeans(X, 6, rng=0)
    assert len(full) > 3  # precondition: more than 2 updates to converge
    _, _, history = helpers.kmeans(X, 6, rng=0, max_iter=2)
    np.testing.assert_array_equal(history, full[:3])  # the start and exactly 2 updates
    _, _, history0 = helpers.kmeans(X, 6, rng=0, max_iter=0)
    np.testing.assert_array_equal(history0, full[:1])


def test_tol_stops_at_the_first_small_improvement(rng):
    X, _, _ = make_blobs(rng, n_per=(300, 300, 300), spread=1.0)
    _, _, strict = helpers.kmeans(X, 8, rng=0, tol=0)
    _, _, loose = helpers.kmeans(X, 8, rng=0, tol=0.05)
    # the first update t whose relative improvement is at most tol ends the loop
    small = np.flatnonzero(strict[:-1] - strict[1:] <= 0.05 * strict[:-1])
    stop = int(small[0]) + 1
    assert stop < len(strict) - 1  # precondition: tol stops before convergence
    np.testing.assert_array_equal(loose, strict[: stop + 1])


# --- empty clusters and duplicates ----------------------------------------------------------


def test_empty_cluster_is_reseeded():
    # Two far groups and a centre that starts on a duplicate of another: the
    # duplicated centre's cluster is empty after the first assignment.
    X = np.array([[0.0, 0.0]] * 5 + [[10.0, 10.0]] * 5 + [[0.0, 1.0], [10.0, 11.0]])
    centres, labels, history = helpers.kmeans(X, 3, rng=0)
    assert np.isfinite(centres).all()
    assert len(np.unique(labels)) == 3
    assert np.all(np.diff(history) <= 1e-12)


def test_reseeding_direct():
    X = np.array([[0.0], [1.0], [2.0], [10.0]])
    labels = np.array([0, 0, 0, 0])
    centres = helpers.update_centres(X, labels, 2)
    np.testing.assert_allclose(centres, [[3.25], [10.0]])  # the farthest sample seeds cluster 1


def test_reseeding_avoids_the_new_means():
    # Cluster 0 holds only copies of 5.0 and its mean moves onto them: the empty
    # cluster must not be re-seeded there (a duplicate centre), but at 0 or 1 (both
    # are 0.25 from the nearest other centre: either is right).
    X = np.array([[5.0]] * 4 + [[0.0], [1.0]])
    labels = np.array([0, 0, 0, 0, 2, 2])
    centres = helpers.update_centres(X, labels, 3)
    np.testing.assert_allclose(centres[[0, 2]], [[5.0], [0.5]])
    assert centres[1, 0] in (0.0, 1.0)


def test_duplicated_rows_kmeans():
    X = np.repeat(np.random.default_rng(8).random((5, 3)), 10, axis=0)
    centres, labels, history = helpers.kmeans(X, 5, rng=0)
    assert len(np.unique(labels)) == 5
    assert history[-1] == pytest.approx(0.0, abs=1e-12)
    # each cluster is the ten copies of one row, and its centre that row
    for k in range(5):
        members = X[labels == k]
        assert len(members) == 10 and (members == members[0]).all()
        np.testing.assert_allclose(centres[k], members[0], atol=1e-12)


def test_fewer_distinct_points_than_clusters():
    X = np.array([[1.0, 2.0]] * 6 + [[3.0, 4.0]] * 6)
    with pytest.raises(ValueError, match="only 2 distinct rows"):
        helpers.kmeans(X, 3, rng=0)


# --- extreme scales and far from the origin -------------------------------------------------


@pytest.mark.parametrize("scale", [1e150, 1e-300])
def test_kmeans_at_extreme_scales(rng, scale):
    X, _, _ = make_blobs(rng, n_per=(20, 20), d=2)
    centres, labels, history = helpers.kmeans(X, 2, rng=0)
    centres_s, labels_s, history_s = helpers.kmeans(X * scale, 2, rng=0)
    assert np.array_equal(labels, labels_s)
    np.testing.assert_allclose(centres_s / scale, centres, rtol=1e-10)
    assert np.isfinite(history_s).all()
    # the objective as float64 represents it: ~1e302 for 1e150, 0 (underflow) for 1e-300
    np.testing.assert_allclose(history_s, history * scale * scale, rtol=1e-10, atol=0)


def test_kmeans_objective_beyond_float64_is_a_value_error(rng):
    X, _, _ = make_blobs(rng, n_per=(20, 20), d=2)
    with pytest.raises(ValueError, match="rescale X"):
        helpers.kmeans(X * 1e160, 2, rng=0)  # distances squared ~1e322: not representable


def test_kmeans_tiny_scale_no_false_duplicate_message(rng):
    X = rng.normal(size=(40, 3)) * 1e-300
    centres, labels, _ = helpers.kmeans(X, 40, rng=0)
    assert len(np.unique(labels)) == 40


def test_kmeans_far_from_origin_matches_near(rng):
    X, _, _ = make_blobs(rng, n_per=(50, 50, 50), d=2, spread=1.0)
    _, labels0, history0 = helpers.kmeans(X, 3, rng=1)
    _, labels1, history1 = helpers.kmeans(X + 1e8, 3, rng=1)
    assert np.array_equal(labels0, labels1)
    np.testing.assert_allclose(history1, history0, rtol=1e-6)
    assert np.all(np.diff(history1) <= 0)
