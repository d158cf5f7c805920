"""The beam model of a Velodyne HDL-64E-like spinning LiDAR and the scan it returns from a raycasting scene.

One scan is one rigid snapshot from one sensor pose: every ray leaves the same origin at the same instant, so a
scan has no motion distortion. KITTI's raw Velodyne scans are not deskewed (the car moves up to ~1.5 m during a
revolution), but its odometry ground truth is one pose per scan; rigid scans make that pose exact for every
simulated point. Points come in the Velodyne frame (x forward, y left, z up), one beam (ring) after another from
the top beam down, each ring in azimuth order from -180 deg, as float32 rows (x, y, z, reflectance).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from dlc_core.sim.scene import Scene

# HDL-64E: an upper block of 32 lasers from +2.0 to -8.33 deg (1/3 deg apart) and a lower block of 32 from -8.83 to
# -24.8 deg (about 1/2 deg apart), 26.8 deg in all (the datasheet's +2 / -24.8 deg field of view).
HDL64_ELEVATIONS_DEG: tuple[float, ...] = tuple(
    round(float(a), 4) for a in np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.83, -24.8, 32)])
)

# Rays that KITTI's own car and sensor mount block, read off the real scans in ../shared/data (sequences 01, 02 and
# 10 agree): (azimuth from, azimuth to, elevation below which nothing returns), degrees, azimuth 0 = forward, +90 =
# left. No return below -24 deg anywhere, below about -23 deg towards the front and rear quarters, -22 deg straight
# ahead (the bonnet), -19.5 deg straight behind (the rear of the car) and -17 deg at azimuth -70 deg (a mount).
KITTI_BODY_SHADOW: tuple[tuple[float, float, float], ...] = (
    (-180.0, 180.0, -24.0), (120.0, 180.0, -23.0), (-180.0, -120.0, -23.0), (-40.0, 40.0, -23.0),
    (-20.0, 20.0, -22.0), (160.0, 180.0, -19.5), (-180.0, -160.0, -19.5), (-78.0, -62.0, -17.0),
)


@dataclass(frozen=True)
class Sensor:
    """HDL-64E-like sensor parameters; the defaults reproduce a KITTI scan (about 120k points in a street).

    azimuth_step_deg: 1/6 deg (2160 columns) because a KITTI scan, captured at 10 Hz, has up to ~2160 points per
      ring (sequence 10, frame 0: 2100-2163 on the rings that see the ground all round); the datasheet's
      0.08-0.09 deg is its 5 Hz figure and would double the point count.
    max_range: 80 m because no KITTI scan in ../shared/data has a point beyond 80.3 m (the datasheet says 120 m).
    min_range: returns closer than this are dropped; body_shadow: the rays the vehicle itself blocks (see above).
    range_noise: standard deviation (m) of the Gaussian range noise; dropout: probability that a return is lost.
    reflectance_noise: standard deviation of the noise added to the reflectance.
    height: sensor height above the road (KITTI: 1.73 m); the scene generator puts the road there.
    """

    elevations_deg: tuple[float, ...] = HDL64_ELEVATIONS_DEG
    azimuth_step_deg: float = 1.0 / 6.0
    height: float = 1.73
    min_range: float = 2.5
    max_range: float = 80.0
    range_noise: float = 0.02
    dropout: float = 0.02
    reflectance_noise: float = 0.03
    body_shadow: tuple[tuple[float, float, float], ...] = KITTI_BODY_SHADOW

    @property
    def columns(self) -> int:
        """Number of azimuth steps in one revolution."""
        return int(round(360.0 / self.azimuth_step_deg))

    def directions(self) -> np.ndarray:
        """Unit directions (K, 3), sensor frame, of the rays not in the body shadow; top beam first, then azimuth."""
        return _directions(self.elevations_deg, self.azimuth_step_deg, self.body_shadow)

    def as_dict(self) -> dict[str, object]:
        """The parameters as plain JSON values (for sim.json)."""
        values = asdict(self)
        values.update(elevations_deg=list(self.elevations_deg), body_shadow=[list(s) for s in self.body_shadow])
        return {**values, "beams": len(self.elevations_deg), "columns": self.columns}


@lru_cache(maxsize=4)
def _directions(elevations_deg: tuple[float, ...], azimuth_step_deg: float,
                body_shadow: tuple[tuple[float, float, float], ...]) -> np.ndarray:
    """The ray directions of `Sensor.directions`, computed once per beam layout (read-only)."""
    elevation = np.asarray(elevations_deg)[:, None]
    azimuth = (-180.0 + azimuth_step_deg * np.arange(int(round(360.0 / azimuth_step_deg))))[None, :]
    elevation, azimuth = np.broadcast_arrays(elevation, azimuth)
    blocked = np.zeros(elevation.shape, bool)
    for start, end, lowest in body_shadow:
        blocked |= (azimuth >= start) & (azimuth <= end) & (elevation < lowest)
    e, a = np.radians(elevation[~blocked]), np.radians(azimuth[~blocked])
    d = np.column_stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    d.setflags(write=False)
    return d


def scan(scene: Scene, pose: np.ndarray, sensor: Sensor, rng: np.random.Generator | None) -> np.ndarray:
    """Cast every beam from `pose` (4x4 sensor-to-world) and return (N, 4) float32 x, y, z, reflectance.

    With `rng` None the scan is exact: no range noise, no dropouts, no reflectance noise.
    """
    local = sensor.directions()
    world = np.einsum("ij,kj->ik", local, pose[:3, :3])  # not `@`: OpenBLAS is slow on (N, 3) x (3, 3)
    hits = scene.cast(np.broadcast_to(pose[:3, 3], world.shape), world)
    keep = np.isfinite(hits.distance) & (hits.distance >= sensor.min_range) & (hits.distance <= sensor.max_range)
    if rng is not None:
        keep &= rng.random(len(keep)) >= sensor.dropout
    distance = hits.distance[keep]
    cos_incidence = np.abs(np.einsum("ij,ij->i", hits.normal[keep], world[keep]))
    reflectance = reflectance_model(hits.albedo[keep], cos_incidence, distance)
    if rng is not None:
        distance = distance + rng.normal(0.0, sensor.range_noise, len(distance))
        reflectance = reflectance + rng.normal(0.0, sensor.reflectance_noise, len(reflectance))
    points = local[keep] * distance[:, None]
    return np.column_stack([points, np.clip(reflectance, 0.0, 1.0)]).astype(np.float32)


def reflectance_model(albedo: np.ndarray, cos_incidence: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Reflectance in [0, 1]: the material's albedo, a little dimmer at grazing incidence and fading beyond ~30 m.

    KITTI's reflectance barely depends on incidence (its road is as bright at 20 m as at 5 m) but is not range
    compensated far out: its mean falls from ~0.3 within 20 m to ~0.06 at 40-80 m in the scans in ../shared/data.
    """
    return albedo * (0.75 + 0.25 * cos_incidence) * np.exp(-((distance / 40.0) ** 2))
