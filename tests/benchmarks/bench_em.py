"""Benchmark: EM and k-means of helpers.py against scikit-learn and the BLAS bound.

Run from the repository root:

    python tests/benchmarks/bench_em.py [--iterations 6] [--repeats 3] [--compare REV]
                                        [--quick] [--threads N]

It loads MNIST 16 x 16 the way the notebooks do (``.tmp/`` or ``$MNIST_DIR``), fits
K = 10 full-covariance GMMs from one common start with a fixed number of iterations,
and prints one table: seconds per iteration, ratios, peak memory, log-likelihoods.
Timings are noisy on shared machines: compare the ratios, which are measured side
by side in one run. It is a script that prints figures, not a test.

Two lower bounds are printed beside the fits:

- the E-step bound: the K full-rank products (n x d) @ (d x d) that a textbook E-step
  does, in each precision;
- the irreducible products of one iteration, measured on the model after two EM
  iterations from the k-means start: per component, the E-step product of the data with
  the unclipped eigenvectors only, (n x d) @ (d x r_k), and the M-step scatter (SYRK) of
  the rows whose responsibility exceeds 1e-12.  An iteration cannot do less than these.
  The E-step products are timed per component, and side by side as one product per
  block of rows (the same arithmetic, which BLAS does faster: a stricter bound).

``--quick`` prints only that last table (about a minute); ``--threads N`` limits the BLAS
threads (``--threads 1`` is steadier on a shared machine).

``--compare REV`` also times the helpers.py of git revision REV (e.g. ``HEAD~1``) from
the same start, side by side in the same run, and checks that its float64 history equals
today's.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import helpers  # noqa: E402


def best_time(fn, repeats, clock=time.perf_counter):
    """Smallest time of ``repeats`` calls of fn (returns (seconds, last result)).

    ``clock`` is wall time by default; ``time.process_time`` (CPU time of this process)
    is steadier on a shared machine, and equal to wall time with one BLAS thread.
    """
    best, result = np.inf, None
    for _ in range(repeats):
        t0 = clock()
        result = fn()
        best = min(best, clock() - t0)
    return best, result


def blas_bound(X, K, dtype, repeats):
    """Time of the 2K BLAS calls one EM iteration cannot avoid: K GEMMs, K SYRKs."""
    Xd = np.ascontiguousarray(X, dtype=dtype)
    W = np.linalg.qr(np.random.default_rng(0).normal(size=(X.shape[1],) * 2))[0].astype(dtype)
    out = np.empty_like(Xd)

    def calls():
        for _ in range(K):
            np.matmul(Xd, W, out=out)  # E-step: whitening, (n x d) @ (d x d)
            Xd.T @ Xd  # M-step: scatter matrix, SYRK

    return best_time(calls, repeats)[0]


def irreducible_bound(X, gmm, eps, dtype, repeats, block=512, clock=time.perf_counter):
    """Seconds of the products one EM iteration cannot avoid, on the model ``gmm``.

    Per component k: ``X @ G_k`` with ``G_k`` of shape (d, r_k), r_k the eigenvalues of
    Sigma_k above eps, and the SYRK ``A_k^T A_k`` of the rows of X whose responsibility
    exceeds 1e-12, in ``dtype``.  The E-step products are timed three ways, the same
    arithmetic each: K products of the whole data, K products per block of ``block``
    rows, and one product per block with all K matrices side by side (as helpers does it,
    there transposed and in blocks of 1,024 rows).  Returns ({way: E seconds}, M seconds, ranks, rows kept per component).
    """
    Xc = np.ascontiguousarray(X - X.mean(axis=0), dtype=dtype)
    resp = helpers.e_step(X, gmm, eps)[0]
    rng = np.random.default_rng(2)
    ranks, kept, Gs, As = [], [], [], []
    for k, cov in enumerate(gmm.covariances):
        lam = np.linalg.eigvalsh(cov)
        r = int(np.sum(lam > eps * (1 + 1e-10)))
        ranks.append(r)
        Gs.append(np.ascontiguousarray(rng.normal(size=(X.shape[1], max(r, 1))), dtype=dtype))
        rows = np.flatnonzero(resp[:, k] > 1e-12)
        kept.append(rows.size)
        As.append(np.ascontiguousarray(Xc[rows]))
    G_all = np.ascontiguousarray(np.concatenate(Gs, axis=1))
    n = Xc.shape[0]

    def whole():
        for G in Gs:
            Xc @ G

    def blocked():
        for start in range(0, n, block):
            rows = Xc[start : start + block]
            for G in Gs:
                rows @ G

    def side_by_side():
        out = np.empty((block, G_all.shape[1]), dtype=dtype)
        for start in range(0, n, block):
            rows = Xc[start : start + block]
            np.matmul(rows, G_all, out=out[: rows.shape[0]])

    def scatter():
        for A in As:
            A.T @ A  # BLAS SYRK

    e_times = {
        "K products of all rows": best_time(whole, repeats, clock)[0],
        f"K products per {block} rows": best_time(blocked, repeats, clock)[0],
        f"one product per {block} rows": best_time(side_by_side, repeats, clock)[0],
    }
    return e_times, best_time(scatter, repeats, clock)[0], ranks, kept


def per_iteration(modules, X, start, eps, dtype, repeats, clock=time.perf_counter):
    """Seconds of one EM iteration of each module's ``fit_gmm`` from ``start``: (t(4) - t(1))
    / 3, each the best of ``repeats`` fits, the fits of 1 and 4 iterations and the modules
    taken in turn (so that a slower spell of a shared machine slows them all).  Returns
    ({name: seconds}, {name: history}) for ``modules = {name: module}``."""
    t1, t4, histories = dict.fromkeys(modules, np.inf), dict.fromkeys(modules, np.inf), {}
    for _ in range(repeats):
        for name, module in modules.items():
            g = module.GMM(start.weights, start.means, start.covariances)

            def fit(m, module=module, g=g):
                return lambda: module.fit_gmm(
                    X, len(g.weights), init=g, max_iter=m, tol=0, eps=eps, dtype=dtype
                )

            t1[name] = min(t1[name], best_time(fit(1), 1, clock)[0])
            seconds, (_, histories[name]) = best_time(fit(4), 1, clock)
            t4[name] = min(t4[name], seconds)
    return {name: (t4[name] - t1[name]) / 3 for name in modules}, histories


def iteration_table(X, K, eps, repeats, before=None, label="", clock=time.perf_counter):
    """One iteration from the model after two EM iterations of the k-means start, against
    the irreducible products, in both precisions (and for helpers.py at ``before``)."""
    start, _ = helpers.fit_gmm(X, K, init="kmeans", max_iter=0, rng=0)
    after2, _ = helpers.fit_gmm(X, K, init=start, max_iter=2, tol=0, eps=eps)
    rows, bounds, histories = {}, {}, {}
    for bits, dtype in ((64, np.float64), (32, np.float32)):
        e_times, m_time, ranks, kept = irreducible_bound(
            X, after2, eps, dtype, repeats, clock=clock
        )
        bounds[bits] = (e_times, m_time)
        modules = {"": helpers} if before is None else {"": helpers, f"@{label}": before}
        seconds, fits = per_iteration(modules, X, after2, eps, dtype, repeats, clock)
        for name in modules:
            rows[f"helpers{name} float{bits}"] = seconds[name]
        histories[bits] = fits[""]
        if before is not None:
            histories[f"before{bits}"] = fits[f"@{label}"]
    print(
        f"after two iterations from the k-means start: unclipped ranks r_k {ranks}, "
        f"rows with r_ik > 1e-12 per component {kept}"
    )
    for bits in (64, 32):
        e_times, m_time = bounds[bits]
        print(
            f"float{bits} irreducible products: M-step SYRKs {m_time:.3f} s; E-step products",
            end="",
        )
        print("; ".join(f" {way} {t:.3f} s" for way, t in e_times.items()))
    print(
        "bound (issue 20): the E-step products done per component (the faster of the two ways)\n"
        "plus the SYRKs; side by side: the same products as one product per block of rows."
    )
    print(
        f"{'one iteration from there':32s} {'s/iter':>8s} {'bound':>8s} {'x bound':>8s} "
        f"{'side by side':>13s} {'x side by side':>15s}"
    )
    for name, sec in rows.items():
        bits = 32 if name.endswith("32") else 64
        e_times, m_time = bounds[bits]
        ways = list(e_times.values())
        bound, fused = min(ways[:2]) + m_time, ways[2] + m_time
        print(
            f"{name:32s} {sec:8.3f} {bound:8.3f} {sec / bound:8.2f} {fused:13.3f} {sec / fused:15.2f}"
        )
    print(
        f"float32 speed-up over float64 per iteration: "
        f"{rows['helpers float64'] / rows['helpers float32']:.2f}x"
        + (
            f" (helpers@{label}: {rows[f'helpers@{label} float64'] / rows[f'helpers@{label} float32']:.2f}x)"
            if before is not None
            else ""
        )
    )
    rel = np.max(np.abs(histories[32] - histories[64]) / np.abs(histories[64]))
    print(f"float32 against float64 history from there: max relative difference {rel:.1e}")
    if before is not None:
        same = np.max(np.abs(histories["before64"] - histories[64]) / np.abs(histories[64]))
        print(f"helpers@{label} against today, float64 history: max relative difference {same:.1e}")
    return rows


def load_helpers_at(rev):
    """The helpers.py of git revision ``rev`` as a module (for side-by-side timing)."""
    import importlib.util
    import tempfile

    source = subprocess.run(
        ["git", "show", f"{rev}:helpers.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="helpers-at-"))
    path = folder / "helpers_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("helpers_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def estep_bound(X, K, dtype, repeats):
    """Time of the K full-rank E-step products alone: (n x d) @ (d x d), in ``dtype``.

    A textbook E-step whitens the data once per component; an iteration that takes
    less than these K products alone does less than full-rank work.
    """
    Xd = np.ascontiguousarray(X, dtype=dtype)
    W = np.linalg.qr(np.random.default_rng(1).normal(size=(X.shape[1],) * 2))[0].astype(dtype)
    out = np.empty_like(Xd)

    def calls():
        for _ in range(K):
            np.matmul(Xd, W, out=out)

    return best_time(calls, repeats)[0]


SKLEARN_TORCH = """
import json, sys, time, warnings
import numpy as np, torch, sklearn
from sklearn.mixture import GaussianMixture
sklearn.set_config(array_api_dispatch=True)
data = np.load(sys.argv[1])
X = torch.from_numpy(data["X"].astype(np.float32))
init = {key: torch.from_numpy(data[key].astype(np.float32)) for key in ("weights", "means", "precisions")}
best = np.inf
for _ in range(int(sys.argv[3])):
    gm = GaussianMixture(len(init["weights"]), covariance_type="full", reg_covar=float(sys.argv[4]), tol=0,
                         max_iter=int(sys.argv[2]), init_params="random_from_data",
                         weights_init=init["weights"], means_init=init["means"], precisions_init=init["precisions"])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"seconds": best, "score": float(gm.score(X))}))
