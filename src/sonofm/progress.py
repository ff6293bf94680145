"""Progress output that suits where it goes: redrawn bars on a terminal, plain lines in a log file.

When standard error is not a terminal (CI, SLURM logs, ``> log.txt 2>&1``), bars print one line at each tenth of the
work (each minute when the total is unknown) instead of carriage-return redraws that fill a log with megabytes;
training prints one line per epoch (:mod:`sonofm.engine.epoch_lines`).
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

LINES_PER_TOTAL = 10
SECONDS_PER_LINE = 60


def in_terminal() -> bool:
    """True when standard error is an interactive terminal."""
    return sys.stderr.isatty()


def progress_bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal, :class:`LogLinesBar` otherwise."""
    return (tqdm if in_terminal() else LogLinesBar)(iterable, **kwargs)


class LogLinesBar(tqdm):
    """A tqdm bar for logs: a plain line at each tenth of the total (each minute without a total), never a
    carriage return; the last line is printed when the bar closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._printed: tuple[int, int] | None = None  # (mark, n) of the last line
        super().__init__(*args, leave=False, mininterval=0, miniters=1, **kwargs)  # display() decides what prints

    def display(self, msg: str | None = None, pos: int | None = None, final: bool = False) -> bool:
        if msg == "":  # close() clearing the bar: nothing to clear in a log
            return False
        mark = self._mark()
        if self._printed is None or mark != self._printed[0] or (final and self.n != self._printed[1]):
            self._printed = (mark, self.n)
            self.fp.write(self.format_meter(**self.format_dict) + "\n")
            self.fp.flush()
        return True

    def close(self) -> None:
        if not self.disable:
            self.display(final=True)
        super().close()

    def _mark(self) -> int:
        if self.total:
            return min(LINES_PER_TOTAL, int(LINES_PER_TOTAL * self.n / self.total))
        started = getattr(self, "start_t", None)  # tqdm sets it after its first display
        return 0 if started is None else int((self._time() - started) // SECONDS_PER_LINE)
