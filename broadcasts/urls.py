from django.urls import path

from broadcasts import views

app_name = "broadcasts"

urlpatterns = [
    path("images/<str:name>", views.image, name="image"),
]
