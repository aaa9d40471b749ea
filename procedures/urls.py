from django.urls import path

from procedures import attachments, export_views, views

app_name = "procedures"

urlpatterns = [
    path("simulator/", views.simulator_page, name="simulator"),
    path("simulator/send/", views.simulator_send, name="simulator_send"),
    path("simulator/upload/", views.simulator_upload, name="simulator_upload"),
    path("simulator/reset/", views.simulator_reset, name="simulator_reset"),
    path("proxy-entry/", views.proxy_entry_page, name="proxy_entry"),
    path("proxy-entry/send/", views.proxy_entry_send, name="proxy_entry_send"),
    path("proxy-entry/upload/", views.proxy_entry_upload, name="proxy_entry_upload"),
    path("proxy-entry/reset/", views.proxy_entry_reset, name="proxy_entry_reset"),
    path("exports/", export_views.export_page, name="application_export"),
    path(
        "applications/<int:application_id>/attachments/<str:step_key>/",
        attachments.application_attachment,
        name="application_attachment",
    ),
]
