"""Leave-one-source-out: source groups, the feature cache, the fold protocol, confound features."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from vidfake.training import features as F
from vidfake.training.data import MediaItem
from vidfake.training.groups import UnknownSourceError, assign_groups, group_of
from vidfake.training.loso import deal_real_folds, evaluate, make_folds


def _item(label: int, method: str = "none", source: str = "x/y", kind: str = "image", path: str = "a.jpg"):
    return MediaItem(path=Path(path), label=label, kind=kind, split="train", group="g", method=method,
                     source=source, class3=label)


# --------------------------------------------------------------------------- groups
@pytest.mark.parametrize("method, source, group", [
    ("OminiControl (FLUX.1 based, subject-driven) (text-to-image generator)", "Yuanshi9815/OminiControl",
     "FLUX family"),
    ("Stable Diffusion 1.5 fine-tune (Deliberate 2.0)", "SupaGruen/StableDiffusion-CheatSheet", "SD1.5"),
    ("BrushNet (SD1.5) inpainting, prompt 'a cut toy'", "TencentARC/BrushNet", "inpainting"),
    ("DALL-E 2 inpainting", "openai/dalle-2-preview", "inpainting"),
    ("DALL-E 2 (text-to-image generator)", "openai/dalle-2-preview", "DALL-E 2"),
    ("CogView4-6B (text-to-image generator)", "vipshop/cache-dit", "CogView"),
    ("unknown text-to-image generator", "Laboratoriet/real-or-ai-game", "real-or-ai-game"),
])
def test_fake_family(method, source, group):
    assert group in group_of(_item(1, method, source))


def test_reals_group_by_source_and_videos_have_groups():
    assert group_of(_item(0, source="EliSchwartz/imagenet-sample-images")) == "ImageNet samples"
    assert "stargan" in group_of(_item(0, source="clovaai/stargan-v2"))
    # The same source repo holds reals and fakes: the label decides the side.
    assert group_of(_item(0, source="Laboratoriet/real-or-ai-game")) != group_of(
        _item(1, "unknown", "Laboratoriet/real-or-ai-game"))
    assert "face swap" in group_of(_item(1, "DeepFaceLive (DFM real-time face swap)", kind="video"))
    assert "AnimateDiff" in group_of(_item(1, "AnimateDiff v1 + LoRA, T2V", kind="video"))


def test_unknown_source_raises():
    with pytest.raises(UnknownSourceError, match="no source group"):
        group_of(_item(1, "a brand-new generator", "someone/new"))
    with pytest.raises(UnknownSourceError):
        group_of(_item(0, source="someone/new-photos"))


@pytest.mark.data
def test_every_manifest_row_has_one_label_group(shared_data):
    from vidfake.training.data import read_manifest

    items = read_manifest(shared_data, check_files=False)
    groups = assign_groups(items)
    labels: dict[str, set[int]] = {}
    for item, g in zip(items, groups, strict=True):
        labels.setdefault(g, set()).add(item.label)
    assert all(len(v) == 1 for v in labels.values()), {g: v for g, v in labels.items() if len(v) > 1}
    images = [g for i, g in zip(items, groups, strict=True) if i.kind == "image"]
    small = {g: images.count(g) for g in set(images) if images.count(g) < 8}
    assert not small, f"image groups under 8 items: {small}"


# --------------------------------------------------------------------------- feature cache
def _tiny_extractor(calls: list, recipe: dict | None = None) -> F.Extractor:
    def build():
        def fn(image, views, path):
            calls.append(Path(path).name)
            ims = [image, *views]
            return {"mean": np.array([[im.mean(), im.shape[0]] for im in ims], np.float32)}

        return fn

    return F.Extractor("tiny", "mean-pixel", ("mean",), recipe or {"r": 1}, build, lambda: "w1")


def _images(tmp_path: Path, n: int) -> list[MediaItem]:
    from PIL import Image

    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        p = tmp_path / ("fake" if i % 2 else "real") / f"im{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), dtype=np.uint8)).save(p)
        items.append(_item(i % 2, path=str(p)))
    return items


def test_cache_resumes_and_key_tracks_recipe(tmp_path):
    items = _images(tmp_path, 5)
    calls: list = []
    ex = _tiny_extractor(calls)
    status = F.extract(items[:3], ex, views=2, root=tmp_path / "c", shard_items=2, progress=False)
    assert set(status["tiny"].values()) == {"cached"} and len(calls) == 3
    status = F.extract(items, ex, views=2, root=tmp_path / "c", shard_items=2, progress=False)
    assert len(calls) == 5, "cached items must not be recomputed"
    assert sum(v == "exists" for v in status["tiny"].values()) == 3
    cache = F.FeatureCache(ex, F.ViewSpec(2), tmp_path / "c")
    stored = cache.load()
    assert len(stored) == 5 and stored[F.item_id(items[1].path)]["mean"].shape == (2, 2)
    # View 1 is the validators' 256 px output; view 0 is the image as stored.
    assert stored[F.item_id(items[4].path)]["mean"][:, 1].tolist() == [72.0, 256.0]
    # Another recipe, weights or view count is another entry; this one is untouched.
    other = _tiny_extractor([], {"r": 2})
    assert other.key(F.ViewSpec(2)) != ex.key(F.ViewSpec(2)) != ex.key(F.ViewSpec(3))
    assert replace(ex, weights=lambda: "w2").key(F.ViewSpec(2)) != ex.key(F.ViewSpec(2))


def test_views_are_deterministic_per_file_and_seed():
    image = np.random.default_rng(1).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    a = F.make_views(image, "fake/a.jpg", F.ViewSpec(3, seed=0))
    b = F.make_views(image, "fake/a.jpg", F.ViewSpec(3, seed=0))
    assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert F.view_params("fake/a.jpg", 1, F.ViewSpec(3)) != F.view_params("fake/b.jpg", 1, F.ViewSpec(3))
    assert F.view_params("fake/a.jpg", 1, F.ViewSpec(3)) != F.view_params("fake/a.jpg", 1, F.ViewSpec(3, 1))


def test_native_crops_do_not_resize():
    image = np.arange(300 * 400 * 3, dtype=np.uint32).reshape(300, 400, 3).astype(np.uint8)
    crops = F.native_crops(image, 224, 3)
    assert crops.shape == (3, 224, 224, 3)
    assert np.array_equal(crops[1], image[:224, :224]) and np.array_equal(crops[2], image[-224:, -224:])
    assert F.native_crops(image[:100, :150], 224, 1).shape == (1, 224, 224, 3)  # small: upscaled


# --------------------------------------------------------------------------- confounds
def test_confound_features(tmp_path):
    from PIL import Image

    path = tmp_path / "x.jpg"
    Image.fromarray(np.full((100, 200, 3), 128, np.uint8)).save(path, quality=95)
    image = np.asarray(Image.open(path))
    out = F.confound_features(image, [np.zeros((256, 256, 3), np.uint8)], path)
    size, jpeg = out["size"], out["jpeg"]
    assert size.shape == (2, 6) and jpeg.shape == (2, 3)
    assert size[0, :2].tolist() == [200, 100] and size[0, 4] == 0 and np.isclose(size[0, 3], np.log(2))
    assert size[1, :2].tolist() == [256, 256] and size[1, 4] == 1
    assert np.isclose(jpeg[0, 0], np.log(path.stat().st_size))
    assert jpeg[1, 2] > jpeg[0, 2], "quality 75 quantises more coarsely than 95"


# --------------------------------------------------------------------------- folds
def test_real_folds_are_balanced_and_deterministic():
    sizes = {"a": 300, "b": 200, "c": 100, "d": 100, "e": 50}
    folds = deal_real_folds(sizes, 2)
    assert sorted(sum(sizes[g] for g in f) for f in folds) == [350, 400]
    assert folds == deal_real_folds(dict(reversed(list(sizes.items()))), 2)
    with pytest.raises(ValueError, match="both labels"):
        make_folds(np.array([0, 1]), ["g", "g"])


class _Spy:
    """Stand-in head: feature 0 is the row's item index; it checks that no held-out item was trained on."""

    log: list = []

    def __init__(self, groups):
        self.groups = groups

    def fit(self, x, y):
        self.trained = set(self.groups[x[:, 0].astype(int)])
        return self

    def predict_proba(self, x):
        scored = set(self.groups[x[:, 0].astype(int)])
        _Spy.log.append((self.trained, scored))
        p = x[:, 1:2]
        return np.hstack([1 - p, p])


