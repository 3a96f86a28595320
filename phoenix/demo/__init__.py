"""The bundled demos, kept apart from the product: nothing outside this package imports it.

- ``credit_risk``, ``house_prices``, ``support_tickets``: the synthetic tables, training,
  ONNX conversion, evaluation of the three demo models (a binary classifier, a
  regressor, a text classifier over raw strings; no Django);
- ``recipes``: their retraining recipes;
- ``catalog``: the demo and recipe names, importable at no cost. ``DemoConfig.ready``
  registers each recipe with monitoring by dotted path, so web processes never import
  scikit-learn; the retraining worker imports a recipe the first time it runs it;
- commands: ``train_demo_models``, ``seed_features --demo`` (the inference command,
  extended with the demo customers) and ``simulate_traffic``.

A deployment without the demo leaves ``phoenix.demo`` out of INSTALLED_APPS.
"""