"""


def sklearn_torch_fit(X, start, precisions, n_iter, repeats, eps):
    """scikit-learn's GaussianMixture on torch CPU float32 tensors (its array-API path).

    Runs in a subprocess, since SCIPY_ARRAY_API must be set before scipy is imported.
    Returns (seconds per fit, score) or None when torch is not installed.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "start.npz"
        np.savez(path, X=X, weights=start.weights, means=start.means, precisions=precisions)
        env = dict(os.environ, SCIPY_ARRAY_API="1")
        out = subprocess.run(
            [sys.executable, "-c", SKLEARN_TORCH, str(path), str(n_iter), str(repeats), str(eps)],
            capture_output=True,
            text=True,
            env=env,
        )
    if out.returncode != 0:
        print("scikit-learn on torch failed:", out.stderr.strip().splitlines()[-1:])
        return None
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["seconds"], result["score"]


def plain_numpy_em(X, start, n_iter, eps):
    """A straightforward numpy EM (what one writes first): the 'before' baseline."""
    n, d = X.shape
    w, mu, cov = start.weights.copy(), start.means.copy(), start.covariances.copy()
    K = len(w)
    for _ in range(n_iter):
        log_p = np.empty((n, K))
        for k in range(K):
            lam, U = np.linalg.eigh(cov[k])
            lam = np.maximum(lam, eps)
            z = (X - mu[k]) @ (U / np.sqrt(lam))
            log_p[:, k] = np.log(w[k]) - 0.5 * (
                d * np.log(2 * np.pi) + np.log(lam).sum() + (z**2).sum(1)
            )
        m = log_p.max(1, keepdims=True)
        log_norm = m[:, 0] + np.log(np.exp(log_p - m).sum(1))
        resp = np.exp(log_p - log_norm[:, None])
        nk = resp.sum(0)
        w, mu = nk / n, resp.T @ X / nk[:, None]
        for k in range(K):
            diff = X - mu[k]
            cov[k] = (resp[:, k, None] * diff).T @ diff / nk[k]
    return log_norm.mean()


