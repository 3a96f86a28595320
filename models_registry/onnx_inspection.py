"""Read an uploaded ONNX file safely and say what it is.

The upload is first streamed to a private work folder (counting bytes, so an
oversized file is refused before it is all on disk), then parsed by ``onnx``
without following external data, checked for external-data references, and only
then loaded by onnxruntime on the CPU and run once on zeros, which is what decides
that it is a model; that happens in a child process within a memory and time budget
(``onnx_trial``), so a small file describing a huge graph costs this process nothing.
Nothing here touches the database or the storage the registry keeps files in.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import onnx
from google.protobuf.message import DecodeError

from .exceptions import InvalidModelFile, ModelOverBudget, ModelTooLarge
from .onnx_trial import Trial, onnx_model_trial
from .tensor_types import signature_dtype

CHUNK_BYTES = 1024 * 1024
MODEL_FILENAME = "model.onnx"


@dataclass
class StagedFile:
    """A file copied into the work folder: where it is, its name there, hash and size."""

    path: Path
    sha256: str
    size_bytes: int


@dataclass
class OnnxInspection:
    """What the registry keeps about a model that onnxruntime accepted."""

    model: StagedFile
    # Files the model refers to as external data, relative to the model's folder.
    external_files: list[str] = field(default_factory=list)
    signature: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    feature_names: list[str] = field(default_factory=list)
    framework: dict[str, Any] = field(default_factory=dict)


def _chunks(source: IO[bytes] | Path) -> Iterator[bytes]:
    if isinstance(source, Path):
        with source.open("rb") as handle:
            yield from iter(lambda: handle.read(CHUNK_BYTES), b"")
        return
    chunks = getattr(source, "chunks", None)  # Django's UploadedFile
    if callable(chunks):
        yield from chunks(CHUNK_BYTES)
        return
    if hasattr(source, "seek"):
        source.seek(0)
    yield from iter(lambda: source.read(CHUNK_BYTES), b"")


def stage_file(
    source: IO[bytes] | Path, destination: Path, *, max_bytes: int, what: str = "model file"
) -> StagedFile:
    """Copy ``source`` to ``destination`` while hashing it; refuse past ``max_bytes``.

    Raises ModelTooLarge as soon as the limit is crossed (the partial copy is removed).
    """
    declared = getattr(source, "size", None)
    if isinstance(declared, int) and declared > max_bytes:
        raise ModelTooLarge(_too_large(what, max_bytes), details={"limit_bytes": max_bytes})
    digest = hashlib.sha256()
    size = 0
    destination.parent.mkdir(parents=True, exist_ok=True)
    with destination.open("wb") as out:
        for chunk in _chunks(source):
            size += len(chunk)
            if size > max_bytes:
                out.close()
                destination.unlink(missing_ok=True)
                raise ModelTooLarge(_too_large(what, max_bytes), details={"limit_bytes": max_bytes})
            digest.update(chunk)
            out.write(chunk)
    return StagedFile(path=destination, sha256=digest.hexdigest(), size_bytes=size)


def _too_large(what: str, max_bytes: int) -> str:
    return f"The {what} is larger than the limit of {max_bytes} bytes."


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a graph holds, subgraphs (If/Loop/Scan bodies) included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _attribute_tensors(node.attribute)


def _attribute_tensors(attributes: Any) -> Iterator[onnx.TensorProto]:
    for attribute in attributes:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        if attribute.HasField("sparse_tensor"):
            yield attribute.sparse_tensor.values
            yield attribute.sparse_tensor.indices
        if attribute.HasField("g"):
            yield from _tensors(attribute.g)
        for subgraph in attribute.graphs:
            yield from _tensors(subgraph)


def _external_locations(model: onnx.ModelProto) -> list[str]:
    tensors = list(_tensors(model.graph))
    for function in model.functions:
        for node in function.node:
            tensors.extend(_attribute_tensors(node.attribute))
    locations: list[str] = []
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        if location not in locations:
            locations.append(location)
    return locations


def _relative_location(location: str) -> PurePosixPath:
    """``location`` as a path inside the model's folder; refused if it could leave it."""
    pure = PurePosixPath(location.replace("\\", "/"))
    if not location or pure.is_absolute() or ".." in pure.parts or ":" in location:
        raise InvalidModelFile(
            f"The model refers to external data outside its own folder ({location!r}).",
            details={"location": location},
        )
    return pure


