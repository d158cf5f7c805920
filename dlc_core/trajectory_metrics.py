"""Odometry metrics (METHOD.md §4): per-pair RTE/RRE, the KITTI devkit's t_err/r_err over 100-800 m segments,
ATE after Umeyama SE(3) alignment; and trajectory files in KITTI and TUM formats (written atomically).

Trajectories are arrays of 4x4 poses (N, 4, 4) mapping each scan's frame into the first scan's frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from .atomic import atomic_path
from .metrics import rre_deg, rte
from .pointcloud import transform_cloud

DEVKIT_LENGTHS = (100, 200, 300, 400, 500, 600, 700, 800)
DEVKIT_STEP = 10


def relative_motion(poses: np.ndarray) -> np.ndarray:
    """Consecutive relative transforms inv(P_k) @ P_{k+1}, shape (N-1, 4, 4)."""
    return np.linalg.inv(poses[:-1]) @ poses[1:]


def pair_errors(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RTE m, RRE deg) of each consecutive relative motion, prediction against ground truth."""
    dp, dg = relative_motion(pred), relative_motion(gt)
    return rte(dp[:, :3, 3], dg[:, :3, 3]), rre_deg(dp[:, :3, :3], dg[:, :3, :3])


def path_lengths(poses: np.ndarray) -> np.ndarray:
    """Distance travelled along the trajectory up to each frame (m)."""
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def devkit_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, object]:
    """KITTI devkit t_err (%) and r_err (deg/100 m), averaged over all segments; null with a reason when the
    ground-truth path is shorter than the shortest segment (100 m)."""
    dist = path_lengths(gt)
    t_errs, r_errs = [], []
    for first in range(0, len(gt), DEVKIT_STEP):
        for length in DEVKIT_LENGTHS:
            beyond = np.nonzero(dist > dist[first] + length)[0]
            if len(beyond) == 0:
                continue
            last = beyond[0]
            delta_gt = np.linalg.inv(gt[first]) @ gt[last]
            delta_pred = np.linalg.inv(pred[first]) @ pred[last]
            err = np.linalg.inv(delta_pred) @ delta_gt
            t_errs.append(np.linalg.norm(err[:3, 3]) / length)
            r_errs.append(np.radians(rre_deg(err[None, :3, :3], np.eye(3)[None])[0]) / length)
    if not t_errs:
        return {"t_err_pct": None, "r_err_deg_per_100m": None,
                "reason": f"the path is {dist[-1]:.1f} m long; the devkit needs segments of at least {DEVKIT_LENGTHS[0]} m"}  # fmt: skip
    return {"t_err_pct": 100.0 * float(np.mean(t_errs)), "r_err_deg_per_100m": 100.0 * float(np.degrees(np.mean(r_errs))),
            "segments": len(t_errs)}  # fmt: skip


def umeyama_se3(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The rigid 4x4 transform (no scale) that best maps source points (N, 3) onto target points."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    u, _, vt = np.linalg.svd((target - mu_t).T @ (source - mu_s))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ d @ vt
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, mu_t - r @ mu_s
    return m


def ate_rmse(pred: np.ndarray, gt: np.ndarray) -> float:
    """Absolute trajectory error: RMSE of positions after the best SE(3) alignment of prediction onto truth."""
    align = umeyama_se3(pred[:, :3, 3], gt[:, :3, 3])
    moved = transform_cloud(pred[:, :3, 3], align)
    return float(np.sqrt(np.mean(np.sum((moved - gt[:, :3, 3]) ** 2, axis=1))))


def write_kitti(path: str | Path, poses: np.ndarray) -> None:
    """One line per pose: the 12 numbers of the 3x4 matrix, row-major."""
    lines = [" ".join(f"{v:.9e}" for v in p[:3].reshape(-1)) for p in poses]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def write_tum(path: str | Path, stamps: np.ndarray, poses: np.ndarray) -> None:
    """TUM format: 'timestamp tx ty tz qx qy qz qw' per pose."""
    quats = Rotation.from_matrix(poses[:, :3, :3]).as_quat()  # x, y, z, w
    lines = [f"{s:.9f} " + " ".join(f"{v:.9f}" for v in (*p[:3, 3], *q)) for s, p, q in zip(stamps, poses, quats)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
