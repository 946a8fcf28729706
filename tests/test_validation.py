"""Section 11 of helpers.py: every public function's bad input gets a ValueError or
TypeError whose message says what to do.

Grouped by kind of input: data X, counts and numbers (eps, n_components, n_samples, ...),
covariances, labels, GMMs, responsibilities, random generators and dtypes, the loader's
arguments, and the plotting functions' arguments.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import make_blobs, write_idx_folder

import helpers

X_OK = np.random.default_rng(0).normal(size=(20, 3))
Y_OK = np.repeat([0, 1], 10)
GMM_OK = helpers.GMM(np.array([0.5, 0.5]), np.zeros((2, 3)), np.stack([np.eye(3)] * 2))
RESP_OK = np.full((20, 2), 0.5)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def with_value(value, row=0, col=0):
    X = X_OK.copy()
    X[row, col] = value
    return X


# --- data X -------------------------------------------------------------------------------

BAD_X = [
    (with_value(np.nan), ValueError, "NaN or infinite"),
    (with_value(np.inf), ValueError, "NaN or infinite"),
    (X_OK[0], ValueError, "2-D.*reshape"),
    (X_OK[None], ValueError, "2-D"),
    (np.zeros((0, 3)), ValueError, "at least"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, "numbers"),
    ([[1, 2], [3, "x"]], TypeError, "numeric"),
]

X_CALLS = {
    "mle": lambda X: helpers.gaussian_mle(X),
    "logpdf": lambda X: helpers.gaussian_logpdf(X, np.zeros(3), np.eye(3)),
    "naive_gmm": lambda X: helpers.naive_gmm(X, np.zeros(len(X) if np.ndim(X) else 1)),
    "loglik": lambda X: helpers.gmm_loglik(X, GMM_OK),
    "kmeans": lambda X: helpers.kmeans(X, 1),
    "fit_gmm": lambda X: helpers.fit_gmm(X, 1),
    "log_prob": lambda X: helpers.gmm_log_prob(X, GMM_OK),
    "e_step": lambda X: helpers.e_step(X, GMM_OK),
    "responsibilities": lambda X: helpers.gmm_responsibilities(X, GMM_OK),
    "predict": lambda X: helpers.gmm_predict(X, GMM_OK),
    "assign_clusters": lambda X: helpers.assign_clusters(X, np.zeros((1, 3))),
    "update_centres": lambda X: helpers.update_centres(X, np.zeros(20, dtype=int), 1),
    "m_step": lambda X: helpers.m_step(X, RESP_OK),
    "em_lower_bound": lambda X: helpers.em_lower_bound(X, GMM_OK, RESP_OK),
    "nn_A": lambda X: helpers.nearest_neighbour_distance(X, X_OK),
    "nn_B": lambda X: helpers.nearest_neighbour_distance(X_OK, X),
}


@pytest.mark.parametrize("X, exc, match", BAD_X)
@pytest.mark.parametrize("call", X_CALLS.values(), ids=X_CALLS.keys())
def test_bad_X(call, X, exc, match):
    with pytest.raises(exc, match=match):
        call(X)


@pytest.mark.parametrize(
    "call",
    [
        lambda bad: helpers.gaussian_mle(bad),
        lambda bad: helpers.kmeans(bad, 1),
        lambda bad: helpers.fit_gmm(bad, 1),
        lambda bad: helpers.gaussian_logpdf(np.zeros((1, 2)), bad[0], np.eye(2)),
        lambda bad: helpers.gaussian_logpdf(np.zeros((1, 2)), np.zeros(2), bad),
        lambda bad: helpers.GMM(bad[0], np.zeros((2, 2)), np.stack([np.eye(2)] * 2)),
    ],
    ids=["mle", "kmeans", "fit_gmm", "mean", "cov", "weights"],
)
@pytest.mark.parametrize(
    "bad",
    [np.ones((2, 2)) * (0.5 + 1j), np.array([["1", "2"], ["3", "4"]])],
    ids=["complex", "strings"],
)
def test_complex_and_strings_rejected_everywhere(call, bad):
    with pytest.raises(TypeError, match="real"):
        call(bad)


def test_masked_arrays_rejected():
    X = np.ma.masked_array(np.ones((4, 2)), mask=[[0, 1]] * 4)
    with pytest.raises(TypeError, match="masked"):
        helpers.gaussian_mle(X)


def test_features_must_agree():
    with pytest.raises(ValueError, match="X has 3 features but centres has 2"):
        helpers.assign_clusters(X_OK, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="centres contains 6 NaN"):
        helpers.assign_clusters(X_OK, np.full((2, 3), np.nan))
    for call in (
        helpers.gmm_log_prob,
        helpers.e_step,
        helpers.gmm_loglik,
        helpers.gmm_responsibilities,
        helpers.gmm_predict,
    ):
        with pytest.raises(ValueError, match="X has 2 features but the GMM has 3"):
            call(X_OK[:, :2], GMM_OK)
    with pytest.raises(ValueError, match="X has 2 features but the GMM has 3"):
        helpers.em_lower_bound(X_OK[:, :2], GMM_OK, RESP_OK)


def test_data_on_wrong_scale_warns():
    with pytest.warns(UserWarning, match="exceeds the average variance"):
        helpers.fit_gmm(X_OK * 1e-3, 2, max_iter=2, rng=0)


# --- counts and numbers -------------------------------------------------------------------


@pytest.mark.parametrize("K", [0, -1, 21])
@pytest.mark.parametrize("fn", [helpers.kmeans, helpers.fit_gmm], ids=["kmeans", "fit_gmm"])
def test_bad_number_of_components(fn, K):
    with pytest.raises(ValueError, match=r"at least 1|exceeds the number of samples"):
        fn(X_OK, K)


@pytest.mark.parametrize("K", [2.0, "3", True])
def test_non_integer_components(K):
    with pytest.raises(TypeError, match="integer"):
        helpers.fit_gmm(X_OK, K)


EPS_CALLS = {
    "logpdf": lambda eps: helpers.gaussian_logpdf(X_OK, np.zeros(3), np.eye(3), eps=eps),
    "sample": lambda eps: helpers.sample_gaussian(np.zeros(3), np.eye(3), 2, eps=eps),
    "loglik": lambda eps: helpers.gmm_loglik(X_OK, GMM_OK, eps=eps),
    "fit_gmm": lambda eps: helpers.fit_gmm(X_OK, 2, eps=eps),
    "clipped_eigh": lambda eps: helpers.clipped_eigh(np.eye(3), eps=eps),
    "clipped_covariance": lambda eps: helpers.clipped_covariance(np.eye(3), eps=eps),
    "sample_gmm": lambda eps: helpers.sample_gmm(GMM_OK, 2, eps=eps),
    "log_prob": lambda eps: helpers.gmm_log_prob(X_OK, GMM_OK, eps=eps),
    "e_step": lambda eps: helpers.e_step(X_OK, GMM_OK, eps=eps),
    "predict": lambda eps: helpers.gmm_predict(X_OK, GMM_OK, eps=eps),
    "m_step": lambda eps: helpers.m_step(X_OK, RESP_OK, eps=eps),
    "em_lower_bound": lambda eps: helpers.em_lower_bound(X_OK, GMM_OK, RESP_OK, eps=eps),
    "plot_spectrum": lambda eps: helpers.plot_spectrum([1.0, 0.5], eps=eps),
}


@pytest.mark.parametrize("eps", [0, -1e-3, np.nan, np.inf])
@pytest.mark.parametrize("call", EPS_CALLS.values(), ids=EPS_CALLS.keys())
def test_bad_eps(call, eps):
    with pytest.raises(ValueError, match="eps must be positive and finite"):
        call(eps)


def test_eps_of_wrong_type():
    with pytest.raises(TypeError, match="eps"):
        helpers.gaussian_logpdf(X_OK, np.zeros(3), np.eye(3), eps="small")
    with pytest.raises(TypeError, match="eps must be a positive number"):
        helpers.clipped_eigh(np.eye(2), eps="a")


@pytest.mark.parametrize("n", [-1, -10])
def test_negative_counts(n):
    with pytest.raises(ValueError, match="n_samples must be >= 0"):
        helpers.sample_gaussian(np.zeros(3), np.eye(3), n)
    with pytest.raises(ValueError, match="n_samples must be >= 0"):
        helpers.sample_gmm(GMM_OK, n)


def test_non_integer_counts():
    with pytest.raises(TypeError, match="n_samples must be an integer"):
        helpers.sample_gaussian(np.zeros(3), np.eye(3), 2.5)
    with pytest.raises(TypeError, match="max_iter must be an integer"):
        helpers.kmeans(X_OK, 2, max_iter=1.5)


def test_negative_iterations_and_tolerance():
    with pytest.raises(ValueError, match="max_iter"):
        helpers.fit_gmm(X_OK, 2, max_iter=-1)
    with pytest.raises(ValueError, match="tol"):
        helpers.fit_gmm(X_OK, 2, tol=-1e-3)
    with pytest.raises(ValueError, match="tol"):
        helpers.kmeans(X_OK, 2, tol=np.nan)
    with pytest.raises(ValueError, match="max_iter must be >= 0"):
        helpers.kmeans(X_OK, 2, max_iter=-1)
    with pytest.raises(ValueError, match="verbose must be >= 0"):
        helpers.fit_gmm(X_OK, 2, verbose=-1)


def test_numeric_parameters_are_checked():
    X = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ValueError, match="block"):
        helpers.nearest_neighbour_distance(X, X, block=0)
    with pytest.raises(TypeError, match="block"):
        helpers.nearest_neighbour_distance(X, X, block=2.5)
    with pytest.raises(ValueError, match="n_cols"):
        helpers.plot_digits(np.zeros((2, 4)), n_cols=0)
    with pytest.raises(ValueError, match="eps"):
        helpers.sample_gaussian(np.zeros(2), np.eye(2), 0, eps=-1.0)
    gmm = helpers.GMM([1.0], [[0.0, 0.0]], [np.eye(2)])
    with pytest.raises(ValueError, match="eps"):
        helpers.sample_gmm(gmm, 0, eps=0.0)


def test_sample_count_too_large_for_memory():
    with pytest.raises(ValueError, match="GiB"):
        helpers.sample_gaussian(np.zeros(256), np.eye(256), 10**13, rng=0)
    gmm = helpers.GMM([1.0], [np.zeros(256)], [np.eye(256)])
    with pytest.raises(ValueError, match="GiB"):
        helpers.sample_gmm(gmm, 10**13, rng=0)


# --- covariances and means ----------------------------------------------------------------


@pytest.mark.parametrize(
    "cov, exc, match",
    [
        (np.eye(3)[:2], ValueError, "square"),
        (np.ones(3), ValueError, "square"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), ValueError, "finite"),
        (np.eye(2) * (1 + 1j), TypeError, "real"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "real"),
        (np.array([[1.0, 0.5], [0.0, 1.0]]), ValueError, "not symmetric"),
        (np.array([[1.0, 0.0], [0.0, -0.5]]), ValueError, "below zero"),
    ],
)
@pytest.mark.parametrize(
    "fn", [helpers.clipped_eigh, helpers.clipped_covariance], ids=["eigh", "covariance"]
)
def test_clipped_eigh_checks_its_input(fn, cov, exc, match):
    with pytest.raises(exc, match=match):
        fn(cov)


def test_mean_cov_mismatch():
    with pytest.raises(ValueError, match=r"cov must have shape \(3, 3\)"):
        helpers.gaussian_logpdf(X_OK, np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="X has 3 features but mean has 2"):
        helpers.gaussian_logpdf(X_OK, np.zeros(2), np.eye(2))


# --- labels -------------------------------------------------------------------------------


def test_y_of_wrong_length():
    with pytest.raises(ValueError, match="one label per row"):
        helpers.naive_gmm(X_OK, Y_OK[:-1])


def test_class_with_one_sample():
    y = Y_OK.copy()
    y[0] = 7
    with pytest.raises(ValueError, match=r"classes \[7\] have fewer than 2 samples"):
        helpers.naive_gmm(X_OK, y)


@pytest.mark.parametrize(
    "labels, exc, match",
    [
        (np.array([]), ValueError, "one label per row"),
        (np.array([0, "b", 1, "b"], dtype=object), TypeError, "integer labels"),
        (np.array([0.0, np.nan, 1.0, 1.0]), ValueError, "NaN, inf or non-integer"),
        (np.array([0, None, 1, 1], dtype=object), TypeError, "integer labels"),
        (np.array([0, 1j, 1, 1]), TypeError, "integer labels"),
    ],
)
def test_bad_labels(labels, exc, match):
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(exc, match=match):
        helpers.naive_gmm(X, labels)


def test_string_labels_are_class_names_for_naive_gmm_only():
    X = np.arange(8.0).reshape(4, 2)
    assert helpers.naive_gmm(X, np.array(["a", "b", "a", "b"])).n_components == 2
    with pytest.raises(TypeError, match="integer"):
        helpers.update_centres(X, np.array(["0", "1", "0", "1"]), 2)


def test_cluster_labels_out_of_range_or_length():
    with pytest.raises(ValueError, match="integers from 0 to 1, got 5 to 5"):
        helpers.update_centres(X_OK, np.full(20, 5), 2)
    with pytest.raises(ValueError, match="one label per row of X"):
        helpers.update_centres(X_OK, np.zeros(19, dtype=int), 2)


@pytest.mark.parametrize(
    "fn", [helpers.contingency_matrix, helpers.adjusted_rand_index], ids=["contingency", "ari"]
)
def test_partitions_of_different_shapes(fn):
    with pytest.raises(ValueError, match="1-D of equal length"):
        fn([0, 1], [0])
    with pytest.raises(ValueError, match="1-D of equal length"):
        fn(np.zeros((2, 2)), np.zeros((2, 2)))


# --- GMMs and initialisations ---------------------------------------------------------------


def test_unknown_init():
    with pytest.raises(ValueError, match="init must be 'random', 'kmeans' or a GMM"):
        helpers.fit_gmm(X_OK, 2, init="kmeans++")


def test_init_gmm_of_wrong_shape():
    with pytest.raises(ValueError, match="init has 2 components"):
        helpers.fit_gmm(X_OK, 3, init=GMM_OK)
    bad = helpers.GMM(np.array([0.5, 0.5]), np.zeros((2, 4)), np.stack([np.eye(4)] * 2))
    with pytest.raises(ValueError, match="X has 3 features but the GMM has 4"):
        helpers.fit_gmm(X_OK, 2, init=bad)


def test_init_gmm_with_a_covariance_that_is_not_one():
    bad = helpers.GMM([0.5, 0.5], np.zeros((2, 3)), np.stack([np.diag([1.0, 1.0, -1.0])] * 2))
    with pytest.raises(ValueError, match=r"init.covariances\[0\] has an eigenvalue -1"):
        helpers.fit_gmm(X_OK, 2, init=bad)


@pytest.mark.parametrize(
    "weights, match",
    [
        ([0.7, 0.7], "sum to 1"),
        ([1.5, -0.5], "non-negative"),
        ([np.nan, 0.5], "finite"),
    ],
)
def test_bad_gmm_weights(weights, match):
    """A GMM is checked when it is built, so a bad one never reaches a function."""
    with pytest.raises(ValueError, match=match):
        helpers.GMM(np.array(weights), np.zeros((2, 3)), np.stack([np.eye(3)] * 2))


def test_gmm_shape_mismatch():
    with pytest.raises(ValueError, match="shapes disagree"):
        helpers.GMM(np.array([0.5, 0.5]), np.zeros((2, 3)), np.stack([np.eye(3)] * 3))
    with pytest.raises(TypeError, match="GMM"):
        helpers.sample_gmm((GMM_OK.weights, GMM_OK.means, GMM_OK.covariances), 3)


@pytest.mark.parametrize(
    "call",
    [
        lambda g: helpers.gmm_log_prob(X_OK, g),
        lambda g: helpers.e_step(X_OK, g),
        lambda g: helpers.gmm_predict(X_OK, g),
        lambda g: helpers.em_lower_bound(X_OK, g, RESP_OK),
        lambda g: helpers.fit_gmm(X_OK, 2, init=g),
    ],
    ids=["log_prob", "e_step", "predict", "em_lower_bound", "fit_gmm_init"],
)
def test_not_a_gmm(call):
    with pytest.raises((TypeError, ValueError), match="GMM"):
        call(tuple(GMM_OK))


def test_m_step_previous_must_be_a_gmm():
    resp = np.column_stack([np.ones(20), np.zeros(20)])  # component 1 empty: previous is read
    with pytest.raises(TypeError, match="GMM"):
        helpers.m_step(X_OK, resp, previous=tuple(GMM_OK))


# --- responsibilities ----------------------------------------------------------------------


BAD_RESP = [
    (RESP_OK[:-1], ValueError, r"resp must have shape \(n_samples=20"),
    (np.full(20, 1.0), ValueError, r"resp must have shape \(n_samples=20"),
    (np.tile([1.5, -0.5], (20, 1)), ValueError, "finite and non-negative"),
    (np.where(np.eye(20, 2) > 0, np.nan, 0.5), ValueError, "finite and non-negative"),
    ([["a", "b"]] * 20, TypeError, "numeric array of real numbers"),
]


@pytest.mark.parametrize("resp, exc, match", BAD_RESP)
@pytest.mark.parametrize(
    "call",
    [
        lambda r: helpers.m_step(X_OK, r),
        lambda r: helpers.em_lower_bound(X_OK, GMM_OK, r),
    ],
    ids=["m_step", "em_lower_bound"],
)
def test_bad_resp(call, resp, exc, match):
    with pytest.raises(exc, match=match):
        call(resp)


def test_em_lower_bound_needs_distributions_over_the_components():
    with pytest.raises(ValueError, match="resp has 3 columns but the GMM has 2 components"):
        helpers.em_lower_bound(X_OK, GMM_OK, np.full((20, 3), 1 / 3))
    with pytest.raises(ValueError, match="each row of resp must sum to 1"):
        helpers.em_lower_bound(X_OK, GMM_OK, np.full((20, 2), 0.4))


# --- random generators, dtypes, other arguments ---------------------------------------------


def test_bad_rng_and_dtype():
    with pytest.raises(TypeError, match="default_rng"):
        helpers.kmeans(X_OK, 2, rng="seed")
    with pytest.raises(TypeError, match="default_rng"):
        helpers.fit_gmm(X_OK, 2, rng=np.random.RandomState(0))
    with pytest.raises(TypeError, match="default_rng"):
        helpers.sample_gmm(GMM_OK, 2, rng="x")
    with pytest.raises(ValueError, match="float32 or numpy.float64"):
        helpers.fit_gmm(X_OK, 2, dtype=np.int32)


def test_fallback_notice_split():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        helpers.fallback_notice(X_OK, "validation")


@pytest.mark.usefixtures("no_mnist_dir")
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "validation"}, "split"),
        ({"size": 3}, "size"),
        ({"size": 16.0}, "size"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": -5}, "n_samples"),
    ],
)
def test_load_mnist_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        helpers.load_mnist(root=tmp_path, **kwargs)


# --- plotting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: helpers.plot_digits(np.zeros((0, 256))), ValueError, "empty"),
        (lambda: helpers.plot_digits(np.full((2, 256), np.nan)), ValueError, "no finite value"),
        (lambda: helpers.plot_image(np.full(256, np.nan)), ValueError, "no finite value"),
        (lambda: helpers.plot_image("abc"), TypeError, "numeric array"),
        (lambda: helpers.plot_covariance(np.zeros((0, 0))), ValueError, "empty"),
        (lambda: helpers.plot_spectrum([]), ValueError, "empty"),
        (lambda: helpers.plot_spectrum([-1.0, 0.0]), ValueError, "no positive value"),
        (lambda: helpers.plot_loglik([]), ValueError, "non-empty list"),
        (
            lambda: helpers.plot_loglik([np.array([1.0, 2.0])], labels=["a", "b"]),
            ValueError,
            "one entry per history",
        ),
        (lambda: helpers.plot_confusion([[np.nan]]), ValueError, "no finite value"),
        (lambda: helpers.plot_digits(np.zeros((2, 256)), ax="axes"), TypeError, "matplotlib Axes"),
        (lambda: helpers.plot_digits(np.zeros((2, 15))), ValueError, "not a square image"),
        (lambda: helpers.plot_digits(np.zeros((2, 4, 4))), ValueError, "1 or 2 dimensions"),
        (lambda: helpers.plot_digits(np.zeros((2, 16)), n_cols=1.5), TypeError, "n_cols"),
        (lambda: helpers.plot_image(np.zeros(15)), ValueError, "not a square image"),
        (lambda: helpers.plot_covariance(np.zeros((2, 3))), ValueError, "square matrix"),
        (lambda: helpers.plot_loglik("abc"), ValueError, "non-empty list"),
        (
            lambda: helpers.plot_loglik([np.arange(3.0)], colors="r"),
            ValueError,
            "one entry per history",
        ),
    ],
)
def test_plotting_rejects_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


ELLIPSE_MEANS, ELLIPSE_COV = np.zeros(2), np.eye(2)
SHAPES_2D = r"\(n_components, 2, 2\).*2-D only"
POSITIVE = r"n_std must be positive numbers"


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"means": np.zeros((1, 3)), "covariances": np.eye(3)[None]}, ValueError, SHAPES_2D),
        ({"means": np.zeros((2, 2)), "covariances": np.eye(2)[None]}, ValueError, SHAPES_2D),
        ({"means": np.zeros((1, 1, 2))}, ValueError, "means must have 1 or 2 dimensions"),
        ({"means": np.array([np.nan, 0.0])}, ValueError, "must be finite"),
        ({"covariances": np.array([[1.0, np.nan], [np.nan, 1.0]])}, ValueError, "must be finite"),
        ({"covariances": np.diag([1.0, -1.0])}, ValueError, "below zero"),
        ({"covariances": np.array([[1.0, 0.5], [0.0, 1.0]])}, ValueError, "not symmetric"),
        ({"means": np.array(["a", "b"])}, TypeError, "numeric array"),
        ({"means": np.zeros((0, 2)), "covariances": np.zeros((0, 2, 2))}, ValueError, "empty"),
        ({"n_std": (0,)}, ValueError, POSITIVE),
        ({"n_std": (1, -2)}, ValueError, POSITIVE),
        ({"n_std": ()}, ValueError, POSITIVE),
        ({"n_std": (np.nan,)}, ValueError, POSITIVE),
        ({"n_std": [[1, 2]]}, ValueError, POSITIVE),
        ({"colors": ["r", "b"]}, ValueError, r"colors must be a list with one entry per component"),
        ({"colors": "r"}, ValueError, r"colors must be a list with one entry per component \(1\)"),
        ({"labels": ["a", "b"]}, ValueError, r"labels must be a list with one entry per component"),
        ({"ax": "axes"}, TypeError, "matplotlib Axes or None"),
    ],
)
def test_plot_gaussian_ellipses_rejects_bad_input(kwargs, exc, match):
    args = {"means": ELLIPSE_MEANS, "covariances": ELLIPSE_COV, **kwargs}
    with pytest.raises(exc, match=match):
        helpers.plot_gaussian_ellipses(**args)


# ---- appended to tests/test_validation.py: torch tensors (issue 19, class 5), every documented
# Raises/Warns triggered (class 1), degenerate shapes (class 4), an immutable GMM (issue 16).


def _tensor(a):
    torch = pytest.importorskip("torch")
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


def _label_tensor(y):
    torch = pytest.importorskip("torch")
    return torch.tensor(np.asarray(y))


def _data(seed=0):
    X, y, _ = make_blobs(np.random.default_rng(seed), n_per=(40, 30, 50), d=3)
    return X, y


def _same(a, b):
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        if isinstance(u, helpers.GMM):
            for p, q in zip(u, v):
                np.testing.assert_array_equal(p, q)
        else:
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


TORCH_CALLS = {
    "gaussian_mle": lambda X, y, T, L: helpers.gaussian_mle(T(X)),
    "clipped_eigh": lambda X, y, T, L: helpers.clipped_eigh(T(np.cov(X.T))),
    "clipped_covariance": lambda X, y, T, L: helpers.clipped_covariance(T(np.cov(X.T))),
    "gaussian_logpdf": lambda X, y, T, L: helpers.gaussian_logpdf(
        T(X), T(X.mean(0)), T(np.cov(X.T))
    ),
    "sample_gaussian": lambda X, y, T, L: helpers.sample_gaussian(
        T(X.mean(0)), T(np.cov(X.T)), 5, rng=0
    ),
    "naive_gmm": lambda X, y, T, L: helpers.naive_gmm(T(X), L(y)),
    "logsumexp": lambda X, y, T, L: helpers.logsumexp(T(X), axis=1),
    "assign_clusters": lambda X, y, T, L: helpers.assign_clusters(T(X), T(X[:3])),
    "update_centres": lambda X, y, T, L: helpers.update_centres(T(X), L(y), 3),
    "kmeans": lambda X, y, T, L: helpers.kmeans(T(X), 3, rng=0),
    "fit_gmm": lambda X, y, T, L: helpers.fit_gmm(T(X), 3, rng=0, max_iter=3),
    "nearest_neighbour_distance": lambda X, y, T, L: helpers.nearest_neighbour_distance(
        T(X[:5]), T(X)
    ),
    "contingency_matrix": lambda X, y, T, L: helpers.contingency_matrix(L(y), L(y)),
    "adjusted_rand_index": lambda X, y, T, L: helpers.adjusted_rand_index(L(y), y),
}


@pytest.mark.parametrize("name", sorted(TORCH_CALLS))
def test_torch_tensors_are_accepted_as_arrays(name):
    """One policy: a tensor (requires_grad included) counts as ``t.detach().cpu().numpy()``."""
    X, y = _data()
    call = TORCH_CALLS[name]
    _same(call(X, y, _tensor, _label_tensor), call(X, y, np.asarray, np.asarray))


def test_torch_tensors_in_a_gmm_and_its_functions():
    X, y = _data()
    gmm = helpers.naive_gmm(X, y)
    from_tensors = helpers.GMM(_tensor(gmm.weights), _tensor(gmm.means), _tensor(gmm.covariances))
    _same(from_tensors, gmm)
    for fn in (helpers.e_step, helpers.gmm_log_prob, helpers.gmm_loglik, helpers.gmm_predict):
        _same(fn(_tensor(X), gmm), fn(X, gmm))
    resp = helpers.e_step(X, gmm)[0]
    _same(helpers.m_step(_tensor(X), _tensor(resp)), helpers.m_step(X, resp))
    assert helpers.em_lower_bound(_tensor(X), gmm, _tensor(resp)) == helpers.em_lower_bound(
        X, gmm, resp
    )


def test_load_mnist_split_must_be_a_string():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        helpers.load_mnist(split=["train"])
    with pytest.raises(ValueError, match="split must be"):
        helpers.fallback_notice(np.zeros((3, 4)), split=["train"])


def test_gmm_with_zero_features_or_components_is_refused():
    with pytest.raises(ValueError, match="at least one component and one feature"):
        helpers.GMM([1.0], np.zeros((1, 0)), np.zeros((1, 0, 0)))
    with pytest.raises(ValueError, match="at least one component"):
        helpers.GMM(np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3, 3)))


@pytest.mark.parametrize("fn", [helpers.contingency_matrix, helpers.adjusted_rand_index])
def test_empty_labels_are_refused(fn):
    with pytest.raises(ValueError, match="empty"):
        fn([], [])


def test_gmm_cannot_be_changed_unchecked():
    gmm = helpers.GMM([0.5, 0.5], np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    with pytest.raises(AttributeError):
        gmm.anything = 1  # no instance dict
    with pytest.raises(AttributeError):
        gmm.weights = np.array([0.2, 0.8])
    with pytest.raises(ValueError, match="sum to 1"):
        gmm._replace(weights=np.array([0.9, 0.9]))
    with pytest.raises(ValueError, match="sum to 1"):
        helpers.GMM._make([np.array([0.9, 0.9]), gmm.means, gmm.covariances])
    with pytest.raises(ValueError, match="not symmetric"):
        gmm._replace(covariances=np.stack([[[1.0, 0.5], [0.0, 1.0]]] * 2))
    replaced = gmm._replace(weights=[0.25, 0.75])
    assert replaced.weights.tolist() == [0.25, 0.75] and not replaced.weights.flags.writeable
    assert not hasattr(gmm, "__dict__")
    import pickle

    _same(pickle.loads(pickle.dumps(gmm)), gmm)


def test_no_module_level_mutable_state():
    """helpers keeps no caches: besides functions, classes and modules, its module-level names
    are immutable constants (numbers, strings, tuples, read-only mappings), unchanged by a fit."""
    import __future__

    import types

    immutable = (int, float, str, tuple, frozenset, bytes, type(None), types.MappingProxyType)
    constants = {}
    for name, value in vars(helpers).items():
        if name.startswith("__") or isinstance(value, (types.FunctionType, types.ModuleType, type)):
            continue
        if isinstance(value, __future__._Feature):  # from __future__ import annotations
            continue
        assert isinstance(value, immutable), f"helpers.{name} is a mutable {type(value).__name__}"
        constants[name] = value
    X, _ = _data()
    helpers.fit_gmm(X, 3, rng=0, max_iter=2)
    helpers.kmeans(X, 3, rng=0)
    assert {k: v for k, v in vars(helpers).items() if k in constants} == constants


def test_fit_writes_nothing_onto_its_input_or_start():
    X, y = _data()
    X.flags.writeable = True
    start = helpers.naive_gmm(X, y)
    copy = X.copy()
    helpers.fit_gmm(X, 3, init=start, max_iter=3)
    np.testing.assert_array_equal(X, copy)
    assert X.flags.writeable
    assert not hasattr(start, "__dict__")


# Every "Raises" and "Warns" entry of every public docstring, with an input that triggers it.
def _raises_one_distinct():
    return helpers.kmeans(np.repeat(np.arange(3.0), 10)[:, None], 4, rng=0, max_iter=0)


def _load_half(tmp_path_factory=None):
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp())
    raw = root / "MNIST" / "raw"
    write_idx_folder(raw)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).unlink()
    return helpers.load_mnist("test", root=root, download=False)


def _collapse():
    X = (
        np.r_[np.zeros((30, 2)), np.ones((30, 2))]
        + np.random.default_rng(0).normal(size=(60, 2)) * 1e-3
    )
    start = helpers.GMM(
        [0.5, 0.49, 0.01], [[0, 0], [1, 1], [50, 50]], np.stack([np.eye(2) * 1e-2] * 3)
    )
    return helpers.fit_gmm(X, 3, init=start, eps=1e-6, max_iter=3)


DOCUMENTED = {
    ("load_mnist", "ValueError"): (ValueError, lambda: helpers.load_mnist(size=3)),
    ("load_mnist", "MNISTFilesMissingError"): (helpers.MNISTFilesMissingError, _load_half),
    ("clipped_eigh", "ValueError"): (ValueError, lambda: helpers.clipped_eigh(-np.eye(2))),
    ("clipped_eigh", "TypeError"): (TypeError, lambda: helpers.clipped_eigh(np.eye(2), eps="1e-3")),
    ("clipped_covariance", "ValueError"): (
        ValueError,
        lambda: helpers.clipped_covariance(np.eye(2), 1e-20),
    ),
    ("e_step", "ValueError"): (
        ValueError,
        lambda: helpers.e_step(
            np.array([[1e300, 0.0]]), helpers.GMM([1.0], [[0.0, 0.0]], [np.eye(2)])
        ),
    ),
    ("update_centres", "ValueError"): (
        ValueError,
        lambda: helpers.update_centres(np.zeros((5, 2)), np.zeros(5, dtype=int), 2),
    ),
    ("kmeans", "ValueError"): (ValueError, _raises_one_distinct),
    ("m_step", "ValueError"): (
        ValueError,
        lambda: helpers.m_step(np.zeros((4, 2)), np.c_[np.ones(4), np.zeros(4)]),
    ),
    ("fit_gmm", "ValueError"): (
        ValueError,
        lambda: helpers.fit_gmm(np.zeros((3, 2)) + [[0, 0], [1, 1], [2, 2]], 2, eps=5e-324),
    ),
    ("fit_gmm", "RuntimeWarning"): (RuntimeWarning, _collapse),
    ("fit_gmm", "UserWarning"): (
        UserWarning,
        lambda: helpers.fit_gmm(np.random.default_rng(0).normal(size=(50, 2)) * 1e-3, 2, rng=0),
    ),
    ("fit_gmm", "Float32PrecisionWarning"): (
        helpers.Float32PrecisionWarning,
        lambda: helpers.fit_gmm(
            np.random.default_rng(0).normal(size=(200, 5)) * [1e3, 1, 1e-3, 1e-3, 1e3],
            3,
            eps=1e-5,
            rng=0,
            max_iter=2,
            dtype=np.float32,
        ),
    ),
}


def _documented_entries():
    import inspect
    import re

    found = set()
    for name in helpers.__all__:
        obj = getattr(helpers, name)
        doc = inspect.getdoc(obj) or ""
        for section in ("Raises", "Warns"):
            m = re.search(section + r"\n-+\n(.*?)(?:\n\n[A-Z][A-Za-z ]+\n-+\n|\Z)", doc, re.S)
            if m:
                found |= {
                    (name, line.strip())
                    for line in m.group(1).splitlines()
                    if line and not line[0].isspace()
                }
    return found


def test_every_documented_raise_has_a_trigger():
    assert _documented_entries() == set(DOCUMENTED)


@pytest.mark.parametrize("key", sorted(DOCUMENTED), ids=lambda k: f"{k[0]}-{k[1]}")
def test_documented_raise_is_triggered(key):
    exc, trigger = DOCUMENTED[key]
    if issubclass(exc, Warning):
        with pytest.warns(exc):
            trigger()
    else:
        with pytest.raises(exc):
            trigger()