def test_loso_never_trains_on_a_scored_group():
    rng = np.random.default_rng(0)
    groups = np.array(["f1"] * 6 + ["f2"] * 6 + ["f3"] * 6 + ["r1"] * 6 + ["r2"] * 6 + ["r3"] * 6)
    labels = np.array([1] * 18 + [0] * 18)
    n, k = len(labels), 3
    x = np.zeros((n, k, 2), np.float32)
    x[:, :, 0] = np.arange(n)[:, None]
    x[:, :, 1] = (labels[:, None] * 0.5 + rng.random((n, k)) * 0.5)  # separable: AUC 1 up to noise
    _Spy.log.clear()
    r = evaluate(x, labels, groups, lambda: _Spy(groups), real_folds=3)
    assert len(_Spy.log) == 9 * 2  # 3 fake groups x 3 real folds, clean + validator
    for trained, scored in _Spy.log:
        assert trained and scored and not trained & scored
    assert [g.group for g in r.fake_groups] == ["f1", "f2", "f3"] and r.views == 3
    assert all(g.auc_clean == 1.0 and g.auc_validator == 1.0 for g in r.fake_groups)


def test_reference_row_uses_the_logit_untrained():
    groups = np.array(["f"] * 4 + ["r"] * 4)
    labels = np.array([1] * 4 + [0] * 4)
    x = np.where(labels[:, None, None] == 1, 2.0, -2.0) * np.ones((8, 2, 1))
    x[0, 0, 0] = -3.0  # one fake below every real on the clean view
    r = evaluate(x, labels, groups, None, real_folds=1)
    assert not r.loso and r.fake_groups[0].auc_clean == 0.75 and r.fake_groups[0].auc_validator == 1.0


