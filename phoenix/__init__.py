"""Phoenix ML: a Django project for serving ONNX models in production."""

from .celery import app as celery_app

__all__ = ["celery_app"]
