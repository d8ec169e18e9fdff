"""Settings of the aw_hourglass method: its phase names, its config section ``aw_hourglass.*`` and rule rows.

Pure Python (read by :mod:`training.config`); the phases themselves are in ``training/methods/aw_hourglass.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

#: phase names this method adds (``phase=<name>``)
PHASES: tuple[str, ...] = ()


@dataclass
class AWHourglassConfig:
    """The ``aw_hourglass.*`` section."""


#: (key, accepts(value), what is expected) — appended to training.config.VALUE_RULES
VALUE_RULES: list = []
#: (applies(cfg), holds(cfg), message) — appended to training.config.PHASE_RULES
PHASE_RULES: list = []
