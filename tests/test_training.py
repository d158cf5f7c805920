"""The registration trainer and evaluator end to end through the CLI, on tiny models and real data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlc_ros.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--backbone", "dcp-pointnet", "--emb-dims", "32", "--ff-dims", "64", "--n-heads", "2", "--num-points", "64",
        "--batch-size", "8", "--passes", "2", "--epochs", "1", "--seed", "0", "--device", "cpu"]  # fmt: skip
EVAL_KEYS = {
    "task", "model", "data", "command", "samples", "skipped", "time_ms", "peak_rss_mb", "device", "euler_mse_deg2",
    "euler_rmse_deg", "euler_mae_deg", "r_mse", "t_mse", "t_rmse", "t_mae", "rre_deg_mean", "rte_mean", "icp",
    "success_rate",
}  # fmt: skip


def card(folder: Path) -> dict:
    return json.loads((folder / "model_card.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same tiny DLC model after 1 step and after 120 steps (same seed, same data)."""
    root = tmp_path_factory.mktemp("train")
    for steps in (1, 120):
        assert main(["train", "registration", *TINY, "--steps", str(steps), "--out", str(root / f"s{steps}")]) == 0
    return {"short": root / "s1", "long": root / "s120"}


def test_short_training_lowers_the_validation_error(trained: dict[str, Path]) -> None:
    before, after = card(trained["short"])["metrics"], card(trained["long"])["metrics"]
    assert after["val_loss"] < 0.8 * before["val_loss"]
    assert after["val_rre_deg_mean"] < before["val_rre_deg_mean"]


def test_card_records_the_run(trained: dict[str, Path]) -> None:
    c = card(trained["long"])
    assert c["task"] == "registration" and c["backbone"] == "dcp-pointnet"
    assert c["train"]["steps"] == 120 and c["train"]["seed"] == 0 and "train registration" in c["train"]["command"]
    assert c["dlc"]["enabled"] and c["dlc"]["landscape"] == "label" and c["dlc"]["K"] == 3
    assert c["preprocess"]["num_points"] == 64 and c["config"]["emb_dims"] == 32


def test_eval_on_real_bunny_pairs_writes_the_json_contract(trained: dict[str, Path], tmp_path: Path, repo_bunny: Path) -> None:
    out = tmp_path / "eval.json"
    rc = main(["eval", "registration", "--model", str(trained["long"]), "--data", f"bunny:{repo_bunny}", "--pairs", "4",
               "--icp", "point-to-plane", "--json", str(out), "--device", "cpu"])  # fmt: skip
    assert rc == 0
    result = json.loads(out.read_text())
    assert EVAL_KEYS <= set(result) and result["samples"] == 4 and result["skipped"] == 0
    assert result["icp"] == "point-to-plane" and 0.0 <= result["success_rate"] <= 1.0
    assert set(result["time_ms"]) == {"mean", "median", "p95"}


