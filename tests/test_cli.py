"""The real `vidfake` command, run as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args, stdin: bytes | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "vidfake", *args], input=stdin, capture_output=True,
                          timeout=timeout)


def test_help_is_instant_and_imports_no_torch():
    code = ("import sys; from vidfake.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'mediapipe', 'timm', 'cv2', 'bittensor') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "vidfake train" in out.stdout and "exit codes" in out.stdout


def test_version():
    out = run("--version")
    assert out.returncode == 0 and b"vidfake 0." in out.stdout


def test_bad_usage_exits_2():
    assert run().returncode == 2
    assert run("x.mp4", "--branches", "nope").returncode == 2
    assert run("x.mp4", "--threshold", "1.5").returncode == 2
    out = run("x.mp4", "--face-workers", "0")
    assert out.returncode == 2 and b"--face-workers must be at least 1" in out.stderr


@pytest.mark.slow
def test_batch_reports_each_input_and_exit_code(samples_dir, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes((samples_dir / "real_photo.jpg").read_bytes())
    out = run(str(samples_dir / "real_photo.jpg"), str(broken), str(folder), str(tmp_path / "missing.png"),
              "--weights", "tiny", "--format", "json")
    assert out.returncode == 1, out.stderr.decode()
    docs = [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]
    by_source = {d["source"]: d for d in docs}
    assert len(docs) == 4
    assert "error" in by_source[str(broken)] and "error" in by_source[str(tmp_path / "missing.png")]
    good = [d for d in docs if "error" not in d]
    assert len(good) == 2 and all(d["kind"] == "image" for d in good)


@pytest.mark.slow
def test_text_table_and_stdin(samples_dir):
    data = (samples_dir / "real_photo.jpg").read_bytes()
    out = run("-", "--weights", "tiny", stdin=data)
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    assert "<stdin>" in text and "P(fake)" in text and ("REAL" in text or "FAKE" in text)


@pytest.mark.slow
def test_threshold_is_the_weights_own_unless_given(samples_dir, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "detector.json").write_text(json.dumps({
        "image_model": "image2d_test", "tall_model": "tall_swin_test", "lip_model": "lip_test",
        "pretrained": False, "num_clips": 2, "num_frames": 4, "lip_windows": 1, "threshold": 0.73}))
    photo = str(samples_dir / "real_photo.jpg")
    own = run(photo, "--weights", str(weights), "--format", "json")
    assert own.returncode == 0, own.stderr.decode()
    doc = json.loads(own.stdout)
    assert (doc["threshold"], doc["threshold_source"]) == (0.73, "weights")
    assert doc["verdict"] == ("fake" if doc["probability_fake"] >= 0.73 else "real")
    given = json.loads(run(photo, "--weights", str(weights), "--format", "json", "--threshold", "0.2").stdout)
    assert (given["threshold"], given["threshold_source"]) == (0.2, "--threshold")
    text = run(photo, "--weights", str(weights)).stdout.decode()
    assert "verdict threshold on P(fake): 0.730 (the weights' own)" in text
