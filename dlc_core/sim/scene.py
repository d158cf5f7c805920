"""Procedural urban scenes generated around a driven trajectory, and the raycasting scene a scan is cast into.

The road follows the trajectory, so the vehicle always drives on it: the driven line is the ego lane, the road
extends a smoothly varying width to either side of it, and its height is the trajectory's own (the footprint
1.73 m below each sensor pose), so slopes come from the trajectory. Beyond the curbs lie sidewalks, then the
frontage: building rows (varying heights, setbacks and gaps; half of them with pilasters and floor bands that make
the windows depth steps), park land, hedges, slatted fences or walls; behind it a backdrop of trees, bushes and the
odd building, on terrain that rises or falls away from the road and undulates. Street furniture: parked cars (a
body box with a cabin), lamp posts and signs, street trees (a trunk and a crown of scattered small triangles that
gives scattered, partial returns like foliage), bushes, bins, bollards and pedestrians. The mix was tuned against
the KITTI scans in ../shared/data (bench/sim_vs_kitti.py): similar point counts, range distribution and ground
share.

Geometry is made lazily in tiles: objects in 40 m stretches of the path, the ground in 40 m x 40 m squares of the
world. Each tile is a pure function of the path, the seed and the tile's index, so a scan never depends on what
else happens to be loaded and a multi-km run only holds the tiles near the sensor (`UrbanWorld.scene_at`).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy.spatial import cKDTree

from dlc_core.errors import InputError

# Albedo of each material at the LiDAR's wavelength (905 nm), in [0, 1]; vegetation is bright in the near infrared.
# The values bring the mean reflectance of a simulated scan to KITTI's (about 0.28).
ASPHALT, SIDEWALK, TERRAIN, CURB = 0.33, 0.38, 0.4, 0.4
FACADE, WALL, METAL, SIGN = (0.2, 0.5), 0.35, 0.3, 0.95
FOLIAGE, BARK, CAR_PAINT, CLOTH = (0.3, 0.55), 0.3, (0.05, 0.6), 0.25

CURB_HEIGHT = 0.15
TILE_LENGTH = 40.0  # metres of path per object tile
CHUNK = 40.0  # side of a ground tile (m)
GROUND_STEP = 0.5  # ground mesh spacing (m)
OBJECT_REACH = 80.0  # how far from its stretch of path a tile's objects can reach (m; the backdrop reaches ~75)
PATH_EXTENSION = 120.0  # straight road added before the first and after the last pose (m)


def _open3d() -> ModuleType:
    """open3d, imported when a scene is first built (it is an optional dependency of the package)."""
    try:
        return importlib.import_module("open3d")
    except ImportError as exc:
        raise InputError("the LiDAR simulator needs open3d: pip install open3d-cpu==0.20.0") from exc


@dataclass
class Mesh:
    """Triangles with one albedo each: vertices (V, 3), triangles (T, 3) vertex indices, albedo (T,)."""

    vertices: np.ndarray
    triangles: np.ndarray
    albedo: np.ndarray

    @staticmethod
    def merge(meshes: Sequence[Mesh]) -> Mesh:
        """One mesh holding all of `meshes` (an empty one when there are none)."""
        offsets = np.cumsum([0] + [len(m.vertices) for m in meshes])
        return Mesh(
            np.concatenate([m.vertices for m in meshes] or [np.zeros((0, 3))]),
            np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)] or [np.zeros((0, 3), np.int64)]),
            np.concatenate([m.albedo for m in meshes] or [np.zeros(0)]),
        )


@dataclass
class Hits:
    """What rays hit: distance (inf for no hit), the unit normal and the albedo of the surface hit."""

    distance: np.ndarray
    normal: np.ndarray
    albedo: np.ndarray


class Scene:
    """An open3d RaycastingScene over meshes, remembering each triangle's albedo."""

    def __init__(self, meshes: Iterable[Mesh]) -> None:
        o3d = _open3d()
        self._raycaster = o3d.t.geometry.RaycastingScene()
        albedo = []
        for mesh in meshes:
            if len(mesh.triangles):
                self._raycaster.add_triangles(
                    o3d.core.Tensor(np.ascontiguousarray(mesh.vertices, np.float32)),
                    o3d.core.Tensor(np.ascontiguousarray(mesh.triangles, np.uint32)),
                )
                albedo.append(np.asarray(mesh.albedo, np.float32))
        self._offsets = np.cumsum([0] + [len(a) for a in albedo])
        self._albedo = np.concatenate(albedo or [np.zeros(0, np.float32)])

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> Hits:
        """Cast rays (origins and unit directions, (N, 3) each, world frame) and report the first hits."""
        o3d = _open3d()
        rays = o3d.core.Tensor(np.hstack([origins, directions]).astype(np.float32))
        result = self._raycaster.cast_rays(rays)
        distance = result["t_hit"].numpy().astype(np.float64)
        hit = np.isfinite(distance)
        geometry = result["geometry_ids"].numpy()[hit].astype(np.int64)
        albedo = np.zeros(len(distance))
        albedo[hit] = self._albedo[self._offsets[geometry] + result["primitive_ids"].numpy()[hit]]
        return Hits(distance, result["primitive_normals"].numpy().astype(np.float64), albedo)


