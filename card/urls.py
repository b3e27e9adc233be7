from django.urls import path

from card import views

app_name = "card"

urlpatterns = [
    path("", views.card_page, name="page"),
    path("dapp/", views.dapp_page, name="dapp"),
]

# Mounted at the site's root: the link URL the client and the CLI print (`/redeem#paymentId=…&secret=…`).
redeem_urlpatterns = [
    path("redeem", views.redeem_link, name="redeem"),
    path("redeem/", views.redeem_link),
]
