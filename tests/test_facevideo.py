"""Face-video LOSO: frame runs, pooling, SBI rows in the fold protocol, group-balanced weights."""

from __future__ import annotations

import numpy as np
import pytest

from vidfake.training import facevideo as FV
from vidfake.training.loso import evaluate, group_balanced_weights


def test_run_frames_spread_consecutive_runs_and_short_clips():
    idx, run = FV.run_frames(100, runs=4, run_len=4)
    assert idx.tolist()[:4] == [0, 1, 2, 3] and idx.tolist()[-4:] == [96, 97, 98, 99]
    assert run.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert all(np.diff(idx[run == r]).tolist() == [1, 1, 1] for r in range(4))
    idx, run = FV.run_frames(16, runs=4, run_len=4)  # some dev clips have exactly 16 frames
    assert idx.tolist() == list(range(16)) and run.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    idx, run = FV.run_frames(6, runs=4, run_len=4)
    assert idx.tolist() == list(range(6)) and run.tolist() == [0, 0, 0, 0, 1, 1]
    with pytest.raises(ValueError):
        FV.run_frames(0)


def test_pool_temporal_only_differences_within_runs():
    # Two runs of two frames; the jump between runs (frame 1 -> 2) must not count as temporal change.
    multi = np.array([[[0.0], [1.0], [10.0], [10.0]]], np.float16)  # (K=1, T=4, D=1)
    run = np.array([0, 0, 1, 1])
    mean = FV.pool(multi, run, "face_mean")
    assert mean.shape == (1, 1) and mean[0, 0] == pytest.approx(5.25)
    t = FV.pool(multi, run, "face_temporal")
    assert t.shape == (1, 3) and t[0, 2] == pytest.approx(0.5)  # |1-0| and |10-10|, averaged
    with pytest.raises(KeyError, match="unknown"):
        FV.pool(multi, run, "nope")


class _Spy:
    """Head whose feature 0 is a row id; records which ids and labels each fit saw."""

    fits: list = []

    def fit(self, x, y):
        _Spy.fits.append((set(x[:, 0].astype(int).tolist()), set(y.tolist())))
        return self

    def predict_proba(self, x):
        p = x[:, 1:2]
        return np.hstack([1 - p, p])


def _toy():
    groups = np.array(["f1"] * 4 + ["f2"] * 4 + ["r1"] * 4 + ["r2"] * 4)
    labels = np.array([1] * 8 + [0] * 8)
    x = np.zeros((16, 2, 2), np.float32)
    x[:, :, 0] = np.arange(16)[:, None]
    x[:, :, 1] = labels[:, None] * 0.8 + 0.1
    aux = np.zeros((8, 2, 2), np.float32)  # one self-blend per real, ids 100.., tagged with its real's group
    aux[:, :, 0] = 100 + np.arange(8)[:, None]
    aux[:, :, 1] = 0.9
    return x, labels, groups, aux, groups[8:]


def test_sbi_rows_train_only_where_their_real_group_is_not_held_out():
    x, labels, groups, aux, aux_groups = _toy()
    _Spy.fits.clear()
    evaluate(x, labels, groups, _Spy, real_folds=2, aux=(aux, aux_groups))
    assert len(_Spy.fits) == 4
    for ids, _ in _Spy.fits:
        trained_reals = {groups[i] for i in ids if i < 16 and labels[i] == 0}
        blends = {aux_groups[i - 100] for i in ids if i >= 100}
        assert blends and blends == trained_reals  # a held-out real group's blends are never trained on


def test_sbi_only_sees_no_labelled_fake():
    x, labels, groups, aux, aux_groups = _toy()
    _Spy.fits.clear()
    r = evaluate(x, labels, groups, _Spy, real_folds=2, aux=(aux, aux_groups), train_fakes=False)
    for ids, ys in _Spy.fits:
        assert not any(i < 16 and labels[i] == 1 for i in ids) and ys == {0, 1}
    assert all(g.auc_clean == 1.0 for g in r.fake_groups)  # every fake group is scored all the same
    with pytest.raises(ValueError, match="one class"):
        evaluate(x, labels, groups, _Spy, real_folds=2, train_fakes=False)  # no fakes at all: refused


