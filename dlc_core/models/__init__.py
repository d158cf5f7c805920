"""Models of dlc_core, and loading them from a model folder (dlc_core.checkpoint) by task and backbone."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..errors import InputError
from .dcp import BACKBONES as REGISTRATION_BACKBONES
from .dcp import DCPConfig, IterativeDCP


def build_registration_model(card: dict) -> IterativeDCP:
    """An untrained registration model with the architecture a card describes."""
    try:
        return IterativeDCP(DCPConfig.from_card({**card["config"], "backbone": card["backbone"]}))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"model card config is not a valid {card.get('backbone')} config ({exc})") from None


def load_registration_model(folder: str | Path, device: torch.device) -> tuple[IterativeDCP, dict]:
    """A trained registration model in eval mode on `device`, and its card."""
    state, card = load_checkpoint(folder, "registration", REGISTRATION_BACKBONES)
    model = build_registration_model(card)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{folder}: weights do not match the card's architecture ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), card
