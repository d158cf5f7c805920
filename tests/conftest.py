"""Test-wide settings: DDS stays on loopback with a per-run domain, torch uses the machine's 2 cores, and the
shared real data is found relative to the repository (or via DLC_SHARED_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# rclpy/DDS: discovery on loopback only, and a domain of our own so parallel runs never talk to each other.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
# torch.distributed: loopback only.
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

import torch  # noqa: E402  (after the environment is set)

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """$DLC_SHARED_DATA, else <repo>/../shared/data."""
    root = os.environ.get("DLC_SHARED_DATA")
    return Path(root) if root else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data root; tests that need it are skipped with the reason when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set DLC_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def repo_bunny() -> Path:
    """The bunny scans copied into the repository (data/bunny)."""
    return REPO / "data" / "bunny"
