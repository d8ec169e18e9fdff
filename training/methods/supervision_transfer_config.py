"""Settings of the supervision_transfer method: its phase names, its config section ``transfer.*`` and rule rows.

Pure Python (read by :mod:`training.config`); the phases themselves are in ``training/methods/supervision_transfer.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: phase names this method adds (``phase=<name>``): the transfer stage (Eq. 2, no labels) and the
#: fine-tune stage (L_REG on a labelled fraction; without ``model.init`` it is the from-scratch baseline)
PHASES: tuple[str, ...] = ("supervision_transfer", "supervision_transfer_finetune")
TRANSFER, FINETUNE = PHASES

MODALITIES = ("depth", "rgb")
#: ``normalised``: the toolkit's depth_input (1 channel); ``hha``: 3 channels computed from it
#: (nearness, and the vertical and viewing components of the surface normal; see the method's docstring)
DEPTH_ENCODINGS = ("normalised", "hha")
TRANSFER_POINTS = ("layer1", "layer2", "layer3", "layer4")
FINETUNE_MODES = ("whole", "head")


@dataclass
class SupervisionTransferConfig:
    """The ``transfer.*`` section (Gupta, Hoffman & Malik, CVPR 2016)."""

    teacher: str = ""  # frozen Φ: checkpoint of a network trained with labels on the other modality L
    modality: str = "depth"  # U, the student Ψ's modality: depth (paper: RGB teacher → depth) or rgb (reverse)
    depth_encoding: str = "normalised"  # input encoding of a depth student: normalised | hha
    points: list[str] = field(default_factory=lambda: ["layer4"])  # transfer point(s) i* (layer4 ≈ pool5)
    finetune: str = "whole"  # fine-tune stage: whole network (Table 1 row D) or head only (row B, "ft fc only")


#: (key, accepts(value), what is expected) — appended to training.config.VALUE_RULES
VALUE_RULES: list = [
    ("transfer.modality", lambda v: v in MODALITIES, f"one of {MODALITIES}"),
    ("transfer.depth_encoding", lambda v: v in DEPTH_ENCODINGS, f"one of {DEPTH_ENCODINGS}"),
    ("transfer.points", lambda v: bool(v) and len(set(v)) == len(v) and all(p in TRANSFER_POINTS for p in v),
     f"a non-empty list of distinct stages of {TRANSFER_POINTS}"),
    ("transfer.finetune", lambda v: v in FINETUNE_MODES, f"one of {FINETUNE_MODES}"),
]

#: (applies(cfg), holds(cfg), message) — appended to training.config.PHASE_RULES
PHASE_RULES: list = [
    (lambda c: c.phase == TRANSFER, lambda c: bool(c.transfer.teacher),
     "phase supervision_transfer needs transfer.teacher (the checkpoint of a network trained with labels "
     "on the other modality)"),
    (lambda c: c.phase == TRANSFER, lambda c: not c.model.init,
     "phase supervision_transfer trains the student from random initialisation; leave model.init empty"),
    (lambda c: c.phase == FINETUNE and c.transfer.finetune == "head", lambda c: bool(c.model.init),
     "transfer.finetune=head needs model.init (a supervision_transfer run's model.pt): a random trunk has "
     "nothing to keep"),
    (lambda c: c.phase in PHASES, lambda c: c.transfer.modality == "depth" or c.transfer.depth_encoding == "normalised",
     "transfer.depth_encoding=hha applies to a depth student only (transfer.modality is rgb)"),
]
