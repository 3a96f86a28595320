"""The floor: the benchmark model called in process, with no server at all.

Prints one JSON line: the median single-row call time, batch rows/s, the label the
model gives the benchmark row (to check every server's answer against), and the
onnxruntime version and provider.

    python scripts/bench/peers/raw_ort.py MODEL.onnx --row 0.1,0.2,... --batch 256
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
from ort_session import load_session


def _timings(
    run: Callable[..., Any], feed: dict[str, np.ndarray], duration_s: float
) -> list[float]:
    for _ in range(200):
        run(None, feed)
    timings: list[float] = []
    clock = time.perf_counter
    deadline = clock() + duration_s
    while clock() < deadline:
        started = clock()
        run(None, feed)
        timings.append(clock() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--row", required=True, help="comma-separated feature values")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    args = parser.parse_args()
    session = load_session(args.model)
    name = session.get_inputs()[0].name
    row = np.asarray([[float(v) for v in args.row.split(",")]], dtype=np.float32)
    single = _timings(session.run, {name: row}, args.duration)
    batch_rows = np.random.default_rng(0).normal(size=(args.batch, row.shape[1]))
    batch = _timings(session.run, {name: batch_rows.astype(np.float32)}, args.duration)
    label = session.run(None, {name: row})[0].tolist()[0]
    batch_median = statistics.median(batch)
    result = {
        "onnxruntime": ort.__version__,
        "provider": session.get_providers()[0],
        "single_row_us_p50": statistics.median(single) * 1e6,
        "single_row_us_mean": statistics.fmean(single) * 1e6,
        "single_row_calls": len(single),
        "batch": args.batch,
        "batch_ms_p50": batch_median * 1e3,
        "batch_rows_per_s": args.batch / batch_median,
        "label": label,
    }
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
