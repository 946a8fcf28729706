"""Section 7 of helpers.py: nearest_neighbour_distance, contingency_matrix,
adjusted_rand_index, against brute force and scikit-learn.  (Bad input is in
test_validation.py.)
"""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics.cluster import contingency_matrix as sk_contingency

import helpers


def test_nearest_neighbour_distance_bruteforce(rng):
    A, B = rng.normal(size=(37, 5)), rng.normal(size=(53, 5))
    ref = np.sqrt(((A[:, None, :] - B[None]) ** 2).sum(-1)).min(axis=1)
    np.testing.assert_allclose(
        helpers.nearest_neighbour_distance(A, B, block=8), ref, rtol=1e-9, atol=1e-12
    )
    assert np.allclose(helpers.nearest_neighbour_distance(B[:4], B), 0, atol=1e-6)
    with pytest.raises(ValueError, match="features"):
        helpers.nearest_neighbour_distance(A, B[:, :3])


def test_nearest_neighbour_far_from_origin():
    A = np.array([[1e8, 1e8]])
    B = np.array([[1e8 + 0.05, 1e8], [1e8 + 3.0, 1e8]])
    np.testing.assert_allclose(helpers.nearest_neighbour_distance(A, B), [0.05], rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_ari_and_contingency_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.7, t, rng.integers(0, 6, 200)) + 10
    assert np.array_equal(helpers.contingency_matrix(t, p), sk_contingency(t, p))
    assert helpers.adjusted_rand_index(t, p) == pytest.approx(adjusted_rand_score(t, p), abs=1e-12)
    assert helpers.adjusted_rand_index(t, t) == pytest.approx(1.0)
