from django.contrib import admin
from django.urls import include, path

from card.urls import redeem_urlpatterns
from dashboard.metrics import metrics_view

urlpatterns = [
    # Before "api/": the node's API answers any other path under it with its own 404.
    path("api/dashboard/", include("dashboard.api_urls")),
    path("dashboard/", include("dashboard.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("api/", include("channels_app.api.urls")),
    path("admin/", admin.site.urls),
    path("card/", include("card.urls")),
    *redeem_urlpatterns,
]

handler400 = "channels_app.api.views.bad_request"
handler500 = "channels_app.api.views.server_error"
