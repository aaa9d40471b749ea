from django.http import Http404, HttpResponseRedirect
from django.utils import timezone
from django.views.decorators.http import require_GET

from broadcasts.richmenu.models import RichMenuArea
from broadcasts.richmenu.taps import tap_count


@require_GET
def tap_redirect(request, area_id: int):
    """A web-link tile: count the tap, then open the page staff set (only that page: no open redirect)."""
    uri = (
        # Only tiles of a menu on LINE: an id guessed for a draft tile counts nothing.
        RichMenuArea.objects.filter(pk=area_id, action_type=RichMenuArea.ActionType.URI)
        .exclude(menu__line_rich_menu_id="")
        .values_list("uri", flat=True)
        .first()
    )
    if not uri:
        raise Http404
    tap_count(area_id=area_id, now=timezone.now())
    return HttpResponseRedirect(uri)
