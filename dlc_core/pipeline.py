"""The scan-to-scan registration pipeline (DESIGN.md §4), one object used offline and in the ROS node:

preprocess -> initial guess (the caller's prior, identity for an isolated pair) -> network passes (stop when the
update is small) -> ICP refinement -> consistency check without ground truth -> pose with a status. When streaming
(a prior is given), ICP from the prior runs first and the network only when that fails the check: the prior is
right for almost every scan of a drive, and the network is the recovery for the scans where it is not.

The check uses ICP fitness (the share of source points with a target point within the final correspondence
distance). The network's refined estimate is accepted when its fitness reaches ``min_fitness`` and is at least
the fitness of the prior alone (scored without refinement: one KD-tree query). Otherwise ICP is also run from the
prior, and the result with the higher fitness (ties: lower inlier RMSE) is kept. If that still misses
``min_fitness``, an optional global registration (FPFH + RANSAC) is tried, kept when it fits better, and reported as a
fallback, so evaluations can say how often the network did not carry the load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .geometry import from_matrix, to_matrix
from .icp import METHODS, Cloud, ICPConfig, ICPResult, refine, score
from .models import RegistrationModel, load_registration_model
from .pointcloud import check_cloud, voxel_downsample
from .scan_preprocess import ScanPreprocess, icp_cloud, network_candidates, network_sample

STATUSES = ("network", "prior", "fallback", "failed")


SCAN_ICP_RELATIVE_CHANGE = 1e-4  # see ICPConfig.relative_change


def scan_icp(method: str, max_distance: float, min_distance: float | None, iterations: int, num_threads: int = 2) -> ICPConfig:
    """ICP settings for LiDAR scans (metres): coarse to fine between the two distances, stopping a stage early at
    a 1e-4 relative change (the object default, 1e-6, ran every iteration on scans)."""
    return ICPConfig(method=method, max_correspondence_distance=max_distance, min_correspondence_distance=min_distance,
                     iterations=iterations, num_threads=num_threads, relative_change=SCAN_ICP_RELATIVE_CHANGE)  # fmt: skip


@dataclass(frozen=True)
class PipelineConfig:
    """Run-time settings of the pipeline (the preprocessing itself comes from the model card)."""

    passes: int | None = None  # network passes; None = the model card's
    # ICP from the prior (streamed pairs; isolated ones when the network's answer is not accepted): from a good start
    # point-to-plane was more accurate and, on one core, faster than GICP on the real consecutive pairs (RTE 3.9 /
    # 1.6 / 2.3 cm against 4.4 / 2.2 / 3.1 cm on kitti_mini 01 / 02 / 10; bench/results/lidar_odometry_gicp.json).
    icp: ICPConfig = field(default_factory=lambda: scan_icp("point-to-plane", 2.0, 0.5, 30))
    # ICP from the network's guess, which lands metres off at wide baselines: GICP (small_gicp) has the wider basin.
    # On 30 scans of a held-out simulated drive, pairs 1-9 apart, no fallback, it registered 90.7% / 84.9% (DLC / no
    # DLC) where point-to-plane reached 79.1 / 72.0% (bench/results/icp_gate.json).
    network_icp_method: str = "gicp"
    # ... starting at this coarser gate (m; the rest of the schedule is icp's): 4 m registered 2-3 points more than 2 m.
    network_icp_max_distance: float = 4.0
    min_fitness: float = 0.6  # bench/fitness_threshold.py: simulated pairs separate at 0.55 (wrong) | 0.64 (right)
    # Global registration when the best fitness misses min_fitness. Isolated pairs used to try it below prior_fitness
    # as well; on the simulated selection set that cost a median 386 / 403 ms per pair (DLC / no DLC; bench/results/
    # icp_gate_fallback_5498a28.json) for the same 100% as trying it below min_fitness only (97 / 116 ms with 5 passes;
    # bench/results/icp_gate_passes.json).
    fallback: bool = True
    prior_first: bool = True  # streamed pairs: ICP from the motion prior before the network (see register)
    # ... and the network is skipped when that ICP reaches this fitness: right consecutive pairs of simulated drives
    # (4 sequences, 56 pairs) scored 0.81-0.96, while ICP from a prior 7 m off converged wrongly on real sequence 10
    # at 0.65, above min_fitness: passing min_fitness alone is not enough to skip the network.
    prior_fitness: float = 0.75
    # ICP moves the source scan voxelised this coarsely (m; 0 = the ICP cloud itself) onto the full target and
    # scores the fitness on the full source: about half the points to align (KISS-ICP aligns a 1.5 m voxel source).
    icp_source_voxel: float = 0.6
    # Odometry (dlc_core.odometry): a scan stays the keyframe later scans register onto until the vehicle has moved
    # this far (m) or turned this much; 0 = every scan (scan-to-scan). 3 m halved the drift of a 1000-scan simulated
    # drive against scan-to-scan (devkit t_err 0.39% vs 0.75%) and made the median scan a third cheaper (no normals
    # between keyframes); 6 m drifted little less (0.37%) but needed the network twice as often.
    keyframe_distance: float = 3.0
    keyframe_angle_deg: float = 10.0
    # ... and the target is the last this-many keyframes merged into one cloud (a local map; 1 = the keyframe alone).
    # On 1000 scans of the simulated drive: t_err 0.39% with 1, 0.23% with 3, 0.14% with 6, 0.10% with 10, at a
    # median 35 / 38 / 43 / 46 ms and p95 78 / 100 / 125 / 149 ms per scan (one core); 6 keeps the node's margin.
    local_map_keyframes: int = 6

    def __post_init__(self) -> None:
        if self.network_icp_max_distance < self.icp.gates()[-1]:
            raise InputError(f"network_icp_max_distance ({self.network_icp_max_distance}) must be at least the ICP's "
                             f"final correspondence distance ({self.icp.gates()[-1]})")  # fmt: skip
        if self.network_icp_method not in METHODS:  # refused now, not at the first wide pair
            raise InputError(f"unknown ICP method {self.network_icp_method!r} for network_icp_method (choose from "
                             f"{', '.join(METHODS)})")  # fmt: skip

    @property
    def network_icp(self) -> ICPConfig:
        """The ICP run from the network's guess: network_icp_method from network_icp_max_distance down to icp's final
        distance, so its fitness is scored at the same gate as every other candidate's."""
        return replace(self.icp, method=self.network_icp_method, max_correspondence_distance=self.network_icp_max_distance,
                       min_correspondence_distance=self.icp.gates()[-1])  # fmt: skip


