"""A web process never imports the demo's training libraries (scikit-learn, skl2onnx:
~50 MB resident per worker): the recipes are registered by dotted path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import django
django.setup()
import phoenix.asgi  # what every uvicorn worker imports
from monitoring.services.retraining import retraining_recipe_get
heavy = sorted(m for m in ("sklearn", "skl2onnx", "phoenix.demo.recipes") if m in sys.modules)
print("loaded:", ",".join(heavy))
recipe = retraining_recipe_get("demo.house_prices")  # resolved on first use
print("resolved:", recipe.__module__, recipe.__name__)
"""


def test_web_process_imports_no_training_library_until_a_recipe_is_resolved(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "phoenix.settings",
        "PHOENIX_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "loaded: \n" in done.stdout
    assert "resolved: phoenix.demo.recipes retrain_house_prices" in done.stdout
