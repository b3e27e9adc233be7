from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Payment channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from channels_app.api import schema  # noqa: F401 - registers the schema extensions
