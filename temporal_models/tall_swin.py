"""TALL-Swin: a Swin Transformer on 2x2 thumbnail layouts of four consecutive face crops.

Paper: Y. Xu, J. Liang, G. Jia, Z. Yang, Y. Zhang, R. He, "TALL: Thumbnail Layout for Deepfake Video
Detection", ICCV 2023 (arXiv:2307.07494).
Reference code: https://github.com/rainy-xu/TALL4Deepfake (no licence file; built on Microsoft's MIT
Swin-Transformer) and DeepfakeBench's ``training/detectors/tall_detector.py``
(https://github.com/SCLBD/DeepfakeBench, CC BY-NC 4.0; its ``tall_trainFF_testCDF.pth`` checkpoint is
therefore non-commercial). This file is an independent implementation on timm's
:class:`~timm.models.swin_transformer.SwinTransformer` (Apache-2.0; Swin itself MIT).

What TALL changes in Swin-B, all reproduced here:

* input: one ``(3, 224, 224)`` image tiling four 112x112 face thumbnails row-major (frame 0 top-left,
  1 top-right, 2 bottom-left, 3 bottom-right), normalised with ImageNet mean/std;
* window size 14 in stages 1-3 and 7 in stage 4 (timm's per-stage ``window_size``); at 224 input the
  stage grids are 56, 28, 14, 7, so stages 3 and 4 attend globally without shifting, as in the
  reference;
* a learnable embedding per thumbnail (``thumbnail_embed``, ``(4, C)``; the reference's
  ``frame_pos_embed``, enabled by ``ape``/``--hpe_to_token``) added to the patch tokens of that
  thumbnail right after the patch embedding;
* cutout during training: one block blanked at the same place in all four thumbnails
  (:func:`tall_cutout`; the reference blanks a 16x16 block of the 224-pixel frames, i.e. 8x8 of a
  112-pixel thumbnail).

Weights: ``tall_checkpoint_filter_fn`` converts DeepfakeBench/BitMind ``tall_trainFF_testCDF.pth``
(keys ``model.layers.N.blocks.M...``, ``model.frame_pos_embed``, ``model.head.weight``) and Microsoft or
timm ImageNet Swin checkpoints (7-window relative-position tables are resized to 14 windows, bicubic).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from einops import repeat
from timm.layers import resize_rel_pos_bias_table_simple, trunc_normal_
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer import checkpoint_filter_fn as timm_swin_filter_fn
from torch import nn

from vidfake.temporal_models.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from vidfake.temporal_models.registry import register_config, register_model
from vidfake.temporal_models.weights import StateDict

__all__ = [
    "TallSwin",
    "resize_rel_pos_table",
    "tall_checkpoint_filter_fn",
    "tall_cutout",
    "thumbnail_index_map",
]

_logger = logging.getLogger(__name__)

TALL_WINDOWS = (14, 14, 14, 7)
_CHECKPOINT_PREFIXES = ("module.", "model.", "backbone.")


def thumbnail_index_map(grid_size: Sequence[int], layout: Sequence[int] = (2, 2)) -> torch.Tensor:
    """Which thumbnail each token of a patch grid lies in.

    Args:
        grid_size: ``(H', W')`` token grid of the whole layout (56x56 for 224 input, patch 4).
        layout: ``(rows, cols)`` of thumbnails.

    Returns:
        ``(H', W')`` int64 map with values in ``[0, rows * cols)``, row-major (0 top-left, 1 top-right, ...).
    """
    (gh, gw), (rows, cols) = grid_size, layout
    if gh % rows or gw % cols:
        raise ValueError(f"token grid {tuple(grid_size)} does not split into a {rows}x{cols} layout")
    r = torch.arange(gh) // (gh // rows)
    c = torch.arange(gw) // (gw // cols)
    return r[:, None] * cols + c[None, :]


def tall_cutout(
    x: torch.Tensor,
    size: int = 8,
    fill: float = 0.0,
    layout: Sequence[int] = (2, 2),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blank one block at the same place in every thumbnail (or frame) of each sample.

    The block centre is uniform over the thumbnail and the block is clipped at its borders (as in the
    reference), so blocks at an edge are smaller. Each sample of the batch gets its own position.

    Args:
        x: layouts ``(B, C, H, W)`` tiled ``layout`` (thumbnails ``H / rows`` x ``W / cols``), or clips
            ``(B, T, C, H, W)``; any float range (usually already normalised).
        size: block side in pixels of one thumbnail (or frame).
        fill: value written into the block (0 is the dataset mean after normalisation; DeepfakeBench
            writes -1).
        layout: ``(rows, cols)`` of thumbnails for 4-D input.
        generator: random generator (CPU) for reproducible positions.

    Returns:
        A new tensor shaped like ``x``.
    """
    if x.ndim == 4:
        rows, cols = layout
        if x.shape[-2] % rows or x.shape[-1] % cols:
            raise ValueError(f"layout of shape {tuple(x.shape)} does not split into {rows}x{cols} thumbnails")
        th, tw = x.shape[-2] // rows, x.shape[-1] // cols
    elif x.ndim == 5:
        rows = cols = 1
        th, tw = x.shape[-2:]
    else:
        raise ValueError(
            f"expected layouts (B, C, H, W) or clips (B, T, C, H, W), got shape {tuple(x.shape)}"
        )
    if size < 1:
        raise ValueError(f"cutout size must be >= 1, got {size}")
    b = x.shape[0]
    cy = torch.randint(0, th, (b,), generator=generator)
    cx = torch.randint(0, tw, (b,), generator=generator)
    y0, y1 = (cy - size // 2).clamp(0, th), (cy + size - size // 2).clamp(0, th)
    x0, x1 = (cx - size // 2).clamp(0, tw), (cx + size - size // 2).clamp(0, tw)
    ys, xs = torch.arange(th), torch.arange(tw)
    in_y = (ys >= y0[:, None]) & (ys < y1[:, None])  # (B, th)
    in_x = (xs >= x0[:, None]) & (xs < x1[:, None])  # (B, tw)
    block = in_y[:, :, None] & in_x[:, None, :]  # (B, th, tw)
    mask = repeat(block, "b h w -> b (r h) (c w)", r=rows, c=cols).to(x.device)
    mask = mask[:, None] if x.ndim == 4 else mask[:, None, None]
    return x.masked_fill(mask, fill)


def resize_rel_pos_table(table: torch.Tensor, new_window: int | Sequence[int]) -> torch.Tensor:
    """Resize a Swin relative-position bias table to another window size (bicubic).

    Args:
        table: ``((2w - 1) ** 2, heads)`` table of a square window ``w``.
        new_window: the new window side (or ``(h, w)``).

    Returns:
        ``((2h' - 1) * (2w' - 1), heads)`` table; the centre entry (zero offset) is preserved.
    """
    new = (new_window, new_window) if isinstance(new_window, int) else tuple(new_window)
    shape = ((2 * new[0] - 1) * (2 * new[1] - 1), table.shape[1])
    if tuple(table.shape) == shape:
        return table
    return resize_rel_pos_bias_table_simple(table.float(), new, shape).to(table.dtype)


class TallSwin(SwinTransformer):
    """Swin Transformer with TALL's thumbnail embedding and layout cutout.

    Input ``(B, 3, 224, 224)`` float layouts normalised with ImageNet mean/std; output logits
    ``(B, num_classes)`` (index 1 = fake). Parameter names are timm's Swin names plus
    ``thumbnail_embed``.

    For Grad-CAM, ``forward_features`` returns the last stage's map ``(B, 7, 7, C)`` (channels-last,
    after the final LayerNorm): keep it (``feats.retain_grad()``) and call ``forward_head(feats)``;
    each of the 7x7 cells covers 32x32 layout pixels, so cells never straddle two thumbnails.
    ``forward_intermediates`` returns per-stage maps (with the thumbnail embedding applied).

    Args:
        layout: ``(rows, cols)`` of thumbnails in the input.
        cutout: blank a block in all thumbnails during training (``self.training`` only).
        cutout_size: block side in thumbnail pixels.
        cutout_fill: value written into the block.
        **kwargs: :class:`~timm.models.swin_transformer.SwinTransformer` arguments.
    """

    def __init__(
        self,
        layout: Sequence[int] = (2, 2),
        cutout: bool = False,
        cutout_size: int = 8,
        cutout_fill: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.layout = tuple(layout)
        self.num_thumbnails = self.layout[0] * self.layout[1]
        self.cutout = cutout
        self.cutout_size = cutout_size
        self.cutout_fill = cutout_fill
        self.thumbnail_embed = nn.Parameter(torch.zeros(self.num_thumbnails, self.embed_dim))
        trunc_normal_(self.thumbnail_embed, std=0.02)
        self.register_buffer(
            "thumbnail_index", thumbnail_index_map(self.patch_embed.grid_size, self.layout), persistent=False
        )

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"thumbnail_embed"}

    def set_input_size(self, *args, **kwargs) -> None:
        raise NotImplementedError("TALL-Swin is fixed to its layout size; the thumbnail map depends on it")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Cutout (training only, when enabled), patch embedding and thumbnail embedding.

        Args:
            x: ``(B, 3, H, W)`` normalised layouts.

        Returns:
            ``(B, H / 4, W / 4, C)`` tokens, channels-last.
        """
        if self.training and self.cutout:
            x = tall_cutout(x, self.cutout_size, self.cutout_fill, self.layout)
        x = self.patch_embed(x)
        return x + self.thumbnail_embed[self.thumbnail_index]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 224, 224)`` layouts -> ``(B, 7, 7, C)`` last-stage map (NHWC, after the final norm)."""
        x = self.embed(x)
        x = self.layers(x)
        return self.norm(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-stage feature maps, as timm's ``forward_intermediates`` but with TALL's embedding.

        Args:
            x: ``(B, 3, 224, 224)`` layouts.
            indices: last ``n`` stages if an int, these stages if a list, all if ``None``.
            norm: apply the final norm to the last stage's map.
            stop_early: stop after the last requested stage.
            output_fmt: ``"NCHW"`` or ``"NHWC"`` for the intermediates.
            intermediates_only: return only the list.

        Returns:
            Intermediates (and the normed final features ``(B, 7, 7, C)`` unless ``intermediates_only``).
        """
        from timm.models._features import feature_take_indices

        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.layers), indices)
        stages = self.layers[: max_index + 1] if stop_early else self.layers
        last = len(self.layers) - 1
        intermediates = []
        x = self.embed(x)
        i = 0
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take:
                y = self.norm(x) if norm and i == last else x
                intermediates.append(y.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else y)
        if intermediates_only:
            return intermediates
        return (self.norm(x) if i == last else x), intermediates


def _strip_common_prefix(state: StateDict) -> StateDict:
    """Remove wrapper prefixes (``module.``, ``model.``, ``backbone.``) shared by every key."""
    changed = True
    while changed and state:
        changed = False
        for prefix in _CHECKPOINT_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def tall_checkpoint_filter_fn(state_dict: StateDict, model: nn.Module) -> StateDict:
    """Convert TALL/Swin checkpoints to :class:`TallSwin` keys (pure; our own state dicts pass unchanged).

    Handles DeepfakeBench/BitMind TALL checkpoints (``model.``/``module.`` prefixes, ``frame_pos_embed``
    ``(1, 4, C)`` -> ``thumbnail_embed`` ``(4, C)``, persisted ``attn_mask``/``relative_position_index``
    buffers dropped, end-of-stage ``layers.N.downsample`` -> timm's ``layers.N+1.downsample``,
    ``head`` -> ``head.fc``) and ImageNet Swin checkpoints (Microsoft or timm naming), whose 7-window
    relative-position tables are resized bicubically to the model's windows. Classifier shapes that
    differ (ImageNet's 1000 classes) are left for ``load_weights(strict=False)`` to report.
    """
    state = _strip_common_prefix(dict(state_dict))
    out: StateDict = {}
    resized = 0
    for key, value in state.items():
        if key.endswith(("relative_position_index", "attn_mask")):
            continue  # buffers the model rebuilds
        if key == "frame_pos_embed":
            key, value = "thumbnail_embed", value.reshape(-1, value.shape[-1])
        elif key.endswith("relative_position_bias_table"):
            # Block keys keep their stage index in both layouts; only downsample layers move.
            try:
                attn = model.get_submodule(key[: -len(".relative_position_bias_table")])
            except AttributeError:
                pass  # a block the model lacks: load_weights reports it as unexpected
            else:
                new = resize_rel_pos_table(value, attn.window_size)
                resized += new is not value
                value = new
        out[key] = value
    if resized:
        _logger.info("resized %d relative-position tables to the model's windows (bicubic)", resized)
    # timm's own filter moves end-of-stage downsample layers and renames the head; it also resamples a
    # patch-embedding kernel of another size. Tables already fit, so it leaves them alone.
    return timm_swin_filter_fn(out, model)


_TALL_CFG = dict(
    family="tall_swin",
    input_kind="tall_layout",
    input_size=(3, 224, 224),
    num_frames=4,
    layout="2x2",
    roi="face",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    interpolation="bilinear",
    licence="code: Apache-2.0 (vidfake), after TALL (no licence file) and Swin (MIT)",
    paper="Xu et al., TALL: Thumbnail Layout for Deepfake Video Detection, ICCV 2023",
    reference_repo="https://github.com/rainy-xu/TALL4Deepfake",
)

register_config(
    ModelConfig(
        name="tall_swin_base",
        weights_file="tall_swin_base.safetensors",
        weights_source=(
            "Not shipped: the paper's model is trained on FaceForensics++ from ImageNet-22k Swin-B. "
            "DeepfakeBench's tall_trainFF_testCDF.pth (CC BY-NC 4.0) loads with "
            "create_model('tall_swin_base', checkpoint_path='tall_trainFF_testCDF.pth')."
        ),
        **_TALL_CFG,
    )
)
register_config(
    ModelConfig(
        name="tall_swin_compact",
        weights_file="tall_swin_compact.safetensors",
        weights_source=(
            "Shipped: trained from scratch by vidfake on ../shared/data with configs/train_tall.yaml; "
            "card: pretrained/tall_swin_compact.md"
        ),
        weights_sha256="71644bd686c586b2317f96765972b2a862791b57725b327ef86ae8aab3c87c56",
        **_TALL_CFG,
    )
)
register_config(
    ModelConfig(
        name="tall_swin_test",
        weights_source="tiny variant for tests; no weights",
        **_TALL_CFG,
    )
)


def _tall(**kwargs) -> TallSwin:
    kwargs.setdefault("num_classes", 2)
    kwargs.setdefault("img_size", 224)
    kwargs.setdefault("window_size", TALL_WINDOWS)
    return TallSwin(**kwargs)


@register_model(checkpoint_filter=tall_checkpoint_filter_fn)
def tall_swin_base(**kwargs) -> TallSwin:
    """TALL-Swin-B as in the paper: embed 128, depths (2, 2, 18, 2), heads (4, 8, 16, 32); 86.9 M params."""
    args = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.1)
    return _tall(**{**args, **kwargs})


@register_model(checkpoint_filter=tall_checkpoint_filter_fn)
def tall_swin_compact(**kwargs) -> TallSwin:
    """CPU-trainable TALL-Swin: embed 48, depths (1, 1, 3, 1), heads (2, 4, 8, 16); 3.7 M params."""
    args = dict(embed_dim=48, depths=(1, 1, 3, 1), num_heads=(2, 4, 8, 16), drop_path_rate=0.05)
    return _tall(**{**args, **kwargs})


@register_model(checkpoint_filter=tall_checkpoint_filter_fn)
def tall_swin_test(**kwargs) -> TallSwin:
    """Tiny TALL-Swin for tests: embed 16, one block per stage."""
    args = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), drop_path_rate=0.0)
    return _tall(**{**args, **kwargs})
