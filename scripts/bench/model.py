"""The benchmark model: a 100-tree gradient-boosted classifier on 8 FP32 features.

Trained with scikit-learn on seeded synthetic data and converted with skl2onnx
(zipmap off: plain label and probability tensors), so every contender serves exactly
the same file. The feature names f0..f7 travel in ``metadata_props["feature_names"]``,
which is where Phoenix's registry reads them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

FEATURES = [f"f{i}" for i in range(8)]
INPUT_NAME = "X"
TREES = 100
SEED = 0


@dataclass(frozen=True)
class BenchModel:
    path: Path
    sha256: str
    features: list[str]
    input_name: str
    # One held-out row (rounded as sent on the wire): the body of every single-row request.
    row: list[float]


def build_model(directory: Path) -> BenchModel:
    """Train, convert and write ``directory/gbm100.onnx``; return it with the request row."""
    import numpy as np
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    features, labels = make_classification(
        n_samples=4000, n_features=len(FEATURES), n_informative=6, random_state=SEED
    )
    features = features.astype(np.float32)
    clf = GradientBoostingClassifier(n_estimators=TREES, max_depth=3, random_state=SEED)
    clf.fit(features[:-100], labels[:-100])
    proto = convert_sklearn(
        clf,
        initial_types=[(INPUT_NAME, FloatTensorType([None, len(FEATURES)]))],
        options={id(clf): {"zipmap": False}},
    )
    proto.graph.name = f"gbm{TREES}"  # skl2onnx names it by a random uuid: same file every run
    entry = proto.metadata_props.add()
    entry.key, entry.value = "feature_names", ",".join(FEATURES)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"gbm{TREES}.onnx"
    onnx.save(proto, str(path))
    row = [round(float(v), 4) for v in features[-1]]
    return BenchModel(
        path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        features=list(FEATURES),
        input_name=INPUT_NAME,
        row=row,
    )