def _content_confounded(seed: int):
    """Toy rows where content (art or photo: strong) predicts the label in training and a weak trace does
    in every source: ``(make(n, label, art), training parts [(x, label, group)])``."""
    rng = np.random.default_rng(seed)

    def make(n, label, art):
        x = rng.normal(0, 0.3, (n, 6))
        x[:, 0] += 0.15 if label else -0.15  # the trace: weak, the same in every source
        x[:, 1] += 2.0 if art else -2.0  # the content: art or photo, strong
        return x

    # Training: fakes mostly art, reals mostly photo, so content predicts the label there.
    parts = [(make(300, 1, True), 1, "f_art"), (make(60, 1, False), 1, "f_photo"),
             (make(60, 0, True), 0, "r_art"), (make(300, 0, False), 0, "r_photo")]
    return make, parts


def test_source_projection_removes_what_tells_sources_of_a_label_apart():
    from sklearn.metrics import roc_auc_score

    from vidfake.training.loso import HEADS, SourceProjection

    make, parts = _content_confounded(0)
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([[p[1]] * len(p[0]) for p in parts])
    g = np.concatenate([[p[2]] * len(p[0]) for p in parts])
    nap = HEADS["logreg_nap"]().fit(x, y, g)
    assert isinstance(nap, SourceProjection)
    # The strongest direction removed is the content axis (the others are the group means' noise).
    assert abs(nap.basis[0, 1]) > 0.95
    # Unseen sources with the content flipped: photo fakes against art reals.
    xt = np.concatenate([make(200, 1, False), make(200, 0, True)])
    yt = np.array([1] * 200 + [0] * 200)
    plain = HEADS["logreg"]().fit(x, y)
    assert roc_auc_score(yt, plain.predict_proba(xt)[:, 1]) < 0.5  # it learned the content
    assert roc_auc_score(yt, nap.predict_proba(xt)[:, 1]) > 0.65  # the trace alone allows 0.76


