"""Decoding safely: HTTP bodies (gzip, deflate) within a byte limit, any Pillow mode to RGB, verify-and-shrink of
downloaded bodies, header reads."""

from __future__ import annotations

import contextlib
import io
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from amzkit.images.records import describe

MAX_PIXELS = 8192 * 8192


MAX_SIDE_PX = 512


# A picture with a side under this is no product photo: a CDN's placeholder for a missing image (Amazon's image
# servers have long answered with a 1x1 transparent GIF), which would be embedded as a blank picture.
PLACEHOLDER_SIDE_PX = 8


JPEG_QUALITY = 90


ORIGINAL_NOTE = "amzkit original "  # starts the JPEG comment of a shrunk copy
VERIFY_DRAFT_PX = 64  # JPEGs are verified at reduced DCT scale: every byte is still decoded


MARKUP_PREFIXES = (b"<", b"{", b"[")


ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


CONTENT_ENCODING_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


IDENTITY_ENCODINGS = frozenset({"", "identity"})


GZIP_MAGIC = b"\x1f\x8b"


ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 upright, 2-8 mirrored and/or turned


TURNING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # a quarter turn: the upright picture's sides are swapped


DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, ZeroDivisionError,
                 MemoryError)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB view of any Pillow mode: alpha (or a transparency key, 16-bit grey included) composited on white, 16-bit
    scaled (not clipped) to 8-bit."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode in SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        values = np.asarray(img)
        grey = _to_uint8(values, img.mode)
        key = img.info.get("transparency")  # a 16-bit grey PNG's tRNS: the one value that is transparent
        if isinstance(key, int | float) and not isinstance(key, bool):
            grey = np.where(values == key, np.uint8(255), grey)
        return Image.fromarray(grey).convert("RGB")
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    if mode in SIXTEEN_BIT_MODES:
        return (values.astype(np.uint32) >> 8).astype(np.uint8)
    values = values.astype(np.float32)
    peak = float(values.max()) if values.size else 0.0
    scale = 255.0 if (mode == "F" and peak <= 1.0) else (255.0 / 65535.0 if peak > 255 else 1.0)
    return np.clip(values * scale, 0, 255).astype(np.uint8)


def orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 upright) of an opened picture; 1 when it has none or its EXIF block is broken."""
    try:
        return int(img.getexif().get(ORIENTATION_TAG, 1))
    except DECODE_ERRORS:
        return 1


def seen_size(img: Image.Image, width: int, height: int) -> tuple[int, int]:
    """(width, height) of an opened picture stored `width` x `height` as it is seen: a quarter-turn EXIF
    orientation (a phone photo stored sideways) swaps the sides, as `upright` turns the picture."""
    return (height, width) if orientation(img) in TURNING_ORIENTATIONS else (width, height)


def upright(img: Image.Image) -> Image.Image:
    """The picture as it is meant to be seen: turned by its EXIF orientation tag (phone photos are stored sideways
    with a tag saying so); the same image when it has none."""
    if orientation(img) == 1:
        return img
    try:
        return ImageOps.exif_transpose(img)
    except DECODE_ERRORS:  # a broken EXIF block: the picture itself decoded, keep it as stored
        return img


def open_image(path: str | None, draft_px: int | None = None) -> tuple[Image.Image | None, str]:
    """Open an image as RGB, upright by its EXIF orientation; returns (image, 'ok') or (None, status). JPEGs decode
    in draft mode.

    With `draft_px`, a JPEG is decoded at the smallest DCT scale that keeps both sides >= draft_px.
    """
    if path is None:
        return None, "missing_file"
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                return None, "too_large"
            if draft_px and img.format == "JPEG":
                img.draft("RGB", (draft_px, draft_px))
            img.load()
            return to_rgb(upright(img)), "ok"
    except FileNotFoundError:
        return None, "missing_file"
    except Image.DecompressionBombError:
        return None, "too_large"
    except UnidentifiedImageError:
        return None, "not_an_image"
    except DECODE_ERRORS:
        return None, "corrupt"


@dataclass
class Prepared:
    """A verified body: the bytes to store (original or resized JPEG) and the original size and mode."""

    status: str
    data: bytes = b""
    width: int | None = None
    height: int | None = None
    error: str = ""
    mode: str | None = None
    nbytes: int | None = None  # the original's size in bytes, when `data` is not the original


def _original_note(width: int, height: int, nbytes: int, mode: str) -> bytes:
    """A JPEG comment on a shrunk copy: the original's size, bytes and mode, which the copy alone cannot tell (a cache
    file reused without its manifest line, after a kill, reports them)."""
    return f"{ORIGINAL_NOTE}{width}x{height} {nbytes} {mode}".encode()


def _read_original_note(comment) -> tuple[int, int, int, str] | None:
    if not isinstance(comment, bytes) or not comment.startswith(ORIGINAL_NOTE.encode()):
        return None
    try:
        size, nbytes, mode = comment[len(ORIGINAL_NOTE):].decode().split(" ")
        width, height = (int(side) for side in size.split("x"))
        return width, height, int(nbytes), mode
    except ValueError:
        return None


def original_numbers(img: Image.Image) -> tuple[int, int, int] | None:
    """(width, height, bytes) of the original picture that an opened shrunk copy (`prepare_image`'s, in 01's image
    cache) was made from, from its JPEG comment; None for any other image."""
    note = _read_original_note(img.info.get("comment")) if img.format == "JPEG" else None
    return None if note is None else note[:3]


def prepare_image(body: bytes, max_side: int = MAX_SIDE_PX, max_pixels: int = MAX_PIXELS) -> Prepared:
    """Verify `body` decodes; resize it to <= max_side (longest side) when larger. Never raises."""
    if not body:
        return Prepared("empty")
    try:
        with Image.open(io.BytesIO(body)) as img:
            (width, height), mode = img.size, img.mode  # before draft(), which may change the mode
            if width * height > max_pixels:
                return Prepared("too_large", width=width, height=height, error=f"{width}x{height} pixels",
                                mode=mode)
            if min(width, height) < 1:
                return Prepared("corrupt", error=f"size {width}x{height}")
            if min(width, height) < PLACEHOLDER_SIDE_PX:
                return Prepared("placeholder", width=width, height=height, error=placeholder_note(width, height),
                                mode=mode)
            scale = max_side / max(width, height)
            target = (max(1, round(width * scale)), max(1, round(height * scale))) if scale < 1 else None
            if img.format == "JPEG":
                img.draft("RGB", target or (VERIFY_DRAFT_PX, VERIFY_DRAFT_PX))
            img.load()
            seen = seen_size(img, width, height)  # the sides the size features read: as the picture is seen
            if target is not None and seen != (width, height):
                target = target[::-1]  # the shrunk copy is stored upright (it keeps no EXIF tag)
            if target is None:
                original = _read_original_note(img.info.get("comment")) if img.format == "JPEG" else None
                if original is not None:  # a shrunk copy this function made: the original's numbers
                    return Prepared("ok", body, original[0], original[1], mode=original[3], nbytes=original[2])
                return Prepared("ok", body, *seen, mode=mode)
            small = to_rgb(upright(img)).resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
            out = io.BytesIO()
            small.save(out, format="JPEG", quality=JPEG_QUALITY, comment=_original_note(*seen, len(body), mode))
            return Prepared("ok", out.getvalue(), *seen, mode=mode, nbytes=len(body))
    except Image.DecompressionBombError as err:
        return Prepared("too_large", error=str(err))
    except UnidentifiedImageError:
        head = body[:256].lstrip().lower()
        kind = "markup/text" if head.startswith(MARKUP_PREFIXES) else "unknown format"
        return Prepared("not_an_image", error=f"{kind}: {body[:40]!r}")
    except Exception as err:  # whatever the decoder raises, the body is bad
        return Prepared("corrupt", error=describe(err))


_strict_lock = threading.Lock()


_strict_users = 0


_strict_saved = False


@contextlib.contextmanager
def strict_truncation() -> Iterator[None]:
    """Temporarily make Pillow refuse truncated images (ImageFile.LOAD_TRUNCATED_IMAGES = False).

    Reference-counted so concurrent fetches nest; the caller's setting is restored when the last exits.
    """
    global _strict_users, _strict_saved
    with _strict_lock:
        if _strict_users == 0:
            _strict_saved = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _strict_users += 1
    try:
        yield
    finally:
        with _strict_lock:
            _strict_users -= 1
            if _strict_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _strict_saved


def read_header(path: str, verify: bool = False) -> tuple[str, int | None, int | None, str | None]:
    """(status, width, height, mode) from an image file's header alone, or with `verify` from decoding it too (a
    JPEG at reduced DCT scale: every byte is still decoded), so that a cut-short file is corrupt. Width and height
    are the picture's as it is seen (`seen_size`). Never raises."""
    try:
        with Image.open(path) as img:
            (width, height), mode = img.size, img.mode
            if verify and 1 <= min(width, height) and width * height <= MAX_PIXELS:
                if img.format == "JPEG":
                    img.draft("RGB", (VERIFY_DRAFT_PX, VERIFY_DRAFT_PX))
                with strict_truncation():
                    img.load()
            width, height = seen_size(img, width, height)
    except FileNotFoundError:
        return "missing_file", None, None, None
    except Image.DecompressionBombError:
        return "too_large", None, None, None
    except UnidentifiedImageError:
        return "not_an_image", None, None, None
    except DECODE_ERRORS:
        return "corrupt", None, None, None
    if width * height > MAX_PIXELS:
        return "too_large", width, height, mode
    if min(width, height) < 1:
        return "corrupt", width, height, mode
    return ("ok" if min(width, height) >= PLACEHOLDER_SIDE_PX else "placeholder"), width, height, mode


