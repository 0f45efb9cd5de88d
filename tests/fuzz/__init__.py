"""Hostile-input fuzzing for vidfake's entry points (issue 7).

- :mod:`fuzz.corpus`: small valid media built deterministically (videos in mp4/webm/mkv/mov/avi, images in
  every format vidfake reads, wire payloads), the seeds every mutation starts from.
- :mod:`fuzz.mutate`: byte-level damage (truncation, bit flips, overwrites, splices) and container-aware
  header patches (absurd dimensions and frame counts in mp4 boxes, Matroska elements, PNG/JPEG/GIF/BMP
  headers; JPEG streams with markers removed).
- :mod:`fuzz.cases`: the recipes, and :func:`fuzz.cases.generate`, which turns ``(seed, entry, count)`` into
  the same cases on every machine.
- :mod:`fuzz.runner`: runs cases in a supervised worker process with a per-case deadline and a memory cap,
  classifies each outcome and summarises the counts; the CLI share runs through the real ``vidfake``
  command.

The package lives under ``tests/`` and is imported as ``fuzz`` (pytest puts ``tests/`` on ``sys.path``;
``benchmarks/fuzz.py`` does the same). It imports nothing heavy at import time.
"""
