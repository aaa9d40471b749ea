from django.urls import path

from messaging.line.views import webhook

app_name = "messaging"

urlpatterns = [
    path("webhook/", webhook, name="line-webhook"),
]
