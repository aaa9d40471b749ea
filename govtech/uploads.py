"""Size-limited image uploads for the staff pages (both simulators).

A request is refused from its Content-Length before anything is read, and a body
without an honest length stops being read one chunk past the limit. The caller's
CSRF check must run only after `upload_guard` installed the handler (reading
request.POST earlier would read the whole body), so views are csrf_exempt
outside and call a csrf_protect inner function that calls `uploaded_file`.
"""

from django.core.exceptions import BadRequest, RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http.multipartparser import MultiPartParserError
from django.utils.translation import gettext as _

# Room for the multipart envelope and the other form fields around the file.
MULTIPART_OVERHEAD = 64 * 1024


class UploadRefused(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


class LimitedUploadHandler(FileUploadHandler):
    """Stops reading a file as soon as it is bigger than allowed; smaller files go on to
    Django's usual memory or temporary-file handlers."""

    def __init__(self, limit: int, request=None):
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.too_large = False

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.too_large = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size):
        return None


def too_large_message(limit: int) -> str:
    from procedures.texts import format_bytes

    return _("ファイルが大きすぎます。%(max)s以下の画像を選んでください。") % {"max": format_bytes(limit)}


def upload_guard(request, limit: int) -> LimitedUploadHandler:
    """Refuse an oversized request from its declared length and limit what is read of the rest."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit + MULTIPART_OVERHEAD:
        raise UploadRefused(too_large_message(limit), 413)
    handler = LimitedUploadHandler(limit, request)
    request.upload_handlers.insert(0, handler)
    return handler


def uploaded_file(request, handler: LimitedUploadHandler, limit: int, field: str = "file"):
    """The uploaded file, or UploadRefused with a message a person can act on."""
    try:
        upload = request.FILES.get(field)
    except (MultiPartParserError, BadRequest, RequestDataTooBig):
        raise UploadRefused(_("送信されたファイルを読み取れませんでした。もう一度お試しください。")) from None
    if handler.too_large or (upload is not None and upload.size > limit):
        raise UploadRefused(too_large_message(limit), 413)
    if upload is None or not upload.size:
        raise UploadRefused(_("画像ファイルを選んでください。"))
    return upload
