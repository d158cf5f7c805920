"""Global registration (FPFH features + RANSAC, open3d): the pipeline's last resort when neither the network's
estimate nor the prior passes the ICP consistency check. Slow (about 1 s per KITTI pair here), so every use is
counted and reported as a fallback."""

from __future__ import annotations

import numpy as np

FEATURE_VOXEL = 1.0  # metres: FPFH on a coarse cloud is fast and still distinctive on street scenes
MAX_ITERATIONS, CONFIDENCE = 100_000, 0.999


def global_registration(source: np.ndarray, target: np.ndarray, voxel: float = FEATURE_VOXEL, seed: int = 0) -> np.ndarray:
    """A coarse source -> target transform from FPFH correspondences and RANSAC (no initial guess needed)."""
    import open3d as o3d

    o3d.utility.random.seed(seed)
    reg = o3d.pipelines.registration
    clouds, features = [], []
    for points in (source, target):
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)).voxel_down_sample(voxel)
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * voxel, max_nn=30))
        features.append(reg.compute_fpfh_feature(cloud, o3d.geometry.KDTreeSearchParamHybrid(radius=5 * voxel, max_nn=100)))
        clouds.append(cloud)
    distance = 1.5 * voxel
    result = reg.registration_ransac_based_on_feature_matching(
        clouds[0], clouds[1], features[0], features[1], True, distance,
        reg.TransformationEstimationPointToPoint(False), 3,
        [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg.CorrespondenceCheckerBasedOnDistance(distance)],
        reg.RANSACConvergenceCriteria(MAX_ITERATIONS, CONFIDENCE),
    )  # fmt: skip
    return np.asarray(result.transformation, dtype=np.float64)
