"""The broadcast images LINE downloads: public (LINE does not log in), found only by their unguessable name."""

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.views.decorators.http import require_safe

from broadcasts.compose import image_name_is_valid, image_path

_CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


@require_safe
def image(request, name: str):
    if not image_name_is_valid(name):
        raise Http404
    try:
        stored = default_storage.open(image_path(name), "rb")
    except FileNotFoundError:
        raise Http404 from None
    response = FileResponse(stored, content_type=_CONTENT_TYPES[name.rsplit(".", 1)[1]])
    # The name never changes meaning: a new image gets a new name.
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    return response
