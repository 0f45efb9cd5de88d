"""The one result type every caller of :meth:`vidfake.Detector.detect` gets back.

Frozen dataclasses, serialised with :func:`dataclasses.asdict`; the CLI prints them, the miner turns
``three_class`` into its answer, the visualisations draw ``frames``/``clips``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

LABELS_3 = ("real", "synthetic", "semi-synthetic")


@dataclass(frozen=True)
class BranchScore:
    """One branch's contribution.

    Attributes:
        name: ``"image2d"``, ``"tall"`` or ``"lip"``; ``"hf_image"``/``"hf_video"`` for Hugging Face
            models added as branches (``vidfake.hub``).
        probability: the branch's probability of fake in [0, 1], or ``None`` when it did not run.
        status: ``"ok"``, or why it did not run (``"skipped: no face tracked"``, ``"failed: ..."``).
        model: registered model name that produced it.
        weight: weight the fusion gave it (0 when it did not run): its logistic coefficient, or for a
            branch without a fitted one (a hub branch) its share of the probability mean (``warnings`` says so).
    """

    name: str
    probability: float | None
    status: str = "ok"
    model: str = ""
    weight: float = 0.0


@dataclass(frozen=True)
class ClipScore:
    """A score for a span of frames (a TALL clip of 4 frames or a 25-frame lip window).

    ``start_frame``/``end_frame`` are inclusive indices into the decoded stream; times in seconds.
    """

    branch: str
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    probability: float
    track: int = 0


@dataclass(frozen=True)
class FrameScore:
    """Per-frame score of the 2D detector (on the face crop, or the whole frame if no face)."""

    frame_index: int
    time: float
    probability: float
    face_found: bool
    track: int = 0


@dataclass(frozen=True)
class DetectionResult:
    """What vidfake concludes about one image or video.

    Attributes:
        source: printable name of the input.
        kind: ``"image"`` or ``"video"``.
        probability_fake: fused probability that the media is fake, in [0, 1].
        threshold: decision threshold used for ``verdict``.
        verdict: ``"fake"`` if ``probability_fake >= threshold`` else ``"real"``.
        three_class: ``(real, synthetic, semi-synthetic)`` probabilities summing to 1, as the subnet expects.
        branches: per-branch scores, including branches that did not run and why.
        clips: per-clip scores (TALL clips, lip windows) for the timeline.
        frames: per-frame 2D scores for the timeline.
        faces_found: number of face tracks found (0 for no face; images count faces too).
        frames_used: distinct frames the models looked at.
        num_frames: frames in the stream (1 for images).
        fps: frames per second when known.
        width, height: decoded frame size (after rotation).
        mouth_roi_native_px: median mouth width in source pixels (the lip crop's native scale).
        timings_ms: wall time per stage.
        models: registered model name -> weights identity (sha256 prefix or ``"random-init"``).
        warnings: anything a user should know (fallbacks taken, frames that failed to decode).
    """

    source: str
    kind: Literal["image", "video"]
    probability_fake: float
    threshold: float
    verdict: Literal["real", "fake"]
    three_class: tuple[float, float, float]
    branches: tuple[BranchScore, ...] = ()
    clips: tuple[ClipScore, ...] = ()
    frames: tuple[FrameScore, ...] = ()
    faces_found: int = 0
    frames_used: int = 0
    num_frames: int = 1
    fps: float | None = None
    width: int = 0
    height: int = 0
    mouth_roi_native_px: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def branch(self, name: str) -> BranchScore | None:
        return next((b for b in self.branches if b.name == name), None)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def valid_three_class(vec) -> bool:
    """True when ``vec`` is what validators accept: 3 finite floats in [0, 1] summing to 1 within 1e-6."""
    try:
        values = [float(v) for v in vec]
    except (TypeError, ValueError):
        return False
    return (
        len(values) == 3
        and all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
        and abs(sum(values) - 1.0) <= 1e-6
    )


def three_class_vector(p_fake: float, semi_share: float) -> tuple[float, float, float]:
    """Split a probability of fake into ``(real, synthetic, semi-synthetic)``, renormalised in float64.

    Args:
        p_fake: probability of fake; NaN is an error, not a silent 0.5.
        semi_share: fraction of the fake mass that is semi-synthetic (partial manipulation, e.g. a face
            swap) rather than fully generated.
    """
    if not (math.isfinite(p_fake) and math.isfinite(semi_share)):
        raise ValueError(f"non-finite probability: p_fake={p_fake}, semi_share={semi_share}")
    p = min(max(float(p_fake), 0.0), 1.0)
    s = min(max(float(semi_share), 0.0), 1.0)
    vec = [1.0 - p, p * (1.0 - s), p * s]
    total = math.fsum(vec)
    vec = [v / total for v in vec]
    # One more pass so the float sum lands within 1e-12 of 1 after division rounding.
    vec[0] = max(0.0, 1.0 - math.fsum(vec[1:]))
    return (vec[0], vec[1], vec[2])
