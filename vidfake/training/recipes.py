"""Training recipes: the datasets each branch trains on, and ``train(config)`` for all of them.

Each recipe reads its own slice of the YAML config (``data:``) into a small frozen dataclass, builds
its datasets from the shared manifest (or a ``real/``+``fake/`` folder) and the face cache, and hands
them to the generic :func:`vidfake.training.engine.fit`.

Fakes come from two places: the labelled fake media, and self-blended fakes (SBI) made on the fly from
real faces (``sbi_prob``), blended with one parameter set over all frames of a clip (``sbi_jitter``
perturbs it per frame for temporally incoherent blends). Every sample passes the subnet validators'
augmentations (one parameter set per sample, the same on every frame).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vidfake.branches import make_branch
from vidfake.training.cache import CacheConfig, CachedVideo, build_cache, load_cached
from vidfake.training.data import MediaItem, read_manifest, scan_folder

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class DataConfig:
    """The ``data:`` slice of a training config.

    Attributes:
        root: the data folder (a manifest.csv, or ``real/`` and ``fake/`` subfolders).
        cache_dir: where the face cache lives (outside the repository).
        kinds: media kinds used (``image``, ``video``).
        sbi_prob: probability that a real video sample is turned into a self-blended fake.
        sbi_jitter: per-frame perturbation of the blend for a share of SBI clips (0 = coherent).
        subnet_aug_levels: probabilities of validator augmentation levels 0..3.
        samples_per_video: training samples drawn per video per epoch.
        video_frames_per_video: face frames per video added to the 2D detector's training set.
        exclude_methods: fake methods left out of training (leave-one-method-out runs).
        max_items: cap on items per split (smoke tests).
        trainable: parameter-name prefixes to train; everything else is frozen (BatchNorm statistics
            included). Empty = train everything. Lets a 2-core CPU adapt an ImageNet backbone's last
            stages and head instead of paying the full backward pass.
    """

    root: str = "../shared/data"
    cache_dir: str = "cache/faces"
    kinds: tuple[str, ...] = ("image", "video")
    sbi_prob: float = 0.5
    sbi_jitter: float = 0.3
    subnet_aug_levels: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    samples_per_video: int = 4
    video_frames_per_video: int = 6
    exclude_methods: tuple[str, ...] = ()
    max_items: int | None = None
    trainable: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown data config keys {sorted(unknown)}; known: {sorted(known)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


def load_items(cfg: DataConfig, split: str, kind: str) -> list[MediaItem]:
    root = Path(cfg.root)
    if (root / "manifest.csv").is_file():
        items = read_manifest(root, kind=kind, split=split)
    else:
        items = [i for i in scan_folder(root) if i.kind == kind and (i.split in (split, "", None))]
    if cfg.exclude_methods and split == "train":
        items = [i for i in items if not (i.label == 1 and any(m in i.method for m in cfg.exclude_methods))]
    if cfg.max_items:
        rng = np.random.default_rng(0)
        items = [items[k] for k in sorted(rng.permutation(len(items))[: cfg.max_items])]
    return items


def cached_videos(cfg: DataConfig, split: str) -> list[CachedVideo]:
    items = load_items(cfg, split, "video")
    build_cache(items, cfg.cache_dir, CacheConfig())
    return load_cached(items, cfg.cache_dir, CacheConfig())


# --------------------------------------------------------------------------- shared sample makers
def _face_region(crop: np.ndarray, crop_scale: float, face_scale: float, size: int, rng=None,
                 jitter: float = 0.0) -> np.ndarray:
    """The x``face_scale`` face box (the branch's crop) inside a cached x``crop_scale`` crop, resized to
    ``size`` (optional small shift)."""
    import cv2

    S = crop.shape[0]
    side = S * face_scale / crop_scale
    c = S / 2.0
    if rng is not None and jitter:
        c = c + rng.uniform(-jitter, jitter, 2) * side
        side *= 1 + rng.uniform(-jitter, jitter)
    else:
        c = np.array([c, c])
    x0, y0 = (np.asarray(c) - side / 2).round().astype(int)
    s = int(round(side))
    x0, y0 = int(np.clip(x0, 0, S - s)), int(np.clip(y0, 0, S - s))
    region = crop[y0 : y0 + s, x0 : x0 + s]
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)


def _subnet_aug(frames: np.ndarray, levels: tuple[float, ...], rng) -> np.ndarray:
    from vidfake.training.augment import apply_subnet_aug, sample_subnet_aug

    level = int(rng.choice(len(levels), p=np.asarray(levels) / np.sum(levels)))
    params = sample_subnet_aug(level, rng, size=256)
    return apply_subnet_aug(frames, params)


def _sbi(frames: np.ndarray, landmarks: np.ndarray, cfg: DataConfig, rng) -> np.ndarray:
    from vidfake.training.sbi import self_blend_clip

    jitter = cfg.sbi_jitter if rng.random() < 0.5 else 0.0
    fakes, _ = self_blend_clip(frames, landmarks, rng, jitter=jitter)
    return fakes


def _normalise(images: np.ndarray, mean, std) -> torch.Tensor:
    """``(..., H, W, 3) uint8`` -> ``(..., 3, H, W) float32`` normalised."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    x = x.movedim(-1, -3)
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return (x - m) / s


class _SeededDataset(Dataset):
    """Per-sample RNG from (seed, epoch, index): reproducible, different every epoch."""

    def __init__(self, seed: int, train: bool):
        self.seed, self.train, self.epoch = seed, train, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch if self.train else 0, index])


