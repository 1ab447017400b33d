import sys

from django.apps import AppConfig


class ChoirConfig(AppConfig):
    name = "choir"
    verbose_name = "Choir"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Daphne's reactor is installed as soon as Django loads the `daphne`
        # app, before any WebSocket factory exists, which is when the
        # transport adapter must check and patch (choir/transport.py).
        if "twisted.internet.reactor" in sys.modules:
            from choir import transport

            transport.install()
        from choir import checks  # noqa: F401  (registers the system checks)