# ---------------------------------------------------------------------------------------------------------------
# Mesh primitives


def box(bottom_centre: Sequence[float], size: Sequence[float], yaw: float, albedo: float) -> Mesh:
    """An upright box: size = (length along `yaw`, width, height), standing on `bottom_centre`."""
    length, width, height = size
    corners = np.array([[x, y, z] for z in (0.0, height) for y in (-width / 2, width / 2)
                        for x in (-length / 2, length / 2)])
    faces = [(0, 2, 1), (1, 2, 3), (4, 5, 6), (5, 7, 6), (0, 1, 4), (1, 5, 4),
             (2, 6, 3), (3, 6, 7), (0, 4, 2), (2, 4, 6), (1, 3, 5), (3, 7, 5)]  # fmt: skip
    return Mesh(_yawed(corners, yaw) + np.asarray(bottom_centre), np.array(faces), np.full(12, albedo))


def prism(bottom_centre: Sequence[float], radius: float, height: float, albedo: float, sides: int = 8) -> Mesh:
    """An upright regular prism (a cylinder for poles and trunks) with a top cap."""
    angle = 2 * np.pi * np.arange(sides) / sides
    ring = np.column_stack([radius * np.cos(angle), radius * np.sin(angle), np.zeros(sides)])
    vertices = np.vstack([ring, ring + [0, 0, height], [[0, 0, height]]]) + np.asarray(bottom_centre)
    i, j = np.arange(sides), (np.arange(sides) + 1) % sides
    walls = np.vstack([np.column_stack([i, j, i + sides]), np.column_stack([j, j + sides, i + sides])])
    cap = np.column_stack([i + sides, j + sides, np.full(sides, 2 * sides)])
    triangles = np.vstack([walls, cap])
    return Mesh(vertices, triangles, np.full(len(triangles), albedo))


def blob(rng: np.random.Generator, centre: Sequence[float], radii: Sequence[float], albedo: float,
         density: float = 25.0, leaf: float = 0.3) -> Mesh:
    """Foliage: small randomly oriented triangles filling an ellipsoid, `density` per m^3, so beams partly pass."""
    radii = np.asarray(radii, float)
    count = max(8, int(density * 4 / 3 * np.pi * np.prod(radii)))
    direction = rng.normal(size=(count, 3))
    inside = direction / np.linalg.norm(direction, axis=1, keepdims=True) * rng.random((count, 1)) ** (1 / 3)
    centres = np.asarray(centre) + inside * radii
    vertices = (centres[:, None, :] + rng.normal(0.0, leaf / 2, (count, 3, 3))).reshape(-1, 3)
    shade = np.clip(albedo + rng.normal(0.0, 0.05, count), 0.05, 1.0)
    return Mesh(vertices, np.arange(3 * count).reshape(-1, 3), shade)


def quad_strip(left: np.ndarray, right: np.ndarray, albedo: float) -> Mesh:
    """Quads between two polylines of equal length (K, 3): triangles (l_k, r_k, l_k+1) and (r_k, r_k+1, l_k+1)."""
    k = len(left)
    i = np.arange(k - 1)
    triangles = np.vstack([np.column_stack([i, i + k, i + 1]), np.column_stack([i + k, i + k + 1, i + 1])])
    return Mesh(np.vstack([left, right]), triangles, np.full(len(triangles), albedo))


