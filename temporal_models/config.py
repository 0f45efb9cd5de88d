"""The typed configuration every vidfake model carries (``model.pretrained_cfg`` / ``model.vidfake_config``).

One frozen :class:`ModelConfig` per registered variant says what the network eats (input kind, size,
frames, layout, region of interest, normalisation), what it answers (class count and label names) and
where its weights come from (shipped file, sha256, provenance, licence). Preprocessing derives its
transforms from it; nothing about a model's input is repeated in YAML.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

Family = Literal["tall_swin", "lip", "image2d"]
InputKind = Literal["tall_layout", "mouth_sequence", "image"]
Roi = Literal["face", "mouth", "face_or_full"]

FAMILIES: tuple[str, ...] = ("tall_swin", "lip", "image2d")
INPUT_KINDS: tuple[str, ...] = ("tall_layout", "mouth_sequence", "image")
ROIS: tuple[str, ...] = ("face", "mouth", "face_or_full")
LAYOUTS: tuple[str | None, ...] = ("2x2", None)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# EfficientNet-Lite (TF) inputs are (x - 127) / 128 on [0, 255]; timm rounds this to 0.5 / 0.5 on [0, 1].
INCEPTION_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
INCEPTION_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
# LipForensics normalises grey mouth crops in [0, 1] with these (its data/transforms.py).
LIP_MEAN: tuple[float] = (0.421,)
LIP_STD: tuple[float] = (0.165,)
#: Face crops are the face box's square enlarged this many times (TALL, Xu et al. ICCV 2023, and the 2D
#: detector): enough context for blending boundaries, little background. The one place this number lives:
#: preprocessing, training, visualisation and export read it from ``ModelConfig.crop_scale``.
FACE_CROP_SCALE: float = 1.3


@dataclass(frozen=True)
class ModelConfig:
    """What a registered model eats, answers and was trained from.

    Attributes:
        name: registered variant name (``create_model(name)``).
        family: ``"tall_swin"``, ``"lip"`` or ``"image2d"``.
        input_kind: ``"tall_layout"`` (one ``(3, H, W)`` image holding a 2x2 grid of consecutive face
            crops), ``"mouth_sequence"`` (``(1, T, H, W)`` grey mouth crops) or ``"image"``.
        input_size: ``(C, H, W)`` of one network input (for TALL the whole layout, for lip one frame).
        num_frames: frames per input: 4 for TALL, 25 for lip, 1 for images.
        layout: ``"2x2"`` for TALL thumbnail layouts (row-major: frame 0 top-left, 1 top-right,
            2 bottom-left, 3 bottom-right), otherwise ``None``.
        roi: the crop the input is cut from: ``"face"`` (square face box enlarged ``crop_scale`` times),
            ``"mouth"`` (LipForensics-aligned mouth crop, grey), ``"face_or_full"`` (face crop when a face
            is found, else the whole frame).
        crop_scale: enlargement of the face box for ``"face"``/``"face_or_full"`` crops
            (:data:`FACE_CROP_SCALE`); unused for mouth crops, whose alignment fixes their own scale.
        mean: per-channel mean subtracted from inputs scaled to [0, 1].
        std: per-channel std the centred inputs are divided by.
        num_classes: number of logits (2).
        label_names: name of each logit, in order (``("real", "fake")``).
        weights_file: file name of the shipped weights inside ``vidfake.temporal_models.pretrained``,
            or ``None`` when none is planned (test variants).
        weights_sha256: hex sha256 of the shipped file, verified on load; ``None`` until weights ship.
        weights_source: where the weights come from or how to make them, in words.
        licence: licence of the code reference and of any weights, in words.
        paper: citation of the method.
        reference_repo: URL of the reference implementation.
        interpolation: resampling used to bring crops to ``input_size``.
    """

    name: str
    family: Family
    input_kind: InputKind
    input_size: tuple[int, int, int]
    num_frames: int
    layout: str | None
    roi: Roi
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int = 2
    label_names: tuple[str, ...] = ("real", "fake")
    weights_file: str | None = None
    weights_sha256: str | None = None
    weights_source: str = ""
    licence: str = ""
    paper: str = ""
    reference_repo: str = ""
    interpolation: str = "bilinear"
    crop_scale: float = FACE_CROP_SCALE

    def __post_init__(self) -> None:
        problems = []
        if self.family not in FAMILIES:
            problems.append(f"family {self.family!r} not in {FAMILIES}")
        if self.input_kind not in INPUT_KINDS:
            problems.append(f"input_kind {self.input_kind!r} not in {INPUT_KINDS}")
        if self.roi not in ROIS:
            problems.append(f"roi {self.roi!r} not in {ROIS}")
        if self.layout not in LAYOUTS:
            problems.append(f"layout {self.layout!r} not in {LAYOUTS}")
        if len(self.input_size) != 3 or any(int(v) <= 0 for v in self.input_size):
            problems.append(f"input_size {self.input_size!r} is not a positive (C, H, W)")
        elif not len(self.mean) == len(self.std) == self.input_size[0]:
            problems.append(
                f"mean/std lengths {len(self.mean)}/{len(self.std)} != {self.input_size[0]} channels"
            )
        if any(not math.isfinite(s) or s <= 0 for s in self.std):
            problems.append(f"std {self.std!r} must be finite and positive")
        if not math.isfinite(self.crop_scale) or self.crop_scale < 1.0:
            problems.append(f"crop_scale {self.crop_scale!r} must be a finite number >= 1")
        if self.num_frames < 1:
            problems.append(f"num_frames {self.num_frames} < 1")
        if len(self.label_names) != self.num_classes:
            problems.append(f"{len(self.label_names)} label names for {self.num_classes} classes")
        if (self.layout == "2x2") != (self.input_kind == "tall_layout"):
            problems.append("layout '2x2' goes with input_kind 'tall_layout' and only with it")
        if self.weights_sha256 is not None and (
            len(self.weights_sha256) != 64 or any(c not in "0123456789abcdef" for c in self.weights_sha256)
        ):
            problems.append("weights_sha256 must be 64 lower-case hex digits")
        if problems:
            raise ValueError(f"invalid ModelConfig {self.name!r}: " + "; ".join(problems))

    @property
    def fake_index(self) -> int:
        """Index of the ``"fake"`` logit; ``softmax(logits)[:, fake_index]`` is the probability of fake."""
        return self.label_names.index("fake")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable; tuples become lists when dumped)."""
        return asdict(self)
