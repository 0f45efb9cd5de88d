"""Still images: formats, EXIF orientation, mode conversions, bombs and bad input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from vidfake.preprocessing.decoders import MediaLimits, MediaNotFoundError
from vidfake.preprocessing.errors import DecodeError, MediaTooLargeError, UnsupportedMediaError
from vidfake.preprocessing.images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, load_image, subnet_image


def pattern(h: int = 40, w: int = 56) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 4) % 256, (yy * 6) % 256, ((xx + yy) * 3) % 256], axis=-1).astype(np.uint8)
    img[:6, :6] = (255, 0, 0)  # a marker in the top-left corner shows orientation
    return img


def encode(img: np.ndarray | Image.Image, fmt: str, **options) -> bytes:
    pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "PPM"])
def test_lossless_formats_exact(fmt):
    img = pattern()
    np.testing.assert_array_equal(load_image(encode(img, fmt)), img)


def test_webp_lossless_exact_and_lossy_close():
    img = pattern()
    np.testing.assert_array_equal(load_image(encode(img, "WEBP", lossless=True)), img)
    lossy = load_image(encode(img, "WEBP", quality=80))
    assert lossy.shape == img.shape and np.abs(lossy.astype(int) - img).mean() < 6


def test_jpeg_from_path_bytes_file_and_pil(tmp_path):
    img = pattern()
    data = encode(img, "JPEG", quality=95)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    from_path = load_image(path)
    assert from_path.shape == img.shape and from_path.dtype == np.uint8
    assert np.abs(from_path.astype(int) - img).mean() < 4
    np.testing.assert_array_equal(load_image(data), from_path)
    np.testing.assert_array_equal(load_image(io.BytesIO(data)), from_path)
    np.testing.assert_array_equal(load_image(Image.open(io.BytesIO(data))), from_path)
    assert from_path.flags.writeable


@pytest.mark.parametrize("orientation, turns", [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_applied(orientation, turns):
    img = pattern()
    exif = Image.Exif()
    exif[0x0112] = orientation
    plain = load_image(encode(img, "JPEG", quality=95))
    oriented = load_image(encode(img, "JPEG", quality=95, exif=exif.tobytes()))
    # Same JPEG data, so the upright image is the plain decode turned exactly.
    np.testing.assert_array_equal(oriented, np.rot90(plain, turns))
    if orientation == 6:  # "rotate 90 CW to display": a landscape photo becomes portrait
        assert oriented.shape[:2] == (img.shape[1], img.shape[0])
        corner = oriented[:6, -6:].reshape(-1, 3).mean(axis=0)  # the red marker is now top-right
        assert corner[0] > 200 and corner[1] < 60 and corner[2] < 60


def test_gif_gives_first_frame():
    red = Image.new("RGB", (20, 10), (255, 0, 0))
    blue = Image.new("RGB", (20, 10), (0, 0, 255))
    buffer = io.BytesIO()
    red.save(buffer, format="GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    out = load_image(buffer.getvalue())
    assert out.shape == (10, 20, 3)
    np.testing.assert_array_equal(out[5, 5], [255, 0, 0])


def test_mode_conversions():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red: the stored colour is kept
    np.testing.assert_array_equal(load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))[0, 0], [200, 0, 0])

    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = load_image(encode(Image.fromarray(grey, "L"), "PNG"))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))

    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    out16 = load_image(encode(Image.fromarray(deep), "PNG"))
    np.testing.assert_array_equal(out16[..., 0], np.rint(deep / 257.0).astype(np.uint8))

    palette = Image.fromarray(grey, "L").convert("P")
    palette.info["transparency"] = 0
    assert load_image(encode(palette, "PNG", transparency=0)).shape == (8, 8, 3)

    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out_cmyk = load_image(encode(cmyk, "JPEG", quality=95))
    assert out_cmyk.shape == (8, 8, 3) and out_cmyk[4, 4, 0] > 200 and out_cmyk[4, 4, 1] < 50


def test_arrays():
    img = pattern()
    assert load_image(img) is not None and np.shares_memory(load_image(img), img)  # no copy needed
    np.testing.assert_array_equal(load_image(img[..., 0]), np.repeat(img[..., :1], 3, axis=2))
    np.testing.assert_array_equal(load_image(np.dstack([img, img[..., :1]])), img)
    with pytest.raises(UnsupportedMediaError, match="uint8"):
        load_image(img.astype(np.float32))
    with pytest.raises(UnsupportedMediaError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(DecodeError, match="zero-size"):
        load_image(np.zeros((0, 4, 3), np.uint8))


@pytest.mark.timeout(10)
def test_decompression_bomb_rejected_before_decoding():
    with pytest.raises(MediaTooLargeError) as info:
        load_image(png_with_header(100_000, 100_000), source="bomb.png")
    assert "bomb.png" in str(info.value)
    # Under Pillow's own threshold, our limit still applies, from the header alone.
    with pytest.raises(MediaTooLargeError, match="pixels"):
        load_image(png_with_header(5000, 5000), limits=MediaLimits(max_pixels_per_frame=1000 * 1000))


@pytest.mark.timeout(10)
def test_bad_inputs(tmp_path):
    jpeg = encode(pattern(), "JPEG")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("just some text, not a picture\n")
    eps = tmp_path / "drawing.eps"  # never handed to Pillow's EPS plugin (it runs Ghostscript)
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    cases = [
        (b"", DecodeError),
        (empty, DecodeError),
        (np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(), UnsupportedMediaError),
        (text, UnsupportedMediaError),
        (eps, UnsupportedMediaError),
        (jpeg[: len(jpeg) // 2], DecodeError),  # truncated
        (png_with_header(0, 10), DecodeError),  # zero-size dimensions
        (tmp_path / "missing.jpg", MediaNotFoundError),
        (tmp_path, UnsupportedMediaError),
    ]
    for src, error in cases:
        with pytest.raises(error) as info:
            load_image(src, source=None if not isinstance(src, bytes) else "upload.jpg")
        name = "upload.jpg" if isinstance(src, bytes) else str(src)
        assert name in str(info.value), (src if not isinstance(src, bytes) else src[:8], info.value)


def test_subnet_image_crops_the_centre_and_compresses():
    wide = np.zeros((256, 512, 3), np.uint8)
    wide[:, :128] = (255, 0, 0)  # left band: cropped away
    wide[:, 128:384] = (40, 160, 90)  # the centre square
    wide[:, 384:] = (0, 0, 255)  # right band: cropped away
    out = subnet_image(wide)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - (40, 160, 90)).max() <= 6
    small = subnet_image(pattern(), size=32)
    assert small.shape == (32, 32, 3)
    # The JPEG round trip is real: lower quality moves further from the uncompressed resize.
    img = pattern(128, 128)
    reference = np.array(Image.fromarray(img).resize((64, 64), Image.Resampling.BICUBIC)).astype(int)
    err_hi = np.abs(subnet_image(img, 64, 95).astype(int) - reference).mean()
    err_lo = np.abs(subnet_image(img, 64, 10).astype(int) - reference).mean()
    assert err_hi < err_lo


def test_extension_sets():
    assert {".jpg", ".png", ".webp", ".gif"} <= IMAGE_EXTENSIONS
    assert {".mp4", ".webm", ".mov", ".mkv", ".avi"} <= VIDEO_EXTENSIONS
    assert not IMAGE_EXTENSIONS & VIDEO_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
