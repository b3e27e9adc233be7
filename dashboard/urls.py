from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from dashboard import export, views

app_name = "dashboard"

ADDRESS = r"(?P<address>0x[0-9a-fA-F]{40})"

urlpatterns = [
    path("", views.overview, name="overview"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="dashboard/login.html"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path("channels/", views.channel_list, name="channels"),
    re_path(rf"^channels/{ADDRESS}/$", views.channel_page, name="channel"),
    re_path(rf"^channels/{ADDRESS}/profile$", views.channel_set_profile, name="channel-profile"),
    re_path(rf"^channels/{ADDRESS}/dispute$", views.channel_dispute, name="channel-dispute"),
    path("payments/", views.payment_list, name="payments"),
    path("payments/stuck/", views.stuck_list, name="stuck"),
    path("onchain/", views.onchain, name="onchain"),
    path("disputes/", views.dispute_list, name="disputes"),
    path("export/payments.csv", export.payments_csv, name="export-payments"),
    path("export/channels.csv", export.channels_csv, name="export-channels"),
]
