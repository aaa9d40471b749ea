from django.urls import path

from broadcasts.richmenu import views

urlpatterns = [
    path("<int:area_id>/", views.tap_redirect, name="richmenu-tap-redirect"),
]
