"""The learned prior phi as an artifact (paper Sect. 4.2: phi_META, the deliverable of meta-training).

phi is a name -> tensor mapping parallel to ``model.named_parameters()``: one weight per
parameter element (method.md §5). A saved prior records the architecture it belongs to
(``name``, ``in_channels``, ``width``, ``num_outputs``) and every tensor's shape, so loading
it onto a different network fails with an error naming the first mismatching parameter.
It also records what it means and what it fits:

- ``form``: ``"l2"`` for R(θ;φ) = Σφθ² (Eq. 10) or ``"l1"`` for Σφ|θ| (the Table 2 variant),
  the regulariser φ was meta-learned for (``prior.form``); applying it as the other one
  is refused (:func:`check_prior_fits`);
- ``init_seed``: the seed that drew the distilled student's initial weights (the student
  run's ``seed``, followed through ``model.init`` checkpoints, :func:`initialisation_seed`).
  φ weighs each weight of that initialisation, so a target student must start from the
  same one: its own ``seed`` must equal ``init_seed``.

File format (``torch.save`` of plain containers, read back with ``weights_only=True``)::

    {"format": "cmkg-prior", "version": 2, "arch": {...}, "form": "l2", "init_seed": 0,
     "shapes": {name: [d0, d1, ...]}, "phi": {name: tensor}}
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from datasets.atomic import atomic_write

FORMAT = "cmkg-prior"
VERSION = 2
FORMS = ("l2", "l1")
#: The prior form each target regulariser applies (training.regularizers).
FORM_OF_REGULARIZER = {"prior": "l2", "prior_l1": "l1"}


class PriorError(ValueError):
    """A prior file is unreadable, malformed, or belongs to another architecture."""


def init_phi(model: nn.Module, value: float = 0.0) -> dict[str, torch.Tensor]:
    """phi_0: a tensor filled with ``value`` for every parameter (paper: phi_0 = 0), same device and dtype."""
    return {name: torch.full_like(p, value).detach() for name, p in model.named_parameters()}


def initialisation_seed(seed: int, init_model_info: Mapping | None) -> int | None:
    """The seed that drew a network's initial weights: its run's ``seed``, or, for a run started
    from ``model.init``, the ``init_seed`` recorded in that checkpoint's ``model_info`` (``None``
    when the checkpoint predates the record)."""
    if init_model_info is None:
        return int(seed)
    recorded = init_model_info.get("init_seed")
    return None if recorded is None else int(recorded)


def save_prior(path: str | os.PathLike, phi: Mapping[str, torch.Tensor], model_arch: Mapping, *,
               form: str = "l2", init_seed: int | None = None) -> None:
    """Write phi atomically (temporary file in the same folder, then rename) with its architecture.

    Args:
        path: destination file, e.g. ``run/prior.pt``.
        phi: name -> tensor (saved on CPU).
        model_arch: ``{"name", "in_channels", "width", "num_outputs"}`` (``ResNet.arch``).
        form: ``"l2"`` (Σφθ²) or ``"l1"`` (Σφ|θ|), the regulariser φ was learned for.
        init_seed: the seed of the student's initialisation (:func:`initialisation_seed`).
    """
    if form not in FORMS:
        raise PriorError(f"{path}: prior form should be one of {FORMS}, found {form!r}")
    path = os.fspath(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": dict(model_arch),
        "form": form,
        "init_seed": None if init_seed is None else int(init_seed),
        "shapes": {n: list(t.shape) for n, t in phi.items()},
        "phi": {n: t.detach().cpu().clone() for n, t in phi.items()},
    }
    with atomic_write(path) as temporary, open(temporary, "wb") as handle:
        torch.save(payload, handle)


def read_prior(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and validate a prior file without a model: returns ``(phi, arch)``."""
    payload = _read_payload(path)
    return payload["phi"], dict(payload.get("arch", {}))