def _check_location(location: str, source_dir: Path | None) -> Path:
    """The external file a location names, refused unless it stays inside the model's folder."""
    pure = _relative_location(location)
    if source_dir is None:
        raise InvalidModelFile(
            f"The model refers to external data ({location!r}) that was not uploaded with it; "
            "embed the weights in the .onnx file.",
            details={"location": location},
        )
    candidate = (source_dir / pure).resolve()
    if not candidate.is_relative_to(source_dir.resolve()) or not candidate.is_file():
        raise InvalidModelFile(
            f"The model's external data file {location!r} is missing or outside its folder.",
            details={"location": location},
        )
    return candidate


def _dtype(ort_type: str) -> str:
    return signature_dtype(ort_type)


def _shape(shape: Any) -> list[int | None]:
    # Symbolic ("batch", "n") and unknown dimensions are dynamic: None.
    return [dim if isinstance(dim, int) and dim >= 0 else None for dim in (shape or [])]


def _io(args: list[tuple[str, str, list[Any]]]) -> list[dict[str, Any]]:
    return [
        {"name": name, "dtype": _dtype(kind), "shape": _shape(shape)} for name, kind, shape in args
    ]


# onnxruntime's StringNormalizer uses this locale when the node names none.
DEFAULT_STRING_LOCALE = "en_US.UTF-8"


def _normalizer_locales(model: onnx.ModelProto) -> list[str]:
    """The locales the graph's StringNormalizer nodes ask for."""
    found: list[str] = []
    for node in model.graph.node:
        if node.op_type != "StringNormalizer":
            continue
        named = [a.s.decode(errors="replace") for a in node.attribute if a.name == "locale"]
        locale = named[0] if named and named[0] else DEFAULT_STRING_LOCALE
        if locale not in found:
            found.append(locale)
    return found


def _locale_refusal(trial: Trial, model: onnx.ModelProto) -> None:
    """Raises InvalidModelFile naming the missing locale and the two ways out, when
    onnxruntime could not build a StringNormalizer (skl2onnx writes one for
    ``TfidfVectorizer(lowercase=True)``, with en_US.UTF-8) on this machine."""
    if trial.outcome != "load_failed" or "locale" not in trial.error.lower():
        return
    locales = _normalizer_locales(model) or [DEFAULT_STRING_LOCALE]
    raise InvalidModelFile(
        f"onnxruntime could not load the model: its StringNormalizer (lowercasing) asks for "
        f"the locale {', '.join(locales)}, which this server does not have (slim images often "
        "have only C, C.UTF-8 and POSIX). Either set the node's 'locale' attribute to "
        "'C.UTF-8' after conversion, or lowercase the text before the model "
        "(TfidfVectorizer(lowercase=False)) and convert again.",
        details={
            "reason": trial.error,
            "locales": locales,
            "fixes": ["StringNormalizer locale = C.UTF-8", "lowercase=False, lowercase before"],
        },
    )


def _trial_refusal(trial: Trial, *, memory_budget_bytes: int, time_budget_s: float) -> None:
    """Raises InvalidModelFile (or ModelOverBudget) unless the trial loaded the model."""
    if trial.outcome == "ok":
        return
    if trial.outcome == "load_failed":
        raise InvalidModelFile(
            "onnxruntime could not load the model.", details={"reason": trial.error}
        )
    budget = {
        "memory_budget_mb": memory_budget_bytes // (1024 * 1024),
        "time_budget_s": time_budget_s,
        "reason": trial.error,
    }
    if trial.outcome == "over_memory":
        raise ModelOverBudget(
            "Loading and running the model once needs more memory than validation allows "
            f"({budget['memory_budget_mb']} MB, PHOENIX_MODEL_VALIDATION_MEMORY_MB); the graph "
            "builds tensors too large to serve.",
            details=budget,
        )
    if trial.outcome == "over_time":
        raise ModelOverBudget(
            f"Loading and running the model once took longer than {time_budget_s:g} s "
            "(PHOENIX_MODEL_VALIDATION_TIMEOUT_S).",
            details=budget,
        )
    raise ModelOverBudget(
        "The process validating the model ended without an answer (most often a memory "
        f"limit: {budget['memory_budget_mb']} MB, PHOENIX_MODEL_VALIDATION_MEMORY_MB).",
        details=budget,
    )


