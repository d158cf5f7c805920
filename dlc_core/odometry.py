"""Scan-to-scan LiDAR odometry: each new scan is registered onto the previous one, starting from a
constant-velocity prior (the last relative motion, scaled to the time since the previous scan, so a node that
drops scans still predicts the right motion), and the relative poses are composed. The same object runs in
``dlc bag eval`` and in the ROS node, so offline numbers are the node's numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from .pipeline import PairResult, PreparedScan, ScanRegistrar


@dataclass
class OdometryStep:
    """What one scan produced: its pose in the odometry frame, and the pair registration (None for the first)."""

    pose: np.ndarray
    pair: PairResult | None


@dataclass
class Odometry:
    """Poses of a scan stream in the frame of its first scan (REP-105 ``odom``)."""

    registrar: ScanRegistrar
    poses: list[np.ndarray] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    _previous: PreparedScan | None = None
    _velocity: np.ndarray = field(default_factory=lambda: np.eye(4))  # the last pair's motion

    def step(self, points: np.ndarray, stamp: float) -> OdometryStep:
        """Add one scan (N, >=3); raises InputError for a scan that cannot be used (nothing is changed then)."""
        prepared = self.registrar.prepare(points, name=f"scan at t={stamp:.3f}")
        if self._previous is None:
            pose, pair = np.eye(4), None
        else:
            dt = stamp - self.stamps[-1]
            last_dt = self.stamps[-1] - self.stamps[-2] if len(self.stamps) > 1 else 0.0  # the time _velocity took
            prior = scale_motion(self._velocity, dt / last_dt if last_dt > 0 and dt > 0 else 1.0)
            pair = self.registrar.register(prepared, self._previous, init=prior)
            self._velocity = pair.transform
            pose = self.poses[-1] @ pair.transform
        self._previous = prepared
        self.poses.append(pose)
        self.stamps.append(stamp)
        return OdometryStep(pose, pair)

    def reset(self) -> None:
        """Start a new trajectory at the next scan (e.g. on a service call, or when a bag loops)."""
        self.poses.clear()
        self.stamps.clear()
        self._previous, self._velocity = None, np.eye(4)


MAX_EXTRAPOLATION = 10.0  # a gap longer than this many times the last one says little about the motion


def scale_motion(transform: np.ndarray, factor: float) -> np.ndarray:
    """The rigid motion `factor` times as long as `transform` at the same velocity (rotation angle and translation
    scaled alike; exact for a straight drive or a constant turn rate about a fixed axis at small angles)."""
    factor = min(max(factor, 0.0), MAX_EXTRAPOLATION)
    scaled = np.eye(4)
    scaled[:3, :3] = Rotation.from_rotvec(Rotation.from_matrix(transform[:3, :3]).as_rotvec() * factor).as_matrix()
    scaled[:3, 3] = transform[:3, 3] * factor
    return scaled
