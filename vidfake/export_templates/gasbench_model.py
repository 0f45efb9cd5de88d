"""vidfake detector exported for BitMind SN34's benchmark (gasbench): the package's ``model.py``.

Written by ``vidfake export`` (vidfake, Apache-2.0). Self-contained: it
imports only what the subnet's sandbox allows (torch, torchvision, timm, einops, safetensors, cv2,
numpy, math) and rebuilds vidfake's networks from timm's building blocks, so ``model.safetensors`` loads
strictly, key for key.

Contract (gasbench ``docs/Safetensors.md``): ``load_model(weights_path, num_classes=2)`` returns a module
whose ``forward`` takes ``uint8`` RGB ``[B, 3, H, W]`` (image) or ``[B, T, 3, H, W]`` (video) in
[0, 255], casts and normalises inside, and returns logits ``[B, 2]`` for ``[real, synthetic]``. The
logits are ``[0, z]``: ``softmax`` gives ``p(fake) = sigmoid(z)``, ``z`` being vidfake's calibrated (image)
or fused (video) log-odds of fake. ``self.classifier`` is the final ``nn.Linear``; its input is the
pooled embedding (image: the 2D network's features; video: mean 2D features over frames beside mean
TALL features over clips), into which the per-branch heads, calibration and fusion are folded exactly.

Image: the 2D detector (EfficientNet-Lite0 or NPR), or vidfake's image probe (a frozen ImageNet
EfficientNet-Lite0's per-stage spatial mean and std, standardised, into a logistic head), on the whole
image, centre-cropped square and resized to its input size with area averaging.
Video: face crops (x``face_scale`` square around the largest frontal face found by OpenCV's Haar
cascade, centre moved down ``face_shift_y`` face sides to where landmark boxes centre, carried in the weights file; whole frames when ``face_crop`` is ``"none"`` or no face is found
in the clip) -> the 2D detector on every frame, and TALL-Swin on 2x2 layouts of each 4 consecutive
frames; the two branches are fused with vidfake's logistic fusion (the lip branch, which needs
mediapipe landmarks, is left out and imputed with its mean, as the detector does when it cannot run).
Scene path (``ARCH["scene"]``, exported with the Haar cascade when the detector has vidfake's scene
branch): a clip where the cascade finds a face in fewer than ``min_face_coverage`` of its frames is
scored on whole frames instead, as vidfake's detector does: windows of up to ``window`` frames at
``rate`` fps, each frame centre-squared to ``wire_size`` px (PIL bilinear) and round-tripped through
JPEG ``wire_quality`` (cv2, byte-identical to PIL's), a frozen ImageNet EfficientNet-Lite0's per-stage
spatial mean and std pooled over the window, plus motion statistics (:func:`temporal_features`), into
a standardised logistic head and its Platt calibration. Its logits are ``[0, z]`` as well; for such a
clip ``self.classifier`` sees a zero embedding (the face path does not run) and its output is replaced.
"""

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image
from safetensors.torch import load_file
from timm.models.efficientnet import _gen_efficientnet_lite
from timm.models.resnet import Bottleneck, ResNet
from timm.models.swin_transformer import SwinTransformer
from torch import nn
from torchvision.ops import roi_align

# <vidfake-arch>
ARCH = {
    "modality": "video",
    "num_classes": 2,
    "num_frames": 8,
    "face_crop": "none",
    "face_scale": 1.3131,  # what `vidfake export` writes: the TALL crop scale over HAAR_SIDE_RATIO
    "face_shift_y": 0.06,
    "haar_min_face": 0.08,
    "smooth_frames": 5,
    "image": {
        "family": "efficientnet_lite",
        "channel_multiplier": 0.25,
        "depth_multiplier": 0.25,
        "input_size": 224,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
    },
    "tall": {
        "embed_dim": 16,
        "depths": (1, 1, 1, 1),
        "num_heads": (1, 2, 2, 4),
        "window_size": (14, 14, 14, 7),
        "mlp_ratio": 4.0,
        "thumb": 112,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    },
    "scene": None,
}
# </vidfake-arch>


