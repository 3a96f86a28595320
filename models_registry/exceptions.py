"""Registry errors. They know nothing of HTTP: phoenix.exceptions maps the categories."""

from __future__ import annotations

from phoenix.exceptions import Conflict, InvalidInput, NotFound, TooLarge


class InvalidModelFile(InvalidInput):
    """The upload is not a loadable ONNX model (or breaks a rule such as external data)."""

    code = "invalid_model_file"


class ModelOverBudget(InvalidModelFile):
    """Loading or running the model once needs more memory or time than validation allows."""

    code = "model_over_budget"


class ModelTooLarge(TooLarge):
    code = "model_too_large"


class InvalidReferenceData(InvalidInput):
    code = "invalid_reference_data"


class DuplicateModel(Conflict):
    """The same bytes are already registered as another version of this model."""

    code = "duplicate_model"


class VersionExists(Conflict):
    code = "version_exists"


class StageConflict(Conflict):
    code = "stage_conflict"


class AliasConflict(Conflict):
    code = "alias_conflict"


class ModelNotFound(NotFound):
    code = "model_not_found"


class ModelVersionNotFound(NotFound):
    code = "model_version_not_found"


class AliasNotFound(NotFound):
    code = "alias_not_found"
