"""Source groups for leave-one-source-out evaluation: which generator family or real source a row is.

The manifest's ``group`` column holds out people and scenes; a detector that passes that split can still
be at chance on a generator it never saw (the data README). Leave-one-source-out needs coarser units:

- fakes by generator *family*, from the ``method`` column: the detector is asked whether it recognises
  a family it never trained on, not a sibling checkpoint of one it did (SD 1.5 fine-tunes go with SD 1.5;
  OminiControl, UNO, InfiniteYou and VisualCloze with FLUX);
- reals by *source*, from ``source_repo``, merged into sources of one kind (ImageNet samples, face
  libraries' test photos, style-transfer artworks, ...), so that a held-out real group is a kind of
  photo the head has not seen either.

Families with fewer than about 8 items are merged into a neighbour (the rule's name says which), so every
group has enough items for a per-group AUC. Rules are tried in order and the first match wins; every
rule fixes the label, so no group mixes real and fake. A row no rule matches raises
:class:`UnknownSourceError` rather than landing in a catch-all group silently: a new source must be
placed deliberately.

Images and videos share the module: videos are grouped into face-swap / talking-head fakes against
scene text-to-video and image-to-video families, reals by kind of footage.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vidfake.training.data import MediaItem

__all__ = ["RULES", "GroupRule", "UnknownSourceError", "assign_groups", "group_of", "group_sizes"]


class UnknownSourceError(ValueError):
    """A manifest row matches no group rule; add one to :data:`RULES`."""


@dataclass(frozen=True)
class GroupRule:
    """``pattern`` (case-insensitive regex, searched) on ``field`` of items of ``kind`` and ``label``."""

    kind: str
    label: int
    name: str
    field: str  # "method" or "source"
    pattern: str

    def matches(self, item: MediaItem) -> bool:
        return (item.kind == self.kind and item.label == self.label
                and re.search(self.pattern, getattr(item, self.field), re.IGNORECASE) is not None)


def _fake(kind: str, name: str, pattern: str, field: str = "method") -> GroupRule:
    return GroupRule(kind, 1, name, field, pattern)


def _real(kind: str, name: str, pattern: str) -> GroupRule:
    return GroupRule(kind, 0, name, "source", pattern)


RULES: tuple[GroupRule, ...] = (
    # ----------------------------------------------------------------- image fakes, by family
    # Edits of real photos first: their methods name the generator that filled the mask too.
    _fake("image", "inpainting/face-swap edits (semi-synthetic)",
          r"inpaint|BrushNet|IOPaint|face swap|roop|inswapper"),
    _fake("image", "SD1.5 and fine-tunes (Deliberate, DreamShaper, LCM-DreamShaper)",
          r"Stable Diffusion 1\.5|LCM-Dreamshaper"),
    _fake("image", "anime (Animagine/NovelAI/Waifu)", r"Animagine|NovelAI|Waifu"),
    _fake("image", "unknown T2I (real-or-ai-game)", r"real-or-ai-game", field="source"),
    _fake("image", "FLUX family (FLUX, OminiControl, UNO, InfiniteYou, VisualCloze, Chroma)",
          r"FLUX|Chroma"),
    _fake("image", "SD2/SDXL/SD3/Turbo/unCLIP", r"Stable Diffusion (2|3|x4)|SDXL|unCLIP"),
    _fake("image", "Stable Cascade", r"Stable Cascade"),
    _fake("image", "DiT/PixArt/Sana/HunyuanDiT/Z-Image", r"DiT|PixArt|Sana|Z-Image"),
    _fake("image", "DALL-E 2", r"DALL-E 2"),
    _fake("image", "DeepFloyd IF", r"DeepFloyd"),
    _fake("image", "Kandinsky", r"Kandinsky"),
    # CogView (6 items) joins the autoregressive/unified models: too few for a group of its own.
    _fake("image", "Infinity/OmniGen/CogView (AR and unified)", r"Infinity|OmniGen|CogView"),
    _fake("image", "StyleGAN/VASA portraits", r"StyleGAN|VASA"),
    _fake("image", "DFDC face-swap crops", r"DFDC"),
    # ----------------------------------------------------------------- image reals, by kind of source
    _real("image", "ImageNet samples", r"imagenet-sample-images"),
    _real("image", "real-or-ai-game photos", r"real-or-ai-game"),
    _real("image", "stargan-v2 (CelebA-HQ/AFHQ)", r"stargan-v2"),
    _real("image", "DFDC real face crops", r"GenConViT|icpr2020dfdc"),
    _real("image", "face-recognition libraries (deepface, dlib, face_recognition, retinaface)",
          r"deepface|dlib|face_recognition|retinaface"),
    _real("image", "face editing/restoration inputs (CodeFormer, InstantID, PuLID, inswapper, roop, KAIR)",
          r"CodeFormer|InstantID|PuLID|inswapper|roop|KAIR"),
    _real("image", "pose photos (mmpose)", r"mmpose"),
    _real("image", "salient-object photos (U-2-Net, rembg)", r"U-2-Net|rembg"),
    _real("image", "detection/segmentation/depth demo photos (SAM, YOLO, Depth-Anything, skimage)",
          r"segment-anything|sam2|Grounded-Segment|YOLOX|yolov7|Depth-Anything|scikit-image"),
    _real("image", "editing-demo inputs (Inpaint-Anything, IOPaint, BrushNet, CompVis SD)",
          r"Inpaint-Anything|IOPaint|BrushNet|CompVis"),
    _real("image", "style-transfer artworks (neural-style, AdaIN, ...)",
          r"neural-style|Neural-Style|style-transfer|AdaIN"),
    # 12 tiny manga crops: the only human-drawn comics; kept apart so "art" is not one block.
    _real("image", "manga crops (manga-ocr)", r"manga-ocr"),
    # ----------------------------------------------------------------- video fakes
    _fake("video", "face swap (DeepFaceLive)", r"DeepFaceLive"),
    _fake("video", "talking head (SadTalker, Linly-Talker)", r"SadTalker|Linly-Talker"),
    _fake("video", "diffusion talking head / portrait I2V (DreamTalk, MuseV)", r"DreamTalk|MuseV"),
    _fake("video", "AnimateDiff", r"AnimateDiff"),
    _fake("video", "VideoCrafter/DynamiCrafter", r"VideoCrafter|DynamiCrafter"),
    _fake("video", "LaVie/SEINE", r"LaVie|SEINE"),
    _fake("video", "DiT text-to-video (Sora, Open-Sora-Plan, CogVideoX, EasyAnimate, Allegro)",
          r"Sora|CogVideoX|EasyAnimate|Allegro"),
    # ----------------------------------------------------------------- video reals
    _real("video", "DeepFaceLive source streams", r"DeepFaceLive"),
    _real("video", "talking-head footage (DreamTalk, video-retalking, SadTalker)",
          r"dreamtalk|video-retalking|SadTalker"),
    _real("video", "portrait driving videos (LivePortrait, first-order-model, AniPortrait)",
          r"LivePortrait|first-order-model|AniPortrait"),
    _real("video", "street/surveillance clips (intel sample-videos, YOLOv4, lane lines)",
          r"sample-videos|yolov4|CarND"),
    _real("video", "object/tracking demo clips (SAM 2, Track-Anything, mmaction2, depth, ...)", r"."),
)


def group_of(item: MediaItem, rules: Sequence[GroupRule] = RULES) -> str:
    """Source group of one item (first matching rule).

    Raises:
        UnknownSourceError: no rule matches; the message names the file, method and source.
    """
    for rule in rules:
        if rule.matches(item):
            return rule.name
    raise UnknownSourceError(f"{item.path}: no source group for kind={item.kind} label={item.label} "
                             f"method={item.method!r} source={item.source!r}")


def assign_groups(items: Iterable[MediaItem], rules: Sequence[GroupRule] = RULES) -> list[str]:
    """:func:`group_of` for every item, in order."""
    return [group_of(i, rules) for i in items]


def group_sizes(items: Sequence[MediaItem], groups: Sequence[str]) -> dict[tuple[int, str], int]:
    """``{(label, group): count}``, largest first."""
    return dict(Counter(zip((i.label for i in items), groups, strict=True)).most_common())
