"""OpenAPI schema generation (drf-spectacular) tuned to how Phoenix writes views."""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import Direction
from rest_framework import serializers


class AutoSchema(openapi.AutoSchema):
    """Names nested serializers after their view.

    Views keep their ``InputSerializer``/``OutputSerializer`` inside the class (one view
    per operation), so the plain class names collide across views; the component of
    ``ModelVersionCreateApi.InputSerializer`` is called ``ModelVersionCreateInput``.
    """

    def get_serializer_name(
        self, serializer: serializers.BaseSerializer[Any], direction: Direction
    ) -> str:
        cls = type(serializer)
        outer = cls.__qualname__.rpartition(".")[0]
        if not outer or "<locals>" in outer:
            return cls.__name__
        return outer.removesuffix("Api").removesuffix("View") + cls.__name__
