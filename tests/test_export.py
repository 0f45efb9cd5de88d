"""``vidfake export``: the subnet's static rules, gasbench's feed, package round trips and scoring.

Packages are exported from the tiny random-init detector (``Detector.from_pretrained("tiny")``) with
non-trivial fusion parameters, so the folded heads, calibration and fusion are all exercised.
"""

from __future__ import annotations

import json
import textwrap
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vidfake.export import (
    PackageError,
    check_model_source,
    check_package,
    evaluate_package,
    export_package,
    gasbench_image,
    gasbench_resize,
    gasbench_video,
    load_package_model,
    validate_package_config,
)
from vidfake.export.package import CONFIG_FILE, MODEL_FILE, WEIGHTS_FILE, dump_config
from vidfake.export_templates import model_template

# ============================================================================================ static rules
GOOD = textwrap.dedent('''
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from safetensors.torch import load_file


    class Tiny(nn.Module):
        def __init__(self, num_classes=2):
            super().__init__()
            self.classifier = nn.Linear(3, num_classes)

        def forward(self, x):
            x = x.float() / 255.0
            return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


    def load_model(weights_path: str, num_classes: int = 2):
        model = Tiny(num_classes)
        model.load_state_dict(load_file(weights_path))
        model.train(False)
        return model
''')


def _with(snippet: str) -> tuple[str, int]:
    """GOOD with ``snippet`` appended; returns the source and the snippet's first line number."""
    return GOOD + snippet + "\n", GOOD.count("\n") + 1


def test_known_good_model_py_passes():
    assert check_model_source(GOOD) == []
    assert check_model_source(model_template()) == []


@pytest.mark.parametrize("snippet", [
    "import os", "import os.path", "from os import path", "import sys", "import subprocess", "import pickle",
    "import importlib", "from importlib import import_module", "import threading", "import tempfile",
    "import glob", "import shutil", "import socket", "import requests", "import urllib.request",
    "import multiprocessing", "import ctypes", "import builtins", "import io", "import marshal",
    "import joblib", "import vidfake", "from vidfake.detector import Detector", "import yaml",
    "from __future__ import annotations", "import torch.jit", "from torch import jit", "import torch.hub as hub",
    "from torch.hub import load", "from torch import load", "import torch.utils.cpp_extension",
])
def test_each_forbidden_import_is_rejected(snippet):
    source, line = _with(snippet)
    found = check_model_source(source)
    assert found, snippet
    assert {v.line for v in found} == {line}
    assert {v.rule for v in found} <= {"import", "attribute", "name"}


@pytest.mark.parametrize("snippet", [
    "eval('1 + 1')", "exec('x = 1')", "compile('1', 'f', 'eval')", "__import__('os')",
    "getattr(torch, 'load')", "setattr(torch, 'x', 1)", "delattr(torch, 'x')", "globals()", "locals()",
    "vars()", "open('weights.bin')", "breakpoint()", "input()",
    "torch.jit.script(Tiny())", "torch.jit.trace(Tiny(), torch.zeros(1, 3, 4, 4))", "torch.load('w.pt')",
    "torch.hub.load('org/repo', 'model')", "torch.compile(Tiny())", "torch.ops.load_library('x.so')",
    "f = eval", "g = __import__",
    "().__class__.__bases__[0].__subclasses__()", "load_model.__globals__['torch']",
])
def test_each_forbidden_call_is_rejected(snippet):
    source, line = _with(snippet)
    found = check_model_source(source)
    assert found, snippet
    assert {v.line for v in found} == {line}, found


def test_aliases_are_resolved():
    source, line = _with("import torch as T\nT.jit.script(Tiny())")
    assert [v.line for v in check_model_source(source)] == [line + 1]
    source, line = _with("from torch import jit as J")
    assert [v.rule for v in check_model_source(source)] == ["import"]
    # An allowed attribute of the same name on another object is not mistaken for torch.load.
    assert check_model_source(GOOD + "\nclass X:\n    load = 1\n\n\nX.load\n") == []


def test_relative_imports_syntax_errors_and_missing_entry_point():
    source, line = _with("from . import helper")
    assert [(v.line, v.rule) for v in check_model_source(source)] == [(line, "relative-import")]
    assert [v.rule for v in check_model_source("def load_model(:\n")] == ["syntax"]
    no_entry = GOOD.replace("def load_model(weights_path: str, num_classes: int = 2):", "def build(path):")
    assert [v.rule for v in check_model_source(no_entry)] == ["entry-point"]
    bad_args = GOOD.replace("def load_model(weights_path: str, num_classes: int = 2):", "def load_model(path):")
    assert {v.rule for v in check_model_source(bad_args)} == {"entry-point"}