def _yawed(points: np.ndarray, yaw: float) -> np.ndarray:
    """Points rotated by `yaw` about z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.einsum("nj,jk->nk", points, np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]))


def _rectangle_outline(centre: np.ndarray, length: float, width: float, yaw: float, step: float = 1.0) -> np.ndarray:
    """Points (K, 2) every <= `step` m around an oriented rectangle (for clearance tests)."""
    nx, ny = max(2, int(math.ceil(length / step)) + 1), max(2, int(math.ceil(width / step)) + 1)
    xs, ys = np.linspace(-length / 2, length / 2, nx), np.linspace(-width / 2, width / 2, ny)
    outline = np.vstack([np.column_stack([xs, np.full(nx, y)]) for y in ys[[0, -1]]]
                        + [np.column_stack([np.full(ny, x), ys]) for x in xs[[0, -1]]])
    c, s = math.cos(yaw), math.sin(yaw)
    return outline @ np.array([[c, s], [-s, c]]) + centre


def _smooth_profile(rng: np.random.Generator, s: np.ndarray, low: float, high: float) -> np.ndarray:
    """A smooth random function of arc length in [low, high] (three sines, wavelengths 60-300 m)."""
    wavelength, phase = rng.uniform(60.0, 300.0, 3), rng.uniform(0.0, 2 * np.pi, 3)
    wave = np.sin(2 * np.pi * s[:, None] / wavelength + phase).mean(axis=1)
    return low + (high - low) * (wave + 1.0) / 2.0


# ---------------------------------------------------------------------------------------------------------------
# The road along the trajectory


@dataclass
class RoadQuery:
    """Where points lie relative to the road: metres beyond the nearest road edge (<= 0 on the road), the road's
    height there, the sidewalk width and the terrain's cross slope on that side, and the distance to the driven
    line."""

    beyond: np.ndarray
    road_z: np.ndarray
    sidewalk: np.ndarray
    cross_slope: np.ndarray
    centre: np.ndarray


class RoadPath:
    """The driven line (the sensor footprints on the road) as a polyline, with arc length, road edges and sidewalks.

    The line is extended straight by PATH_EXTENSION metres before the first and after the last footprint, so the
    first and last scans see road behind and ahead, and a standing vehicle still gets a street.
    """

    def __init__(self, footprints: np.ndarray, first_heading: np.ndarray, last_heading: np.ndarray, seed: int) -> None:
        steps = np.arange(PATH_EXTENSION, 0.0, -1.0)[:, None]
        heading0, heading1 = _unit_xy(first_heading), _unit_xy(last_heading)
        before = footprints[0] - steps * np.append(heading0, 0.0)
        after = footprints[-1] + steps[::-1] * np.append(heading1, 0.0)
        points = _thin(np.vstack([before, footprints, after]), 0.2)
        self.xy, self.z = points[:, :2], points[:, 2]
        segment = np.diff(self.xy, axis=0)
        self.s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(segment, axis=1))])
        ahead = np.vstack([segment[:1], segment[1:] + segment[:-1], segment[-1:]])
        self.tangent = ahead / np.linalg.norm(ahead, axis=1, keepdims=True)
        rng = np.random.default_rng([seed, 1])
        self.left = _smooth_profile(rng, self.s, 3.5, 9.0)
        self.right = _smooth_profile(rng, self.s, 2.5, 5.5)
        self.sidewalk = _smooth_profile(rng, self.s, 2.0, 4.5)
        self.slope = np.stack([_smooth_profile(rng, self.s, -0.12, 0.12) for _ in range(2)])  # right, left
        self._tree = cKDTree((self.xy[:-1] + self.xy[1:]) / 2)

    @property
    def length(self) -> float:
        """Arc length of the whole line (m), extensions included."""
        return float(self.s[-1])

    def at(self, s: float) -> tuple[np.ndarray, np.ndarray, float, int]:
        """Position (2,), unit tangent (2,), road height and vertex index of the line at arc length `s`."""
        k = int(np.clip(np.searchsorted(self.s, s) - 1, 0, len(self.s) - 2))
        u = float(np.clip((s - self.s[k]) / max(self.s[k + 1] - self.s[k], 1e-9), 0.0, 1.0))
        xy = self.xy[k] + u * (self.xy[k + 1] - self.xy[k])
        return xy, self.tangent[k], float(self.z[k] + u * (self.z[k + 1] - self.z[k])), k

    def query(self, xy: np.ndarray, neighbours: int = 32) -> RoadQuery:
        """Relate points (N, 2) to the road: the road is the union of the nearby segments' corridors (crossings,
        loops); height, sidewalk and slope come from the nearest segment."""
        k = min(neighbours, len(self.xy) - 1)
        _, seg = self._tree.query(xy, k=k)
        seg = seg.reshape(len(xy), k)
        a, b = self.xy[seg], self.xy[seg + 1]
        d = b - a
        rel = xy[:, None, :] - a
        u = np.clip(np.einsum("nkj,nkj->nk", rel, d) / np.maximum(np.einsum("nkj,nkj->nk", d, d), 1e-12), 0.0, 1.0)
        offset = rel - u[..., None] * d
        distance = np.linalg.norm(offset, axis=-1)
        on_left = d[..., 0] * rel[..., 1] - d[..., 1] * rel[..., 0] > 0
        beyond = distance - np.where(on_left, self.left[seg], self.right[seg])
        rows, nearest = np.arange(len(xy)), np.argmin(distance, axis=1)
        start, fraction = seg[rows, nearest], u[rows, nearest]
        return RoadQuery(
            beyond=beyond.min(axis=1),
            road_z=self.z[start] + fraction * (self.z[start + 1] - self.z[start]),
            sidewalk=self.sidewalk[start],
            cross_slope=self.slope[on_left[rows, nearest].astype(int), start],
            centre=distance[rows, nearest],
        )

    def distance(self, xy: np.ndarray) -> np.ndarray:
        """Approximate distance (within half a segment) from points (N, 2) to the driven line."""
        return self._tree.query(xy)[0]


def _unit_xy(v: np.ndarray) -> np.ndarray:
    """The horizontal part of a direction, normalised (x axis if it is vertical)."""
    h = np.asarray(v, float)[:2]
    n = np.linalg.norm(h)
    return h / n if n > 1e-9 else np.array([1.0, 0.0])


def _natural(i: int) -> int:
    """Integers folded onto the naturals (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...), as random seeds must be >= 0."""
    return 2 * i if i >= 0 else -2 * i - 1


def _thin(points: np.ndarray, spacing: float) -> np.ndarray:
    """Drop points closer than `spacing` (horizontally) to the previous kept one (a standing vehicle)."""
    kept = [points[0]]
    for p in points[1:]:
        if np.hypot(*(p[:2] - kept[-1][:2])) >= spacing:
            kept.append(p)
    return np.array(kept)


# ---------------------------------------------------------------------------------------------------------------
# The world: ground, objects and the scene near the sensor


class UrbanWorld:
    """Everything generated around one path for one seed; `scene_at` gives the raycasting scene near a position.

    reach: the sensor's maximum range. The scene holds every tile within reach + `margin` of the position it was
    built at and is rebuilt once the sensor has moved `margin` metres away from there, so every surface within
    reach of the sensor is always present.
    """

    def __init__(self, path: RoadPath, seed: int, reach: float, margin: float = 30.0) -> None:
        self.path, self.seed, self.reach, self.margin = path, seed, reach, margin
        rng = np.random.default_rng([seed, 2])
        self._wave_vectors = rng.normal(size=(5, 2)) * (2 * np.pi / rng.uniform(25.0, 120.0, (5, 1)))
        self._wave_phase, self._wave_amplitude = rng.uniform(0, 2 * np.pi, 5), rng.uniform(0.05, 0.25, 5)
        self._cache: dict[tuple, Mesh] = {}
        self._centre: np.ndarray | None = None
        self._scene: Scene | None = None

    def scene_at(self, position: np.ndarray) -> Scene:
        """The scene around `position` (3,), rebuilt only when the sensor has left the current one's margin."""
        xy = np.asarray(position, float)[:2]
        if self._centre is None or np.linalg.norm(xy - self._centre) > self.margin:
            keys = self._tiles_near(xy, self.reach + self.margin)
            self._cache = {key: self._cache[key] if key in self._cache else self._make(key) for key in keys}
            self._centre, self._scene = xy, Scene(self._cache.values())
        return self._scene

    def ground_height(self, xy: np.ndarray) -> np.ndarray:
        """Ground height at points (N, 2): the road, raised sidewalks behind the curbs, and beyond them terrain that
        rises or falls away from the road (embankments, ditches) and undulates."""
        return self._ground(xy)[0]

    def _ground(self, xy: np.ndarray) -> tuple[np.ndarray, RoadQuery]:
        """Ground height and the road query at points (N, 2)."""
        q = self.path.query(xy)
        waves = np.sin(np.einsum("nj,kj->nk", xy, self._wave_vectors) + self._wave_phase)
        undulation = np.einsum("nk,k->n", waves, self._wave_amplitude)
        behind = q.beyond - q.sidewalk - 1.0
        terrain = np.clip(behind / 12.0, 0.0, 1.0) * undulation + q.cross_slope * np.clip(behind, 0.0, 25.0)
        terrain += np.clip(behind, 0.0, 1.0) * self._grass(xy)
        return q.road_z + CURB_HEIGHT * np.clip(q.beyond / GROUND_STEP, 0.0, 1.0) + terrain, q

    def _grass(self, xy: np.ndarray) -> np.ndarray:
        """Rough ground (grass, gravel): up to 12 cm of hashed height per point, the same wherever it is computed."""
        hashed = np.sin(12.9898 * xy[:, 0] + 78.233 * xy[:, 1] + 0.618 * self.seed) * 43758.5453
        return 0.12 * (hashed - np.floor(hashed))

    def _tiles_near(self, xy: np.ndarray, radius: float) -> list[tuple]:
        """Keys of the ground chunks and object tiles that can hold surfaces within `radius` of `xy`."""
        half = CHUNK / 2
        lo, hi = np.floor((xy - radius) / CHUNK).astype(int), np.floor((xy + radius) / CHUNK).astype(int)
        grid = np.array([(i, j) for i in range(lo[0], hi[0] + 1) for j in range(lo[1], hi[1] + 1)])
        centres = (grid + 0.5) * CHUNK
        in_disk = np.linalg.norm(np.maximum(np.abs(centres - xy) - half, 0.0), axis=1) <= radius
        near_path = self.path.distance(centres) <= self.reach + half * math.sqrt(2) + 10.0
        ground = [("ground", int(i), int(j)) for i, j in grid[in_disk & near_path]]
        near = np.linalg.norm(self.path.xy - xy, axis=1) <= radius + OBJECT_REACH
        tiles = np.unique((self.path.s[near] // TILE_LENGTH).astype(int))
        return ground + [("objects", int(k)) for k in tiles]

    def _make(self, key: tuple) -> Mesh:
        """Generate one tile's geometry from its key."""
        return self._ground_chunk(*key[1:]) if key[0] == "ground" else self._object_tile(key[1])

    def _ground_chunk(self, i: int, j: int) -> Mesh:
        """The ground of one CHUNK x CHUNK square as a height-field mesh, albedo by surface (road/sidewalk/terrain)."""
        n = int(round(CHUNK / GROUND_STEP)) + 1
        axis = np.linspace(0.0, CHUNK, n)
        gx, gy = np.meshgrid(i * CHUNK + axis, j * CHUNK + axis, indexing="ij")
        xy = np.column_stack([gx.ravel(), gy.ravel()])
        z, q = self._ground(xy)
        v = (np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]).ravel()
        triangles = np.vstack([np.column_stack([v, v + n, v + 1]), np.column_stack([v + 1, v + n, v + n + 1])])
        beyond = q.beyond[triangles].mean(axis=1)
        albedo = np.where(beyond <= 0.0, ASPHALT, np.where(beyond <= q.sidewalk[triangles[:, 0]], SIDEWALK, TERRAIN))
        rng = np.random.default_rng([self.seed, 3, _natural(i), _natural(j)])
        albedo = np.clip(albedo + rng.normal(0.0, 0.03, len(albedo)), 0.02, 1.0)
        return Mesh(np.column_stack([xy, z]), triangles, albedo)

    def _object_tile(self, k: int) -> Mesh:
        """All objects of the path stretch [k, k+1) * TILE_LENGTH: curbs, then each side's frontage and furniture."""
        s0, s1 = k * TILE_LENGTH, min((k + 1) * TILE_LENGTH, self.path.length)
        meshes = []
        for side in (1, -1):
            rng = np.random.default_rng([self.seed, 4, k, side + 1])
            meshes += _curb(self, s0, s1, side)
            meshes += _frontage(self, rng, s0, s1, side)
            meshes += _backdrop(self, rng, s0, s1, side)
            meshes += _street_furniture(self, rng, s0, s1, side)
        return Mesh.merge(meshes)

    def place(self, s: float, lateral: float) -> tuple[np.ndarray, float]:
        """Ground point (x, y, ground z) at arc length `s` and `lateral` metres left of the line, and the line's yaw."""
        xy, tangent, _, _ = self.path.at(s)
        point = xy + lateral * np.array([-tangent[1], tangent[0]])
        return np.append(point, self.ground_height(point[None])[0]), math.atan2(tangent[1], tangent[0])

    def clear(self, outline: np.ndarray, beyond: float) -> bool:
        """True when every point of `outline` (K, 2) lies at least `beyond` metres behind every road edge."""
        return bool(np.all(self.path.query(outline).beyond >= beyond))


# ---------------------------------------------------------------------------------------------------------------
# What stands along the road (one side of one tile at a time; side = +1 left of the line, -1 right)


def _edge(world: UrbanWorld, s: float, side: int) -> tuple[float, float]:
    """Distance from the line to the road edge on `side`, and the sidewalk width, at arc length `s`."""
    _, _, _, k = world.path.at(s)
    return float(world.path.left[k] if side > 0 else world.path.right[k]), float(world.path.sidewalk[k])


def _curb(world: UrbanWorld, s0: float, s1: float, side: int) -> list[Mesh]:
    """The vertical curb face along the road edge, left out where it would stand on another part of the road."""
    s = np.arange(s0, s1 + 0.25, 0.5)
    foot = []
    for si in s:
        xy, tangent, z, k = world.path.at(si)
        edge = world.path.left[k] if side > 0 else world.path.right[k]
        foot.append([*(xy + side * edge * np.array([-tangent[1], tangent[0]])), z])
    foot = np.array(foot)
    middle = (foot[1:, :2] + foot[:-1, :2]) / 2
    keep = np.flatnonzero(world.path.query(middle).beyond >= -0.1)
    bottom, top = foot - [0, 0, 0.05], foot + [0, 0, CURB_HEIGHT]
    return [quad_strip(bottom[[i, i + 1]], top[[i, i + 1]], CURB) for i in keep]


def _frontage(world: UrbanWorld, rng: np.random.Generator, s0: float, s1: float, side: int) -> list[Mesh]:
    """What lines the road behind the sidewalk: a building row, park land, a hedge, a slatted fence or a wall."""
    kind = rng.choice(["buildings", "park", "hedge", "fence", "wall"], p=[0.4, 0.25, 0.12, 0.12, 0.11])
    if kind == "buildings":
        return _building_row(world, rng, s0, s1, side)
    if kind == "park":
        return _park(world, rng, s0, s1, side)
    if kind == "hedge":
        return _hedge(world, rng, s0, s1, side)
    return _barrier(world, rng, s0, s1, side, slatted=kind == "fence")


def _building_row(world: UrbanWorld, rng: np.random.Generator, s0: float, s1: float, side: int) -> list[Mesh]:
    """Buildings of 8-30 m frontage along the stretch, with occasional gaps (a driveway, a yard) between them."""
    meshes, s = [], s0 + rng.uniform(0.0, 3.0)
    while s < s1 - 6.0:
        length = min(rng.uniform(8.0, 30.0), s1 - s)
        meshes += _building(world, rng, s + length / 2, length, side)
        s += length + (rng.uniform(3.0, 15.0) if rng.random() < 0.3 else rng.uniform(0.0, 0.5))
    return meshes


def _building(world: UrbanWorld, rng: np.random.Generator, s: float, length: float, side: int) -> list[Mesh]:
    """One building block facing the road; pushed back until it clears every road, dropped if it cannot."""
    edge, sidewalk = _edge(world, s, side)
    depth, floors = rng.uniform(8.0, 18.0), int(rng.integers(2, 8))
    floor_height, detailed = rng.uniform(2.8, 3.5), rng.random() < 0.5
    front = edge + sidewalk + (0.0 if rng.random() < 0.15 else rng.uniform(2.0, 12.0))
    xy, tangent, _, _ = world.path.at(s)
    out = side * np.array([-tangent[1], tangent[0]])
    yaw = math.atan2(tangent[1], tangent[0])
    for _ in range(3):
        centre = xy + out * (front + depth / 2)
        if world.clear(_rectangle_outline(centre, length, depth + 0.8, yaw), sidewalk):
            break
        front += 4.0
    else:
        return []
    base = float(world.ground_height(_rectangle_outline(centre, length, depth, yaw, step=length)).min()) - 0.5
    height = floors * floor_height + 0.5 + rng.uniform(0.0, 1.5)
    albedo = float(rng.uniform(*FACADE))
    meshes = [box([*centre, base], (length, depth, height), yaw, albedo)]
    if detailed:
        meshes += _facade_relief(xy + out * (front - 0.15), base, length, height, floor_height, yaw, albedo, rng)
    return meshes


def _facade_relief(line: np.ndarray, base: float, length: float, height: float, floor_height: float, yaw: float,
                   albedo: float, rng: np.random.Generator) -> list[Mesh]:
    """Pilasters and floor bands standing 0.3 m proud of a facade, so the windows between them are recesses."""
    along = np.array([math.cos(yaw), math.sin(yaw)])
    bays = max(2, int(length / rng.uniform(2.5, 4.5)) + 1)
    meshes = [box([*(line + u * along), base], (0.5, 0.3, height), yaw, albedo)
              for u in np.linspace(-length / 2 + 0.25, length / 2 - 0.25, bays)]
    meshes += [box([*line, base + 0.5 + f * floor_height], (length, 0.3, 0.8), yaw, albedo)
               for f in range(1, int((height - 1.0) / floor_height) + 1)]
    return meshes


def _barrier(world: UrbanWorld, rng: np.random.Generator, s0: float, s1: float, side: int, slatted: bool) -> list[Mesh]:
    """A wall (solid, 1-2.5 m) or a slatted fence (posts, rails and gappy slats) behind the sidewalk."""
    height, setback = rng.uniform(1.0, 2.5), rng.uniform(0.0, 1.0)
    meshes = []
    for s in np.arange(s0, s1 - 1.0, 2.5):
        edge, sidewalk = _edge(world, s, side)
        a, _ = world.place(s, side * (edge + sidewalk + setback + 0.15))
        b, _ = world.place(s + 2.5, side * (edge + sidewalk + setback + 0.15))
        if not world.clear(np.vstack([a[:2], b[:2]]), sidewalk):
            continue
        section_yaw, span = math.atan2(b[1] - a[1], b[0] - a[0]), float(np.linalg.norm(b[:2] - a[:2]))
        middle = (a + b) / 2 - [0, 0, 0.3]
        if not slatted:
            meshes.append(box(middle, (span, 0.25, height + 0.3), section_yaw, WALL))
            continue
        meshes.append(prism(a - [0, 0, 0.3], 0.06, height + 0.3, METAL, sides=4))
        meshes += [box(middle + [0, 0, 0.3 + h], (span, 0.05, 0.08), section_yaw, WALL) for h in (0.2, height - 0.2)]
        meshes += [box(a + t * (b - a) - [0, 0, 0.1], (0.09, 0.03, height + 0.1), section_yaw, WALL)
                   for t in np.arange(0.1, 0.95, 0.2)]
    return meshes


def _park(world: UrbanWorld, rng: np.random.Generator, s0: float, s1: float, side: int) -> list[Mesh]:
    """Open land behind the sidewalk with scattered trees and bushes up to 25 m deep."""
    meshes = []
    for _ in range(rng.poisson(0.6 * (s1 - s0))):
        s = rng.uniform(s0, s1)
        edge, sidewalk = _edge(world, s, side)
        foot, _ = world.place(s, side * (edge + sidewalk + rng.uniform(1.5, 25.0)))
        if world.clear(foot[None, :2], sidewalk + 0.5):
            meshes += _tree(rng, foot) if rng.random() < 0.35 else [_bush(rng, foot)]
    return meshes


def _hedge(world: UrbanWorld, rng: np.random.Generator, s0: float, s1: float, side: int) -> list[Mesh]:
    """A hedge 0.8-2.2 m tall behind the sidewalk: foliage in 2.5 m sections."""
    height, depth, setback = rng.uniform(0.8, 2.2), rng.uniform(0.8, 1.6), rng.uniform(0.0, 2.0)
    meshes = []
    for s in np.arange(s0, s1 - 1.0, 2.5):
        edge, sidewalk = _edge(world, s + 1.25, side)
        foot, yaw = world.place(s + 1.25, side * (edge + sidewalk + setback + depth / 2))
        if world.clear(_rectangle_outline(foot[:2], 2.5, depth, yaw), sidewalk):
            shade = float(rng.uniform(*FOLIAGE))
            part = blob(rng, foot + [0, 0, height / 2], (1.5, depth / 2, height / 2), shade, density=40.0, leaf=0.25)
            meshes.append(Mesh(_yawed(part.vertices - foot, yaw) + foot, part.triangles, part.albedo))
    return meshes


def _backdrop(world: UrbanWorld, rng: np.random.Generator, s0: float, s1: float, side: int) -> list[Mesh]:
    """What stands 12-45 m behind the road edge: trees, bushes and now and then a building (the second row)."""
    meshes = []
    for _ in range(rng.poisson(0.5 * (s1 - s0))):
        s = rng.uniform(s0, s1)
        edge, sidewalk = _edge(world, s, side)
        foot, yaw = world.place(s, side * (edge + sidewalk + rng.uniform(12.0, 45.0)))
        if not world.clear(foot[None, :2], sidewalk + 0.5):
            continue
        kind = rng.random()
        if kind < 0.06:
            size = rng.uniform([10.0, 8.0, 6.0], [30.0, 20.0, 25.0])
            if world.clear(_rectangle_outline(foot[:2], size[0], size[1], yaw), sidewalk + 0.5):
                meshes.append(box(foot - [0, 0, 0.5], size, yaw, float(rng.uniform(*FACADE))))
        else:
            meshes += _tree(rng, foot) if kind < 0.5 else [_bush(rng, foot)]
    return meshes


def _street_furniture(world: UrbanWorld, rng: np.random.Generator, s0: float, s1: float, side: int) -> list[Mesh]:
    """Lamp posts and signs, street trees, parked cars and small clutter on one side of one stretch."""
    meshes = _along(rng, s0, s1, rng.uniform(20.0, 35.0), lambda s: _post(world, rng, s, side))
    if rng.random() < 0.35:
        meshes += _along(rng, s0, s1, rng.uniform(7.0, 14.0), lambda s: _street_tree(world, rng, s, side))
    if rng.random() < 0.4:
        meshes += _parked_cars(world, rng, s0, s1, side)
    for _ in range(rng.poisson(1.5)):
        meshes += _clutter(world, rng, rng.uniform(s0, s1), side)
    return meshes


def _along(rng: np.random.Generator, s0: float, s1: float, spacing: float, make: Callable[[float], list[Mesh]]
           ) -> list[Mesh]:
    """`make(s)` at regular arc lengths (random phase) through the stretch."""
    return [m for s in np.arange(s0 + rng.uniform(0.0, spacing), s1, spacing) for m in make(float(s))]


def _post(world: UrbanWorld, rng: np.random.Generator, s: float, side: int) -> list[Mesh]:
    """A lamp post with an arm over the road (mostly) or a traffic sign, 0.5 m behind the curb."""
    edge, _ = _edge(world, s, side)
    foot, yaw = world.place(s, side * (edge + 0.5))
    if not world.clear(foot[None, :2], 0.3):
        return []
    if rng.random() < 0.7:
        height = rng.uniform(6.0, 9.0)
        arm = 1.5 * side * np.array([math.sin(yaw), -math.cos(yaw), 0.0])
        return [prism(foot, 0.1, height, METAL),
                box(foot + arm / 2 + [0, 0, height - 0.1], (0.1, 1.5, 0.1), yaw, METAL),
                box(foot + arm + [0, 0, height - 0.35], (0.6, 0.3, 0.25), yaw, METAL)]
    return [prism(foot, 0.04, 2.6, METAL, sides=4),
            box(foot + [0, 0, 2.0], (0.04, 0.65, 0.65), yaw + rng.uniform(-0.2, 0.2), SIGN)]


def _street_tree(world: UrbanWorld, rng: np.random.Generator, s: float, side: int) -> list[Mesh]:
    """A tree on the sidewalk (or a bush when the sidewalk is narrow)."""
    edge, sidewalk = _edge(world, s, side)
    foot, _ = world.place(s, side * (edge + sidewalk * rng.uniform(0.4, 0.7)))
    if not world.clear(foot[None, :2], 0.5):
        return []
    return _tree(rng, foot) if sidewalk > 2.0 else [_bush(rng, foot)]


def _tree(rng: np.random.Generator, foot: np.ndarray) -> list[Mesh]:
    """A trunk and a foliage crown."""
    trunk, crown = rng.uniform(1.8, 4.0), rng.uniform([1.2, 1.2, 1.0], [3.5, 3.5, 3.0])
    return [prism(foot, rng.uniform(0.1, 0.3), trunk + crown[2] * 0.5, BARK),
            blob(rng, foot + [0, 0, trunk + crown[2] * 0.8], crown, float(rng.uniform(*FOLIAGE)))]


def _bush(rng: np.random.Generator, foot: np.ndarray) -> Mesh:
    """A low foliage blob on the ground."""
    radii = rng.uniform([0.5, 0.5, 0.4], [1.6, 1.6, 1.0])
    return blob(rng, foot + [0, 0, radii[2] * 0.7], radii, float(rng.uniform(*FOLIAGE)), density=35.0, leaf=0.25)


def _parked_cars(world: UrbanWorld, rng: np.random.Generator, s0: float, s1: float, side: int) -> list[Mesh]:
    """A row of parked cars along the curb where the road is wide enough; none may touch the driven line."""
    meshes, s = [], s0 + rng.uniform(0.0, 8.0)
    while s < s1:
        length = rng.uniform(3.9, 4.9)
        edge, _ = _edge(world, s + length / 2, side)
        foot, yaw = world.place(s + length / 2, side * (edge - 1.1))
        yaw += rng.normal(0.0, 0.03)
        outline = _rectangle_outline(foot[:2], length, 1.8, yaw, step=0.5)
        if edge >= 3.8 and rng.random() < 0.6 and world.path.query(outline).centre.min() >= 1.8:
            meshes += _car(rng, foot, length, yaw)
        s += length + rng.uniform(0.6, 4.0)
    return meshes


def _car(rng: np.random.Generator, foot: np.ndarray, length: float, yaw: float) -> list[Mesh]:
    """A car: a body box from 0.2 m above the ground and a cabin set towards the back."""
    paint, forward = float(rng.uniform(*CAR_PAINT)), np.array([math.cos(yaw), math.sin(yaw), 0.0])
    cabin = length * rng.uniform(0.45, 0.6)
    return [box(foot + [0, 0, 0.2], (length, 1.8, rng.uniform(0.7, 0.9)), yaw, paint),
            box(foot - forward * length * 0.08 + [0, 0, 0.95], (cabin, 1.6, rng.uniform(0.45, 0.6)), yaw, paint)]


def _clutter(world: UrbanWorld, rng: np.random.Generator, s: float, side: int) -> list[Mesh]:
    """One small thing on the sidewalk: a bin, a bollard, a pedestrian or a kiosk-sized box."""
    edge, sidewalk = _edge(world, s, side)
    foot, yaw = world.place(s, side * (edge + rng.uniform(0.4, max(0.5, sidewalk - 0.4))))
    if not world.clear(foot[None, :2], 0.3):
        return []
    kind = rng.integers(4)
    if kind == 0:
        return [box(foot, (0.6, 0.6, 1.1), yaw, METAL)]
    if kind == 1:
        return [prism(foot, 0.1, 0.9, METAL)]
    if kind == 2:
        return [box(foot, (0.25, 0.4, 0.9), yaw, CLOTH), box(foot + [0, 0, 0.9], (0.3, 0.5, 0.6), yaw, CLOTH),
                box(foot + [0, 0, 1.5], (0.22, 0.22, 0.25), yaw, CLOTH)]
    return [box(foot, rng.uniform([1.2, 1.2, 1.8], [2.5, 2.5, 2.8]), yaw, WALL)]
