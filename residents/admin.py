from django.contrib import admin

from residents.models import Resident
from staff.mixins import ScopedAdminMixin


@admin.register(Resident)
class ResidentAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["line_user_id", "display_name", "is_simulated", "created_at"]
    search_fields = ["line_user_id"]
    readonly_fields = ["line_user_id", "created_at"]
