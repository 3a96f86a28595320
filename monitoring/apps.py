from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # Stage and alias moves reach the live dashboards the moment they commit.
        from monitoring.services.live import registry_change_relay
        from phoenix import change_bus

        change_bus.subscribe(registry_change_relay)
