from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/", include("channels_app.api.urls")),
    path("admin/", admin.site.urls),
]

handler400 = "channels_app.api.views.bad_request"
handler500 = "channels_app.api.views.server_error"
