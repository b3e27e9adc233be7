from django.apps import AppConfig


class CardConfig(AppConfig):
    name = "card"
    verbose_name = "Card (browser wallet)"
    default_auto_field = "django.db.models.BigAutoField"
