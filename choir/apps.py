from django.apps import AppConfig


class ChoirConfig(AppConfig):
    name = "choir"
    verbose_name = "Choir"
    default_auto_field = "django.db.models.BigAutoField"
