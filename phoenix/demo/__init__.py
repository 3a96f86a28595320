"""The bundled demo, kept apart from the product: nothing outside this package imports it.

- ``credit_risk``: the synthetic customer table, training, ONNX conversion, evaluation
  (no Django);
- ``recipes``: the demo model's retraining recipe, registered with monitoring at app
  ready under ``CREDIT_RISK_RECIPE`` (the name ``train_demo_models`` stores on the model);
- commands: ``train_demo_models``, ``seed_features --demo`` (the inference command,
  extended with the demo customers) and ``simulate_traffic``.

A deployment without the demo leaves ``phoenix.demo`` out of INSTALLED_APPS.
"""
