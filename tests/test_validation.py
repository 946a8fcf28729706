"""Every bad input gets a ValueError or TypeError whose message says what to do."""

import numpy as np
import pytest

import helpers

X_OK = np.random.default_rng(0).normal(size=(20, 3))
Y_OK = np.repeat([0, 1], 10)
GMM_OK = helpers.GMM(np.array([0.5, 0.5]), np.zeros((2, 3)), np.stack([np.eye(3)] * 2))


def with_value(value, row=0, col=0):
    X = X_OK.copy()
    X[row, col] = value
    return X


BAD_X = [
    (with_value(np.nan), ValueError, "NaN or infinite"),
    (with_value(np.inf), ValueError, "NaN or infinite"),
    (X_OK[0], ValueError, "2-D.*reshape"),
    (X_OK[None], ValueError, "2-D"),
    (np.zeros((0, 3)), ValueError, "at least"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, "numbers"),
    ([[1, 2], [3, "x"]], TypeError, "numeric"),
]


@pytest.mark.parametrize("X, exc, match", BAD_X)
@pytest.mark.parametrize("call", [
    lambda X: helpers.gaussian_mle(X),
    lambda X: helpers.gaussian_logpdf(X, np.zeros(3), np.eye(3)),
    lambda X: helpers.naive_gmm(X, np.zeros(len(X) if np.ndim(X) else 1)),
    lambda X: helpers.gmm_loglik(X, GMM_OK),
    lambda X: helpers.kmeans(X, 1),
    lambda X: helpers.fit_gmm(X, 1),
], ids=["mle", "logpdf", "naive_gmm", "loglik", "kmeans", "fit_gmm"])
def test_bad_X(call, X, exc, match):
    with pytest.raises(exc, match=match):
        call(X)


@pytest.mark.parametrize("K", [0, -1, 21])
@pytest.mark.parametrize("fn", [helpers.kmeans, helpers.fit_gmm], ids=["kmeans", "fit_gmm"])
def test_bad_number_of_components(fn, K):
    with pytest.raises(ValueError, match=r"at least 1|exceeds the number of samples"):
        fn(X_OK, K)


@pytest.mark.parametrize("K", [2.0, "3", True])
def test_non_integer_components(K):
    with pytest.raises(TypeError, match="integer"):
        helpers.fit_gmm(X_OK, K)


@pytest.mark.parametrize("eps", [0, -1e-3, np.nan, np.inf])
@pytest.mark.parametrize("call", [
    lambda eps: helpers.gaussian_logpdf(X_OK, np.zeros(3), np.eye(3), eps=eps),
    lambda eps: helpers.sample_gaussian(np.zeros(3), np.eye(3), 2, eps=eps),
    lambda eps: helpers.gmm_loglik(X_OK, GMM_OK, eps=eps),
    lambda eps: helpers.fit_gmm(X_OK, 2, eps=eps),
], ids=["logpdf", "sample", "loglik", "fit_gmm"])
def test_bad_eps(call, eps):
    with pytest.raises(ValueError, match="eps must be positive and finite"):
        call(eps)


def test_eps_of_wrong_type():
    with pytest.raises(TypeError, match="eps"):
        helpers.gaussian_logpdf(X_OK, np.zeros(3), np.eye(3), eps="small")


def test_y_of_wrong_length():
    with pytest.raises(ValueError, match="one label per row"):
        helpers.naive_gmm(X_OK, Y_OK[:-1])


def test_class_with_one_sample():
    y = Y_OK.copy()
    y[0] = 7
    with pytest.raises(ValueError, match=r"classes \[7\] have fewer than 2 samples"):
        helpers.naive_gmm(X_OK, y)


def test_unknown_init():
    with pytest.raises(ValueError, match="init must be 'random', 'kmeans' or a GMM"):
        helpers.fit_gmm(X_OK, 2, init="kmeans++")


def test_init_gmm_of_wrong_shape():
    with pytest.raises(ValueError, match="init has 2 components"):
        helpers.fit_gmm(X_OK, 3, init=GMM_OK)
    bad = helpers.GMM(np.array([0.5, 0.5]), np.zeros((2, 4)), np.stack([np.eye(4)] * 2))
    with pytest.raises(ValueError, match="X has 3 features but the GMM has 4"):
        helpers.fit_gmm(X_OK, 2, init=bad)


@pytest.mark.parametrize("n", [-1, -10])
def test_negative_counts(n):
    with pytest.raises(ValueError, match="n_samples must be >= 0"):
        helpers.sample_gaussian(np.zeros(3), np.eye(3), n)
    with pytest.raises(ValueError, match="n_samples must be >= 0"):
        helpers.sample_gmm(GMM_OK, n)


def test_negative_iterations_and_tolerance():
    with pytest.raises(ValueError, match="max_iter"):
        helpers.fit_gmm(X_OK, 2, max_iter=-1)
    with pytest.raises(ValueError, match="tol"):
        helpers.fit_gmm(X_OK, 2, tol=-1e-3)
    with pytest.raises(ValueError, match="tol"):
        helpers.kmeans(X_OK, 2, tol=np.nan)


@pytest.mark.parametrize("weights, match", [
    ([0.7, 0.7], "sum to 1"),
    ([1.5, -0.5], "non-negative"),
    ([np.nan, 0.5], "finite"),
])
def test_bad_gmm_weights(weights, match):
    gmm = helpers.GMM(np.array(weights), np.zeros((2, 3)), np.stack([np.eye(3)] * 2))
    with pytest.raises(ValueError, match=match):
        helpers.gmm_loglik(X_OK, gmm)


def test_gmm_shape_mismatch():
    gmm = helpers.GMM(np.array([0.5, 0.5]), np.zeros((2, 3)), np.stack([np.eye(3)] * 3))
    with pytest.raises(ValueError, match="shapes disagree"):
        helpers.sample_gmm(gmm, 3)
    with pytest.raises(TypeError, match="GMM"):
        helpers.sample_gmm((GMM_OK.weights, GMM_OK.means, GMM_OK.covariances), 3)


def test_mean_cov_mismatch():
    with pytest.raises(ValueError, match=r"cov must have shape \(3, 3\)"):
        helpers.gaussian_logpdf(X_OK, np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="X has 3 features but mean has 2"):
        helpers.gaussian_logpdf(X_OK, np.zeros(2), np.eye(2))


def test_bad_rng_and_dtype():
    with pytest.raises(TypeError, match="default_rng"):
        helpers.kmeans(X_OK, 2, rng="seed")
    with pytest.raises(TypeError, match="default_rng"):
        helpers.fit_gmm(X_OK, 2, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="float32 or numpy.float64"):
        helpers.fit_gmm(X_OK, 2, dtype=np.int32)


def test_data_on_wrong_scale_warns():
    with pytest.warns(UserWarning, match="exceeds the average variance"):
        helpers.fit_gmm(X_OK * 1e-3, 2, max_iter=2, rng=0)
