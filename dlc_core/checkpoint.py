"""Model folders: ``model.pt`` (a plain state_dict) + ``model_card.json`` (DESIGN.md §2), written and checked.

Loading refuses, with one line naming the folder and the reason, anything that is not exactly what the caller
asked for: a missing or corrupt file, another format version, another task or backbone, a sha256 mismatch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from .atomic import atomic_path, write_json
from .errors import InputError

FORMAT_VERSION = 1
WEIGHTS, CARD = "model.pt", "model_card.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(folder: str | Path, state_dict: dict[str, torch.Tensor], card: dict[str, Any]) -> dict[str, Any]:
    """Write the weights, then the card with their sha256 (both atomically); returns the card as written."""
    folder = Path(folder)
    with atomic_path(folder / WEIGHTS) as tmp:
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp)
    card = {"format_version": FORMAT_VERSION, **card, "sha256": sha256_file(folder / WEIGHTS)}
    write_json(folder / CARD, card)
    return card


def read_card(folder: str | Path) -> dict[str, Any]:
    """The model card of a folder, checked for presence, JSON syntax and format version."""
    folder = Path(folder)
    path = folder / CARD
    if not folder.is_dir():
        raise InputError(f"{folder}: no such model folder")
    if not path.is_file():
        raise InputError(f"{folder}: {CARD} is missing")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise InputError(f"{path}: expected a JSON object")
    if card.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: format_version {card.get('format_version')!r} is not supported (expected {FORMAT_VERSION})")
    return card


def load_checkpoint(
    folder: str | Path, task: str, backbones: Iterable[str] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, card) of a model folder after checking task, backbone, sha256 and the weights' integrity."""
    folder = Path(folder)
    card = read_card(folder)
    if card.get("task") != task:
        raise InputError(f"{folder}: this is a {card.get('task')!r} model, expected a {task!r} model")
    allowed = tuple(backbones) if backbones is not None else None
    if allowed is not None and card.get("backbone") not in allowed:
        raise InputError(f"{folder}: backbone {card.get('backbone')!r} is not one of {', '.join(allowed)}")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise InputError(f"{folder}: {WEIGHTS} is missing")
    if sha256_file(weights) != card.get("sha256"):
        raise InputError(f"{weights}: sha256 does not match the model card (corrupt or replaced file)")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged archives
        raise InputError(f"{weights}: cannot be read as a state_dict ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{weights}: not a state_dict of tensors")
    return state, card


def load_model(folder: str | Path, task: str, backbones: Iterable[str], build: Callable[[dict], torch.nn.Module],
               device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:  # fmt: skip
    """A trained model in eval mode on `device`, and its card: the checked checkpoint, the architecture `build`
    makes from the card (a bad config is one line), the weights loaded strictly (a mismatch is one line)."""
    state, card = load_checkpoint(folder, task, backbones)
    try:
        model = build(card)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{folder}: model card config is not a valid {card.get('backbone')} config ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{folder}: weights do not match the card's architecture ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), card