def test_group_balanced_weights():
    y = np.array([1, 1, 1, 1, 0, 0])
    g = np.array(["big", "big", "big", "small", "r", "r"])
    w = group_balanced_weights(y, g)
    assert w.sum() == pytest.approx(len(y))
    assert w[:3].sum() == pytest.approx(w[3]) and w[:4].sum() == pytest.approx(w[4:].sum())


def test_face_video_groups_exist_and_hold_every_face_video(shared_data):
    items, groups = FV.face_video_items(shared_data)
    assert set(groups) == set(FV.FACE_FAKE_GROUPS) | set(FV.FACE_REAL_GROUPS)
    assert {i.label for i, g in zip(items, groups, strict=True) if g in FV.FACE_FAKE_GROUPS} == {1}
    assert all("DeepFaceLive" not in str(i.path) or g.startswith(("face swap", "DeepFaceLive"))
               for i, g in zip(items, groups, strict=True))


# --------------------------------------------------------------------------- SBI fine-tune samples
@pytest.fixture(scope="module")
def wide_face():
    """The astronaut's face as a face-video wide crop (WIDE_SCALE x the landmarks' box, 320 px)."""
    data = pytest.importorskip("skimage.data")
    from vidfake.preprocessing.faces import FaceTracker, crop_faces

    image = data.astronaut()
    with FaceTracker(max_faces=1) as tracker:
        track = tracker.track(image[None], [0])[0]
    wide = crop_faces(image[None], track.boxes, scale=FV.WIDE_SCALE, size=FV.WIDE_SIZE)
    side = float(wide.boxes[0, 2] - wide.boxes[0, 0])
    lm = (track.landmarks[0] - wide.boxes[0, :2]) * (FV.WIDE_SIZE / side)
    return wide.images[0], lm.astype(np.float32)


def test_sbi_samples_are_blended_half_the_time_and_degraded_alike(wide_face):
    from vidfake.training.sbi_finetune import FACE_SIDES, degrade, sample

    wide, lm = wide_face
    rng = np.random.default_rng(0)
    drawn = [sample(wide, lm, rng, 1.3, 224) for _ in range(40)]
    labels = [y for _, y in drawn]
    assert all(x.shape == (224, 224, 3) and x.dtype == np.uint8 for x, _ in drawn)
    assert 10 <= sum(labels) <= 30
    # Degradation removes detail: a face brought down to <= FACE_SIDES[1] px has less high-frequency
    # energy than the crop itself, whatever augmentation level is drawn.
    import cv2

    sharp = cv2.resize(wide, (224, 224), interpolation=cv2.INTER_AREA)
    lap = lambda im: float(cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())  # noqa: E731
    assert FACE_SIDES[1] < 224
    assert np.median([lap(degrade(sharp, 224, np.random.default_rng(s))) for s in range(8)]) < lap(sharp)


def _cached_crops(root, views: int, labels=(0, 0)):
    """Two videos' crop caches under ``root``: ``long`` (4 runs of 4 frames) and ``short`` (3 frames,
    shorter than one TALL clip), with ``views`` views each."""
    from pathlib import Path

    from vidfake.training.data import MediaItem

    def item(name, label):
        return MediaItem(path=Path(root / "v" / name), label=label, kind="video", split="train", group=name,
                         method="none", source="x", class3=label)

    long, short = item("long.mp4", labels[0]), item("short.mp4", labels[1])
    folder = FV.crops_dir(root)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(FV.cache_file(folder, long), crops=rng.integers(0, 255, (views, 16, 224, 224, 3), np.uint8),
             run=np.repeat(np.arange(4), 4).astype(np.int16))
    np.savez(FV.cache_file(folder, short), crops=rng.integers(0, 255, (2, 3, 224, 224, 3), np.uint8),
             run=np.zeros(3, np.int16))
    return long, short, item