# ============================================================================================ config
def _config(**changes) -> dict:
    config = {"name": "x", "version": "1.0.0", "modality": "video", "dtype": "float32",
              "preprocessing": {"resize": [224, 224], "num_frames": 16},
              "model": {"num_classes": 2, "weights_file": "model.safetensors"}}
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            config[section][leaf] = value
        else:
            config[section] = value
    return config


def test_config_validation():
    assert validate_package_config(_config()) == []
    assert validate_package_config(_config(preprocessing__frame_rate=8.0)) == []
    for change, words in [({"modality": "audio"}, "modality"), ({"dtype": "int8"}, "dtype"),
                          ({"preprocessing__resize": [224]}, "resize"), ({"preprocessing__num_frames": 65}, "num_frames"),
                          ({"preprocessing__frame_rate": -1}, "frame_rate"), ({"model__num_classes": 3}, "num_classes"),
                          ({"model__weights_file": "../w.safetensors"}, "weights_file"), ({"name": ""}, "name")]:
        problems = validate_package_config(_config(**change))
        assert len(problems) == 1 and words in problems[0], (change, problems)
    assert "resize: [224, 224]" in dump_config(_config())


# ============================================================================================ gasbench feed
def test_gasbench_resize_crops_to_aspect_then_resizes():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 2
    out = gasbench_resize(image, (2, 2))
    crop = image[:, 1:5].astype(float)  # centre 4x4 of the 4x6 image
    expected = crop.reshape(2, 2, 2, 2, 3).mean(axis=(1, 3))  # exact 2x bilinear = 2x2 block means
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    assert gasbench_resize(np.zeros((10, 40, 3), np.uint8), (5, 10)).shape == (5, 10, 3)


def _write_video(path: Path, frames: np.ndarray, fps: int = 10) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        s.options = {"qp": "0", "preset": "ultrafast"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(xx * 3 + k * 11) % 256, (yy * 5) % 256, np.full_like(xx, k * 9)], -1)
                     for k in range(n)]).astype(np.uint8)


def test_gasbench_video_first_frames_stride_and_padding(tmp_path):
    frames = _frames(12)
    path = tmp_path / "clip.mp4"
    _write_video(path, frames, fps=10)
    size = (32, 32)
    expected = np.stack([gasbench_resize(f, size) for f in frames]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(gasbench_video(path, size, 8), expected[:8])
    # frame_rate 5 at 10 fps: every second frame.
    np.testing.assert_array_equal(gasbench_video(path, size, 4, frame_rate=5), expected[[0, 2, 4, 6]])
    # a 12-frame clip asked for 16 repeats its last frame
    got = gasbench_video(path, size, 16)
    np.testing.assert_array_equal(got[:12], expected)
    np.testing.assert_array_equal(got[12:], np.repeat(expected[-1:], 4, axis=0))
    with pytest.raises(ValueError):
        gasbench_video(path, size, 0)


def test_gasbench_image_converts_to_rgb_and_reports_bad_files(tmp_path):
    from PIL import Image

    from vidfake.preprocessing.errors import DecodeError

    grey = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) % 256
    Image.fromarray(grey.astype(np.uint8), "L").save(tmp_path / "g.png")
    out = gasbench_image(tmp_path / "g.png", (20, 20))
    assert out.shape == (3, 20, 20) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], out[1])
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DecodeError, match="bad.jpg"):
        gasbench_image(tmp_path / "bad.jpg", (20, 20))


# ============================================================================================ packages
@pytest.fixture(scope="module")
def detector():
    from vidfake.detector import Detector, FusionParams

    fusion = FusionParams(coef={"image2d": 0.7, "tall": 1.3, "lip": 0.5}, mean={"image2d": 0.1, "tall": -0.2, "lip": 0.4},
                          bias=-0.3, image_temperature=1.7, image_bias=0.25)
    torch.manual_seed(0)
    return Detector.from_pretrained("tiny", fusion=fusion)


@pytest.fixture(scope="module")
def packages(detector, tmp_path_factory):
    root = tmp_path_factory.mktemp("packages")
    return {
        "image": export_package(detector, root / "image", modality="image", size=224),
        "video": export_package(detector, root / "video", modality="video", size=224, num_frames=8, faces="none"),
        "haar": export_package(detector, root / "haar", modality="video", num_frames=8),
    }