# --------------------------------------------------------------------------- 2D detector
class Image2DDataset(_SeededDataset):
    """Still images plus face frames of cached videos (and SBI fakes of real faces) for the 2D detector.

    Returns ``(x (3, S, S) float32, label)``; label 1 = fake.
    """

    def __init__(self, images: list[MediaItem], videos: list[CachedVideo], model_cfg, cfg: DataConfig,
                 *, train: bool, seed: int = 0):
        super().__init__(seed, train)
        self.images, self.videos, self.cfg, self.mcfg = images, videos, cfg, model_cfg
        self.branch = make_branch("image2d", model_cfg)  # the detector's own crop scale and input size
        k = cfg.video_frames_per_video
        self.index = [("image", i, 0) for i in range(len(images))]
        self.index += [("video", v, j) for v in range(len(videos)) for j in range(k)]
        self.labels = [it.label for it in images] + [videos[v].item.label for _, v, _ in self.index[len(images):]]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        from vidfake.preprocessing.images import load_image

        rng = self.rng(i)
        src, a, j = self.index[i]
        if src == "image":
            item = self.images[a]
            img = load_image(item.path)
            label = item.label
            img = _subnet_aug(img, self.cfg.subnet_aug_levels, rng) if self.train else _level0(img)
            img = self.branch.prepare_image(img)
        else:
            v = self.videos[a]
            n = len(v.crops)
            t = int(rng.integers(n)) if self.train else int(round(j * (n - 1) / max(1, self.cfg.video_frames_per_video - 1)))
            frame = v.crops[t]
            label = v.item.label
            if self.train and label == 0 and rng.random() < self.cfg.sbi_prob:
                frame = _sbi(frame[None], v.landmarks[t][None], self.cfg, rng)[0]
                label = 1
            face = _face_region(frame, v.crop_scale, self.branch.crop_scale, 256, rng if self.train else None, 0.05)
            if self.train:
                face = _subnet_aug(face, self.cfg.subnet_aug_levels, rng)
            img = self.branch.prepare_image(face)
        return _normalise(img, self.mcfg.mean, self.mcfg.std), label


class HubImageDataset(Image2DDataset):
    """:class:`Image2DDataset` for a Hugging Face image classifier (``model: hf:<folder>``): the same
    samples, prepared with the model's processor resize, crop, mean and std by its ``hf_image`` branch
    (:func:`vidfake.hub.prepare_frame`), the very preparation the detector uses at inference."""

    def __init__(self, images: list[MediaItem], videos: list[CachedVideo], hub_cfg, cfg: DataConfig,
                 *, train: bool, seed: int = 0):
        from vidfake.hub import make_hub_branch

        super().__init__(images, videos, hub_cfg, cfg, train=train, seed=seed)
        self.branch = make_hub_branch(hub_cfg)


def _level0(img: np.ndarray) -> np.ndarray:
    """Validation inputs: what a validator sends at augmentation level 0 (256 px, JPEG 75)."""
    from vidfake.preprocessing.images import subnet_image

    return subnet_image(img, 256, 75)


