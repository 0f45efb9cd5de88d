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
        return SimpleNamespace(probability_fake=p, three_class=(1 - p, p / 2, p / 2), threshold=0.5,
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


# --------------------------------------------------------------------------- which threshold the report uses
def _pred(label: int, p: float, threshold: float | None = 0.7, source: str = "s"):
    from vidfake.evaluate import Prediction

    return Prediction(f"{label}-{p}.jpg", "image", label, label, "m", source, p, (1 - p, p, 0.0),
                      threshold=threshold)


def test_summary_uses_the_detectors_threshold_unless_one_is_given():
    # p = 0.6 is fake at 0.5 and real at the detector's 0.7: every figure must follow the threshold used.
    preds = [_pred(0, 0.6), _pred(1, 0.9), _pred(0, 0.1), _pred(1, 0.8)]
    own = summarise(preds)
    assert (own["threshold"], own["threshold_source"]) == (0.7, "weights")
    image = own["modalities"]["image"]
    assert image["accuracy"] == 1.0 and image["by_source"]["s"]["accuracy"] == 1.0
    given = summarise(preds, 0.5)
    assert (given["threshold"], given["threshold_source"]) == (0.5, "given")
    image = given["modalities"]["image"]
    assert image["accuracy"] == 0.75 and image["by_source"]["s"]["accuracy"] == 0.75


def test_summary_refuses_to_guess_a_threshold():
    with pytest.raises(ValueError, match="threshold"):
        summarise([_pred(0, 0.2, threshold=0.5), _pred(1, 0.9, threshold=0.7)])
    with pytest.raises(ValueError, match="threshold"):
        summarise([_pred(0, 0.2, threshold=None)])
    assert summarise([_pred(0, 0.2, threshold=None)], 0.5)["threshold_source"] == "given"


def test_predictions_carry_the_threshold_the_detector_applied(tiny, items):
    preds = predict(tiny, items[:2], mode="clean", progress=False)
    assert [p.threshold for p in preds] == [tiny.config.threshold] * 2


def _weights_with_threshold(folder, threshold: float):
    """A weights folder of the tiny random-init test models whose detector.json sets ``threshold``."""
    import json

    folder.mkdir()
    (folder / "detector.json").write_text(json.dumps({
        "image_model": "image2d_test", "tall_model": "tall_swin_test", "lip_model": "lip_test",
        "pretrained": False, "num_clips": 2, "num_frames": 4, "lip_windows": 1, "threshold": threshold}))
    return folder


@pytest.mark.slow
def test_eval_command_reports_the_weights_threshold_or_the_given_one(samples_dir, tmp_path, capsys):
    import json

    from vidfake.commands.eval import main

    data = tmp_path / "data"
    for label, name in (("real", "real_photo.jpg"), ("fake", "generated.png")):
        (data / label).mkdir(parents=True)
        shutil.copy(samples_dir / name, data / label / name)
    weights = _weights_with_threshold(tmp_path / "weights", 0.73)
    out = tmp_path / "report.json"
    argv = ["--data", str(data), "--kind", "image", "--mode", "clean", "--weights", str(weights),
            "--out", str(out)]
    assert main(argv) == 0
    clean = json.loads(out.read_text())["clean"]
    assert (clean["threshold"], clean["threshold_source"]) == (0.73, "weights")
    assert "threshold 0.730 (the weights' own)" in capsys.readouterr().out
    assert main([*argv, "--threshold", "0.25"]) == 0
    clean = json.loads(out.read_text())["clean"]
    assert (clean["threshold"], clean["threshold_source"]) == (0.25, "given")
    assert "threshold 0.250 (--threshold)" in capsys.readouterr().out
    for bad in (["--threshold", "2"], ["--threshold", "0.5", "--package", str(tmp_path)]):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, *bad])
        assert exit_.value.code == 2


def test_holdout_source_runs_the_loso_protocol(monkeypatch, tmp_path):
    """`vidfake eval --holdout source` hands over to the LOSO modules (images / scene videos) with the
    data folder, the report path and whatever follows `--`; bad combinations are usage errors."""
    from vidfake.commands import eval as eval_cmd
    from vidfake.training import facevideo, loso, scene

    calls = []
    monkeypatch.setattr(loso, "main", lambda argv: calls.append(("image", argv)) or 0)
    monkeypatch.setattr(scene, "main", lambda argv: calls.append(("scene", argv)) or 0)
    monkeypatch.setattr(facevideo, "main", lambda argv: calls.append(("face", argv)) or 0)
    out = str(tmp_path / "loso.json")
    assert eval_cmd.main(["--data", str(tmp_path), "--holdout", "source", "--kind", "image", "--out", out,
                          "--", "--candidate", "lite0_patches"]) == 0
    assert eval_cmd.main(["--data", str(tmp_path), "--holdout", "source", "--kind", "video"]) == 0
    assert eval_cmd.main(["--data", str(tmp_path), "--holdout", "source", "--kind", "scene-video"]) == 0
    assert eval_cmd.main(["--data", str(tmp_path), "--holdout", "source", "--kind", "face-video", "--",
                          "--variant", "sbi_only"]) == 0
    assert calls == [("image", ["--data", str(tmp_path), "--out", out, "--candidate", "lite0_patches"]),
                     ("scene", ["--data", str(tmp_path)]), ("scene", ["--data", str(tmp_path)]),
                     ("face", ["loso", "--data", str(tmp_path), "--variant", "sbi_only"])]
    for bad in (["--holdout", "source"], ["--holdout", "source", "--kind", "image", "--package", "x"],
                ["--kind", "image", "--", "--candidate", "x"], ["--kind", "face-video"]):
        with pytest.raises(SystemExit) as e:
            eval_cmd.main(["--data", str(tmp_path), *bad])
        assert e.value.code == 2
