from django.urls import path

from channels_app.consumers import NodeConsumer

websocket_urlpatterns = [
    path("ws/v1", NodeConsumer.as_asgi()),
]