# --------------------------------------------------------------------------- TALL
class TallDataset(_SeededDataset):
    """2x2 layouts of 4 consecutive face crops. Returns ``(x (3, 224, 224), label)``."""

    def __init__(self, videos: list[CachedVideo], model_cfg, cfg: DataConfig, *, train: bool, seed: int = 0):
        super().__init__(seed, train)
        self.videos, self.cfg, self.mcfg = videos, cfg, model_cfg
        self.branch = make_branch("tall", model_cfg)  # clip length, crop scale, thumbnail size, layout
        per = cfg.samples_per_video if train else 3
        self.index = [(v, j) for v in range(len(videos)) for j in range(per)]
        self.labels = [videos[v].item.label for v, _ in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def clip_frames(self, v: CachedVideo, j: int, rng) -> np.ndarray:
        segs = np.unique(v.seg)
        s = segs[int(rng.integers(len(segs)))] if self.train else segs[j % len(segs)]
        frames = v.segment_frames(s)
        n = self.branch.frames_per_sample
        if len(frames) < n:
            frames = np.concatenate([frames, np.repeat(frames[-1:], n - len(frames))])
        start = int(rng.integers(len(frames) - n + 1)) if self.train else (len(frames) - n) // 2
        return frames[start : start + n]

    def __getitem__(self, i: int):
        rng = self.rng(i)
        vi, j = self.index[i]
        v = self.videos[vi]
        t = self.clip_frames(v, j, rng)
        crops, label = v.crops[t], v.item.label
        if self.train and label == 0 and rng.random() < self.cfg.sbi_prob:
            crops, label = _sbi(crops, v.landmarks[t], self.cfg, rng), 1
        shift = rng if self.train else None
        faces = np.stack([_face_region(c, v.crop_scale, self.branch.crop_scale, 256) for c in crops])
        if self.train:
            faces = _subnet_aug(faces, self.cfg.subnet_aug_levels, shift)
        import cv2

        side = self.branch.thumb_size
        thumbs = np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in faces])
        return _normalise(self.branch.tile(thumbs), self.mcfg.mean, self.mcfg.std), label


