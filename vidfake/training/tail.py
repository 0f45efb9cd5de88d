"""The shipped 2D recipe as a LOSO head: its trainable layers fitted per fold on cached frozen maps.

The shipped 2D detector (``configs/train_image2d.yaml``) trains only the last layers of an ImageNet
EfficientNet-Lite0 (``blocks.6``, ``conv_head``, ``bn2``, ``classifier``); everything before them is frozen,
BatchNorm statistics included. What feeds those layers therefore depends on the image alone, and
:mod:`vidfake.training.features` caches it per view (extractor ``lite0_stage5``: the output of
``blocks.5``, 192 x 7 x 7). :class:`TailFinetune` is an sklearn-style classifier over those rows that
rebuilds the recipe's trainable layers from the same ImageNet weights and trains them with the recipe's
own optimiser, schedule, label smoothing and gradient clipping (:func:`vidfake.training.engine.fit`), so
:func:`vidfake.training.loso.evaluate` can score *the current fine-tune* leave-one-source-out instead of
only as a reference trained on every source.

What differs from the shipped run, and why:

- The inputs are the LOSO cache's views (view 0 clean, 1..K-1 validator-style, fixed per image) instead
  of a fresh augmentation each epoch, and still images only (no video face frames, no self-blends
  unless the caller adds them as ``aux``).
- ``epochs`` is chosen so that a fold sees about as many samples as the shipped run did (4 epochs of
  about 2,000 samples): a fold holds ~1,500 images x 3 views, so 2 epochs.
- The best epoch is picked on a random 10 % of the fold's training rows (the shipped run picked it on
  the val split, which shares every source with training; neither sees the held-out sources). For
  videos (:class:`FrameTailFinetune`) that 10 % is of whole videos: frames of one clip are near
  duplicates, and split apart they would make every epoch look perfect. For images the 10 % is of rows
  (views), so views of one image can sit on both sides; every one of the 28 image folds picked its last
  epoch, as the shipped run did (its best epoch was its last too).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["RECIPE", "FrameTailFinetune", "TailFinetune"]

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "train_image2d.yaml"
STAGE5_SHAPE = (192, 7, 7)  # Lite0's blocks.5 output at 224 px
VAL_SHARE = 0.1


def _tail_module(cfg):
    """The recipe's model with everything before ``blocks.6`` cut off: ``(B, 192, 7, 7)`` -> logits."""
    import torch

    from vidfake.temporal_models import create_model
    from vidfake.training.features import TAIL_START
    from vidfake.training.recipes import DataConfig, freeze_except

    model = create_model(cfg.model, **dict(cfg.model_kwargs))
    trainable = DataConfig.from_dict(dict(cfg.data)).trainable
    if not trainable or not all(p.startswith((f"blocks.{TAIL_START}", "conv_head", "bn2", "classifier"))
                                for p in trainable):
        raise ValueError(f"{RECIPE.name}: trainable={trainable} reaches before blocks.{TAIL_START}; the cached "
                         "maps cannot stand in for the frozen part")
    freeze_except(model, trainable)

    class Tail(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            y = x.view(-1, *STAGE5_SHAPE)
            for stage in self.net.blocks[TAIL_START:]:
                y = stage(y)
            return self.net.forward_head(self.net.bn2(self.net.conv_head(y)))

    return Tail()


class TailFinetune:
    """sklearn-style ``fit(x, y)`` / ``predict_proba(x)`` over ``(n, 9408)`` cached ``blocks.5`` maps."""

    def __init__(self, recipe: str | Path = RECIPE, epochs: int = 2, seed: int = 0):
        self.recipe, self.epochs, self.seed = Path(recipe), epochs, seed
        self.model = None

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != int(np.prod(STAGE5_SHAPE)):
            raise ValueError(f"TailFinetune needs rows of Lite0 blocks.5 maps ({int(np.prod(STAGE5_SHAPE))} values, "
                             f"candidate lite0_stage5), got shape {x.shape}")
        return x

    def fit(self, x, y, units: np.ndarray | None = None):
        """Train on rows ``x`` (labels ``y``); ``units`` (one id per row, e.g. its video) keeps the rows of
        one unit on one side of the epoch-selection split, so near-duplicate rows cannot leak across it."""
        import torch
        from torch.utils.data import TensorDataset

        from vidfake.training.config import load_train_config
        from vidfake.training.engine import fit

        x, y = self._check(x), np.asarray(y).astype(np.int64)
        rng = np.random.default_rng(self.seed)
        units = np.arange(len(y)) if units is None else np.asarray(units)
        names, index = np.unique(units, return_inverse=True)
        val = (rng.random(len(names)) < VAL_SHARE)[index]
        if len(np.unique(y[val])) < 2 or len(np.unique(y[~val])) < 2:
            raise ValueError("TailFinetune: both labels are needed in the training and the selection rows")
        with tempfile.TemporaryDirectory(prefix="vidfake-tail-") as out:
            cfg = replace(load_train_config(self.recipe), epochs=self.epochs, out_dir=out, budget_minutes=None,
                          num_workers=0, early_stop_patience=None, device="cpu", amp=False, seed=self.seed)
            model = _tail_module(cfg)
            train = TensorDataset(torch.from_numpy(x[~val]), torch.from_numpy(y[~val]))
            held = TensorDataset(torch.from_numpy(x[val]), torch.from_numpy(y[val]))
            result = fit(model, train, held, cfg, restore_best=True)
            logger.info("tail fine-tune: best epoch %d of %d, selection AUC %.3f", result.best_epoch,
                        result.epochs_run, result.best_auc)
        self.model = model.eval()
        return self

    def predict_proba(self, x) -> np.ndarray:
        import torch

        if self.model is None:
            raise RuntimeError("TailFinetune: call fit first")
        x = self._check(x)
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), 256):
                out.append(torch.softmax(self.model(torch.from_numpy(x[i:i + 256])), 1).numpy())
        return np.concatenate(out).astype(np.float64)


class FrameTailFinetune(TailFinetune):
    """:class:`TailFinetune` for videos: each row holds ``frames`` maps (``(n, frames x 9408)``); it trains
    on every frame with its video's label, as the shipped recipe trains on face frames, and a video's
    probability is the sigmoid of its frames' mean log-odds (the 2D branch pools frames the same way)."""

    def __init__(self, frames: int, **kwargs):
        super().__init__(**kwargs)
        self.frames = frames

    def _frames(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        per = int(np.prod(STAGE5_SHAPE))
        if x.ndim != 2 or x.shape[1] != self.frames * per:
            raise ValueError(f"FrameTailFinetune needs rows of {self.frames} x {per} values, got shape {x.shape}")
        return x.reshape(-1, per)

    def fit(self, x, y):
        n = len(np.asarray(y))
        return super().fit(self._frames(x), np.repeat(np.asarray(y), self.frames),
                           units=np.repeat(np.arange(n), self.frames))  # a video's frames stay together

    def predict_proba(self, x) -> np.ndarray:
        p = super().predict_proba(self._frames(x))[:, 1].clip(1e-7, 1 - 1e-7)
        z = np.log(p / (1 - p)).reshape(-1, self.frames).mean(1)
        q = 1 / (1 + np.exp(-z))
        return np.stack([1 - q, q], axis=1)
