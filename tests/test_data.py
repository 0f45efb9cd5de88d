"""Training data: the development manifest, scanned folders, Hugging Face imagefolder, splits, datasets."""

from __future__ import annotations

import collections
import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidfake.preprocessing.errors import MediaError
from vidfake.training.data import (
    ImageDataset,
    ManifestError,
    MediaItem,
    group_kfold,
    leave_one_out_by,
    load_hf_dataset,
    read_manifest,
    scan_folder,
)

# The subnet class of every method in ../shared/data/manifest.csv (see vidfake.metrics' table).
MANIFEST_CLASSES = {
    "DFDC (face-swap; crop from fake video)": 2,
    "DFDC (unspecified swap method)": 2,
    "roop (inswapper_128)": 2,
    "DeepFaceLive (DFM real-time face swap, DeepFaceLab-trained model)": 2,
    "Stable Diffusion 1.5 fine-tune (Deliberate 2.0 / DreamShaper 3.2)": 1,
    "Stable Diffusion 1.5 fine-tune (Deliberate 2.0)": 1,
    "Stable Diffusion 1.5 fine-tune (DreamShaper 3.2)": 1,
    "Stable Diffusion 1.5 fine-tune (unknown SD1.5 checkpoint)": 1,
    "VASA-1 source portrait (StyleGAN2/DALL-E-3 per VASA-1 authors) or its first frame": 1,
    "unknown text-to-image generator (2024-25 era; not documented)": 1,
    "DreamTalk (diffusion audio-driven talking head)": 1,
    "Linly-Talker (SadTalker-based talking head)": 1,
    "MuseV (diffusion image-to-video)": 1,
    "SadTalker": 1,
    "SadTalker (audio-driven single-image talking head)": 1,
    "none": 0,
    "none (driving video input)": 0,
}


# --------------------------------------------------------------------------- manifest
@pytest.mark.data
def test_manifest_counts_match_readme(shared_data):
    # The data grows in batches: the README's "What is here" table is the reference, not a number here.
    # The table counts manifest rows; a few files are listed once per commit they were crawled at, and
    # read_manifest gives each file once.
    rows = list(csv.DictReader((shared_data / "manifest.csv").open(newline="", encoding="utf-8")))
    counts = collections.Counter((r["kind"], int(r["label"] == "fake")) for r in rows)
    items = read_manifest(shared_data)
    assert len(items) == len({r["path"] for r in rows}) and len({it.path for it in items}) == len(items)
    table = re.findall(r"^\| (video|image) \| (\d+) \| (\d+) \|", (shared_data / "README.md").read_text(), re.M)
    assert len(table) == 2, "the data README's table of counts has changed shape"
    expected = {}
    for kind, real, fake in table:
        expected[(kind, 0)], expected[(kind, 1)] = int(real), int(fake)
    assert counts == expected
    assert all(it.path.is_file() and it.path.is_absolute() for it in items)
    videos = read_manifest(shared_data, kind="video", split="val")
    assert videos and all(it.kind == "video" and it.split == "val" for it in videos)


@pytest.mark.data
def test_manifest_groups_never_straddle_splits(shared_data):
    splits = collections.defaultdict(set)
    for it in read_manifest(shared_data):
        splits[it.group].add(it.split)
    assert all(len(s) == 1 for s in splits.values())


def _expected_class(method: str, label: int) -> int:
    """Reviewed classes for the first two batches; later methods by the data README's rule: a fake whose
    method names an edit of a real image (inpainting, erasing, face swap) is semi-synthetic."""
    if method in MANIFEST_CLASSES:
        return MANIFEST_CLASSES[method]
    if label == 0:
        return 0
    return 2 if re.search(r"inpaint|erase|face[- ]?swap", method, re.I) else 1


@pytest.mark.data
def test_manifest_three_class_labels(shared_data, manifest_rows):
    items = read_manifest(shared_data)
    assert len(items) == len({r["path"] for r in manifest_rows})
    for it in items:
        assert it.class3 == _expected_class(it.method, it.label), it.method
        assert (it.class3 > 0) == (it.label == 1)
    assert sum(it.class3 == 2 for it in items) >= 30  # the third batch's inpaintings are semi-synthetic


