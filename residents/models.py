from django.db import models
from django.utils.translation import gettext_lazy as _


class Resident(models.Model):
    """A person who talks to the city's LINE Official Account (or a simulated one)."""

    line_user_id = models.CharField(_("LINE ユーザーID"), max_length=64, unique=True)
    display_name = models.CharField(_("表示名"), max_length=200, blank=True)
    is_simulated = models.BooleanField(_("シミュレーター"), default=False)
    created_at = models.DateTimeField(_("登録日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("住民")
        verbose_name_plural = _("住民")

    def __str__(self):
        return self.display_name or self.line_user_id
