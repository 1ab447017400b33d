from django.apps import AppConfig


class ChoirConfig(AppConfig):
    name = "choir"
    verbose_name = "Choir"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from choir import checks  # noqa: F401  (registers the system checks)