# ----------------------------------------------------------------------------------------------- networks
class NPRResNet(ResNet):
    """NPR (Tan et al., CVPR 2024): ResNet-50 stages 1-2 on the neighbouring-pixel residual."""

    def __init__(self, layers=(3, 4), channels=(64, 128), num_classes=0):
        super().__init__(block=Bottleneck, layers=layers, channels=channels, num_classes=num_classes)
        self.conv1 = nn.Conv2d(3, self.bn1.num_features, 3, stride=2, padding=1, bias=False)

    def forward_features(self, x):
        down = F.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
        residual = x - F.interpolate(down, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)
        x = self.maxpool(self.act1(self.bn1(self.conv1(residual * (2.0 / 3.0)))))
        return self.layer2(self.layer1(x))  # two stages: timm's ResNet.forward_features assumes four


class TallSwin(SwinTransformer):
    """TALL (Xu et al., ICCV 2023): Swin on 2x2 thumbnail layouts plus a learned embedding per thumbnail."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.thumbnail_embed = nn.Parameter(torch.zeros(4, self.embed_dim))
        gh, gw = self.patch_embed.grid_size
        rows = torch.arange(gh) // (gh // 2)
        cols = torch.arange(gw) // (gw // 2)
        self.register_buffer("thumbnail_index", rows[:, None] * 2 + cols[None, :], persistent=False)

    def forward_features(self, x):
        x = self.patch_embed(x)
        x = x + self.thumbnail_embed[self.thumbnail_index]
        x = self.layers(x)
        return self.norm(x)


def build_image_net(arch):
    """The 2D detector without its head: ``(B, 3, S, S)`` normalised -> pooled features ``(B, D)``."""
    if arch["family"] == "efficientnet_lite":
        return _gen_efficientnet_lite(
            "tf_efficientnet_lite0", arch["channel_multiplier"], arch["depth_multiplier"], pretrained=False,
            bn_eps=1e-3, pad_type="same", num_classes=0,
        )
    if arch["family"] == "npr":
        return NPRResNet(layers=tuple(arch["layers"]), channels=tuple(arch["channels"]), num_classes=0)
    raise ValueError(f"unknown 2D family {arch['family']!r}")


def stage_maps(net, x):
    """Every stage's output of a Lite EfficientNet, then its head convolution's."""
    y = net.bn1(net.conv_stem(x))
    maps = []
    for stage in net.blocks:
        y = stage(y)
        maps.append(y)
    maps.append(net.bn2(net.conv_head(y)))
    return maps


def stage_stats(net, x, maps=None):
    """Spatial mean and std of every stage's output of a Lite EfficientNet, then of its head convolution's
    (vidfake's ``Lite0Trunk.frame_features``): ``(B, 3, S, S)`` normalised -> ``(B, F)`` float32."""
    maps = stage_maps(net, x) if maps is None else maps
    return torch.cat([torch.cat([f.mean((2, 3)), f.std((2, 3))], 1) for f in maps], 1).float()


def build_tall_net(arch):
    """TALL-Swin without its head: ``(B, 3, 224, 224)`` normalised layouts -> pooled features ``(B, D)``."""
    return TallSwin(
        img_size=2 * arch["thumb"], patch_size=4, in_chans=3, num_classes=0, embed_dim=arch["embed_dim"],
        depths=tuple(arch["depths"]), num_heads=tuple(arch["num_heads"]),
        window_size=tuple(arch["window_size"]), mlp_ratio=arch["mlp_ratio"], drop_path_rate=0.0,
    )


# ----------------------------------------------------------------------------------------------- pixels
def _stats(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1) * 255.0


def square_resize(x, size):
    """Centre square of the short side, resized to ``size`` (area when shrinking, bilinear when growing),
    rounded to whole levels as the uint8 pipeline the networks were trained on.

    Args:
        x: ``(N, 3, H, W)`` float in [0, 255].
        size: output side.
    """
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top:top + side, left:left + side]
    if side == size:
        return x
    if side > size:
        x = F.interpolate(x, size=(size, size), mode="area")
    else:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return torch.floor(x + 0.5).clamp(0.0, 255.0)


