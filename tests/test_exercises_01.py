"""The self-checks of notebook 01's exercises, run as a student would meet them.

Each starter cell (tagged ``exercise``) is executed from the notebook file in a namespace that holds
what the notebook defines before it (the training digits X, y and the snippet's images). Its check
must say "not done yet" for the untouched stub, "correct" for a right answer written differently
from the solution cell, and must not say "correct" for plausible wrong answers; where the check has
a hint for a mistake, the test asserts that hint.
"""

import numpy as np
import pytest
from conftest import ROOT, exercise_starters, requires_mnist

import helpers

NOTEBOOK = ROOT / "notebooks" / "01_loading.ipynb"

pytestmark = requires_mnist


@pytest.fixture(scope="module")
def digits():
    return helpers.load_mnist("train", root=ROOT / ".tmp")


@pytest.fixture(scope="module")
def sources():
    """{exercise number: source} of the code cells tagged ``exercise``: exercises 1 to 5."""
    return exercise_starters(NOTEBOOK, expected=[1, 2, 3, 4, 5])


@pytest.fixture
def run(digits, sources, capsys):
    """run(N, **names) -> (check function, namespace, what the untouched starter cell printed)."""
    X, y = digits

    def run_starter(number, **names):
        namespace = {"np": np, "helpers": helpers, "X": X, "y": y, "snippet_images": None}
        namespace.update(names)
        capsys.readouterr()
        exec(compile(sources[number], f"<exercise {number}>", "exec"), namespace)
        return namespace[f"check_exercise_{number}"], namespace, capsys.readouterr().out

    return run_starter


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
def test_untouched_stub_is_not_done_yet(run, number):
    _, _, out = run(number)
    assert out.startswith(f"Exercise {number}: not done yet"), out


def test_starters_do_not_point_at_a_solution(sources):
    """The student edition has no solution cells: no starter may refer to one."""
    for number, text in sources.items():
        assert "solution" not in text.lower(), f"exercise {number} mentions a solution"


# ----------------------------------------------------------------------------- exercise 1
@pytest.mark.parametrize("with_snippet", [False, True])
@pytest.mark.parametrize(
    "flatten",
    [
        lambda images: np.asarray(images).reshape(-1, 256),
        lambda images: np.stack([image.ravel() for image in images]),
    ],
    ids=["reshape(-1, 256)", "ravel each image"],
)
def test_exercise_1_right_answers(run, printed, digits, flatten, with_snippet):
    snippet = digits[0][:5000].reshape(5000, 16, 16) if with_snippet else None
    check, _, _ = run(1, snippet_images=snippet)
    assert printed(check, flatten).startswith("Exercise 1: correct")


@pytest.mark.parametrize(
    "flatten, hint",
    [
        (lambda images: images.reshape(len(images), -1, order="F"), "the first column"),
        (lambda images: images.transpose(0, 2, 1).reshape(len(images), -1), "the first column"),
        (lambda images: images.reshape(len(images), -1).T, "is transposed"),
        (lambda images: images.reshape(len(images), -1)[:, ::-1], "rows differ"),
        (lambda images: images[:, ::2].reshape(len(images), -1), "expected (5000, 256)"),
    ],
    ids=["order F", "transposed images", "transposed matrix", "reversed rows", "half the rows"],
)
def test_exercise_1_wrong_answers(run, printed, flatten, hint):
    check, _, _ = run(1)
    out = printed(check, flatten)
    assert "correct" not in out and hint in out, out


def test_exercise_1_raising_function_is_reported(run, printed):
    check, _, _ = run(1)
    out = printed(check, lambda images: images.reshape(-1, 255))
    assert out.startswith("Exercise 1: flatten raised ValueError"), out


def test_exercise_1_check_does_not_show_the_answer(sources):
    """The check detects column order without writing out a reshape of the images."""
    check_code = sources[1].split("def check_exercise_1", 1)[1]
    assert ".reshape(" not in check_code and ".transpose(" not in check_code


# ----------------------------------------------------------------------------- exercise 2
def statistics_by_mean_of_squares(X):
    """Right, another way: the mean square deviation, rescaled from n to n - 1."""
    n = len(X)
    variances = ((X - X.mean(axis=0)) ** 2).mean(axis=0) * n / (n - 1)
    return variances, int(np.sum(X.max(axis=0) == X.min(axis=0)))


def test_exercise_2_right_answer(run, printed):
    check, _, _ = run(2)
    assert printed(check, statistics_by_mean_of_squares).startswith("Exercise 2: correct")


@pytest.mark.parametrize(
    "func, hint",
    [
        (lambda X: (((X - X.mean(0)) ** 2).mean(0), 14), "divide by n"),
        (lambda X: (np.sqrt(((X - X.mean(0)) ** 2).sum(0) / (len(X) - 1)), 14), "standard dev"),
        (lambda X: ((X**2).sum(0) / (len(X) - 1), 14), "subtract each pixel's mean"),
        (lambda X: (((X - X.mean(0)) ** 2).sum(0) / (len(X) - 1), 55), "n_constant = 55"),
        (lambda X: [((X - X.mean(0)) ** 2).sum(0) / (len(X) - 1), 14], "return a pair"),
        (lambda X: (((X - X.mean(1, keepdims=True)) ** 2).sum(1) / 255, 14), "shape (2000,)"),
    ],
    ids=["ddof 0", "std", "not centred", "threshold count", "a list", "over the pixels"],
)
def test_exercise_2_wrong_answers(run, printed, func, hint):
    check, _, _ = run(2)
    out = printed(check, func)
    assert "correct" not in out and hint in out, out


