"""Section 8 of helpers.py: the plotting functions draw what they say.

plot_gaussian_ellipses on a known covariance (axes c sqrt(lambda), the angle of the long
axis, points on the c-sigma contour), and what each other function puts on its Axes.
(Bad input is in test_validation.py.)
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.patches import Ellipse

import helpers


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def rotation(degrees):
    t = np.radians(degrees)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def known_covariance(degrees=30.0, long=4.0, short=1.0):
    """Variance `long` along the direction at `degrees`, `short` across it."""
    R = rotation(degrees)
    return R @ np.diag([long, short]) @ R.T


def ellipses(ax):
    return [p for p in ax.patches if isinstance(p, Ellipse)]


def contour_points(patch, n=24):
    """Points of the drawn ellipse, in data coordinates: the patch transform of the unit circle."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return patch.get_patch_transform().transform(np.column_stack([np.cos(t), np.sin(t)]))


# --- plot_gaussian_ellipses -----------------------------------------------------------------


@pytest.mark.parametrize("degrees", [30.0, 120.0, -45.0, 0.0])
def test_ellipse_axes_and_angle_on_a_known_covariance(degrees):
    mean = np.array([1.0, -2.0])
    cov = known_covariance(degrees)
    _, ax = plt.subplots()
    out = helpers.plot_gaussian_ellipses(mean, cov, ax=ax, n_std=(1, 2))
    assert out is ax
    patches = ellipses(ax)
    assert len(patches) == 2
    for c, patch in zip((1, 2), patches):
        np.testing.assert_allclose(patch.center, mean)
        np.testing.assert_allclose(patch.width, 2 * c * np.sqrt(4.0), rtol=1e-12)  # long axis
        np.testing.assert_allclose(patch.height, 2 * c * np.sqrt(1.0), rtol=1e-12)
        # the width runs along the long axis: its angle is `degrees`, modulo 180
        np.testing.assert_allclose((patch.angle - degrees + 90) % 180 - 90, 0.0, atol=1e-9)
        # every drawn point lies on the c-sigma contour (x - mu)^T Sigma^-1 (x - mu) = c^2
        v = contour_points(patch) - mean
        maha = np.einsum("ij,jk,ik->i", v, np.linalg.inv(cov), v)
        np.testing.assert_allclose(maha, c**2, rtol=1e-9)


def test_ellipses_styles_colours_labels_and_limits():
    means = np.array([[0.0, 0.0], [5.0, 5.0]])
    covs = np.stack([known_covariance(30.0), np.diag([0.25, 1.0])])
    ax = helpers.plot_gaussian_ellipses(
        means, covs, n_std=(1, 2, 3), colors=["red", "blue"], labels=["A", "B"], lw=3
    )
    patches = ellipses(ax)
    assert len(patches) == 6  # three per component
    assert [p.get_linestyle() for p in patches] == ["-", "--", "--"] * 2
    assert [p.get_edgecolor() for p in patches] == [to_rgba("red")] * 3 + [to_rgba("blue")] * 3
    assert all(p.get_linewidth() == 3 and not p.get_fill() for p in patches)
    # the second component: sd 0.5 along x, 1 along y, so the long axis is vertical
    np.testing.assert_allclose([patches[3].width, patches[3].height], [2.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(patches[3].angle % 180, 90.0, atol=1e-9)
    # each mean is marked, and labelled in the legend
    markers = [line for line in ax.lines if line.get_marker() == "x"]
    np.testing.assert_allclose([line.get_xydata()[0] for line in markers], means)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B"]
    # the view holds the largest ellipse (3 sigma) of both components
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    reach = 3 * np.sqrt(np.diagonal(covs, axis1=1, axis2=2))
    assert x0 <= (means - reach)[:, 0].min() and x1 >= (means + reach)[:, 0].max()
    assert y0 <= (means - reach)[:, 1].min() and y1 >= (means + reach)[:, 1].max()


def test_ellipses_default_colours_follow_the_cycle():
    means = np.zeros((3, 2))
    covs = np.stack([np.eye(2)] * 3)
    ax = helpers.plot_gaussian_ellipses(means, covs, n_std=(1,))
    assert [p.get_edgecolor() for p in ellipses(ax)] == [to_rgba(f"C{k}") for k in range(3)]
    assert ax.get_legend() is None  # no labels, no legend


def test_ellipses_with_ax_none_return_a_new_axes():
    before = plt.get_fignums()
    ax = helpers.plot_gaussian_ellipses(np.zeros(2), np.eye(2))
    assert isinstance(ax, Axes)
    assert ax.figure.number not in before
    assert len(ellipses(ax)) == 2  # n_std=(1, 2) by default


def test_ellipse_of_a_singular_covariance_is_a_segment():
    ax = helpers.plot_gaussian_ellipses(np.zeros(2), np.diag([1.0, 0.0]), n_std=(2,))
    (patch,) = ellipses(ax)
    np.testing.assert_allclose(patch.width, 4.0, rtol=1e-12)
    assert 0 <= patch.height < 1e-100


# --- the other plotting functions ------------------------------------------------------------


def test_plot_digits_grid_and_clipping():
    images = np.linspace(-0.5, 1.5, 5 * 16).reshape(5, 16)  # five 4 x 4 images
    _, ax = plt.subplots()
    assert helpers.plot_digits(images, n_cols=3, ax=ax, row_labels=["a", "b"]) is ax
    canvas = ax.images[0].get_array()
    assert canvas.shape == (2 * 5 - 1, 3 * 5 - 1)  # 2 rows, 3 columns, 1-pixel gaps
    np.testing.assert_allclose(canvas[:4, :4], np.clip(images[0].reshape(4, 4), 0, 1))
    assert ax.images[0].get_clim() == (0, 1)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert list(ax.get_xticks()) == []


def test_plot_image_covariance_spectrum_loglik_confusion_return_axes():
    ax = helpers.plot_image(np.arange(16.0), title="t")
    np.testing.assert_allclose(ax.images[0].get_array(), np.arange(16.0).reshape(4, 4))
    ax = helpers.plot_covariance(np.array([[2.0, -1.0], [-1.0, 1.0]]))
    assert ax.images[0].get_clim() == (-2.0, 2.0)  # diverging, centred on 0
    ax = helpers.plot_spectrum([3.0, 1.0, 0.0, -1e-17], eps=0.5)
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_ydata(), [3.0, 1.0])
    assert "2 are <= 0, not shown" in line.get_label()
    assert ax.lines[1].get_ydata()[0] == 0.5  # the floor eps
    ax = helpers.plot_loglik([np.arange(3.0), np.arange(5.0)], labels=["a", "b"])
    assert [len(line.get_xdata()) for line in ax.lines] == [3, 5]
    ax = helpers.plot_confusion([[3, 0], [1, 7]])
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "3", "7"]
    for fn, arg in (
        (helpers.plot_image, np.zeros(16)),
        (helpers.plot_covariance, np.eye(2)),
        (helpers.plot_spectrum, [1.0]),
        (helpers.plot_loglik, np.arange(3.0)),
        (helpers.plot_confusion, np.eye(2)),
        (helpers.plot_digits, np.zeros((2, 16))),
    ):
        _, given_ax = plt.subplots()
        assert fn(arg, ax=given_ax) is given_ax
        assert isinstance(fn(arg), Axes)