def crop_resize(x, boxes, size):
    """Square crops resized to ``size``: bilinear sampling averaged over each output pixel's area
    (``roi_align`` with adaptive sampling), black outside the frame.

    Args:
        x: ``(N, 3, H, W)`` float in [0, 255].
        boxes: ``(N, 4)`` float ``x0, y0, x1, y1`` in pixels, one per image.
        size: output side.
    """
    index = torch.arange(x.shape[0], device=x.device, dtype=torch.float32)[:, None]
    rois = torch.cat([index, boxes.to(device=x.device, dtype=torch.float32)], dim=1)
    out = roi_align(x.float(), rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return torch.floor(out + 0.5).clamp(0.0, 255.0)


# ----------------------------------------------------------------------------------------------- scene path
# Copies of vidfake.scene's time and motion code (this file is self-contained); vidfake's tests
# compare them with the originals.
def scene_available_frames(num_frames, fps, rate):
    """Frames a ``num_frames`` stream at ``fps`` has at ``rate``: sample times ``k / rate`` before its end."""
    if num_frames < 1:
        return 0
    return max(1, math.ceil(num_frames / fps * rate - 1e-9))


def scene_resample_indices(num_frames, fps, rate, length, start=0):
    """Stream indices of ``length`` frames at ``rate`` from resampled frame ``start`` (``floor(t * fps)``)."""
    t = (start + np.arange(length)) / rate
    return np.minimum(np.floor(t * fps + 1e-6).astype(int), num_frames - 1)


def scene_windows(num_frames, fps, arch):
    """Index windows of a ``num_frames`` clip at ``fps`` (vidfake's ``SceneBranch.plan``; [] when too short)."""
    rate, window, count = float(arch["rate"]), int(arch["window"]), int(arch["windows"])
    spans = []
    if fps < rate:  # slower than the common rate: every frame, none repeated
        size = min(window, num_frames)
        for s in np.linspace(0, num_frames - size, count).round().astype(int):
            span = list(range(int(s), int(s) + size))
            if span not in spans:
                spans.append(span)
        return spans
    avail = scene_available_frames(num_frames, fps, rate)
    length = min(window, avail)
    if length < int(arch["min_window"]):
        return spans
    n = max(1, min(count, avail // length))
    for s in np.linspace(0, avail - length, n).round().astype(int):
        span = [int(i) for i in scene_resample_indices(num_frames, fps, rate, length, int(s))]
        if span not in spans:
            spans.append(span)
    return spans


def wire_frames(frames, size, quality):
    """What vidfake's scene head was trained on: centre square, ``size`` px (PIL bilinear, as validators
    resize), JPEG at ``quality`` (cv2's encoder gives PIL's bytes: same libjpeg settings, 4:2:0).

    Args:
        frames: ``(T, H, W, 3) uint8`` RGB.

    Returns:
        ``(T, size, size, 3) uint8`` RGB.
    """
    out = []
    for frame in frames:
        h, w = frame.shape[:2]
        m = min(h, w)
        top, left = int(round((h - m) / 2.0)), int(round((w - m) / 2.0))
        square = np.ascontiguousarray(frame[top:top + m, left:left + m])
        if m != size:
            square = np.asarray(Image.fromarray(square).resize((size, size), Image.BILINEAR))
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(square, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("cv2 could not encode a frame as JPEG")
        out.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(out)


def temporal_features(frames):
    """Motion statistics of consecutive frames, exactly as ``vidfake.scene.temporal_features``.

    Args:
        frames: ``(T, H, W, 3) uint8`` RGB, T >= 2 (a single frame gives zeros).

    Returns:
        ``(27,) float32``: frame differences, DIS optical flow (ultrafast), warp residual.
    """
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    g = grey.astype(np.float32)
    t = len(g)
    eps = 1e-3
    luma = g.mean((1, 2))
    contrast = g.std((1, 2))
    sharp = np.array([cv2.Laplacian(x, cv2.CV_32F).var() for x in g])
    if t < 2:
        return np.zeros(27, np.float32)

    def cv(v):  # coefficient of variation over time
        return float(np.std(v) / (np.mean(v) + eps))

    d = np.abs(np.diff(g, axis=0))
    dm = d.mean((1, 2))
    accel = np.abs(g[2:] - 2 * g[1:-1] + g[:-2]).mean((1, 2)) if t >= 3 else np.zeros(1, np.float32)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    h, w = g.shape[1:]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    flows, res = [], []
    for k in range(t - 1):
        f = dis.calc(grey[k], grey[k + 1], None)
        flows.append(f)
        warped = cv2.remap(g[k + 1], xx + f[..., 0], yy + f[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        res.append(np.abs(warped - g[k]))
    fl = np.stack(flows)
    mag = np.hypot(fl[..., 0], fl[..., 1])
    mag_t = mag.mean((1, 2))
    mean_vec = fl.mean((1, 2))
    coherence = np.hypot(mean_vec[:, 0], mean_vec[:, 1]) / (mag_t + eps)
    grad = np.mean([np.abs(np.diff(fl, axis=1)).mean(), np.abs(np.diff(fl, axis=2)).mean()])
    faccel = np.abs(np.diff(fl, axis=0)).mean() if t >= 3 else 0.0
    r = np.stack(res)
    r_t = r.mean((1, 2))
    lg = np.log1p
    vals = [
        lg(dm.mean()), cv(dm), lg(np.percentile(d, 50)), lg(np.percentile(d, 90)), lg(np.percentile(d, 99)),
        float(dm.max() / (dm.mean() + eps)),
        lg(accel.mean()), float(accel.mean() / (dm.mean() + eps)), lg(np.std(luma)), cv(contrast), cv(sharp),
        lg(mag.mean()), lg(mag.std()), lg(np.percentile(mag, 50)), lg(np.percentile(mag, 90)),
        lg(np.percentile(mag, 99)), cv(mag_t), float((mag < 0.1).mean()),
        float(coherence.mean()), lg(grad), float(grad / (mag.mean() + eps)), lg(faccel),
        float(faccel / (mag.mean() + eps)),
        lg(r.mean()), lg(np.percentile(r, 90)), float(r.mean() / (d.mean() + eps)), cv(r_t),
    ]
    return np.asarray(vals, np.float32)


class SceneDetector(nn.Module):
    """vidfake's scene branch: ``(T, 3, H, W)`` uint8 whole frames of one clip -> calibrated log-odds of fake.

    The head is ``logit = bias + coef . (x - mean) / scale`` per window over the feature blocks in
    ``arch["features"]`` order, the clip's logit the mean over windows, then Platt scaling
    ``logit / calibration[0] + calibration[1]``; the head is evaluated in float64 as vidfake does. In a
    bfloat16 package its buffers are rounded with the rest (p 0.490 -> 0.510 on a test clip).
    """

    def __init__(self, arch):
        super().__init__()
        self.arch = arch
        self.size = int(arch["input_size"])
        self.trunk = build_image_net(arch["trunk"]) if "lite0" in arch["features"] else None
        dim = int(arch["head_dim"])
        for name in ("mean", "scale", "coef"):
            self.register_buffer(name, torch.zeros(dim))
        self.register_buffer("bias", torch.zeros(1))
        self.register_buffer("calibration", torch.tensor([1.0, 0.0]))
        self.register_buffer("pixel_mean", _stats(arch["mean"]), persistent=False)
        self.register_buffer("pixel_std", _stats(arch["std"]), persistent=False)

    def frame_features(self, frames):
        """``(T, S, S, 3) uint8`` -> ``(T, F)`` float32: every stage's spatial mean and std (Lite0Trunk)."""
        interp = cv2.INTER_AREA if frames.shape[1] > self.size else cv2.INTER_LINEAR
        sized = np.stack([f if f.shape[0] == self.size else cv2.resize(f, (self.size, self.size), interpolation=interp)
                          for f in frames])
        param = self.trunk.conv_stem.weight
        x = torch.from_numpy(sized).to(param.device).permute(0, 3, 1, 2).float()
        return stage_stats(self.trunk, ((x - self.pixel_mean) / self.pixel_std).to(param.dtype))

    def window_logit(self, frames):
        """One window of wire frames ``(L, S, S, 3) uint8`` -> the head's log-odds (float64 scalar tensor)."""
        blocks = {"temporal": torch.from_numpy(temporal_features(frames))}
        if self.trunk is not None:
            per = self.frame_features(frames)
            blocks["lite0"] = torch.cat([per.mean(0), per.std(0, unbiased=False)]).cpu()
        x = torch.cat([blocks[name] for name in self.arch["features"]]).double()
        mean, scale, coef = (v.detach().double().cpu() for v in (self.mean, self.scale, self.coef))
        return ((x - mean) / scale) @ coef + self.bias.detach().double().cpu()[0]

    def forward(self, frames, fps):
        """Calibrated log-odds (float64 scalar tensor) of one clip, ``frames`` ``(T, 3, H, W) uint8`` at ``fps``.

        Raises:
            ValueError: the clip gives no window (fewer than ``min_window`` frames at ``rate``).
        """
        spans = scene_windows(frames.shape[0], fps, self.arch)
        if not spans:
            raise ValueError(f"{frames.shape[0]} frames at {fps:g} fps give no scene window")
        pixels = frames.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        size, quality = int(self.arch["wire_size"]), int(self.arch["wire_quality"])
        z = torch.stack([self.window_logit(wire_frames(pixels[span], size, quality)) for span in spans]).mean()
        cal = self.calibration.detach().double().cpu()
        return z / cal[0] + cal[1]


# ----------------------------------------------------------------------------------------------- detectors
class ImageDetector(nn.Module):
    """``[B, 3, H, W]`` uint8 RGB -> logits ``[B, 2]`` (``[0, z]``, ``z`` the calibrated log-odds of fake).

    With ``ARCH["image"]["pool"] == "stage_stats"`` (vidfake's image probe) the embedding is the frozen
    network's :func:`stage_stats`, standardised by ``feat_mean`` / ``feat_scale`` in float32, and the
    classifier holds the probe's logistic regression with its calibration folded in; otherwise it is the
    2D detector's pooled features. With ``ARCH["image"]["rigid_start"]`` (the probe's stability term) the
    input of ``net.blocks[rigid_start]`` gets the fixed ``rigid_noise`` times ``rigid_sigma`` times its RMS,
    the last stages run again on it, and ``rigid_weight`` times one minus the cosine similarity of the two
    head embeddings is added to the fake logit.
    """

    def __init__(self, arch, num_classes=2):
        super().__init__()
        self.arch = arch
        self.size = int(arch["image"]["input_size"])
        self.net = build_image_net(arch["image"])
        self.stage_stats = arch["image"].get("pool") == "stage_stats"
        self.rigid_start = int(arch["image"].get("rigid_start", 0))
        dim = int(arch["image"]["head_dim"]) if self.stage_stats else self.net.num_features
        self.classifier = nn.Linear(dim, num_classes)
        if self.stage_stats:
            self.register_buffer("feat_mean", torch.zeros(dim))
            self.register_buffer("feat_scale", torch.ones(dim))
        if self.rigid_start:
            self.rigid_sigma = float(arch["image"]["rigid_sigma"])
            self.register_buffer("rigid_noise", torch.zeros(tuple(arch["image"]["rigid_shape"])))
            self.register_buffer("rigid_weight", torch.zeros(()))
        self.register_buffer("mean", _stats(arch["image"]["mean"]), persistent=False)
        self.register_buffer("std", _stats(arch["image"]["std"]), persistent=False)

    def features(self, x):
        """``[B, 3, H, W]`` uint8 -> the classifier's input, before standardisation."""
        x = square_resize(x.float(), self.size)
        x = ((x - self.mean) / self.std).to(self.classifier.weight.dtype)
        return stage_stats(self.net, x) if self.stage_stats else self.net(x)

    def forward(self, x):
        dtype = self.classifier.weight.dtype
        x = ((square_resize(x.float(), self.size) - self.mean) / self.std).to(dtype)
        if not self.stage_stats:
            return self.classifier(self.net(x))
        maps = stage_maps(self.net, x)
        feats = stage_stats(self.net, x, maps)
        logits = self.classifier(((feats - self.feat_mean.float()) / self.feat_scale.float()).to(dtype))
        if self.rigid_start:
            y = maps[self.rigid_start - 1]
            rms = y.float().pow(2).mean((1, 2, 3), keepdim=True).sqrt()
            y = y + (self.rigid_sigma * rms * self.rigid_noise.float()).to(y.dtype)
            for stage in self.net.blocks[self.rigid_start:]:
                y = stage(y)
            noisy = self.net.bn2(self.net.conv_head(y)).mean((2, 3)).float()
            score = 1.0 - F.cosine_similarity(maps[-1].mean((2, 3)).float(), noisy, dim=1)
            fake = logits[:, 1].float() + self.rigid_weight.float() * score
            logits = torch.stack([logits[:, 0].float(), fake], 1).to(logits.dtype)
        return logits


class VideoDetector(nn.Module):
    """``[B, T, 3, H, W]`` uint8 RGB -> logits ``[B, 2]`` (``[0, z]``, ``z`` the fused log-odds of fake)."""

    def __init__(self, arch, num_classes=2):
        super().__init__()
        self.arch = arch
        self.image_size = int(arch["image"]["input_size"])
        self.thumb = int(arch["tall"]["thumb"])
        self.image = build_image_net(arch["image"])
        self.tall = build_tall_net(arch["tall"])
        self.classifier = nn.Linear(self.image.num_features + self.tall.num_features, num_classes)
        self.register_buffer("image_mean", _stats(arch["image"]["mean"]), persistent=False)
        self.register_buffer("image_std", _stats(arch["image"]["std"]), persistent=False)
        self.register_buffer("tall_mean", _stats(arch["tall"]["mean"]), persistent=False)
        self.register_buffer("tall_std", _stats(arch["tall"]["std"]), persistent=False)
        self.cascade = None
        if arch["face_crop"] == "haar":
            # The cascade's XML travels in the weights file, so the package needs no file beside it.
            self.register_buffer("face_cascade_xml", torch.zeros(0, dtype=torch.uint8))
        # The scene path needs the cascade to tell that a clip has no face: exported only with it.
        self.scene = SceneDetector(arch["scene"]) if arch["face_crop"] == "haar" and arch.get("scene") else None

    def load_cascade(self):
        """Build the OpenCV face detector from the XML bytes loaded into ``face_cascade_xml``."""
        text = bytes(self.face_cascade_xml.cpu().numpy().tobytes()).decode("utf-8")
        storage = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
        cascade = cv2.CascadeClassifier()
        if not cascade.read(storage.getFirstTopLevelNode()) or cascade.empty():
            raise RuntimeError("the face cascade stored in the weights file does not load")
        self.cascade = cascade

    def find_faces(self, frames):
        """Per clip, ``(frame index, [cx, cy, side])`` of the largest face in each frame where the cascade
        finds one (``side`` already scaled to the crop, centre shifted down to where landmark boxes centre).

        Args:
            frames: ``(B, T, 3, H, W) uint8``.
        """
        b, t, _, h, w = frames.shape
        pixels = frames.permute(0, 1, 3, 4, 2).contiguous().cpu().numpy()
        min_side = max(1, int(self.arch["haar_min_face"] * min(h, w)))
        found = []
        for i in range(b):
            clip = []
            for k in range(t):
                gray = cv2.cvtColor(pixels[i, k], cv2.COLOR_RGB2GRAY)
                faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                                      minSize=(min_side, min_side))
                if len(faces):
                    fx, fy, fw, fh = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
                    side = float(max(fw, fh))
                    cy = fy + fh / 2.0 + self.arch["face_shift_y"] * side
                    clip.append((k, [fx + fw / 2.0, cy, self.arch["face_scale"] * side]))
            found.append(clip)
        return found

    def boxes_from_faces(self, found, t, h, w):
        """Square crop boxes ``(B, T, 4)`` from :meth:`find_faces`' detections.

        Frames without a detection take the box of the nearest frame with one; the boxes are then
        averaged over ``smooth_frames`` neighbouring frames (face trackers give steady boxes; a jittering
        crop would look like temporal inconsistency to TALL). A clip without any face uses whole frames.
        """
        out = np.zeros((len(found), t, 3), dtype=np.float64)
        for i, clip in enumerate(found):
            if not clip:
                out[i] = [w / 2.0, h / 2.0, float(max(h, w))]
                continue
            for k in range(t):
                out[i, k] = min(clip, key=lambda item: abs(item[0] - k))[1]
            radius = int(self.arch["smooth_frames"]) // 2
            if radius:
                padded = np.concatenate([out[i, :1].repeat(radius, 0), out[i], out[i, -1:].repeat(radius, 0)])
                out[i] = np.stack([padded[k:k + 2 * radius + 1].mean(0) for k in range(t)])
        cx, cy, side = out[..., 0], out[..., 1], out[..., 2]
        boxes = np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=-1)
        return torch.from_numpy(boxes.astype(np.float32))

    def face_boxes(self, frames):
        """Square crop boxes ``(B, T, 4)`` around the largest face of each frame (see :meth:`boxes_from_faces`)."""
        b, t, _, h, w = frames.shape
        return self.boxes_from_faces(self.find_faces(frames), t, h, w)

    def scene_fps(self):
        """The frame rate the scene path assumes: the config's ``frame_rate`` when exported with one
        (gasbench then samples at about that rate), else the scene head's own rate, i.e. the frames are
        taken as they come (gasbench's consecutive frames at the video's unknown native rate)."""
        return float(self.arch["scene"]["frame_rate"] or self.arch["scene"]["rate"])

    def face_embedding(self, x, boxes):
        """``[N, T, 3, H, W]`` uint8 and crop boxes ``(N, T, 4)`` -> mean 2D and mean TALL features."""
        b, t, c, h, w = x.shape
        dtype = self.classifier.weight.dtype
        frames = x.reshape(b * t, c, h, w).float()
        boxes = boxes.reshape(b * t, 4)
        crops = crop_resize(frames, boxes, self.image_size)
        feats = self.image(((crops - self.image_mean) / self.image_std).to(dtype))
        image_feats = feats.reshape(b, t, -1).mean(1)
        thumbs = crop_resize(frames, boxes, self.thumb).reshape(b, t, c, self.thumb, self.thumb)
        clips = t // 4
        layouts = rearrange(thumbs[:, : clips * 4], "b (n gh gw) c h w -> (b n) c (gh h) (gw w)", gh=2, gw=2)
        feats = self.tall(((layouts - self.tall_mean) / self.tall_std).to(dtype))
        tall_feats = feats.reshape(b, clips, -1).mean(1)
        return torch.cat([image_feats, tall_feats], dim=1)

    def forward(self, x):
        b, t, c, h, w = x.shape
        if t < 4:
            raise ValueError(f"expected at least 4 frames, got {t}")
        dtype = self.classifier.weight.dtype
        scene_rows = []
        if self.cascade is not None:
            found = self.find_faces(x)
            if self.scene is not None and scene_windows(t, self.scene_fps(), self.arch["scene"]):
                # vidfake's rule: a face seen in under min_face_coverage of the frames is a glimpse (a
                # poster, a false detection); such a clip takes the scene path.
                cover = float(self.arch["scene"]["min_face_coverage"])
                scene_rows = [i for i in range(b) if len(found[i]) < cover * t]
            boxes = self.boxes_from_faces(found, t, h, w)
        else:
            side = float(max(h, w))
            whole = [(w - side) / 2.0, (h - side) / 2.0, (w + side) / 2.0, (h + side) / 2.0]
            boxes = torch.tensor(whole, dtype=torch.float32).expand(b, t, 4)
        face_rows = [i for i in range(b) if i not in scene_rows]
        if not scene_rows:
            return self.classifier(self.face_embedding(x, boxes))
        # The classifier still sees a [B, D] batch (gasbench reads embeddings from its input): zeros for
        # scene clips, whose logits are then replaced by the scene path's.
        embedding = torch.zeros(b, self.classifier.in_features, dtype=dtype, device=x.device)
        if face_rows:
            embedding[face_rows] = self.face_embedding(x[face_rows], boxes[face_rows]).to(dtype)
        logits = self.classifier(embedding)
        fps = self.scene_fps()
        z = torch.stack([self.scene(x[i], fps) for i in scene_rows]).to(device=logits.device, dtype=logits.dtype)
        rows = torch.tensor(scene_rows, device=logits.device)
        return logits.index_put((rows,), torch.stack([torch.zeros_like(z), z], dim=1))


def load_model(weights_path: str, num_classes: int = 2) -> nn.Module:
    """gasbench's entry point: the detector with its weights, in eval mode.

    Args:
        weights_path: path of ``model.safetensors``.
        num_classes: must be 2 (``[real, synthetic]``).
    """
    if num_classes != ARCH["num_classes"]:
        raise ValueError(f"this package answers {ARCH['num_classes']} classes, not {num_classes}")
    detector = VideoDetector(ARCH, num_classes) if ARCH["modality"] == "video" else ImageDetector(ARCH, num_classes)
    state = load_file(weights_path)
    if "face_cascade_xml" in state:
        detector.face_cascade_xml = torch.zeros_like(state["face_cascade_xml"])
    detector.load_state_dict(state, strict=True)
    if ARCH["modality"] == "video" and ARCH["face_crop"] == "haar":
        detector.load_cascade()
    detector.train(False)
    return detector


__all__ = ["ARCH", "ImageDetector", "SceneDetector", "VideoDetector", "load_model", "stage_maps", "stage_stats",
           "temporal_features", "wire_frames"]
