"""Self-reconstruction fakes: a detector trained on real photos and their autoencoder reconstructions only.

Issue 16, candidate (i). Every head trained on the dev images learns content and style (docs/loso_images.md).
Following "Detecting AutoEncoder is Enough to Catch LDM Generated Images" (2024) and NPR's up-sampling
traces (Tan et al., CVPR 2024), a small autoencoder whose decoder up-samples as latent-diffusion decoders
do (nearest-neighbour x2 then 3x3 convolutions, as in Stable Diffusion's VAE decoder blocks) is trained on
REAL photos only. Its reconstruction of a real photo is a "fake" with the photo's content, so a detector
trained on (original, reconstruction) pairs can only separate them by the decoder's traces. No generated
image and no generator family is seen in training: every fake group of the dev data is held out, and the
real groups used for training are excluded from evaluation.

Stages (each resumable; outputs under ``--cache``, default ``cache/selfrecon``):

- ``ae``: train :class:`SelfReconAE` on 128 x 128 random crops of the TRAIN reals at native resolution,
  L1 + L1 of FFT magnitudes, for a wall-clock budget; ``ae.pt``. The second run (the defaults) down-samples
  2x into 16 latent channels (the first: 4x into 16), so the reconstructions are faithful enough (>= 30 dB
  is the aim) that softness is no cue.
- ``pairs``: reconstruct every TRAIN real (whole image, padded to a multiple of ``down``), store the
  reconstruction as JPEG 95 (the dev data's own normalisation, so the JPEG-95 grid is no label hint),
  then draw ``--views`` augmentations per pair, the SAME parameters for both sides: a blur or an unsharp
  mask (``--blur-p``, ``--sharpen-p``), a JPEG pre-compression, then the validators' mix. With
  ``--soft-reals`` a third side, the original alone blurred, is a REAL: blur by itself must not read as
  fake. ``pairs.npy``.
- ``detector``: fine-tune ImageNet EfficientNet-Lite0 on random crops of the pair views for a budget;
  ``detector.pt``.
- ``eval``: score the TRAIN hold-out pairs (sanity), two controls (a real photo blurred, which
  ``--soft-reals`` trains on; a real photo down-sized by 2 and back, which nothing trains on), and every
  fake group against the EVAL reals, on the clean 256 px JPEG-75 view and on one validator-style view
  seeded by file name (:func:`vidfake.training.features.view_params`, the LOSO study's views);
  ``results.json``.

Usage (``docs/selfrecon.md`` has both runs' commands)::

    python -m vidfake.training.selfrecon all --data ../shared/data --ae-minutes 15 --det-minutes 15
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidfake.training.augment import SubnetAugParams, apply_subnet_aug, jpeg_roundtrip, sample_subnet_aug
from vidfake.training.data import MediaItem

logger = logging.getLogger(__name__)

__all__ = [
    "TRAIN_REAL_GROUPS",
    "SelfReconAE",
    "augment_pair",
    "psnr",
    "reconstruct",
    "split_real_groups",
]

# Real groups the autoencoder and the detector train on: the two big sets of diverse everyday photos
# (300 ImageNet samples, 195 real-or-ai-game photos). Everything else real (faces, art, demos, manga)
# is left for evaluation, where it meets every fake group.
TRAIN_REAL_GROUPS: tuple[str, ...] = ("ImageNet samples", "real-or-ai-game photos")
CROP = 128
JPEG_RECON_QUALITY = 95  # the dev data's normalisation of every image
FIRST_ARCH = {"width": 16, "latent": 16, "down": 4}  # the first run's AE (its checkpoint names no architecture)


# --------------------------------------------------------------------------- split
@dataclass(frozen=True)
class RealSplit:
    """Indices into the manifest's image items.

    Attributes:
        train: TRAIN reals the AE and detector fit on.
        holdout: TRAIN-group reals kept out of fitting (PSNR, sanity pairs, blur control); never in
            the fake-group evaluation either.
        eval_real: reals of every other group.
        eval_fake: every fake.
    """

    train: tuple[int, ...]
    holdout: tuple[int, ...]
    eval_real: tuple[int, ...]
    eval_fake: tuple[int, ...]


def split_real_groups(labels: Sequence[int], groups: Sequence[str], *,
                      train_groups: Sequence[str] = TRAIN_REAL_GROUPS, holdout: int = 60,
                      seed: int = 0) -> RealSplit:
    """Split items into TRAIN reals (with a file-level hold-out), EVAL reals and eval fakes.

    Args:
        labels: 0 real, 1 fake, per item.
        groups: source group per item (:func:`vidfake.training.groups.assign_groups`).
        train_groups: real groups used for training; none may hold a fake.
        holdout: TRAIN-group files kept out of fitting.
        seed: seeds the hold-out draw.

    Raises:
        ValueError: a train group holds fakes or is absent.
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups, dtype=object)
    for g in train_groups:
        in_g = groups == g
        if not in_g.any():
            raise ValueError(f"train group {g!r} has no items")
        if labels[in_g].any():
            raise ValueError(f"train group {g!r} holds fakes; only real groups may be trained on")
    in_train = np.isin(groups, list(train_groups)) & (labels == 0)
    train_idx = np.flatnonzero(in_train)
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(train_idx, size=min(holdout, len(train_idx) // 2), replace=False))
    fit = np.setdiff1d(train_idx, held)
    eval_real = np.flatnonzero((labels == 0) & ~in_train)
    eval_fake = np.flatnonzero(labels == 1)
    return RealSplit(tuple(fit.tolist()), tuple(held.tolist()), tuple(eval_real.tolist()),
                     tuple(eval_fake.tolist()))


# --------------------------------------------------------------------------- autoencoder
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class _Res(nn.Module):
    """Two 3x3 convolutions with a skip, as in SD's VAE ResnetBlock (GroupNorm dropped: small batches)."""

    def __init__(self, c: int):
        super().__init__()
        self.c1, self.c2 = _conv(c, c), _conv(c, c)

    def forward(self, x):
        return x + self.c2(F.silu(self.c1(F.silu(x))))


class _UpNearest(nn.Module):
    """SD's ``Upsample``: nearest-neighbour x2, then a 3x3 convolution (here it also narrows the width)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _conv(cin, cout)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class SelfReconAE(nn.Module):
    """A small autoencoder, 2x or 4x down-sampling, LDM-style nearest-neighbour up-sampling decoder.

    Encoder: ``log2(down)`` stride-2 stages (2x2 patchifying convolutions, then a residual block), ``latent``
    channels at H/down. Decoder: per stage nearest x2 + 3x3 conv (SD's ``Upsample``; no transposed
    convolutions, no pixel shuffle), plus a colour "base" predicted at H/down and added after nearest
    up-sampling: the convolutional path only has to learn the detail, which is what makes a faithful
    reconstruction reachable in minutes of CPU (a first design with 3x3 stride-2 encoder stages and no
    base reached 18.7 dB held-out crop PSNR at step 100, this one 20.7 dB).

    Input and output: ``(B, 3, H, W)`` float in [0, 1], ``H`` and ``W`` multiples of ``down``.
    """

    def __init__(self, width: int = 16, latent: int = 16, down: int = 4):
        super().__init__()
        if down not in (2, 4):
            raise ValueError(f"down must be 2 or 4, got {down}")
        self.arch = {"width": width, "latent": latent, "down": down}
        # Widths grow as resolution falls (16 / 32 / 64 channels at H, H/2, H/4): on 2 shared CPU cores a
        # 32/64-wide net with residual blocks at full resolution took 6.4 s per batch of 16 crops of 128.
        w1, w2, w4 = width, 2 * width, 4 * width
        if down == 4:
            enc = [nn.Conv2d(3, w2, 2, stride=2), nn.SiLU(), nn.Conv2d(w2, w4, 2, stride=2), _Res(w4)]
            top = w4
            dec = [_UpNearest(w4, w2), _Res(w2), _UpNearest(w2, w1)]
        else:
            enc = [nn.Conv2d(3, w2, 2, stride=2), _Res(w2)]
            top = w2
            dec = [_UpNearest(w2, w1)]
        self.down = down
        self.encoder = nn.Sequential(*enc, nn.SiLU(), _conv(top, latent))
        self.stem = nn.Sequential(_conv(latent, top), _Res(top))
        self.base = nn.Conv2d(top, 3, 1)
        self.decoder = nn.Sequential(*dec, nn.SiLU(), _conv(w1, 3))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.stem(z)
        base = F.interpolate(self.base(h), scale_factor=float(self.down), mode="nearest")
        return base + self.decoder(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(x))


def recon_loss(y: torch.Tensor, x: torch.Tensor, freq_weight: float = 0.1) -> torch.Tensor:
    """L1 in pixels plus ``freq_weight`` x L1 of (orthonormal) FFT magnitudes: sharpness the L1 alone
    would trade away shows up as missing high-frequency magnitude."""
    fy = torch.fft.rfft2(y, norm="ortho").abs()
    fx = torch.fft.rfft2(x, norm="ortho").abs()
    return F.l1_loss(y, x) + freq_weight * F.l1_loss(fy, fx)


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, peak: float = 1.0) -> float:
    """PSNR in dB of two arrays on the same scale (``peak`` is the range's top)."""
    a = torch.as_tensor(np.asarray(a, dtype=np.float64) if isinstance(a, np.ndarray) else a.double())
    b = torch.as_tensor(np.asarray(b, dtype=np.float64) if isinstance(b, np.ndarray) else b.double())
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


@torch.inference_mode()
def reconstruct(ae: SelfReconAE, image: np.ndarray) -> np.ndarray:
    """Reconstruct a whole ``(H, W, 3) uint8`` image (reflect-padded to a multiple of ``down``, cropped back)."""
    h, w = image.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    ph, pw = (-h) % ae.down, (-w) % ae.down
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > ae.down else "replicate")
    y = ae(x)[..., :h, :w].clamp(0, 1)
    return (y[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- images
def _load(path: Path) -> np.ndarray:
    from vidfake.preprocessing.images import load_image

    return load_image(path)


def _resume(path: Path, model, opt, state: dict, what: str) -> dict:
    """Load a checkpoint written by the training loops into ``model`` and ``opt``; its ``state`` (or
    ``state`` unchanged when there is no checkpoint yet)."""
    if not path.exists():
        return state
    # This module's own checkpoints under cache/ (their state holds numpy scalars), never a download.
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    logger.info("resumed %s at step %d, %.0f s", what, ck["state"]["step"], ck["state"]["elapsed"])
    return ck["state"]


def _random_crops(images: Sequence[np.ndarray], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        im = images[int(rng.integers(len(images)))]
        y = int(rng.integers(im.shape[0] - size + 1))
        x = int(rng.integers(im.shape[1] - size + 1))
        out[k] = im[y : y + size, x : x + size]
    return out


def _to_tensor01(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)


# --------------------------------------------------------------------------- stage 1: AE
def train_ae(train: Sequence[np.ndarray], holdout: Sequence[np.ndarray], out: Path, *, minutes: float,
             batch: int = 8, lr: float = 2e-3, seed: int = 0, arch: dict | None = None) -> dict:
    """Train (or resume) the AE for ``minutes`` of wall clock in total; returns its metrics.

    The learning rate follows a cosine over the time budget (not steps), so a resumed run continues the
    same schedule.
    """
    torch.manual_seed(seed)
    ae = SelfReconAE(**(arch or {}))
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    state = {"step": 0, "elapsed": 0.0, "log": [], "arch": ae.arch}
    if out.exists():
        held = torch.load(out, map_location="cpu", weights_only=False)["state"].get("arch", FIRST_ARCH)
        if held != ae.arch:
            raise ValueError(f"{out} holds an AE of architecture {held}, not {ae.arch}; "
                             "use another --cache or delete it")
    state = _resume(out, ae, opt, state, "AE")
    train = [im for im in train if min(im.shape[:2]) >= CROP]
    rng = np.random.default_rng([seed, state["step"]])
    val = _to_tensor01(_random_crops([im for im in holdout if min(im.shape[:2]) >= CROP], 64, CROP,
                                     np.random.default_rng(1234)))
    budget = minutes * 60.0
    t0, last_save = time.time() - state["elapsed"], time.time()
    while (elapsed := time.time() - t0) < budget:
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * min(1.0, elapsed / budget))) + 1e-5
        x = _to_tensor01(_random_crops(train, batch, CROP, rng))
        loss = recon_loss(ae(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        if state["step"] % 50 == 0:
            with torch.inference_mode():
                p = psnr(ae(val).clamp(0, 1), val)
            state["log"].append({"step": state["step"], "s": round(elapsed), "loss": loss.item(), "psnr": p})
            logger.info("AE step %d %.0fs loss %.4f held-out PSNR %.2f dB", state["step"], elapsed, loss, p)
        if time.time() - last_save > 60:
            state["elapsed"] = time.time() - t0
            _save(out, ae, opt, state)
            last_save = time.time()
    state["elapsed"] = time.time() - t0
    with torch.inference_mode():
        state["holdout_crop_psnr"] = psnr(ae(val).clamp(0, 1), val)
    _save(out, ae, opt, state)
    logger.info("AE done: %d steps, held-out crop PSNR %.2f dB", state["step"], state["holdout_crop_psnr"])
    return state


def _save(path: Path, model: nn.Module, opt, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, tmp)
    tmp.replace(path)


def load_ae(path: Path) -> SelfReconAE:
    ck = torch.load(path, map_location="cpu", weights_only=False)  # our own checkpoint under cache/
    ae = SelfReconAE(**ck["state"].get("arch", FIRST_ARCH))  # the first run's checkpoints predate "arch"
    ae.load_state_dict(ck["model"])
    return ae.eval()


# --------------------------------------------------------------------------- stage 2: pairs
@dataclass(frozen=True)
class PairAug:
    """One augmentation of a pair, the same for both sides.

    Attributes:
        blur: sigma of a Gaussian blur at native size, 0 = none.
        sharpen: amount of an unsharp mask (sigma 1) at native size, 0 = none.
        pre_jpeg: quality of a JPEG pre-compression at native size, 0 = none.
        subnet: the validators' augmentation (resize to 256, JPEG 75, ...).
    """

    pre_jpeg: int
    subnet: SubnetAugParams
    blur: float = 0.0
    sharpen: float = 0.0


def sample_pair_aug(rng: np.random.Generator, pre_jpeg_p: float = 0.5, blur_p: float = 0.0,
                    sharpen_p: float = 0.0) -> PairAug:
    """Draw one pair augmentation; blur and sharpening exclude each other (blur wins the draw first)."""
    q = int(rng.integers(60, 96)) if rng.random() < pre_jpeg_p else 0
    subnet = sample_subnet_aug(None, rng)
    blur = sharpen = 0.0
    if blur_p or sharpen_p:  # no extra draws when off: the first run's pairs stay reproducible
        u = rng.random()
        if u < blur_p:
            blur = float(rng.uniform(0.4, 1.5))
        elif u < blur_p + sharpen_p:
            sharpen = float(rng.uniform(0.3, 1.0))
    return PairAug(q, subnet, blur, sharpen)


def soften(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` pixels (native size)."""
    import cv2

    return cv2.GaussianBlur(image, (0, 0), sigma)


def unsharp(image: np.ndarray, amount: float, sigma: float = 1.0) -> np.ndarray:
    """Unsharp mask: ``image + amount * (image - blur(image))``, clipped to uint8."""
    x = image.astype(np.float32)
    y = x + amount * (x - soften(image, sigma).astype(np.float32))
    return np.clip(y + 0.5, 0, 255).astype(np.uint8)


def resample_soft(image: np.ndarray, factor: float = 0.5) -> np.ndarray:
    """Down-size by ``factor`` (area) and back up (bicubic): softness the detector never trained on."""
    import cv2

    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def augment_pair(original: np.ndarray, recon: np.ndarray, aug: PairAug,
                 *extra: np.ndarray) -> tuple[np.ndarray, ...]:
    """Apply ``aug`` identically to both sides (and to any ``extra`` side); returns ``(256, 256, 3) uint8`` views."""
    sides = []
    for im in (original, recon, *extra):
        if aug.blur:
            im = soften(im, aug.blur)
        elif aug.sharpen:
            im = unsharp(im, aug.sharpen)
        if aug.pre_jpeg:
            im = jpeg_roundtrip(im, aug.pre_jpeg)
        sides.append(apply_subnet_aug(im, aug.subnet))
    return tuple(sides)


def make_recon(ae: SelfReconAE, image: np.ndarray) -> np.ndarray:
    """The fake side of a pair: the AE's reconstruction, saved as JPEG 95 like every dev image."""
    return jpeg_roundtrip(reconstruct(ae, image), JPEG_RECON_QUALITY)


def build_pairs(ae: SelfReconAE, images: Sequence[np.ndarray], views: int, seed: int = 0, *,
                blur_p: float = 0.0, sharpen_p: float = 0.0, soft_real: bool = False) -> np.ndarray:
    """``(N, views, S, 256, 256, 3) uint8``: per image, ``views`` augmentations of (original, recon) and,
    with ``soft_real``, a third side: the original alone blurred (sigma 0.5-1.5, JPEG 95 like the
    reconstruction), a REAL the detector must not call fake for being soft. ``S`` is 2 or 3."""
    sides = 3 if soft_real else 2
    out = np.empty((len(images), views, sides, 256, 256, 3), np.uint8)
    for i, im in enumerate(images):
        rec = make_recon(ae, im)
        rng = np.random.default_rng([seed, i])
        for v in range(views):
            aug = sample_pair_aug(rng, blur_p=blur_p, sharpen_p=sharpen_p)
            extra = (jpeg_roundtrip(soften(im, float(rng.uniform(0.5, 1.5))), JPEG_RECON_QUALITY),) if soft_real else ()
            out[i, v] = np.stack(augment_pair(im, rec, aug, *extra))
        if (i + 1) % 50 == 0:
            logger.info("pairs: %d/%d", i + 1, len(images))
    return out


# --------------------------------------------------------------------------- stage 3: detector
def make_detector():
    from vidfake.temporal_models import create_model

    return create_model("efficientnet_lite0_detector", imagenet_init=True)


def _norm(x01: torch.Tensor) -> torch.Tensor:
    return (x01 - 0.5) / 0.5  # Lite's mean 0.5, std 0.5 (temporal_models/image2d.py)


def train_detector(pairs: np.ndarray, out: Path, *, minutes: float, batch_pairs: int = 12, crop: int = 160,
                   lr: float = 3e-4, seed: int = 0) -> dict:
    """Fine-tune the whole ImageNet Lite0 on random ``crop`` crops of pair views, resumable.

    Each batch holds every side of ``batch_pairs`` pairs at the same crop (original and blurred
    original labelled real, reconstruction fake), so every gradient step compares identical content;
    everything is trained because the traces are low-level and the early stages are where ImageNet
    features ignore them.
    """
    torch.manual_seed(seed)
    model = make_detector().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    state = {"step": 0, "elapsed": 0.0, "log": []}
    state = _resume(out, model, opt, state, "detector")
    rng = np.random.default_rng([seed, state["step"]])
    n, v, sides = pairs.shape[:3]
    side_labels = [0, 1, 0][:sides]
    class_weight = torch.tensor([1.0, sides - 1.0])  # as much weight on the fakes as on the reals
    budget = minutes * 60.0
    model.train()
    t0, last_save, run_loss, run_acc = time.time() - state["elapsed"], time.time(), [], []
    while (elapsed := time.time() - t0) < budget:
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * min(1.0, elapsed / budget))) + 1e-6
        ii, vv = rng.integers(n, size=batch_pairs), rng.integers(v, size=batch_pairs)
        ys, xs = rng.integers(256 - crop + 1, size=batch_pairs), rng.integers(256 - crop + 1, size=batch_pairs)
        flip = rng.random(batch_pairs) < 0.5
        crops = []
        for i, vi, y, x, f in zip(ii, vv, ys, xs, flip, strict=True):
            c = pairs[i, vi, :, y : y + crop, x : x + crop]
            crops.append(c[:, :, ::-1] if f else c)
        arr = np.ascontiguousarray(np.concatenate(crops))  # (S*B, crop, crop, 3): real, fake[, soft real], ...
        xb = _norm(_to_tensor01(arr)).contiguous(memory_format=torch.channels_last)
        yb = torch.tensor(side_labels * batch_pairs)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb, weight=class_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        run_loss.append(float(loss))
        run_acc.append(float((logits.argmax(1) == yb).float().mean()))
        if state["step"] % 25 == 0:
            state["log"].append({"step": state["step"], "s": round(elapsed), "loss": float(np.mean(run_loss)),
                                 "acc": float(np.mean(run_acc))})
            logger.info("det step %d %.0fs loss %.4f acc %.3f", state["step"], elapsed, np.mean(run_loss),
                        np.mean(run_acc))
            run_loss, run_acc = [], []
        if time.time() - last_save > 60:
            state["elapsed"] = time.time() - t0
            _save(out, model, opt, state)
            last_save = time.time()
    state["elapsed"] = time.time() - t0
    _save(out, model, opt, state)
    return state


def load_detector(path: Path):
    model = make_detector()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["model"])
    return model.eval().to(memory_format=torch.channels_last)


@torch.inference_mode()
def p_fake(model, views: np.ndarray, batch: int = 32) -> np.ndarray:
    """P(fake) of ``(N, 256, 256, 3) uint8`` views, whole view (the network is fully convolutional)."""
    out = []
    for s in range(0, len(views), batch):
        x = _norm(_to_tensor01(np.ascontiguousarray(views[s : s + batch]))).contiguous(
            memory_format=torch.channels_last)
        out.append(torch.softmax(model(x), 1)[:, 1].numpy())
    return np.concatenate(out) if out else np.empty(0)


# --------------------------------------------------------------------------- stage 4: eval
def _views(image: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(clean, validator-style) views: level 0 (centre crop, 256, JPEG 75), and view 1 of the LOSO study."""
    from vidfake.training.features import LEVEL0, ViewSpec, view_params

    return apply_subnet_aug(image, LEVEL0), apply_subnet_aug(image, view_params(name, 1, ViewSpec()))


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def evaluate(model, ae: SelfReconAE, items: Sequence[MediaItem], groups: Sequence[str], split: RealSplit,
             limit: int | None = None) -> dict:
    """Sanity pairs, blur control and per-fake-group AUCs (clean and validator-style)."""
    from vidfake.training.features import item_id

    res: dict = {}
    # Sanity and controls on the TRAIN-group hold-out (never fitted on): a real photo blurred (sigma 1;
    # with --soft-reals a degradation the detector trained on as real) and a real photo down-sized by 2
    # and up-sized back (a softness it never trained on) must not score as reconstructions do.
    held = [_load(items[i].path) for i in split.holdout]
    names = [item_id(items[i].path) for i in split.holdout]
    kinds = {"real": lambda im, rec: im, "recon": lambda im, rec: rec, "blur": lambda im, rec: soften(im, 1.0),
             "resample": lambda im, rec: resample_soft(im)}
    views: dict[str, list] = {f"{k}_{v}": [] for k in kinds for v in ("clean", "val")}
    psnrs = []
    for im, nm in zip(held, names, strict=True):
        rec = make_recon(ae, im)
        psnrs.append(psnr(reconstruct(ae, im).astype(np.float64) / 255, im.astype(np.float64) / 255))
        for k, fn in kinds.items():
            c, v = _views(fn(im, rec), nm)
            views[f"{k}_clean"].append(c)
            views[f"{k}_val"].append(v)
    s = {k: p_fake(model, np.stack(a)) for k, a in views.items()}
    y = np.r_[np.zeros(len(held)), np.ones(len(held))]
    res["holdout"] = {
        "n": len(held),
        "full_image_psnr_mean": float(np.mean(psnrs)),
        "auc_pairs_clean": _auc(y, np.r_[s["real_clean"], s["recon_clean"]]),
        "auc_pairs_val": _auc(y, np.r_[s["real_val"], s["recon_val"]]),
        # the controls against the reconstructions: 1.0 = no control scores like a reconstruction
        **{f"auc_recon_vs_{k}_{v}": _auc(y, np.r_[s[f"{k}_{v}"], s[f"recon_{v}"]])
           for k in ("blur", "resample") for v in ("clean", "val")},
        **{f"mean_p_fake_{k}": float(v.mean()) for k, v in s.items()},
    }
    logger.info("holdout: %s", res["holdout"])
    # Every fake group against the EVAL reals.
    idx = list(split.eval_real) + list(split.eval_fake)
    if limit:
        idx = idx[::max(1, len(idx) // limit)]
    sc, sv = np.empty(len(idx)), np.empty(len(idx))
    buf_c, buf_v, pos = [], [], []
    for k, i in enumerate(idx):
        c, v = _views(_load(items[i].path), item_id(items[i].path))
        buf_c.append(c)
        buf_v.append(v)
        pos.append(k)
        if len(buf_c) == 32 or k == len(idx) - 1:
            sc[pos], sv[pos] = p_fake(model, np.stack(buf_c)), p_fake(model, np.stack(buf_v))
            buf_c, buf_v, pos = [], [], []
            logger.info("eval %d/%d", k + 1, len(idx))
    labels = np.array([items[i].label for i in idx])
    gr = np.array([groups[i] for i in idx], dtype=object)
    real = labels == 0
    res["eval_reals"] = {"n": int(real.sum()), "mean_p_fake_clean": float(sc[real].mean()),
                         "mean_p_fake_val": float(sv[real].mean())}
    per = []
    for g in sorted(set(gr[~real])):
        m = real | (gr == g)
        per.append({"group": g, "n": int((gr == g).sum()),
                    "auc_clean": _auc(labels[m], sc[m]), "auc_val": _auc(labels[m], sv[m]),
                    "mean_p_fake_clean": float(sc[gr == g].mean()), "mean_p_fake_val": float(sv[gr == g].mean())})
    res["groups"] = per
    for k in ("auc_clean", "auc_val"):
        vals = [p[k] for p in per]
        res[f"mean_{k}"], res[f"worst_{k}"] = float(np.mean(vals)), float(np.min(vals))
    res["pooled_auc_clean"] = _auc(labels, sc)
    res["pooled_auc_val"] = _auc(labels, sv)
    return res


def markdown_table(res: dict) -> str:
    lines = ["| fake group | n | AUC clean | AUC validator-style | mean P(fake) clean | mean P(fake) val |",
             "|---|---:|---:|---:|---:|---:|"]
    for p in res["groups"]:
        lines.append(f"| {p['group']} | {p['n']} | {p['auc_clean']:.3f} | {p['auc_val']:.3f} | "
                     f"{p['mean_p_fake_clean']:.3f} | {p['mean_p_fake_val']:.3f} |")
    lines.append(f"| **mean / worst** | | **{res['mean_auc_clean']:.3f} / {res['worst_auc_clean']:.3f}** | "
                 f"**{res['mean_auc_val']:.3f} / {res['worst_auc_val']:.3f}** | | |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI
def _items_and_split(data: Path, holdout: int):
    from vidfake.training.data import read_manifest
    from vidfake.training.groups import assign_groups

    items = read_manifest(data, kind="image")
    groups = assign_groups(items)
    split = split_real_groups([i.label for i in items], groups, holdout=holdout)
    return items, groups, split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vidfake.training.selfrecon", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("stage", choices=("ae", "pairs", "detector", "eval", "all"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--cache", type=Path, default=Path("cache/selfrecon"))
    ap.add_argument("--ae-minutes", type=float, default=12.0)
    ap.add_argument("--det-minutes", type=float, default=12.0)
    ap.add_argument("--views", type=int, default=4, help="augmented views per training pair")
    ap.add_argument("--latent", type=int, default=16, help="AE latent channels")
    ap.add_argument("--down", type=int, default=2, choices=(2, 4), help="AE down-sampling factor (the first run: 4)")
    ap.add_argument("--width", type=int, default=16, help="AE width at full resolution")
    ap.add_argument("--blur-p", type=float, default=0.25,
                    help="share of pair views blurred, both sides alike (the first run: 0)")
    ap.add_argument("--sharpen-p", type=float, default=0.15,
                    help="share of pair views sharpened, both sides alike (the first run: 0)")
    ap.add_argument("--soft-reals", action=argparse.BooleanOptionalAction, default=True,
                    help="add each original blurred alone as a third, real side (the first run: off)")
    ap.add_argument("--holdout", type=int, default=60, help="TRAIN-group files kept out of fitting")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-limit", type=int, default=None, help="score about this many eval images")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    items, groups, split = _items_and_split(args.data, args.holdout)
    logger.info("TRAIN reals %d (+%d held out), EVAL reals %d, fakes %d", len(split.train), len(split.holdout),
                len(split.eval_real), len(split.eval_fake))
    ae_path, pairs_path = args.cache / "ae.pt", args.cache / "pairs.npy"
    det_path, res_path = args.cache / "detector.pt", args.cache / "results.json"
    train_imgs = None
    if args.stage in ("ae", "all"):
        train_imgs = [_load(items[i].path) for i in split.train]
        held = [_load(items[i].path) for i in split.holdout]
        train_ae(train_imgs, held, ae_path, minutes=args.ae_minutes,
                 arch={"width": args.width, "latent": args.latent, "down": args.down})
    if args.stage in ("pairs", "all"):
        if pairs_path.exists():
            logger.info("%s exists; delete it to rebuild", pairs_path)
        else:
            train_imgs = train_imgs or [_load(items[i].path) for i in split.train]
            np.save(pairs_path, build_pairs(load_ae(ae_path), train_imgs, args.views, blur_p=args.blur_p,
                                            sharpen_p=args.sharpen_p, soft_real=args.soft_reals))
    if args.stage in ("detector", "all"):
        train_detector(np.load(pairs_path, mmap_mode="r"), det_path, minutes=args.det_minutes)
    if args.stage in ("eval", "all"):
        res = evaluate(load_detector(det_path), load_ae(ae_path), items, groups, split, limit=args.eval_limit)
        res["ae"] = {k: v for k, v in torch.load(ae_path, map_location="cpu", weights_only=False)["state"].items()
                     if k != "log"}
        res["split"] = {k: len(v) for k, v in asdict(split).items()}
        res["recipe"] = {k: getattr(args, k) for k in ("views", "latent", "down", "width", "blur_p", "sharpen_p",
                                                       "soft_reals", "ae_minutes", "det_minutes")}
        res_path.write_text(json.dumps(res, indent=1))
        print(markdown_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
