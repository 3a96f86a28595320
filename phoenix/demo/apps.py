from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "phoenix.demo"
    label = "demo"
    verbose_name = "Demo"

    def ready(self) -> None:
        from monitoring.services.retraining import retraining_recipe_register
        from phoenix.demo.catalog import RECIPES

        # Retraining finds a recipe by the name stored on the model; registered by dotted
        # path, so no web process imports scikit-learn (the worker does, when it retrains).
        for name, path in RECIPES.items():
            retraining_recipe_register(name, path)
