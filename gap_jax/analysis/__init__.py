"""Instruments for trained models, one module each; all of them work through a model's
`aux["class_maps"]` and a workdir's checkpoint, so they apply to any model, head and placement.

- class_maps: the maps of a whole split, batched and jitted, optionally upsampled to the input size.
- map_stats: mean, max, min, shares above thresholds, Hoyer, Gini, peak-to-mean; present vs absent class.
- receptive_field: analytic (Araujo et al.) per layer, and effective (Luo et al.) from input gradients.
- localization: MaxBoxAcc, MaxBoxAccV2, PxAP (Choe et al.) and CAM's 20%-of-max box.
- ground_truth: boxes and masks of the datasets that have them.
- figures: class-map grids, effective-field heat maps, metric-vs-parameter curves.
- analyze: all of it on a workdir (`python -m gap_jax.analysis --workdir <dir>`).
"""
