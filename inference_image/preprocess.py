"""Decode any image Pillow reads into the model's input: upright, RGB (or grey), resized."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Our own pixel limit is checked before decoding; Pillow's bomb check stays as a second guard.
Image.MAX_IMAGE_PIXELS = 200_000_000


class BadImage(ValueError):
    """The object cannot become a model input; the message says why, for the failure record."""


def decode_image(data: bytes, size: tuple[int, int], channels: int = 3, max_pixels: int = 40_000_000) -> np.ndarray:
    """Bytes to a uint8 array of shape (height, width, channels) for a model taking `size`=(h, w)."""
    if not data:
        raise BadImage("the object is empty (0 bytes)")
    height, width = size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            pixels = image.width * image.height
            if pixels > max_pixels:
                raise BadImage(
                    f"the image is {image.width}x{image.height} = {pixels:,} pixels, "
                    f"above the limit of {max_pixels:,}"
                )
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # animated: classify the first frame
            if image.format == "JPEG":
                # Let libjpeg scale down while decoding (by 1/2, 1/4 or 1/8) to the smallest scale
                # whose shorter side still covers the model's input, whichever way the photo is
                # turned: a 1280x960 photo decodes at 320x240 for 224x224, a sixteenth of the pixels.
                side = max(width, height)
                image.draft("RGB" if channels == 3 else "L", (side, side))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy when the photo is upright
            image = _to_mode(image, "RGB" if channels == 3 else "L")
            image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not an image: the bytes are in no format Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImage(f"refused as a decompression bomb: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadImage(f"the image data is truncated or corrupt: {error}") from None
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16-bit and float images: scale to 8 bits by their range instead of clipping at 255.
        values = np.asarray(image, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        image = Image.fromarray(scaled.astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels are shown on white, as a viewer shows them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == mode else image.convert(mode)
