"""`dlc demo`'s main job (DECISIONS D8): the shipped LiDAR models replay the real sample bag (KITTI 02, frames 0-4)
and the table reports their errors against the bag's own ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlc_core.data.kitti import KittiSequence
from training.demo import LIDAR_MODELS, print_replay_table, replay_sample_bag


def test_the_demo_replays_the_sample_bag_with_both_shipped_lidar_models(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = replay_sample_bag(tmp_path, "cpu")
    assert [r["model"] for r in results] == list(LIDAR_MODELS)
    seq = KittiSequence.open(shared_data / "kitti_mini", "02", "poses.txt")  # the frames the bag was made from
    for r in results:
        folder = tmp_path / Path(r["model"]).name
        assert {"trajectory.png", "errors.png", "poses_kitti.txt", "poses_tum.txt"} <= set(r["outputs"])
        assert r["frames"] == 5 and r["skipped"] == 0
        poses = np.loadtxt(folder / "poses_kitti.txt").reshape(-1, 3, 4)
        truth = np.stack([seq.relative(0, k)[:3] for k in range(5)])
        assert np.abs(poses[:, :, 3] - truth[:, :, 3]).max() < 0.2  # 1.5 m per frame: a wrong pose is metres off
        assert json.loads((folder / "metrics.json").read_text())["rte_m_mean"] == r["rte_m_mean"]
    capsys.readouterr()
    print_replay_table(results, tmp_path)
    table = capsys.readouterr().out
    assert all(model in table for model in LIDAR_MODELS) and str(tmp_path) in table