def placeholder_note(width: int, height: int) -> str:
    """Why a picture this small is not taken: the error of a `placeholder` status."""
    return f"{width}x{height} pixels: a placeholder (a side under {PLACEHOLDER_SIDE_PX} px), not a product picture"


class BoundedDecoder:
    """Decodes a gzip or deflate body chunk by chunk, never producing more than `limit` + 1 bytes in all.

    zlib's max_length bounds every call, so a small body that decodes to gigabytes (a gzip bomb) costs
    about `limit` bytes of memory whichever urllib3 is installed. Concatenated gzip members are decoded;
    bytes after the last member are ignored; a raw deflate stream (no zlib header) is accepted.
    """

    def __init__(self, encoding: str, limit: int):
        self.encoding, self.limit = encoding, limit
        self.size, self.ended = 0, False
        self._wbits = CONTENT_ENCODING_WBITS[encoding]
        self._zlib = zlib.decompressobj(self._wbits)

    def decode(self, data: bytes) -> bytes:
        """The decoded bytes of the next chunk of the body, cut once the total passes `limit`."""
        out = []
        while data and not self.ended and self.size <= self.limit:
            try:
                part = self._zlib.decompress(data, self.limit + 1 - self.size)
            except zlib.error:
                if self._wbits != zlib.MAX_WBITS or self.size or self._zlib.eof:
                    raise
                self._wbits = -zlib.MAX_WBITS  # "deflate" sent without its zlib header, as some servers do
                self._zlib = zlib.decompressobj(self._wbits)
                continue
            self.size += len(part)
            out.append(part)
            data = b""
            if self._zlib.eof:  # another gzip member may follow; anything else is ignored
                data = self._zlib.unused_data
                self.ended = not data.startswith(GZIP_MAGIC)
                self._zlib = zlib.decompressobj(self._wbits)
        return b"".join(out)
