"""ICP refinement of a coarse rigid registration (e.g. a registration network's output).

Three local methods, all started from the caller's 4x4 source->target guess:

* ``"point-to-plane"`` (open3d, the default): minimises distances to the target's tangent planes (normals are
  estimated here). Converges in few iterations on surfaces such as range scans, and because it only needs the
  target's planes it stays accurate on downsampled clouds.
* ``"gicp"`` (small_gicp): Generalized ICP, a plane-to-plane model using per-point covariances of both clouds.
  At least as accurate as point-to-plane on the bunny scans at similar speed, multi-threaded, and the least
  disturbed by a large correspondence distance.
* ``"point-to-point"`` (open3d): classic ICP, no normals needed, kept as the simple reference. It treats the
  sampled target points as the surface, so it converges slowly and its error grows with the sample spacing: use
  a voxel size of about twice the point spacing or less.

A single correspondence distance must be large enough to catch the initial error, but on partially overlapping
clouds a large distance lets non-overlapping points pull the result off (by degrees for the open3d methods on
the bunny scans); ``ICPConfig.min_correspondence_distance`` therefore enables a coarse-to-fine schedule.

All three share the same preprocessing (optional voxel-grid downsampling, done here in numpy) and report the same
quality numbers, computed by ``evaluate_alignment`` on the full-resolution input clouds, so results are comparable
across methods. open3d and small_gicp are imported only when a method needs them.

All distances (correspondence distances, ``voxel_size``, ``inlier_rmse``) are in the units of the clouds.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from numbers import Integral, Real
from types import ModuleType

import numpy as np
from scipy.spatial import cKDTree

from .errors import InputError
from .pointcloud import check_cloud, transform_cloud, voxel_downsample

METHODS = ("point-to-point", "point-to-plane", "gicp")

# Normals (point-to-plane) and covariances (GICP) are fitted to this many nearest neighbours; for normals the
# neighbourhood is also limited to _NORMAL_RADIUS_FACTOR times the target's median point spacing.
_NEIGHBOURS = 20
_NORMAL_RADIUS_FACTOR = 4.0
# small_gicp stops when an update is smaller than these; its defaults (0.1 deg, 1e-3 in cloud units) stop too
# early for metre-scale clouds, so the translation tolerance is scaled by the correspondence distance.
_GICP_ROTATION_EPS = 1e-5  # radians
_GICP_TRANSLATION_EPS_FACTOR = 1e-4
_RIGID_TOLERANCE = 1e-5
_GATE_SHRINK = 4.0  # coarse-to-fine: the correspondence distance shrinks by at most this factor per stage


@dataclass(frozen=True, kw_only=True)
class ICPConfig:
    """Settings of ``refine``. Distances are in the units of the point clouds (metres for the bunny scans).

    method: ``"point-to-point"``, ``"point-to-plane"`` or ``"gicp"``.
    max_correspondence_distance: pairs farther apart than this are ignored; must exceed the error of the initial
        guess (no default: it depends on the units and on how good the guess is).
    min_correspondence_distance: if set, ICP runs coarse to fine: stages with the distance shrinking geometrically
        (by at most 4x per stage) from max_correspondence_distance down to this value, each stage starting from
        the previous result. A large gate is needed to catch a poor initial guess but biases the result on
        partially overlapping clouds (non-overlapping points get matched); the final small gate removes that bias.
        A few times the point spacing (or the voxel size) works well. None = one stage at
        max_correspondence_distance.
    iterations: maximum number of ICP iterations per stage.
    voxel_size: voxel-grid downsampling of both clouds before ICP; 0 = use every point.
    num_threads: threads for ICP (small_gicp's and open3d's). With more than one, open3d sums its normal equations
        in whatever order the threads finish, so a pair near the edge of ICP's basin can converge differently from
        run to run (2 of 80 bunny pairs in `dlc demo`); 1 gives the same answer every run.
    relative_change: open3d ends a stage when fitness and inlier RMSE change by less than this (relative; open3d's
        default 1e-6). On LiDAR scans 1e-6 ran every iteration and 1e-4 took 40% less time on kitti_mini
        consecutive pairs (translation error +0.3-0.4 mm), so the scan pipeline uses 1e-4; on the bunny pairs 1e-4
        cost successes (70.0% instead of 72.5% for DLC+DCP with ICP), so objects keep 1e-6.
    """

    method: str = "point-to-plane"
    max_correspondence_distance: float
    min_correspondence_distance: float | None = None
    iterations: int = 50
    voxel_size: float = 0.0
    num_threads: int = 2
    relative_change: float = 1e-6

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown ICP method {self.method!r} (choose from {', '.join(METHODS)})")
        _check_number("ICP max_correspondence_distance", self.max_correspondence_distance, Real, minimum=0.0)
        if self.min_correspondence_distance is not None:
            _check_number("ICP min_correspondence_distance", self.min_correspondence_distance, Real, minimum=0.0)
            if self.min_correspondence_distance > self.max_correspondence_distance:
                raise InputError(
                    f"ICP min_correspondence_distance ({self.min_correspondence_distance}) must not exceed "
                    f"max_correspondence_distance ({self.max_correspondence_distance})"
                )
        _check_number("ICP voxel_size", self.voxel_size, Real, minimum=0.0, allow_minimum=True)
        _check_number("ICP iterations", self.iterations, Integral, minimum=1, allow_minimum=True)
        _check_number("ICP num_threads", self.num_threads, Integral, minimum=1, allow_minimum=True)
        _check_number("ICP relative_change", self.relative_change, Real, minimum=0.0, allow_minimum=True)

    def gates(self) -> list[float]:
        """Correspondence distance of each stage, coarse to fine."""
        if self.min_correspondence_distance is None:
            return [float(self.max_correspondence_distance)]
        ratio = self.max_correspondence_distance / self.min_correspondence_distance
        stages = 1 + math.ceil(math.log(ratio, _GATE_SHRINK) - 1e-9)
        return np.geomspace(self.max_correspondence_distance, self.min_correspondence_distance, stages).tolist()


@dataclass
class ICPResult:
    """Outcome of ``refine``.

    transform: 4x4 float64, maps source points into the target frame.
    fitness: fraction of the (full-resolution) source points whose nearest target point is closer than the final
        correspondence distance (min_correspondence_distance if set, else max_correspondence_distance) after
        applying ``transform``.
    inlier_rmse: RMS distance of those points to their nearest target point (0 when there are none).
    iterations: iterations run over all stages (small_gicp reports it; open3d does not, then None).
    """

    transform: np.ndarray
    fitness: float
    inlier_rmse: float
    iterations: int | None


class Cloud:
    """A cloud prepared once for repeated ICP runs: what the methods need (the open3d cloud and its normals, a KD-tree
    for the fitness, small_gicp's covariances) is computed on first use and kept. In odometry a scan is the target
    of the pair's ICP runs and then the source of the next pair, so this halves the per-frame work."""

    def __init__(self, points: np.ndarray, name: str = "cloud", normals: np.ndarray | None = None) -> None:
        """`normals`: unit normals (N, 3) known already (a local map built from clouds that have them); else they
        are estimated when point-to-plane ICP first needs them."""
        self.points = check_cloud(points, name)
        self._given_normals = normals
        self._facing: np.ndarray | None = None
        self._open3d = None
        self._normals = False
        self._tree: cKDTree | None = None
        self._gicp = None

    def __len__(self) -> int:
        return len(self.points)

    def kdtree(self) -> cKDTree:
        """scipy KD-tree of the points (for fitness and inlier RMSE)."""
        if self._tree is None:
            self._tree = cKDTree(self.points)
        return self._tree

    def open3d(self, normals: bool):
        """The open3d PointCloud, with normals estimated (once) when asked."""
        o3d = _import("open3d", "open3d")
        if self._open3d is None:
            self._open3d = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(self.points))
        if normals and not self._normals:
            if self._given_normals is not None:
                self._open3d.normals = o3d.utility.Vector3dVector(self._given_normals)
            else:
                radius = _NORMAL_RADIUS_FACTOR * _median_spacing(self.points, self.kdtree())
                self._open3d.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=_NEIGHBOURS))
            self._normals = True
        return self._open3d

    def sensor_facing_normals(self) -> np.ndarray:
        """The point-to-plane normals (N, 3), each turned to face the origin (the sensor of a scan in its own frame),
        so that normals of one surface seen from several scans agree in sign and can be averaged. Computed once: a
        keyframe joins every local map built while it is among the last ones."""
        if self._facing is None:
            normals = np.asarray(self.open3d(normals=True).normals).copy()
            normals[np.einsum("ij,ij->i", normals, self.points) > 0] *= -1
            self._facing = normals
        return self._facing

    def gicp(self, threads: int):
        """small_gicp's (PointCloud, KdTree) with per-point covariances."""
        if self._gicp is None:
            small_gicp = _import("small_gicp", "small_gicp")
            cloud = small_gicp.PointCloud(self.points)
            tree = small_gicp.KdTree(cloud, num_threads=threads)
            small_gicp.estimate_covariances(cloud, tree, num_neighbors=_NEIGHBOURS, num_threads=threads)
            self._gicp = (cloud, tree)
        return self._gicp