def peak_memory_of_fit(n_iter):
    """Peak resident memory (MB) of a fresh process that loads the data and fits K=10.

    Read from /proc/self/status (VmHWM, VmRSS): unlike getrusage's ru_maxrss, the
    high-water mark is reset when the process starts, so the parent does not count.
    """
    code = f"""
import sys, json
sys.path.insert(0, {str(ROOT)!r})
import numpy as np, helpers

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

X, _ = helpers.load_mnist(root={str(ROOT / ".tmp")!r})
before = status("VmRSS")
for dtype in (np.float64, np.float32):
    helpers.fit_gmm(X, 10, init="random", max_iter={n_iter}, tol=0, rng=0, dtype=dtype)
print(json.dumps({{"before_mb": before, "peak_mb": status("VmHWM")}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=6, help="EM iterations per timed fit")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats (the best is kept)")
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument(
        "--compare", metavar="REV", help="also time helpers.py of this git revision"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only one iteration against the irreducible products (and --compare REV)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads (default: all the cores); with 1, times are CPU times",
    )
    parser.add_argument("--runs", type=int, default=1, help="with --quick: repeat the table")
    args = parser.parse_args()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(args.threads):
            run(args)
    else:
        run(args)


def run(args):
    K, n_iter, eps = args.components, args.iterations, helpers.DEFAULT_EPS

    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_info

    X, _ = helpers.load_mnist(root=ROOT / ".tmp")
    n, d = X.shape
    blas = [(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()]
    print(f"MNIST {n} x {d}, K = {K}, {n_iter} EM iterations per fit, best of {args.repeats}")
    print(
        f"numpy {np.__version__}, BLAS {blas}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}"
    )

    if args.quick:
        before = load_helpers_at(args.compare) if args.compare else None
        # one BLAS thread: CPU time (steady when other programs run); else wall time
        clock = time.process_time if args.threads == 1 else time.perf_counter
        print(f"clock: {clock.__name__}")
        for _ in range(args.runs):
            iteration_table(X, K, eps, args.repeats, before, args.compare, clock)
        return

    # One common start: the k-means start of the notebooks (covariances clipped at eps,
    # so that scikit-learn accepts their inverses).
    start0, _ = helpers.fit_gmm(X, K, init="kmeans", max_iter=0, rng=0)
    start = helpers.GMM(start0.weights, start0.means, start0.covariances)
    precisions = np.stack(
        [(U / lam) @ U.T for lam, U in (helpers.clipped_eigh(c, eps) for c in start.covariances)]
    )

    # Seconds per iteration: the marginal cost, (t(n_iter) - t(1)) / (n_iter - 1), which
    # leaves out what a fit does once (checks, start, centring, the final E-step); the
    # whole fit divided by n_iter is printed beside it.
    rows = {}  # name: (seconds per iteration, whole fit / n_iter, final log-likelihood, bits)

    def marginal(fit, name, bits, score):
        t1, _ = best_time(lambda: fit(1), args.repeats)
        tn, result = best_time(lambda: fit(n_iter), args.repeats)
        rows[name] = ((tn - t1) / (n_iter - 1), tn / n_iter, score(result), bits)
        return result

    g64, h64 = marginal(
        lambda m: helpers.fit_gmm(X, K, init=start, max_iter=m, tol=0, eps=eps),
        "helpers float64",
        64,
        lambda r: r[1][-1],
    )
    g32, h32 = marginal(
        lambda m: helpers.fit_gmm(X, K, init=start, max_iter=m, tol=0, eps=eps, dtype=np.float32),
        "helpers float32",
        32,
        lambda r: r[1][-1],
    )
    before = load_helpers_at(args.compare) if args.compare else None
    if before is not None:
        start_b = before.GMM(start.weights, start.means, start.covariances)
        _, hb64 = marginal(
            lambda m: before.fit_gmm(X, K, init=start_b, max_iter=m, tol=0, eps=eps),
            f"helpers@{args.compare} float64",
            64,
            lambda r: r[1][-1],
        )
        marginal(
            lambda m: before.fit_gmm(
                X, K, init=start_b, max_iter=m, tol=0, eps=eps, dtype=np.float32
            ),
            f"helpers@{args.compare} float32",
            32,
            lambda r: r[1][-1],
        )
        same = np.max(np.abs(hb64 - h64) / np.abs(h64))

    def sklearn_fit(m):
        gm = GaussianMixture(
            K,
            covariance_type="full",
            reg_covar=eps,
            tol=0,
            max_iter=m,
            init_params="random_from_data",
            weights_init=start.weights,
            means_init=start.means,
            precisions_init=precisions,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gm.fit(X)

    marginal(sklearn_fit, "scikit-learn float64", 64, lambda gm: gm.score(X))
    torch_1 = sklearn_torch_fit(X, start, precisions, 1, args.repeats, eps)
    torch_n = sklearn_torch_fit(X, start, precisions, n_iter, args.repeats, eps)
    if torch_1 is not None and torch_n is not None:
        rows["scikit-learn torch float32"] = (
            (torch_n[0] - torch_1[0]) / (n_iter - 1),
            torch_n[0] / n_iter,
            torch_n[1],
            32,
        )
    t_plain, ll_plain = best_time(lambda: plain_numpy_em(X, start, n_iter, eps), 1)
    rows["plain numpy EM float64"] = (t_plain / n_iter, t_plain / n_iter, ll_plain, 64)
    bound64 = blas_bound(X, K, np.float64, args.repeats)
    bound32 = blas_bound(X, K, np.float32, args.repeats)
    ebound = {
        64: estep_bound(X, K, np.float64, args.repeats),
        32: estep_bound(X, K, np.float32, args.repeats),
    }
    rows["BLAS bound float64 (2K calls)"] = (bound64, bound64, np.nan, 64)
    rows["BLAS bound float32 (2K calls)"] = (bound32, bound32, np.nan, 32)
    rows["E-step bound float64 (K GEMMs)"] = (ebound[64], ebound[64], np.nan, 64)
    rows["E-step bound float32 (K GEMMs)"] = (ebound[32], ebound[32], np.nan, 32)

    print()
    print(
        "s/iter: marginal cost of one iteration, (t(n) - t(1)) / (n - 1); whole/n: the whole fit / n"
    )
    print("x E-bound: ratio to the K full-rank E-step products alone, in the row's own precision")
    print(
        f"{'EM, one iteration':32s} {'s/iter':>8s} {'whole/n':>8s} {'x sklearn':>10s} {'x bound64':>10s} "
        f"{'x bound32':>10s} {'x E-bound':>10s} {'final loglik':>13s}"
    )
    for name, (sec, whole, ll, bits) in rows.items():
        ll_text = f"{ll:13.4f}" if np.isfinite(ll) else f"{'':13s}"
        print(
            f"{name:32s} {sec:8.3f} {whole:8.3f} {sec / rows['scikit-learn float64'][0]:10.2f} "
            f"{sec / bound64:10.2f} {sec / bound32:10.2f} {sec / ebound[bits]:10.2f} {ll_text}"
        )
    print()
    iteration_table(X, K, eps, args.repeats, before, args.compare)
    print(
        f"float32 speed-up over float64 from the k-means start: "
        f"{rows['helpers float64'][0] / rows['helpers float32'][0]:.2f}x"
    )
    if before is not None:
        print(
            f"helpers@{args.compare} against today, float64 history from the same start: "
            f"max relative difference {same:.1e}; per iteration, today / before: "
            f"float64 {rows['helpers float64'][0] / rows[f'helpers@{args.compare} float64'][0]:.2f}, "
            f"float32 {rows['helpers float32'][0] / rows[f'helpers@{args.compare} float32'][0]:.2f}"
        )
    rel = abs(h32[-1] - h64[-1]) / abs(h64[-1])
    print(f"float32 vs float64 final mean log-likelihood: relative difference {rel:.1e}")
    print(
        "history never decreases: float64",
        bool(np.all(np.diff(h64) >= -1e-9 * abs(h64).max())),
        " float32",
        bool(np.all(np.diff(h32) >= -1e-6 * abs(h32).max())),
    )
    print(
        "(scikit-learn regularises with reg_covar = eps added to the diagonal, helpers clips the\n"
        " eigenvalues at eps: the same cost, slightly different models, hence other log-likelihoods.)"
    )

    # k-means from the same starting centres
    seed = 0
    init_centres = X[np.random.default_rng(seed).choice(n, size=K, replace=False)]
    t_km, (centres, labels, history) = best_time(
        lambda: helpers.kmeans(X, K, rng=seed), args.repeats
    )
    km = KMeans(K, init=init_centres, n_init=1, algorithm="lloyd", tol=0, max_iter=300)
    t_sk_km, km = best_time(lambda: km.fit(X), args.repeats)
    ours_per, sk_per = t_km / (len(history) - 1), t_sk_km / km.n_iter_
    print()
    print(
        f"{'k-means (lloyd), one iteration':32s} {'s/iter':>8s} {'x sklearn':>10s} {'iterations':>11s}"
    )
    print(
        f"{'helpers.kmeans':32s} {ours_per:8.4f} {ours_per / sk_per:10.2f} {len(history) - 1:11d}"
    )
    print(f"{'scikit-learn KMeans lloyd':32s} {sk_per:8.4f} {1.0:10.2f} {km.n_iter_:11d}")
    print("same labels as scikit-learn:", bool(np.array_equal(labels, km.labels_)))

    mem = peak_memory_of_fit(3)
    print()
    print(
        f"peak memory of a process fitting K = {K} on the full data (float64 then float32): "
        f"{mem['peak_mb']:.0f} MB (before the fits, with the data loaded: {mem['before_mb']:.0f} MB)"
    )


if __name__ == "__main__":
    main()