def _p_fake(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(np.ascontiguousarray(x))).float(), dim=1)[:, 1].numpy()


def test_package_files_zip_and_card(packages):
    r = packages["haar"]
    assert sorted(p.name for p in r.folder.iterdir()) == sorted([CONFIG_FILE, MODEL_FILE, WEIGHTS_FILE, "README.md"])
    with zipfile.ZipFile(r.zip_path) as zf:
        assert sorted(zf.namelist()) == sorted([CONFIG_FILE, MODEL_FILE, WEIGHTS_FILE])
        assert zf.read(MODEL_FILE) == (r.folder / MODEL_FILE).read_bytes()
    assert r.config["preprocessing"] == {"resize": [320, 320], "num_frames": 8}
    assert r.arch["face_crop"] == "haar" and r.arch["scene"] is None  # the tiny detector has no scene branch
    card = (r.folder / "README.md").read_text()
    assert "lip" in card and "Haar" in card and r.weights_sha256 in card
    assert "import vidfake" not in (r.folder / MODEL_FILE).read_text()


def test_image_package_gives_the_detectors_calibrated_probability(detector, packages):
    model, config = load_package_model(packages["image"].folder)
    assert config["preprocessing"]["resize"] == [224, 224]
    images = np.random.default_rng(1).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    expected = [detector.config.fusion.calibrate_image(float(z))
                for z in detector.image_logits(list(images), already_sized=True)]
    np.testing.assert_allclose(_p_fake(model, images.transpose(0, 3, 1, 2)), expected, atol=1e-5)


def test_image_package_area_resize_matches_training_resize():
    from vidfake.export_templates.gasbench_model import square_resize
    from vidfake.preprocessing.transforms import resize_for_model

    image = np.random.default_rng(2).integers(0, 256, (448, 448, 3), dtype=np.uint8)
    got = square_resize(torch.from_numpy(image).permute(2, 0, 1)[None].float(), 224)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got.astype(np.uint8), resize_for_model(image, 224))


def test_video_package_gives_the_detectors_fused_probability(detector, packages):
    """Whole-frame mode on 224 px frames reproduces Detector.detect (image2d + TALL, lip imputed) exactly."""
    model, _ = load_package_model(packages["video"].folder)
    videos = np.random.default_rng(3).integers(0, 256, (2, 8, 224, 224, 3), dtype=np.uint8)
    expected = [detector.detect(v, kind="video", branches=("image2d", "tall"), num_frames=8, num_clips=2).probability_fake
                for v in videos]
    np.testing.assert_allclose(_p_fake(model, videos.transpose(0, 1, 4, 2, 3)), expected, atol=1e-5)


def test_haar_face_boxes_match_the_trackers_crops(packages):
    import skimage.data

    from vidfake.preprocessing.faces import FaceTracker, face_box_square

    model, _ = load_package_model(packages["haar"].folder)
    face = cv2.resize(skimage.data.astronaut(), (320, 320), interpolation=cv2.INTER_AREA)
    frames = np.stack([np.roll(face, (k, 2 * k), axis=(0, 1)) for k in range(8)])
    boxes = model.face_boxes(torch.from_numpy(frames).permute(0, 3, 1, 2)[None])[0].numpy()
    with FaceTracker(max_faces=1) as tracker:
        track = tracker.track(frames, np.arange(8))[0]
    ref = face_box_square(track.boxes, 1.3)

    def iou(a, b):
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    ious = [iou(a, b) for a, b in zip(boxes, ref, strict=True)]
    assert min(ious) > 0.75, ious
    # No face anywhere: whole frames (the square around the frame).
    noise = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (1, 8, 3, 320, 320), dtype=np.uint8))
    np.testing.assert_allclose(model.face_boxes(noise)[0].numpy(), np.tile([0, 0, 320, 320], (8, 1)))


def test_check_package_passes_in_a_clean_interpreter(packages):
    report = check_package(packages["haar"].zip_path)  # the image package is checked through the CLI below
    assert report.ok, report.problems
    assert report.vidfake_importable is False
    assert report.embedding == "classifier"
    assert report.input_shape == (2, 8, 3, 320, 320)
    assert report.output_shape == (2, 2) and report.output_dtype == "float32" and report.finite