# --------------------------------------------------------------------------- lip branch
class LipDataset(_SeededDataset):
    """Mouth sequences of the lip model's frames per sample. Returns ``(x (1, T, 88, 88) float32, label)``.

    SBI fakes re-cut the mouth from the blended face crop. Scale and blur augmentation on every sample
    so the branch cannot learn "small, upsampled mouth = fake" (a confound in the dev data).
    """

    def __init__(self, videos: list[CachedVideo], model_cfg, cfg: DataConfig, *, train: bool, seed: int = 0):
        super().__init__(seed, train)
        self.videos, self.cfg = videos, cfg
        self.branch = make_branch("lip", model_cfg)  # window length
        per = cfg.samples_per_video if train else 1
        self.index = [(v, j) for v in range(len(videos)) for j in range(per)]
        self.labels = [videos[v].item.label for v, _ in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        from vidfake.preprocessing.mouth import mouth_rois, normalize_rois

        rng = self.rng(i)
        vi, j = self.index[i]
        v = self.videos[vi]
        segs = np.unique(v.seg)
        s = segs[int(rng.integers(len(segs)))] if self.train else segs[len(segs) // 2]
        t = v.segment_frames(s)
        n = self.branch.frames_per_sample
        t = np.concatenate([t, np.repeat(t[-1:], max(0, n - len(t)))])[:n]
        label = v.item.label
        if self.train and label == 0 and rng.random() < self.cfg.sbi_prob:
            fakes = _sbi(v.crops[t], v.landmarks[t], self.cfg, rng)
            rois, label = mouth_rois(fakes, v.landmarks[t]).rois, 1
        else:
            rois = v.mouth[t]
        if self.train:
            rois = _scale_blur(rois, rng)
            if rng.random() < 0.5:
                rois = rois[:, :, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(normalize_rois(rois))).unsqueeze(0)
        return x, label


def _scale_blur(rois: np.ndarray, rng) -> np.ndarray:
    """Same random down-up rescale and blur on every frame (mouth-size confound)."""
    import cv2

    out = rois
    if rng.random() < 0.5:
        f = rng.uniform(0.35, 0.9)
        s = max(8, int(88 * f))
        out = np.stack([cv2.resize(cv2.resize(r, (s, s), interpolation=cv2.INTER_AREA), (88, 88),
                                   interpolation=cv2.INTER_LINEAR) for r in out])
    if rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        out = np.stack([cv2.GaussianBlur(r, (k, k), 0) for r in out])
    return out


# --------------------------------------------------------------------------- entry point
def build_datasets(branch: str, dcfg: DataConfig, model_cfg, seed: int):
    """Train and validation datasets for ``branch`` (``image2d``, ``tall``, ``lip``)."""
    if branch == "image2d":
        tr_img = load_items(dcfg, "train", "image") if "image" in dcfg.kinds else []
        va_img = load_items(dcfg, "val", "image") if "image" in dcfg.kinds else []
        tr_vid = cached_videos(dcfg, "train") if "video" in dcfg.kinds else []
        va_vid = cached_videos(dcfg, "val") if "video" in dcfg.kinds else []
        return (Image2DDataset(tr_img, tr_vid, model_cfg, dcfg, train=True, seed=seed),
                Image2DDataset(va_img, va_vid, model_cfg, dcfg, train=False, seed=seed))
    tr, va = cached_videos(dcfg, "train"), cached_videos(dcfg, "val")
    if branch == "tall":
        return (TallDataset(tr, model_cfg, dcfg, train=True, seed=seed),
                TallDataset(va, model_cfg, dcfg, train=False, seed=seed))
    if branch == "lip":
        return (LipDataset(tr, model_cfg, dcfg, train=True, seed=seed),
                LipDataset(va, model_cfg, dcfg, train=False, seed=seed))
    raise ValueError(f"unknown branch {branch!r}; choose image2d, tall or lip")


def freeze_except(model: torch.nn.Module, prefixes: tuple[str, ...]) -> int:
    """Freeze every parameter whose name does not start with one of ``prefixes``; returns trainable count.

    Frozen BatchNorm layers are kept in eval mode whenever the model is put in training mode, so
    their running statistics stay the pretrained ones.
    """
    frozen_norms = []
    for name, module in model.named_modules():
        if any(name.startswith(p) for p in prefixes):
            continue
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not any(
                p.startswith(name + ".") for p in prefixes):
            frozen_norms.append(module)
    base_train = model.train

    def train(mode: bool = True):
        base_train(mode)
        for m in frozen_norms:
            m.eval()
        return model

    model.train = train
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n == 0:
        raise ValueError(f"trainable={prefixes} matches no parameter of the model")
    return n


def branch_of(model_name: str) -> str:
    from vidfake.temporal_models import get_config

    fam = get_config(model_name).family
    return {"image2d": "image2d", "tall_swin": "tall", "lip": "lip"}[fam]


def train(cfg, *, resume: bool = False):
    """Train one branch from a :class:`vidfake.training.config.TrainConfig`; returns the engine's FitResult."""
    from vidfake.temporal_models import create_model, get_config
    from vidfake.training.engine import fit

    dcfg = DataConfig.from_dict(dict(cfg.data))
    if cfg.model.startswith("hf:"):
        return _train_hub_image(cfg, dcfg, resume)
    model_cfg = get_config(cfg.model)
    branch = branch_of(cfg.model)
    model = create_model(cfg.model, checkpoint_path=cfg.init_checkpoint, **dict(cfg.model_kwargs))
    if dcfg.trainable:
        n = freeze_except(model, dcfg.trainable)
        logger.info("training only %s: %d parameters", ", ".join(dcfg.trainable), n)
    train_ds, val_ds = build_datasets(branch, dcfg, model_cfg, cfg.seed)
    logger.info("%s: %d train / %d val samples (fake share %.2f / %.2f)", cfg.name, len(train_ds),
                len(val_ds), np.mean(train_ds.labels), np.mean(val_ds.labels))
    return fit(model, train_ds, val_ds, cfg, resume=resume)


def _train_hub_image(cfg, dcfg: DataConfig, resume: bool):
    """Fine-tune a Hugging Face image classifier (``model: hf:<folder or cached id>``) as the 2D data is
    trained; ``model_kwargs`` may hold only ``label_map``. The best model is also written with
    ``save_pretrained`` to ``out_dir/hf_model`` (use it as ``--image-model hf:OUT_DIR/hf_model``)."""
    import os

    from transformers import AutoImageProcessor

    from vidfake.hub import load_hub_config, load_hub_model, two_class_module
    from vidfake.training.engine import fit

    extra = set(cfg.model_kwargs) - {"label_map"}
    if extra or cfg.init_checkpoint:
        raise ValueError(f"{cfg.model}: a hub model takes only model_kwargs.label_map (got {sorted(extra)}) "
                         "and no init_checkpoint (point model at the folder to start from)")
    hub_cfg = load_hub_config(cfg.model, "image", cfg.model_kwargs.get("label_map"))
    hf_model, _ = load_hub_model(hub_cfg)
    if dcfg.trainable:  # prefixes are the transformers model's own names (e.g. classifier, vit.encoder.layer.11)
        n = freeze_except(hf_model, dcfg.trainable)
        logger.info("training only %s: %d parameters", ", ".join(dcfg.trainable), n)
    tr_img = load_items(dcfg, "train", "image") if "image" in dcfg.kinds else []
    va_img = load_items(dcfg, "val", "image") if "image" in dcfg.kinds else []
    tr_vid = cached_videos(dcfg, "train") if "video" in dcfg.kinds else []
    va_vid = cached_videos(dcfg, "val") if "video" in dcfg.kinds else []
    train_ds = HubImageDataset(tr_img, tr_vid, hub_cfg, dcfg, train=True, seed=cfg.seed)
    val_ds = HubImageDataset(va_img, va_vid, hub_cfg, dcfg, train=False, seed=cfg.seed)
    logger.info("%s: %d train / %d val samples (%s)", cfg.name, len(train_ds), len(val_ds),
                hub_cfg.labels.describe())
    result = fit(two_class_module(hf_model, hub_cfg.labels), train_ds, val_ds, cfg, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        out = Path(cfg.out_dir) / "hf_model"
        hf_model.save_pretrained(out)
        AutoImageProcessor.from_pretrained(hub_cfg.source).save_pretrained(out)
        logger.info("fine-tuned model written to %s (use --image-model hf:%s)", out, out)
    return result
