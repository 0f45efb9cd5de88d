"""Lip-motion networks: a 3D-conv front end, a per-frame ResNet-18 trunk and a temporal head.

Paper: A. Haliassos, K. Vougioukas, S. Petridis, M. Pantic, "Lips Don't Lie: A Generalisable and
Robust Approach to Face Forgery Detection", CVPR 2021 (arXiv:2012.07657).
Reference code: https://github.com/ahaliassos/LipForensics (MIT licence; its ``lipforensics_ff.pth``
weights come with the repository's terms), whose ResNet+MS-TCN comes from
https://github.com/mpc001/Lipreading_using_Temporal_Convolutional_Networks. This file is an independent
implementation; the trunk's residual stages are built with timm's ``make_blocks``/``BasicBlock``.

Architecture of ``lipforensics_mstcn`` (the paper's, config ``lrw_resnet18_mstcn.json``):

* input ``(B, 1, T=25, 88, 88)`` grey mouth crops in [0, 1] normalised with mean 0.421, std 0.165;
* front end ``Conv3d(1, 64, (5, 7, 7), stride (1, 2, 2), pad (2, 3, 3))`` + BatchNorm3d + PReLU +
  ``MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))`` -> ``(B, 64, T, 22, 22)``;
* per-frame ResNet-18 stages (64, 128, 256, 512 channels, 2 BasicBlocks each, PReLU activations, no stem)
  and global average pooling -> ``(B, T, 512)``;
* multi-scale TCN: 4 blocks, each two rounds of three parallel dilated ``Conv1d`` branches (kernels 3, 5,
  7; 256 channels each, concatenated to 768; dilation ``2 ** block``) with BatchNorm, PReLU and dropout
  0.2, a 1x1 residual projection and a final PReLU -> ``(B, T, 768)``;
* mean over time and a linear layer. The reference has one logit (fake); ours has two (real, fake) and
  ``lip_checkpoint_filter_fn`` maps the single logit ``z`` to ``[0, z]``, so ``softmax`` equals the
  reference's ``sigmoid(z)``.

The reference pads each TCN convolution by ``(k - 1) * d`` on both sides and trims half of that from each
end after BatchNorm; here the convolution pads ``(k - 1) * d / 2`` per side. Both give the same output in
eval mode; in training, the reference's BatchNorm statistics also see the padded ends.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Sequence

import torch
from einops import rearrange
from timm.models.resnet import BasicBlock, make_blocks
from torch import nn

from vidfake.temporal_models.config import LIP_MEAN, LIP_STD, ModelConfig
from vidfake.temporal_models.registry import register_config, register_model
from vidfake.temporal_models.weights import StateDict

__all__ = [
    "LipForensicsNet",
    "LipFrontend",
    "MultiscaleTCN",
    "TemporalBiLSTM",
    "lip_checkpoint_filter_fn",
]

_logger = logging.getLogger(__name__)


def _act(kind: str, channels: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(num_parameters=channels)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"activation must be 'prelu' or 'relu', got {kind!r}")


class LipFrontend(nn.Module):
    """3D convolution over (time, height, width) then spatial max pooling.

    ``(B, 1, T, H, W)`` -> ``(B, C, T, H / 4, W / 4)`` (time kept: kernel 5, padding 2, stride 1).
    """

    def __init__(self, out_channels: int = 64, act: str = "prelu"):
        super().__init__()
        self.conv = nn.Conv3d(1, out_channels, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
        self.bn = nn.BatchNorm3d(out_channels)
        self.act = _act(act, out_channels)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.bn(self.conv(x))))


def _resnet_trunk(
    in_channels: int, channels: Sequence[int], layers: Sequence[int], act: str
) -> nn.Sequential:
    """ResNet stages (timm ``BasicBlock``s, no stem), activations swapped for per-channel PReLU if asked."""
    stages, _ = make_blocks(
        (BasicBlock,) * len(channels),
        tuple(channels),
        tuple(layers),
        in_channels,
        act_layer=nn.ReLU,
        norm_layer=nn.BatchNorm2d,
    )
    trunk = nn.Sequential(OrderedDict(stages))
    if act != "relu":
        # timm instantiates act_layer(inplace=True) without a channel count; LipForensics uses
        # per-channel PReLU after each BatchNorm and after the residual sum.
        for block in trunk.modules():
            if isinstance(block, BasicBlock):
                planes = block.bn2.num_features
                block.act1 = _act(act, block.bn1.num_features)
                block.act2 = _act(act, planes)
    for m in trunk.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return trunk


class _BranchConv(nn.Module):
    """Dilated ``Conv1d`` + BatchNorm + activation, length-preserving (odd kernels)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int, act: str):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"TCN kernels must be odd to keep the sequence length, got {kernel}")
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=(kernel - 1) * dilation // 2, dilation=dilation)
        self.bn = nn.BatchNorm1d(c_out)
        self.act = _act(act, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MultiscaleTemporalBlock(nn.Module):
    """Two rounds of parallel multi-kernel dilated convolutions with a residual connection."""

    def __init__(
        self, c_in: int, c_out: int, kernels: Sequence[int], dilation: int, dropout: float, act: str
    ):
        super().__init__()
        if c_out % len(kernels):
            raise ValueError(f"TCN width {c_out} must be divisible by the {len(kernels)} branches")
        c_branch = c_out // len(kernels)
        self.branches0 = nn.ModuleList(_BranchConv(c_in, c_branch, k, dilation, act) for k in kernels)
        self.drop0 = nn.Dropout(dropout)
        self.branches1 = nn.ModuleList(_BranchConv(c_out, c_branch, k, dilation, act) for k in kernels)
        self.drop1 = nn.Dropout(dropout)
        # The reference's condition, kept so its checkpoints load: with 3 branches it projects in every
        # block, including those whose input and output widths are equal.
        self.downsample = nn.Conv1d(c_in, c_out, 1) if c_in // len(kernels) != c_out else None
        self.act = _act(act, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop0(torch.cat([b(x) for b in self.branches0], dim=1))
        y = self.drop1(torch.cat([b(y) for b in self.branches1], dim=1))
        return self.act(y + (x if self.downsample is None else self.downsample(x)))


class MultiscaleTCN(nn.Module):
    """Multi-scale temporal convolutional network: ``(B, T, C_in)`` -> ``(B, T, width)``.

    Block ``i`` uses dilation ``2 ** i``; every convolution keeps the length ``T``.
    """

    def __init__(
        self,
        c_in: int,
        width: int = 768,
        num_layers: int = 4,
        kernels: Sequence[int] = (3, 5, 7),
        dropout: float = 0.2,
        act: str = "prelu",
    ):
        super().__init__()
        self.out_features = width
        self.blocks = nn.Sequential(
            *(
                MultiscaleTemporalBlock(c_in if i == 0 else width, width, kernels, 2**i, dropout, act)
                for i in range(num_layers)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x.transpose(1, 2)).transpose(1, 2)


class TemporalBiLSTM(nn.Module):
    """Bidirectional LSTM: ``(B, T, C_in)`` -> ``(B, T, 2 * hidden)``."""

    def __init__(self, c_in: int, hidden: int = 256, num_layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.out_features = 2 * hidden
        self.lstm = nn.LSTM(
            c_in,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


class LipForensicsNet(nn.Module):
    """Front end + per-frame ResNet trunk + temporal head over mouth-crop sequences.

    Input ``(B, 1, T, H, W)`` float grey mouth crops (LipForensics: ``T = 25``, ``H = W = 88``),
    normalised with mean 0.421, std 0.165; output logits ``(B, num_classes)`` (index 1 = fake).

    Args:
        frontend_channels: channels of the 3D front end (64 in the paper).
        trunk_channels: channels of the four ResNet stages.
        trunk_layers: BasicBlocks per stage.
        temporal: ``"mstcn"`` or ``"lstm"``.
        tcn_width: MS-TCN channels (branch width times the number of kernels).
        tcn_layers: MS-TCN blocks.
        tcn_kernels: MS-TCN branch kernel sizes (odd).
        lstm_hidden: LSTM hidden size per direction.
        lstm_layers: stacked LSTM layers.
        dropout: dropout inside the temporal head.
        drop_rate: dropout before the classifier.
        act: ``"prelu"`` (the paper) or ``"relu"``.
        num_classes: logits.
    """

    def __init__(
        self,
        frontend_channels: int = 64,
        trunk_channels: Sequence[int] = (64, 128, 256, 512),
        trunk_layers: Sequence[int] = (2, 2, 2, 2),
        temporal: str = "mstcn",
        tcn_width: int = 768,
        tcn_layers: int = 4,
        tcn_kernels: Sequence[int] = (3, 5, 7),
        lstm_hidden: int = 256,
        lstm_layers: int = 2,
        dropout: float = 0.2,
        drop_rate: float = 0.0,
        act: str = "prelu",
        num_classes: int = 2,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.frontend = LipFrontend(frontend_channels, act)
        self.trunk = _resnet_trunk(frontend_channels, trunk_channels, trunk_layers, act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.trunk_features = trunk_channels[-1]
        if temporal == "mstcn":
            self.temporal: nn.Module = MultiscaleTCN(
                self.trunk_features, tcn_width, tcn_layers, tcn_kernels, dropout, act
            )
        elif temporal == "lstm":
            self.temporal = TemporalBiLSTM(self.trunk_features, lstm_hidden, lstm_layers, dropout)
        else:
            raise ValueError(f"temporal must be 'mstcn' or 'lstm', got {temporal!r}")
        self.num_features = self.head_hidden_size = self.temporal.out_features
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)

    def get_classifier(self) -> nn.Module:
        """The final linear layer (timm's model surface)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one of ``num_classes`` outputs."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Front end and trunk: ``(B, 1, T, H, W)`` -> per-frame embeddings ``(B, T, trunk_features)``."""
        if x.ndim != 5 or x.shape[1] != 1:
            raise ValueError(f"expected mouth sequences (B, 1, T, H, W), got shape {tuple(x.shape)}")
        b = x.shape[0]
        x = self.frontend(x)
        x = rearrange(x, "b c t h w -> (b t) c h w")
        x = self.pool(self.trunk(x)).flatten(1)
        return rearrange(x, "(b t) c -> b t c", b=b)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, T, H, W)`` -> per-time-step temporal features ``(B, T, num_features)``."""
        return self.temporal(self.forward_frames(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mean over time of ``(B, T, num_features)``, then the classifier (``(B, num_classes)``)."""
        x = self.head_drop(x.mean(dim=1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_RENAMES = (
    (re.compile(r"^frontend3D\.0\."), "frontend.conv."),
    (re.compile(r"^frontend3D\.1\."), "frontend.bn."),
    (re.compile(r"^frontend3D\.2\."), "frontend.act."),
    (re.compile(r"^(trunk\.layer\d+\.\d+)\.relu([12])\."), r"\1.act\2."),
    (
        re.compile(r"^tcn\.mb_ms_tcn\.network\.(\d+)\.cbcr([01])_(\d+)\.conv\."),
        r"temporal.blocks.\1.branches\2.\3.conv.",
    ),
    (
        re.compile(r"^tcn\.mb_ms_tcn\.network\.(\d+)\.cbcr([01])_(\d+)\.batchnorm\."),
        r"temporal.blocks.\1.branches\2.\3.bn.",
    ),
    (
        re.compile(r"^tcn\.mb_ms_tcn\.network\.(\d+)\.cbcr([01])_(\d+)\.non_lin\."),
        r"temporal.blocks.\1.branches\2.\3.act.",
    ),
    (re.compile(r"^tcn\.mb_ms_tcn\.network\.(\d+)\.downsample\."), r"temporal.blocks.\1.downsample."),
    (re.compile(r"^tcn\.mb_ms_tcn\.network\.(\d+)\.relu_final\."), r"temporal.blocks.\1.act."),
)


def _single_logit_to_two(value: torch.Tensor) -> torch.Tensor:
    """Reference head with one fake logit ``z`` -> two logits ``[0, z]`` (``softmax[1] == sigmoid(z)``)."""
    return torch.cat([torch.zeros_like(value), value], dim=0)


def lip_checkpoint_filter_fn(state_dict: StateDict, model: nn.Module) -> StateDict:
    """Convert a LipForensics checkpoint (``lipforensics_ff.pth``) to :class:`LipForensicsNet` keys.

    ``torch.load(...)["model"]`` is unwrapped by :func:`~.weights.load_weights`; a ``module.`` prefix on
    every key is removed. ``frontend3D.{0,1,2}`` -> ``frontend.{conv,bn,act}``; trunk ``relu1/relu2`` ->
    ``act1/act2``; ``tcn.mb_ms_tcn.network.I.cbcrJ_K.{conv,batchnorm,non_lin}`` ->
    ``temporal.blocks.I.branchesJ.K.{conv,bn,act}``; ``...downsample``/``relu_final`` ->
    ``temporal.blocks.I.{downsample,act}``; ``tcn.tcn_output`` (1 logit) -> ``fc`` (2 logits ``[0, z]``).
    Keys already in this model's naming pass unchanged.
    """
    state = dict(state_dict)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    out: StateDict = {}
    for key, value in state.items():
        if key.startswith("tcn.tcn_output."):
            key = "fc." + key[len("tcn.tcn_output.") :]
            if value.shape[0] == 1:
                value = _single_logit_to_two(value)
        else:
            for pattern, replacement in _RENAMES:
                key, n = pattern.subn(replacement, key)
                if n:
                    break
        out[key] = value
    return out


_LIP_CFG = dict(
    family="lip",
    input_kind="mouth_sequence",
    input_size=(1, 88, 88),
    num_frames=25,
    layout=None,
    roi="mouth",
    mean=LIP_MEAN,
    std=LIP_STD,
    interpolation="bilinear",
    licence="code: Apache-2.0 (vidfake), after LipForensics (MIT)",
    paper=(
        "Haliassos et al., Lips Don't Lie: A Generalisable and Robust Approach to Face Forgery "
        "Detection, CVPR 2021"
    ),
    reference_repo="https://github.com/ahaliassos/LipForensics",
)

register_config(
    ModelConfig(
        name="lipforensics_mstcn",
        weights_file="lipforensics_mstcn.safetensors",
        weights_source=(
            "Not shipped: the paper pre-trains on LRW lip reading, then fine-tunes on FaceForensics++. "
            "The authors' lipforensics_ff.pth (Google Drive link in their README) loads with "
            "create_model('lipforensics_mstcn', checkpoint_path='lipforensics_ff.pth')."
        ),
        **_LIP_CFG,
    )
)
register_config(
    ModelConfig(
        name="lipforensics_lstm",
        weights_file="lipforensics_lstm.safetensors",
        weights_source="Trained by vidfake (vidfake.training); not yet shipped in this build.",
        **_LIP_CFG,
    )
)
register_config(
    ModelConfig(
        name="lip_compact_mstcn",
        weights_file="lip_compact_mstcn.safetensors",
        weights_source=(
            "Shipped: trained by vidfake on ../shared/data with configs/train_lip.yaml; "
            "card: pretrained/lip_compact_mstcn.md"
        ),
        weights_sha256="cdd892ca6e93dbee45ec95c2534625926c06b22cd959c714e7bb6a50d01885fc",
        **_LIP_CFG,
    )
)
register_config(ModelConfig(name="lip_test", weights_source="tiny variant for tests; no weights", **_LIP_CFG))


@register_model(checkpoint_filter=lip_checkpoint_filter_fn)
def lipforensics_mstcn(**kwargs) -> LipForensicsNet:
    """LipForensics as in the paper: ResNet-18 trunk, MS-TCN 4 x (3 x 256), PReLU; 36.0 M params."""
    return LipForensicsNet(**kwargs)


@register_model(checkpoint_filter=lip_checkpoint_filter_fn)
def lipforensics_lstm(**kwargs) -> LipForensicsNet:
    """LipForensics trunk with a 2-layer bidirectional LSTM (256 per direction) instead of the MS-TCN."""
    return LipForensicsNet(**{"temporal": "lstm", **kwargs})


@register_model(checkpoint_filter=lip_checkpoint_filter_fn)
def lip_compact_mstcn(**kwargs) -> LipForensicsNet:
    """CPU-trainable: front end 32, trunk (32, 64, 128, 256) x 1 block, MS-TCN 4 x (3 x 64)."""
    args = dict(
        frontend_channels=32,
        trunk_channels=(32, 64, 128, 256),
        trunk_layers=(1, 1, 1, 1),
        tcn_width=192,
        tcn_layers=4,
    )
    return LipForensicsNet(**{**args, **kwargs})


@register_model(checkpoint_filter=lip_checkpoint_filter_fn)
def lip_test(**kwargs) -> LipForensicsNet:
    """Tiny lip model for tests."""
    args = dict(
        frontend_channels=8,
        trunk_channels=(8, 8, 16, 16),
        trunk_layers=(1, 1, 1, 1),
        tcn_width=12,
        tcn_layers=2,
    )
    return LipForensicsNet(**{**args, **kwargs})
