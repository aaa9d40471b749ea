from django.urls import path

from messaging import views
from messaging.line.views import webhook

app_name = "messaging"

urlpatterns = [
    path("webhook/", webhook, name="line-webhook"),
    # The resident simulator (staff): a simulated resident of the whole LINE account.
    path("simulator/", views.resident_simulator_page, name="resident-simulator"),
    path("simulator/send/", views.resident_simulator_send, name="resident-simulator-send"),
    path("simulator/poll/", views.resident_simulator_poll, name="resident-simulator-poll"),
    path("simulator/upload/", views.resident_simulator_upload, name="resident-simulator-upload"),
    path("simulator/follow/", views.resident_simulator_follow, name="resident-simulator-follow"),
    path("simulator/reset/", views.resident_simulator_reset, name="resident-simulator-reset"),
    path("simulator/richmenu/", views.resident_simulator_richmenu, name="resident-simulator-richmenu"),
    path(
        "simulator/richmenu/<str:rich_menu_id>/image/",
        views.resident_simulator_richmenu_image,
        name="resident-simulator-richmenu-image",
    ),
]
