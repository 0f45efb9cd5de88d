"""Wire classes of the BitMind deepfake-detection subnet, and the answer a miner puts in them.

The two synapses match the validators' classes (BitMind-AI/bitmind-subnet, ``bitmind/protocol.py``) field
for field: the axon routes a request by the class *name* (``/ImageSynapse``, ``/VideoSynapse``) and
rebuilds the body with these fields, so a renamed field or class is a miner that never answers.

- ``ImageSynapse.image``: standard base64 of one JPEG (validators send 256x256 RGB, quality 75).
- ``VideoSynapse.video``: ``base64.b85encode(zlib.compress(b"".join(jpeg_frames)))`` (256x256, quality
  75, 8 to about 137 frames; no fps or frame count is sent, frames are found by the JPEG markers).
- ``prediction``: ``[real, synthetic, semi-synthetic]``, three floats in [0, 1] summing to 1 within 1e-6.
  The default ``[-1, -1, -1]`` means "no answer"; a bare float ``p`` is the old binary form and reads as
  ``[1 - p, p, 0]``. Validators score any other vector as zero.

This module is also the validator's side for local testing: :func:`image_challenge` and
:func:`video_challenge` build requests the way validators build them.
"""

import math
from collections.abc import Sequence

import bittensor as bt
import numpy as np
import pydantic

LABELS = ("real", "synthetic", "semi-synthetic")
NO_ANSWER = (-1.0, -1.0, -1.0)
#: What validators send: square frames of this side, JPEG at this quality.
CHALLENGE_SIZE = 256
CHALLENGE_QUALITY = 75
#: Tolerance of the validators' validity check on ``sum(prediction)``.
SUM_TOLERANCE = 1e-6


def deserialize_prediction(prediction: float | Sequence[float]) -> np.ndarray:
    """The validators' reading of a ``prediction`` field, as a ``(3,) float64`` vector.

    A bare float ``p`` is the subnet's older binary answer and reads as ``[1 - p, p, 0]`` (``-1`` reads
    as no answer, ``[-1, -1, -1]``); a list is taken as it is, whatever its length, so that
    :func:`is_valid_prediction` can reject it the way validators do.

    Raises:
        ValueError: ``prediction`` is neither a number nor a sequence.
    """
    if isinstance(prediction, bool):
        raise ValueError(f"unsupported prediction type: {type(prediction).__name__}")
    if isinstance(prediction, int | float):
        p = float(prediction)
        return np.array(NO_ANSWER if p == -1 else (1.0 - p, p, 0.0), dtype=np.float64)
    if isinstance(prediction, Sequence | np.ndarray) and not isinstance(prediction, str | bytes):
        return np.asarray(prediction, dtype=np.float64)
    raise ValueError(f"unsupported prediction type: {type(prediction).__name__}")


def is_valid_prediction(prediction: float | Sequence[float]) -> bool:
    """True when validators would score ``prediction``: three finite values in [0, 1] summing to 1."""
    try:
        vec = deserialize_prediction(prediction)
    except (TypeError, ValueError):
        return False
    return (
        vec.shape == (3,)
        and bool(np.all(np.isfinite(vec)))
        and bool(np.all((vec >= 0.0) & (vec <= 1.0)))
        and abs(math.fsum(vec.tolist()) - 1.0) < SUM_TOLERANCE
    )


def wire_prediction(three_class: Sequence[float]) -> list[float]:
    """Turn a detector's ``(real, synthetic, semi-synthetic)`` probabilities into a valid answer.

    Negative values are raised to 0 and the vector is renormalised in float64, so the sum is 1 to
    within float rounding (far inside the validators' 1e-6) and the winning class is kept; the values
    are returned as plain Python floats (numpy scalars do not serialise into the axon's JSON).

    Raises:
        ValueError: not three finite values, or all zero: no answer can be made from it, and
            inventing one would hide the fault.
    """
    values = [float(v) for v in three_class]
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"not three finite class probabilities: {values}")
    values = [max(v, 0.0) for v in values]
    total = math.fsum(values)
    if total <= 0.0:
        raise ValueError(f"class probabilities sum to {total}; cannot normalise {values}")
    values = [v / total for v in values]
    # Put the division's rounding on the largest entry, so the float sum is 1 as nearly as it can be.
    k = max(range(3), key=values.__getitem__)
    values[k] = max(0.0, 1.0 - math.fsum(values[:k] + values[k + 1 :]))
    if not is_valid_prediction(values):  # pragma: no cover - the arithmetic above guarantees it
        raise ValueError(f"renormalised prediction is not valid: {values}")
    return values


