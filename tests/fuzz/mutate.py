"""Damage for fuzzing: byte-level mutations and container-aware header patches.

Every function is pure: it takes bytes (and a ``numpy.random.Generator`` where it draws) and returns new
bytes; it never raises on odd input (a patch that finds nothing to patch returns the data unchanged and
says so in its note). Notes are short words for the case log, e.g. ``"tkhd width=65535"``.

Parsers here are deliberately small: ISO-BMFF boxes (mp4/mov), EBML elements (mkv/webm), JPEG segments,
PNG chunks, GIF and BMP headers; just enough to find the fields a hostile file lies about.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np

# -- byte level -------------------------------------------------------------------------------------


def truncate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Keep a prefix; the cut is log-uniform so headers and early packets are hit as often as the tail."""
    if len(data) <= 1:
        return b"", "truncate to 0"
    cut = int(np.exp(rng.uniform(0.0, np.log(len(data)))))
    cut = min(max(cut, 0), len(data) - 1)
    return data[:cut], f"truncate to {cut} of {len(data)}"


def bitflip(data: bytes, rng: np.random.Generator, region: str = "any") -> tuple[bytes, str]:
    """Flip 1-64 random bits, anywhere, in the first 2 KiB (headers) or in the last 2 KiB (index, tail)."""
    if not data:
        return data, "bitflip: empty"
    lo, hi = {"head": (0, min(len(data), 2048)), "tail": (max(0, len(data) - 2048), len(data))}.get(
        region, (0, len(data))
    )
    buf = bytearray(data)
    n = int(rng.integers(1, 65))
    positions = rng.integers(lo, hi, size=n)
    bits = rng.integers(0, 8, size=n)
    for p, b in zip(positions.tolist(), bits.tolist(), strict=True):
        buf[p] ^= 1 << b
    return bytes(buf), f"flip {n} bits in {region}"