def _write_manifest(root: Path, rows: list[str]) -> None:
    header = "path,label,kind,split,group,method,source_repo"
    (root / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")


def test_manifest_errors_name_the_row(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    _write_manifest(tmp_path, ["a.png,real,image,train,g1,none,x", "a.png,maybe,image,train,g2,none,x"])
    with pytest.raises(ManifestError, match=r"manifest.csv:3.*'maybe'"):
        read_manifest(tmp_path)
    _write_manifest(tmp_path, ["a.png,real,image,train,g1,none,x", "b.png,fake,image,val,g2,SadTalker,x"])
    with pytest.raises(ManifestError, match=r"manifest.csv:3.*not found"):
        read_manifest(tmp_path)
    assert len(read_manifest(tmp_path, check_files=False)) == 2
    _write_manifest(tmp_path, ["a.png,fake,image,train,g1,mystery tool,x"])
    with pytest.raises(ManifestError, match="no three-class mapping"):
        read_manifest(tmp_path)
    _write_manifest(tmp_path, ["a.png,real,image,train,g1,none,x", "a.png,real,image,train,g1,none,y"])
    assert len(read_manifest(tmp_path)) == 1  # one file listed twice alike: one item
    _write_manifest(tmp_path, ["a.png,real,image,train,g1,none,x", "a.png,real,image,val,g1,none,x"])
    with pytest.raises(ManifestError, match=r"manifest.csv:3.*also listed at .*manifest.csv:2"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("path,label\na.png,real\n")
    with pytest.raises(ManifestError, match="missing columns"):
        read_manifest(tmp_path)
    with pytest.raises(ManifestError, match="no manifest.csv"):
        read_manifest(tmp_path / "nowhere")


# --------------------------------------------------------------------------- folders
def _touch_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)


def test_scan_folder_labels_splits_methods_groups(tmp_path):
    for rel in ["train/real/r1.jpg", "train/real/clipA/f1.png", "train/real/clipA/f2.png",
                "train/fake/sdxl/x.png", "train/fake/faceswap/clip9/f1.png", "train/fake/loose.webp",
                "validation/fake/y.png", "validation/real/z.PNG"]:
        _touch_image(tmp_path / rel)
    (tmp_path / "train/fake/sdxl/notes.txt").write_text("not media")
    (tmp_path / "train/fake/sdxl/clip.mp4").write_bytes(b"")
    (tmp_path / "train/real/.hidden.png").write_bytes(b"")
    (tmp_path / "other/ignored.png").parent.mkdir()
    _touch_image(tmp_path / "other/ignored.png")

    items = {it.path.relative_to(tmp_path).as_posix(): it for it in scan_folder(tmp_path)}
    assert set(items) == {"train/real/r1.jpg", "train/real/clipA/f1.png", "train/real/clipA/f2.png",
                          "train/fake/sdxl/x.png", "train/fake/sdxl/clip.mp4", "train/fake/faceswap/clip9/f1.png",
                          "train/fake/loose.webp", "validation/fake/y.png", "validation/real/z.PNG"}
    r1, x, swap = items["train/real/r1.jpg"], items["train/fake/sdxl/x.png"], items["train/fake/faceswap/clip9/f1.png"]
    assert (r1.label, r1.class3, r1.method, r1.split, r1.kind) == (0, 0, "none", "train", "image")
    assert (x.label, x.method, x.class3, x.split) == (1, "sdxl", 1, "train")
    assert (swap.method, swap.class3) == ("faceswap", 2)
    assert items["train/fake/sdxl/clip.mp4"].kind == "video"
    assert items["train/fake/loose.webp"].method == "unknown"
    assert items["validation/real/z.PNG"].split == "val"
    # frames of one clip share a group; loose files are their own group
    assert items["train/real/clipA/f1.png"].group == items["train/real/clipA/f2.png"].group == "train/real/clipA"
    assert swap.group == "train/fake/faceswap/clip9"
    assert r1.group == "train/real/r1" and x.group == "train/fake/sdxl/x"
    assert all(it.source == tmp_path.name for it in items.values())
    # a fake method naming no known generator takes the fallback class
    assert items["train/fake/loose.webp"].class3 == 1
    rescanned = {it.path.name: it for it in scan_folder(tmp_path, fake_class3=2)}
    assert rescanned["loose.webp"].class3 == 2 and rescanned["x.png"].class3 == 1


def test_scan_folder_needs_both_labels(tmp_path):
    _touch_image(tmp_path / "real/a.png")
    with pytest.raises(ManifestError, match="only real media"):
        scan_folder(tmp_path)
    with pytest.raises(ManifestError, match="not a folder"):
        scan_folder(tmp_path / "missing")


# --------------------------------------------------------------------------- Hugging Face
def test_imagefolder_offline(tmp_path):
    data = tmp_path / "hf"
    for i, label in enumerate(["real", "real", "fake", "fake"]):
        (data / label).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 10), (60 * i, 0, 0)).save(data / label / f"{i}.png")
    ds = load_hf_dataset(data, "train", cache_dir=tmp_path / "cache")
    assert len(ds) == 4
    # imagefolder's ClassLabel sorts names (fake = 0): labels must come from the names, not indices
    names = ds.hf.features["label"].names
    expected = [0 if names[k] == "real" else 1 for k in ds.hf["label"]]
    np.testing.assert_array_equal(ds.labels, expected)
    assert sorted(ds.labels.tolist()) == [0, 0, 1, 1]
    x, y = ds[0]
    assert tuple(x.shape) == (3, 10, 12) and x.dtype.is_floating_point and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert y == ds.labels[0]
    with pytest.raises(ManifestError, match="no column"):
        load_hf_dataset(data, "train", label_column="is_fake", cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------- splits
def _items(groups: dict[str, int]) -> list[MediaItem]:
    out = []
    for g, n in groups.items():
        for k in range(n):
            out.append(MediaItem(Path(f"/x/{g}_{k}.png"), k % 2, "image", "", g, "m" + g[-1], "s", k % 2))
    return out


def test_group_kfold_keeps_groups_together():
    items = _items({f"g{i}": 1 + i % 4 for i in range(20)})
    folds = group_kfold(items, 4, seed=0)
    assert len(folds) == 4
    seen = []
    for train, val in folds:
        assert not {it.group for it in train} & {it.group for it in val}
        assert len(train) + len(val) == len(items)
        seen += val
    assert sorted(map(str, (it.path for it in seen))) == sorted(map(str, (it.path for it in items)))
    sizes = [len(v) for _, v in folds]
    assert max(sizes) - min(sizes) <= 4
    assert [[it.path for it in v] for _, v in folds] == [[it.path for it in v] for _, v in group_kfold(items, 4, 0)]
    assert [[it.path for it in v] for _, v in folds] != [[it.path for it in v] for _, v in group_kfold(items, 4, 1)]
    with pytest.raises(ValueError, match="number of groups"):
        group_kfold(items, 21)


def test_leave_one_out_by():
    items = _items({"ga": 2, "gb": 3, "gc": 1})
    splits = leave_one_out_by(items, "method")
    assert [v for v, _, _ in splits] == ["ma", "mb", "mc"]
    for value, train, held in splits:
        assert all(it.method == value for it in held) and all(it.method != value for it in train)
        assert len(train) + len(held) == len(items)
    by_fn = leave_one_out_by(items, lambda it: it.group[-1])
    assert [v for v, _, _ in by_fn] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="field"):
        leave_one_out_by(items, "colour")


# --------------------------------------------------------------------------- torch dataset
def test_image_dataset_reads_and_never_substitutes(tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.fromarray(np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)).save(good)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    items = [MediaItem(good, 0, "image", "", "a", "none", "s", 0), MediaItem(bad, 1, "image", "", "b", "x", "s", 1)]
    ds = ImageDataset(items)
    x, y = ds[0]
    assert tuple(x.shape) == (3, 2, 3) and y == 0
    assert float(x[0, 0, 1]) == pytest.approx(3 / 255)  # channel R of pixel (0, 1)
    with pytest.raises(MediaError, match="bad.png"):
        ds[1]
    custom = ImageDataset(items[:1], transform=lambda a: a.shape)
    assert custom[0] == ((2, 3, 3), 0)
    with pytest.raises(ValueError, match="image items"):
        ImageDataset([MediaItem(tmp_path / "v.mp4", 1, "video", "", "c", "x", "s", 1)])
