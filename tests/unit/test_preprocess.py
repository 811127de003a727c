"""Decoding: every mode and orientation becomes the model's input; every bad object says why."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from inference_image.preprocess import BadImage, decode_image

pytestmark = pytest.mark.unit


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_rgb_png_is_resized_to_the_model_input() -> None:
    array = decode_image(encode(Image.new("RGB", (300, 200), (10, 200, 30)), "PNG"), (32, 48))
    assert array.shape == (32, 48, 3) and array.dtype == np.uint8
    assert tuple(array[16, 24]) == (10, 200, 30)


def test_greyscale_becomes_three_equal_channels() -> None:
    array = decode_image(encode(Image.new("L", (20, 20), 77), "PNG"), (8, 8))
    assert array.shape == (8, 8, 3) and np.all(array == 77)


def test_one_channel_model_gets_one_channel() -> None:
    array = decode_image(encode(Image.new("RGB", (20, 20), (90, 90, 90)), "PNG"), (8, 8), channels=1)
    assert array.shape == (8, 8, 1) and abs(int(array[4, 4, 0]) - 90) <= 1


def test_transparency_is_shown_on_white() -> None:
    clear = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert np.all(decode_image(encode(clear, "PNG"), (4, 4)) == 255)
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([0, 0, 0] * 256)
    assert np.all(decode_image(encode(palette, "PNG", transparency=0), (4, 4)) == 255)


def test_cmyk_jpeg_decodes_to_rgb() -> None:
    array = decode_image(encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG"), (16, 16))
    red, green, blue = (int(v) for v in array[8, 8])
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    values = np.zeros((16, 16), dtype=np.uint16)
    values[:, 8:] = 40000  # above 255: clipping would turn both halves white
    array = decode_image(encode(Image.fromarray(values), "PNG"), (16, 16))
    assert array[8, 2, 0] == 0 and array[8, 12, 0] == 255


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (60, 30), (0, 0, 0))
    image.paste((255, 255, 255), (30, 0, 60, 30))  # right half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: a viewer turns it 90 degrees clockwise
    array = decode_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95), (60, 30))
    assert array.shape == (60, 30, 3)
    assert array[5, 15].mean() < 40 and array[55, 15].mean() > 215  # white half now at the bottom


def camera_photo() -> Image.Image:
    """A 1280x960 picture with gradients, a dark corner and a fine checkerboard that a decode at
    1/8 of the size (160x120, below a 224x224 input) blurs: 8 grey levels off on average, not 3."""
    y, x = np.mgrid[0:960, 0:1280]
    pixels = np.stack([x * 255 // 1279, y * 255 // 959, ((x // 12 + y // 12) % 2) * 200 + 20], axis=-1)
    pixels[:240, :320] = 0
    return Image.fromarray(pixels.astype(np.uint8))


@pytest.mark.parametrize(("orientation", "size"), [(1, (224, 224)), (6, (300, 200)), (8, (224, 160))])
def test_camera_photos_decode_scaled_to_the_same_picture(orientation: int, size: tuple[int, int]) -> None:
    # libjpeg decodes at 1/2, 1/4 or 1/8 of the photo's size, never below the model's input
    # whichever way the photo is turned: the result matches a full-size decode, resized.
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(camera_photo(), "JPEG", exif=exif.tobytes(), quality=90)
    full = Image.open(io.BytesIO(data))
    full.load()
    upright = ImageOps.exif_transpose(full)
    reference = np.asarray(upright.resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.float32)
    array = decode_image(data, size)
    assert array.shape == (*size, 3)
    assert float(np.abs(array.astype(np.float32) - reference).mean()) < 4.0


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (10, 10), (255, 0, 0)), Image.new("RGB", (10, 10), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    red, _, blue = (int(v) for v in decode_image(data, (4, 4))[2, 2])
    assert red > 200 and blue < 60


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", r"empty \(0 bytes\)"),
        (b"plain text, not pixels", "not an image"),
        (encode(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")[:60], "truncated or corrupt"),
    ],
)
def test_bad_objects_give_a_clear_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadImage, match=reason):
        decode_image(data, (8, 8))


def test_huge_dimensions_are_refused_before_decoding() -> None:
    data = encode(Image.new("L", (400, 300)), "PNG")
    with pytest.raises(BadImage, match=r"400x300 = 120,000 pixels, above the limit of 100,000"):
        decode_image(data, (8, 8), max_pixels=100_000)
