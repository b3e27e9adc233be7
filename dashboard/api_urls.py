from django.urls import path, re_path

from dashboard import api
from dashboard.urls import ADDRESS

urlpatterns = [
    path("overview", api.OverviewView.as_view(), name="dashboard-api-overview"),
    path("series", api.SeriesView.as_view(), name="dashboard-api-series"),
    path("channels", api.ChannelListView.as_view(), name="dashboard-api-channels"),
    re_path(rf"^channels/{ADDRESS}$", api.ChannelView.as_view(), name="dashboard-api-channel"),
    re_path(rf"^channels/{ADDRESS}/profile$", api.ProfileView.as_view(), name="dashboard-api-profile"),
    re_path(rf"^channels/{ADDRESS}/dispute$", api.DisputeView.as_view(), name="dashboard-api-dispute"),
    path("payments", api.PaymentListView.as_view(), name="dashboard-api-payments"),
    path("payments/stuck", api.StuckPaymentsView.as_view(), name="dashboard-api-stuck"),
    path("onchain", api.OnchainView.as_view(), name="dashboard-api-onchain"),
    path("disputes", api.DisputeListView.as_view(), name="dashboard-api-disputes"),
]
