"""Procedural ModelNet-like shapes: 20 categories built from posed geometric primitives, sampled as point clouds.

Why: training and testing registration needs many object-like point clouds; ModelNet40 needs a download, this
needs nothing (pure numpy, offline).  Every surface sampler is analytic and area-uniform (boxes by face area,
frusta by inverse CDF, ellipsoids and tori by rejection), and a composite shape spreads its points over its
parts in proportion to their areas, so the clouds look like ModelNet40's HDF5 (DCP's data): ``num_points``
points, centred at their centroid and scaled so that the largest point norm is 1.  z is up.

The split: ``TRAIN_CATEGORIES`` (the first 14) are for training, ``UNSEEN_CATEGORIES`` (the last 6) test
generalisation to categories never seen.  Independently, instances come in two disjoint streams, ``"train"``
and ``"test"``: instance ``i`` of category ``c`` in split ``s`` is built from the seed ``(root, s, c, i)``, so it is
bit-identical on every call and never coincides with an instance of the other split.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import numpy as np

Vec3 = tuple[float, float, float]
Sampler = Callable[[np.random.Generator, int], np.ndarray]

_SEED_ROOT = 0x5EED5  # first seed word of every instance; changing it regenerates the whole data set
_SPLITS = ("train", "test")
_ORIGIN: Vec3 = (0.0, 0.0, 0.0)
_IDENTITY = np.eye(3)
_THOMSEN_P = 1.6075  # Knud Thomsen's exponent: ellipsoid area within 1.1 %, exact for spheres


# ---------------------------------------------------------------------------------------------------------------
# Rotations


def rotation(axis: str, angle: float) -> np.ndarray:
    """The 3x3 rotation by ``angle`` radians about the coordinate axis ``"x"``, ``"y"`` or ``"z"``."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def _z_to(direction: np.ndarray) -> np.ndarray:
    """A rotation taking the z axis onto ``direction`` (used to lay a cylinder along a segment)."""
    z = direction / np.linalg.norm(direction)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.column_stack([x, np.cross(z, x), z])


# ---------------------------------------------------------------------------------------------------------------
# Area-uniform surface samplers, in each primitive's own frame (centred at the origin, axis along z)


def _rejection(rng: np.random.Generator, n: int, propose: Sampler, accept: Callable[[np.ndarray], np.ndarray],
               rate: float) -> np.ndarray:
    """``n`` proposals kept with probability ``accept(p)``; ``rate`` is the mean acceptance, for batch sizes."""
    kept, have = [propose(rng, 0)], 0  # the empty proposal makes n = 0 work
    while have < n:
        batch = propose(rng, int((n - have) / rate * 1.2) + 16)
        batch = batch[rng.random(len(batch)) < accept(batch)]
        kept.append(batch)
        have += len(batch)
    return np.concatenate(kept)[:n]


