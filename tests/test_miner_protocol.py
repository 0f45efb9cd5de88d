"""The subnet's wire classes and the answer vector: compatibility with the validators, validity rules."""

from __future__ import annotations

import base64
import io
import json
import math
import zlib

import bittensor as bt
import numpy as np
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from vidfake.miner.protocol import (
    CHALLENGE_SIZE,
    NO_ANSWER,
    ImageSynapse,
    VideoSynapse,
    deserialize_prediction,
    image_challenge,
    is_valid_prediction,
    video_challenge,
    wire_prediction,
)


# The validators' classes as published in BitMind-AI/bitmind-subnet ``bitmind/protocol.py`` (field names,
# types, defaults), restated here as the reference the miner must stay compatible with.
class ValidatorImageSynapse(bt.Synapse):
    testnet_label: int = -1
    image: str = pydantic.Field(default="", frozen=False)
    prediction: float | list[float] = pydantic.Field(default=[-1.0, -1.0, -1.0], frozen=False)


class ValidatorVideoSynapse(bt.Synapse):
    testnet_label: int = -1
    video: str = pydantic.Field(default="", frozen=False)
    prediction: float | list[float] = pydantic.Field(default=[-1.0, -1.0, -1.0], frozen=False)


PAIRS = [(ImageSynapse, ValidatorImageSynapse, "image"), (VideoSynapse, ValidatorVideoSynapse, "video")]


# --------------------------------------------------------------------------- compatibility
@pytest.mark.parametrize("ours, theirs, field", PAIRS)
def test_fields_and_defaults_match_the_validators(ours, theirs, field):
    mine, ref = ours(), theirs()
    assert set(ours.model_fields) == set(theirs.model_fields)
    assert getattr(mine, field) == "" and mine.testnet_label == -1
    assert mine.prediction == [-1.0, -1.0, -1.0] == ref.prediction
    assert ours.required_hash_fields == theirs.required_hash_fields == ()


def test_routes_are_the_validators_class_names():
    # The axon routes by class name and the dendrite posts to /<ClassName>.
    assert ImageSynapse.__name__ == "ImageSynapse" and VideoSynapse.__name__ == "VideoSynapse"


@pytest.mark.parametrize("ours, theirs, field", PAIRS)
def test_request_and_response_survive_the_wire_both_ways(ours, theirs, field):
    # Validator -> miner: the axon rebuilds the body with our class; the body hash must agree.
    sent = theirs(**{field: "QUJD", "testnet_label": 1})
    received = ours(**json.loads(json.dumps(sent.model_dump())))
    assert getattr(received, field) == "QUJD" and received.testnet_label == 1
    assert received.body_hash == sent.body_hash
    # Miner -> validator: the dendrite rebuilds the response with the validators' class.
    received.prediction = wire_prediction([0.1, 0.7, 0.2])
    setattr(received, field, "")
    back = theirs(**json.loads(json.dumps(received.model_dump())))
    assert back.prediction == pytest.approx([0.1, 0.7, 0.2])
    assert all(type(v) is float for v in back.prediction)


def test_integer_json_answers_parse_as_floats():
    syn = ImageSynapse(**json.loads('{"prediction": [0, 1, 0]}'))
    assert syn.prediction == [0.0, 1.0, 0.0]
    assert syn.deserialize().dtype == np.float64


# --------------------------------------------------------------------------- deserialize / validity
def test_deserialize_reads_the_old_binary_float_like_validators():
    assert deserialize_prediction(0.8).tolist() == pytest.approx([0.2, 0.8, 0.0])
    assert deserialize_prediction(-1.0).tolist() == list(NO_ANSWER)
    assert ImageSynapse(prediction=0.25).deserialize().tolist() == pytest.approx([0.75, 0.25, 0.0])
    assert VideoSynapse().deserialize().tolist() == [-1.0, -1.0, -1.0]
    with pytest.raises(ValueError, match="unsupported prediction type"):
        deserialize_prediction("0.5")


