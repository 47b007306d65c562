"""Decoded images to 8-bit RGB, by value range, for every reader of image files.

PIL's ``convert("RGB")`` clips high-bit-depth pixels to 255 (a 16-bit PNG becomes white);
here 16-bit and 32-bit grey images are scaled by their range first.  Imports nothing else
of the project.
"""

import numpy as np
from PIL import Image

SIXTEEN_BIT_MAX = 65535


def _full_scale(mode, values):
    """The value that maps to 255 for a high-bit-depth grey image."""
    if mode.startswith("I;16"):
        return SIXTEEN_BIT_MAX
    peak = float(values.max(initial=0))
    if mode == "F":  # floats: [0, 1] if they fit, else 8-bit values
        return 1.0 if peak <= 1.0 else (255.0 if peak <= 255 else SIXTEEN_BIT_MAX)
    return 255 if peak <= 255 else SIXTEEN_BIT_MAX  # "I": 8- or 16-bit values stored as int32


def to_rgb(image):
    """A PIL image of any mode -> an RGB PIL image with 8 bits per channel.

    Grey images of 16 bits ("I;16*": 0..65535), 32-bit integers ("I": 0..255 or 0..65535 by
    their maximum) and floats ("F": 0..1, or 0..255) are rescaled to 0..255 and rounded;
    every other mode goes through PIL's own conversion.
    """
    if not (image.mode.startswith("I") or image.mode == "F"):
        return image if image.mode == "RGB" else image.convert("RGB")
    values = np.asarray(image, dtype=np.float64)
    grey = np.clip(np.rint(values * (255.0 / _full_scale(image.mode, values))), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")