@dataclass
class PreparedScan:
    """A scan prepared once and reused as source and as target: the ICP cloud (the target role, and the cloud
    fitness is measured on), its sparser copy that ICP moves (the source role), and the network's candidates,
    computed on first use (a streamed scan whose prior passes the check never needs them)."""

    icp: Cloud
    icp_source: Cloud
    xyz: np.ndarray
    preprocess: ScanPreprocess

    @cached_property
    def net(self) -> np.ndarray:
        """The points the network samples from (network_candidates)."""
        return network_candidates(self.xyz, self.preprocess)


@dataclass
class PairResult:
    """The registration of one pair: source -> target transform, which stage produced it, and its quality."""

    transform: np.ndarray
    status: str
    fitness: float
    inlier_rmse: float
    passes: int
    timings_ms: dict[str, float]


class ScanRegistrar:
    """A LiDAR registration model (or none: ICP from the prior alone, the classical baseline) plus the ICP and
    the check around it."""

    def __init__(
        self,
        preprocess: ScanPreprocess,
        config: PipelineConfig,
        model: RegistrationModel | None = None,
        card: dict | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.preprocess, self.config, self.model, self.card = preprocess, config, model, card or {}
        self.device = device or torch.device("cpu")
        inference = self.card.get("inference", {})
        self.passes = config.passes or inference.get("passes", 5)
        self.stop = (inference.get("stop_angle_deg", 0.05), inference.get("stop_translation", 1e-3))
        icp = config.icp  # its finest stage alone, for refining from a good prior
        self.fine_icp = replace(icp, max_correspondence_distance=icp.gates()[-1], min_correspondence_distance=None)
        self.rng = np.random.default_rng(0)

    @classmethod
    def load(cls, folder: str | Path, config: PipelineConfig | None = None, device: torch.device | None = None) -> "ScanRegistrar":
        """Load a model folder (model.pt + model_card.json) and build the pipeline around it."""
        device = device or torch.device("cpu")
        model, card = load_registration_model(folder, device)
        if card.get("preprocess", {}).get("kind") != "scan":
            raise InputError(f"{folder}: this registration model was trained on objects, not on LiDAR scans")
        return cls(ScanPreprocess.from_card(card["preprocess"]), config or PipelineConfig(), model, card, device)

    def prepare(self, points: np.ndarray, name: str = "scan") -> PreparedScan:
        """Validate a scan (N, >=3; extra columns such as intensity are ignored) and prepare it once."""
        array = np.asarray(points)
        xyz = check_cloud(array[:, :3] if array.ndim == 2 and array.shape[1] > 3 else array, name)
        cloud = icp_cloud(xyz, self.preprocess)
        if len(cloud) < 3:
            raise InputError(f"{name} has {len(cloud)} points after cropping to {self.preprocess.min_range}-"
                             f"{self.preprocess.icp_max_range} m")  # fmt: skip
        sparse = voxel_downsample(cloud, self.config.icp_source_voxel) if self.config.icp_source_voxel else cloud
        return PreparedScan(Cloud(cloud, name), Cloud(sparse if len(sparse) >= 3 else cloud, name), xyz, self.preprocess)

    @torch.no_grad()
    def network_estimate(self, source: PreparedScan, target: PreparedScan, init: np.ndarray) -> tuple[np.ndarray, int]:
        """The network's source -> target transform (metres), iterated from `init`; and the passes it used."""
        cfg = self.preprocess
        src = torch.as_tensor(network_sample(source.net, cfg, self.rng), device=self.device)[None]
        tgt = torch.as_tensor(network_sample(target.net, cfg, self.rng), device=self.device)[None]
        r0, t0 = from_matrix(torch.as_tensor(init, dtype=torch.float32, device=self.device)[None])
        out = self.model(src, tgt, passes=self.passes, init=(r0, t0 / cfg.scale), stop_angle_deg=self.stop[0],
                         stop_translation=self.stop[1])  # fmt: skip
        transform = to_matrix(out[-1].rotation, out[-1].translation * cfg.scale)[0].double().cpu().numpy()
        return transform, len(out)

    def register(self, source: PreparedScan, target: PreparedScan, init: np.ndarray | None = None) -> PairResult:
        """Register source onto target. An isolated pair (`init` None) starts from identity with the network first;
        a streamed pair (`init` = the motion prior) is refined from the prior first — the finest ICP stage alone,
        then the whole coarse-to-fine schedule if that misses prior_fitness — and the network runs only when both
        miss it (``prior_first``; ICP from a good prior costs a fraction of the network passes)."""
        streaming = init is not None and self.config.prior_first
        init = np.eye(4) if init is None else np.asarray(init, dtype=np.float64)
        timings: dict[str, float] = {}
        passes, results = 0, []

        def confident() -> bool:
            return any(r.fitness >= self.config.prior_fitness for _, r in results)

        if streaming:  # a good prior needs only the fine stage; a poor one gets the coarse-to-fine schedule
            results.append(self._refined("prior", init, source, target, timings, self.fine_icp))
            if not confident():
                results.append(self._refined("prior", init, source, target, timings))
        if self.model is not None and not confident():
            clock = time.perf_counter()
            guess, passes = self.network_estimate(source, target, init)
            timings["network"] = 1000 * (time.perf_counter() - clock)
            results.append(self._refined("network", guess, source, target, timings, self.config.network_icp))
        if not streaming and (self.model is None or not self._accepted(results[0][1], source, target, init)):
            results.append(self._refined("prior", init, source, target, timings))
        status, best = max(results, key=lambda r: (r[1].fitness, -r[1].inlier_rmse))
        if best.fitness < self.config.min_fitness and self.config.fallback:
            from .global_registration import global_registration

            clock = time.perf_counter()
            guess = global_registration(source.icp.points, target.icp.points)
            timings["global"] = 1000 * (time.perf_counter() - clock)
            fallback = self._refined("fallback", guess, source, target, timings)[1]
            if fallback.fitness > best.fitness:
                status, best = "fallback", fallback
        if best.fitness < self.config.min_fitness:
            status = "failed"
        timings["total"] = sum(timings.values())
        return PairResult(best.transform, status, best.fitness, best.inlier_rmse, passes, timings)

    def _refined(self, stage: str, guess: np.ndarray, source: PreparedScan, target: PreparedScan,
                 timings: dict[str, float], icp: ICPConfig | None = None) -> tuple[str, ICPResult]:  # fmt: skip
        """ICP from one guess (the configured schedule, or `icp`: the fine stage alone, or the network's wider
        start), timed under icp_<stage>[_fine]."""
        clock = time.perf_counter()
        result = refine(source.icp_source, target.icp, guess, icp or self.config.icp, scored=source.icp)
        timings[f"icp_{stage}" + ("_fine" if icp is self.fine_icp else "")] = 1000 * (time.perf_counter() - clock)
        return stage, result

    def _accepted(self, refined: ICPResult, source: PreparedScan, target: PreparedScan, prior: np.ndarray) -> bool:
        """The network's refined result passes the check without running ICP from the prior: its fitness reaches
        min_fitness and is at least what the prior alone already achieves (scored, not refined: a KD-tree query)."""
        prior_fitness, _ = score(source.icp, target.icp, prior, self.config.icp.gates()[-1])
        return refined.fitness >= self.config.min_fitness and refined.fitness >= prior_fitness
