"""Visualisations: segment choice, timeline, Grad-CAM (analytic, real tiny models, and a trained one), report.

The key test (``test_partial_manipulation_...``) trains, inside the test, a small NPR-style CNN to spot
re-sampled patches, puts it in the detector as the 2D branch, and checks on a clip where only one
region of some frames is manipulated that the timeline peaks on those frames and that the Grad-CAM
mass falls inside the region. The other Grad-CAM tests use models whose heatmap is known exactly.
"""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vidfake import viz
from vidfake.result import ClipScore, DetectionResult, FrameScore

FPS = 25.0


@pytest.fixture(scope="module")
def tiny():
    from vidfake.detector import Detector

    det = Detector.from_pretrained("tiny")
    yield det
    det.close()


def _video(frames=(), clips=(), num_frames=100, source="clip.mp4", fps=FPS) -> DetectionResult:
    return DetectionResult(source=source, kind="video", probability_fake=0.7, threshold=0.5, verdict="fake",
                           three_class=(0.3, 0.35, 0.35), frames=tuple(frames), clips=tuple(clips),
                           num_frames=num_frames, fps=fps, width=320, height=240, frames_used=num_frames)


def _frame_scores(values: dict[int, float], face: bool = True, track: int = 0) -> list[FrameScore]:
    return [FrameScore(i, i / FPS, p, face, track) for i, p in sorted(values.items())]


def _clip(branch: str, a: int, b: int, p: float, track: int = 0) -> ClipScore:
    return ClipScore(branch, a, b, a / FPS, (b + 1) / FPS, p, track)


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


# ------------------------------------------------------------------------------------------ segment
def test_segment_is_the_window_with_the_highest_mean_across_branches():
    # 2D scores on every frame, high on 40-64; one TALL clip high (54-57); lip windows flat.
    frames = _frame_scores({i: (0.9 if 40 <= i <= 64 else 0.1) for i in range(100)})
    clips = [_clip("tall", s, s + 3, 0.8 if s == 54 else 0.2) for s in range(4, 100, 10)]
    clips += [_clip("lip", 0, 24, 0.5), _clip("lip", 50, 74, 0.5)]
    res = _video(frames, clips)
    combined, per_branch = viz.suspicion_curve(res)
    assert set(per_branch) == {"image2d", "tall", "lip"} and combined.shape == (100,)
    # Between clips a frame takes the nearest clip's score: TALL is high on 51-60.
    assert np.flatnonzero(per_branch["tall"] > 0.5).tolist() == list(range(51, 61))
    assert combined[52] == pytest.approx((0.9 + 0.8 + 0.5) / 3)
    seg = viz.most_suspicious_segment(res)
    # 25-frame window (1 s at 25 fps): only 40-64 holds every high 2D frame and the high TALL span.
    assert (seg.start_frame, seg.end_frame) == (40, 64)
    assert seg.start_time == pytest.approx(40 / FPS) and seg.end_time == pytest.approx(65 / FPS)
    assert seg.score == pytest.approx(combined[40:65].mean())
    assert seg.branches == ("image2d", "lip", "tall")
    assert viz.most_suspicious_segment(res, window_s=0.2).start_frame in range(51, 61 - 5 + 1)


def test_segment_faces_take_the_most_fake_and_ties_prefer_looked_at_frames():
    # Two faces on the same frames: the fake one (track 1) decides.
    frames = _frame_scores({i: 0.1 for i in range(30, 60)}, track=0)
    frames += _frame_scores({i: (0.95 if 40 <= i < 48 else 0.1) for i in range(30, 60)}, track=1)
    res = _video(frames, num_frames=100, fps=4.0)  # window = max(4, 1 s * 4 fps) = 4 frames
    seg = viz.most_suspicious_segment(res)
    assert (seg.start_frame, seg.end_frame) == (40, 43)
    assert seg.score == pytest.approx(0.95)
    # A flat curve: every window ties; the first one made of frames the branch actually looked at wins.
    flat = _video(_frame_scores({i: 0.4 for i in range(10, 20)}), num_frames=30, fps=4.0)
    assert viz.most_suspicious_segment(flat).start_frame == 10


