"""Tests of dlc_core.data.shapes: determinism, normalisation, area-uniform samplers, the split, categories."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.spatial import cKDTree

from dlc_core.data import shapes
from dlc_core.data.shapes import CATEGORIES, TRAIN_CATEGORIES, UNSEEN_CATEGORIES, sample_shape, shape_set

REPO = Path(__file__).resolve().parents[1]
N = 40_000  # points for the distribution tests


def _binomial_tolerance(n: int, p: float, sigmas: float = 5.0) -> float:
    """Half-width of a ``sigmas``-sigma band for the observed fraction of a binomial(n, p)."""
    return sigmas * np.sqrt(p * (1.0 - p) / n)


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean nearest-neighbour (Chamfer) distance between two clouds."""
    return cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean()


# --- categories and split ------------------------------------------------------------------------------------


def test_category_order_is_fixed():
    assert CATEGORIES == ("box", "sphere", "cylinder", "cone", "torus", "capsule", "table", "chair", "lamp", "mug",
                          "bottle", "airplane", "car", "bed", "shelf", "stool", "guitar", "tower", "sofa", "bench")


def test_split_is_disjoint_and_covers_categories():
    assert TRAIN_CATEGORIES == CATEGORIES[:14]
    assert len(UNSEEN_CATEGORIES) >= 5
    assert not set(TRAIN_CATEGORIES) & set(UNSEEN_CATEGORIES)
    assert set(TRAIN_CATEGORIES) | set(UNSEEN_CATEGORIES) == set(CATEGORIES)


def test_imports_without_open3d_or_torch():
    blocker = "import sys; sys.modules['open3d'] = None; sys.modules['torch'] = None; import dlc_core.data.shapes"
    subprocess.run([sys.executable, "-c", blocker], cwd=REPO, check=True)


# --- sample_shape and shape_set --------------------------------------------------------------------------------


@pytest.mark.parametrize("category", CATEGORIES)
def test_shape_dtype_and_normalisation(category):
    points = sample_shape(category, 3)
    assert points.shape == (1024, 3) and points.dtype == np.float32
    assert np.abs(points.astype(np.float64).mean(axis=0)).max() < 1e-6
    assert abs(np.linalg.norm(points.astype(np.float64), axis=1).max() - 1.0) < 1e-5


@pytest.mark.parametrize("category", CATEGORIES)
def test_determinism_and_distinct_instances(category):
    first = sample_shape(category, 0)
    np.testing.assert_array_equal(first, sample_shape(category, 0))
    assert not np.array_equal(first, sample_shape(category, 1))
    assert not np.array_equal(first, sample_shape(category, 0, split="test"))


@pytest.mark.parametrize("category", CATEGORIES)
def test_instances_vary_in_proportions(category):
    """The extents of normalised instances vary beyond sampling noise (about 0.03: the sphere's) except for spheres."""
    extents = np.array([np.ptp(sample_shape(category, i, num_points=4096), axis=0) for i in range(8)])
    spread = np.ptp(extents, axis=0).max()
    assert spread < 0.04 if category == "sphere" else spread > 0.06


def test_num_points():
    assert sample_shape("chair", 0, num_points=7).shape == (7, 3)


def test_shape_set_matches_sample_shape():
    points, labels = shape_set("test", ["mug", "bench"], per_category=3, num_points=256)
    assert points.shape == (6, 256, 3) and points.dtype == np.float32
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [9, 9, 9, 19, 19, 19])
    np.testing.assert_array_equal(points[4], sample_shape("bench", 1, "test", 256))


def test_shape_set_empty():
    points, labels = shape_set("train", TRAIN_CATEGORIES, per_category=0)
    assert points.shape == (0, 1024, 3) and labels.shape == (0,)


@pytest.mark.parametrize("call", [lambda: sample_shape("teapot", 0),
                                  lambda: shape_set("train", ["chair", "teapot"], 2)])
def test_unknown_category_raises(call):
    with pytest.raises(ValueError, match="teapot") as error:
        call()
    assert "chair" in str(error.value)  # the valid choices are listed


@pytest.mark.parametrize("call", [lambda: sample_shape("chair", 0, split="val"),
                                  lambda: shape_set("val", ["chair"], 2)])
def test_unknown_split_raises(call):
    with pytest.raises(ValueError, match="val") as error:
        call()
    assert "train" in str(error.value) and "test" in str(error.value)


def test_categories_are_distinguishable():
    """Two instances of a category are closer (Chamfer) than instances of two different categories, on average."""
    chosen = ["sphere", "torus", "table", "chair", "lamp", "mug", "airplane", "guitar", "shelf"]
    clouds = {c: [sample_shape(c, i, num_points=512) for i in range(3)] for c in chosen}
    within = {c: np.mean([_chamfer(clouds[c][i], clouds[c][j]) for i, j in [(0, 1), (0, 2), (1, 2)]]) for c in chosen}
    for c in chosen:
        for other in chosen:
            if other != c:
                between = np.mean([_chamfer(a, b) for a in clouds[c] for b in clouds[other]])
                assert within[c] < between, (c, other, within[c], between)


# --- primitive samplers: on the surface and area-uniform -------------------------------------------------------


def test_box_points_on_faces_in_proportion_to_area():
    size = np.array([1.0, 2.0, 3.0])
    points = shapes.sample_box(np.random.default_rng(0), N, size)
    ratio = np.abs(points) / (size / 2)
    assert ratio.max() <= 1.0 + 1e-12
    on_face = np.abs(ratio - 1.0) < 1e-6
    assert on_face.any(axis=1).all()
    face_area = np.prod(size) / size
    expected = face_area / face_area.sum()
    observed = on_face.mean(axis=0)  # edges have measure zero
    for p, f in zip(expected, observed):
        assert abs(f - p) < _binomial_tolerance(N, p)
    positive = (points[on_face] > 0).mean()
    assert abs(positive - 0.5) < _binomial_tolerance(N, 0.5)