def test_extract_tall_tiles_runs_of_cached_crops(tmp_path):
    long, short, item = _cached_crops(tmp_path, views=3)
    status = FV.extract_tall([long, short, item("absent.mp4", 0)], root=tmp_path)
    assert list(status.values()) == ["cached", "cached", "no crops"]
    with np.load(FV.cache_file(FV.tall_dir(tmp_path), long)) as z:
        assert z["tall"].shape == (3, 4128) and np.isfinite(z["tall"]).all()
    with np.load(FV.cache_file(FV.tall_dir(tmp_path), short)) as z:
        assert z["tall"].shape == (2, 4128)
    assert FV.extract_tall([long], root=tmp_path) == {str(long.path): "exists"}


def test_explicit_folds_hold_out_matched_pairs():
    x, labels, groups, _, _ = _toy()
    _Spy.fits.clear()
    from vidfake.training.loso import Fold

    r = evaluate(x, labels, groups, _Spy, folds=[Fold("f1", ("r1",)), Fold("f2", ("r2",))])
    assert len(_Spy.fits) == 2
    for (ids, _), held in zip(_Spy.fits, ({"f1", "r1"}, {"f2", "r2"}), strict=True):
        assert not {groups[i] for i in ids if i < 16} & held  # neither side of the pair trained on
    assert [g.n for g in r.fake_groups] == [4, 4] and all(g.auc_clean == 1.0 for g in r.real_groups)
    assert set(FV.MATCHED_REAL) == set(FV.FACE_FAKE_GROUPS)
    assert sorted(FV.MATCHED_REAL.values()) == sorted(FV.FACE_REAL_GROUPS)


@pytest.mark.data
def test_extract_writes_features_and_crops_in_one_pass(shared_data, tmp_path):
    items, _ = FV.face_video_items(shared_data)
    real = next(i for i in items if i.label == 0)
    recipe = FV.FaceVideoRecipe(views=2)
    from vidfake.training.features import MULTI_DIM

    status = FV.extract([real], recipe, tmp_path)
    assert list(status) == [str(real.path)] and status[str(real.path)].startswith("cached"), status
    feats = np.load(FV.cache_file(FV._cache_dir(tmp_path, recipe), real))
    crops = np.load(FV.cache_file(FV.crops_dir(tmp_path, recipe), real))
    t = len(feats["run"])
    assert feats["multi"].shape == (2, t, MULTI_DIM) and feats["sbi_multi"].shape == (2, t, MULTI_DIM)
    assert crops["crops"].shape[:2] == (2, t) and crops["wide"].shape == (t, FV.WIDE_SIZE, FV.WIDE_SIZE, 3)
    assert (crops["present"] == feats["present"]).all() and crops["present"][0].any()
    assert FV.extract([real], recipe, tmp_path) == {str(real.path): "exists"}


def test_stage5_maps_of_cached_crops_feed_the_recipe_per_frame(tmp_path):
    """face_finetune: every crop's blocks.5 map cached, a short clip's frames repeated to RUNS x RUN_LEN,
    and the per-frame head pools a video's frames by their mean log-odds."""
    from vidfake.training.tail import FrameTailFinetune

    long, short, _ = _cached_crops(tmp_path, views=2, labels=(1, 0))
    rng = np.random.default_rng(1)
    assert list(FV.extract_stage5([long, short], root=tmp_path).values()) == ["cached", "cached"]
    features = FV._cache_dir(tmp_path, FV.FaceVideoRecipe())  # load() lists the videos the main pass cached
    features.mkdir(parents=True)
    for it in (long, short):
        np.savez(FV.cache_file(features, it), run=np.zeros(1, np.int16))
    x, y, g, *_ = FV.load([long, short], ["f", "r"], "face_finetune", root=tmp_path)
    frames = FV.RUNS * FV.RUN_LEN
    assert x.shape == (2, 2, frames * 9408) and list(y) == [1, 0]
    with np.load(FV.cache_file(FV.stage5_dir(tmp_path), short)) as z:
        per = z["map"].astype(np.float32)
    rows = x[1, 0].reshape(frames, 9408)
    np.testing.assert_array_equal(rows[3], per[0, 0])  # frame 3 of a 3-frame clip is its frame 0 again

    head = FrameTailFinetune(frames=2)
    with pytest.raises(ValueError, match="2 x 9408"):
        head.fit(np.zeros((4, 9408), np.float32), np.array([0, 1, 0, 1]))
    yy = np.array([0, 1] * 40)
    xx = rng.normal(0, 1, (80, 2 * 9408)).astype(np.float32)
    xx[yy == 1, :1920] += 1.0
    xx[yy == 1, 9408:9408 + 1920] += 1.0
    p = FrameTailFinetune(frames=2, epochs=1).fit(xx, yy).predict_proba(xx)
    assert p.shape == (80, 2) and np.allclose(p.sum(1), 1)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(yy, p[:, 1]) > 0.9