class _PredictionSynapse(bt.Synapse):
    """What both challenge types share: the testnet label and the miner's answer.

    Attributes:
        testnet_label: the true label on testnet (``-1`` on mainnet); a miner must not use it.
        prediction: ``[real, synthetic, semi-synthetic]``; ``[-1, -1, -1]`` until the miner answers.
    """

    testnet_label: int = -1

    prediction: float | list[float] = pydantic.Field(
        title="Prediction",
        description="Probability vector for [real, synthetic, semi-synthetic] classes.",
        default=[-1.0, -1.0, -1.0],
        frozen=False,
    )

    def deserialize(self) -> np.ndarray:
        """The prediction as the validators read it: ``(3,) float64`` (see :func:`deserialize_prediction`)."""
        return deserialize_prediction(self.prediction)


class ImageSynapse(_PredictionSynapse):
    """An image challenge and the miner's answer (route ``/ImageSynapse``).

    Attributes:
        image: standard base64 of a JPEG, 256x256 RGB quality 75 from validators. The miner clears it
            before replying, since the axon sends the whole synapse back.
    """

    image: str = pydantic.Field(
        title="Image",
        description="A base64 encoded image",
        default="",
        frozen=False,
    )


class VideoSynapse(_PredictionSynapse):
    """A video challenge and the miner's answer (route ``/VideoSynapse``).

    Attributes:
        video: base85 of zlib-compressed concatenated JPEG frames. Cleared by the miner before replying.
    """

    video: str = pydantic.Field(
        title="Video",
        description="A wildly inefficient means of sending video data",
        default="",
        frozen=False,
    )


def challenge_image(image: np.ndarray, size: int = CHALLENGE_SIZE) -> np.ndarray:
    """Geometry of a validator's image at augmentation level 0: short side to ``size``, centre square.

    Args:
        image: ``(H, W, 3) uint8 [0, 255]`` RGB.

    Returns:
        ``(size, size, 3) uint8``; JPEG compression happens once, when the synapse is encoded.
    """
    from vidfake.preprocessing.transforms import resize_for_model

    return resize_for_model(image, size)


def image_challenge(
    image: np.ndarray,
    *,
    size: int = CHALLENGE_SIZE,
    quality: int = CHALLENGE_QUALITY,
    testnet_label: int = -1,
) -> ImageSynapse:
    """Build an image challenge the way validators do: ``size`` x ``size`` RGB, one JPEG at ``quality``.

    Args:
        image: ``(H, W, 3) uint8 [0, 255]`` RGB, any size.
        testnet_label: label to send (only testnet validators send one).
    """
    from vidfake.preprocessing.wire import encode_image_b64

    payload = encode_image_b64(challenge_image(image, size), fmt="JPEG", quality=quality)
    return ImageSynapse(image=payload, testnet_label=testnet_label)


def video_challenge(
    frames: np.ndarray,
    *,
    size: int = CHALLENGE_SIZE,
    quality: int = CHALLENGE_QUALITY,
    testnet_label: int = -1,
) -> VideoSynapse:
    """Build a video challenge the way validators do: base85(zlib(JPEG frames)), each ``size`` x ``size``.

    Args:
        frames: ``(T, H, W, 3) uint8 [0, 255]`` RGB consecutive frames (validators send 8 to ~137).
        testnet_label: label to send (only testnet validators send one).
    """
    from vidfake.preprocessing.wire import encode_video_b85

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"expected (T, H, W, 3) frames, got shape {frames.shape}")
    square = np.stack([challenge_image(f, size) for f in frames])
    return VideoSynapse(video=encode_video_b85(square, quality=quality), testnet_label=testnet_label)
