"""The committed sample media are the output of ``samples/make_samples.py``, not copies of the dev data."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MEDIA_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}


def _tracked_media() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.skip("not a git checkout: the committed files cannot be listed")
    return [REPO / name for name in out.stdout.splitlines() if Path(name).suffix.lower() in MEDIA_SUFFIXES]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_samples_are_rendered_by_make_samples(samples_dir, tmp_path):
    """Rerunning the script reproduces every committed sample byte for byte (pinned environment)."""
    pytest.importorskip("skimage")
    run = subprocess.run([sys.executable, str(samples_dir / "make_samples.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    committed = sorted(p for p in samples_dir.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES)
    assert {p.name for p in committed} == {"fake_face.mp4", "real_face.mp4", "real_photo.jpg", "generated.png"}
    for sample in committed:
        assert (tmp_path / sample.name).read_bytes() == sample.read_bytes(), f"{sample.name} differs from its render"


def test_no_committed_media_file_comes_from_the_dev_data(shared_data):
    data = {_sha256(p) for p in shared_data.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES}
    assert data, f"no media found under {shared_data}"
    copied = [str(p.relative_to(REPO)) for p in _tracked_media() if _sha256(p) in data]
    assert not copied, f"committed files identical to files of {shared_data}: {copied}"