def feature_names_for(inputs: list[dict[str, Any]], metadata: dict[str, str]) -> list[str]:
    """The model's tabular feature names, in column order; [] when it has no tabular meaning.

    ``metadata_props["feature_names"]`` (comma-separated) wins. Otherwise inputs that are
    each one column are named by the input; a matrix input of known width gets ``f0..fN``.
    """
    declared = [n.strip() for n in metadata.get("feature_names", "").split(",") if n.strip()]
    if declared:
        return declared
    widths: list[int | None] = []
    for spec in inputs:
        shape = spec["shape"]
        if len(shape) <= 1:
            widths.append(1)
        elif len(shape) == 2:
            widths.append(shape[1])
        else:
            widths.append(None)
    if all(w == 1 for w in widths):
        return [spec["name"] for spec in inputs]
    if any(w is None for w in widths):
        return []
    return [f"f{i}" for i in range(sum(w for w in widths if w is not None))]


def onnx_model_inspect(
    source: IO[bytes] | Path,
    *,
    workdir: Path,
    max_bytes: int,
    allow_external_data: bool,
    memory_budget_bytes: int = 1024 * 1024 * 1024,
    time_budget_s: float = 60.0,
) -> OnnxInspection:
    """Copy ``source`` into ``workdir`` and check it is a model onnxruntime can run.

    The load and one run on zeros happen in a child process within ``memory_budget_bytes``
    and ``time_budget_s`` (``onnx_trial``); this process never loads the model.
    Returns the staged copy with its signature, feature names and framework metadata.
    Raises ModelTooLarge, InvalidModelFile or ModelOverBudget; the name or content
    type of the upload play no part.
    """
    staged = stage_file(source, workdir / MODEL_FILENAME, max_bytes=max_bytes)
    try:
        model = onnx.load_model(str(staged.path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as exc:
        raise InvalidModelFile(
            "The file is not an ONNX model (it could not be parsed).",
            details={"reason": str(exc)[:500]},
        ) from exc
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise InvalidModelFile("The file is not an ONNX model (it has no graph).")

    # Refuse external data before onnxruntime sees the file: it would open the path.
    external: list[str] = []
    locations = _external_locations(model)
    for location in locations:
        _relative_location(location)  # the most telling refusal comes first
    if locations and not allow_external_data:
        raise InvalidModelFile(
            "The model keeps weights in external data files, which this registry does not "
            "accept (PHOENIX_ALLOW_EXTERNAL_DATA is off).",
            details={"locations": locations},
        )
    source_dir = source.resolve().parent if isinstance(source, Path) else None
    total = staged.size_bytes
    for location in locations:
        found = _check_location(location, source_dir)
        total += found.stat().st_size
        if total > max_bytes:
            raise ModelTooLarge(_too_large("model with its external data", max_bytes))
        relative = _relative_location(location)
        target = workdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found, target)
        external.append(str(relative))

    trial = onnx_model_trial(
        os.fspath(staged.path), memory_bytes=memory_budget_bytes, timeout_s=time_budget_s
    )
    _locale_refusal(trial, model)
    _trial_refusal(trial, memory_budget_bytes=memory_budget_bytes, time_budget_s=time_budget_s)

    inputs = _io(trial.inputs)
    if not inputs:
        raise InvalidModelFile("The model has no inputs.")
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    return OnnxInspection(
        model=staged,
        external_files=external,
        signature={"inputs": inputs, "outputs": _io(trial.outputs)},
        feature_names=feature_names_for(inputs, metadata),
        framework={
            "producer_name": model.producer_name,
            "producer_version": model.producer_version,
            "ir_version": model.ir_version,
            "opset": {imp.domain or "ai.onnx": imp.version for imp in model.opset_import},
            "domain": model.domain,
            "model_version": model.model_version,
            "doc_string": model.doc_string[:1000],
            "metadata_props": metadata,
        },
    )