def test_tail_on_cached_maps_is_the_recipe_model():
    import torch

    from vidfake.training.config import load_train_config
    from vidfake.training.tail import RECIPE, _tail_module

    tail = _tail_module(load_train_config(RECIPE)).eval()
    image = (np.random.default_rng(0).random((300, 260, 3)) * 255).astype(np.uint8)
    maps = F.EXTRACTORS["lite0_stage5"].build()(image, [], Path("x.jpg"))["map"]
    assert maps.shape == (1, 192 * 7 * 7)
    x = F._to_input(F.global_view(image, 0)[None], 224)  # view 0: the validators' level 0, then 224 px
    with torch.inference_mode():
        full = tail.net(x)  # the whole model on the image: frozen part included
        cut = tail(torch.from_numpy(maps))  # the trainable part on the cached map
    # The extractor's backbone and the recipe's model share the ImageNet weights of every frozen layer.
    torch.testing.assert_close(cut, full, atol=1e-4, rtol=1e-4)
    # Only the recipe's layers train.
    names = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else "")
             for n, p in tail.net.named_parameters() if p.requires_grad}
    assert names == {"blocks.6", "conv_head", "bn2", "classifier"}


def test_tail_finetune_learns_and_rejects_other_features():
    from sklearn.metrics import roc_auc_score

    from vidfake.training.tail import TailFinetune

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 80)
    x = rng.normal(0, 1, (160, 192 * 49)).astype(np.float32)
    x[y == 1, :192 * 10] += 1.0
    head = TailFinetune(epochs=1).fit(x, y)
    assert roc_auc_score(y, head.predict_proba(x)[:, 1]) > 0.9
    with pytest.raises(ValueError, match="lite0_stage5"):
        head.predict_proba(np.zeros((2, 4128), np.float32))


def test_training_free_score_is_a_loso_row_and_needs_one_column():
    groups = np.array(["f"] * 4 + ["r"] * 4)
    labels = np.array([1] * 4 + [0] * 4)
    x = np.where(labels[:, None, None] == 1, 0.2, 0.1) * np.ones((8, 2, 1))
    x[1, 1, 0] = 0.0  # one fake below every real on its validator view
    r = evaluate(x, labels, groups, "score", real_folds=1)
    assert r.loso and r.head == "score"  # it trained on nothing, so it saw no source: a LOSO figure
    assert r.fake_groups[0].auc_clean == 1.0 and r.fake_groups[0].auc_validator == 0.75
    with pytest.raises(ValueError, match="one column"):
        evaluate(np.ones((8, 2, 3)), labels, groups, "score", real_folds=1)


def test_rigid_features_are_seeded_and_measure_change():
    bb = F._lite0_backbone()
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    a = F.rigid_features(bb, batch, "real/a.jpg")
    b = F.rigid_features(bb, batch, "real/a.jpg")
    c = F.rigid_features(bb, batch, "real/b.jpg")
    assert a["rigid"].shape == (2, 2 * 8 * 2) and a["score"].shape == (2, 1)
    np.testing.assert_array_equal(a["rigid"], b["rigid"])  # the noise is seeded by the file id
    assert not np.array_equal(a["rigid"], c["rigid"])
    cos, rel = a["rigid"][:, 0::2], a["rigid"][:, 1::2]
    assert np.all(cos <= 1.0 + 1e-5) and np.all(cos > 0.5) and np.all(rel > 0)
    # more noise moves the features further: the second sigma's relative changes exceed the first's
    assert np.all(rel[:, 8:] > rel[:, :8])
    assert np.all(a["score"] >= 0)