def refine(
    source: np.ndarray | Cloud, target: np.ndarray | Cloud, init: np.ndarray, config: ICPConfig, scored: Cloud | None = None
) -> ICPResult:
    """Refine the source->target guess ``init`` by ICP; source and target are (N, 3) arrays or prepared Clouds.

    Arrays are downsampled with ``config.voxel_size`` for the ICP itself and scored at full resolution; a Cloud is
    used as it is (prepare it at the resolution you want). ``scored``: the cloud the fitness is measured on when
    the source Cloud is a sparser copy of it (a sparse source aligns faster; the fitness stays comparable).
    """
    init = _check_rigid(init, "init")
    full_src, src = _clouds(source, config.voxel_size, "source")
    if scored is not None:
        full_src = scored
    full_tgt, tgt = _clouds(target, config.voxel_size, "target")
    if config.method == "gicp":
        transform, iterations = _align_gicp(src, tgt, init, config)
    else:
        transform, iterations = _align_open3d(src, tgt, init, config), None
    fitness, rmse = _alignment(full_src.points, full_tgt.kdtree(), transform, config.gates()[-1])
    return ICPResult(transform=transform, fitness=fitness, inlier_rmse=rmse, iterations=iterations)


def _clouds(cloud: np.ndarray | Cloud, voxel_size: float, name: str) -> tuple[Cloud, Cloud]:
    """(full-resolution cloud for scoring, cloud to align) of an array or a prepared Cloud."""
    if isinstance(cloud, Cloud):
        return cloud, cloud
    full = Cloud(cloud, name)
    return full, (full if voxel_size == 0 else Cloud(_downsample(full.points, voxel_size, name), name))