def test_exercise_2_counts_constant_pixels_with_a_threshold_wrong(run, printed):
    """Counting variances below a small threshold instead of exactly 0 is caught."""
    check, _, _ = run(2)

    def thresholded(X):
        variances = ((X - X.mean(0)) ** 2).sum(0) / (len(X) - 1)
        return variances, int(np.sum(variances < 1e-3))

    out = printed(check, thresholded)
    assert "correct" not in out and "count the pixels whose variance is exactly 0" in out, out


# ----------------------------------------------------------------------------- exercise 3
def test_exercise_3_half_answered_is_not_done(run, printed):
    check, _, _ = run(3)
    assert printed(check, "never increase", None).startswith("Exercise 3: not done yet")


def test_exercise_3_right_answer(run, printed):
    check, _, _ = run(3)
    out = printed(check, "never increase", "more")
    assert out.rstrip().endswith("Exercise 3: correct"), out


@pytest.mark.parametrize(
    "answer, hint",
    [
        (("either way", "more"), "never go up as n grows"),
        (("increase", "more"), "never go up as n grows"),
        (("never increase", "fewer"), "digit 1 alone has more constant pixels"),
        (("never increase", "the same"), "digit 1 alone has more constant pixels"),
        (("decrease", "more"), "prediction must be one of"),
        (("never increase", "less"), "digit_1 must be"),
    ],
)
def test_exercise_3_wrong_answers(run, printed, answer, hint):
    check, _, _ = run(3)
    out = printed(check, *answer)
    assert "correct" not in out and hint in out, out


# ----------------------------------------------------------------------------- exercise 4
def constant_pixels(X):
    return np.flatnonzero(X.max(axis=0) == X.min(axis=0))


def test_exercise_4_right_answers(run, printed, digits):
    check, _, _ = run(4)
    j, k = constant_pixels(digits[0][:2000])[:2]
    combined = np.zeros(256)
    combined[[j, k]] = 1 / np.sqrt(2)  # any unit vector of the span of two constant pixels
    assert printed(check, combined).startswith("Exercise 4: correct")
    last = np.zeros(256)
    last[constant_pixels(digits[0][:2000])[-1]] = -1.0
    assert printed(check, last).startswith("Exercise 4: correct")


def test_exercise_4_wrong_answers(run, printed, digits):
    check, _, _ = run(4)
    changing = int(np.argmax(digits[0][:2000].var(axis=0)))  # the pixel that varies most
    wrong_pixel = np.zeros(256)
    wrong_pixel[changing] = 1.0
    out = printed(check, wrong_pixel)
    assert "correct" not in out and "S v is not 0" in out, out

    not_unit = np.zeros(256)
    not_unit[constant_pixels(digits[0][:2000])[0]] = 2.0
    out = printed(check, not_unit)
    assert "correct" not in out and "divide v by its norm" in out, out

    out = printed(check, np.ones(256) / 16)
    assert "correct" not in out and "S v is not 0" in out, out

    out = printed(check, np.ones((16, 16)) / 16)
    assert "correct" not in out and "shape (16, 16)" in out, out


# ----------------------------------------------------------------------------- exercise 5
def count_by_parts(d, K=1, covariance="full"):
    """Right, another way: means, covariance entries and weights counted separately."""
    means = K * d
    entries = K * (d * (d - 1) // 2 + d) if covariance == "full" else K * d
    return means + entries + K - 1


def test_exercise_5_right_answer(run, printed):
    check, _, _ = run(5)
    assert printed(check, count_by_parts).startswith("Exercise 5: correct")


def per_cov(d, covariance):
    return d * (d + 1) // 2 if covariance == "full" else d


@pytest.mark.parametrize(
    "func, hint",
    [
        (lambda d, K=1, c="full": K * (d + (d * d if c == "full" else d)) + K - 1, "all d^2"),
        (lambda d, K=1, c="full": K * (d + per_cov(d, c)) + K, "only K - 1 are free"),
        (lambda d, K=1, c="full": K * (d + per_cov(d, c)), "weights are missing"),
        (lambda d, K=1, c="full": K * (d + per_cov(d, "full")) + K - 1, 'counted like "full"'),
        (lambda d, K=1, c="full": K * (d + d * d) + K - 1 if c == "diag" else None, "not done"),
        (lambda d, K=1, c="full": K * (33_152 if c == "full" else 512) + K - 1, "with d and K"),
    ],
    ids=["d^2 entries", "K weights", "no weights", "diag as full", "half written", "fixed 256"],
)
def test_exercise_5_wrong_answers(run, printed, func, hint):
    check, _, _ = run(5)
    out = printed(check, func)
    assert "correct" not in out and hint in out, out
