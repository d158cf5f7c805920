"""LiDAR odometry by scan registration: each new scan is registered onto a keyframe, starting from a
constant-velocity prior (the last scan-to-scan motion, scaled to the time since the previous scan, so a node that
drops scans still predicts the right motion), and its pose is the keyframe's pose composed with that
registration. A scan stays the keyframe until the vehicle has moved the pipeline's ``keyframe_distance`` (or
turned ``keyframe_angle_deg``, or the fit falls below ``prior_fitness``); 0 makes every scan the next one's
keyframe (scan-to-scan). Registration errors then add up once per keyframe instead of once per scan, a standing
vehicle does not drift, and only keyframes need target-side work (normals, KD-tree). With ``local_map_keyframes``
> 1 the target is a local map: the last keyframes' ICP clouds merged in the newest one's frame and voxelised again,
so each registration leans on several earlier scans (as KISS-ICP's voxel map does). The same object runs in ``dlc
bag eval`` and in the ROS node, so offline numbers are the node's numbers."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.spatial.transform import Rotation

from .icp import Cloud
from .pipeline import PairResult, PreparedScan, ScanRegistrar
from .pointcloud import transform_cloud, voxel_downsample


@dataclass
class OdometryStep:
    """What one scan produced: its pose in the odometry frame, its motion since the previous scan (None for the
    first; what a twist reports), the registration onto the keyframe (None for the first), and whether the scan
    became the keyframe of the scans after it."""

    pose: np.ndarray
    motion: np.ndarray | None
    pair: PairResult | None
    keyframe: bool


@dataclass
class Odometry:
    """Poses of a scan stream in the frame of its first scan (REP-105 ``odom``)."""

    registrar: ScanRegistrar
    poses: list[np.ndarray] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    _keyframes: deque = field(default_factory=deque)  # (PreparedScan, pose) of the keyframes in the local map
    _target: PreparedScan | None = None  # the newest keyframe, or the local map in its frame
    _velocity: np.ndarray = field(default_factory=lambda: np.eye(4))  # the last scan-to-scan motion

    @property
    def target(self) -> PreparedScan | None:
        """What the next scan is registered onto (in the newest keyframe's frame): that keyframe or the local map."""
        return self._target

    def step(self, points: np.ndarray, stamp: float) -> OdometryStep:
        """Add one scan (N, >=3); raises InputError for a scan that cannot be used (nothing is changed then)."""
        prepared = self.registrar.prepare(points, name=f"scan at t={stamp:.3f}")
        if self._target is None:
            pose, motion, pair = np.eye(4), None, None
        else:
            keyframe_pose = self._keyframes[-1][1]
            dt = stamp - self.stamps[-1]
            last_dt = self.stamps[-1] - self.stamps[-2] if len(self.stamps) > 1 else 0.0  # the time _velocity took
            predicted = self.poses[-1] @ scale_motion(self._velocity, dt / last_dt if last_dt > 0 and dt > 0 else 1.0)
            pair = self.registrar.register(prepared, self._target, init=np.linalg.inv(keyframe_pose) @ predicted)
            pose = keyframe_pose @ pair.transform
            motion = self._velocity = np.linalg.inv(self.poses[-1]) @ pose
        keyframe = pair is None or self._leaves_keyframe(pair)
        if keyframe:
            self._add_keyframe(prepared, pose)
        self.poses.append(pose)
        self.stamps.append(stamp)
        return OdometryStep(pose, motion, pair, keyframe)

    def _add_keyframe(self, scan: PreparedScan, pose: np.ndarray) -> None:
        """Make `scan` the newest keyframe, and the target: alone, or merged with the keyframes before it."""
        self._keyframes.append((scan, pose))
        while len(self._keyframes) > self.registrar.config.local_map_keyframes:
            self._keyframes.popleft()
        self._target = scan
        if len(self._keyframes) > 1:  # each keyframe's normals come along, so the merged map needs no estimate
            to_newest = np.linalg.inv(pose)
            moves = [(kept.icp, to_newest @ at) for kept, at in self._keyframes]
            merged = np.vstack([np.hstack([transform_cloud(cloud.points, move), cloud.sensor_facing_normals() @ move[:3, :3].T])
                                for cloud, move in moves])  # fmt: skip
            cells = voxel_downsample(merged, scan.preprocess.icp_voxel)
            normals = cells[:, 3:] / np.maximum(np.linalg.norm(cells[:, 3:], axis=1, keepdims=True), 1e-12)
            self._target = replace(scan, icp=Cloud(cells[:, :3], "local map", normals))

    def _leaves_keyframe(self, pair: PairResult) -> bool:
        """Whether the scan just registered becomes the next keyframe."""
        config = self.registrar.config
        moved = np.linalg.norm(pair.transform[:3, 3]) >= config.keyframe_distance
        turned = np.degrees(Rotation.from_matrix(pair.transform[:3, :3]).magnitude()) >= config.keyframe_angle_deg
        return bool(moved or turned or pair.fitness < config.prior_fitness)

    def reset(self) -> None:
        """Start a new trajectory at the next scan (e.g. on a service call, or when a bag loops)."""
        self.poses.clear()
        self.stamps.clear()
        self._keyframes.clear()
        self._target, self._velocity = None, np.eye(4)


MAX_EXTRAPOLATION = 10.0  # a gap longer than this many times the last one says little about the motion


def scale_motion(transform: np.ndarray, factor: float) -> np.ndarray:
    """The rigid motion `factor` times as long as `transform` at the same velocity (rotation angle and translation
    scaled alike; exact for a straight drive or a constant turn rate about a fixed axis at small angles)."""
    factor = min(max(factor, 0.0), MAX_EXTRAPOLATION)
    scaled = np.eye(4)
    scaled[:3, :3] = Rotation.from_rotvec(Rotation.from_matrix(transform[:3, :3]).as_rotvec() * factor).as_matrix()
    scaled[:3, 3] = transform[:3, 3] * factor
    return scaled
