from django.db import models
from django.utils.translation import gettext_lazy as _


class Department(models.Model):
    """A department of the city hall (課). Procedures and, later, staff access hang off it."""

    name = models.CharField(_("名称"), max_length=100, unique=True)
    code = models.SlugField(_("コード"), max_length=40, unique=True)

    class Meta:
        verbose_name = _("部署")
        verbose_name_plural = _("部署")
        ordering = ["name"]

    def __str__(self):
        return self.name