def test_segment_edge_cases():
    assert viz.most_suspicious_segment(_video()) is None
    short = _video(_frame_scores({0: 0.2, 1: 0.9, 2: 0.3}), num_frames=3)
    seg = viz.most_suspicious_segment(short)
    assert (seg.start_frame, seg.end_frame) == (0, 2)  # window capped at the stream
    image = replace(short, kind="image", num_frames=1, frames=(FrameScore(0, 0.0, 0.8, False),))
    assert viz.most_suspicious_segment(image).score == pytest.approx(0.8)


# ------------------------------------------------------------------------------------------ timeline
def test_timeline_png_has_the_documented_size(tmp_path):
    frames = _frame_scores({i: 0.2 + 0.6 * (20 <= i < 40) for i in range(0, 100, 5)})
    frames[3] = replace(frames[3], face_found=False)
    clips = [_clip("tall", s, s + 3, 0.3) for s in range(2, 100, 12)] + [_clip("lip", 0, 24, 0.4)]
    res = _video(frames, clips, source="dir/we$ird <name>.mp4")  # "$" would start matplotlib mathtext
    path = viz.plot_timeline(res, tmp_path / "t.png")
    assert path == tmp_path / "t.png"
    assert _png_size(path) == viz.TIMELINE_SIZE == (1200, 450)
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.std() > 10  # something was drawn


def test_timeline_rejects_images(tmp_path):
    image = replace(_video(_frame_scores({0: 0.5})), kind="image", num_frames=1)
    with pytest.raises(ValueError, match="needs a video"):
        viz.plot_timeline(image, tmp_path / "t.png")


# ------------------------------------------------------------------------------------------ Grad-CAM
class PooledIntensity(nn.Module):
    """fake logit = mean of channel 0 over 32x32 cells: its Grad-CAM is relu(cell means), known exactly."""

    def __init__(self, channels_last: bool):
        super().__init__()
        if channels_last:
            self.output_fmt = "NHWC"  # as timm's Swin
        self.channels_last = channels_last
        self.gain = nn.Parameter(torch.ones(()))

    def forward_features(self, x):
        f = F.avg_pool2d(x[:, :1], 32) * self.gain
        return f.permute(0, 2, 3, 1) if self.channels_last else f

    def forward_head(self, f, pre_logits=False):
        m = f.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(m), m], dim=1)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _expected_cam(x: torch.Tensor) -> np.ndarray:
    cells = torch.relu(F.avg_pool2d(x[:, :1], 32))
    cam = F.interpolate(cells, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return (cam / cam.amax(dim=(1, 2), keepdim=True)).numpy()


@pytest.mark.parametrize("channels_last", [False, True])
def test_gradcam_matches_the_analytic_map_and_leaves_the_model_alone(channels_last):
    model = PooledIntensity(channels_last).train()
    x = torch.full((2, 3, 224, 224), -1.0)
    x[0, :, 40:100, 150:200] = 1.0
    x[1, :, 160:220, 0:64] = 2.0
    with torch.inference_mode():  # the detector runs in inference mode; Grad-CAM must still work
        cam = viz.gradcam(model, x.clone())
    assert cam.shape == (2, 224, 224) and cam.dtype == np.float32
    np.testing.assert_allclose(cam, _expected_cam(x), atol=1e-5)
    assert model.training and model.gain.grad is None


def test_gradcam_of_a_logit_that_argues_real_is_all_zero():
    model = PooledIntensity(False)
    cam = viz.gradcam(model, torch.full((1, 3, 64, 64), -1.0))  # every cell argues "real"
    assert cam.shape == (1, 64, 64) and not cam.any()


def test_gradcam_tall_on_the_real_tiny_tall_swin(tiny):
    rng = np.random.default_rng(0)
    layouts = rng.integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)
    before = {k: v.clone() for k, v in tiny.models["tall"].state_dict().items()}
    with torch.inference_mode():
        cams = viz.gradcam_tall(tiny, layouts)
    assert cams.shape == (3, 224, 224) and np.isfinite(cams).all()
    assert cams.min() >= 0 and cams.max() <= 1
    assert all(c.max() == pytest.approx(1.0) or not c.any() for c in cams)
    assert not tiny.models["tall"].training
    assert all(torch.equal(v, tiny.models["tall"].state_dict()[k]) for k, v in before.items())
    assert viz.gradcam_tall(tiny, layouts[0]).shape == (1, 224, 224)
    with pytest.raises(ValueError, match="224"):
        viz.gradcam_tall(tiny, layouts[:, :112])
    with pytest.raises(ValueError, match="uint8"):
        viz.gradcam_tall(tiny, layouts.astype(np.float32))


