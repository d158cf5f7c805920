"""Registration metrics exactly as METHOD.md §4 (DCP/PRNet tables and DGR's RRE/RTE), on numpy arrays.

Inputs are batches: rotations (N, 3, 3), translations (N, 3). Euler errors compare scipy's ``as_euler('zyx')``
of the prediction with the ground-truth Euler vector [z, y, x], in degrees, without angle wrapping (as DCP).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def rre_deg(r_pred: np.ndarray, r_gt: np.ndarray) -> np.ndarray:
    """Relative rotation error arccos((tr(R_predᵀ R_gt) − 1)/2) in degrees, per pair."""
    trace = np.einsum("nij,nij->n", r_pred, r_gt)
    return np.degrees(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


def rte(t_pred: np.ndarray, t_gt: np.ndarray) -> np.ndarray:
    """Relative translation error ‖t_pred − t_gt‖₂ per pair (units of the input)."""
    return np.linalg.norm(t_pred - t_gt, axis=-1)


def pose_errors(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(RTE, RRE in degrees) of one 4x4 rigid transform against the true one."""
    return float(rte(estimate[:3, 3], truth[:3, 3])), float(rre_deg(estimate[None, :3, :3], truth[None, :3, :3])[0])


def euler_zyx_deg(r: np.ndarray) -> np.ndarray:
    """Euler vectors [z, y, x] in degrees of rotation matrices (N, 3, 3), as DCP's npmat2euler."""
    return Rotation.from_matrix(r).as_euler("zyx", degrees=True)


def registration_metrics(
    r_pred: np.ndarray, t_pred: np.ndarray, r_gt: np.ndarray, t_gt: np.ndarray, euler_gt_rad: np.ndarray | None = None
) -> dict[str, float]:
    """The object-registration keys of DESIGN.md §2: Euler MSE/RMSE/MAE (deg), MSE(R), t MSE/RMSE/MAE, RRE/RTE means."""
    e_gt = np.degrees(euler_gt_rad) if euler_gt_rad is not None else euler_zyx_deg(r_gt)
    de = euler_zyx_deg(r_pred) - e_gt
    dt = t_pred - t_gt
    euler_mse = float(np.mean(de**2))
    t_mse = float(np.mean(dt**2))
    return {
        "euler_mse_deg2": euler_mse,
        "euler_rmse_deg": float(np.sqrt(euler_mse)),
        "euler_mae_deg": float(np.mean(np.abs(de))),
        "r_mse": float(np.mean((r_pred - r_gt) ** 2)),
        "t_mse": t_mse,
        "t_rmse": float(np.sqrt(t_mse)),
        "t_mae": float(np.mean(np.abs(dt))),
        "rre_deg_mean": float(np.mean(rre_deg(r_pred, r_gt))),
        "rte_mean": float(np.mean(rte(t_pred, t_gt))),
    }


def success_mask(rre: np.ndarray, rte_values: np.ndarray, rre_max_deg: float, rte_max: np.ndarray | float) -> np.ndarray:
    """Pairs registered within both thresholds (KITTI/DGR: 5 deg and 0.6 m; objects: 1 deg and 1% of the diagonal)."""
    return (rre < rre_max_deg) & (rte_values < rte_max)
