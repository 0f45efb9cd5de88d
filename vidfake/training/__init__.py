"""Training and evaluation support; import the submodule you need (nothing is imported here).

- :mod:`vidfake.training.data`: labelled media (manifest, ``real/``+``fake/`` folders, Hugging Face
  image sets), group-aware splits, torch datasets.
- :mod:`vidfake.training.sbi`: self-blended fakes from real faces, per image or per clip.
- :mod:`vidfake.training.augment`: the BitMind validators' augmentations (levels 0-3, JPEG 75).
- :mod:`vidfake.training.cache`, :mod:`~vidfake.training.recipes`, :mod:`~vidfake.training.engine`,
  :mod:`~vidfake.training.fusion`, :mod:`~vidfake.training.config`: the face cache, the per-branch
  datasets, the training loop, the fusion fit and the run configuration.

The metrics, the subnet's reward and the gasbench score live in :mod:`vidfake.metrics`.
"""
