"""vidfake.temporal_models: every registered variant, TALL's layout-specific parts, the registry."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from vidfake.temporal_models import (
    ChecksumMismatchError,
    LoadReport,
    ModelConfig,
    WeightsError,
    create_model,
    get_config,
    list_models,
    load_weights,
    registry,
    save_weights,
)
from vidfake.temporal_models.tall_swin import (
    TALL_WINDOWS,
    resize_rel_pos_table,
    tall_cutout,
    thumbnail_index_map,
)

TEST_VARIANTS = ["tall_swin_test", "lip_test", "image2d_test", "npr_resnet"]
# (first layer weight, classifier weight) of each family, for the gradient checks.
ENDS = {
    "tall_swin_test": ("patch_embed.proj.weight", "head.fc.weight"),
    "lip_test": ("frontend.conv.weight", "fc.weight"),
    "image2d_test": ("conv_stem.weight", "classifier.weight"),
    "npr_resnet": ("conv1.weight", "fc.weight"),
}
# Full-size variants: parameter counts (millions, 2 logits) pin the architectures.
PARAMS_M = {
    "tall_swin_base": 86.92,
    "tall_swin_compact": 3.67,
    "lipforensics_mstcn": 35.99,
    "lipforensics_lstm": 14.34,
    "lip_compact_mstcn": 2.94,
    "efficientnet_lite0_detector": 3.37,
    "npr_resnet": 1.44,
}


# NPR is fully convolutional and full-size; a smaller image keeps its tests fast.
SMALL_IMAGE = {"npr_resnet": (3, 64, 64)}


def example_input(config: ModelConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A batch shaped as the config says the model eats."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = SMALL_IMAGE.get(config.name, config.input_size)
    if config.input_kind == "mouth_sequence":
        return torch.randn(batch, c, config.num_frames, h, w, generator=g)
    return torch.randn(batch, c, h, w, generator=g)


@pytest.fixture(scope="module")
def built() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: create_model(name) for name in TEST_VARIANTS}


def test_registry_lists_every_family():
    names = list_models()
    assert set(PARAMS_M) | {"tall_swin_test", "lip_test", "image2d_test"} == set(names)
    assert list_models("tall_*") == ["tall_swin_base", "tall_swin_compact", "tall_swin_test"]
    assert list_models("nothing*") == []


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown model 'tall_swin_compcat'.*tall_swin_compact"):
        create_model("tall_swin_compcat")
    with pytest.raises(ValueError, match="unknown model"):
        get_config("nope")


@pytest.mark.parametrize("name", sorted(PARAMS_M) + ["tall_swin_test", "lip_test", "image2d_test"])
def test_config_is_consistent(name):
    config = get_config(name)
    assert config.name == name
    assert config.num_classes == 2 and config.label_names == ("real", "fake") and config.fake_index == 1
    assert len(config.mean) == len(config.std) == config.input_size[0]
    expected = {
        "tall_swin": ("tall_layout", 4, "2x2"),
        "lip": ("mouth_sequence", 25, None),
        "image2d": ("image", 1, None),
    }
    assert (config.input_kind, config.num_frames, config.layout) == expected[config.family]
    assert config.paper and config.reference_repo.startswith("https://") and config.licence


def test_config_rejects_contradictions():
    base = get_config("tall_swin_test")
    with pytest.raises(ValueError, match="layout '2x2' goes with input_kind 'tall_layout'"):
        dataclasses.replace(base, layout=None)
    with pytest.raises(ValueError, match="mean/std lengths"):
        dataclasses.replace(base, mean=(0.5,))
    with pytest.raises(ValueError, match="weights_sha256"):
        dataclasses.replace(base, weights_sha256="abc")


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_forward_shapes_and_surface(built, name):
    model = built[name]
    config = get_config(name)
    assert model.pretrained_cfg is config and model.vidfake_config is config
    assert not model.training and model.load_report is None
    x = example_input(config)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        again = model.forward_head(features)
    assert logits.shape == (2, 2) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert pooled.ndim == 2 and pooled.shape[0] == 2
    head = model.get_classifier()
    assert (
        head.weight.shape == (2, pooled.shape[1]) and head is dict(model.named_modules())[ENDS[name][1][:-7]]
    )
    torch.testing.assert_close(again, logits)
    # Different inputs give different answers (the network is not constant).
    with torch.no_grad():
        assert not torch.allclose(model(example_input(config, seed=1)), logits)


def test_feature_map_layouts(built):
    x = example_input(get_config("tall_swin_test"))
    with torch.no_grad():
        feats = built["tall_swin_test"].forward_features(x)
        _, inter = built["tall_swin_test"].forward_intermediates(x)
        inter_nhwc = built["tall_swin_test"].forward_intermediates(
            x, indices=1, output_fmt="NHWC", norm=True, intermediates_only=True
        )
    assert feats.shape == (2, 7, 7, 128)  # NHWC last stage, 16 * 2**3 channels
    assert [t.shape[-2:] for t in inter] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    torch.testing.assert_close(inter_nhwc[0], feats)
    x = example_input(get_config("image2d_test"))
    with torch.no_grad():
        assert built["image2d_test"].forward_features(x).shape == (2, 1280, 7, 7)
        assert built["npr_resnet"].forward_features(x[..., :64, :64]).shape == (2, 512, 8, 8)
    x = example_input(get_config("lip_test"))
    with torch.no_grad():
        assert built["lip_test"].forward_frames(x).shape == (2, 25, 16)
        assert built["lip_test"].forward_features(x).shape == (2, 25, 12)


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_backward_reaches_head_and_first_layer(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    x = example_input(get_config(name))
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    params = dict(model.named_parameters())
    first, head = ENDS[name]
    for key in (first, head):
        grad = params[key].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, key
    missing = [k for k, p in params.items() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters outside the graph: {missing[:5]}"


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_safetensors_round_trip(built, name, tmp_path):
    model = built[name]
    path = tmp_path / f"{name}.safetensors"
    sha = save_weights(model, path, metadata={"epoch": 3})
    fresh = create_model(name, checkpoint_path=path)
    assert isinstance(fresh.load_report, LoadReport) and fresh.load_report.complete
    assert fresh.load_report.sha256 == sha
    x = example_input(get_config(name))
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_strict_false_reports_every_key(built, name, caplog):
    state = built[name].state_dict()
    dropped = next(iter(state))
    first, head = ENDS[name]
    state = {k: v for k, v in state.items() if k != dropped}
    state["extra.weight"] = torch.zeros(3)
    state[head] = torch.zeros(5, state[head].shape[1])
    fresh = create_model(name)
    with pytest.raises(WeightsError, match="missing 1.*unexpected 1.*shape mismatch 1"):
        load_weights(fresh, state)
    with caplog.at_level("WARNING", logger="vidfake.temporal_models.weights"):
        report = load_weights(fresh, state, strict=False)
    assert report.missing_keys == (dropped,)
    assert report.unexpected_keys == ("extra.weight",)
    assert [k for k, _, _ in report.mismatched_keys] == [head]
    assert report.loaded == len(state) - 2
    for key in (dropped, "extra.weight", head):
        assert key in caplog.text


@pytest.mark.parametrize("name", sorted(PARAMS_M))
def test_full_variants_instantiate_with_paper_sizes(name):
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        model = create_model(name)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert params == pytest.approx(PARAMS_M[name], abs=0.01)
    assert model.vidfake_config is get_config(name)


def test_compact_tall_runs_at_layout_size():
    model = create_model("tall_swin_compact")
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 2)


def test_tall_windows_per_stage():
    model = create_model("tall_swin_test", depths=(2, 2, 2, 2))
    windows = [stage.blocks[0].attn.window_size for stage in model.layers]
    assert windows == [(w, w) for w in TALL_WINDOWS]
    tables = [stage.blocks[0].attn.relative_position_bias_table.shape[0] for stage in model.layers]
    assert tables == [27 * 27, 27 * 27, 27 * 27, 13 * 13]
    # Shifted windows only where the grid holds more than one window (56 and 28); 14 and 7 attend globally.
    shifts = [stage.blocks[1].shift_size for stage in model.layers]
    assert shifts == [(7, 7), (7, 7), (0, 0), (0, 0)]


def test_thumbnail_index_map_is_row_major_quadrants():
    index = thumbnail_index_map((56, 56))
    assert index.shape == (56, 56)
    assert [index[0, 0], index[0, 55], index[55, 0], index[55, 55]] == [0, 1, 2, 3]
    assert index[27, 27] == 0 and index[27, 28] == 1 and index[28, 27] == 2
    assert torch.bincount(index.flatten()).tolist() == [28 * 28] * 4
    with pytest.raises(ValueError, match="does not split"):
        thumbnail_index_map((55, 56))


@pytest.mark.parametrize("quadrant", range(4))
def test_thumbnail_embedding_hits_only_its_quadrant(built, quadrant):
    model = built["tall_swin_test"]
    x = example_input(get_config("tall_swin_test"), batch=1)
    saved = model.thumbnail_embed.detach().clone()
    try:
        with torch.no_grad():
            model.thumbnail_embed.zero_()
            base = model.embed(x)
            model.thumbnail_embed[quadrant] = 100.0
            hot = model.embed(x)
    finally:
        with torch.no_grad():
            model.thumbnail_embed.copy_(saved)
    changed = (hot - base).abs().amax(dim=-1)[0] > 1.0  # (56, 56) tokens
    rows, cols = divmod(quadrant, 2)
    expected = torch.zeros(56, 56, dtype=torch.bool)
    expected[rows * 28 : rows * 28 + 28, cols * 28 : cols * 28 + 28] = True
    assert torch.equal(changed, expected)
    torch.testing.assert_close((hot - base)[0][expected], torch.full((28 * 28, 16), 100.0))


def test_thumbnail_embeddings_start_distinct(built):
    embed = built["tall_swin_test"].thumbnail_embed
    assert embed.shape == (4, 16)
    assert torch.cdist(embed, embed)[~torch.eye(4, dtype=torch.bool)].min() > 0


def _blanked(layout: torch.Tensor) -> torch.Tensor:
    """(B, 3, 224, 224) -> per-thumbnail blank masks (B, 4, 112, 112)."""
    mask = (layout == 0).all(dim=1)
    return mask.unflatten(1, (2, 112)).unflatten(3, (2, 112)).permute(0, 1, 3, 2, 4).flatten(1, 2)


def test_tall_cutout_blanks_same_block_in_all_thumbnails():
    x = torch.rand(6, 3, 224, 224) + 0.5  # no zeros before the cutout
    out = tall_cutout(x, size=8, fill=0.0, generator=torch.Generator().manual_seed(3))
    assert (x > 0).all(), "input must not be modified"
    masks = _blanked(out)
    positions = set()
    for b in range(6):
        m = masks[b]
        assert all(torch.equal(m[0], m[k]) for k in range(1, 4))
        ys, xs = torch.nonzero(m[0], as_tuple=True)
        assert len(ys) > 0
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert h <= 8 and w <= 8 and len(ys) == h * w, "one solid rectangle"
        positions.add((int(ys.min()), int(xs.min())))
        torch.testing.assert_close(out[b][:, ~(out[b] == 0).all(0)], x[b][:, ~(out[b] == 0).all(0)])
    assert len(positions) > 1, "each sample gets its own position"


def test_tall_cutout_on_clips_and_errors():
    clips = torch.ones(2, 4, 3, 16, 16)
    out = tall_cutout(clips, size=4, fill=-1.0, generator=torch.Generator().manual_seed(0))
    mask = (out == -1).all(dim=2)  # (B, T, H, W)
    for b in range(2):
        assert mask[b, 0].any() and all(torch.equal(mask[b, 0], mask[b, t]) for t in range(4))
    with pytest.raises(ValueError, match="expected layouts"):
        tall_cutout(torch.ones(3, 224, 224))
    with pytest.raises(ValueError, match="does not split"):
        tall_cutout(torch.ones(1, 3, 223, 224))


def test_cutout_only_in_training_when_enabled():
    torch.manual_seed(0)
    model = create_model("tall_swin_test", cutout=True, cutout_fill=0.0)
    x = torch.rand(2, 3, 224, 224) + 1.0
    plain = create_model("tall_swin_test")
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x), plain.embed(x))  # eval: no cutout
        model.train()
        plain.train()
        assert not torch.allclose(model.embed(x), plain.embed(x))
        assert torch.equal(plain.embed(x), plain.embed(x))  # flag off: nothing random


def test_rel_pos_table_resize_7_to_14_keeps_centre():
    table = torch.randn(13 * 13, 4)
    resized = resize_rel_pos_table(table, 14)
    assert resized.shape == (27 * 27, 4)
    centre_old, centre_new = 6 * 13 + 6, 13 * 27 + 13
    torch.testing.assert_close(resized[centre_new], table[centre_old])
    # The resized grid is smooth bicubic interpolation, not a copy or zeros.
    assert not torch.allclose(resized[centre_new + 1], resized[centre_new])
    assert resize_rel_pos_table(table, 7) is table


def test_pretrained_without_shipped_file_says_how_to_get_it():
    with pytest.raises(
        FileNotFoundError, match=r"tall_swin_base\.safetensors.*vidfake\.temporal_models\.pretrained"
    ):
        create_model("tall_swin_base", pretrained=True)  # the Swin-B variant ships no weights
    with pytest.raises(FileNotFoundError, match="no shipped weights"):
        create_model("lip_test", pretrained=True)
    with pytest.raises(ValueError, match="not both"):
        create_model("lip_test", pretrained=True, checkpoint_path={})


def test_pretrained_loads_shipped_file_and_checks_sha(built, tmp_path, monkeypatch):
    sha = save_weights(built["tall_swin_test"], tmp_path / "tall_test.safetensors")
    config = dataclasses.replace(
        get_config("tall_swin_test"), weights_file="tall_test.safetensors", weights_sha256=sha
    )
    monkeypatch.setattr(registry, "resources", SimpleNamespace(files=lambda package: tmp_path))
    monkeypatch.setitem(registry._CONFIGS, "tall_swin_test", config)
    model = create_model("tall_swin_test", pretrained=True)
    assert model.load_report.sha256 == sha and model.load_report.complete
    x = example_input(config)
    with torch.no_grad():
        assert torch.equal(model(x), built["tall_swin_test"](x))
    monkeypatch.setitem(
        registry._CONFIGS, "tall_swin_test", dataclasses.replace(config, weights_sha256="0" * 64)
    )
    with pytest.raises(ChecksumMismatchError, match="does not match"):
        create_model("tall_swin_test", pretrained=True)


def test_probabilities_follow_label_names(built):
    # Both logits are used: softmax over (real, fake) gives a proper probability of fake.
    x = example_input(get_config("lip_test"))
    with torch.no_grad():
        p = built["lip_test"](x).softmax(-1)[:, get_config("lip_test").fake_index]
    assert ((p > 0) & (p < 1)).all() and not math.isnan(float(p.sum()))