def test_gradcam_image_maps_back_onto_the_part_of_the_image_the_model_saw(tiny, monkeypatch):
    monkeypatch.setattr(tiny.branches["image2d"], "model", PooledIntensity(False))
    image = np.zeros((120, 360, 3), np.uint8)
    image[40:80, 160:200] = 255  # in the centre square the model sees
    image[40:80, 20:60] = 255  # outside it: cut off by the centre crop, must get no heat
    heat = viz.gradcam_image(tiny, image)
    assert heat.shape == (120, 360) and heat.dtype == np.float32
    assert heat.max() > 0.9
    # resize_for_model keeps x in [120, 240) of this image (short side 120 -> 224, centre crop).
    assert not heat[:, :119].any() and not heat[:, 241:].any()
    ys, xs = np.nonzero(heat > 0.5)
    assert abs(xs.mean() - 180) < 8 and abs(ys.mean() - 60) < 8
    with pytest.raises(ValueError, match="uint8"):
        viz.gradcam_image(tiny, image.astype(np.float32))


def _measured_view_box(height: int, width: int, size: int) -> tuple[float, ...]:
    """Run resize_for_model on an image holding each pixel's own coordinates and read the box back."""
    from vidfake.preprocessing.transforms import resize_for_model

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    out = resize_for_model(np.dstack([xs, ys, np.zeros_like(xs)]), size)
    # Output pixel j samples the kept box [b0, b1) at b0 + (j + 0.5) * (b1 - b0) / size (pixel centres
    # are at index + 0.5); two interior pixels give b0 and b1 (the borders are clamped by cv2).
    j1, j2 = size // 4, 3 * size // 4
    box = []
    for values in (out[size // 2, :, 0], out[:, size // 2, 1]):
        step = (values[j2] - values[j1]) / (j2 - j1)
        start = values[j1] + 0.5 - (j1 + 0.5) * step
        box.append((start, start + size * step))
    return box[0][0], box[1][0], box[0][1], box[1][1]


@pytest.mark.parametrize("shape", [(120, 360), (360, 120), (224, 224), (100, 101), (500, 300), (20, 900),
                                   (900, 20)])
def test_model_view_box_matches_resize_for_model(shape):
    # cv2 INTER_AREA at non-integer ratios samples up to ~0.1 px off the ideal footprint.
    from vidfake.preprocessing.transforms import resize_for_model_box

    assert resize_for_model_box(*shape, 224) == pytest.approx(_measured_view_box(*shape, 224), abs=0.15)


def test_tall_heatmaps_land_on_the_right_frame_and_place(tiny, monkeypatch):
    """Golden: a white square in the third frame of a clip is found there after the layout round trip."""
    from vidfake.branches import TallInput
    from vidfake.detector import Details
    from vidfake.preprocessing.faces import crop_faces
    from vidfake.preprocessing.layout import tall_layout

    monkeypatch.setattr(tiny.branches["tall"], "model", PooledIntensity(True))
    # Grey 120 is just below ImageNet's mean: the model finds nothing there; white is strongly "fake".
    frames = np.full((4, 240, 320, 3), 120, np.uint8)
    boxes = np.array([[100, 60, 180, 140], [110, 60, 190, 140], [-10, 80, 70, 160], [120, 60, 200, 140]],
                     np.float32)  # the third face hangs over the left edge: its crop is padded
    frames[2, 105:135, 15:45] = 255  # centre (30, 120): the middle of that face
    crops = crop_faces(frames, boxes, scale=1.3, size=112)
    indices = (10, 11, 12, 13)
    details = Details(frames=dict(zip(indices, frames, strict=True)),
                      layouts=[TallInput(0, indices, tall_layout(crops.images), tuple(crops.boxes))])
    res = _video(clips=[_clip("tall", 10, 13, 0.9)], num_frames=20)
    maps = viz.video_heatmaps(res, details, tiny)
    assert maps.branch == "tall" and [f.frame_index for f in maps.frames] == list(indices)
    masses = np.array([f.heat_input.sum() for f in maps.frames])
    assert masses[2] / masses.sum() > 0.95
    hot = maps.frames[2].heat_frame
    assert hot.shape == (240, 320)
    x0, y0, x1, y1 = crops.boxes[2]
    outside = np.ones_like(hot, bool)
    outside[max(y0, 0) : y1, max(x0, 0) : x1] = False
    assert not hot[outside].any()  # nothing outside the crop box
    ys, xs = np.nonzero(hot)
    weights = hot[ys, xs]
    assert abs(np.average(xs, weights=weights) - 30) < 10
    assert abs(np.average(ys, weights=weights) - 120) < 10


# ------------------------------------------------------------------------------------------ pictures
def test_mouth_strip_tiles_row_major_with_white_gaps():
    rois = np.broadcast_to((np.arange(25, dtype=np.uint8) * 10)[:, None, None], (25, 88, 88)).copy()
    strip = viz.mouth_strip(rois)
    assert strip.shape == (448, 448) and strip.dtype == np.uint8
    step = 88 + viz.MOUTH_GAP
    for k in range(25):
        r, c = divmod(k, 5)
        tile = strip[r * step : r * step + 88, c * step : c * step + 88]
        assert (tile == 10 * k).all()
    assert (strip[88 : 88 + viz.MOUTH_GAP] == 255).all()
    odd = viz.mouth_strip(rois[:7])  # 3 x 3 grid, two empty black tiles
    assert odd.shape == (3 * 88 + 4, 3 * 88 + 4)
    assert (odd[-88:, -88:] == 0).all()
    with pytest.raises(ValueError):
        viz.mouth_strip(rois[0])


def test_overlay_leaves_cold_pixels_alone():
    image = np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    assert np.array_equal(viz.overlay_heatmap(image, np.zeros((16, 20))), image)
    assert not np.array_equal(viz.overlay_heatmap(image, np.ones((16, 20))), image)
    with pytest.raises(ValueError):
        viz.overlay_heatmap(image, np.zeros((20, 16)))


@pytest.mark.parametrize(
    ("source", "stem"),
    [("dir/my clip (1).MP4", "my_clip_1"), ("<bytes>", "bytes"), ("../../etc/passwd", "passwd"),
     ("C:\\videos\\a.b.mp4", "a.b"), ("CON.mp4", "CON_"), ("....", "media"), ("vidéo.mp4", "vid_o"),
     (".hidden", "hidden")],
)
def test_report_names_are_filesystem_safe(source, stem):
    assert viz._safe_stem(source) == stem


# ------------------------------------------------------------------------------------------ report
class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


def _embedded(html_text: str) -> list[bytes]:
    parser = _Images()
    parser.feed(html_text)
    prefix = "data:image/png;base64,"
    assert all(s.startswith(prefix) for s in parser.srcs)
    return [base64.b64decode(s[len(prefix) :]) for s in parser.srcs]


@pytest.fixture(scope="module")
def face_video(tiny):
    from skimage.data import astronaut

    img = astronaut()[::2, ::2]
    frames = np.stack([np.roll(img, k, axis=1) for k in range(30)])  # 30 frames: one lip window
    return tiny.analyze(frames, kind="video", source="clips/astro <1>.mp4", keep_details=True)


def test_report_for_a_video_embeds_every_picture(tiny, face_video, tmp_path):
    res, details = face_video
    assert {b.name for b in res.branches if b.probability is not None} == {"image2d", "tall", "lip"}
    paths = viz.render_report(res, details, tmp_path / "out", detector=tiny)
    assert set(paths) == {"timeline", "heatmaps", "mouth", "html"}
    assert paths["html"] == tmp_path / "out" / "astro_1.html"
    assert _png_size(paths["timeline"]) == viz.TIMELINE_SIZE
    assert _png_size(paths["heatmaps"]) == viz.VIDEO_HEATMAP_SIZE == (1600, 840)
    assert _png_size(paths["mouth"]) == (448, 448)
    text = paths["html"].read_text(encoding="utf-8")
    images = _embedded(text)
    assert images == [paths[k].read_bytes() for k in ("timeline", "heatmaps", "mouth")]
    assert f'class="verdict {res.verdict}"' in text and res.verdict.upper() in text
    assert f"{res.probability_fake:.3f}" in text
    assert "astro &lt;1&gt;.mp4" in text and "<1>" not in text  # the file name is escaped
    assert all(f"<td>{name}</td>" in text for name in ("image2d", "tall", "lip"))
    assert "faces found" in text and "most suspicious segment" in text
    # A second report of the same source gets its own name and overwrites nothing.
    again = viz.render_report(res, details, tmp_path / "out", detector=tiny)
    assert again["html"].name == "astro_1-1.html" and again["timeline"].name == "astro_1-1_timeline.png"
    assert paths["html"].read_text(encoding="utf-8") == text


def test_report_without_detector_or_details_says_what_is_missing(face_video, tmp_path):
    res, details = face_video
    no_details = viz.render_report(res, None, tmp_path)
    assert set(no_details) == {"timeline", "html"}
    assert "keep_details=True" in no_details["html"].read_text(encoding="utf-8")
    no_detector = viz.render_report(res, details, tmp_path)
    assert set(no_detector) == {"timeline", "mouth", "html"}
    assert "pass detector=" in no_detector["html"].read_text(encoding="utf-8")


def test_report_for_an_image(tiny, tmp_path):
    from skimage.data import astronaut

    res, details = tiny.analyze(astronaut(), source="photo.png", keep_details=True)
    paths = viz.render_report(res, details, tmp_path, detector=tiny)
    assert set(paths) == {"heatmaps", "html"}
    assert _png_size(paths["heatmaps"]) == viz.IMAGE_HEATMAP_SIZE == (1200, 640)
    text = paths["html"].read_text(encoding="utf-8")
    assert _embedded(text) == [paths["heatmaps"].read_bytes()]
    assert res.verdict.upper() in text and "skipped: still image" in text


# ------------------------------------------------------------------------------------------ key test
SIDE = 224
REGION = (100, 40, 196, 136)  # x0, y0, x1, y1: 96 x 96 = 18.4% of the frame, not aligned to the 32-px cells
MANIPULATED = range(24, 56)  # frames 24..55 of 64
REQUIRED_MASS = 0.6  # share of the heatmap inside REGION (area share 0.184)


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    """A smooth random colour field with sensor-like noise, ``(side, side, 3) uint8``."""
    cells = max(2, side // 40)
    low = rng.integers(40, 215, size=(cells, cells, 3)).astype(np.float32)
    img = cv2.resize(low, (side, side), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 10, (side, side, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _resample(img: np.ndarray, box) -> np.ndarray:
    """Paste back a region shrunk 4x and enlarged again: the noise is gone there (a re-sampled patch)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    out = img.copy()
    small = cv2.resize(img[y0:y1, x0:x1], ((x1 - x0) // 4, (y1 - y0) // 4), interpolation=cv2.INTER_AREA)
    out[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return out


class PatchNet(nn.Module):
    """NPR-style test detector: neighbouring-pixel residual, 3x3 convs with 2x2 average pooling to stride
    32 (the 7x7 grid of the real 2D and TALL models at 224), global mean, 2 logits. Pooling, not strided
    convolutions, keeps each 32-px cell centred where bilinear upsampling assumes it."""

    def __init__(self, width: int = 16):
        super().__init__()
        from vidfake.temporal_models.image2d import npr_residual

        self.residual = npr_residual
        layers: list[nn.Module] = []
        for k in range(5):
            layers += [nn.Conv2d(3 if k == 0 else width, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, 2)

    def forward_features(self, x):
        return self.features(self.residual(x) * 3.0)

    def forward_head(self, f, pre_logits=False):
        f = f.mean(dim=(2, 3))
        return f if pre_logits else self.fc(f)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _train_patch_net(detector, steps: int = 120, side: int = 64, batch: int = 32) -> PatchNet:
    """Train on small random frames: half with a re-sampled square of random size and place."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    model = PatchNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        images, labels = [], []
        for k in range(batch):
            img = _texture(rng, side)
            if k % 2:
                s = int(rng.integers(side // 4, side // 2))
                x0, y0 = (int(v) for v in rng.integers(0, side - s + 1, size=2))
                img = _resample(img, (x0, y0, x0 + s, y0 + s))
            images.append(img)
            labels.append(k % 2)
        x = detector.branches["image2d"].to_tensor(np.stack(images))  # the detector's own normalisation
        loss = F.cross_entropy(model(x), torch.tensor(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _mass_inside(heat: np.ndarray, box) -> float:
    x0, y0, x1, y1 = box
    return float(heat[y0:y1, x0:x1].sum() / heat.sum())


class _NoFaces:
    def track(self, frames, frame_indices=None, *, rows=None):
        return []

    def has_face(self, frames):
        return False

    def close(self):
        pass


@pytest.mark.slow
def test_partial_manipulation_timeline_peaks_and_heatmap_localises(tiny, monkeypatch, tmp_path):
    """Only REGION of frames 24-55 is re-sampled. With a 2D detector trained (here, in seconds) to spot
    re-sampled patches anywhere, the timeline must peak on exactly those frames, the most suspicious
    1 s segment must lie inside them, and at least 60% of the Grad-CAM mass must fall inside REGION
    (18.4% of the frame) on the frame-level heatmap and on the report's heatmaps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convs: one thread is fastest and does not fight other processes
    try:
        model = _train_patch_net(tiny)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(tiny.branches["image2d"], "model", model)
    # The frames are textures without faces; mediapipe's full-range detector can still hallucinate one
    # in such blobs, so the tracker is told to find none: the 2D branch then scores whole frames.
    monkeypatch.setattr(tiny, "_tracker", _NoFaces())

    rng = np.random.default_rng(7)
    frames = np.stack([_texture(rng, SIDE) for _ in range(64)])
    for i in MANIPULATED:
        frames[i] = _resample(frames[i], REGION)
    res, details = tiny.analyze(frames, kind="video", source="partial.mp4", branches=["image2d"],
                                num_frames=64, keep_details=True)
    assert res.faces_found == 0 and len(res.frames) == 64  # whole frames, every frame scored

    # When: the timeline peaks on the manipulated frames and the highlighted segment lies inside them.
    p = np.array([f.probability for f in sorted(res.frames, key=lambda f: f.frame_index)])
    inside = np.isin(np.arange(64), list(MANIPULATED))
    assert p[inside].min() > p[~inside].max()
    assert int(np.argmax(p)) in MANIPULATED
    seg = viz.most_suspicious_segment(res)
    assert seg.start_frame >= MANIPULATED.start and seg.end_frame <= MANIPULATED.stop - 1
    assert _png_size(viz.plot_timeline(res, tmp_path / "t.png", details=details)) == viz.TIMELINE_SIZE

    # Where: Grad-CAM mass inside the re-sampled region, on single frames and in the report's pictures.
    for i in (MANIPULATED.start, 40, MANIPULATED.stop - 1):
        assert _mass_inside(viz.gradcam_image(tiny, frames[i]), REGION) >= REQUIRED_MASS
    maps = viz.video_heatmaps(res, details, tiny)
    assert maps.branch == "image2d" and len(maps.frames) == 4
    assert all(f.frame_index in MANIPULATED for f in maps.frames)
    assert all(_mass_inside(f.heat_frame, REGION) >= REQUIRED_MASS for f in maps.frames)
    paths = viz.render_report(res, details, tmp_path, detector=tiny)
    assert set(paths) == {"timeline", "heatmaps", "html"}
    assert re.search(r"most suspicious segment</th><td>[0-9.]+-[0-9.]+ s \(frames (\d+)-(\d+)\)",
                     paths["html"].read_text(encoding="utf-8"))
