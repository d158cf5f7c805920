"""Warnings about bad input that a node logs once per problem per second, so a flood of bad messages cannot
flood the log while each distinct problem is still said."""

from __future__ import annotations

import time
from typing import Any


class ProblemLog:
    """`warn(text)` logs through `logger` unless the same text was logged less than `every_s` seconds ago."""

    def __init__(self, logger: Any, every_s: float = 1.0) -> None:
        self.logger, self.every_s = logger, every_s
        self._last: dict[str, float] = {}

    def warn(self, problem: str) -> None:
        now = time.monotonic()
        if now - self._last.get(problem, -float("inf")) >= self.every_s:
            self._last[problem] = now
            self.logger.warning(problem)
