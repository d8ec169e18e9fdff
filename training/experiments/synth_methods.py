"""``synth-methods``: every method of the toolkit on one synthetic target test set, each with the
supervision its paper uses.

Data (the data steps of ``synth-table2``, so that one ``--data-cache`` and ``--runs-dir`` share them
and the knowledge-as-priors arms are not trained twice): labelled source renders with depth
(``source_train``), a domain-shifted target set (``target_train``, 300 renders; other backgrounds
and lighting) and its test set (``target_test``, 500 renders). The same target samples are also
rendered through the depth-sensor model (``*_sensor``: identical hands, cameras and RGB, sensor
depth), since LSPS's real domain is real-like depth.

=====================  ================================  ===========================================
method (arm)           what of the target it trains on   network input at test
=====================  ================================  ===========================================
knowledge as priors    3D labels (paper: STB labelled),  RGB
(``target_prior``)     with φ from source distillation
no regulariser         3D labels                         RGB
(``target_none``)
supervision transfer   paired RGB-depth, no labels;      depth (the paper's direction, L = RGB)
(``supervision_        then 1 / 10 / 100 % of the
transfer_*``)          labels for fine-tuning
AW Hourglass           RGB + 2D keypoints + depth, no    RGB (2.5D, lifted with the ground-truth
(``aw_hourglass_*``)   3D labels                         root and scale)
LSPS (``lsps_m0``)     sensor depth, no labels           sensor depth
=====================  ================================  ===========================================

Every arm is evaluated on ``target_test`` (``target_test_sensor`` for LSPS: the same samples), with
the toolkit's protocol (ground-truth root and scale) and AUC over 0–50 mm.
"""
from __future__ import annotations

from dataclasses import asdict, replace

from training.experiments import aw_hourglass, lsps, supervision_transfer
from training.experiments.catalog import (SYNTH_TABLE2, _meta_arms, _source_arms, _synth_common, _target_arms)
from training.experiments.spec import EvalArm, Experiment, RenderData


def synth_methods(quick: bool) -> Experiment:
    s = SYNTH_TABLE2["quick" if quick else "full"]
    sensor = lsps.SYNTH_LSPS["quick" if quick else "full"].sensor
    data = (RenderData("source_train", s.source_train, 1, "source", s.image_size, s.render_workers),
            RenderData("source_test", s.source_test, 2, "source", s.image_size, s.render_workers),
            RenderData("target_train", s.target_train, 3, "target", s.image_size, s.render_workers),
            RenderData("target_test", s.target_test, 4, "target", s.image_size, s.render_workers),
            RenderData("target_train_sensor", s.target_train, 3, "target", s.image_size, s.render_workers, sensor),
            RenderData("target_test_sensor", s.target_test, 4, "target", s.image_size, s.render_workers, sensor))
    # knowledge as priors: exactly synth-table2's arms of these names (shared run directories)
    meta = (f"optim.epochs={s.distill_epochs}", f"prior.beta={s.prior_beta}",
            f"prior.nonnegative={str(s.prior_nonnegative).lower()}", *s.distill_extra)
    kap = [*_source_arms(s, "source_train", "source_test"),
           *[a for a in _meta_arms("source_train", "source_test", s.auc_range, meta) if a.name == "kd_meta_l2"],
           EvalArm("kd_on_target", "kd_meta_l2", "target_test", s.auc_range,
                   "knowledge as priors: the distilled student on the target without target training"),
           *_target_arms("target_", "target_train", "target_test", {"prior": "kd_meta_l2"}, (), (1.0e-3,),
                         s.auc_range, (f"optim.epochs={s.target_epochs}", *s.target_extra))]
    transfer_sizes = supervision_transfer.SYNTH_SUPERVISION_TRANSFER["quick" if quick else "full"]
    transfer = supervision_transfer.synth_methods_arms(transfer_sizes, "source_train", "target_train", "target_test",
                                                       s.target_train, s.auc_range)
    hourglass_sizes = aw_hourglass.SYNTH_AW_HOURGLASS["quick" if quick else "full"]
    hourglass = aw_hourglass.synth_methods_arms(hourglass_sizes, "source_train", "target_train", "target_test",
                                                s.auc_range)
    # the hourglass's own common keys (batch 16 + 16) after the experiment's, on each of its arms
    hourglass = [replace(a, overrides=(*aw_hourglass._common(hourglass_sizes), *a.overrides)) for a in hourglass]
    latent = lsps.synth_methods_arms("source_train", "target_train_sensor", "target_test_sensor", quick, s.auc_range)
    return Experiment("synth-methods", "every method on one synthetic target test set with the supervision each "
                      "paper uses: knowledge as priors (3D labels + φ), supervision transfer (paired depth, few "
                      "labels), AW Hourglass (2D + depth), LSPS (sensor depth, no labels)", data,
                      (*kap, *transfer, *hourglass, *latent), s.seeds, _synth_common(s),
                      {"synth_table2": asdict(s), "supervision_transfer": asdict(transfer_sizes),
                       "aw_hourglass": asdict(hourglass_sizes), "lsps_sensor": sensor})


EXPERIMENTS = {"synth-methods": ("every method on one synthetic target test set, each with its paper's "
                                 "supervision (2 CPU cores)", synth_methods)}
