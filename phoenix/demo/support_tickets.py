"""The bundled text demo: support tickets routed to a team from their raw text.

No Django here (as ``credit_risk``). Tickets are short seeded synthetic sentences: an
opener, words of their team's vocabulary, words every team shares and, now and then, a
word of another team's, in mixed case. The ONNX graph takes the raw strings (input
``text``, [N, 1] string): scikit-learn's ``TfidfVectorizer`` + ``LogisticRegression``,
converted by skl2onnx.

Lowercasing: skl2onnx turns ``TfidfVectorizer(lowercase=True)`` into a
``StringNormalizer`` node with locale ``en_US.UTF-8``, which onnxruntime cannot build
where that locale is not installed (slim images; these machines have only C, C.UTF-8
and POSIX). The demo keeps lowercasing in the graph and sets the node's locale to
``C.UTF-8`` after conversion (``portable_locale``); ASCII case folding is the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

MODEL_NAME = "support-tickets"
INPUT_NAME = "text"
FEATURE_NAMES = [INPUT_NAME]
CLASSES = ["billing", "technical", "account", "shipping"]
TARGET_OPSET = 17
DEFAULT_SEED = 42
PORTABLE_LOCALE = "C.UTF-8"

_VOCABULARY = {
    "billing": [
        "invoice",
        "charged",
        "refund",
        "payment",
        "card",
        "bill",
        "price",
        "subscription",
        "twice",
        "receipt",
        "overcharged",
        "vat",
        "discount",
        "renewal",
    ],
    "technical": [
        "error",
        "crash",
        "app",
        "freezes",
        "bug",
        "slow",
        "update",
        "screen",
        "sync",
        "timeout",
        "install",
        "browser",
        "loading",
        "broken",
    ],
    "account": [
        "password",
        "login",
        "email",
        "username",
        "locked",
        "reset",
        "profile",
        "delete",
        "verification",
        "code",
        "two-factor",
        "sign",
        "settings",
        "access",
    ],
    "shipping": [
        "parcel",
        "delivery",
        "tracking",
        "courier",
        "package",
        "arrived",
        "late",
        "address",
        "damaged",
        "shipment",
        "warehouse",
        "lost",
        "returned",
        "box",
    ],
}
_SHARED = [
    "please",
    "help",
    "today",
    "again",
    "my",
    "the",
    "order",
    "since",
    "yesterday",
    "still",
    "urgent",
    "thanks",
    "account",
    "problem",
    "issue",
    "week",
    "customer",
    "service",
]
_OPENERS = ["Hi,", "Hello", "Dear support,", "Hey", "Good morning,", "", "URGENT:", "Hi team"]

FloatArray = NDArray[np.float64]


def generate_tickets(
    *,
    n: int,
    seed: int = DEFAULT_SEED,
    class_weights: list[float] | None = None,
    noise: float = 0.3,
) -> tuple[list[str], list[str], list[str]]:
    """Draw ``n`` tickets and their teams.

    ``class_weights`` sets the share of each class (equal by default): a shift in it is
    the prediction drift a monitoring demo wants to catch. ``noise`` is the chance that
    each topical word comes from another team. Returns (texts, labels, FEATURE_NAMES).
    """
    rng = np.random.default_rng(seed)
    weights = np.asarray(class_weights or [1.0] * len(CLASSES), dtype=np.float64)
    labels = rng.choice(len(CLASSES), size=n, p=weights / weights.sum())
    texts: list[str] = []
    for label in labels:
        words: list[str] = []
        for _ in range(int(rng.integers(2, 6))):
            team = CLASSES[label] if rng.uniform() >= noise else CLASSES[rng.integers(len(CLASSES))]
            words.append(str(rng.choice(_VOCABULARY[team])))
        words += [str(w) for w in rng.choice(_SHARED, size=int(rng.integers(2, 7)))]
        order = rng.permutation(len(words))
        body = " ".join(words[i] for i in order)
        if rng.uniform() < 0.3:
            body = body.capitalize()
        elif rng.uniform() < 0.1:
            body = body.upper()
        texts.append(f"{rng.choice(_OPENERS)} {body}".strip())
    return texts, [CLASSES[i] for i in labels], list(FEATURE_NAMES)


def _pipeline(*, ngrams: tuple[int, int], c: float, seed: int) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=ngrams, min_df=2, sublinear_tf=True)),
            ("clf", LogisticRegression(C=c, max_iter=1000, random_state=seed)),
        ]
    )


def train_champion(texts: list[str], y: list[str], *, seed: int = DEFAULT_SEED) -> Any:
    """Tf-idf of single words + logistic regression."""
    return _pipeline(ngrams=(1, 1), c=1.0, seed=seed).fit(texts, y)


def train_challenger(texts: list[str], y: list[str], *, seed: int = DEFAULT_SEED) -> Any:
    """Tf-idf of words and word pairs + a less regularised logistic regression."""
    return _pipeline(ngrams=(1, 2), c=4.0, seed=seed).fit(texts, y)


def portable_locale(model: Any, locale: str = PORTABLE_LOCALE) -> int:
    """Set every StringNormalizer node's locale to ``locale`` (an absent attribute means
    ``en_US.UTF-8`` to onnxruntime, so it is added); returns how many nodes changed."""
    from onnx import helper

    changed = 0
    for node in model.graph.node:
        if node.op_type != "StringNormalizer":
            continue
        kept = [a for a in node.attribute if a.name != "locale"]
        del node.attribute[:]
        node.attribute.extend([*kept, helper.make_attribute("locale", locale)])
        changed += 1
    return changed


def to_onnx_bytes(estimator: Any, feature_names: list[str] | None = None) -> bytes:
    """Convert a fitted text pipeline: input ``text`` [N, 1] string, outputs ``label``
    [N] string and ``probabilities`` [N, classes]; the locale made portable."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType

    model = to_onnx(
        estimator,
        initial_types=[(INPUT_NAME, StringTensorType([None, 1]))],
        options={id(estimator.steps[-1][1]): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    portable_locale(model)
    for key, value in (("feature_names", INPUT_NAME), ("phoenix_demo", MODEL_NAME)):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return bytes(model.SerializeToString())


def evaluate_onnx(model_bytes: bytes, texts: list[str], y: list[str]) -> dict[str, float]:
    """Holdout metrics of the converted model, run by onnxruntime: what will be served."""
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    feed = np.array(texts, dtype=object).reshape(-1, 1)
    labels, proba = session.run(None, {INPUT_NAME: feed})
    truth = np.asarray(y, dtype=object)
    predicted = np.asarray(labels, dtype=object).reshape(-1)
    proba = np.asarray(proba, dtype=np.float64)
    columns = {name: i for i, name in enumerate(sorted(CLASSES))}  # scikit-learn's order
    picked = proba[np.arange(len(truth)), [columns[str(t)] for t in truth]]
    return {
        "accuracy": round(float((predicted == truth).mean()), 6),
        "macro_f1": round(_macro_f1(predicted, truth), 6),
        "log_loss": round(float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0)))), 6),
        "holdout_rows": float(len(truth)),
    }


def _macro_f1(predicted: NDArray[Any], truth: NDArray[Any]) -> float:
    scores = []
    for name in CLASSES:
        tp = float(np.sum((predicted == name) & (truth == name)))
        fp = float(np.sum((predicted == name) & (truth != name)))
        fn = float(np.sum((predicted != name) & (truth == name)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def reference_csv(texts: list[str]) -> bytes:
    """Reference texts as a one-column CSV with a header (quoted as needed)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FEATURE_NAMES)
    writer.writerows([t] for t in texts)
    return out.getvalue().encode()
