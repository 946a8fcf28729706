"""Shared fixtures, and the rule that skips the notebook tests without MNIST."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

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


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def mnist_train():
    """The real training set, 16 x 16 (loaded through the repository's cache)."""
    if not real_mnist_available():
        pytest.skip(NO_MNIST_MESSAGE)
    return helpers.load_mnist("train", root=ROOT / ".tmp")


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