def _read_payload(path: str | os.PathLike) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PriorError(f"{path}: prior file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, bad tensor storage
        raise PriorError(f"{path}: expected a prior saved by save_prior (torch zip file), "
                         f"could not read it: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise PriorError(f"{path}: expected format {FORMAT!r}, found {found!r}")
    if payload.get("version") != VERSION:
        hint = (" (version 1 priors record neither their form nor the student's initialisation; rerun the "
                "distillation to write a version 2 prior)" if payload.get("version") == 1 else "")
        raise PriorError(f"{path}: expected prior version {VERSION}, found {payload.get('version')!r}{hint}")
    if payload.get("form") not in FORMS:
        raise PriorError(f"{path}: 'form' should be one of {FORMS}, found {payload.get('form')!r}")
    phi, shapes = payload.get("phi"), payload.get("shapes")
    if not isinstance(phi, dict) or not isinstance(shapes, dict) or phi.keys() != shapes.keys():
        raise PriorError(f"{path}: 'phi' and 'shapes' must be dicts with the same parameter names")
    for name, t in phi.items():
        if not isinstance(t, torch.Tensor) or list(t.shape) != list(shapes[name]):
            raise PriorError(f"{path}: phi[{name!r}] should be a tensor of shape {shapes[name]}, "
                             f"found {getattr(t, 'shape', type(t).__name__)}")
    return payload


def prior_info(path: str | os.PathLike) -> dict:
    """``{"arch", "form", "init_seed"}`` of a prior file (validated like :func:`read_prior`)."""
    payload = _read_payload(path)
    return {"arch": dict(payload.get("arch", {})), "form": payload["form"], "init_seed": payload.get("init_seed")}


def check_prior_fits(path: str | os.PathLike, regularizer_kind: str, init_seed: int | None) -> dict:
    """Refuse a prior applied as the other form, or to a student initialised from another seed.

    ``regularizer_kind`` is ``prior`` (Σφθ², needs an ``l2`` prior) or ``prior_l1`` (Σφ|θ|,
    needs ``l1``); ``init_seed`` is the target student's (:func:`initialisation_seed`).
    Unknown seeds (an initialisation checkpoint that predates the record) only warn.
    Returns :func:`prior_info`.
    """
    info = prior_info(path)
    wanted = FORM_OF_REGULARIZER[regularizer_kind]
    if info["form"] != wanted:
        other = next(k for k, f in FORM_OF_REGULARIZER.items() if f == info["form"])
        raise PriorError(f"{path}: holds an {info['form']} prior (learned with prior.form={info['form']}), but "
                         f"regularizer.kind={regularizer_kind} applies the {wanted} form; use "
                         f"regularizer.kind={other}, or learn a prior with prior.form={wanted}")
    if info["init_seed"] is None or init_seed is None:
        warnings.warn(f"{path}: cannot check that the target student starts from the initialisation phi was "
                      f"learned for (seed unrecorded: prior {info['init_seed']}, target {init_seed})", stacklevel=2)
    elif int(info["init_seed"]) != int(init_seed):
        raise PriorError(f"{path}: phi was learned for a student initialised with seed {info['init_seed']}, but this "
                         f"target student is initialised with seed {init_seed}; phi weighs each weight of that "
                         f"initialisation, so the target student must start from the same one: set "
                         f"seed={info['init_seed']}")
    return info


def load_prior(path: str | os.PathLike, model: nn.Module) -> dict[str, torch.Tensor]:
    """Load phi for ``model``; every parameter name and shape must match.

    Returns name -> tensor on the model's device and in each parameter's dtype.
    Raises :class:`PriorError` naming the file, the parameter, and both architectures.
    """
    path = os.fspath(path)
    phi, arch = read_prior(path)
    model_arch = getattr(model, "arch", None)
    where = f"prior for {arch or 'an unknown architecture'}, model is {model_arch or type(model).__name__}"
    params = dict(model.named_parameters())
    for name, p in params.items():
        if name not in phi:
            raise PriorError(f"{path}: no phi for parameter {name!r} {tuple(p.shape)} ({where})")
        if tuple(phi[name].shape) != tuple(p.shape):
            raise PriorError(f"{path}: phi[{name!r}] has shape {tuple(phi[name].shape)}, "
                             f"the model's parameter has {tuple(p.shape)} ({where})")
    extra = sorted(set(phi) - set(params))
    if extra:
        raise PriorError(f"{path}: phi for parameters the model lacks: {extra[:5]} ({where})")
    return {name: phi[name].to(device=p.device, dtype=p.dtype) for name, p in params.items()}
