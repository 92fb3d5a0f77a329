"""One progress helper: a rich bar on a terminal, nothing when disabled, plain log lines when not a TTY.

Library code takes ``progress: bool`` (or a :class:`Progress`) and never prints on its own otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Iterator

log = logging.getLogger("packetclip")


class Progress:
    """A task with a total (or none); ``advance(n)`` and ``set(done)``. Disabled → every call is a no-op."""

    def __init__(self, description: str, total: float | None = None, *, enabled: bool = True,
                 unit: str = "", transient: bool = False):
        self.description = description
        self.total = total
        self.done = 0.0
        self.enabled = enabled
        self._bar = None
        self._task = None
        self._last_log = 0.0
        if enabled and sys.stderr.isatty():
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            columns = [TextColumn("[progress.description]{task.description}"), BarColumn()]
            columns += [MofNCompleteColumn()] if not unit == "bytes" else []
            columns += [TimeElapsedColumn(), TimeRemainingColumn()]
            self._bar = RichProgress(*columns, transient=transient)
            self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> "Progress":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def set_total(self, total: float | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def advance(self, n: float = 1) -> None:
        self.set(self.done + n)

    def set(self, done: float, description: str | None = None) -> None:
        self.done = done
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=done, **({"description": description} if description else {}))
            return
        now = time.monotonic()
        if now - self._last_log >= 10:  # not a terminal (CI, a pipe): a log line every 10 s at most
            self._last_log = now
            total = f"/{self.total:,.0f}" if self.total else ""
            log.info("%s: %s%s", description or self.description, f"{done:,.0f}", total)


@contextlib.contextmanager
def progress(description: str, total: float | None = None, *, enabled: bool = True,
             unit: str = "") -> Iterator[Progress]:
    with Progress(description, total, enabled=enabled, unit=unit) as p:
        yield p
