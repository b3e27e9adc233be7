from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from channels_app.api import views

urlpatterns = [
    path("", views.ApiIndexView.as_view(), name="index"),
    path("health", views.HealthView.as_view(), name="health"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
]
