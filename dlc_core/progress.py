"""Progress for long work: a tqdm bar on a terminal, plain periodic lines otherwise (CI logs, background runs)."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class _Lines:
    """Progress for logs (no terminal): one plain line every `every_s` seconds and at the end."""

    def __init__(self, items: Iterable[T], total: int | None, desc: str, every_s: float = 30.0) -> None:
        self.items, self.total, self.desc, self.every_s = items, total, desc, every_s
        self.postfix: dict[str, object] = {}

    def set_postfix(self, values: dict[str, object], refresh: bool = False) -> None:
        self.postfix = values

    def _line(self, done: int, started: float) -> None:
        extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        of = f"/{self.total}" if self.total is not None else ""
        print(f"{self.desc}: {done}{of} ({time.monotonic() - started:.0f} s) {extra}".rstrip(), file=sys.stderr, flush=True)

    def __iter__(self) -> Iterator[T]:
        started = last = time.monotonic()
        done = 0
        for item in self.items:
            yield item
            done += 1
            if time.monotonic() - last >= self.every_s:
                last = time.monotonic()
                self._line(done, started)
        self._line(done, started)


def progress(items: Iterable[T], total: int | None, desc: str, enabled: bool = True) -> Iterable[T]:
    """A tqdm bar on a terminal, plain periodic lines otherwise (CI logs), the bare items when disabled (DDP ranks > 0).

    The result has ``set_postfix`` unless disabled, for the loss and DLC numbers a trainer shows.
    """
    if not enabled:
        return items
    if not sys.stderr.isatty():
        return _Lines(items, total, desc)
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