def evaluate_alignment(
    source: np.ndarray, target: np.ndarray, transform: np.ndarray, max_correspondence_distance: float
) -> tuple[float, float]:
    """(fitness, inlier_rmse) of ``transform`` applied to ``source`` against ``target``.

    fitness is the fraction of source points whose nearest target point is closer than (strictly less than)
    ``max_correspondence_distance``; inlier_rmse is the RMS of those nearest distances (0 when there are none).
    """
    source = check_cloud(source, "source")
    target = check_cloud(target, "target")
    transform = _check_rigid(transform, "transform")
    _check_number("max_correspondence_distance", max_correspondence_distance, Real, minimum=0.0)
    return _alignment(source, cKDTree(target), transform, max_correspondence_distance)


def score(source: Cloud, target: Cloud, transform: np.ndarray, gate: float) -> tuple[float, float]:
    """(fitness, inlier_rmse) of a transform between prepared clouds, without refining it (uses the cached KD-tree)."""
    return _alignment(source.points, target.kdtree(), transform, gate)


def _alignment(source: np.ndarray, target_tree: cKDTree, transform: np.ndarray, gate: float) -> tuple[float, float]:
    distances, _ = target_tree.query(transform_cloud(source, transform), distance_upper_bound=gate)
    inliers = distances[np.isfinite(distances)]
    if inliers.size == 0:
        return 0.0, 0.0
    return inliers.size / len(source), float(np.sqrt(np.mean(inliers**2)))


def _check_number(
    name: str, value: object, kind: type[Real] | type[Integral], minimum: float, allow_minimum: bool = False
) -> None:
    """InputError unless value is a finite number of the kind, above minimum (or equal to it if allowed)."""
    valid = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if not (valid and (value > minimum or (allow_minimum and value == minimum))):
        bound = ">=" if allow_minimum else ">"
        noun = "an integer" if kind is Integral else "a number"
        raise InputError(f"{name} must be {noun} {bound} {minimum}, got {value!r}")


