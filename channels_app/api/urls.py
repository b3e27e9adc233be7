from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from channels_app.api import auth_views, views

urlpatterns = [
    path("", views.ApiIndexView.as_view(), name="index"),
    path("health", views.HealthView.as_view(), name="health"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("auth/nonce", auth_views.AuthNonceView.as_view(), name="auth-nonce"),
    path("auth/token", auth_views.AuthTokenView.as_view(), name="auth-token"),
    path("auth/me", auth_views.AuthMeView.as_view(), name="auth-me"),
]
