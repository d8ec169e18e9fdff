"""Training methods beyond knowledge-as-priors, one module each, all run by :func:`training.trainer.train`.

==========================  ======================  ==============================================
module                      phases                  paper
==========================  ======================  ==============================================
``training.phases``         teacher, student,       knowledge as priors (cross-modal distillation
                            distill, target         + meta-learned prior), `method.md`
``supervision_transfer``    see its docstring       Gupta, Hoffman & Malik, CVPR 2016
``aw_hourglass``            see its docstring       Adaptive Wasserstein Hourglass
``lsps``                    see its docstring       Abdi et al., BMVC 2018 (shared latent space)
==========================  ======================  ==============================================

Each method has two modules: ``<method>_config.py`` (pure Python: its phase names, its config
section and rule rows, read by :mod:`training.config` without importing torch models) and
``<method>.py`` (its phases: networks, optimisers, losses). :func:`phase_class` finds the class
of a phase name; the trainer asks it and knows no method.
"""
from __future__ import annotations

import importlib

#: phase name → module defining it (its ``PHASE_CLASSES`` dict). Filled from the settings modules.
def _phase_modules() -> dict[str, str]:
    from training.methods import aw_hourglass_config, lsps_config, supervision_transfer_config

    modules = {name: "training.phases" for name in ("teacher", "student", "distill", "target")}
    for settings, module in ((supervision_transfer_config, "training.methods.supervision_transfer"),
                             (aw_hourglass_config, "training.methods.aw_hourglass"),
                             (lsps_config, "training.methods.lsps")):
        modules.update({name: module for name in settings.PHASES})
    return modules


def phase_class(name: str):
    """The :class:`training.phases.Phase` subclass that runs phase ``name``."""
    modules = _phase_modules()
    if name not in modules:
        raise ValueError(f"unknown phase {name!r}; known phases: {', '.join(modules)}")
    return importlib.import_module(modules[name]).PHASE_CLASSES[name]


__all__ = ["phase_class"]
