"""A batch of 200 files through the real ``vidfake`` command, 10% of them broken (issue 7).

Every good file gets its result, every broken one is reported by its name with the reason, and the exit
code says that some input failed. The command runs as a subprocess, as a user runs it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from fuzz import corpus, mutate
from PIL import Image

from vidfake.result import valid_three_class

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

N_FILES, N_BROKEN = 200, 20
N_VIDEOS = 30  # of the good files; the rest are images


def run_cli(*args, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    cmd = [sys.executable, "-m", "vidfake", "--weights", "tiny", "--threads", "1", "--quiet", *args]
    return subprocess.run(cmd, capture_output=True, timeout=timeout, env=full_env)


def _image_bytes(k: int) -> tuple[bytes, str]:
    rng = np.random.default_rng(k)
    h, w = int(rng.integers(24, 200)), int(rng.integers(24, 200))
    frame = corpus.synthetic_frames(1, h, w, seed=k)[0]
    fmt, ext = [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("BMP", ".bmp")][k % 4]
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format=fmt)
    return buffer.getvalue(), ext


def _video_bytes(k: int) -> tuple[bytes, str]:
    from vidfake.preprocessing.writers import write_video

    container, codec = [("mp4", "libx264"), ("webm", "libvpx-vp9"), ("mkv", "ffv1"), ("mp4", "mjpeg")][k % 4]
    buffer = io.BytesIO()
    write_video(buffer, corpus.synthetic_frames(8 + k % 5, 40, 56, seed=100 + k), 25.0, container=container,
                codec=codec, lossless=codec == "ffv1")
    return buffer.getvalue(), f".{container}"


def _broken_files() -> list[tuple[str, bytes]]:
    """20 files that no reader can turn into frames, one kind of damage each."""
    mp4 = corpus.video("mp4-x264")
    jpeg = corpus.image("jpeg")
    no_moov = mp4
    for path, off, _, size in mutate.bmff_boxes(mp4):
        if path == (b"moov",):
            no_moov = mp4[:off] + mp4[off + size :]
    return [
        ("empty.mp4", b""),
        ("empty.jpg", b""),
        ("noise.mp4", np.random.default_rng(1).bytes(5000)),
        ("noise.jpg", np.random.default_rng(2).bytes(3000)),
        ("text.png", b"this is not a picture\n" * 20),
        ("truncated-header.mp4", mp4[:40]),
        ("truncated.webm", corpus.video("webm-vp9")[:100]),
        ("no-moov.mp4", no_moov),
        ("audio-only.mp4", corpus.video("mp4-aac-only")),
        ("audio-only.mkv", corpus.video("mkv-pcm-only")),
        ("png-header-only.png", corpus.image("png")[:33]),
        ("jpeg-header-only.jpg", jpeg[:20]),
        ("no-soi.jpg", mutate.drop_jpeg_marker(jpeg, "SOI")),
        ("bomb.png", corpus.png_bomb()),
        ("gif-65535.gif", mutate.patch_gif_size(corpus.image("gif-animated"), 65535, 65535)),
        ("zlib.mov", zlib.compress(b"\x00" * 10_000)),
        ("html.avi", b"<html><body>404 Not Found</body></html>"),
        ("ebml-only.mkv", b"\x1a\x45\xdf\xa3" + b"\x00" * 60),
        ("ftyp-only.mp4", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"),
        ("zeros.webp", b"\x00" * 4096),
    ]


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> tuple[Path, dict[str, str], dict[str, str]]:
    """A folder of 200 files: ``good`` maps path -> kind, ``broken`` maps path -> what is wrong."""
    root = tmp_path_factory.mktemp("batch")
    good, broken = {}, {}
    for k in range(N_FILES - N_BROKEN):
        data, ext = _video_bytes(k) if k < N_VIDEOS else _image_bytes(k)
        sub = root / f"part{k % 3}"  # folders are searched recursively
        sub.mkdir(exist_ok=True)
        path = sub / f"good-{k:03d}{ext}"
        path.write_bytes(data)
        good[str(path)] = "video" if k < N_VIDEOS else "image"
    for name, data in _broken_files():
        path = root / "part1" / f"broken-{name}"
        path.write_bytes(data)
        broken[str(path)] = name
    assert len(good) + len(broken) == N_FILES and len(broken) == N_FILES // 10
    return root, good, broken


def test_batch_of_200_with_10_percent_broken(batch):
    root, good, broken = batch
    out = run_cli(str(root), "--format", "json")
    docs = [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]
    assert out.returncode == 1, out.stderr.decode()[-2000:]  # some input failed
    by_source = {d["source"]: d for d in docs}
    assert len(docs) == N_FILES == len(by_source), "each input is reported exactly once"
    assert set(by_source) == set(good) | set(broken)
    for path, kind in good.items():
        doc = by_source[path]
        assert "error" not in doc, (path, doc.get("error"))
        assert doc["kind"] == kind and valid_three_class(doc["three_class"]), path
        assert 0.0 <= doc["probability_fake"] <= 1.0 and doc["verdict"] in ("real", "fake")
    for path, name in broken.items():
        reason = by_source[path].get("error")
        assert reason, f"{name} was not reported as failed"
        assert not reason.split(":")[0].endswith(("Error", "Exception")), f"{name}: untyped failure {reason!r}"


def test_text_table_names_every_failure_and_exit_code_is_0_only_when_all_succeed(batch):
    root, good, broken = batch
    some_good = sorted(good)[:: len(good) // 4][:4]
    some_broken = sorted(broken)[:3]
    out = run_cli(*some_good, *some_broken)
    text = out.stdout.decode()
    assert out.returncode == 1, out.stderr.decode()[-2000:]
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["input", "verdict", "P(fake)"]
    for path in some_broken:
        [line] = [ln for ln in lines if ln.startswith(path)]
        assert "ERROR" in line and len(line.split("ERROR", 1)[1].strip()) > 5
    for path in some_good:
        [line] = [ln for ln in lines if ln.startswith(path)]
        assert line.split()[1] in ("REAL", "FAKE")
    assert run_cli(*some_good).returncode == 0


# ------------------------------------------------------------------------------------------------ found by the fuzz
# Both crashed the whole batch before the fix in vidfake/cli.py (expand_inputs, _write).


def test_over_long_path_is_reported(batch, tmp_path):
    _, good, _ = batch
    one = sorted(good)[-1]
    too_long = str(tmp_path / ("n" * 300 + ".jpg"))
    out = run_cli(one, too_long, "--format", "json")
    assert b"Traceback" not in out.stderr, out.stderr.decode(errors="replace")[-1500:]
    docs = {d["source"]: d for d in map(json.loads, out.stdout.decode().splitlines())}
    assert out.returncode == 1 and "error" in docs[too_long] and "error" not in docs[one]


def test_text_table_survives_non_utf8_names(tmp_path):
    name = os.path.join(os.fsencode(tmp_path), b"caf\xe9-latin1.jpg")  # a Latin-1 name, invalid UTF-8
    with open(name, "wb") as f:
        f.write(corpus.image("jpeg"))
    out = run_cli(os.fsdecode(name), env={"PYTHONIOENCODING": "utf-8"})
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-1500:]
    assert b"latin1.jpg" in out.stdout
