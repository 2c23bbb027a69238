"""Progress of a run's phases on stderr, drawn by ``rich``: one line per phase with a bar,
done/total, rate and time left. :class:`Phases` with ``enabled=False`` draws nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Phases"]


class Phases:
    """A context manager; :meth:`phase` gives an ``advance(n)`` callback for one phase."""

    def __init__(self, enabled: bool, file: TextIO | None = None) -> None:
        self.enabled = enabled
        self._progress: Any = None
        if enabled:
            import sys

            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                Task,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.text import Text

            class Rate(ProgressColumn):
                """Items per second, with an SI prefix."""

                def render(self, task: Task) -> Text:
                    speed = task.finished_speed or task.speed
                    if speed is None:
                        return Text("      -/s", style="progress.data.speed")
                    for div, unit in ((1e6, "M"), (1e3, "k"), (1.0, "")):
                        if speed >= div:
                            return Text(f"{speed / div:6.1f}{unit}/s", style="progress.data.speed")
                    return Text(f"{speed:6.2f}/s", style="progress.data.speed")

            console = Console(file=file or sys.stderr, width=100)
            self._progress = Progress(
                TextColumn("{task.description:<24}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                Rate(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
            )

    def __enter__(self) -> Phases:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    @contextmanager
    def phase(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A phase of ``total`` steps; the callback advances it."""
        if self._progress is None:
            yield lambda n: None
            return
        task = self._progress.add_task(description, total=total)
        yield lambda n: self._progress.advance(task, n)
        self._progress.update(task, completed=total)
