"""Labelled media for training and evaluation: the manifest, plain folders, Hugging Face image sets.

Everything becomes a list of :class:`MediaItem` (a frozen record with the binary label, the subnet's
three-class label and the provenance needed to split without leakage), except Hugging Face datasets,
which stay datasets and are wrapped for torch by :class:`HFImageDataset`.

Splitting: ``group`` is what must never sit on both sides of a split (a person, a scene, a source clip).
:func:`group_kfold` and :func:`leave_one_out_by` build the cross-source checks the data README asks for
(a random validation split flatters a detector that learns content instead of traces).

Reading a file that fails raises a :class:`~vidfake.preprocessing.errors.MediaError` naming the file;
a dataset never hands back another sample in its place.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from vidfake.metrics import three_class_labels
from vidfake.preprocessing.errors import DecodeError, MediaError
from vidfake.preprocessing.images import load_image

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "HFImageDataset",
    "ImageDataset",
    "ManifestError",
    "MediaItem",
    "group_kfold",
    "leave_one_out_by",
    "load_hf_dataset",
    "read_manifest",
    "scan_folder",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
MANIFEST_COLUMNS = ("path", "label", "kind", "split", "group", "method", "source_repo")
LABELS = {"real": 0, "fake": 1}
KINDS = ("image", "video")


class ManifestError(MediaError):
    """A manifest or label folder is malformed: ``source`` names the file (and row), ``problem`` what."""


@dataclass(frozen=True)
class MediaItem:
    """One labelled image or video.

    Attributes:
        path: absolute path of the file.
        label: 0 real, 1 fake.
        kind: ``"image"`` or ``"video"``.
        split: ``"train"``, ``"val"``, ... or ``""`` when the source has no split.
        group: what must stay on one side of a split (person, scene, source clip).
        method: generator or manipulation (``"none"`` for real media).
        source: where the file comes from (the manifest's ``source_repo``, or the scanned folder).
        class3: the subnet's class, 0 real / 1 synthetic / 2 semi-synthetic.
    """

    path: Path
    label: int
    kind: Literal["image", "video"]
    split: str
    group: str
    method: str
    source: str
    class3: int


# --------------------------------------------------------------------------- manifest
def read_manifest(
    root: str | Path,
    *,
    kind: Literal["image", "video"] | None = None,
    split: str | None = None,
    check_files: bool = True,
) -> list[MediaItem]:
    """Read ``root/manifest.csv`` (the development data's format, see its README).

    Args:
        root: the data folder; ``path`` entries are relative to it.
        kind: keep only ``"image"`` or ``"video"`` rows.
        split: keep only rows of this split (``"train"``, ``"val"``).
        check_files: fail on a row whose file is missing (one ``stat`` per row).

    Returns:
        Items in manifest order, one per file: a row repeating a file listed earlier is dropped.

    Raises:
        ManifestError: missing file or columns, an unknown label or kind, an empty path or group, a
            fake whose method has no three-class mapping, or a file listed twice with different labels,
            kinds, splits or groups; the error names the row.
    """
    root = Path(root)
    manifest = root / "manifest.csv"
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    if not manifest.is_file():
        raise ManifestError(str(manifest), "no manifest.csv in the data folder")
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(str(manifest), f"missing columns {missing}; has {reader.fieldnames}")
        items = []
        seen: dict[Path, tuple[MediaItem, str]] = {}
        repeats = 0
        for row_no, row in enumerate(reader, start=2):  # line 1 is the header
            where = f"{manifest}:{row_no}"
            item = _manifest_item(root, row, where, check_files)
            if item.path in seen:
                # The third batch lists a few files once per commit they were crawled at: one file, one
                # item (counted twice it would weigh double in training and in every metric).
                first, first_where = seen[item.path]
                if (first.label, first.kind, first.split, first.group) != (item.label, item.kind, item.split,
                                                                           item.group):
                    raise ManifestError(where, f"{item.path.name} is also listed at {first_where} with another "
                                               "label, kind, split or group")
                repeats += 1
                continue
            seen[item.path] = (item, where)
            if (kind is None or item.kind == kind) and (split is None or item.split == split):
                items.append(item)
    if repeats:
        logger.info("%s: %d rows repeat a file listed earlier (same label, split and group); each file "
                    "counted once", manifest, repeats)
    logger.info("%s: %d items (kind=%s, split=%s)", manifest, len(items), kind, split)
    return items


def _manifest_item(root: Path, row: dict[str, str], where: str, check_files: bool) -> MediaItem:
    values = {k: (row.get(k) or "").strip() for k in MANIFEST_COLUMNS}
    label = values["label"].lower()
    if label not in LABELS:
        raise ManifestError(where, f"label must be 'real' or 'fake', got {values['label']!r}")
    kind = values["kind"].lower()
    if kind not in KINDS:
        raise ManifestError(where, f"kind must be 'image' or 'video', got {values['kind']!r}")
    for key in ("path", "group"):
        if not values[key]:
            raise ManifestError(where, f"empty {key}")
    path = (root / values["path"]).resolve()
    if check_files and not path.is_file():
        raise ManifestError(where, f"file not found: {path}")
    try:
        class3 = three_class_labels(label, values["method"])
    except ValueError as e:
        raise ManifestError(where, str(e)) from e
    return MediaItem(path=path, label=LABELS[label], kind=kind, split=values["split"], group=values["group"],
                     method=values["method"] or ("none" if label == "real" else "unknown"),
                     source=values["source_repo"], class3=class3)


# --------------------------------------------------------------------------- plain folders
def scan_folder(root: str | Path, *, fake_class3: int = 1) -> list[MediaItem]:
    """Items from any folder tree with ``real/`` and ``fake/`` subfolders.

    Every folder named ``real`` or ``fake`` (any case, any depth) labels the media files below it
    (recursively, by extension; hidden files skipped). Around a label folder:

    - split: the nearest enclosing folder named ``train``, ``val``, ``valid``, ``validation`` or
      ``test`` (``"valid"``/``"validation"`` become ``"val"``), else ``""``;
    - method: for fakes, the first subfolder below ``fake/`` (``fake/sdxl/x.png`` -> ``"sdxl"``), else
      ``"unknown"``; ``"none"`` for reals;
    - group: the clip folder holding the file (``fake/sdxl/clip01/f.png``, ``real/clip01/f.png``), else
      the file itself: a scanned folder knows no people or scenes.

    Args:
        root: the folder to scan.
        fake_class3: three-class label of fakes whose method names no known generator (1 synthetic,
            2 semi-synthetic).

    Returns:
        Items sorted by path.

    Raises:
        ManifestError: ``root`` is not a folder, or holds no media under both a real and a fake folder.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise ManifestError(str(root), "not a folder")
    items = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        label_dir = _nearest_label_dir(here, root)
        if label_dir is None:
            continue
        for name in sorted(filenames):
            path = here / name
            kind = _kind_of(path)
            if kind is None or name.startswith("."):
                continue
            items.append(_folder_item(path, kind, label_dir, root, fake_class3))
    labels = {it.label for it in items}
    if labels != {0, 1}:
        found = "no media" if not items else f"only {'fake' if 1 in labels else 'real'} media"
        raise ManifestError(str(root), f"{found} under real/ and fake/ subfolders")
    logger.info("%s: %d items (%d fake)", root, len(items), sum(it.label for it in items))
    return items


_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _nearest_label_dir(folder: Path, root: Path) -> Path | None:
    for p in (folder, *folder.parents):
        if p.name.lower() in LABELS:
            return p
        if p == root:
            return None
    return None


def _kind_of(path: Path) -> str | None:
    ext = path.suffix.lower()
    return "image" if ext in IMAGE_EXTENSIONS else "video" if ext in VIDEO_EXTENSIONS else None


def _folder_item(path: Path, kind: str, label_dir: Path, root: Path, fake_class3: int) -> MediaItem:
    label_name = label_dir.name.lower()
    rel = path.relative_to(label_dir)
    # Folders enclosing the label folder, outermost first (the scanned root included): the nearest
    # split-named one wins.
    enclosing = (root.name, *label_dir.relative_to(root).parts[:-1])
    split = next((_SPLIT_NAMES[n.lower()] for n in reversed(enclosing) if n.lower() in _SPLIT_NAMES), "")
    if label_name == "fake":
        method = rel.parts[0] if len(rel.parts) > 1 else "unknown"
        class3 = three_class_labels("fake", method, default=fake_class3)
        clip_depth = 3  # fake/<method>/<clip>/<file>
    else:
        method, class3 = "none", 0
        clip_depth = 2  # real/<clip>/<file>
    inner = path.parent if len(rel.parts) >= clip_depth else path.with_suffix("")
    group = inner.relative_to(root).as_posix()
    return MediaItem(path=path, label=LABELS[label_name], kind=kind, split=split, group=group,
                     method=method, source=root.name, class3=class3)


# --------------------------------------------------------------------------- splits
def group_kfold(items: Sequence[MediaItem], k: int, seed: int = 0) -> list[tuple[list[MediaItem], list[MediaItem]]]:
    """K folds in which no group straddles train and validation.

    Groups are shuffled with ``seed``, then, largest first, each goes to the fold with the fewest items
    so far (balanced folds; ties between equal groups broken by the shuffle).

    Args:
        items: the items to split.
        k: number of folds, 2 <= k <= number of groups.
        seed: shuffling seed.

    Returns:
        ``k`` pairs ``(train_items, val_items)``; every item is in exactly one validation fold.
    """
    groups: dict[str, list[int]] = {}
    for idx, it in enumerate(items):
        groups.setdefault(it.group, []).append(idx)
    if not 2 <= k <= len(groups):
        raise ValueError(f"k must be between 2 and the number of groups ({len(groups)}), got {k}")
    names = sorted(groups)
    rng = np.random.default_rng(seed)
    names = [names[i] for i in rng.permutation(len(names))]
    names.sort(key=lambda g: -len(groups[g]))  # stable: equal sizes keep the shuffled order
    fold_of: dict[str, int] = {}
    sizes = [0] * k
    for g in names:
        f = int(np.argmin(sizes))
        fold_of[g] = f
        sizes[f] += len(groups[g])
    folds = []
    for f in range(k):
        val = [it for it in items if fold_of[it.group] == f]
        train = [it for it in items if fold_of[it.group] != f]
        folds.append((train, val))
    return folds


def leave_one_out_by(
    items: Sequence[MediaItem], key: str | Callable[[MediaItem], str] = "method"
) -> list[tuple[str, list[MediaItem], list[MediaItem]]]:
    """One split per value of ``key``: hold that value out, train on the rest.

    Args:
        items: the items to split.
        key: a :class:`MediaItem` field name (``"method"``, ``"source"``, ...) or a function of an item.

    Returns:
        ``(value, train_items, held_out_items)`` for each value, sorted by value. A held-out set of one
        method holds only fakes; evaluate it together with held-out reals (e.g. by ``source``), since
        AUC needs both classes.
    """
    if isinstance(key, str):
        if key not in MediaItem.__dataclass_fields__:
            raise ValueError(f"key must be a MediaItem field, got {key!r}")
        field_name = key

        def key_fn(it: MediaItem) -> str:
            return str(getattr(it, field_name))
    else:
        key_fn = key
    values = sorted({key_fn(it) for it in items})
    return [(v, [it for it in items if key_fn(it) != v], [it for it in items if key_fn(it) == v]) for v in values]


# --------------------------------------------------------------------------- torch datasets
def _default_transform(image: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


class ImageDataset(Dataset):
    """Images of a list of items for a torch ``DataLoader``.

    ``dataset[i]`` is ``(transform(image), label)`` where ``image`` is ``(H, W, 3) uint8 [0, 255]`` RGB
    (read by :func:`vidfake.preprocessing.images.load_image`, EXIF orientation applied) and label is 0
    real / 1 fake; the default transform gives ``(3, H, W) float32 [0, 1]``. A file that fails to read
    raises that function's :class:`~vidfake.preprocessing.errors.MediaError` naming it.

    Args:
        items: image items (a video item is an error).
        transform: ``(H, W, 3) uint8`` array -> whatever the model eats.
    """

    def __init__(self, items: Iterable[MediaItem], transform: Callable[[np.ndarray], Any] | None = None):
        self.items = list(items)
        videos = [str(it.path) for it in self.items if it.kind != "image"]
        if videos:
            raise ValueError(f"ImageDataset takes image items; got {len(videos)} videos, e.g. {videos[0]}")
        self.transform = transform or _default_transform
        self.labels = np.array([it.label for it in self.items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        item = self.items[index]
        return self.transform(load_image(item.path)), item.label


class HFImageDataset(Dataset):
    """A Hugging Face image dataset as ``(transform(image), label)`` pairs, label 1 = fake.

    Attributes:
        hf: the underlying ``datasets.Dataset``.
        labels: ``(N,) int64`` 0 real / 1 fake, resolved once.
    """

    def __init__(self, hf, labels: np.ndarray, image_column: str, transform=None, source: str = ""):
        self.hf, self.labels, self.image_column = hf, labels, image_column
        self.transform = transform or _default_transform
        self.source = source

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        name = f"{self.source}[{index}]"
        try:
            image = self.hf[int(index)][self.image_column]
        except Exception as e:  # datasets decodes lazily and raises many types for a bad row
            raise DecodeError(name, f"cannot read image: {e}") from e
        return self.transform(np.array(load_image(image, source=name))), int(self.labels[index])


@contextlib.contextmanager
def _hub_offline(datasets_module):
    """Tell ``datasets`` not to ask the hub, for the duration of a local load.

    A local ``imagefolder`` needs no network, yet ``load_dataset`` still queries the hub about the
    builder and, on a machine without network, waits ~7 s for that to fail unless ``HF_HUB_OFFLINE`` was
    exported before ``datasets`` was imported. The flag is restored afterwards.
    """
    config = datasets_module.config
    before = config.HF_HUB_OFFLINE
    config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        config.HF_HUB_OFFLINE = before


def load_hf_dataset(
    name_or_dir: str | Path,
    split: str = "train",
    *,
    image_column: str = "image",
    label_column: str = "label",
    real_values: Sequence[str | int] = ("real", 0),
    transform: Callable[[np.ndarray], Any] | None = None,
    cache_dir: str | Path | None = None,
) -> HFImageDataset:
    """Load a Hugging Face image dataset with a real/fake label.

    A local folder is read offline: a ``save_to_disk`` folder with ``load_from_disk``, anything else as
    ``imagefolder`` (``real/`` and ``fake/`` subfolders become a ``ClassLabel``). A hub id (e.g. a
    BitMind dataset) downloads from the hub and needs network access; no default path of vidfake does
    this. ``datasets`` is imported here, not at module import.

    Args:
        name_or_dir: local folder or hub dataset id.
        split: dataset split.
        image_column: column holding PIL images.
        label_column: column holding the label.
        real_values: label values meaning real. For a ``ClassLabel`` the class *names* are compared
            (imagefolder sorts names, so ``fake`` is index 0 there), for plain columns the values.
        transform: as in :class:`ImageDataset`.
        cache_dir: ``datasets`` cache folder (default: the library's).

    Returns:
        An :class:`HFImageDataset`.
    """
    import datasets

    source = str(name_or_dir)
    local = Path(name_or_dir)
    if local.is_dir():
        if (local / "dataset_info.json").is_file() or (local / "dataset_dict.json").is_file():
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
        else:
            with _hub_offline(datasets):
                ds = datasets.load_dataset("imagefolder", data_dir=str(local), split=split,
                                           cache_dir=None if cache_dir is None else str(cache_dir))
    else:
        logger.info("loading %s from the Hugging Face hub (needs network access)", source)
        ds = datasets.load_dataset(source, split=split, cache_dir=None if cache_dir is None else str(cache_dir))
    for col in (image_column, label_column):
        if col not in ds.column_names:
            raise ManifestError(source, f"no column {col!r}; columns are {ds.column_names}")
    feature = ds.features[label_column]
    raw = ds[label_column]
    real = {str(v).lower() for v in real_values}
    if isinstance(feature, datasets.ClassLabel):
        names = [feature.int2str(int(v)).lower() for v in raw]
        if not real & set(n.lower() for n in feature.names):
            raise ManifestError(source, f"none of the class names {feature.names} is in real_values {real_values}")
        labels = np.array([0 if n in real else 1 for n in names], dtype=np.int64)
    else:
        labels = np.array([0 if str(v).lower() in real else 1 for v in raw], dtype=np.int64)
    if labels.size and (labels.min() == labels.max()):
        logger.warning("%s[%s]: every row is %s", source, split, "fake" if labels[0] else "real")
    logger.info("%s[%s]: %d images, %d fake", source, split, labels.size, int(labels.sum()))
    return HFImageDataset(ds, labels, image_column, transform, source=f"{source}[{split}]")