def test_content_balanced_head_learns_within_content():
    from sklearn.metrics import roc_auc_score

    from vidfake.training.loso import HEADS, ContentBalanced, content_balanced_weights

    make, parts = _content_confounded(1)
    parts.append((make(40, 1, True) + [0, 0, 6, 0, 0, 0], 1, "f_anime"))  # a content no real shares
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([[p[1]] * len(p[0]) for p in parts])
    g = np.concatenate([[p[2]] * len(p[0]) for p in parts])
    w = content_balanced_weights(x, y, g, k=4)
    art, anime = x[:, 1] > 0, x[:, 2] > 3
    for side in (art & ~anime, ~art):  # mixed content: reals and fakes weigh the same
        assert w[side & (y == 0)].sum() == pytest.approx(w[side & (y == 1)].sum(), rel=0.05)
    # One label only: it teaches content, so it keeps CONTENT_FLOOR of the sixth it has group-balanced.
    assert w[anime].sum() / w.sum() < 0.02
    head = HEADS["logreg_content"]().fit(x, y, g)
    assert isinstance(head, ContentBalanced)
    xt = np.concatenate([make(200, 1, False), make(200, 0, True)])  # content flipped
    yt = np.array([1] * 200 + [0] * 200)
    assert roc_auc_score(yt, HEADS["logreg"]().fit(x, y).predict_proba(xt)[:, 1]) < 0.5
    assert roc_auc_score(yt, head.predict_proba(xt)[:, 1]) > 0.65


def test_zeroshot_scores_are_seeded_and_named():
    zs = F._ZeroShot()
    assert tuple(zs.fc_w.shape) == (1000, 1280) and tuple(zs.fc_b.shape) == (1000,)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    a = F.zeroshot_features(zs, batch, "real/a.jpg")
    b = F.zeroshot_features(zs, batch, "real/a.jpg")
    c = F.zeroshot_features(zs, batch, "real/b.jpg")
    assert a["zs"].shape == (2, len(F.ZS_COLUMNS)) and np.isfinite(a["zs"]).all()
    np.testing.assert_array_equal(a["zs"], b["zs"])  # every draw is seeded by the file id
    def column(out, name):  # what candidate zs_<name> reads from a cached (N, K, D) block
        ex_name, block, pick = F.CANDIDATES[f"zs_{name}"]
        assert ex_name == "lite0_zeroshot" and F.EXTRACTORS[ex_name].blocks == (block,)
        return pick(out[block][None])[0, :, 0]

    col = {name: column(a, name) for name in F.ZS_COLUMNS}
    for i, name in enumerate(F.ZS_COLUMNS):
        np.testing.assert_array_equal(a["zs"][:, i], col[name])
    moved = [f"mid{k}" for k in F.ZS_STARTS] + ["mid5x4", "hf_mid", "hf_head"]
    assert not np.array_equal(a["zs"][:, :len(moved)], c["zs"][:, :len(moved)])  # another file, other draws
    assert all(np.all(col[name] > 0) for name in [*moved, "wepe"])  # every perturbation moves the embedding
    np.testing.assert_array_equal(col["wepe"], column(c, "wepe"))  # fixed weight draws, no per-file noise
    assert np.all((col["msp"] < 0) & (col["msp"] >= -1)) and np.all(col["entropy"] > 0)
    assert np.all(-col["msp"] >= np.exp(-col["entropy"]) - 1e-6)  # max p >= exp(-H): the columns line up


