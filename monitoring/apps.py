from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from inference.event_sinks import database_writer_register
        from monitoring.services.live import registry_change_relay
        from monitoring.services.prediction_log import prediction_log_write_published
        from phoenix import change_bus

        # The embedded event backend writes prediction rows through this app's service;
        # inference defines the interface and never imports monitoring.
        database_writer_register(prediction_log_write_published)
        # Stage and alias moves reach the live dashboards the moment they commit.
        change_bus.subscribe(registry_change_relay)
