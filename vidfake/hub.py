"""Hugging Face models as extra detection branches (``--image-model hf:...``, ``--video-model hf:...``).

An image-classification model (``AutoModelForImageClassification``: ViT, ConvNeXt, Swin, ...) joins the
2D detector as the ``hf_image`` branch: it scores the still image, and on videos the same evenly spread
frames as the 2D detector (whole frames: hub detectors are trained on whole images). A
video-classification model (``AutoModelForVideoClassification``: VideoMAE, TimeSformer, ViViT) is the
``hf_video`` branch: ``config.num_frames`` evenly spread whole frames, one clip per video. Both plan
their spans like the built-in branches, so the detector decodes each video once.

Labels. A model's ``config.id2label`` is mapped to real/fake by name (case-insensitive, punctuation
ignored: ``AI-generated`` = ``ai_generated`` = ``aigenerated``) with :data:`FAKE_NAMES` and
:data:`REAL_NAMES`; ``--label-map "LABEL_0=real,LABEL_1=fake"`` maps or overrides names (``ignore``
drops a label). Every label must be mapped: an unknown class is never silently counted as real. The
branch's fake log-odds are ``logsumexp(z[fake labels]) - logsumexp(z[real labels])``: with more than two
labels, P(fake) is the softmax mass of the fake labels over that of all mapped labels (the whole mass
when none is ignored).

Preparation follows the model's saved image processor (``preprocessor_config.json``): a resize to
``size`` (``height``/``width``: stretched, as ViT's processor does; ``shortest_edge``: aspect kept),
then a centre crop to ``crop_size`` where the processor crops, then ``image_mean``/``image_std``. It is
implemented here (PIL resampling, as the processor names it) rather than by calling the processor, so
that ``vidfake train`` prepares training images with the very same function.

Offline: ``transformers`` is imported only when a hub model is asked for. Hub ids resolve from the
local Hugging Face cache; with ``HF_HUB_OFFLINE=1`` (the CLI sets it unless ``--online``) an id that is
not cached is a :class:`HubError` naming it, raised within milliseconds. A local folder always works.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from vidfake.branches import Branch, BranchOutput, BranchPlan, VideoContext, sigmoid
from vidfake.result import ClipScore

if TYPE_CHECKING:
    import torch

    from vidfake.preprocessing.samplers import ClipSpan

__all__ = [
    "FAKE_NAMES", "HF_PREFIX", "HUB_BRANCHES", "REAL_NAMES", "HubConfig", "HubError", "HubFrames",
    "HubImageBranch", "HubVideoBranch", "LabelMapping", "is_hub_spec", "load_hub_config", "load_hub_model",
    "make_hub_branch", "map_labels", "parse_label_map", "prepare_frame", "two_class_module",
]

logger = logging.getLogger(__name__)

HF_PREFIX = "hf:"
#: Hub branch names in the order the detector runs them (after the built-in branches).
HUB_BRANCHES: tuple[str, ...] = ("hf_image", "hf_video")

#: Label names read as "fake" (after lower-casing and dropping everything but letters and digits).
FAKE_NAMES = frozenset({
    "fake", "fakes", "ai", "aiimage", "aigenerated", "aigc", "artificial", "synthetic", "deepfake",
    "deepfakes", "generated", "computergenerated", "manipulated", "forged", "forgery", "spoof", "fakeimage",
    "fakeface", "fakevideo",
})
#: Label names read as "real".
REAL_NAMES = frozenset({
    "real", "reals", "human", "humanmade", "authentic", "original", "realism", "genuine", "natural",
    "pristine", "bonafide", "realimage", "realface", "realvideo", "notai",
})
_VALUES = ("real", "fake", "ignore")


class HubError(ValueError):
    """A hub model cannot be used; the message is one line and names the model (and what to do)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def is_hub_spec(spec: str | None) -> bool:
    return bool(spec) and str(spec).startswith(HF_PREFIX)


def _source(spec: str) -> str:
    if not is_hub_spec(spec):
        raise HubError(f"{spec!r}: a hub model is given as hf:<hub id> or hf:<local folder>")
    src = spec[len(HF_PREFIX):].strip()
    if not src:
        raise HubError(f"{spec!r}: empty hub id or folder after 'hf:'")
    return src


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


