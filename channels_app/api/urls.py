from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from channels_app.api import auth_views, channel_views, payment_views, swap_views, views

urlpatterns = [
    path("", views.ApiIndexView.as_view(), name="index"),
    path("health", views.HealthView.as_view(), name="health"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("auth/nonce", auth_views.AuthNonceView.as_view(), name="auth-nonce"),
    path("auth/token", auth_views.AuthTokenView.as_view(), name="auth-token"),
    path("auth/me", auth_views.AuthMeView.as_view(), name="auth-me"),
    path("auth/logout", auth_views.AuthLogoutView.as_view(), name="auth-logout"),
    path("config", channel_views.ConfigView.as_view(), name="config"),
    path("channel", channel_views.ChannelView.as_view(), name="channel"),
    path("channel/updates", channel_views.ChannelUpdateView.as_view(), name="channel-updates"),
    path("channel/countersign", channel_views.CountersignView.as_view(), name="channel-countersign"),
    path("channel/reconcile", channel_views.ReconcileView.as_view(), name="channel-reconcile"),
    path("channel/history", channel_views.ChannelHistoryView.as_view(), name="channel-history"),
    path("channel/collateral", channel_views.CollateralView.as_view(), name="channel-collateral"),
    path("channel/withdrawals", channel_views.WithdrawalsView.as_view(), name="channel-withdrawals"),
    path("swap/rates", swap_views.SwapRatesView.as_view(), name="swap-rates"),
    path("swap/prepare", swap_views.SwapPrepareView.as_view(), name="swap-prepare"),
    path("transfers", payment_views.TransferHistoryView.as_view(), name="transfers"),
    re_path(
        rf"^transfers/(?P<payment_id>{payment_views.PAYMENT_ID})$",
        payment_views.TransferView.as_view(),
        name="transfer",
    ),
    re_path(
        rf"^transfers/(?P<payment_id>{payment_views.PAYMENT_ID})/redeem$",
        payment_views.RedeemLinkView.as_view(),
        name="transfer-redeem",
    ),
    re_path(
        rf"^transfers/(?P<payment_id>{payment_views.PAYMENT_ID})/link-status$",
        payment_views.LinkStatusView.as_view(),
        name="transfer-link-status",
    ),
    re_path(
        rf"^transfers/(?P<payment_id>{payment_views.PAYMENT_ID})/cancel$",
        payment_views.CancelTransferView.as_view(),
        name="transfer-cancel",
    ),
    path("users/<str:address>/key", payment_views.UserKeyView.as_view(), name="user-key"),
    re_path(r"^(?P<unmatched>[\s\S]*)$", views.api_not_found),  # last: anything else (newlines too)
]
