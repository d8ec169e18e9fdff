"""Progress reporting fit for terminals and for log files, used by every tool and the trainer.

:class:`Progress` shows a tqdm bar when its stream is a terminal. When the output goes to a
file (a cluster job log, ``> run.log``) it writes a plain line only every
``interval_s`` seconds (default 30) or when another ``percent_step`` of the work is done
(default 10 %), plus one line at the end, each with the count, the rate and the ETA::

    teacher: 1200/5000 step (24%), 3.21 step/s, ETA 0:19:43, loss=0.0123

so a run of any length writes at most ``100 / percent_step + duration / interval_s + 1`` lines.

One switch turns progress off everywhere: ``--no-progress`` on every tool (it sets the
environment variable :data:`PROGRESS_ENV` ``=0``, which worker processes inherit), or
``progress=false`` in a training config. Under ``torchrun`` only rank 0 reports
(the ``RANK`` environment variable).
"""
from __future__ import annotations

import datetime
import os
import sys
import time
from typing import IO, Any

#: ``HANDKIT_PROGRESS=0`` disables progress output in every tool and library call.
PROGRESS_ENV = "HANDKIT_PROGRESS"
DEFAULT_INTERVAL_S = 30.0
DEFAULT_PERCENT_STEP = 10.0


def progress_allowed(requested: bool = True) -> bool:
    """Whether progress may be shown: requested, not switched off by :data:`PROGRESS_ENV`, and rank 0."""
    if not requested:
        return False
    if os.environ.get(PROGRESS_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return os.environ.get("RANK", "0") == "0"


def disable_progress() -> None:
    """Switch progress off for this process and the processes it starts (``--no-progress``)."""
    os.environ[PROGRESS_ENV] = "0"


def _is_terminal(stream: IO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(round(seconds))))


class Progress:
    """Count work done; a bar on a terminal, a bounded number of lines in a log, nothing when off.

    Use as ``with Progress(total, "convert rhd", unit="sample") as bar: bar.update(n)``.
    ``total=None`` (unknown) reports counts and rates without a percentage or ETA.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", *, initial: int = 0, enabled: bool = True,
                 stream: IO | None = None, interval_s: float = DEFAULT_INTERVAL_S,
                 percent_step: float = DEFAULT_PERCENT_STEP, clock=time.monotonic):
        self.total, self.desc, self.unit = total, desc, unit
        self.count = self.initial = int(initial)
        self.stream = sys.stderr if stream is None else stream
        self.enabled = progress_allowed(enabled)
        self.interval_s, self.percent_step, self._clock = float(interval_s), float(percent_step), clock
        self._postfix: dict[str, Any] = {}
        self._bar = None
        self._started = self._last_line = clock()
        self._last_percent_mark = self._percent_mark()
        self._closed = False
        if self.enabled and _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True, leave=False)

    # ------------------------------------------------------------------ updates

    def update(self, n: int = 1) -> None:
        self.count += int(n)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now, mark = self._clock(), self._percent_mark()
        if now - self._last_line >= self.interval_s or mark > self._last_percent_mark:
            self._write_line(now)
            self._last_percent_mark = mark

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the rate (e.g. the current loss); cheap, call it every step."""
        self._postfix = values
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.count > self.initial:
            self._write_line(self._clock(), final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ log lines

    def _percent_mark(self) -> int:
        if not self.total or self.percent_step <= 0:
            return 0
        return int(100.0 * self.count / self.total // self.percent_step)

    def line(self, now: float | None = None, final: bool = False) -> str:
        """The log line for the current state (what a file receives)."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        done = self.count - self.initial
        rate = done / elapsed
        parts = [f"{self.desc}: {self.count}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({100.0 * self.count / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s")
        if final:
            parts.append(f"took {_duration(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"ETA {_duration(max(self.total - self.count, 0) / rate)}")
        parts += [f"{key}={value}" for key, value in self._postfix.items()]
        return ", ".join(parts)

    def _write_line(self, now: float, final: bool = False) -> None:
        self._last_line = now
        print(self.line(now, final), file=self.stream, flush=True)


__all__ = ["Progress", "PROGRESS_ENV", "progress_allowed", "disable_progress"]