def test_face_rigid_scores_cached_crops_with_the_shipped_term(tmp_path):
    """face_rigid: the shipped probe's stability score on every cached crop (K, T), a video's views its
    frames' mean, and a training-free LOSO row."""
    from vidfake.probe import ImageProbe, rigid_score
    from vidfake.training import loso

    long, short, _ = _cached_crops(tmp_path, views=2, labels=(1, 0))
    assert list(FV.extract_rigid([long, short], root=tmp_path).values()) == ["cached", "cached"]
    with np.load(FV.cache_file(FV.rigid_dir(tmp_path), short)) as z:
        per = z["score"]
    with np.load(FV.cache_file(FV.crops_dir(tmp_path), short)) as z:
        crops = z["crops"]
    probe = ImageProbe().load()
    feats, noisy = probe.trunk.perturbed_features(crops[1], probe.rigid.start, probe.rigid.perturb)
    assert per.shape == (2, 3) and np.allclose(per[1], rigid_score(feats, noisy), atol=1e-6)
    features = FV._cache_dir(tmp_path, FV.FaceVideoRecipe())
    features.mkdir(parents=True)
    for it in (long, short):
        np.savez(FV.cache_file(features, it), run=np.zeros(1, np.int16))
    x, y, g, *_ = FV.load([long, short], ["f", "r"], "face_rigid", root=tmp_path)
    assert x.shape == (2, 2, 1) and np.allclose(x[1, :, 0], per.mean(1))
    r = loso.evaluate(x, y, g, "score", real_folds=1)
    assert r.loso and r.fake_groups[0].auc_clean in (0.0, 1.0)


def test_face_lip_aligns_mouths_of_cached_crops_or_says_it_could_not(tmp_path):
    """face_lip: a face crop gets the lip branch's aligned mouth (found), a crop without a face the
    landmark-free mouth square (not found); both through frozen Lite0, pooled like face_temporal."""
    import cv2
    from skimage.data import astronaut


    long, short, _ = _cached_crops(tmp_path, views=2, labels=(1, 0))
    face = cv2.resize(np.ascontiguousarray(astronaut()[20:260, 150:350]), (224, 224), interpolation=cv2.INTER_AREA)
    with np.load(FV.cache_file(FV.crops_dir(tmp_path), long)) as z:
        crops, run = z["crops"].copy(), z["run"]
    crops[0] = face  # view 0: the same face in all 16 frames; view 1 stays noise
    np.savez(FV.cache_file(FV.crops_dir(tmp_path), long), crops=crops, run=run)
    assert list(FV.extract_lip([long, short], root=tmp_path).values()) == ["cached", "cached"]
    with np.load(FV.cache_file(FV.lip_dir(tmp_path), long)) as z:
        assert z["multi"].shape == (2, 16, 4128) and list(z["found"]) == [True, False]
        assert np.isfinite(z["multi"].astype(np.float32)).all()
        assert 10 < z["width"][0] < 224 and np.isnan(z["width"][1])  # the mouth's width, or none found
    assert FV.mouth_box_rois(crops[1]).shape == (16, 88, 88)
    features = FV._cache_dir(tmp_path, FV.FaceVideoRecipe())
    features.mkdir(parents=True)
    for it in (long, short):
        np.savez(FV.cache_file(features, it), run=np.zeros(1, np.int16))
    x, y, *_ = FV.load([long, short], ["f", "r"], "face_lip", root=tmp_path)
    assert x.shape == (2, 2, 3 * 4128) and list(y) == [1, 0]
    w, *_ = FV.load([long, short], ["f", "r"], "confound_mouth_width", root=tmp_path)
    assert w.shape == (2, 2, 2) and list(w[0, :, 1]) == [0.0, 1.0] and np.isfinite(w).all()
