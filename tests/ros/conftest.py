"""Fixtures of the ROS tests (rclpy imported only when a test asks for them, so collection works without it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def graph() -> Iterator[Any]:
    """The test's own rclpy Context and node (tests/ros/graph.py), closed after the test."""
    from .graph import Graph

    g = Graph()
    yield g
    g.close()