def test_sphere_is_exact_and_uniform():
    points = shapes.sample_ellipsoid(np.random.default_rng(1), N, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, atol=1e-6)
    assert stats.kstest(points[:, 2], "uniform", args=(-1.0, 2.0)).pvalue > 1e-3  # Archimedes: z ~ U(-1, 1)


def test_spheroid_band_fraction_matches_area():
    a, c = 1.0, 3.0
    points = shapes.sample_ellipsoid(np.random.default_rng(2), N, (a, a, c))
    np.testing.assert_allclose(((points / [a, a, c]) ** 2).sum(axis=1), 1.0, atol=1e-6)

    def ring_area(z):  # area of the spheroid per unit height: 2 pi rho(z) sqrt(1 + rho'(z)^2)
        return 2.0 * np.pi * a * np.sqrt(1.0 - z**2 / c**2 + (a * z / c**2) ** 2)

    expected = integrate.quad(ring_area, -c / 2, c / 2)[0] / integrate.quad(ring_area, -c, c)[0]
    observed = (np.abs(points[:, 2]) < c / 2).mean()
    assert abs(expected - 0.5) > 0.05  # a naive sphere-stretch would give 0.5
    assert abs(observed - expected) < _binomial_tolerance(N, expected)


def test_ellipsoid_area_formula():
    a, c = 1.0, 3.0
    e = np.sqrt(1.0 - a**2 / c**2)
    exact = 2.0 * np.pi * a**2 * (1.0 + c / (a * e) * np.arcsin(e))  # prolate spheroid
    assert abs(shapes.ellipsoid_area((a, a, c)) / exact - 1.0) < 0.011
    assert shapes.ellipsoid_area((2.0, 2.0, 2.0)) == pytest.approx(16.0 * np.pi)


def test_hemisphere_is_upper_half():
    points = shapes.sample_ellipsoid(np.random.default_rng(3), 1000, (1.0, 1.0, 1.0), half=True)
    assert (points[:, 2] >= 0).all()


def test_torus_tube_angle_follows_area():
    major, minor = 1.0, 0.6
    points = shapes.sample_torus(np.random.default_rng(4), N, major, minor)
    rho = np.hypot(points[:, 0], points[:, 1])
    np.testing.assert_allclose(np.hypot(rho - major, points[:, 2]), minor, atol=1e-6)
    theta = np.arctan2(points[:, 2], rho - major)

    def cdf(t):  # the density is proportional to (major + minor cos t) on [-pi, pi]
        return (major * (t + np.pi) + minor * np.sin(t)) / (2.0 * np.pi * major)

    assert stats.kstest(theta, cdf).pvalue > 1e-3
    assert stats.kstest(theta, "uniform", args=(-np.pi, 2 * np.pi)).pvalue < 1e-6  # the test has power


def test_torus_arc_is_centred_on_x():
    points = shapes.sample_torus(np.random.default_rng(5), 2000, 1.0, 0.2, arc=0.5)
    phi = np.arctan2(points[:, 1], points[:, 0])
    assert np.abs(phi).max() <= np.pi / 2 + 1e-12


def test_cone_side_and_cap():
    radius, height = 1.0, 2.0
    points = shapes.sample_frustum(np.random.default_rng(6), N, radius, 0.0, height, caps=(True, False))
    on_cap = np.abs(points[:, 2] + height / 2) < 1e-9
    side = points[~on_cap]
    t = side[:, 2] / height + 0.5  # 0 at the base, 1 at the apex
    np.testing.assert_allclose(np.hypot(side[:, 0], side[:, 1]), radius * (1.0 - t), atol=1e-6)
    cap_r = np.hypot(points[on_cap, 0], points[on_cap, 1]) / radius
    assert cap_r.max() <= 1.0 + 1e-12
    assert stats.kstest(cap_r**2, "uniform").pvalue > 1e-3  # uniform on a disk: r^2 ~ U(0, 1)
    cap_share = np.pi * radius**2 / (np.pi * radius**2 + np.pi * radius * np.hypot(radius, height))
    assert abs(on_cap.mean() - cap_share) < _binomial_tolerance(N, cap_share)
    assert stats.kstest(t, lambda s: 1.0 - (1.0 - s) ** 2).pvalue > 1e-3  # side area grows with the radius


def test_composite_splits_points_by_area():
    parts = [shapes.ellipsoid((1.0, 1.0, 1.0), (-5, 0, 0)), shapes.ellipsoid((2.0, 2.0, 2.0), (5, 0, 0))]
    points = shapes.sample_parts(np.random.default_rng(7), parts, N)
    small = points[:, 0] < 0
    np.testing.assert_allclose(np.linalg.norm(points[small] - [-5, 0, 0], axis=1), 1.0, atol=1e-6)
    assert abs(small.mean() - 0.2) < _binomial_tolerance(N, 0.2)  # areas 4 pi : 16 pi


def test_rod_spans_its_segment():
    start, end, radius = np.array([0.1, -0.2, 0.3]), np.array([1.0, 1.0, 2.0]), 0.05
    part = shapes.rod(start, end, radius)
    points = shapes.sample_parts(np.random.default_rng(8), [part], 5000)
    axis = (end - start) / np.linalg.norm(end - start)
    along = (points - start) @ axis
    across = np.linalg.norm((points - start) - np.outer(along, axis), axis=1)
    assert along.min() > -1e-9 and along.max() < np.linalg.norm(end - start) + 1e-9
    assert along.min() < 1e-9 and along.max() > np.linalg.norm(end - start) - 1e-9  # the caps are there
    assert across.max() < radius + 1e-9
