"""The validators' augmentations: shapes, per-challenge coherence, level 0 exactness, distortions."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from vidfake.preprocessing.errors import MediaError
from vidfake.training.augment import (
    LEVEL_PROBABILITIES,
    SubnetAugParams,
    apply_subnet_aug,
    sample_subnet_aug,
    sample_subnet_level,
)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A non-square natural image, ``(300, 420, 3) uint8``."""
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut()[100:400, 40:460])


def _jpeg75(a: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=75)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_shapes_for_images_and_clips(photo, level):
    params = sample_subnet_aug(level, np.random.default_rng(level))
    one = apply_subnet_aug(photo, params)
    assert one.shape == (256, 256, 3) and one.dtype == np.uint8
    clip = apply_subnet_aug(np.stack([photo, photo[::-1]]), params)
    assert clip.shape == (2, 256, 256, 3) and clip.dtype == np.uint8
    small = apply_subnet_aug(photo, dataclasses.replace(params, size=64))
    assert small.shape == (64, 64, 3)


def test_level0_is_centre_crop_resize_jpeg(photo):
    out = apply_subnet_aug(photo, sample_subnet_aug(0, np.random.default_rng(0)))
    # 300 x 420: the centred 300 x 300 square starts at column 60
    ref = np.asarray(Image.fromarray(photo[:, 60:360]).resize((256, 256), Image.BILINEAR))
    np.testing.assert_array_equal(out, _jpeg75(ref))


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_one_parameter_set_for_every_frame(photo, level):
    params = sample_subnet_aug(level, np.random.default_rng(10 + level))
    params = dataclasses.replace(params, noise=0)  # colour noise is fresh per frame by design
    out = apply_subnet_aug(np.stack([photo, photo, photo]), params)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[0], apply_subnet_aug(photo, params))


def test_deterministic_given_seed(photo):
    a = sample_subnet_aug(3, np.random.default_rng(5))
    b = sample_subnet_aug(3, np.random.default_rng(5))
    assert a == b
    np.testing.assert_array_equal(apply_subnet_aug(photo, a), apply_subnet_aug(photo, b))
    c = sample_subnet_aug(3, np.random.default_rng(6))
    assert not np.array_equal(apply_subnet_aug(photo, a), apply_subnet_aug(photo, c))


def test_level3_noise_grows_and_is_fresh_per_frame(photo):
    base = SubnetAugParams(level=3, crop_scales=(0.6,), angle=5.0, noise_seed=123)
    clean = apply_subnet_aug(photo, base).astype(np.float64)
    std = [np.std(apply_subnet_aug(photo, dataclasses.replace(base, noise=lv)) - clean) for lv in (1, 2)]
    assert 3.0 < std[0] < std[1]
    clip = apply_subnet_aug(np.stack([photo, photo]), dataclasses.replace(base, noise=1))
    assert not np.array_equal(clip[0], clip[1])
    assert abs(float(np.mean(clip[0].astype(int) - clip[1]))) < 1.0  # zero-mean noise, same content


def test_distortions_do_what_their_names_say(photo):
    base = SubnetAugParams(level=3, crop_scales=(0.6,), angle=0.0)
    clean = apply_subnet_aug(photo, base).astype(np.float64)

    def chroma(a):
        return np.std(a - a.mean(axis=-1, keepdims=True))

    desat = apply_subnet_aug(photo, dataclasses.replace(base, saturation=1)).astype(np.float64)
    assert chroma(desat) < 0.6 * chroma(clean)
    dark = apply_subnet_aug(photo, dataclasses.replace(base, contrast=2)).astype(np.float64)
    assert dark.mean() == pytest.approx(0.725 * clean.mean(), rel=0.03)

    def detail(a):
        return np.abs(np.diff(a.astype(np.float64), axis=1)).mean()

    assert detail(apply_subnet_aug(photo, dataclasses.replace(base, blur=2))) < 0.7 * detail(clean)
    assert detail(apply_subnet_aug(photo, dataclasses.replace(base, rescale=2))) < 0.8 * detail(clean)


def test_level1_without_rotation_or_crop_is_level0(photo):
    # no rotation and a crop that cannot fit (all of a non-square frame) -> the centred largest square
    p = SubnetAugParams(level=1, angle=0.0, crop_scales=(1.0,))
    level1 = apply_subnet_aug(photo, p).astype(int)
    level0 = apply_subnet_aug(photo, SubnetAugParams(level=0)).astype(int)
    assert np.abs(level1 - level0).mean() < 2.0  # torchvision vs PIL bilinear, JPEG


def test_flip_and_rotation_direction():
    img = np.zeros((200, 200, 3), np.uint8)
    img[90:110, 160:190] = 255  # bright block on the right
    p = SubnetAugParams(level=1, angle=0.0, crop_scales=(1.0,))
    flipped = apply_subnet_aug(img, dataclasses.replace(p, hflip=True)).astype(int)
    assert np.abs(flipped - apply_subnet_aug(img, p)[:, ::-1]).mean() < 1.5
    rotated = apply_subnet_aug(img, dataclasses.replace(p, angle=90.0)).mean(axis=-1)
    ys, xs = np.nonzero(rotated > 128)
    assert ys.mean() < 70 and 110 < xs.mean() < 146  # counter-clockwise: the right side goes to the top


def test_sampling_follows_validators():
    rng = np.random.default_rng(0)
    levels = np.array([sample_subnet_level(rng) for _ in range(20000)])
    for level, prob in LEVEL_PROBABILITIES.items():
        assert np.mean(levels == level) == pytest.approx(prob, abs=0.015)
    params = [sample_subnet_aug(3, np.random.default_rng(s)) for s in range(300)]
    assert all(-20 <= p.angle <= 20 and all(0.2 <= c <= 1 for c in p.crop_scales) for p in params)
    assert {p.noise for p in params} == {0, 1, 2} and {p.blur for p in params} == {0, 1, 2}
    assert not any(p.vflip for p in params)  # validators never send upside-down media
    assert 100 < sum(p.hflip for p in params) < 200
    level2 = [sample_subnet_aug(2, np.random.default_rng(s)) for s in range(100)]
    assert {p.rescale for p in level2} == {0, 1} and all(p.noise == p.blur == 0 for p in level2)
    exact = sample_subnet_aug(1, np.random.default_rng(0), hflip_probability=0.0)
    assert not exact.hflip
    assert sample_subnet_aug(0, rng) == SubnetAugParams(level=0)


def test_bad_inputs():
    with pytest.raises(MediaError, match="uint8"):
        apply_subnet_aug(np.zeros((10, 10, 3), np.float32), SubnetAugParams(level=0))
    with pytest.raises(MediaError, match="RGB"):
        apply_subnet_aug(np.zeros((10, 10), np.uint8), SubnetAugParams(level=0))
    with pytest.raises(ValueError, match="level"):
        SubnetAugParams(level=4)
    with pytest.raises(ValueError, match="crop_scales"):
        SubnetAugParams(level=1, crop_scales=(0.0,))
