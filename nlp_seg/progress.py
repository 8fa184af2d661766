"""Progress reporting and stage timing, kept apart from the pipeline's logic.

The pipeline announces stages; a reporter decides how to show them (rich bars for people,
nothing for ``--quiet`` and for library use). Stage wall times always land in ``run.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

Advance = Callable[[int], None]


class Reporter(Protocol):
    def stage(self, name: str, total: int | None = None) -> contextmanager: ...  # type: ignore[valid-type]

    def message(self, text: str) -> None: ...


class SilentReporter:
    """Shows nothing; used by the Python API and ``--quiet``."""

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Advance]:
        yield lambda n: None

    def message(self, text: str) -> None:
        return None


class RichReporter:
    """A rich progress bar per stage that has a known size, a spinner otherwise."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Advance]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [SpinnerColumn(), TextColumn("[bold]{task.description}")]
        if total:
            columns += [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        columns.append(TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(name, total=total)
            yield lambda n: bar.advance(task, n)
            if total:
                bar.update(task, completed=total)

    def message(self, text: str) -> None:
        self.console.print(text)


class StageTimer:
    """Collects wall-clock seconds per stage for ``run.json``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)
