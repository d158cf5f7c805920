"""Distributed data-parallel training: two CPU processes (gloo on loopback) keep identical replicas."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from dlc_core.data.registration_data import parse_spec, training_sets
from dlc_ros.cli import build_parser, main
from training.distributed import Rank, launch
from training.registration import build_training, train_step

TINY = ["--backbone", "dcp-pointnet", "--emb-dims", "32", "--ff-dims", "64", "--n-heads", "2", "--num-points", "64",
        "--batch-size", "4", "--passes", "2", "--device", "cpu", "--trainable", "alpha,mu"]  # fmt: skip


def _worker(rank: Rank, args, out: Path) -> None:
    """A few real training steps on this rank's shard; saves the weights and what the rank saw."""
    torch.set_num_threads(1)
    train_set, _ = training_sets(parse_spec(args.data, ("shapes",)), args.protocol, args.num_points, args.seed)
    sampler = DistributedSampler(train_set, rank.world_size, rank.rank, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)
    t = build_training(args, rank, torch.device("cpu"), len(loader))
    initial = {k: v.clone() for k, v in t.model.state_dict().items()}
    first_batch = None
    for batch in loader:
        first_batch = first_batch if first_batch is not None else batch["src"].clone()
        train_step(t, batch, args, rank)
        if t.step == 3:
            break
    torch.save({"model": t.model.state_dict(), "dlc": t.dlc.state_dict(), "initial": initial, "first": first_batch},
               out / f"rank{rank.rank}.pt")  # fmt: skip


def test_two_process_replicas_stay_identical(tmp_path: Path) -> None:
    args = build_parser().parse_args(["train", "registration", "--out", str(tmp_path), *TINY])
    launch(_worker, 2, torch.device("cpu"), args, tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt", weights_only=False) for i in range(2))
    assert not torch.equal(r0["first"], r1["first"])  # each rank trained on its own shard
    for key, value in r0["model"].items():
        assert torch.equal(value, r1["model"][key]), key
    moved = [k for k, v in r0["model"].items() if v.is_floating_point() and not torch.equal(v, r0["initial"][k])]
    assert len(moved) > 10  # the steps really changed the weights
    for key, value in r0["dlc"].items():  # α and μ live outside DDP: their gradients are averaged by hand
        assert torch.equal(value, r1["dlc"][key]), key
    assert float(r0["dlc"]["mu_log"]) != float(torch.log(torch.tensor(0.1)))


def test_cli_nproc_2_trains_and_writes_one_model(tmp_path: Path) -> None:
    assert main(["train", "registration", "--out", str(tmp_path / "m"), "--nproc", "2", "--steps", "2", "--epochs", "1", *TINY]) == 0
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["train"]["world_size"] == 2 and card["train"]["steps"] == 2


def _lstm_worker(rank: Rank, args, out: Path) -> None:
    """Three LSTM steps (DLC, dropout, BatchNorm) on this rank's own digits."""
    from training import lstm

    torch.set_num_threads(1)
    images = torch.randint(0, 256, (64, 28, 28)).float()
    labels = torch.arange(64) % 10
    t = lstm.build_training(args, rank, torch.device("cpu"), 4)
    shard = slice(rank.rank * 8, rank.rank * 8 + 8)
    for _ in range(3):
        lstm.train_step(t, images[shard], labels[shard], args, rank)
    torch.save(t.model.state_dict(), out / f"lstm{rank.rank}.pt")


def test_two_process_lstm_replicas_stay_identical(tmp_path: Path) -> None:
    args = build_parser().parse_args(["train", "lstm", "--data", "unused", "--out", str(tmp_path), "--mode", "row",
                                      "--hidden", "8", "--device", "cpu"])  # fmt: skip
    launch(_lstm_worker, 2, torch.device("cpu"), args, tmp_path)
    r0, r1 = (torch.load(tmp_path / f"lstm{i}.pt", weights_only=True) for i in range(2))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    assert not torch.equal(r0["head.0.running_mean"], torch.zeros(8))  # BatchNorm saw data (and was synced)