def test_rigid_draws_repeat_the_shipped_term_for_draw_zero():
    import torch

    from vidfake.probe import RIGID_SIGMA, RIGID_START, perturb_map, rigid_noise, rigid_score
    from vidfake.scene import Lite0Trunk

    trunk = Lite0Trunk()
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    d = F.rigid_draws_features(trunk, batch, "real/a.jpg")["draws"]
    assert d.shape == (2, F.RIGID_DRAWS) and np.all(d > 0)
    np.testing.assert_array_equal(d, F.rigid_draws_features(trunk, batch, "real/b.jpg")["draws"])  # fixed draws
    for draw in (0, F.RIGID_DRAWS - 1):  # one draw at a time, the shipped term's own code path
        noise = torch.from_numpy(rigid_noise(draw))
        feats, noisy = trunk.perturbed_features(batch, RIGID_START, lambda y, noise=noise: perturb_map(y, noise, RIGID_SIGMA))
        np.testing.assert_allclose(d[:, draw], rigid_score(feats, noisy), rtol=1e-3, atol=1e-7)
    assert not np.allclose(d[:, 0], d[:, 1])  # other draws, other scores


def test_train_only_group_is_trained_on_in_every_fold_and_never_scored(tmp_path, monkeypatch):
    """The CLI's --train-only-group: folds dealt without the group, so it is in every training part and
    no AUC is read off it (the ImageNet samples, which the frozen ImageNet trunk saw)."""
    rng = np.random.default_rng(0)
    groups = np.array(["f1"] * 6 + ["f2"] * 6 + ["r1"] * 6 + ["r2"] * 6 + ["imagenet"] * 6)
    labels = np.array([1] * 12 + [0] * 18)
    x = np.zeros((len(labels), 2, 2), np.float32)
    x[:, :, 0] = np.arange(len(labels))[:, None]
    x[:, :, 1] = labels[:, None] * 0.5 + rng.random((len(labels), 2)) * 0.5
    scored = groups != "imagenet"
    folds = make_folds(labels[scored], groups[scored], 2)
    _Spy.log.clear()
    r = evaluate(x, labels, groups, lambda: _Spy(groups), folds=folds)
    assert _Spy.log and all("imagenet" in trained and "imagenet" not in seen for trained, seen in _Spy.log)
    assert [g.group for g in r.real_groups] == ["r1", "r2"]


def test_content_normalised_score_compares_with_reals_that_look_alike():
    """Faces are stable whether generated or not: a face fake scores below a real photo on the raw score,
    above the real faces; standardised by the reals of its content cluster it is above both."""
    from sklearn.metrics import roc_auc_score

    from vidfake.training.loso import HEADS, ContentNormalisedScore

    rng = np.random.default_rng(0)

    def make(n, fake, face):
        x = rng.normal(0, 0.3, (n, 7))
        x[:, :6] += 2.0 if face else -2.0  # content: what most feature columns describe
        x[:, -1] = (0.2 if face else 0.6) + (0.1 if fake else 0.0) + rng.normal(0, 0.03, n)  # the score
        return x

    x = np.concatenate([make(200, 0, True), make(200, 0, False), make(200, 1, False)])  # no face fake trained on
    y = np.array([0] * 400 + [1] * 200)
    head = HEADS["score_content"]().fit(x, y)
    assert isinstance(head, ContentNormalisedScore)
    xt = np.concatenate([make(100, 1, True), make(100, 0, True), make(100, 0, False)])
    yt = np.array([1] * 100 + [0] * 200)
    assert roc_auc_score(yt, xt[:, -1]) < 0.6  # raw: the face fakes sit below every real photo
    assert roc_auc_score(yt, head.predict_proba(xt)[:, 1]) > 0.95


def test_a_report_resumes_only_under_its_own_protocol(tmp_path):
    from vidfake.training.loso import _read_results, _write_results

    groups = np.array(["f"] * 4 + ["r"] * 4)
    labels = np.array([1] * 4 + [0] * 4)
    r = evaluate(np.where(labels[:, None, None] == 1, 0.2, 0.1) * np.ones((8, 2, 1)), labels, groups, "score",
                 real_folds=1)
    out = tmp_path / "report.json"
    train_only = {"train_only_group": ["ImageNet samples"]}
    _write_results(out, [r], 1, train_only)
    assert [x.candidate for x in _read_results(out, 1, train_only)] == [r.candidate]
    assert _read_results(out, 1) == [] and _read_results(out, 2, train_only) == []  # every group scored; folds