def _unit_sphere(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` points uniform on the unit sphere (normalised Gaussians)."""
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _disk(rng: np.random.Generator, n: int, radius: float, z: float) -> np.ndarray:
    """``n`` points uniform on the disk of ``radius`` in the plane at height ``z``."""
    r = radius * np.sqrt(rng.random(n))
    theta = rng.uniform(0.0, 2.0 * np.pi, n)
    return np.column_stack([r * np.cos(theta), r * np.sin(theta), np.full(n, z)])


def box_area(size: Sequence[float]) -> float:
    """Surface area of a box with full side lengths ``size``."""
    a, b, c = size
    return 2.0 * (a * b + b * c + c * a)


def sample_box(rng: np.random.Generator, n: int, size: Sequence[float]) -> np.ndarray:
    """``n`` points uniform on the surface of the centred box with side lengths ``size``: faces picked by area."""
    size = np.asarray(size, dtype=float)
    face_area = np.prod(size) / size  # area of the face pair orthogonal to each axis
    face = rng.choice(6, size=n, p=np.repeat(face_area, 2) / (2.0 * face_area.sum()))
    points = (rng.random((n, 3)) - 0.5) * size
    axis = face // 2
    points[np.arange(n), axis] = (face % 2 - 0.5) * size[axis]
    return points


def ellipsoid_area(radii: Sequence[float]) -> float:
    """Surface area of the ellipsoid with semi-axes ``radii`` (Thomsen's formula, exact for a sphere)."""
    a, b, c = np.asarray(radii, dtype=float) ** _THOMSEN_P
    return 4.0 * np.pi * ((a * b + a * c + b * c) / 3.0) ** (1.0 / _THOMSEN_P)


def sample_ellipsoid(rng: np.random.Generator, n: int, radii: Sequence[float], half: bool = False) -> np.ndarray:
    """``n`` points uniform on the ellipsoid with semi-axes ``radii`` (only its z >= 0 half if ``half``).

    A uniform unit-sphere point u maps to the ellipsoid by diag(radii), stretching area by
    prod(radii) * |u / radii|; rejection with that weight makes the result exactly area-uniform.
    """
    radii = np.asarray(radii, dtype=float)
    rate = min(radii) * ellipsoid_area(radii) / (4.0 * np.pi * np.prod(radii))
    u = _rejection(rng, n, _unit_sphere, lambda p: min(radii) * np.linalg.norm(p / radii, axis=1), rate)
    if half:
        u[:, 2] = np.abs(u[:, 2])
    return u * radii


def frustum_areas(r_bottom: float, r_top: float, height: float) -> np.ndarray:
    """Areas of a frustum's side, bottom disk and top disk."""
    side = np.pi * (r_bottom + r_top) * np.hypot(height, r_bottom - r_top)
    return np.array([side, np.pi * r_bottom**2, np.pi * r_top**2])


def sample_frustum(rng: np.random.Generator, n: int, r_bottom: float, r_top: float, height: float,
                   caps: tuple[bool, bool] = (True, True)) -> np.ndarray:
    """``n`` points uniform on a frustum along z (cone: ``r_top`` 0; cylinder: equal radii), caps (bottom, top).

    On the side the radius is r(t) = r_bottom + (r_top - r_bottom) t and area grows with r(t), so
    r(t)^2 is uniform between r_bottom^2 and r_top^2 (the inverse CDF).
    """
    areas = frustum_areas(r_bottom, r_top, height) * np.array([1.0, caps[0], caps[1]])
    n_side, n_bottom, n_top = rng.multinomial(n, areas / areas.sum())
    u = rng.random(n_side)
    if np.isclose(r_bottom, r_top):
        t, r = u, np.full(n_side, r_bottom)
    else:
        r = np.sqrt(r_bottom**2 + u * (r_top**2 - r_bottom**2))
        t = (r - r_bottom) / (r_top - r_bottom)
    theta = rng.uniform(0.0, 2.0 * np.pi, n_side)
    side = np.column_stack([r * np.cos(theta), r * np.sin(theta), (t - 0.5) * height])
    return np.concatenate([side, _disk(rng, n_bottom, r_bottom, -height / 2), _disk(rng, n_top, r_top, height / 2)])


def torus_area(major: float, minor: float, arc: float = 1.0) -> float:
    """Surface area of a torus (or of the fraction ``arc`` of its ring)."""
    return 4.0 * np.pi**2 * major * minor * arc


def sample_torus(rng: np.random.Generator, n: int, major: float, minor: float, arc: float = 1.0) -> np.ndarray:
    """``n`` points uniform on a torus around z; ``arc`` < 1 keeps the part of the ring centred on +x.

    The area element is minor * (major + minor cos(theta)) dtheta dphi, so the tube angle theta is drawn
    by rejection with acceptance (major + minor cos(theta)) / (major + minor).
    """
    theta = _rejection(rng, n, lambda g, m: g.uniform(-np.pi, np.pi, m),
                       lambda th: (major + minor * np.cos(th)) / (major + minor), major / (major + minor))
    phi = rng.uniform(-np.pi * arc, np.pi * arc, n)
    ring = major + minor * np.cos(theta)
    return np.column_stack([ring * np.cos(phi), ring * np.sin(phi), minor * np.sin(theta)])


# ---------------------------------------------------------------------------------------------------------------
# Posed primitives and composite shapes


@dataclass(frozen=True)
class Part:
    """One posed primitive: its local surface sampler and area, and the pose x -> rotation @ x + translation."""

    sample: Sampler
    area: float
    rotation: np.ndarray
    translation: np.ndarray


def box(size: Sequence[float], at: Sequence[float] = _ORIGIN, rot: np.ndarray = _IDENTITY) -> Part:
    """A box with side lengths ``size`` centred at ``at``."""
    return Part(partial(sample_box, size=size), box_area(size), rot, np.asarray(at, dtype=float))


def ellipsoid(radii: Sequence[float], at: Sequence[float] = _ORIGIN, rot: np.ndarray = _IDENTITY,
              half: bool = False) -> Part:
    """An ellipsoid (or its upper half, a dome) with semi-axes ``radii`` centred at ``at``."""
    area = ellipsoid_area(radii) / (2.0 if half else 1.0)
    return Part(partial(sample_ellipsoid, radii=radii, half=half), area, rot, np.asarray(at, dtype=float))


def frustum(r_bottom: float, r_top: float, height: float, at: Sequence[float] = _ORIGIN,
            rot: np.ndarray = _IDENTITY, caps: tuple[bool, bool] = (True, True)) -> Part:
    """A frustum (cone if ``r_top`` is 0) centred at ``at``, with optional (bottom, top) caps."""
    area = float(frustum_areas(r_bottom, r_top, height) @ np.array([1.0, caps[0], caps[1]]))
    sampler = partial(sample_frustum, r_bottom=r_bottom, r_top=r_top, height=height, caps=caps)
    return Part(sampler, area, rot, np.asarray(at, dtype=float))


def cylinder(radius: float, height: float, at: Sequence[float] = _ORIGIN, rot: np.ndarray = _IDENTITY,
             caps: tuple[bool, bool] = (True, True)) -> Part:
    """A cylinder centred at ``at`` with optional (bottom, top) caps."""
    return frustum(radius, radius, height, at, rot, caps)


def rod(start: Sequence[float], end: Sequence[float], radius: float) -> Part:
    """A capped cylinder of ``radius`` from ``start`` to ``end`` (legs, poles, arms)."""
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    axis = end - start
    return cylinder(radius, float(np.linalg.norm(axis)), (start + end) / 2, _z_to(axis))


def torus(major: float, minor: float, at: Sequence[float] = _ORIGIN, rot: np.ndarray = _IDENTITY,
          arc: float = 1.0) -> Part:
    """A torus (or an ``arc`` of it) centred at ``at``."""
    sampler = partial(sample_torus, major=major, minor=minor, arc=arc)
    return Part(sampler, torus_area(major, minor, arc), rot, np.asarray(at, dtype=float))


def sample_parts(rng: np.random.Generator, parts: Sequence[Part], n: int) -> np.ndarray:
    """``n`` points spread over posed ``parts`` in proportion to their areas, in random order."""
    areas = np.array([part.area for part in parts])
    counts = rng.multinomial(n, areas / areas.sum())
    points = np.concatenate([part.sample(rng, k) @ part.rotation.T + part.translation
                             for part, k in zip(parts, counts)])
    return points[rng.permutation(n)]


def normalise(points: np.ndarray) -> np.ndarray:
    """Centre ``points`` at their centroid and scale the largest norm to 1, as ModelNet40 HDF5 does."""
    centred = points - points.mean(axis=0)
    return centred / np.linalg.norm(centred, axis=1).max()


# ---------------------------------------------------------------------------------------------------------------
# Categories: each builds the parts of one random instance (x forward, y left, z up, floor at z = 0)


def _corners(half_x: float, half_y: float) -> list[tuple[float, float]]:
    """The four (x, y) corners of a centred rectangle."""
    return [(sx * half_x, sy * half_y) for sx in (-1, 1) for sy in (-1, 1)]


def _legs(rng: np.random.Generator, half_x: float, half_y: float, height: float, thickness: float) -> list[Part]:
    """Four legs from the floor to ``height`` at the corners, square or round at random."""
    if rng.random() < 0.5:
        return [box((thickness, thickness, height), (x, y, height / 2)) for x, y in _corners(half_x, half_y)]
    return [cylinder(thickness / 2, height, (x, y, height / 2)) for x, y in _corners(half_x, half_y)]


def _box_shape(rng: np.random.Generator) -> list[Part]:
    """A box with random side lengths."""
    return [box(rng.uniform(0.3, 1.0, 3))]


def _sphere(rng: np.random.Generator) -> list[Part]:
    """The unit sphere."""
    return [ellipsoid((1.0, 1.0, 1.0))]


def _cylinder_shape(rng: np.random.Generator) -> list[Part]:
    """A closed cylinder, squat to tall."""
    return [cylinder(rng.uniform(0.2, 0.6), rng.uniform(0.5, 2.0))]


def _cone(rng: np.random.Generator) -> list[Part]:
    """A cone with its base disk."""
    return [frustum(rng.uniform(0.3, 0.8), 0.0, rng.uniform(0.6, 1.8), caps=(True, False))]


def _torus_shape(rng: np.random.Generator) -> list[Part]:
    """A ring torus, thin to fat."""
    return [torus(1.0, rng.uniform(0.15, 0.45))]


def _capsule(rng: np.random.Generator) -> list[Part]:
    """A cylinder closed by two hemispheres."""
    r, h = rng.uniform(0.2, 0.45), rng.uniform(0.5, 1.6)
    return [cylinder(r, h, caps=(False, False)),
            ellipsoid((r, r, r), (0, 0, h / 2), half=True),
            ellipsoid((r, r, r), (0, 0, -h / 2), rotation("x", np.pi), half=True)]


def _table(rng: np.random.Generator) -> list[Part]:
    """A rectangular table on four legs with a drawer off-centre under the top."""
    length, width, height = rng.uniform(1.2, 2.0), rng.uniform(0.6, 1.0), rng.uniform(0.6, 0.9)
    top, leg, inset = rng.uniform(0.04, 0.08), rng.uniform(0.05, 0.09), rng.uniform(0.03, 0.1)
    drawer = np.array([rng.uniform(0.25, 0.4) * length, rng.uniform(0.5, 0.8) * width, rng.uniform(0.1, 0.16)])
    drawer_x = length / 2 - inset - leg - drawer[0] / 2
    return [box((length, width, top), (0, 0, height - top / 2)),
            box(drawer, (drawer_x, 0, height - top - drawer[2] / 2)),
            *_legs(rng, length / 2 - inset - leg / 2, width / 2 - inset - leg / 2, height - top, leg)]


def _chair(rng: np.random.Generator) -> list[Part]:
    """A chair: seat on four legs, a backrest leaning back, sometimes armrests."""
    width, depth, seat_h = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.55)
    seat_t, leg, back_h, back_t = rng.uniform(0.04, 0.08), rng.uniform(0.03, 0.06), rng.uniform(0.4, 0.8), 0.04
    lean = rotation("y", -rng.uniform(0.0, 0.3))
    back_at = np.array([-depth / 2 + back_t / 2, 0, seat_h]) + lean @ np.array([0, 0, back_h / 2])
    parts = [box((depth, width, seat_t), (0, 0, seat_h - seat_t / 2)),
             box((back_t, width, back_h), back_at, lean),
             *_legs(rng, depth / 2 - leg / 2, width / 2 - leg / 2, seat_h - seat_t, leg)]
    if rng.random() < 0.4:
        arm_z, post_x = seat_h + rng.uniform(0.18, 0.25), depth / 2 - 0.03
        for y in (-width / 2, width / 2):
            parts += [box((depth, 0.05, 0.04), (0, y, arm_z)), rod((post_x, y, seat_h), (post_x, y, arm_z), 0.015)]
    return parts


def _lamp(rng: np.random.Generator) -> list[Part]:
    """A desk lamp: base disk, pole, an arm reaching forward and a shade pointing down."""
    base_r, base_h, pole_h = rng.uniform(0.15, 0.25), rng.uniform(0.03, 0.06), rng.uniform(0.7, 1.2)
    arm_len, arm_up = rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.8)
    shade_h, shade_tilt = rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.8)
    pole_top = np.array([0.0, 0.0, base_h + pole_h])
    arm_end = pole_top + arm_len * np.array([np.cos(arm_up), 0.0, np.sin(arm_up)])
    opening = np.array([np.sin(shade_tilt), 0.0, -np.cos(shade_tilt)])  # where the light goes
    return [cylinder(base_r, base_h, (0, 0, base_h / 2)),
            rod((0, 0, base_h), pole_top, rng.uniform(0.015, 0.03)),
            rod(pole_top, arm_end, 0.015),
            frustum(rng.uniform(0.15, 0.25), rng.uniform(0.04, 0.08), shade_h, arm_end + opening * shade_h / 2,
                    _z_to(-opening), caps=(False, True))]


def _mug(rng: np.random.Generator) -> list[Part]:
    """An open cup with a half-torus handle on its +x side."""
    r, h = rng.uniform(0.3, 0.45), rng.uniform(0.7, 1.1)
    return [cylinder(r, h, (0, 0, h / 2), caps=(True, False)),
            torus(rng.uniform(0.22, 0.32) * h, rng.uniform(0.03, 0.06), (r, 0, h / 2), rotation("x", np.pi / 2),
                  arc=0.5)]


def _bottle(rng: np.random.Generator) -> list[Part]:
    """A bottle: body, sloping shoulder, narrow capped neck."""
    r, body_h, shoulder_h = rng.uniform(0.2, 0.35), rng.uniform(0.7, 1.2), rng.uniform(0.1, 0.3)
    neck_r, neck_h = r * rng.uniform(0.25, 0.45), rng.uniform(0.15, 0.35)
    return [cylinder(r, body_h, (0, 0, body_h / 2), caps=(True, False)),
            frustum(r, neck_r, shoulder_h, (0, 0, body_h + shoulder_h / 2), caps=(False, False)),
            cylinder(neck_r, neck_h, (0, 0, body_h + shoulder_h + neck_h / 2), caps=(False, True))]


def _airplane(rng: np.random.Generator) -> list[Part]:
    """An airliner: fuselage along x, swept wings, fin and tailplane at the back, sometimes two engines."""
    length, radius = rng.uniform(1.6, 2.2), rng.uniform(0.08, 0.14)
    semi_span, chord, sweep = rng.uniform(0.7, 1.1), rng.uniform(0.2, 0.35), rng.uniform(0.0, 0.5)
    wing_x, tail_chord, fin_h = rng.uniform(-0.05, 0.15) * length, rng.uniform(0.15, 0.25), rng.uniform(0.2, 0.35)
    tail_x = -length / 2 + tail_chord / 2 + 0.05
    parts = [ellipsoid((length / 2, radius, radius)),
             box((tail_chord, 0.02, fin_h), (tail_x, 0, radius * 0.5 + fin_h / 2)),
             box((tail_chord * 0.8, rng.uniform(0.5, 0.9), 0.02), (tail_x, 0, 0))]
    for side in (-1, 1):
        wing_rot = rotation("z", side * sweep)
        wing_at = np.array([wing_x, 0, 0]) + wing_rot @ [0, side * semi_span / 2, 0]
        parts.append(box((chord, semi_span, 0.025), wing_at, wing_rot))
    if rng.random() < 0.6:
        y = rng.uniform(0.3, 0.5) * semi_span
        for side in (-1, 1):
            at = (wing_x + 0.05 - y * np.tan(sweep), side * y, -radius * 0.8)
            parts.append(cylinder(rng.uniform(0.04, 0.07), rng.uniform(0.2, 0.3), at, rotation("y", np.pi / 2)))
    return parts


def _car(rng: np.random.Generator) -> list[Part]:
    """A car: body box, cabin set back, four wheels outside the body."""
    length, width, body_h = rng.uniform(1.6, 2.2), rng.uniform(0.7, 0.9), rng.uniform(0.25, 0.35)
    wheel_r, wheel_w, cabin_h = rng.uniform(0.14, 0.2), rng.uniform(0.1, 0.15), rng.uniform(0.2, 0.3)
    cabin_l, base = rng.uniform(0.4, 0.6) * length, wheel_r * 0.8
    wheel_x = rng.uniform(0.28, 0.36) * length
    return [box((length, width, body_h), (0, 0, base + body_h / 2)),
            box((cabin_l, width * 0.9, cabin_h), (-rng.uniform(0.05, 0.2) * length, 0, base + body_h + cabin_h / 2)),
            *[cylinder(wheel_r, wheel_w, (x, y, wheel_r), rotation("x", np.pi / 2))
              for x, y in _corners(wheel_x, (width + wheel_w) / 2)]]


def _bed(rng: np.random.Generator) -> list[Part]:
    """A bed: frame on short legs, mattress, tall headboard, pillows at the head, sometimes a footboard."""
    length, width, leg_h = rng.uniform(1.8, 2.2), rng.uniform(0.9, 1.6), rng.uniform(0.08, 0.18)
    frame_h, mattress_h, head_h = rng.uniform(0.12, 0.2), rng.uniform(0.15, 0.25), rng.uniform(0.7, 1.1)
    top = leg_h + frame_h + mattress_h
    parts = [box((length, width, frame_h), (0, 0, leg_h + frame_h / 2)),
             box((length * 0.97, width * 0.97, mattress_h), (0, 0, leg_h + frame_h + mattress_h / 2)),
             box((0.06, width, head_h), (-length / 2 - 0.03, 0, head_h / 2)),
             *_legs(rng, length / 2 - 0.04, width / 2 - 0.04, leg_h, 0.06)]
    pillow_y = [0.0] if width < 1.2 else [-width / 4, width / 4]
    pillow = (0.15, 0.4 * width / len(pillow_y), 0.06)
    parts += [ellipsoid(pillow, (-length / 2 + 0.25, y, top + 0.04)) for y in pillow_y]
    if rng.random() < 0.5:
        foot_h = rng.uniform(0.3, 0.5)
        parts.append(box((0.05, width, foot_h), (length / 2 + 0.025, 0, foot_h / 2)))
    return parts


def _shelf(rng: np.random.Generator) -> list[Part]:
    """A bookshelf open at the front (+x): sides, top, bottom, back and 2-4 shelves."""
    depth, width, height = rng.uniform(0.25, 0.4), rng.uniform(0.8, 1.4), rng.uniform(1.0, 2.0)
    t = rng.uniform(0.02, 0.04)
    inner = width - 2 * t
    parts = [box((depth, t, height), (0, side * (width - t) / 2, height / 2)) for side in (-1, 1)]
    parts += [box((depth, inner, t), (0, 0, z)) for z in (t / 2, height - t / 2)]
    parts.append(box((t, inner, height - 2 * t), (-(depth - t) / 2, 0, height / 2)))
    shelves = rng.integers(2, 5)
    parts += [box((depth - t, inner, t), (t / 2, 0, z)) for z in np.linspace(0, height, shelves + 2)[1:-1]]
    return parts


def _stool(rng: np.random.Generator) -> list[Part]:
    """A round stool on 3-4 splayed legs, sometimes with a footrest ring."""
    r, seat_t, height = rng.uniform(0.18, 0.28), rng.uniform(0.04, 0.07), rng.uniform(0.45, 0.8)
    legs, leg_r = rng.integers(3, 5), rng.uniform(0.015, 0.03)
    r_top, r_floor = 0.7 * r, r * rng.uniform(0.9, 1.3)
    leg_top = height - seat_t
    angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(legs) / legs
    parts = [cylinder(r, seat_t, (0, 0, height - seat_t / 2))]
    parts += [rod((r_floor * np.cos(a), r_floor * np.sin(a), 0), (r_top * np.cos(a), r_top * np.sin(a), leg_top), leg_r)
              for a in angles]
    if rng.random() < 0.5:
        z = rng.uniform(0.3, 0.45) * leg_top
        parts.append(torus(r_floor + (r_top - r_floor) * z / leg_top, leg_r * 0.8, (0, 0, z)))
    return parts


def _guitar(rng: np.random.Generator) -> list[Part]:
    """A standing guitar: two flat bouts, a bridge on the front (+y), neck and tilted headstock up z."""
    lower, thick = rng.uniform(0.28, 0.42), rng.uniform(0.06, 0.16)
    upper = lower * rng.uniform(0.7, 0.85)
    upper_z = lower + (lower + upper) * rng.uniform(0.65, 0.8)
    neck_l = rng.uniform(0.6, 1.1)
    neck_z = upper_z + upper * 0.9
    head = rotation("x", -rng.uniform(0.1, 0.3))
    head_at = np.array([0, 0, neck_z + neck_l]) + head @ np.array([0, 0, 0.1])
    flat = rotation("x", np.pi / 2)
    return [cylinder(lower, thick, (0, 0, lower), flat),
            cylinder(upper, thick, (0, 0, upper_z), flat),
            box((lower * 0.6, 0.02, 0.05), (0, thick / 2 + 0.01, lower * 0.6)),
            box((0.08, 0.05, neck_l), (0, 0, neck_z + neck_l / 2)),
            box((0.12, 0.03, 0.2), head_at, head)]


def _tower(rng: np.random.Generator) -> list[Part]:
    """A tower of 3-5 tapering storeys, square or round, under a spire."""
    storeys, width, taper = rng.integers(3, 6), rng.uniform(0.5, 0.8), rng.uniform(0.7, 0.85)
    square = rng.random() < 0.5
    parts, z = [], 0.0
    for _ in range(storeys):
        h = rng.uniform(0.3, 0.6) * width
        parts.append(box((width, width, h), (0, 0, z + h / 2)) if square else cylinder(width / 2, h, (0, 0, z + h / 2)))
        z, width = z + h, width * taper
    spire_h = rng.uniform(0.5, 1.0) * width
    parts.append(frustum(width / 2, 0.0, spire_h, (0, 0, z + spire_h / 2), caps=(False, False)))
    return parts


def _sofa(rng: np.random.Generator) -> list[Part]:
    """A sofa: solid base, backrest at the rear (-x), two armrests and 2-3 seat cushions."""
    length, depth, seat_h = rng.uniform(1.5, 2.4), rng.uniform(0.7, 0.95), rng.uniform(0.3, 0.4)
    back_t, back_h = rng.uniform(0.15, 0.25), rng.uniform(0.35, 0.55)
    arm_t, arm_h = rng.uniform(0.12, 0.22), rng.uniform(0.15, 0.3)
    cushions, cushion_t = rng.integers(2, 4), rng.uniform(0.06, 0.1)
    seat_w, seat_d = length - 2 * arm_t, depth - back_t
    parts = [box((depth, length, seat_h), (0, 0, seat_h / 2)),
             box((back_t, length, back_h), (-(depth - back_t) / 2, 0, seat_h + back_h / 2))]
    parts += [box((depth, arm_t, arm_h), (0, side * (length - arm_t) / 2, seat_h + arm_h / 2)) for side in (-1, 1)]
    cushion_w = seat_w / cushions
    cushion = (seat_d, cushion_w * 0.96, cushion_t)
    parts += [box(cushion, (back_t / 2, -seat_w / 2 + (i + 0.5) * cushion_w, seat_h + cushion_t / 2))
              for i in range(cushions)]
    return parts


def _bench(rng: np.random.Generator) -> list[Part]:
    """A long bench: seat plank on slab ends or four legs, often a backrest on posts at the rear (-x)."""
    length, depth, height = rng.uniform(1.2, 2.0), rng.uniform(0.3, 0.45), rng.uniform(0.4, 0.5)
    seat_t = rng.uniform(0.04, 0.07)
    parts = [box((depth, length, seat_t), (0, 0, height - seat_t / 2))]
    if rng.random() < 0.5:
        end_y = length / 2 - rng.uniform(0.05, 0.15)
        slab = (depth * 0.9, 0.05, height - seat_t)
        parts += [box(slab, (0, side * end_y, (height - seat_t) / 2)) for side in (-1, 1)]
    else:
        parts += _legs(rng, depth / 2 - 0.04, length / 2 - 0.08, height - seat_t, 0.05)
    if rng.random() < 0.6:
        back_h, gap, post_y = rng.uniform(0.2, 0.35), rng.uniform(0.05, 0.15), length / 2 - 0.1
        back_x = -depth / 2 + 0.02
        parts.append(box((0.04, length, back_h), (back_x, 0, height + gap + back_h / 2)))
        parts += [rod((back_x, side * post_y, height), (back_x, side * post_y, height + gap), 0.02) for side in (-1, 1)]
    return parts


_BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "box": _box_shape, "sphere": _sphere, "cylinder": _cylinder_shape, "cone": _cone, "torus": _torus_shape,
    "capsule": _capsule, "table": _table, "chair": _chair, "lamp": _lamp, "mug": _mug, "bottle": _bottle,
    "airplane": _airplane, "car": _car, "bed": _bed,
    "shelf": _shelf, "stool": _stool, "guitar": _guitar, "tower": _tower, "sofa": _sofa, "bench": _bench,
}

CATEGORIES: tuple[str, ...] = tuple(_BUILDERS)
"""All category names; a label is an index into this tuple, so the order is fixed."""
TRAIN_CATEGORIES: tuple[str, ...] = CATEGORIES[:14]
"""Categories to train on."""
UNSEEN_CATEGORIES: tuple[str, ...] = CATEGORIES[14:]
"""Categories held out of training, to test generalisation to unseen shapes."""


# ---------------------------------------------------------------------------------------------------------------
# Public API


def _check_choice(kind: str, value: str, choices: Sequence[str]) -> None:
    """Raise ``ValueError`` naming ``value`` and the valid ``choices`` unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(choices)}")


def sample_shape(category: str, instance: int, split: str = "train", num_points: int = 1024) -> np.ndarray:
    """Points (num_points, 3) float32 of one instance, normalised; the same arguments give the same points."""
    _check_choice("category", category, CATEGORIES)
    _check_choice("split", split, _SPLITS)
    if instance < 0 or num_points < 1:
        raise ValueError(f"need instance >= 0 and num_points >= 1, got instance={instance}, num_points={num_points}")
    rng = np.random.default_rng([_SEED_ROOT, _SPLITS.index(split), CATEGORIES.index(category), instance])
    points = sample_parts(rng, _BUILDERS[category](rng), num_points)
    return normalise(points).astype(np.float32)


def shape_set(split: str, categories: Sequence[str], per_category: int,
              num_points: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Instances 0..per_category-1 of each category: points (N, num_points, 3) float32, labels (N,) int64."""
    for category in categories:
        _check_choice("category", category, CATEGORIES)
    _check_choice("split", split, _SPLITS)
    if per_category < 0:
        raise ValueError(f"need per_category >= 0, got {per_category}")
    points = np.empty((len(categories) * per_category, num_points, 3), dtype=np.float32)
    for k, (category, instance) in enumerate(itertools.product(categories, range(per_category))):
        points[k] = sample_shape(category, instance, split, num_points)
    labels = np.repeat([CATEGORIES.index(c) for c in categories], per_category).astype(np.int64)
    return points, labels