def _check_rigid(matrix: np.ndarray, name: str) -> np.ndarray:
    """The matrix as a float64 4x4 rigid transform, or InputError saying why it is not one."""
    try:
        array = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} is not a numeric 4x4 matrix ({exc})") from exc
    if array.shape != (4, 4):
        raise InputError(f"{name} must be a 4x4 matrix, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"{name} contains NaN/Inf")
    if not np.allclose(array[3], [0.0, 0.0, 0.0, 1.0], atol=_RIGID_TOLERANCE):
        raise InputError(f"{name} is not a rigid transform: last row is {array[3].tolist()}, expected [0, 0, 0, 1]")
    rotation = array[:3, :3]
    deviation = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if deviation > _RIGID_TOLERANCE:
        raise InputError(
            f"{name} is not a rigid transform: rotation part is not orthonormal (max |RᵀR - I| = {deviation:.3g})"
        )
    if np.linalg.det(rotation) < 0:
        raise InputError(f"{name} is not a rigid transform: rotation part is a reflection (det < 0)")
    return array


def _downsample(points: np.ndarray, voxel_size: float, name: str) -> np.ndarray:
    """Voxel-grid centroids, refusing a voxel size that leaves fewer than 3 points."""
    reduced = voxel_downsample(points, voxel_size)
    if len(reduced) < 3:
        raise InputError(f"voxel_size {voxel_size} leaves only {len(reduced)} points in the {name} cloud")
    return reduced


def _median_spacing(points: np.ndarray, tree: cKDTree) -> float:
    """Median distance from a point to its nearest distinct neighbour (on a subsample of 2000-4000 points;
    duplicates are skipped by looking one neighbour further, so no sort of the whole cloud is needed)."""
    sample = points[:: max(1, len(points) // 2000)]
    distances, _ = tree.query(sample, k=min(4, len(points)))
    distinct = np.where(distances[:, 1:] > 0, distances[:, 1:], np.inf).min(axis=1)
    return float(np.median(distinct[np.isfinite(distinct)])) if np.isfinite(distinct).any() else 0.0


def _import(module: str, package: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"this ICP method needs the '{package}' package: pip install {package}") from exc


def _align_open3d(source: Cloud, target: Cloud, init: np.ndarray, config: ICPConfig) -> np.ndarray:
    """Point-to-point or point-to-plane ICP with open3d; returns the 4x4 source->target transform."""
    o3d = _import("open3d", "open3d")
    reg, plane = o3d.pipelines.registration, config.method == "point-to-plane"
    estimation = reg.TransformationEstimationPointToPlane() if plane else reg.TransformationEstimationPointToPoint()
    criteria = reg.ICPConvergenceCriteria(relative_fitness=config.relative_change, relative_rmse=config.relative_change,
                                          max_iteration=config.iterations)  # fmt: skip
    previous = o3d.utility.get_max_threads()
    o3d.utility.set_max_threads(config.num_threads)
    try:
        src, tgt = source.open3d(normals=False), target.open3d(normals=plane)
        transform = init
        for gate in config.gates():
            transform = reg.registration_icp(src, tgt, gate, transform, estimation, criteria).transformation
    finally:
        o3d.utility.set_max_threads(previous)
    return np.array(transform, dtype=np.float64)


def _align_gicp(source: Cloud, target: Cloud, init: np.ndarray, config: ICPConfig) -> tuple[np.ndarray, int]:
    """Generalized ICP with small_gicp; returns the 4x4 source->target transform and the total iteration count."""
    small_gicp = _import("small_gicp", "small_gicp")
    (tgt, tgt_tree), (src, _) = target.gicp(config.num_threads), source.gicp(config.num_threads)
    transform, iterations = init, 0
    for gate in config.gates():
        result = small_gicp.align(
            tgt,
            src,
            tgt_tree,
            init_T_target_source=transform,
            registration_type="GICP",
            max_correspondence_distance=gate,
            num_threads=config.num_threads,
            max_iterations=config.iterations,
            rotation_epsilon=_GICP_ROTATION_EPS,
            translation_epsilon=_GICP_TRANSLATION_EPS_FACTOR * gate,
        )
        transform, iterations = result.T_target_source, iterations + result.iterations
    return np.array(transform, dtype=np.float64), iterations
