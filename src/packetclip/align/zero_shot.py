"""Zero-shot classification (open_clip's ``zero_shot_classifier``): class names x prompt templates -> one
``[embed_dim, n_classes]`` matrix of normalised, template-averaged class embeddings; classifying is then one
matrix product. Templates and class definitions are data (``prompts.json``), not code.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Mapping, Sequence

import numpy as np

from packetclip.traffic.labels import FINE_CLASSES, FINE_TO_MISSION, MISSIONS


@lru_cache(maxsize=1)
def prompts() -> dict:
    """The packaged prompt data: ``templates``, ``definitions`` (one sentence per class), ``missions``."""
    return json.loads(resources.files("packetclip.align").joinpath("prompts.json").read_text())


def class_prompts(name: str, templates: Sequence[str], definition: str | None = None) -> list[str]:
    """The prompts of one class: every template filled with its name, followed by its definition if given."""
    texts = [t.format(c=name) for t in templates]
    return [f"{t} {definition}" for t in texts] if definition else texts


def zero_shot_classifier(model, text_side, classnames: Sequence[str], templates: Sequence[str] | None = None,
                         definitions: Mapping[str, str] | None = None) -> np.ndarray:
    """``float32 [embed_dim, n_classes]``: per class, the mean of its prompts' shared-space embeddings,
    re-normalised. ``definitions`` (class -> sentence) are appended to the prompts of the classes they name."""
    templates = list(templates or prompts()["templates"])
    definitions = definitions or {}
    columns = []
    for name in classnames:
        texts = class_prompts(name, templates, definitions.get(name))
        vec = model.text_vectors(text_side.embed(texts)).mean(0)
        columns.append(vec / max(float(np.linalg.norm(vec)), 1e-12))
    return np.stack(columns, axis=1).astype(np.float32)


def classify(model, traffic: np.ndarray, classifier: np.ndarray) -> np.ndarray:
    """Cosine logits ``[n, n_classes]`` of raw traffic embeddings against a zero-shot classifier."""
    return model.traffic_vectors(traffic) @ classifier


def topk_macro(logits: np.ndarray, y: np.ndarray, k: int = 1) -> float:
    """Macro top-k: per true class, the share of its rows whose class is among the k best, averaged over the
    classes present in ``y`` (``y`` holds column indices)."""
    y = np.asarray(y)
    if len(y) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    hit = (top == y[:, None]).any(axis=1)
    return float(np.mean([hit[y == c].mean() for c in np.unique(y)]))


def mission_top1(logits: np.ndarray, y: np.ndarray, classnames: Sequence[str]) -> float:
    """Macro top-1 over the 4 missions, reading each fine prediction's mission (classes without one skipped)."""
    from packetclip.traffic.labels import mission_of

    missions = np.array([mission_of(c) or "" for c in classnames], dtype=object)
    pred, true = missions[logits.argmax(1)], missions[np.asarray(y)]
    keep = true != ""
    if not keep.any():
        return float("nan")
    return float(np.mean([(pred[keep & (true == m)] == m).mean() for m in np.unique(true[keep])]))


__all__ = ["FINE_CLASSES", "FINE_TO_MISSION", "MISSIONS", "prompts", "class_prompts", "zero_shot_classifier",
           "classify", "topk_macro", "mission_top1"]