# ---------------------------------------------------------------------------------------- labels
def parse_label_map(value: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"LABEL_0=real,LABEL_1=fake"`` (or a mapping, as in detector.json) -> ``{label: real|fake|ignore}``.

    Raises:
        HubError: an entry is not ``label=real|fake|ignore``.
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        pairs = []
        for part in (p.strip() for p in str(value).split(",")):
            if not part:
                continue
            key, sep, val = part.rpartition("=")
            if not sep or not key.strip():
                raise HubError(f"--label-map: {part!r} is not LABEL=real|fake|ignore")
            pairs.append((key.strip(), val))
    out = {}
    for key, val in pairs:
        v = val.strip().lower()
        if v not in _VALUES:
            raise HubError(f"--label-map: {key}={val} maps to {val!r}; use real, fake or ignore")
        out[key] = v
    return out


@dataclass(frozen=True)
class LabelMapping:
    """Which of a model's output classes are fake, which real (indices into its logits).

    Attributes:
        labels: the class names, by index.
        fake: indices of the fake classes; real: of the real ones; ignored: left out of both.
    """

    labels: tuple[str, ...]
    fake: tuple[int, ...]
    real: tuple[int, ...]
    ignored: tuple[int, ...] = ()

    def fake_logits(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` class logits -> ``(B,)`` fake log-odds ``log P(fake labels) - log P(real labels)``."""
        return z[:, list(self.fake)].logsumexp(1) - z[:, list(self.real)].logsumexp(1)

    def two_class(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` -> ``(B, 2)`` ``[real, fake]`` logits whose softmax is the mapped P(real), P(fake)."""
        import torch

        return torch.stack([z[:, list(self.real)].logsumexp(1), z[:, list(self.fake)].logsumexp(1)], 1)

    def describe(self) -> str:
        side = lambda idx: "+".join(self.labels[i] for i in idx)  # noqa: E731
        return f"fake = {side(self.fake)}, real = {side(self.real)}" + (
            f", ignored = {side(self.ignored)}" if self.ignored else "")


def map_labels(id2label: Mapping[Any, str], overrides: Mapping[str, str] | None = None,
               source: str = "model") -> LabelMapping:
    """Map a model's ``id2label`` to real/fake: ``overrides`` first (by label name, case-insensitive, or
    by index), then :data:`FAKE_NAMES`/:data:`REAL_NAMES`.

    Raises:
        HubError: a label maps to nothing, or no label is fake or none real; the message names the labels
            and shows the ``--label-map`` that would fix it.
    """
    labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
    over = {str(k).lower(): v for k, v in (overrides or {}).items()}
    side: dict[int, str | None] = {}
    for i, name in enumerate(labels):
        v = over.get(name.lower(), over.get(str(i)))
        if v is None:
            n = _normalise(name)
            v = "fake" if n in FAKE_NAMES else "real" if n in REAL_NAMES else None
        side[i] = v
    unmapped = [labels[i] for i, v in side.items() if v is None]
    fake = tuple(i for i, v in side.items() if v == "fake")
    real = tuple(i for i, v in side.items() if v == "real")
    if unmapped or not fake or not real:
        why = (f"cannot map label(s) {unmapped} to real/fake" if unmapped
               else "no label maps to fake" if not fake else "no label maps to real")
        example = ",".join(f"{n}={'real' if k == 0 else 'fake'}" for k, n in enumerate(labels[:2]))
        raise HubError(f"{source}: {why} (its labels: {list(labels)}); say which is which with "
                       f'--label-map "{example}" (real, fake or ignore)')
    return LabelMapping(labels, fake, real, tuple(i for i, v in side.items() if v == "ignore"))


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class HubConfig:
    """A hub model's typed config: what its branch and a training recipe need, read from its
    ``config.json`` and ``preprocessor_config.json`` (no weights loaded).

    Attributes:
        name: ``hf:<id or folder>`` as the user gave it (the model name in results).
        source: the id or folder.
        task: ``"image"`` or ``"video"``.
        input_size: ``(3, H, W)`` after preparation.
        resize: ``(H, W)`` exact resize (stretch), or ``None``.
        shortest_edge: resize the short side to this (aspect kept), or ``None``.
        crop: ``(H, W)`` centre crop after resizing, or ``None``.
        mean, std: normalisation of ``[0, 1]`` pixels.
        resample: PIL resampling filter the processor names (2 bilinear, 3 bicubic).
        num_frames: frames per model input (1 for images).
        labels: the real/fake label mapping.
        model_type: transformers ``model_type`` (``vit``, ``videomae``...).
    """

    name: str
    source: str
    task: Literal["image", "video"]
    input_size: tuple[int, int, int]
    resize: tuple[int, int] | None
    shortest_edge: int | None
    crop: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int
    num_frames: int
    labels: LabelMapping
    model_type: str = ""
    layout: None = None

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.labels.labels


def _field(size: Any, key: str) -> int | None:
    if size is None:
        return None
    v = size.get(key) if isinstance(size, Mapping) else getattr(size, key, None)
    return int(v) if v else None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _unavailable(spec: str, src: str, e: Exception) -> HubError:
    if Path(src).expanduser().is_dir():
        return HubError(f"{spec}: folder cannot be loaded as a transformers model: {e}")
    if _offline():
        return HubError(f"{spec}: not a local folder and not in the local Hugging Face cache; nothing is "
                        "downloaded while HF_HUB_OFFLINE=1 (run vidfake with --online, or give a local folder)")
    return HubError(f"{spec}: not a local folder, and it cannot be fetched from the Hugging Face hub: {e}")


def load_hub_config(spec: str, task: Literal["image", "video"],
                    label_map: str | Mapping[str, str] | None = None) -> HubConfig:
    """Read a hub model's config and image processor (no weights) and map its labels.

    Raises:
        HubError: not ``hf:...``, not available offline, not an image/video classifier, labels unmapped.
    """
    src = _source(spec)
    try:
        from transformers import AutoConfig, AutoImageProcessor
        from transformers.models.auto import modeling_auto
    except ImportError as e:
        raise HubError(f"{spec}: hub models need the transformers package (pip install transformers)") from e
    local = Path(src).expanduser()
    where = str(local) if local.is_dir() else src
    try:
        hf = AutoConfig.from_pretrained(where)
    except (OSError, ValueError) as e:  # OSError: not cached / no config.json; ValueError: bad repo id
        raise _unavailable(spec, src, e) from e
    table = (modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES if task == "image"
             else modeling_auto.MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES)
    if hf.model_type not in table:
        raise HubError(f"{spec}: model_type {hf.model_type!r} is not a transformers {task}-classification "
                       f"architecture (--{task}-model takes e.g. {', '.join(sorted(table)[:4])})")
    try:
        proc = AutoImageProcessor.from_pretrained(where)
    except (OSError, ValueError) as e:
        raise HubError(f"{spec}: no usable image processor (preprocessor_config.json): {e}") from e
    labels = map_labels(hf.id2label, parse_label_map(label_map), spec)
    return _config_from(spec, src, task, hf, proc, labels)


def _config_from(spec, src, task, hf, proc, labels: LabelMapping) -> HubConfig:
    size = getattr(proc, "size", None)
    h, w, short = _field(size, "height"), _field(size, "width"), _field(size, "shortest_edge")
    do_resize = getattr(proc, "do_resize", True) is not False
    resize = (h, w) if do_resize and h and w else None
    short = short if do_resize and not resize else None
    crop_size = getattr(proc, "crop_size", None)
    do_crop = bool(getattr(proc, "do_center_crop", False)) and crop_size is not None
    crop = (_field(crop_size, "height"), _field(crop_size, "width")) if do_crop else None
    if resize is None and short is None and crop is None:
        raise HubError(f"{spec}: its image processor sets no size (size or crop_size) to prepare inputs at")
    out_h, out_w = crop or resize or (short, short)
    if getattr(proc, "do_normalize", True) is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        mean = tuple(float(v) for v in proc.image_mean)
        std = tuple(float(v) for v in proc.image_std)
    rescale = float(getattr(proc, "rescale_factor", 1 / 255)) if getattr(proc, "do_rescale", True) else 1.0
    if abs(rescale - 1 / 255) > 1e-9:
        raise HubError(f"{spec}: image processor rescales pixels by {rescale:g}, not 1/255 (unsupported)")
    try:
        resample = int(getattr(proc, "resample", 2))
    except (TypeError, ValueError):
        resample = 2
    frames = int(getattr(hf, "num_frames", 1) or 1) if task == "video" else 1
    return HubConfig(spec, src, task, (3, out_h, out_w), resize, short, crop, mean, std, resample, frames,
                     labels, model_type=hf.model_type)


def prepare_frame(image: np.ndarray, cfg: HubConfig) -> np.ndarray:
    """``(H, W, 3) uint8`` -> ``(h, w, 3) uint8`` as the model's processor resizes and crops it."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image))
    if cfg.resize is not None:
        im = im.resize((cfg.resize[1], cfg.resize[0]), cfg.resample)
    elif cfg.shortest_edge is not None:
        w, h = im.size
        s = cfg.shortest_edge
        new = (s, max(1, int(s * h / w))) if w <= h else (max(1, int(s * w / h)), s)
        im = im.resize(new, cfg.resample)
    if cfg.crop is not None:
        ch, cw = cfg.crop
        w, h = im.size
        if w < cw or h < ch:  # the processor pads a too-small image; resize up instead of padding
            im = im.resize((max(w, cw), max(h, ch)), cfg.resample)
            w, h = im.size
        top, left = (h - ch) // 2, (w - cw) // 2
        im = im.crop((left, top, left + cw, top + ch))
    return np.array(im.convert("RGB"))  # writable: torch.from_numpy warns on read-only arrays


# ---------------------------------------------------------------------------------------- models
def load_hub_model(cfg: HubConfig, device: Any = "cpu") -> tuple[torch.nn.Module, str]:
    """The classifier (eval mode, on ``device``) and its weights identity (sha256 prefix of a local
    folder's weights file, or the hub commit).

    Raises:
        HubError: the weights cannot be loaded (one line, naming the model).
    """
    from transformers import AutoModelForImageClassification, AutoModelForVideoClassification
    from transformers.utils import logging as hf_logging

    auto = AutoModelForImageClassification if cfg.task == "image" else AutoModelForVideoClassification
    local = Path(cfg.source).expanduser()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per replica would flood the CLI's stderr
    try:
        model = auto.from_pretrained(str(local) if local.is_dir() else cfg.source)
    except (OSError, ValueError) as e:
        raise _unavailable(cfg.name, cfg.source, e) from e
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    model.eval().to(device)
    return model, _identity(local, model)


def _identity(local: Path, model) -> str:
    if local.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (local / name).is_file():
                h = hashlib.sha256()
                with open(local / name, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                return h.hexdigest()[:16]
        return "local"
    commit = getattr(model.config, "_commit_hash", None)
    return f"commit:{commit[:16]}" if commit else "hub"


def two_class_module(model: torch.nn.Module, labels: LabelMapping) -> torch.nn.Module:
    """Wrap a hub classifier as a module returning ``(B, 2)`` ``[real, fake]`` logits (what the training
    engine expects); the wrapped model stays at ``.model`` (``save_pretrained`` it after training)."""
    import torch

    class TwoClass(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return labels.two_class(self.model(pixel_values=x).logits)

    return TwoClass()


# ---------------------------------------------------------------------------------------- branches
@dataclass(frozen=True, eq=False)
class HubFrames:
    """One hub-model input: ``frames`` ``(T, h, w, 3) uint8`` prepared from stream ``indices``."""

    indices: tuple[int, ...]
    frames: np.ndarray


class _HubBranch(Branch):
    """What both hub branches share: the label mapping, whole-frame preparation, ``pixel_values``."""

    config: HubConfig
    #: Which built-in count sets how many spans this branch plans (the detector's ``_plans``).
    count_key: ClassVar[str] = "one"

    @property
    def crop_scale(self) -> float:
        """The detector's face-crop scale: read only by training datasets that cut faces out of cached
        video crops (the branch itself scores whole frames)."""
        from vidfake.temporal_models.config import FACE_CROP_SCALE  # torch comes with the package

        return FACE_CROP_SCALE

    def prepare_image(self, image: np.ndarray) -> np.ndarray:
        return prepare_frame(image, self.config)

    def fake_logits(self, x: torch.Tensor) -> np.ndarray:
        import torch

        if self.model is None:
            raise RuntimeError(f"{self.name} branch of {self.model_name!r} has no model loaded")
        with torch.inference_mode():
            return self.config.labels.fake_logits(self.model(pixel_values=x).logits.float()).cpu().numpy()

    def prepare(self, ctx: VideoContext, spans: Sequence[ClipSpan]) -> list[HubFrames]:
        """Whole frames (hub detectors see whole images), prepared as the model's processor does."""
        return [HubFrames(tuple(int(i) for i in s.indices),
                          np.stack([self.prepare_image(ctx.frame(i)) for i in s.indices])) for s in spans]

    def score(self, ctx: VideoContext, inputs: Sequence[HubFrames]) -> BranchOutput:
        """Per-input scores as clips of this branch (the timeline draws them), mean log-odds over them.

        The model saw whole frames, so its score holds for every person in them: it is given to each
        face track (the detector fuses per person). No typed intermediates are kept for the
        visualisations (their heatmaps are for the built-in models).
        """
        z = self.fake_logits(self.batch(inputs))
        clips = tuple(ClipScore(self.name, a := inp.indices[0], b := inp.indices[-1], ctx.time(a),
                                ctx.time(b, end=True), sigmoid(float(zi)), 0)
                      for inp, zi in zip(inputs, z.tolist(), strict=True))
        mean = float(np.mean(z))
        return BranchOutput({tid: mean for tid, _ in ctx.iter_tracks()}, clips=clips)


class HubImageBranch(_HubBranch):
    """``hf_image``: a hub image classifier on the still image, or on the 2D detector's frames of a video."""

    name = "hf_image"
    count_key = "image2d"  # the same frames as the 2D detector: nothing more to decode

    def plan(self, num_frames: int, count: int) -> BranchPlan:
        from vidfake.preprocessing.samplers import ClipSpan, even_frames

        return BranchPlan(tuple(ClipSpan((i,)) for i in even_frames(num_frames, min(count, num_frames))))

    def batch(self, inputs: Sequence[HubFrames] | np.ndarray) -> torch.Tensor:
        frames = inputs if isinstance(inputs, np.ndarray) else np.concatenate([i.frames for i in inputs])
        return self.to_tensor(frames)

    def image_logits(self, images: Sequence[np.ndarray], already_sized: bool = False) -> np.ndarray:
        """Fake log-odds for ``(H, W, 3) uint8`` still images."""
        if not already_sized:
            images = [self.prepare_image(im) for im in images]
        return self.fake_logits(self.to_tensor(np.stack(images)))


class HubVideoBranch(_HubBranch):
    """``hf_video``: a hub video classifier on ``num_frames`` evenly spread whole frames (one clip)."""

    name = "hf_video"

    def plan(self, num_frames: int, count: int) -> BranchPlan:
        from vidfake.preprocessing.samplers import ClipSpan

        t = self.frames_per_sample
        if num_frames < 1 or count < 1:
            return BranchPlan(())
        # Segment k of `count` gets t frames, each at the centre of its t-th of the segment (one segment:
        # the whole clip); a clip shorter than t frames repeats frames rather than skipping the branch.
        edges = np.linspace(0, num_frames, count + 1)
        spans = tuple(
            ClipSpan(tuple(int(i) for i in np.floor(a + (np.arange(t) + 0.5) * (b - a) / t)), num_frames < t)
            for a, b in zip(edges[:-1], edges[1:], strict=True))
        warning = (f"{self.name}: {num_frames} frames, fewer than the model's {t}; frames repeated"
                   if num_frames < t else None)
        return BranchPlan(spans, warning)

    def batch(self, inputs: Sequence[HubFrames]) -> torch.Tensor:
        """``(B, T, 3, h, w) float32`` normalised, the layout transformers' video classifiers take."""
        b, t = len(inputs), self.frames_per_sample
        x = self.to_tensor(np.concatenate([i.frames for i in inputs]))
        return x.contiguous().view(b, t, *x.shape[1:])


_HUB_TYPES: dict[str, type[_HubBranch]] = {"image": HubImageBranch, "video": HubVideoBranch}


def make_hub_branch(cfg: HubConfig, device: Any = "cpu", loader=None) -> _HubBranch:
    """The hub branch for ``cfg`` (its network built by ``loader`` on first use)."""
    return _HUB_TYPES[cfg.task](cfg, None, device, loader)  # type: ignore[arg-type]
