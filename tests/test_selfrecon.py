"""Self-reconstruction fakes (vidfake.training.selfrecon): AE shapes, identical pair augmentation, split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vidfake.training import selfrecon as sr
from vidfake.training.augment import SubnetAugParams


def test_ae_shapes_and_latent():
    ae = sr.SelfReconAE()
    x = torch.rand(2, 3, 32, 48)
    z = ae.encoder(x)
    assert z.shape == (2, 16, 8, 12)  # 4x down-sampling, >= 8 latent channels
    assert ae(x).shape == x.shape
    ae(x).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ae.parameters())


def test_decoder_upsamples_with_nearest_neighbour_only(monkeypatch):
    ae = sr.SelfReconAE()
    assert not any(isinstance(m, (nn.ConvTranspose2d, nn.PixelShuffle, nn.Upsample)) for m in ae.modules())
    modes = []
    real = torch.nn.functional.interpolate

    def spy(*args, **kwargs):
        modes.append(kwargs.get("mode"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sr.F, "interpolate", spy)
    assert ae.decode(torch.rand(1, 16, 4, 4)).shape == (1, 3, 16, 16)
    assert modes and set(modes) == {"nearest"}  # two x2 stages and the x4 colour base


def test_reconstruct_keeps_odd_sizes():
    ae = sr.SelfReconAE().eval()
    im = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    out = sr.reconstruct(ae, im)
    assert out.shape == im.shape and out.dtype == np.uint8


def test_psnr():
    a = np.zeros((4, 4))
    assert sr.psnr(a, a + 0.1) == pytest.approx(20.0)


@pytest.mark.parametrize("level", [0, 1, 3])
def test_pair_augmentation_is_identical(level):
    rng = np.random.default_rng(level)
    im = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    aug = sr.PairAug(pre_jpeg=80, subnet=sr.sample_subnet_aug(level, rng))
    a, b = sr.augment_pair(im, im.copy(), aug)
    assert a.shape == (256, 256, 3)
    np.testing.assert_array_equal(a, b)  # same input -> same output: nothing differs between sides
    # and a different second side is not silently replaced by the first
    a2, b2 = sr.augment_pair(im, 255 - im, aug)
    np.testing.assert_array_equal(a2, a)
    assert not np.array_equal(a2, b2)


def test_sample_pair_aug_is_seeded():
    a = sr.sample_pair_aug(np.random.default_rng(3))
    b = sr.sample_pair_aug(np.random.default_rng(3))
    assert a == b and isinstance(a.subnet, SubnetAugParams)


def _toy():
    labels = [0] * 10 + [0] * 6 + [0] * 4 + [1] * 5 + [1] * 3
    groups = (["ImageNet samples"] * 10 + ["real-or-ai-game photos"] * 6 + ["faces"] * 4
              + ["SD1.5"] * 5 + ["unknown T2I (real-or-ai-game)"] * 3)
    return labels, groups


def test_split_never_trains_on_an_eval_group():
    labels, groups = _toy()
    s = sr.split_real_groups(labels, groups, holdout=3)
    train_groups = {groups[i] for i in s.train + s.holdout}
    eval_groups = {groups[i] for i in s.eval_real + s.eval_fake}
    assert train_groups == set(sr.TRAIN_REAL_GROUPS)
    assert not train_groups & eval_groups
    assert all(labels[i] == 0 for i in s.train + s.holdout + s.eval_real)
    assert all(labels[i] == 1 for i in s.eval_fake)
    assert len(s.holdout) == 3 and not set(s.train) & set(s.holdout)
    assert sorted(s.train + s.holdout + s.eval_real + s.eval_fake) == list(range(len(labels)))


def test_split_refuses_a_train_group_with_fakes():
    labels, groups = _toy()
    with pytest.raises(ValueError, match="holds fakes"):
        sr.split_real_groups(labels, groups, train_groups=("SD1.5",))
    with pytest.raises(ValueError, match="no items"):
        sr.split_real_groups(labels, groups, train_groups=("nope",))


@pytest.mark.data
def test_split_on_dev_manifest(shared_data):
    from vidfake.training.data import read_manifest
    from vidfake.training.groups import assign_groups

    items = read_manifest(shared_data, kind="image", check_files=False)
    groups = assign_groups(items)
    s = sr.split_real_groups([i.label for i in items], groups)
    assert {groups[i] for i in s.eval_real}.isdisjoint(sr.TRAIN_REAL_GROUPS)
    assert len(s.eval_fake) == sum(i.label for i in items)


def test_ae_two_times_and_checkpoint_keeps_the_architecture(tmp_path):
    ae = sr.SelfReconAE(latent=12, down=2)
    x = torch.rand(1, 3, 30, 42)
    assert ae.encoder(x).shape == (1, 12, 15, 21) and ae(x).shape == x.shape
    im = np.random.default_rng(1).integers(0, 256, (33, 41, 3), dtype=np.uint8)
    assert sr.reconstruct(ae.eval(), im).shape == im.shape
    with pytest.raises(ValueError, match="down"):
        sr.SelfReconAE(down=8)
    imgs = [np.random.default_rng(2).integers(0, 256, (140, 150, 3), dtype=np.uint8)]
    path = tmp_path / "ae.pt"
    sr.train_ae(imgs, imgs, path, minutes=0.0, arch={"latent": 12, "down": 2})
    loaded = sr.load_ae(path)
    assert loaded.arch == {"width": 16, "latent": 12, "down": 2}
    with pytest.raises(ValueError, match="architecture"):
        sr.train_ae(imgs, imgs, path, minutes=0.0, arch={"latent": 48, "down": 4})


def test_blur_and_sharpen_reach_every_side_alike():
    rng = np.random.default_rng(4)
    im = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    for aug in (sr.PairAug(0, sr.sample_subnet_aug(0, rng), blur=1.2),
                sr.PairAug(0, sr.sample_subnet_aug(0, rng), sharpen=0.8)):
        a, b, c = sr.augment_pair(im, im.copy(), aug, im.copy())
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        plain = sr.augment_pair(im, im, sr.PairAug(0, aug.subnet))[0]
        assert not np.array_equal(a, plain)  # the blur / sharpening did happen
    # a blur lowers high-frequency energy, sharpening raises it
    hf = lambda x: np.abs(np.diff(x.astype(float), axis=1)).mean()  # noqa: E731
    assert hf(sr.soften(im, 1.5)) < hf(im) < hf(sr.unsharp(im, 1.0))


def test_pair_aug_draws_without_blur_are_the_first_runs():
    a = sr.sample_pair_aug(np.random.default_rng(7))
    b = sr.sample_pair_aug(np.random.default_rng(7), blur_p=0.0, sharpen_p=0.0)
    assert a == b and a.blur == 0 and a.sharpen == 0
    draws = [sr.sample_pair_aug(np.random.default_rng(s), blur_p=0.5, sharpen_p=0.5) for s in range(40)]
    assert any(d.blur for d in draws) and any(d.sharpen for d in draws)
    assert not any(d.blur and d.sharpen for d in draws)


def test_pairs_with_a_soft_real_side():
    ae = sr.SelfReconAE().eval()
    imgs = [np.random.default_rng(5).integers(0, 256, (64, 80, 3), dtype=np.uint8)]
    pairs = sr.build_pairs(ae, imgs, views=2, soft_real=True, blur_p=0.3, sharpen_p=0.2)
    assert pairs.shape == (1, 2, 3, 256, 256, 3)
    assert not np.array_equal(pairs[0, 0, 0], pairs[0, 0, 2])  # the soft side is not the original
    assert sr.build_pairs(ae, imgs, views=1).shape == (1, 1, 2, 256, 256, 3)
    soft = sr.resample_soft(imgs[0])
    assert soft.shape == imgs[0].shape and not np.array_equal(soft, imgs[0])
