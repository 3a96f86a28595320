from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "phoenix.demo"
    label = "demo"
    verbose_name = "Demo"

    def ready(self) -> None:
        from monitoring.services.retraining import retraining_recipe_register
        from phoenix.demo.recipes import CREDIT_RISK_RECIPE, retrain

        # Retraining finds the recipe by the name stored on the model, never by import.
        retraining_recipe_register(CREDIT_RISK_RECIPE, retrain)
