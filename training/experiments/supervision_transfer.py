"""The supervision_transfer experiments (synthetic analogue and real-data protocol), declared as tables.

``EXPERIMENTS`` is merged into :data:`training.experiments.catalog.EXPERIMENTS`.
"""
from __future__ import annotations

EXPERIMENTS: dict = {}
