"""k-means against scikit-learn's Lloyd algorithm from the same starting centres."""

import numpy as np
import pytest
from sklearn.cluster import KMeans

import helpers
from conftest import make_blobs, requires_mnist


def starting_centres(X, K, seed):
    # The documented first step: K distinct samples drawn with the given seed.
    return X[np.random.default_rng(seed).choice(len(X), size=K, replace=False)]


def cluster_sums(X, labels, K):
    sums = np.zeros((K, X.shape[1]))
    np.add.at(sums, labels, X)
    return sums


def objective(X, centres, labels):
    return float(((X - centres[labels]) ** 2).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_labels_as_sklearn_on_blobs(seed):
    X, _, _ = make_blobs(np.random.default_rng(seed), n_per=(120, 80, 100, 90), d=5, spread=3.0)
    centres, labels, history = helpers.kmeans(X, 4, rng=seed)
    ref = KMeans(4, init=starting_centres(X, 4, seed), n_init=1, algorithm="lloyd", tol=0,
                 max_iter=300).fit(X)
    assert np.array_equal(labels, ref.labels_)
    np.testing.assert_allclose(centres, ref.cluster_centers_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(history[-1], ref.inertia_, rtol=1e-10)


@requires_mnist
def test_same_labels_as_sklearn_on_mnist(mnist_train):
    X = mnist_train[0][:3000]
    centres, labels, history = helpers.kmeans(X, 10, rng=5)
    ref = KMeans(10, init=starting_centres(X, 10, 5), n_init=1, algorithm="lloyd", tol=0,
                 max_iter=300).fit(X)
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


def test_converged_centres_are_cluster_means(rng):
    X, _, _ = make_blobs(rng)
    centres, labels, _ = helpers.kmeans(X, 3, rng=0, max_iter=500)
    for k in range(3):
        np.testing.assert_allclose(centres[k], X[labels == k].mean(axis=0), rtol=1e-10)


def test_max_iter_limits_updates(rng):
    X, _, _ = make_blobs(rng, n_per=(300, 300, 300), spread=1.0)
    _, _, history = helpers.kmeans(X, 6, rng=0, max_iter=2)
    assert len(history) <= 3
    _, _, history0 = helpers.kmeans(X, 6, rng=0, max_iter=0)
    assert len(history0) == 1


def test_assignment_and_sums_match_bruteforce(rng):
    X = rng.normal(size=(1000, 7))
    centres = X[:5] + 0.1
    labels, dist = helpers.assign_clusters(X, centres)
    d2 = ((X[:, None, :] - centres[None]) ** 2).sum(-1)
    assert np.array_equal(labels, d2.argmin(axis=1))
    np.testing.assert_allclose(dist, d2.min(axis=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(helpers._cluster_sums(X, labels, 5), cluster_sums(X, labels, 5), rtol=1e-12)
    counts = np.bincount(labels, minlength=5)[:, None]
    np.testing.assert_allclose(helpers.update_centres(X, labels, 5), cluster_sums(X, labels, 5) / counts,
                               rtol=1e-12)


def test_tol_stops_earlier(rng):
    X, _, _ = make_blobs(rng, n_per=(300, 300, 300), spread=1.0)
    _, _, strict = helpers.kmeans(X, 8, rng=0, tol=0)
    _, _, loose = helpers.kmeans(X, 8, rng=0, tol=0.05)
    assert len(loose) < len(strict)


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
    # cluster must not be re-seeded there (a duplicate centre), but at 0 or 1.
    X = np.array([[5.0]] * 4 + [[0.0], [1.0]])
    labels = np.array([0, 0, 0, 0, 2, 2])
    centres = helpers.update_centres(X, labels, 3)
    np.testing.assert_allclose(centres[[0, 2]], [[5.0], [0.5]])
    assert centres[1, 0] in (0.0, 1.0)


def test_fewer_distinct_points_than_clusters():
    X = np.array([[1.0, 2.0]] * 6 + [[3.0, 4.0]] * 6)
    with pytest.raises(ValueError, match="only 2 distinct rows"):
        helpers.kmeans(X, 3, rng=0)
