from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Inference"

    def ready(self) -> None:
        # Cheap: a listener and a readiness check. Loading models happens in
        # session_cache.preload() (server start) or on first use.
        from phoenix.lifespan import shutdown_hook_register

        from .api_key_usage import api_key_usage_stop
        from .events import event_publishing_stop
        from .session_cache import install

        install()
        # A server's shutdown ships the events still buffered (see phoenix/lifespan.py).
        shutdown_hook_register(event_publishing_stop)
        shutdown_hook_register(api_key_usage_stop)