@pytest.mark.slow
def test_shipped_variants_export_exactly(tmp_path):
    """The variants the shipped detector uses rebuild key for key (random weights, no files needed)."""
    from vidfake.detector import Detector

    det = Detector.from_pretrained("tiny", image_model="efficientnet_lite0_detector", tall_model="tall_swin_compact")
    r = export_package(det, tmp_path / "video", modality="video", size=224, num_frames=4, faces="none")
    model, _ = load_package_model(r.folder)
    video = np.random.default_rng(8).integers(0, 256, (1, 4, 224, 224, 3), dtype=np.uint8)
    expected = det.detect(video[0], kind="video", branches=("image2d", "tall"), num_frames=4, num_clips=1)
    np.testing.assert_allclose(_p_fake(model, video.transpose(0, 1, 4, 2, 3)), [expected.probability_fake], atol=1e-5)


def test_npr_image_export(tmp_path):
    from vidfake.detector import Detector, FusionParams

    det = Detector.from_pretrained("tiny", image_model="npr_resnet", fusion=FusionParams(image_temperature=0.8))
    r = export_package(det, tmp_path / "npr", modality="image", size=224)
    assert r.arch["image"] | {"mean": None, "std": None} == {
        "family": "npr", "layers": (3, 4), "channels": (64, 128), "input_size": 224, "mean": None, "std": None}
    model, _ = load_package_model(r.folder)
    images = np.random.default_rng(9).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    expected = [det.config.fusion.calibrate_image(float(z)) for z in det.image_logits(list(images), already_sized=True)]
    np.testing.assert_allclose(_p_fake(model, images.transpose(0, 3, 1, 2)), expected, atol=1e-5)


def test_bfloat16_package_runs(detector, tmp_path, packages):
    r = export_package(detector, tmp_path / "bf16", modality="image", size=224, dtype="bfloat16")
    model, config = load_package_model(r.folder)
    assert config["dtype"] == "bfloat16" and model.classifier.weight.dtype == torch.bfloat16
    images = np.random.default_rng(5).integers(0, 256, (2, 3, 224, 224), dtype=np.uint8)
    ref, _ = load_package_model(packages["image"].folder)
    np.testing.assert_allclose(_p_fake(model, images), _p_fake(ref, images), atol=0.05)


def test_export_refuses_to_overwrite_without_force(detector, packages):
    folder = packages["image"].folder
    with pytest.raises(PackageError, match="already exists"):
        export_package(detector, folder, modality="image", size=224)
    with pytest.raises(PackageError, match="modality"):
        export_package(detector, folder.parent / "x", modality="audio")
    r = export_package(detector, folder, modality="image", size=224, overwrite=True)
    assert r.zip_path.is_file()


