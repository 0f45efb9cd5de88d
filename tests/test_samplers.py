"""Frame samplers: counts, bounds, consecutive clips, spacing, short streams, seeded training draws."""

from __future__ import annotations

import numpy as np
import pytest

from vidfake.preprocessing.samplers import (
    ClipSpan,
    all_frames,
    even_frames,
    lip_windows,
    tall_clips,
    union_indices,
)


def _consecutive(span: ClipSpan) -> bool:
    return list(span.indices) == list(range(span.start, span.start + len(span.indices)))


def test_tall_clips_golden_300_frames():
    clips = tall_clips(300, 8, 4)
    # 8 segments of 37 or 38 frames (floor(k * 300 / 8)), 4-frame clip centred in each.
    assert [c.start for c in clips] == [16, 54, 91, 129, 166, 204, 241, 279]
    assert all(len(c.indices) == 4 and _consecutive(c) and not c.padded for c in clips)
    bounds = [(k * 300) // 8 for k in range(9)]
    for k, clip in enumerate(clips):
        assert bounds[k] <= clip.start and clip.end < bounds[k + 1]


@pytest.mark.parametrize("num_frames", [32, 33, 47, 100, 251, 10_000])
def test_tall_clips_fit_inside_their_segments(num_frames):
    clips = tall_clips(num_frames, 8, 4)
    assert len(clips) == 8
    assert all(_consecutive(c) and not c.padded for c in clips)
    assert clips[0].start >= 0 and clips[-1].end <= num_frames - 1
    ends = [c.end for c in clips]
    starts = [c.start for c in clips]
    assert all(e < s for e, s in zip(ends[:-1], starts[1:], strict=True)), "clips must not overlap"
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 1, f"uneven spacing {gaps}"


def test_tall_clips_overlap_when_short():
    clips = tall_clips(10, 8, 4)
    assert [c.indices for c in clips] == [
        (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 6), (4, 5, 6, 7), (5, 6, 7, 8), (6, 7, 8, 9),
    ]  # fmt: skip
    # 7 distinct start positions for 8 clips: the duplicate is dropped at test time.
    assert all(not c.padded for c in clips)


def test_tall_clips_shorter_than_a_clip_is_padded():
    assert tall_clips(1, 8, 4) == [ClipSpan((0, 0, 0, 0), True)]
    assert tall_clips(3, 8, 4) == [ClipSpan((0, 1, 2, 2), True)]
    assert tall_clips(4, 8, 4) == [ClipSpan((0, 1, 2, 3), False)]
    assert len(tall_clips(3, 8, 4, training=True, rng=np.random.default_rng(0))) == 8


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_counts_raise(bad):
    with pytest.raises(ValueError):
        tall_clips(bad, 8, 4)
    with pytest.raises(ValueError):
        lip_windows(bad, 25)
    with pytest.raises(ValueError):
        even_frames(bad, 4)
    with pytest.raises(ValueError):
        all_frames(bad)
    with pytest.raises(ValueError):
        tall_clips(100, num_clips=bad, clip_len=4)


def test_tall_clips_training_seeded_and_within_segments():
    a = tall_clips(300, 8, 4, training=True, rng=np.random.default_rng(7))
    b = tall_clips(300, 8, 4, training=True, rng=np.random.default_rng(7))
    c = tall_clips(300, 8, 4, training=True, rng=np.random.default_rng(8))
    assert a == b and a != c
    bounds = [(k * 300) // 8 for k in range(9)]
    starts = set()
    for seed in range(200):
        clips = tall_clips(300, 8, 4, training=True, rng=np.random.default_rng(seed))
        assert len(clips) == 8
        for k, clip in enumerate(clips):
            assert _consecutive(clip) and bounds[k] <= clip.start and clip.end < bounds[k + 1]
        starts.add(clips[0].start)
    assert starts == set(range(0, 37 - 4 + 1)), "every start of segment 0 must be reachable"


def test_tall_clips_training_short_stream():
    for seed in range(50):
        clips = tall_clips(10, 8, 4, training=True, rng=np.random.default_rng(seed))
        assert len(clips) == 8 and all(_consecutive(c) and 0 <= c.start and c.end <= 9 for c in clips)
        assert [c.start for c in clips] == sorted(c.start for c in clips)


def test_lip_windows_non_overlapping_and_centred():
    windows = lip_windows(110, 25)  # 4 windows of 25, 10 frames left: 5 each side
    assert [w.start for w in windows] == [5, 30, 55, 80]
    assert all(len(w.indices) == 25 and _consecutive(w) and not w.padded for w in windows)
    assert [w.start for w in lip_windows(250, 25)] == list(range(0, 250, 25))


def test_lip_windows_stride_and_count():
    # 8 windows span frames 0..94 of 100: the 5 spare frames split 2 before, 3 after.
    assert [w.start for w in lip_windows(100, 25, stride=10)] == list(range(2, 73, 10))
    assert [w.start for w in lip_windows(101, 25, stride=10)] == list(range(3, 74, 10))
    assert [w.start for w in lip_windows(25, 25, stride=10)] == [0]
    windows = lip_windows(250, 25, num_windows=3)
    assert [w.start for w in windows] == [29, 112, 195]
    with pytest.raises(ValueError):
        lip_windows(100, 25, num_windows=2, stride=5)


def test_lip_windows_short_is_one_padded_window():
    (window,) = lip_windows(10, 25)
    assert window.padded and window.indices == tuple(range(10)) + (9,) * 15
    (window,) = lip_windows(25, 25)
    assert not window.padded and window.indices == tuple(range(25))


def test_lip_windows_training():
    (a,) = lip_windows(100, 25, training=True, rng=np.random.default_rng(3))
    (b,) = lip_windows(100, 25, training=True, rng=np.random.default_rng(3))
    assert a == b and _consecutive(a) and 0 <= a.start <= 75
    starts = {lip_windows(30, 25, training=True, rng=np.random.default_rng(s))[0].start for s in range(100)}
    assert starts == set(range(6))


def test_even_frames():
    assert even_frames(100, 4) == (12, 37, 62, 87)
    assert even_frames(10, 10) == tuple(range(10))
    assert even_frames(3, 8) == (0, 1, 2)
    assert even_frames(1, 1) == (0,)


def test_all_frames():
    assert all_frames(5) == ClipSpan((0, 1, 2, 3, 4), False)
    assert all_frames(500, max_frames=3).indices == (0, 1, 2)
    assert all_frames(2, max_frames=3).indices == (0, 1)


def test_union_indices_sorted_unique():
    spans = tall_clips(10, 8, 4) + [ClipSpan((9, 9, 9), True)] + [even_frames(100, 2)]
    out = union_indices(spans)
    assert out.dtype == np.int64
    assert out.tolist() == sorted(set(range(10)) | {25, 75})
    assert union_indices([]).shape == (0,)
