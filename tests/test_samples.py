"""The committed sample media are the output of ``samples/make_samples.py``, not copies of the dev data."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    """The committed samples are what the script renders: images byte for byte; videos as encodes of
    exactly the rendered frames (x264 gave different bytes for the same frames on a loaded machine, even
    single-threaded, so a byte comparison would test the encoder, not the provenance)."""
    pytest.importorskip("skimage")
    run = subprocess.run([sys.executable, str(samples_dir / "make_samples.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    committed = sorted(p for p in samples_dir.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES)
    assert {p.name for p in committed} == {"fake_face.mp4", "real_face.mp4", "real_photo.jpg", "generated.png"}
    for name in ("real_photo.jpg", "generated.png"):
        assert (tmp_path / name).read_bytes() == (samples_dir / name).read_bytes(), f"{name} differs from its render"

    from vidfake.preprocessing.decoders import open_video

    sys.path.insert(0, str(samples_dir))
    try:
        import make_samples
    finally:
        sys.path.remove(str(samples_dir))
    real, maps = make_samples.real_frames()
    for name, rendered in (("real_face.mp4", real), ("fake_face.mp4", make_samples.fake_frames(real, maps))):
        with open_video(samples_dir / name) as video:
            decoded = video.get_frames(list(range(video.num_frames)))
        assert decoded.shape == rendered.shape, name
        psnr = 10 * np.log10(255.0**2 / np.mean((decoded.astype(np.float64) - rendered) ** 2))
        # CRF 23 of these frames measures 34.8-35.0 dB (their sensor noise does not compress); another
        # clip, or these frames shifted by one, is far below.
        assert psnr > 33.0, f"{name}: {psnr:.1f} dB against its render"
        shifted = 10 * np.log10(255.0**2 / np.mean((decoded[1:].astype(np.float64) - rendered[:-1]) ** 2))
        assert shifted < psnr - 3, name


def test_no_committed_media_file_comes_from_the_dev_data(shared_data):
    data = {_sha256(p) for p in shared_data.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES}
    assert data, f"no media found under {shared_data}"
    copied = [str(p.relative_to(REPO)) for p in _tracked_media() if _sha256(p) in data]
    assert not copied, f"committed files identical to files of {shared_data}: {copied}"
