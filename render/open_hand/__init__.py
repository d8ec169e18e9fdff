"""The embedded open hand: a procedurally built right hand in MANO's file format.

Built by ``tools/build_hand_model.py`` into ``assets/open_hand/MANO_RIGHT.npz``; see
``docs/hand_model.md``. Modules, in build order:

- :mod:`render.open_hand.skeleton`  — anatomical proportions: joints, radii, joint axes.
- :mod:`render.open_hand.surface`   — implicit hand surface and its closed triangle mesh.
- :mod:`render.open_hand.rig`       — skinning weights, joint regressor, tips, shape directions.
- :mod:`render.open_hand.pose_prior`— anatomical joint-angle distribution and the PCA pose basis.
- :mod:`render.open_hand.build`     — assembles the MANO-format arrays.
"""
