"""Pictures with an EXIF orientation tag (phone photos stored sideways) are embedded upright, and a shrunk copy in
01's image cache is stored upright (it keeps no tag)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amzkit.embed.simple import ColorStatsEmbedder
from amzkit.images.decode import open_image, prepare_image, read_header
from amzkit.images.features import image_meta_features
from amzkit.images.fetch import cached_images

ORIENTATION_TAG = 0x0112  # EXIF Orientation


def _sideways_jpeg(width: int = 80, height: int = 40, orientation: int = 6) -> bytes:
    """A picture stored `width` x `height`, red on its left half and blue on its right, tagged to be shown turned."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2:] = (0, 0, 255)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95, exif=exif)
    return out.getvalue()


def _top_and_bottom(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(img.convert("RGB")).astype(int)
    return values[: img.height // 4].mean(axis=(0, 1)), values[-(img.height // 4):].mean(axis=(0, 1))


def test_open_image_turns_a_tagged_picture_upright(tmp_path):
    path = tmp_path / "sideways.jpg"
    path.write_bytes(_sideways_jpeg())
    img, status = open_image(str(path))
    assert status == "ok"
    assert img.size == (40, 80)  # orientation 6: a quarter turn clockwise to be seen as meant
    top, bottom = _top_and_bottom(img)
    assert top[0] > 200 and top[2] < 60  # the stored left (red) half is on top once turned
    assert bottom[2] > 200 and bottom[0] < 60


def test_open_image_with_draft_turns_too(tmp_path):
    path = tmp_path / "sideways.jpg"
    path.write_bytes(_sideways_jpeg(800, 400))
    img, status = open_image(str(path), draft_px=64)
    assert status == "ok" and img.height > img.width


def test_shrunk_copy_is_stored_upright_and_keeps_the_original_numbers(tmp_path):
    body = _sideways_jpeg(800, 400)
    prepared = prepare_image(body, max_side=100)
    assert prepared.status == "ok" and prepared.data != body
    assert (prepared.width, prepared.height) == (400, 800)  # the original as it is seen, for its size features
    with Image.open(io.BytesIO(prepared.data)) as copy:
        assert copy.size == (50, 100)
        assert copy.getexif().get(ORIENTATION_TAG, 1) == 1
        copy.load()
        top, bottom = _top_and_bottom(copy)
    assert top[0] > 200 and bottom[2] > 200
    path = tmp_path / "copy.jpg"
    path.write_bytes(prepared.data)
    img, _ = open_image(str(path))
    assert img.size == (50, 100)  # opened as stored: not turned a second time


def test_small_tagged_picture_is_kept_as_sent_and_turned_when_opened(tmp_path):
    body = _sideways_jpeg(80, 40, orientation=8)
    prepared = prepare_image(body, max_side=512)
    assert prepared.data == body
    assert (prepared.width, prepared.height) == (40, 80)
    path = tmp_path / "kept.jpg"
    path.write_bytes(prepared.data)
    img, _ = open_image(str(path))
    top, bottom = _top_and_bottom(img)
    assert img.size == (40, 80) and top[2] > 200 and bottom[0] > 200  # orientation 8: a quarter turn the other way


def test_a_broken_orientation_value_keeps_the_picture_as_stored(tmp_path):
    path = tmp_path / "odd.jpg"
    path.write_bytes(_sideways_jpeg(orientation=1))
    img, status = open_image(str(path))
    assert status == "ok" and img.size == (80, 40)


def test_size_features_read_a_sideways_picture_as_it_is_seen(tmp_path):
    """A phone photo stored 800 x 400 and tagged to be turned is a portrait picture: its header, 03's image_meta
    group and 01's color-stats read it 400 x 800, as the picture the models embed."""
    (tmp_path / "sideways.jpg").write_bytes(_sideways_jpeg(800, 400))
    (tmp_path / "plain.jpg").write_bytes(_sideways_jpeg(800, 400, orientation=1))
    assert read_header(str(tmp_path / "sideways.jpg"), verify=True)[:3] == ("ok", 400, 800)
    assert read_header(str(tmp_path / "sideways.jpg"))[:3] == ("ok", 400, 800)
    meta = image_meta_features(cached_images(pd.Series(["sideways.jpg", "plain.jpg"]), tmp_path, tmp_path / "cache"))
    assert meta["image_width"].tolist() == [400, 800] and meta["image_height"].tolist() == [800, 400]
    assert meta["image_is_portrait"].tolist() == [1, 0] and meta["image_is_landscape"].tolist() == [0, 1]
    colour = ColorStatsEmbedder()
    aspect = colour.feature_names.index("aspect_log")
    vectors, ok = colour.transform([str(tmp_path / "sideways.jpg"), str(tmp_path / "plain.jpg")])
    assert ok.all() and vectors[:, aspect] == pytest.approx([np.log(0.5), np.log(2)])
    copy = tmp_path / "copy.jpg"  # a shrunk copy in 01's cache records the original as seen
    copy.write_bytes(prepare_image(_sideways_jpeg(800, 400), max_side=100).data)
    vectors, _ = colour.transform([str(copy)])
    assert vectors[0, aspect] == pytest.approx(np.log(0.5))
