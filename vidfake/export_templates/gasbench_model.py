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

Image: the 2D detector (EfficientNet-Lite0 or NPR) on the whole image, centre-cropped square and
resized to its input size with area averaging.
Video: face crops (x``face_scale`` square around the largest frontal face found by OpenCV's Haar
cascade, centre moved down ``face_shift_y`` face sides to where landmark boxes centre, carried in the weights file; whole frames when ``face_crop`` is ``"none"`` or no face is found
in the clip) -> the 2D detector on every frame, and TALL-Swin on 2x2 layouts of each 4 consecutive
frames; the two branches are fused with vidfake's logistic fusion (the lip branch, which needs
mediapipe landmarks, is left out and imputed with its mean, as the detector does when it cannot run).
"""

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
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


# ----------------------------------------------------------------------------------------------- detectors
class ImageDetector(nn.Module):
    """``[B, 3, H, W]`` uint8 RGB -> logits ``[B, 2]`` (``[0, z]``, ``z`` the calibrated log-odds of fake)."""

    def __init__(self, arch, num_classes=2):
        super().__init__()
        self.arch = arch
        self.size = int(arch["image"]["input_size"])
        self.net = build_image_net(arch["image"])
        self.classifier = nn.Linear(self.net.num_features, num_classes)
        self.register_buffer("mean", _stats(arch["image"]["mean"]), persistent=False)
        self.register_buffer("std", _stats(arch["image"]["std"]), persistent=False)

    def forward(self, x):
        dtype = self.classifier.weight.dtype
        x = square_resize(x.float(), self.size)
        x = ((x - self.mean) / self.std).to(dtype)
        return self.classifier(self.net(x))


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

    def load_cascade(self):
        """Build the OpenCV face detector from the XML bytes loaded into ``face_cascade_xml``."""
        text = bytes(self.face_cascade_xml.cpu().numpy().tobytes()).decode("utf-8")
        storage = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
        cascade = cv2.CascadeClassifier()
        if not cascade.read(storage.getFirstTopLevelNode()) or cascade.empty():
            raise RuntimeError("the face cascade stored in the weights file does not load")
        self.cascade = cascade

    def face_boxes(self, frames):
        """Square crop boxes ``(B, T, 4)`` around the largest face of each frame.

        Frames without a detection take the box of the nearest frame with one; the boxes are then
        averaged over ``smooth_frames`` neighbouring frames (face trackers give steady boxes; a jittering
        crop would look like temporal inconsistency to TALL). A clip without any face uses whole frames.
        """
        b, t, _, h, w = frames.shape
        whole = [w / 2.0, h / 2.0, float(max(h, w))]
        pixels = frames.permute(0, 1, 3, 4, 2).contiguous().cpu().numpy()
        min_side = max(1, int(self.arch["haar_min_face"] * min(h, w)))
        out = np.zeros((b, t, 3), dtype=np.float64)
        for i in range(b):
            found = []
            for k in range(t):
                gray = cv2.cvtColor(pixels[i, k], cv2.COLOR_RGB2GRAY)
                faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                                      minSize=(min_side, min_side))
                if len(faces):
                    fx, fy, fw, fh = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
                    side = float(max(fw, fh))
                    cy = fy + fh / 2.0 + self.arch["face_shift_y"] * side
                    found.append((k, [fx + fw / 2.0, cy, self.arch["face_scale"] * side]))
            if not found:
                out[i] = whole
                continue
            for k in range(t):
                out[i, k] = min(found, key=lambda item: abs(item[0] - k))[1]
            radius = int(self.arch["smooth_frames"]) // 2
            if radius:
                padded = np.concatenate([out[i, :1].repeat(radius, 0), out[i], out[i, -1:].repeat(radius, 0)])
                out[i] = np.stack([padded[k:k + 2 * radius + 1].mean(0) for k in range(t)])
        cx, cy, side = out[..., 0], out[..., 1], out[..., 2]
        boxes = np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=-1)
        return torch.from_numpy(boxes.astype(np.float32))

    def forward(self, x):
        b, t, c, h, w = x.shape
        if t < 4:
            raise ValueError(f"expected at least 4 frames, got {t}")
        dtype = self.classifier.weight.dtype
        if self.cascade is not None:
            boxes = self.face_boxes(x)
        else:
            side = float(max(h, w))
            whole = [(w - side) / 2.0, (h - side) / 2.0, (w + side) / 2.0, (h + side) / 2.0]
            boxes = torch.tensor(whole, dtype=torch.float32).expand(b, t, 4)
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
        return self.classifier(torch.cat([image_feats, tall_feats], dim=1))


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


__all__ = ["ARCH", "ImageDetector", "VideoDetector", "load_model"]
