"""Shared fixtures and test data, and the rule that skips the notebook tests without MNIST.

Test modules import plain helpers from here (``from conftest import make_blobs``), never
from one another.
"""

import contextlib
import gzip
import io
import json
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import helpers  # noqa: E402

# Property tests: 200 examples per property by default, derandomised so that every run
# (and CI) checks the same examples; HYPOTHESIS_PROFILE=deep explores 1000 fresh ones.
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True)
settings.register_profile("deep", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
REPO_RAW = ROOT / ".tmp" / "MNIST" / "raw"


def real_mnist_available():
    """True when the four real IDX files are in .tmp/MNIST/raw or in $MNIST_DIR."""
    if all((REPO_RAW / n).is_file() for n in IDX_NAMES):
        return True
    folder = os.environ.get("MNIST_DIR")
    return bool(folder) and all(
        (Path(folder) / n).is_file() or (Path(folder) / (n + ".gz")).is_file() for n in IDX_NAMES
    )


NO_MNIST_MESSAGE = (
    "the real MNIST files are not available: put the four IDX files in .tmp/MNIST/raw/ "
    "(or set MNIST_DIR to a folder holding them, gzipped or not), or download them once "
    "with `python -c \"import helpers; helpers.load_mnist(); helpers.load_mnist('test')\"`"
)

requires_mnist = pytest.mark.skipif(not real_mnist_available(), reason=NO_MNIST_MESSAGE)


def pytest_collection_modifyitems(config, items):
    """Skip the nbval notebook tests when the real data cannot be had (never in CI)."""
    if real_mnist_available():
        return
    if os.environ.get("CI", "").lower() == "true":
        return  # CI must run them; .ci/run provides the files, so let a gap fail loudly
    skip = pytest.mark.skip(reason=NO_MNIST_MESSAGE)
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(skip)


# --- random data ------------------------------------------------------------------------


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def make_blobs(rng, n_per=(200, 150, 250), d=4, spread=6.0):
    """Well-separated, well-conditioned Gaussian clusters; returns (X, labels, means)."""
    K = len(n_per)
    centres = rng.normal(scale=spread, size=(K, d))
    X, y = [], []
    for k, m in enumerate(n_per):
        A = rng.normal(size=(d, d)) * 0.4 + np.eye(d)
        X.append(centres[k] + rng.normal(size=(m, d)) @ A.T)
        y.append(np.full(m, k))
    X, y = np.concatenate(X), np.concatenate(y)
    order = rng.permutation(len(X))
    return X[order], y[order], centres


@pytest.fixture
def blobs(rng):
    """``make_blobs(rng)`` with its defaults: 600 points in 4-D, three clusters."""
    return make_blobs(rng)


def random_spd(rng, d, low=0.2, high=3.0):
    """A random symmetric positive-definite matrix with eigenvalues in [low, high]."""
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (Q * rng.uniform(low, high, size=d)) @ Q.T


@st.composite
def data_and_k(draw, max_n=40, max_d=5):
    """Hypothesis strategy: (X, k, scale, seed), small data at scale 1e-2, 1 or 1e2."""
    n = draw(st.integers(2, max_n))
    d = draw(st.integers(1, max_d))
    k = draw(st.integers(1, min(4, n)))
    scale = draw(st.sampled_from([1e-2, 1.0, 1e2]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * scale
    if draw(st.booleans()):
        X[:, 0] = 0.5 * scale  # a constant feature
    return X, k, scale, seed


# --- the real MNIST -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def mnist_train():
    """The real training set, 16 x 16 (loaded through the repository's cache)."""
    if not real_mnist_available():
        pytest.skip(NO_MNIST_MESSAGE)
    return helpers.load_mnist("train", root=ROOT / ".tmp")


# --- small fake IDX files for the loader ----------------------------------------------------

N_TRAIN, N_TEST = 30, 12


def idx_bytes(array, magic):
    """The bytes of an IDX file: magic number, dimensions (big-endian int32), uint8 data."""
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def fake_mnist(seed=0):
    """Random 28 x 28 digits: N_TRAIN for train, N_TEST for test, as {file name: (array, magic)}."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (N_TRAIN, 28, 28)), 2051),
        "train-labels-idx1-ubyte": (rng.integers(0, 10, N_TRAIN), 2049),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (N_TEST, 28, 28)), 2051),
        "t10k-labels-idx1-ubyte": (rng.integers(0, 10, N_TEST), 2049),
    }


def write_idx_folder(folder, gz=False, seed=0):
    """Write the four fake IDX files (gzipped or not) into ``folder``; return their data."""
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
    return np.stack(
        [
            np.asarray(
                Image.fromarray(im.astype(np.uint8)).resize((size, size), Image.BILINEAR)
            ).ravel()
            for im in images28
        ]
    )


@pytest.fixture
def no_mnist_dir(monkeypatch):
    """Unset MNIST_DIR, so that a user's setting does not leak into a loader test."""
    monkeypatch.delenv("MNIST_DIR", raising=False)


@pytest.fixture
def no_download(monkeypatch):
    """Make any download attempt fail at once, as without network."""
    import torchvision

    def refuse(self):
        if not self._check_exists():
            raise RuntimeError("Error downloading: no network in this test")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", refuse)


def exercise_starters(notebook, expected=None):
    """{exercise number: source} of the code cells tagged ``exercise`` in ``notebook``.

    Shared by the tests of the exercises' self-checks (tests/test_exercises_0N.py); with
    ``expected``, the exercise numbers found must be exactly those.
    """
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    sources = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or "exercise" not in cell["metadata"].get("tags", []):
            continue
        text = "".join(cell["source"])
        number = int(re.search(r"def check_exercise_(\d+)\(", text).group(1))
        assert number not in sources, f"two starter cells for exercise {number}"
        sources[number] = text
    if expected is not None:
        assert sorted(sources) == sorted(expected), (
            f"exercises {sorted(sources)} in {notebook.name}"
        )
    return sources


def run_starters(base_namespace, sources):
    """{N: (namespace after running starter cell N untouched, what it printed)}.

    Each cell runs in its own copy of ``base_namespace`` (what the notebook has defined
    when the exercises start).
    """
    ran = {}
    for number, source in sources.items():
        namespace = dict(base_namespace)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(source, f"<exercise {number}>", "exec"), namespace)
        ran[number] = (namespace, out.getvalue())
    return ran


@pytest.fixture
def printed(capsys):
    """printed(check, *answer) -> what check(*answer) prints (the exercise tests)."""

    def call(check, *answer):
        capsys.readouterr()
        check(*answer)
        return capsys.readouterr().out

    return call


def with_float32_warning(fn, *args, **kwargs):
    """(fn(*args, **kwargs), whether it raised a Float32PrecisionWarning): the float32 tests
    check that the result is right, and whether float32 said it fell back."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, any(issubclass(w.category, helpers.Float32PrecisionWarning) for w in caught)
