from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Inference"

    def ready(self) -> None:
        # Cheap: a listener and a readiness check. Loading models happens in
        # session_cache.preload() (server start) or on first use.
        from .session_cache import install

        install()
