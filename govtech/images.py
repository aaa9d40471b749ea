"""What image bytes really are (Pillow), never what a file name or a client merely claims.

One helper for every channel that receives images (LINE content, the simulator's uploads), so
they accept and refuse the same files.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

# Pillow's format names -> content types. MPO is a JPEG with extra frames (many phone cameras
# write it); every JPEG decoder shows its first frame, so it is a JPEG for us.
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "HEIF": "image/heic",
    "ICO": "image/x-icon",
}
_UNREADABLE = (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError)


def sniff_image(data: bytes, *, verify: bool = True) -> tuple[str | None, int, int]:
    """(content type, width, height) of image bytes; (None, 0, 0) when they are not a readable image.

    `verify=False` reads the header only: for the first bytes of content too large to check whole
    (its type and size are still known; that the rest is sound is not).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format or ""
            width, height = image.size
            if verify:
                image.verify()
    except _UNREADABLE:
        return None, 0, 0
    if not image_format:
        return None, 0, 0
    return CONTENT_TYPES.get(image_format, f"image/{image_format.lower()}"), width, height