def overwrite(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Overwrite a random range with zeros, 0xFF or random bytes (a damaged sector, a bad upload)."""
    if not data:
        return data, "overwrite: empty"
    start = int(rng.integers(0, len(data)))
    length = int(min(len(data) - start, rng.integers(1, max(2, len(data) // 4))))
    fill = int(rng.integers(0, 3))
    block = (b"\x00" * length, b"\xff" * length, rng.bytes(length))[fill]
    return data[:start] + block + data[start + length :], f"overwrite {length} bytes at {start} with {('zeros', 'ff', 'random')[fill]}"


def splice(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Delete, duplicate or insert a range, or swap two chunks: offsets stop matching the data."""
    if len(data) < 4:
        return data + rng.bytes(4), "append 4 random bytes"
    op = int(rng.integers(0, 4))
    a = int(rng.integers(0, len(data) - 1))
    n = int(min(len(data) - a, rng.integers(1, max(2, len(data) // 8))))
    if op == 0:
        return data[:a] + data[a + n :], f"delete {n} bytes at {a}"
    if op == 1:
        return data[: a + n] + data[a : a + n] + data[a + n :], f"duplicate {n} bytes at {a}"
    if op == 2:
        return data[:a] + rng.bytes(n) + data[a:], f"insert {n} random bytes at {a}"
    b = int(rng.integers(0, len(data) - n + 1))
    lo, hi = sorted((a, b))
    if hi < lo + n:
        return data[::-1], "reverse the file"
    return data[:lo] + data[hi : hi + n] + data[lo + n : hi] + data[lo : lo + n] + data[hi + n :], f"swap {n} bytes at {lo} and {hi}"


def mangle(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One byte-level mutation chosen at random (a fifth of the time, two)."""
    ops = (truncate, lambda d, r: bitflip(d, r, "any"), lambda d, r: bitflip(d, r, "head"),
           lambda d, r: bitflip(d, r, "tail"), overwrite, splice)
    notes = []
    for _ in range(2 if rng.random() < 0.2 else 1):
        data, note = ops[int(rng.integers(0, len(ops)))](data, rng)
        notes.append(note)
    return data, "; ".join(notes)


#: Values a lying header claims: zero, one, just past 16 bits, the 31- and 32-bit extremes.
ABSURD_U32 = (0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)
ABSURD_U16 = (0, 1, 0x7FFF, 0xFFFF)


def _put(buf: bytearray, offset: int, value: int, size: int, byteorder: str = "big") -> bool:
    if offset < 0 or offset + size > len(buf):
        return False
    buf[offset : offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, byteorder)
    return True


# -- ISO-BMFF (mp4, mov) ----------------------------------------------------------------------------

_BMFF_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"mvex", b"moof", b"traf"}


def bmff_boxes(data: bytes, start: int = 0, end: int | None = None, path: tuple = ()) -> Iterator[tuple]:
    """``(path, offset, header_size, size)`` of every box, depth first; the sample entries inside
    ``stsd`` are yielded too. Stops quietly at the first box whose size does not fit."""
    end = len(data) if end is None else end
    i = start
    while i + 8 <= end:
        size, kind, header = int.from_bytes(data[i : i + 4], "big"), data[i + 4 : i + 8], 8
        if size == 1 and i + 16 <= end:
            size, header = int.from_bytes(data[i + 8 : i + 16], "big"), 16
        elif size == 0:
            size = end - i
        if size < header or i + size > end:
            return
        here = (*path, kind)
        yield here, i, header, size
        if kind in _BMFF_CONTAINERS:
            yield from bmff_boxes(data, i + header, i + size, here)
        elif kind == b"stsd":
            yield from bmff_boxes(data, i + header + 8, i + size, here)
        i += size


def _find_box(data: bytes, kind: bytes) -> list[tuple[int, int]]:
    """(payload offset, payload size) of every box of this type."""
    return [(off + hdr, size - hdr) for path, off, hdr, size in bmff_boxes(data) if path[-1] == kind]


def _visual_entries(data: bytes) -> list[int]:
    """Offsets of the visual sample entries (avc1, mp4v, jpeg, ...) inside stsd boxes."""
    return [off for path, off, _, size in bmff_boxes(data)
            if len(path) >= 2 and path[-2] == b"stsd" and size >= 86 and path[-1] not in (b"mp4a", b"Opus")]


#: mp4 fields a fuzz case can patch: name -> (box, offset in the payload for version 0 and 1, bytes).
BMFF_FIELDS = {
    "tkhd.width": (b"tkhd", (76, 88), 4),
    "tkhd.height": (b"tkhd", (80, 92), 4),
    "tkhd.matrix": (b"tkhd", (40, 52), 4),
    "mvhd.timescale": (b"mvhd", (12, 20), 4),
    "mvhd.duration": (b"mvhd", (16, 24), 4),
    "mdhd.timescale": (b"mdhd", (12, 20), 4),
    "mdhd.duration": (b"mdhd", (16, 24), 4),
    "stts.entry_count": (b"stts", (4, 4), 4),
    "stts.sample_count": (b"stts", (8, 8), 4),
    "stts.sample_delta": (b"stts", (12, 12), 4),
    "stsz.sample_size": (b"stsz", (4, 4), 4),
    "stsz.sample_count": (b"stsz", (8, 8), 4),
    "stco.entry_count": (b"stco", (4, 4), 4),
    "stco.first_offset": (b"stco", (8, 8), 4),
    "stsc.entry_count": (b"stsc", (4, 4), 4),
    "stss.entry_count": (b"stss", (4, 4), 4),
    "elst.media_time": (b"elst", (12, 20), 4),
}


def patch_bmff(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Lie in one mp4/mov header field: frame size, durations, time scales, sample counts, offsets."""
    buf = bytearray(data)
    choices = [*BMFF_FIELDS, "entry.width", "entry.height", "entry.both"]
    name = choices[int(rng.integers(0, len(choices)))]
    value = ABSURD_U32[int(rng.integers(0, len(ABSURD_U32)))]
    if name.startswith("entry."):
        entries = _visual_entries(data)
        if not entries:
            return data, f"{name}: no visual sample entry"
        v16 = ABSURD_U16[int(rng.integers(0, len(ABSURD_U16)))]
        for off in entries:
            if name in ("entry.width", "entry.both"):
                _put(buf, off + 32, v16, 2)
            if name in ("entry.height", "entry.both"):
                _put(buf, off + 34, v16, 2)
        return bytes(buf), f"sample entry {name[6:]}={v16}"
    kind, offsets, size = BMFF_FIELDS[name]
    boxes = _find_box(data, kind)
    if not boxes:
        return data, f"{name}: no {kind.decode()} box"
    for payload, _ in boxes:
        version = data[payload] if payload < len(data) else 0
        if name.startswith("tkhd.") and name.endswith(("width", "height")):
            value = value & 0xFFFF0000 if value > 0xFFFF else value << 16  # 16.16 fixed point
        _put(buf, payload + offsets[1 if version == 1 else 0], value, size)
    return bytes(buf), f"{name}={value}"


def strip_bmff(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Remove a whole top-level box (moov: no index; mdat: no media; ftyp) or a track-level one."""
    boxes = [(p, o, s) for p, o, _, s in bmff_boxes(data) if p[-1] in (b"moov", b"mdat", b"ftyp", b"stbl", b"stsd", b"stss", b"stco", b"avcC", b"trak")]
    if not boxes:
        return data, "strip: no box found"
    path, off, size = boxes[int(rng.integers(0, len(boxes)))]
    buf = data[:off] + data[off + size :]
    return buf, f"remove box {b'/'.join(path).decode(errors='replace')}"


# -- EBML (mkv, webm) -------------------------------------------------------------------------------

_EBML_MASTERS = {0x18538067, 0x1654AE6B, 0xAE, 0xE0, 0x1549A966, 0x1F43B675, 0xA0, 0x1A45DFA3, 0x1C53BB6B, 0xBB}
#: Matroska elements a fuzz case can lie in: name -> element id.
EBML_FIELDS = {
    "PixelWidth": 0xB0, "PixelHeight": 0xBA, "Duration": 0x4489, "DefaultDuration": 0x23E383,
    "TimecodeScale": 0x2AD7B1, "TrackType": 0x83, "CodecID": 0x86, "Timecode": 0xE7, "TrackNumber": 0xD7,
}


def _vint(data: bytes, i: int, keep_marker: bool) -> tuple[int, int] | None:
    if i >= len(data) or data[i] == 0:
        return None
    length = 8 - data[i].bit_length() + 1
    if i + length > len(data):
        return None
    value = int.from_bytes(data[i : i + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
    return value, length


def ebml_elements(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int]]:
    """``(element id, value offset, value size)`` of every element, depth first; unknown sizes run to the
    end of the parent. Stops quietly at the first element that does not parse."""
    end = len(data) if end is None else end
    i = start
    while i < end:
        ident = _vint(data, i, keep_marker=True)
        if ident is None:
            return
        size = _vint(data, i + ident[1], keep_marker=False)
        if size is None:
            return
        value_off = i + ident[1] + size[1]
        value_size = size[0]
        if value_size == (1 << (7 * size[1])) - 1:  # unknown size
            value_size = end - value_off
        if value_off + value_size > end:
            value_size = end - value_off
        yield ident[0], value_off, value_size
        if ident[0] in _EBML_MASTERS:
            yield from ebml_elements(data, value_off, value_off + value_size)
        i = value_off + value_size


def patch_ebml(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Lie in one Matroska element: frame size, duration, time scale, track type, codec, timecodes."""
    names = list(EBML_FIELDS)
    name = names[int(rng.integers(0, len(names)))]
    hits = [(off, size) for ident, off, size in ebml_elements(data) if ident == EBML_FIELDS[name]]
    if not hits:
        return data, f"{name}: not found"
    buf = bytearray(data)
    for off, size in hits:
        if size == 0:
            continue
        if name == "Duration" and size in (4, 8):
            special = (float("nan"), float("inf"), -1.0, 1e300)[int(rng.integers(0, 4))]
            buf[off : off + size] = np.array(special, ">f8" if size == 8 else ">f4").tobytes()
        elif name == "CodecID":
            buf[off : off + size] = (b"V_NOPE_" + b"X" * size)[:size]
        else:
            top = (1 << (8 * size)) - 1
            value = (0, 1, top, top >> 1)[int(rng.integers(0, 4))]
            _put(buf, off, value, size)
    return bytes(buf), f"{name} patched in {len(hits)} element(s)"


# -- still-image headers ----------------------------------------------------------------------------


def png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """``(type, body offset, body size)`` of each PNG chunk."""
    i = 8
    while i + 8 <= len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        yield data[i + 4 : i + 8], i + 8, size
        i += 12 + size


def patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """The PNG with IHDR claiming ``width`` x ``height``, CRC recomputed so readers believe it."""
    for kind, off, size in png_chunks(data):
        if kind == b"IHDR" and size >= 8:
            buf = bytearray(data)
            _put(buf, off, width, 4)
            _put(buf, off + 4, height, 4)
            crc = zlib.crc32(bytes(buf[off - 4 : off + size])) & 0xFFFFFFFF
            _put(buf, off + size, crc, 4)
            return bytes(buf)
    return data


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """``(marker, offset of FF, total length)`` of each segment up to and including SOS, then EOI."""
    out = []
    i = 2 if data[:2] == b"\xff\xd8" else 0
    if i:
        out.append((0xD8, 0, 2))
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        out.append((marker, i, 2 + length))
        if marker == 0xDA:
            break
        i += 2 + length
    if data.endswith(b"\xff\xd9"):
        out.append((0xD9, len(data) - 2, 2))
    return out


def patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its SOF header claiming ``width`` x ``height`` (16-bit fields)."""
    buf = bytearray(data)
    for marker, off, _ in jpeg_segments(data):
        if marker in (0xC0, 0xC1, 0xC2):
            _put(buf, off + 5, height, 2)
            _put(buf, off + 7, width, 2)
    return bytes(buf)


#: JPEG markers a damaged stream can lose: name -> marker byte.
JPEG_MARKERS = {"SOI": 0xD8, "EOI": 0xD9, "SOS": 0xDA, "DQT": 0xDB, "DHT": 0xC4, "SOF": 0xC0, "APP0": 0xE0}


def drop_jpeg_marker(data: bytes, name: str) -> bytes:
    """The JPEG without the named segment(s) (SOI/EOI: the 2 marker bytes; SOS: its header only)."""
    marker = JPEG_MARKERS[name]
    drop = [(off, length) for m, off, length in jpeg_segments(data) if m == marker or (name == "SOF" and m in (0xC0, 0xC2))]
    out, last = [], 0
    for off, length in drop:
        out.append(data[last:off])
        last = off + length
    out.append(data[last:])
    return b"".join(out)


def patch_gif_size(data: bytes, width: int, height: int) -> bytes:
    """The GIF's logical screen and first image descriptor claiming ``width`` x ``height``."""
    buf = bytearray(data)
    _put(buf, 6, width, 2, "little")
    _put(buf, 8, height, 2, "little")
    desc = data.find(b"\x2c", 13)
    if desc != -1:
        _put(buf, desc + 5, width, 2, "little")
        _put(buf, desc + 7, height, 2, "little")
    return bytes(buf)


def patch_bmp_size(data: bytes, width: int, height: int) -> bytes:
    """The BMP's info header claiming ``width`` x ``height`` (signed: a negative height is top-down)."""
    buf = bytearray(data)
    buf[18:22] = int(width).to_bytes(4, "little", signed=True)
    buf[22:26] = int(height).to_bytes(4, "little", signed=True)
    return bytes(buf)
