"""Time one drift check of a window: 100k rows x 20 features against a 100k-row reference.

    .venv/bin/python scripts/bench_drift.py [--rows 100000] [--features 20] [--repeat 5]

Runs ``monitoring.drift.dataset_drift`` (KS + p-values, PSI, Wasserstein, BH correction;
two of the features integer-valued, so chi-squared is exercised too) and prints the best
and median wall time. The target is under 2 s for the default size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitoring.drift import dataset_drift

TARGET_S = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(args.reference_rows, args.features))
    current = rng.normal(size=(args.rows, args.features))
    current[:, 0] += 0.05  # one feature drifts a little
    for data in (reference, current):
        data[:, -2:] = rng.integers(0, 5, size=(data.shape[0], 2))
    names = [f"f{i}" for i in range(args.features)]

    times: list[float] = []
    result = None
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = dataset_drift(reference, current, feature_names=names, correction="bh")
        times.append(time.perf_counter() - started)
    assert result is not None
    tests = sorted({f.test for f in result.features})
    print(
        f"dataset_drift {args.rows:,} rows x {args.features} features vs {args.reference_rows:,} "
        f"reference rows ({', '.join(tests)}): best {min(times):.3f} s, "
        f"median {statistics.median(times):.3f} s over {args.repeat} runs; "
        f"drift={result.drift} ({', '.join(result.drifted_features) or 'none'})"
    )
    return 0 if min(times) < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
