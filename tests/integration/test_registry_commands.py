"""manage.py register_model, set_stage, set_alias, list_models."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from models_registry.models import ModelAlias, ModelVersion
from tests.registry_support import EXPAND_MODEL, onnx_with_external_data, variant_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_register_model_with_reference_and_alias(tiny_onnx_model, tmp_path) -> None:
    reference = tmp_path / "train.csv"
    reference.write_text("x1,x2,x3\n1,2,3\n4,5,6\n")

    out = _run(
        "register_model",
        str(tiny_onnx_model),
        "--name",
        "risk",
        "--stage",
        "staging",
        "--reference",
        str(reference),
        "--alias",
        "champion",
    )

    version = ModelVersion.objects.get()
    assert "Registered risk v1 (staging, champion)" in out
    assert "X:float32[None, 3]" in out
    assert version.reference_rows == 2
    assert ModelAlias.objects.get().alias == "champion"


def test_register_model_reads_a_foreign_model(tmp_path) -> None:
    out = _run("register_model", str(EXPAND_MODEL), "--name", "expand", "--version", "a1")

    assert "expand va1 (dev)" in out
    assert "shape:int64[2]" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/model.onnx", "--name", "risk"], "No such file"),
        (["{bad}", "--name", "risk"], "external data outside its own folder"),
        (["{model}", "--name", "bad name!"], "Invalid model name"),
    ],
)
def test_register_model_bad_input_is_a_command_error(
    tiny_onnx_model, tmp_path, args: list[str], message: str
) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(onnx_with_external_data("../../etc/passwd"))
    args = [a.format(bad=bad, model=tiny_onnx_model) for a in args]

    with pytest.raises(CommandError, match=message):
        _run("register_model", *args)
    assert not ModelVersion.objects.exists()


def test_set_stage_and_set_alias(tiny_onnx_model, tmp_path) -> None:
    _run("register_model", str(tiny_onnx_model), "--name", "risk", "--stage", "production")
    second = tmp_path / "second.onnx"
    second.write_bytes(variant_bytes(tiny_onnx_model, "2"))
    _run("register_model", str(second), "--name", "risk")

    moved = _run("set_stage", "risk", "2", "staging")
    promoted = _run("set_stage", "risk", "2", "production")
    aliased = _run("set_alias", "risk", "champion", "2")

    assert moved.strip() == "risk v2: dev -> staging"
    assert promoted.strip() == "risk v2: staging -> production"
    assert aliased.strip() == "risk@champion -> v2"
    assert dict(ModelVersion.objects.values_list("version", "stage")) == {
        "1": "archived",
        "2": "production",
    }


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["set_stage", "risk", "1", "production"], "cannot move from dev to production"),
        (["set_stage", "risk", "9", "staging"], "has no version '9'"),
        (["set_stage", "nope", "1", "staging"], "No model named 'nope'"),
        (["set_alias", "risk", "champion", "3"], "has no version '3'"),
    ],
)
def test_moves_with_bad_input_are_command_errors(
    tiny_onnx_model, command: list[str], message: str
) -> None:
    _run("register_model", str(tiny_onnx_model), "--name", "risk")

    with pytest.raises(CommandError, match=message):
        _run(*command)


def test_list_models_prints_a_table(tiny_onnx_model) -> None:
    _run("register_model", str(tiny_onnx_model), "--name", "risk", "--alias", "challenger")

    lines = _run("list_models").splitlines()

    assert lines[0].split() == ["MODEL", "VERSION", "STAGE", "ALIASES", "SHA256", "SIZE", "CREATED"]
    assert lines[1].split()[:4] == ["risk", "1", "dev", "challenger"]


def test_list_models_when_empty() -> None:
    assert _run("list_models").strip() == "No models registered."


def test_bad_input_exits_non_zero_with_one_line(tmp_path) -> None:
    # A real process: the exit status and stderr are what a shell script sees.
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "register_model",
            str(tmp_path / "missing.onnx"),
            "--name",
            "x",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={"DJANGO_SETTINGS_MODULE": "phoenix.settings.test", "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"CommandError: No such file: {tmp_path / 'missing.onnx'}"
    ]