def test_resume_continues_and_refuses_changed_options(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert main(["train", "registration", *TINY, "--steps", "3", "--out", str(out)]) == 0
    assert main(["train", "registration", *TINY, "--steps", "5", "--epochs", "2", "--out", str(out), "--resume"]) == 0
    assert card(out)["train"]["steps"] == 5 and card(out)["train"]["epochs"] == 2
    assert main(["train", "registration", *TINY, "--steps", "6", "--out", str(out), "--resume", "--beta", "3"]) == 2


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlc_ros.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "registration", "--model", "models/does-not-exist"], "no such model folder"),
        (["eval", "registration", "--model", "tests"], "model_card.json is missing"),
        (["train", "registration", "--out", "x", "--data", "bunny:data/bunny"], "evaluation set"),
        (["train", "registration", "--out", "x", "--data", "mnist:foo"], "unknown kind 'mnist'"),
        (["train", "registration", "--out", "x", "--data", "kitti:foo"], "foo/sequences: folder not found"),
        (["train", "registration", "--out", "x", "--data", "sim:foo"], "validation needs real scans"),
        (["train", "registration", "--out", "x", "--data", "shapes+kitti:foo"], "cannot be mixed"),
        (["train", "registration", "--out", "x", "--alpha", "1.5"], "alpha must be in"),
        (["eval", "registration", "--model", "tests", "--device", "cuda"], "no CUDA device"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_wrong_checkpoint_task_is_refused(trained: dict[str, Path], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    c = card(trained["long"])
    (wrong / "model_card.json").write_text(json.dumps({**c, "task": "lstm"}))
    (wrong / "model.pt").write_bytes((trained["long"] / "model.pt").read_bytes())
    proc = run_cli("eval", "registration", "--model", str(wrong))
    assert proc.returncode == 2 and "is a 'lstm' model, expected a 'registration' model" in proc.stderr


def test_eval_refuses_a_nan_dataset(tmp_path: Path, trained: dict[str, Path]) -> None:
    import h5py
    import numpy as np

    data = np.random.default_rng(0).normal(size=(2, 64, 3)).astype(np.float32)
    data[1, 5] = np.nan
    with h5py.File(tmp_path / "ply_data_test0.h5", "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("label", data=np.zeros((2, 1), np.int64))
    proc = run_cli("eval", "registration", "--model", str(trained["long"]), "--data", f"modelnet40:{tmp_path}")
    assert proc.returncode == 2 and "NaN" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("dlc", ["--dlc", "--no-dlc"])
def test_a_prnet_step_optimises_task_feature_term_and_hinges_together(dlc: str) -> None:
    """The DLC arm keeps PRNet's feature term: the hinges are the only difference between the arms (D2)."""
    from torch.utils.data import DataLoader

    from dlc_core.data.registration_data import parse_spec, training_sets
    from dlc_ros.cli import build_parser
    from training.distributed import Rank
    from training.registration import build_training, train_step

    args = build_parser().parse_args(["train", "registration", "--out", "unused", "--backbone", "prnet", dlc,
                                      "--emb-dims", "16", "--channels", "8,8,8,8", "--ff-dims", "32", "--n-heads", "2",
                                      "--num-points", "64", "--batch-size", "4", "--protocol", "partial"])  # fmt: skip
    train_set, _ = training_sets(parse_spec(args.data, ("shapes",)), args.protocol, args.num_points, args.seed)
    t = build_training(args, Rank(), torch.device("cpu"), 1)
    stats = train_step(t, next(iter(DataLoader(train_set, batch_size=4))), args, Rank())
    hinges = stats["h1"] + stats["h2"] + stats["h3"] if dlc == "--dlc" else 0.0
    assert stats["feature"] > 0
    assert stats["loss"] == pytest.approx(stats["task"] + args.feature_weight * stats["feature"] + hinges, rel=1e-5)


@pytest.mark.parametrize("milestones, expected", [("0.3,0.6,0.8", [1e-3, 1e-4, 1e-5, 1e-6]), ("0.8", [1e-3, 1e-3, 1e-3, 1e-4]),
                                                  ("", [1e-3] * 4)])  # fmt: skip
def test_lr_milestones_decay_at_their_fractions_of_the_planned_steps(milestones: str, expected: list[float]) -> None:
    from dlc_ros.cli import build_parser
    from training.distributed import Rank
    from training.registration import build_training

    args = build_parser().parse_args(["train", "registration", *TINY, "--out", "x", "--steps", "100", "--lr-milestones", milestones])
    t = build_training(args, Rank(), torch.device("cpu"), steps_per_epoch=1000)
    seen = {}
    for step in range(100):  # the LR in force at steps 0, 30, 60 and 80 (after the 0.3/0.6/0.8 boundaries)
        seen[step] = t.optimizer.param_groups[0]["lr"]
        t.optimizer.step()
        t.scheduler.step()
    assert [seen[s] for s in (0, 30, 60, 80)] == pytest.approx(expected)


def test_lr_milestones_outside_zero_one_are_refused() -> None:
    proc = run_cli("train", "registration", "--out", "x", "--lr-milestones", "0.5,1.2")
    assert proc.returncode == 2 and "expected fractions between 0 and 1" in proc.stderr
