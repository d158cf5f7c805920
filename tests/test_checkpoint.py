"""Model folders: round trip, and one clear refusal for every kind of wrong or damaged file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlc_core.checkpoint import load_checkpoint, read_card, save_checkpoint
from dlc_core.errors import InputError
from dlc_core.models import load_registration_model
from dlc_core.models.dcp import DCPConfig, IterativeDCP

CFG = DCPConfig(backbone="dcp-pointnet", emb_dims=16, ff_dims=32, n_heads=2)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = IterativeDCP(CFG)
    save_checkpoint(tmp_path / "m", model.state_dict(), {"task": "registration", "backbone": CFG.backbone, "config": CFG.card(),
                                                        "preprocess": {"num_points": 64}})  # fmt: skip
    return tmp_path / "m"


def test_round_trip_restores_identical_weights(folder: Path) -> None:
    model, card = load_registration_model(folder, torch.device("cpu"))
    torch.manual_seed(0)
    reference = IterativeDCP(CFG)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    assert card["format_version"] == 1 and len(card["sha256"]) == 64 and not model.training
    assert not list(folder.glob("*.tmp"))


def _expect(folder: Path, pattern: str, **kwargs) -> None:
    with pytest.raises(InputError, match=pattern) as info:
        load_checkpoint(folder, kwargs.get("task", "registration"), kwargs.get("backbones", ("dcp", "dcp-pointnet")))
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_missing_folder_and_files(folder: Path, tmp_path: Path) -> None:
    _expect(tmp_path / "nope", "no such model folder")
    (folder / "model.pt").unlink()
    _expect(folder, "model.pt is missing")
    (folder / "model_card.json").unlink()
    _expect(folder, "model_card.json is missing")


def test_corrupt_card(folder: Path) -> None:
    (folder / "model_card.json").write_text('{"format_version": 1, "task": ')
    _expect(folder, "not valid JSON")


def test_wrong_version_task_backbone(folder: Path) -> None:
    card = json.loads((folder / "model_card.json").read_text())
    _expect(folder, "'homography' model", task="homography")
    _expect(folder, "backbone 'dcp-pointnet' is not one of prnet", backbones=("prnet",))
    (folder / "model_card.json").write_text(json.dumps({**card, "format_version": 7}))
    _expect(folder, "format_version 7")


def test_truncated_or_replaced_weights(folder: Path) -> None:
    data = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(data[: len(data) // 2])
    _expect(folder, "sha256 does not match")


def test_weights_that_do_not_fit_the_card(folder: Path) -> None:
    card = json.loads((folder / "model_card.json").read_text())
    card["config"]["emb_dims"] = 32
    (folder / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="do not match the card"):
        load_registration_model(folder, torch.device("cpu"))


def test_garbage_with_matching_hash_is_refused(folder: Path) -> None:
    from dlc_core.checkpoint import sha256_file

    (folder / "model.pt").write_bytes(b"not a zip archive at all")
    card = json.loads((folder / "model_card.json").read_text())
    (folder / "model_card.json").write_text(json.dumps({**card, "sha256": sha256_file(folder / "model.pt")}))
    _expect(folder, "cannot be read as a state_dict")
    assert read_card(folder)["task"] == "registration"
