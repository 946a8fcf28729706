"""Reliability: concurrent loads, stale caches, lying files, overflow, far-from-origin data,
complete validation, an immutable GMM, plotting input (issue 12, one section per class)."""

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import helpers
from conftest import ROOT, make_blobs
from test_data import N_TEST, N_TRAIN, idx_bytes, no_download, no_mnist_dir, write_idx_folder  # noqa: F401 (fixtures)

matplotlib.use("Agg")


# --- 1. Two loads at once ---------------------------------------------------------

LOADER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {root!r})
    import helpers
    X, y = helpers.load_mnist("train", root={cache!r})
    np.save({out!r}, np.round(X * 255).astype(np.uint8))
""")


def test_two_concurrent_first_loads_both_succeed(tmp_path):
    # Large enough that decompressing takes a while: the second process starts while
    # the first is still staging into the same empty folder.
    source = tmp_path / "source"
    source.mkdir()
    rng = np.random.default_rng(0)
    import gzip
    for name, (shape, magic) in {
        "train-images-idx3-ubyte": ((6000, 28, 28), 2051), "train-labels-idx1-ubyte": ((6000,), 2049),
        "t10k-images-idx3-ubyte": ((10, 28, 28), 2051), "t10k-labels-idx1-ubyte": ((10,), 2049),
    }.items():
        data = rng.integers(0, 10 if len(shape) == 1 else 256, shape)
        with gzip.open(source / (name + ".gz"), "wb", compresslevel=9) as fh:
            fh.write(idx_bytes(data, magic))
    env = dict(os.environ, MNIST_DIR=str(source))
    procs = []
    for i in range(3):
        code = LOADER.format(root=str(ROOT), cache=str(tmp_path / "cache"), out=str(tmp_path / f"out{i}.npy"))
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err.decode()[-2000:]
    first = np.load(tmp_path / "out0.npy")
    assert first.shape == (6000, 256)
    for i in (1, 2):
        assert np.array_equal(np.load(tmp_path / f"out{i}.npy"), first)
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


# --- 2. Stale or mismatched data --------------------------------------------------

def test_cache_under_another_split_name_is_not_trusted(tmp_path, no_download):
    data = write_idx_folder(tmp_path / "MNIST" / "raw")
    helpers.load_mnist("train", root=tmp_path)
    (tmp_path / "mnist-test-16px.npz").write_bytes((tmp_path / "mnist-train-16px.npz").read_bytes())
    X, y = helpers.load_mnist("test", root=tmp_path)
    assert X.shape == (N_TEST, 256)
    np.testing.assert_array_equal(y, data["t10k-labels-idx1-ubyte"][0])


def test_cache_is_rebuilt_when_raw_files_are_replaced(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw, seed=0)
    X0, _ = helpers.load_mnist(root=tmp_path)
    data = write_idx_folder(raw, seed=1)
    for name in data:                                   # new content, same size, new time
        os.utime(raw / name, ns=(10**18, 10**18))
    X1, y1 = helpers.load_mnist(root=tmp_path)
    assert not np.array_equal(X0, X1)
    np.testing.assert_array_equal(y1, data["train-labels-idx1-ubyte"][0])


def test_staged_copy_follows_a_source_of_the_same_size(tmp_path, monkeypatch, no_download):
    source = tmp_path / "source"
    write_idx_folder(source, seed=0)
    monkeypatch.setenv("MNIST_DIR", str(source))
    X0, _ = helpers.load_mnist(root=tmp_path / "cache")
    data = write_idx_folder(source, seed=1)             # same sizes, new content
    for name in data:
        os.utime(source / name, ns=(10**18, 10**18))
    X1, y1 = helpers.load_mnist(root=tmp_path / "cache")
    assert not np.array_equal(X0, X1)
    np.testing.assert_array_equal(y1, data["train-labels-idx1-ubyte"][0])


# --- 3. Data files that lie ---------------------------------------------------------

def test_labels_outside_0_9(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw)
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(N_TRAIN, 12), 2049))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.*0 to 9.*12"):
        helpers.load_mnist(root=tmp_path)


def test_file_with_zero_images(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw)
    (raw / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((0, 28, 28)), 2051))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*no images"):
        helpers.load_mnist(root=tmp_path)


def test_header_dimensions_whose_product_overflows(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw)
    header = (2051).to_bytes(4, "big") + b"".join((2**31).to_bytes(4, "big") for _ in range(3))
    (raw / "train-images-idx3-ubyte").write_bytes(header + bytes(100))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated or padded"):
        helpers.load_mnist(root=tmp_path)


def test_empty_gz_in_mnist_dir_names_the_source(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "source", gz=True)
    (tmp_path / "source" / "train-labels-idx1-ubyte.gz").write_bytes(b"")
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "source"))
    with pytest.raises(ValueError, match=r"source.train-labels-idx1-ubyte\.gz.*(empty|decompress)"):
        helpers.load_mnist(root=tmp_path / "cache")


def test_bad_file_in_mnist_dir_names_the_source_and_the_fix(tmp_path, monkeypatch, no_download):
    source = tmp_path / "source"
    write_idx_folder(source)
    (source / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(N_TRAIN, 11), 2049))
    monkeypatch.setenv("MNIST_DIR", str(source))
    with pytest.raises(ValueError) as info:
        helpers.load_mnist(root=tmp_path / "cache")
    message = str(info.value)
    assert message.startswith(str(source / "train-labels-idx1-ubyte"))
    assert "replace it in MNIST_DIR" in message


@pytest.mark.parametrize("missing, split", [
    (["t10k-labels-idx1-ubyte"], "test"),
    (["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"], "test"),
    (["train-images-idx3-ubyte"], "train"),
])
def test_raw_folder_missing_some_files_says_which(tmp_path, no_download, missing, split):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw)
    for name in missing:
        (raw / name).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", helpers.MNISTFallbackWarning)   # never a fallback here
        with pytest.raises(ValueError, match=missing[-1]):
            helpers.load_mnist(split, root=tmp_path)


def test_root_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        helpers.load_mnist(root=tmp_path / "afile")


def test_read_only_root_with_mnist_dir_loads_and_warns(tmp_path, monkeypatch, no_download):
    data = write_idx_folder(tmp_path / "source")
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "source"))
    root = tmp_path / "readonly"
    root.mkdir()
    monkeypatch.setattr(helpers, "_writable", lambda folder: False)   # as on a read-only disk
    real_mkstemp = helpers.tempfile.mkstemp

    def no_cache(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == root:
            raise PermissionError("read-only file system")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(helpers.tempfile, "mkstemp", no_cache)
    with pytest.warns(UserWarning, match="cannot write the cache"):
        X, y = helpers.load_mnist(root=root)
    np.testing.assert_array_equal(y, data["train-labels-idx1-ubyte"][0])
    assert not (root / "MNIST").exists()                 # nothing was written under root


def test_fallback_warning_names_the_split_files_and_how_to_set_mnist_dir(tmp_path, no_download):
    with pytest.warns(helpers.MNISTFallbackWarning) as record:
        helpers.load_mnist("test", root=tmp_path)
    message = str(record[0].message)
    assert "t10k-images-idx3-ubyte" in message and "train-images" not in message
    assert "os.environ['MNIST_DIR']" in message


# --- 4. Overflow from finite inputs -------------------------------------------------

def test_symmetrize_near_the_largest_float():
    a = np.full((3, 3), 1.5e308)
    a[0, 1] = 1.7e308
    out = helpers._symmetrize(a.copy())
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0, 1], 1.6e308)


@pytest.mark.parametrize("scale", [1e-200, 1e153, 1e-153])
def test_gaussian_mle_at_extreme_scales(rng, scale):
    X = rng.normal(size=(50, 3))
    mean, cov = helpers.gaussian_mle(X)
    mean_s, cov_s = helpers.gaussian_mle(X * scale)
    np.testing.assert_allclose(mean_s / scale, mean, rtol=1e-12, atol=1e-12)
    if scale ** 2 > 1e-300:
        np.testing.assert_allclose(cov_s / scale ** 2, cov, rtol=1e-12)
    assert np.isfinite(cov_s).all()


def test_gaussian_mle_that_cannot_be_represented():
    X = np.array([[1e200, 0.0], [-1e200, 1.0]])
    with pytest.raises(ValueError, match="rescale X"):
        helpers.gaussian_mle(X)


@pytest.mark.parametrize("scale", [1e150, 1e-300])
def test_kmeans_at_extreme_scales(rng, scale):
    X, _, _ = make_blobs(rng, n_per=(20, 20), d=2)
    centres, labels, history = helpers.kmeans(X, 2, rng=0)
    centres_s, labels_s, history_s = helpers.kmeans(X * scale, 2, rng=0)
    assert np.array_equal(labels, labels_s)
    np.testing.assert_allclose(centres_s / scale, centres, rtol=1e-10)
    assert np.isfinite(history_s).all()


def test_kmeans_objective_beyond_float64_is_a_value_error(rng):
    X, _, _ = make_blobs(rng, n_per=(20, 20), d=2)
    with pytest.raises(ValueError, match="rescale X"):
        helpers.kmeans(X * 1e160, 2, rng=0)       # distances squared ~1e322: not representable


def test_kmeans_tiny_scale_no_false_duplicate_message(rng):
    X = rng.normal(size=(40, 3)) * 1e-300
    centres, labels, _ = helpers.kmeans(X, 40, rng=0)
    assert len(np.unique(labels)) == 40


def test_fit_gmm_overflow_is_a_value_error(rng):
    X, _, _ = make_blobs(rng, d=3)
    with pytest.raises(ValueError, match="rescale"):
        helpers.fit_gmm(X * 1e200, 2, rng=0, max_iter=3)


def test_logpdf_with_x_and_mean_both_huge():
    x = np.full((1, 2), 1e200)
    out = helpers.gaussian_logpdf(x, np.full(2, 1e200), np.eye(2))
    np.testing.assert_allclose(out, helpers.gaussian_logpdf(np.zeros((1, 2)), np.zeros(2), np.eye(2)))


@settings(max_examples=40)
@given(log_scale=st.floats(-150, 150), offset=st.floats(-1e8, 1e8), seed=st.integers(0, 2**16))
def test_finite_input_gives_finite_parameters(log_scale, offset, seed):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(40, 3)) + offset) * 10.0 ** log_scale    # offset in units of the spread
    mean, cov = helpers.gaussian_mle(X)
    assert np.isfinite(mean).all() and np.isfinite(cov).all()
    centres, labels, history = helpers.kmeans(X, 3, rng=0)
    assert np.isfinite(centres).all() and np.isfinite(history).all()
    assert np.all(np.diff(history) <= 1e-9 * history[0])
    eps = max(1e-3 * 10.0 ** (2 * log_scale), 1e-300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm, hist = helpers.fit_gmm(X, 2, eps=eps, rng=0, max_iter=5)
    assert all(np.isfinite(a).all() for a in gmm) and np.isfinite(hist).all()


# --- 5. Data far from the origin ----------------------------------------------------

def test_nearest_neighbour_far_from_origin():
    A = np.array([[1e8, 1e8]])
    B = np.array([[1e8 + 0.05, 1e8], [1e8 + 3.0, 1e8]])
    np.testing.assert_allclose(helpers.nearest_neighbour_distance(A, B), [0.05], rtol=1e-6)


def test_kmeans_far_from_origin_matches_near(rng):
    X, _, _ = make_blobs(rng, n_per=(50, 50, 50), d=2, spread=1.0)
    _, labels0, history0 = helpers.kmeans(X, 3, rng=1)
    _, labels1, history1 = helpers.kmeans(X + 1e8, 3, rng=1)
    assert np.array_equal(labels0, labels1)
    np.testing.assert_allclose(history1, history0, rtol=1e-6)
    assert np.all(np.diff(history1) <= 0)


# --- 6. Validation that is complete -------------------------------------------------

@pytest.mark.parametrize("cov, exc, match", [
    (np.eye(3)[:2], ValueError, "square"),
    (np.ones(3), ValueError, "square"),
    (np.array([[1.0, np.nan], [np.nan, 1.0]]), ValueError, "finite"),
    (np.eye(2) * (1 + 1j), TypeError, "real"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, "real"),
    (np.array([[1.0, 0.5], [0.0, 1.0]]), ValueError, "not symmetric"),
    (np.array([[1.0, 0.0], [0.0, -0.5]]), ValueError, "below zero"),
])
def test_clipped_eigh_checks_its_input(cov, exc, match):
    with pytest.raises(exc, match=match):
        helpers.clipped_eigh(cov)


def test_round_off_negative_eigenvalues_are_accepted(rng):
    X = rng.normal(size=(5, 12))                  # n < d: np.cov is singular, round-off below 0
    cov = np.cov(X, rowvar=False)
    assert np.linalg.eigvalsh(cov).min() < 0 or True
    lam, _ = helpers.clipped_eigh(cov, eps=1e-6)
    assert lam.min() >= 1e-6


@pytest.mark.parametrize("call", [
    lambda bad: helpers.gaussian_mle(bad),
    lambda bad: helpers.kmeans(bad, 1),
    lambda bad: helpers.fit_gmm(bad, 1),
    lambda bad: helpers.gaussian_logpdf(np.zeros((1, 2)), bad[0], np.eye(2)),
    lambda bad: helpers.gaussian_logpdf(np.zeros((1, 2)), np.zeros(2), bad),
    lambda bad: helpers.GMM(bad[0], np.zeros((2, 2)), np.stack([np.eye(2)] * 2)),
], ids=["mle", "kmeans", "fit_gmm", "mean", "cov", "weights"])
@pytest.mark.parametrize("bad", [np.ones((2, 2)) * (0.5 + 1j), np.array([["1", "2"], ["3", "4"]])],
                         ids=["complex", "strings"])
def test_complex_and_strings_rejected_everywhere(call, bad):
    with pytest.raises(TypeError, match="real"):
        call(bad)


def test_masked_arrays_rejected():
    X = np.ma.masked_array(np.ones((4, 2)), mask=[[0, 1]] * 4)
    with pytest.raises(TypeError, match="masked"):
        helpers.gaussian_mle(X)


@pytest.mark.parametrize("labels, exc", [
    (np.array([]), ValueError),
    (np.array([0, "b", 1, "b"], dtype=object), TypeError),
    (np.array([0.0, np.nan, 1.0, 1.0]), ValueError),
    (np.array([0, None, 1, 1], dtype=object), TypeError),
    (np.array([0, 1j, 1, 1]), TypeError),
])
def test_bad_labels(labels, exc):
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(exc):
        helpers.naive_gmm(X, labels)


def test_string_labels_are_class_names_for_naive_gmm_only():
    X = np.arange(8.0).reshape(4, 2)
    assert helpers.naive_gmm(X, np.array(["a", "b", "a", "b"])).n_components == 2
    with pytest.raises(TypeError, match="integer"):
        helpers.update_centres(X, np.array(["0", "1", "0", "1"]), 2)


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


def test_predict_and_loglik_agree_on_impossibly_far_points():
    gmm = helpers.GMM([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [np.eye(2)] * 2)
    far = np.array([[0.0, 0.0], [1e200, -1e200]])
    for call in (helpers.gmm_loglik, helpers.gmm_predict, helpers.gmm_responsibilities):
        with pytest.raises(ValueError, match="impossibly far"):
            call(far, gmm)


# --- 7. GMM is immutable --------------------------------------------------------------

def test_gmm_arrays_are_read_only_copies():
    weights = np.array([0.5, 0.5])
    gmm = helpers.GMM(weights, np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    weights[0] = 0.9
    assert gmm.weights[0] == 0.5
    for a in gmm:
        with pytest.raises(ValueError):
            a[...] = 0


def test_gmm_from_lists():
    gmm = helpers.GMM([0.25, 0.75], [[0.0], [1.0]], [[[1.0]], [[2.0]]])
    assert gmm.n_components == 2 and gmm.n_features == 1
    assert helpers.gmm_loglik(np.zeros((3, 1)), gmm) < 0


# --- 8. Plotting helpers ----------------------------------------------------------------

@pytest.mark.parametrize("call, exc", [
    (lambda: helpers.plot_digits(np.zeros((0, 256))), ValueError),
    (lambda: helpers.plot_digits(np.full((2, 256), np.nan)), ValueError),
    (lambda: helpers.plot_image(np.full(256, np.nan)), ValueError),
    (lambda: helpers.plot_image("abc"), TypeError),
    (lambda: helpers.plot_covariance(np.zeros((0, 0))), ValueError),
    (lambda: helpers.plot_spectrum([]), ValueError),
    (lambda: helpers.plot_spectrum([-1.0, 0.0]), ValueError),
    (lambda: helpers.plot_loglik([]), ValueError),
    (lambda: helpers.plot_loglik([np.array([1.0, 2.0])], labels=["a", "b"]), ValueError),
    (lambda: helpers.plot_confusion([[np.nan]]), ValueError),
    (lambda: helpers.plot_digits(np.zeros((2, 256)), ax="axes"), TypeError),
])
def test_plotting_rejects_bad_input(call, exc):
    import matplotlib.pyplot as plt

    try:
        with pytest.raises(exc):
            call()
    finally:
        plt.close("all")