@pytest.mark.parametrize(
    "answer, valid",
    [
        ([0.5, 0.5, 0.0], True),
        ([1.0, 0.0, 0.0], True),
        ([0.2, 0.3, 0.5 + 5e-7], True),  # inside the validators' 1e-6
        ([0.2, 0.3, 0.5 + 2e-6], False),  # outside it
        ([1.2, -0.2, 0.0], False),  # sums to 1 but out of range
        ([0.5, 0.5], False),
        ([0.25, 0.25, 0.25, 0.25], False),
        ([math.nan, 0.5, 0.5], False),
        (list(NO_ANSWER), False),
        (0.7, True),  # old binary answer: [0.3, 0.7, 0]
        (-1.0, False),
        ("abc", False),
        (None, False),
    ],
)
def test_validity_matches_the_validators_rule(answer, valid):
    assert is_valid_prediction(answer) is valid


@given(
    st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=3, max_size=3).filter(
        lambda v: sum(v) > 1e-300
    )
)
def test_wire_prediction_is_always_valid_and_keeps_the_decision(values):
    out = wire_prediction(values)
    assert is_valid_prediction(out)
    assert all(type(v) is float for v in out)
    assert abs(math.fsum(out) - 1.0) < 1e-12
    # Normalising never changes which class wins (ties aside).
    top = max(values)
    assert values[int(np.argmax(out))] == pytest.approx(top, rel=1e-9)


def test_wire_prediction_clips_and_renormalises_in_float64():
    assert wire_prediction(np.array([0.6, 0.3, 0.1], dtype=np.float32)) == pytest.approx(
        [0.6, 0.3, 0.1], abs=1e-7
    )
    assert wire_prediction([2.0, -1.0, 0.0]) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "bad", [[math.nan, 0.5, 0.5], [math.inf, 0, 0], [0.0, 0.0, 0.0], [0.5, 0.5], [-1, -1, -1]]
)
def test_wire_prediction_refuses_to_invent_an_answer(bad):
    with pytest.raises(ValueError):
        wire_prediction(bad)


# ------------------------------------------------------------------ challenges as validators build them
def _photo(h=300, w=420, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (h + w) * 255], -1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _q75_tables():
    buf = io.BytesIO()
    Image.fromarray(_photo(64, 64)).save(buf, format="JPEG", quality=75)
    return Image.open(io.BytesIO(buf.getvalue())).quantization


def test_image_challenge_is_a_256px_jpeg_at_quality_75():
    syn = image_challenge(_photo())
    raw = base64.b64decode(syn.image, validate=True)  # standard base64, no newlines
    img = Image.open(io.BytesIO(raw))
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (CHALLENGE_SIZE, CHALLENGE_SIZE)
    assert img.quantization == _q75_tables()
    assert syn.prediction == [-1.0, -1.0, -1.0] and syn.testnet_label == -1


def _validator_split(video_field: str) -> list[bytes]:
    """The validators' reading: base85 -> zlib -> JPEGs delimited by FF D8 ... FF D9."""
    blob = zlib.decompress(base64.b85decode(video_field.encode()))
    frames, pos = [], 0
    while (start := blob.find(b"\xff\xd8", pos)) >= 0 and (end := blob.find(b"\xff\xd9", start)) >= 0:
        frames.append(blob[start : end + 2])
        pos = end + 2
    return frames


def test_video_challenge_is_b85_zlib_of_256px_q75_jpeg_frames():
    frames = np.stack([np.roll(_photo(240, 320), 4 * t, axis=1) for t in range(9)])
    syn = video_challenge(frames)
    jpegs = _validator_split(syn.video)
    assert len(jpegs) == 9
    for j in jpegs:
        img = Image.open(io.BytesIO(j))
        assert img.size == (CHALLENGE_SIZE, CHALLENGE_SIZE) and img.mode == "RGB"
        assert img.quantization == _q75_tables()


def test_video_challenge_rejects_non_video_arrays():
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        video_challenge(_photo())
