"""The enrolment QR code, drawn here: the secret key never leaves the server for a QR service."""

import base64

import qrcode
import qrcode.image.svg


def svg_data_uri(text: str) -> str:
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    return "data:image/svg+xml;base64," + base64.b64encode(image.to_string()).decode("ascii")
