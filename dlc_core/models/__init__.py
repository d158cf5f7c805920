"""Models of dlc_core, and loading them from a model folder (dlc_core.checkpoint) by task and backbone."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..errors import InputError
from .dcp import BACKBONES as DCP_BACKBONES
from .dcp import DCPConfig, IterativeDCP
from .prnet import BACKBONES as PRNET_BACKBONES
from .prnet import PRNet, PRNetConfig

REGISTRATION_BACKBONES = DCP_BACKBONES + PRNET_BACKBONES
RegistrationModel = IterativeDCP | PRNet


def registration_model(config: DCPConfig | PRNetConfig) -> RegistrationModel:
    """The registration model for an architecture config (DCP passes or PRNet iterations share one interface)."""
    return PRNet(config) if isinstance(config, PRNetConfig) else IterativeDCP(config)


def build_registration_model(card: dict) -> RegistrationModel:
    """An untrained registration model with the architecture a card describes."""
    try:
        config = {**card["config"], "backbone": card["backbone"]}
        cls = PRNetConfig if card["backbone"] in PRNET_BACKBONES else DCPConfig
        return registration_model(cls.from_card(config))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"model card config is not a valid {card.get('backbone')} config ({exc})") from None


def load_registration_model(folder: str | Path, device: torch.device) -> tuple[RegistrationModel, dict]:
    """A trained registration model in eval mode on `device`, and its card."""
    state, card = load_checkpoint(folder, "registration", REGISTRATION_BACKBONES)
    model = build_registration_model(card)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{folder}: weights do not match the card's architecture ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), card
