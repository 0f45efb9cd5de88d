"""Hugging Face models as branches (``vidfake.hub``): label mapping, preparation, the Detector, the CLI,
the miner and training, with tiny randomly initialised transformers models saved into tmp folders.

Nothing is downloaded: hub ids are only ever looked up with ``HF_HUB_OFFLINE=1`` and an empty cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported, as the CLI does
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from vidfake.detector import Detector, FusionParams
from vidfake.hub import (
    FAKE_NAMES,
    REAL_NAMES,
    HubError,
    load_hub_config,
    make_hub_branch,
    map_labels,
    parse_label_map,
    prepare_frame,
)

transformers = pytest.importorskip("transformers")


# --------------------------------------------------------------------------- tiny models on disk
def _vit(folder, id2label: dict[int, str] | None) -> str:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    kw = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if id2label else {}
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    image_size=64, patch_size=16, num_labels=len(id2label or {0: 0, 1: 1}), **kw)
    ViTForImageClassification(cfg).save_pretrained(folder)
    ViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return str(folder)


def _videomae(folder) -> str:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessor

    torch.manual_seed(0)
    cfg = VideoMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         image_size=64, patch_size=16, num_frames=4, tubelet_size=2, num_labels=2,
                         id2label={0: "Real", 1: "Fake"}, label2id={"Real": 0, "Fake": 1})
    VideoMAEForVideoClassification(cfg).save_pretrained(folder)
    VideoMAEImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hub")
    return {
        "image": _vit(root / "vit", {0: "human", 1: "artificial"}),
        "unmapped": _vit(root / "vit_unmapped", None),  # LABEL_0, LABEL_1
        "video": _videomae(root / "videomae"),
    }


@pytest.fixture(scope="module")
def detector(models):
    d = Detector.from_pretrained("tiny", hf_image_model=f"hf:{models['image']}",
                                 hf_video_model=f"hf:{models['video']}")
    yield d
    d.close()


def _photo() -> np.ndarray:
    from skimage.data import astronaut

    return astronaut()


# --------------------------------------------------------------------------- labels
@pytest.mark.parametrize(("labels", "fake"), [
    (["Real", "Fake"], [1]),
    (["human", "artificial"], [1]),
    (["AI-generated", "Authentic"], [0]),
    (["Realism", "Deepfake"], [1]),
    (["original", "synthetic"], [1]),
    (["ai_generated", "human_made"], [0]),
])
def test_known_label_names_map_case_and_punctuation_insensitively(labels, fake):
    m = map_labels(dict(enumerate(labels)))
    assert list(m.fake) == fake and sorted(m.fake + m.real) == [0, 1]


def test_the_name_tables_do_not_overlap():
    assert not FAKE_NAMES & REAL_NAMES


def test_unmappable_labels_are_refused_with_the_labels_and_a_label_map_hint():
    with pytest.raises(HubError) as e:
        map_labels({0: "LABEL_0", 1: "LABEL_1"}, source="hf:org/model")
    msg = str(e.value)
    assert "hf:org/model" in msg and "LABEL_0" in msg and "LABEL_1" in msg
    assert '--label-map "LABEL_0=real,LABEL_1=fake"' in msg and "\n" not in msg


def test_label_map_maps_and_overrides_by_name_or_index():
    m = map_labels({0: "LABEL_0", 1: "LABEL_1"}, parse_label_map("label_0=fake, LABEL_1=REAL"))
    assert m.fake == (0,) and m.real == (1,)
    m = map_labels({0: "cat", 1: "dog"}, {"0": "real", "1": "fake"})
    assert m.fake == (1,)
    # an override beats the table
    assert map_labels({0: "real", 1: "fake"}, {"real": "fake", "fake": "real"}).fake == (0,)


@pytest.mark.parametrize("bad", ["LABEL_0", "LABEL_0=maybe", "=fake"])
def test_malformed_label_maps_are_refused(bad):
    with pytest.raises(HubError):
        parse_label_map(bad)


def test_more_than_two_labels_fake_is_the_fake_mass():
    m = map_labels({0: "real", 1: "deepfake", 2: "ai-generated"})
    z = torch.tensor([[0.3, 1.2, -0.4]])
    p = torch.softmax(z, 1)[0]
    assert torch.sigmoid(m.fake_logits(z))[0].item() == pytest.approx((p[1] + p[2]).item(), abs=1e-6)
    two = torch.softmax(m.two_class(z), 1)[0]
    assert two[1].item() == pytest.approx((p[1] + p[2]).item(), abs=1e-6)


def test_more_than_two_labels_need_every_label_mapped_or_ignored():
    with pytest.raises(HubError, match="other"):
        map_labels({0: "real", 1: "fake", 2: "other"})
    m = map_labels({0: "real", 1: "fake", 2: "other"}, {"other": "ignore"})
    z = torch.tensor([[0.0, 1.0, 5.0]])
    p = torch.softmax(z, 1)[0]
    assert torch.sigmoid(m.fake_logits(z))[0].item() == pytest.approx((p[1] / (p[0] + p[1])).item(), abs=1e-6)


# --------------------------------------------------------------------------- configs and preparation
@pytest.mark.parametrize(("key", "task"), [("image", "image"), ("video", "video")])
def test_preparation_matches_the_models_own_processor(models, key, task):
    from transformers import AutoImageProcessor

    cfg = load_hub_config(f"hf:{models[key]}", task)
    img = _photo()[40:340, 10:510]  # 300 x 500: not square, so resize and crop rules matter
    mine = make_hub_branch(cfg).to_tensor(prepare_frame(img, cfg)[None])
    ref = AutoImageProcessor.from_pretrained(models[key])([img], return_tensors="pt")["pixel_values"]
    ref = ref.reshape(-1, *ref.shape[-3:])[:1]
    assert mine.shape == ref.shape == (1, 3, 64, 64)
    assert (mine - ref).abs().mean() < 0.01 and (mine - ref).abs().max() < 0.05


def test_hub_config_reads_frames_labels_and_refuses_the_wrong_task(models):
    cfg = load_hub_config(f"hf:{models['video']}", "video")
    assert cfg.num_frames == 4 and cfg.input_size == (3, 64, 64) and cfg.crop == (64, 64)
    with pytest.raises(HubError, match="video-classification"):
        load_hub_config(f"hf:{models['image']}", "video")


def test_video_branch_plans_evenly_spread_frames_and_repeats_them_on_short_clips(models):
    branch = make_hub_branch(load_hub_config(f"hf:{models['video']}", "video"))
    [span] = branch.plan(100, 1).spans
    assert span.indices == (12, 37, 62, 87)
    short = branch.plan(2, 1)
    assert short.spans[0].indices == (0, 0, 1, 1) and short.spans[0].padded and "fewer" in short.warning


def test_a_fitted_hub_weight_joins_the_logistic_fusion():
    logits = {"image2d": 0.5, "tall": -0.2, "hf_image": 2.0}
    fitted = FusionParams(coef={"image2d": 1.0, "tall": 1.0, "lip": 1.0, "hf_image": 0.5})
    p, w = fitted.fuse(logits)
    assert w["hf_image"] == 0.5 and p == pytest.approx(1 / (1 + np.exp(-(0.5 - 0.2 + 1.0))))
    p0, _ = FusionParams().fuse({"image2d": 0.5, "tall": -0.2})
    p, w = FusionParams().fuse(logits)
    assert w["hf_image"] == 0.5 and p == pytest.approx((p0 + 1 / (1 + np.exp(-2.0))) / 2)


# --------------------------------------------------------------------------- the Detector
def test_detector_image_gets_the_hub_branch_averaged_in(detector, models, samples_dir):
    r = detector.detect(samples_dir / "real_photo.jpg")
    b = {s.name: s for s in r.branches}
    assert b["hf_image"].status == "ok" and b["hf_image"].model == f"hf:{models['image']}"
    assert b["hf_image"].weight == 0.5 and b["hf_video"].status == "skipped: still image"
    assert r.probability_fake == pytest.approx((b["image2d"].probability + b["hf_image"].probability) / 2)
    assert any("plain mean" in w for w in r.warnings)
    assert r.models[f"hf:{models['image']}"] not in ("", "random-init")


@pytest.mark.slow
def test_detector_video_runs_every_branch_once(detector, samples_dir):
    r = detector.detect(samples_dir / "real_face.mp4")
    b = {s.name: s for s in r.branches}
    assert [s.name for s in r.branches] == ["image2d", "tall", "lip", "hf_image", "hf_video"]
    assert b["hf_image"].status == b["hf_video"].status == "ok"
    assert b["hf_video"].weight == pytest.approx(1 / 3)
    hub_clips = [c for c in r.clips if c.branch == "hf_video"]
    assert len(hub_clips) == 1 and 0.0 <= hub_clips[0].probability <= 1.0
    # the hub image branch scores the 2D detector's frames: nothing more was decoded for it
    assert {c.start_frame for c in r.clips if c.branch == "hf_image"} == {f.frame_index for f in r.frames}


def test_branches_can_leave_a_hub_model_out(detector, samples_dir):
    r = detector.detect(samples_dir / "real_photo.jpg", branches=("image2d",))
    assert r.branch("hf_image").status == "skipped: not requested"
    assert r.probability_fake == r.branch("image2d").probability
    with pytest.raises(ValueError, match="unknown branches"):
        Detector.from_pretrained("tiny").detect(samples_dir / "real_photo.jpg", branches=("hf_image",))


def test_unmapped_labels_stop_the_detector_up_front(models):
    with pytest.raises(HubError, match="--label-map"):
        Detector.from_pretrained("tiny", hf_image_model=f"hf:{models['unmapped']}")
    d = Detector.from_pretrained("tiny", hf_image_model=f"hf:{models['unmapped']}",
                                 label_map="LABEL_0=real,LABEL_1=fake")
    assert d.branches["hf_image"].config.labels.fake == (1,)


# --------------------------------------------------------------------------- the CLI
def _cli(*args, timeout: float = 240, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "vidfake", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_cli_image_model_adds_its_branch(models, samples_dir):
    out = _cli(str(samples_dir / "real_photo.jpg"), "--weights", "tiny", "--image-model", f"hf:{models['image']}",
               "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    [hub] = [b for b in doc["branches"] if b["name"] == "hf_image"]
    assert hub["status"] == "ok" and hub["model"] == f"hf:{models['image']}" and hub["weight"] == 0.5


@pytest.mark.slow
def test_cli_video_model_adds_its_branch(models, samples_dir):
    out = _cli(str(samples_dir / "real_face.mp4"), "--weights", "tiny", "--video-model", f"hf:{models['video']}",
               "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    [hub] = [b for b in doc["branches"] if b["name"] == "hf_video"]
    assert hub["status"] == "ok" and 0.0 <= hub["probability"] <= 1.0
    assert any(c["branch"] == "hf_video" for c in doc["clips"])


@pytest.mark.slow
def test_cli_unmappable_labels_exit_1_with_a_one_line_reason(models, samples_dir):
    out = _cli(str(samples_dir / "real_photo.jpg"), "--weights", "tiny", "--image-model",
               f"hf:{models['unmapped']}", "--format", "json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert "LABEL_0" in doc["error"] and "--label-map" in doc["error"] and "\n" not in doc["error"]
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_cli_absent_hub_id_offline_exits_1_naming_it_without_hanging(samples_dir, tmp_path):
    # An empty cache and HF_HUB_OFFLINE=1: nothing can be found and nothing may be fetched.
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = _cli(str(samples_dir / "real_photo.jpg"), "--weights", "tiny", "--image-model",
               "hf:nobody-vidfake-test/absent-detector", timeout=120, env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    [line] = [ln for ln in out.stdout.splitlines() if "ERROR" in ln]
    assert "hf:nobody-vidfake-test/absent-detector" in line and "HF_HUB_OFFLINE=1" in line
    assert "Traceback" not in out.stderr


def test_cli_flags_are_checked_before_anything_loads():
    assert _cli("x.jpg", "--image-model", "org/model").returncode == 2  # no hf: prefix
    out = _cli("x.jpg", "--label-map", "LABEL_0=maybe")
    assert out.returncode == 2 and "real, fake or ignore" in out.stderr


def test_no_transformers_without_hub_models():
    code = ("import sys; import vidfake, vidfake.cli, vidfake.detector, vidfake.hub\n"
            "print('TRANSFORMERS', 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "TRANSFORMERS False" in out.stdout, out.stdout + out.stderr


# --------------------------------------------------------------------------- the miner
def test_miner_flags_reach_the_config():
    from vidfake.commands.miner import build_parser, config_from_args

    args = build_parser().parse_args(["--image_model", "hf:some/folder", "--video_model", "hf:other",
                                      "--label_map", "LABEL_0=real,LABEL_1=fake"])
    cfg = config_from_args(args)
    assert (cfg.image_model, cfg.video_model, cfg.label_map) == ("hf:some/folder", "hf:other",
                                                                 "LABEL_0=real,LABEL_1=fake")
    with pytest.raises(ValueError, match="real, fake or ignore"):
        config_from_args(build_parser().parse_args(["--label_map", "x=y"]))


@pytest.mark.slow
def test_miner_handler_answers_with_the_hub_branch(models, tmp_path):
    import bittensor as bt

    from vidfake.miner.client import challenge_from_image, create_local_wallet
    from vidfake.miner.guard import Guard, Membership
    from vidfake.miner.protocol import is_valid_prediction
    from vidfake.miner.server import MinerConfig, MinerServer, detector_factory
    from vidfake.miner.service import MinerService, ServiceConfig

    factory = detector_factory("tiny", image_model=f"hf:{models['image']}", video_model=f"hf:{models['video']}")
    assert {"hf_image", "hf_video"} <= set(factory().branches)
    miner, validator = (create_local_wallet(n, tmp_path) for n in ("miner", "validator"))
    hk = validator.hotkey.ss58_address
    config = MinerConfig(ip="127.0.0.1", offline=True, allow_hotkeys=(hk,))
    service = MinerService(factory, ServiceConfig(workers=1)).start(calibrate=False)
    server = MinerServer(miner, Guard(config.guard, Membership.offline((hk,))), service, config)
    try:
        synapse = challenge_from_image(_photo()).synapse
        synapse.dendrite = bt.TerminalInfo(hotkey=hk)
        answered = asyncio.run(server.forward_image(synapse))
    finally:
        service.close()
    assert is_valid_prediction(answered.prediction), answered.axon


# --------------------------------------------------------------------------- training
@pytest.mark.slow
def test_train_fine_tunes_a_hub_image_model_for_a_step(models, tmp_path):
    from vidfake.training.config import TrainConfig
    from vidfake.training.recipes import train

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("real", "fake"):
            folder = tmp_path / "data" / split / label
            folder.mkdir(parents=True)
            for k in range(2):
                Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "run"
    cfg = TrainConfig(name="hf_test", model=f"hf:{models['image']}", out_dir=str(out), epochs=1, batch_size=2,
                      warmup_epochs=0.0, max_steps_per_epoch=1, device="cpu", num_workers=0,
                      data={"root": str(tmp_path / "data"), "kinds": ["image"], "trainable": ["classifier"]})
    before = load_hub_config(f"hf:{models['image']}", "image")
    result = train(cfg)
    assert result.history and np.isfinite(result.history[0].train_loss)
    assert (out / "best.safetensors").is_file()
    tuned = load_hub_config(f"hf:{out / 'hf_model'}", "image")  # a folder the detector takes as it is
    assert tuned.labels == before.labels and tuned.input_size == before.input_size
    from transformers import AutoModelForImageClassification

    a = AutoModelForImageClassification.from_pretrained(models["image"]).classifier.weight
    b = AutoModelForImageClassification.from_pretrained(out / "hf_model").classifier.weight
    assert not torch.equal(a, b)  # the head moved
