"""``vidfake.evaluate``: validator-style challenges are reproducible per item, whatever else is scored."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from vidfake.evaluate import item_key, predict, summarise
from vidfake.training.data import MediaItem


@pytest.fixture(scope="module")
def tiny():
    from vidfake.detector import Detector

    with Detector.from_pretrained("tiny") as det:
        yield det


def _item(path, kind, label):
    return MediaItem(path=path, label=label, kind=kind, split="val", group=path.stem,
                     method="none" if label == 0 else "synthetic", source="samples", class3=label)


@pytest.fixture(scope="module")
def items(samples_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    for name in ("real_photo.jpg", "generated.png", "real_face.mp4"):
        shutil.copy(samples_dir / name, folder / name)
    return [_item(folder / "real_photo.jpg", "image", 0), _item(folder / "generated.png", "image", 1),
            _item(folder / "real_face.mp4", "video", 0)]


class _Fingerprint:
    """Stands in for a detector: its 'probability' is a fingerprint of the media it is given, so equal
    probabilities mean the validator-style challenge was built the same, pixel for pixel."""

    def detect(self, media, *, source=None, kind=None):
        import hashlib

        import numpy as np

        from vidfake.result import BranchScore

        digest = hashlib.sha256(np.ascontiguousarray(media).tobytes()).digest()
        p = int.from_bytes(digest[:4], "big") / 2**32
        return SimpleNamespace(probability_fake=p, three_class=(1 - p, p / 2, p / 2),
                               branches=(BranchScore("image2d", p, "ok", "fingerprint"),))


def test_subnet_challenge_of_an_item_does_not_depend_on_the_items_before_it(items):
    for seed in range(6):
        both = predict(_Fingerprint(), items, mode="subnet", seed=seed, progress=False)
        alone = predict(_Fingerprint(), items[2:], mode="subnet", seed=seed, progress=False)
        reordered = predict(_Fingerprint(), items[::-1], mode="subnet", seed=seed, progress=False)
        assert all(p.error is None for p in both + alone + reordered)
        assert both[2].p_fake == alone[0].p_fake
        assert [p.p_fake for p in reordered[::-1]] == [p.p_fake for p in both]
    seeds = {predict(_Fingerprint(), items[2:], mode="subnet", seed=s, progress=False)[0].p_fake for s in range(6)}
    assert len(seeds) > 1, "the seed must change the challenges"


def test_the_real_detector_scores_a_subnet_challenge_alike_alone_or_after_images(tiny, items):
    both = predict(tiny, items, mode="subnet", seed=3, progress=False)
    alone = predict(tiny, items[2:], mode="subnet", seed=3, progress=False)
    assert both[2].error is None and both[2].p_fake == alone[0].p_fake


def test_item_key_is_stable_across_folders_and_tells_items_apart(items, tmp_path):
    moved = _item(tmp_path / items[0].path.name, "image", 0)
    assert item_key(moved) == item_key(items[0])
    assert len({item_key(it) for it in items}) == len(items)


def test_summary_counts_every_item(tiny, items):
    report = summarise(predict(tiny, items, mode="clean", progress=False))
    assert report["modalities"]["image"]["n"] == 2 and report["modalities"]["video"]["n"] == 1