# ---------------------------------------------------------------------------------- failing packages
def _custom_package(folder: Path, forward_body: str, extra: str = "") -> Path:
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / MODEL_FILE).write_text(textwrap.dedent(f'''
        import torch
        from safetensors.torch import load_file
        {extra}

        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.zeros(1))

            def forward(self, x):
                {forward_body}


        def load_model(weights_path, num_classes=2):
            m = M()
            m.load_state_dict(load_file(weights_path))
            return m
    '''))
    save_file({"w": torch.zeros(1)}, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(dump_config(_config(modality="image", preprocessing={"resize": [8, 8]})))
    return folder


def test_check_package_reports_rule_breaks_shapes_and_nan(tmp_path):
    bad = _custom_package(tmp_path / "bad", "return torch.zeros(x.shape[0], 3) + getattr(self, 'w')")
    report = check_package(bad)
    assert not report.ok
    assert any("getattr" in p for p in report.problems)
    assert any("output shape [2, 3], expected [2, 2]" in p for p in report.problems)
    nan = _custom_package(tmp_path / "nan", "return torch.full((x.shape[0], 2), float('nan')) + self.w")
    report = check_package(nan)
    assert [p for p in report.problems] == ["output holds NaN or infinite values"]
    (nan / WEIGHTS_FILE).unlink()
    assert check_package(nan).problems == ("model.safetensors missing",)
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as zf:
        zf.writestr("pkg/model.py", "x = 1")
    assert "outside the archive root" in check_package(nested).problems[0]
    assert not check_package(tmp_path / "nowhere").ok


# ============================================================================================ scoring
def test_evaluate_package_scores_like_gasbench(packages, tmp_path):
    from PIL import Image

    from vidfake.metrics import gasbench_score
    from vidfake.training.data import MediaItem

    rng = np.random.default_rng(6)
    items = []
    for k in range(6):
        path = tmp_path / f"im{k}.png"
        Image.fromarray(rng.integers(0, 256, (60 + 10 * k, 80, 3), dtype=np.uint8)).save(path)
        items.append(MediaItem(path, k % 2, "image", "val", f"g{k}", "none" if k % 2 == 0 else "sd15", "synthetic", k % 2))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    items.append(MediaItem(tmp_path / "broken.png", 1, "image", "val", "g9", "sd15", "synthetic", 1))
    items.append(MediaItem(tmp_path / "v.mp4", 0, "video", "val", "g8", "none", "synthetic", 0))

    report = evaluate_package(packages["image"].folder, items, progress=False, batch_size=4)
    m = report["gasbench"]["modalities"]["image"]
    assert report["skipped_other_modality"] == 1
    assert m["n"] == 7 and m["errors"] == 1
    preds = [r for r in report["predictions"] if r["error"] is None]
    model, config = load_package_model(packages["image"].folder)
    direct = _p_fake(model, np.stack([gasbench_image(r["path"], (224, 224)) for r in preds]))
    np.testing.assert_allclose([r["p_fake"] for r in preds], direct, atol=1e-6)
    y, p = [r["label"] for r in preds], [r["p_fake"] for r in preds]
    assert m["gasbench"] == pytest.approx(gasbench_score(y, p))
    assert m["accuracy"] == pytest.approx(np.mean([(pi > 0.5) == yi for yi, pi in zip(y, p, strict=True)]))
    assert m["entrance_exam"]["passes"] == (m["accuracy"] >= 0.8)
    assert set(m["by_method"]) == {"none", "sd15"}
    assert json.dumps(report)  # JSON-serialisable for `vidfake eval --out`


@pytest.mark.data
def test_evaluate_package_on_shared_val_videos(packages, shared_data):
    from vidfake.training.data import read_manifest

    items = read_manifest(shared_data, kind="video", split="val")[:2]
    report = evaluate_package(packages["haar"].folder, items, progress=False)
    m = report["gasbench"]["modalities"]["video"]
    assert m["n"] == 2 and m["errors"] == 0
    assert all(0.0 <= r["p_fake"] <= 1.0 for r in report["predictions"])


# ============================================================================================ command line
def test_cli_usage_errors_exit_2(tmp_path):
    from vidfake.commands.export import main

    for argv in ([str(tmp_path / "x")], ["--check", "--modality", "image", str(tmp_path / "x")],
                 ["--modality", "video", "--frames", "2", str(tmp_path / "x")],
                 ["--modality", "image", "--baseline", "b.json", str(tmp_path / "x")]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv


def test_cli_exports_and_checks(tmp_path, packages, capsys):
    from vidfake.commands.export import main

    out = tmp_path / "cli-image"
    assert main(["--modality", "image", "--weights", "tiny", "--size", "224", "--no-check", "--format", "json", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["preprocessing"]["resize"] == [224, 224] and Path(summary["zip"]).is_file()
    assert main(["--check", str(packages["image"].zip_path)]) == 0
    assert "OK" in capsys.readouterr().out
    broken = tmp_path / "broken"
    broken.mkdir()
    assert main(["--check", str(broken)]) == 1
    assert "not a model package" in capsys.readouterr().out



def test_probe_image_export(tmp_path):
    """The image probe (frozen trunk, standardised stage statistics, logistic head) exports with its
    calibration folded in, and gives the detector's calibrated still-image probability."""
    from vidfake.detector import Detector, FusionParams
    from vidfake.probe import PROBE_FILE

    det = Detector.from_pretrained("tiny", image_probe=PROBE_FILE,
                                   fusion=FusionParams(image_temperature=1.7, image_bias=0.25))
    r = export_package(det, tmp_path / "probe", modality="image", size=224)
    assert r.arch["image"]["pool"] == "stage_stats" and r.arch["image"]["head_dim"] == 4128
    assert det.still.rigid is not None and r.arch["image"]["rigid_start"] == det.still.rigid.start  # the second pass too
    assert det.still_model_name in r.source_models and "probe trunk" in " ".join(r.source_models)
    model, _ = load_package_model(r.folder)
    images = np.random.default_rng(10).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    expected = [det.config.fusion.calibrate_image(float(z)) for z in det.image_logits(list(images), already_sized=True)]
    np.testing.assert_allclose(_p_fake(model, images.transpose(0, 3, 1, 2)), expected, atol=1e-4)
    bf16 = export_package(det, tmp_path / "probe16", modality="image", size=224, dtype="bfloat16")
    model16, _ = load_package_model(bf16.folder)
    np.testing.assert_allclose(_p_fake(model16, images.transpose(0, 3, 1, 2)), expected, atol=0.05)
