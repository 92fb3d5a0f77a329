"""Open set (issue 10, deliverable 6): align without some classes, then classify the flows of the removed classes
among all of them, given only each class's name and one-sentence definition (``prompts.json``).

Five folds remove two classes each (``FINE_CLASSES[2f:2f+2]``), so every class is unseen once. What a design
may change, in :class:`OpenSetSettings`:

- ``texts``: ``descriptions`` trains on the descriptions as written ("A network traffic of {label}. ...",
  concept clauses included); ``observations`` on their observation part only
  (:func:`packetclip.language.faithfulness.checked_text`: what the flow does, no label, no concept clauses),
  so the text side learns attributes that the unseen definitions can share rather than label names.
- ``heads``: ``both`` trains the text head too; ``packet`` keeps the text side the frozen encoder's own space,
  where the unseen definitions live.
- ``calibrate``: calibrated stacking (generalised zero-shot learning, Chao et al. 2016): a constant ``gamma`` is
  subtracted from the scores of the classes seen in training. ``gamma`` is chosen on the *validation* flows of
  seen classes only: an inner alignment trained without two of the seen classes, ``gamma`` maximising the
  harmonic mean of its top-1 on the held-out seen classes and on the rest. The unseen classes' flows are never
  used to choose anything.

:func:`open_set` returns per-class top-1 on the unseen classes' test flows and the seen classes' top-1 under
the same scoring (a calibration that buys unseen accuracy with seen accuracy shows there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from packetclip.align.train import PairData, TrainSettings, build_pairs, new_model, train
from packetclip.align.zero_shot import classify, prompts, zero_shot_classifier
from packetclip.traffic.labels import FINE_CLASSES

GAMMAS = np.round(np.arange(0.0, 0.61, 0.02), 2)


@dataclass
class OpenSetSettings:
    """One open-set design (see the module docstring); the benchmark's default is the best measured."""

    texts: str = "observations"
    heads: str = "both"
    calibrate: bool = True
    steps: int = 1000
    seed: int = 0
    folds: int = 5


def observation_table(descriptions: pd.DataFrame) -> pd.DataFrame:
    """The descriptions reduced to what they say the flow does (no label sentence, no concept clauses)."""
    from packetclip.language.faithfulness import checked_text

    texts = [checked_text(str(t)).strip() or str(t) for t in descriptions["text"]]
    return descriptions.assign(text=texts)


def seen_subset(data: PairData, seen: Sequence[str]) -> PairData:
    """The pairs of the ``seen`` classes only (flows re-indexed)."""
    keep = np.isin(np.asarray(data.classes, dtype=object)[data.groups], list(seen))
    used, flow_row = np.unique(data.flow_row[keep], return_inverse=True)
    classes = sorted(set(np.asarray(data.classes, dtype=object)[data.groups[keep]]))
    groups = pd.Categorical(np.asarray(data.classes, dtype=object)[data.groups[keep]], categories=classes).codes
    return PairData(traffic=data.traffic[used], text=data.text[keep], flow_row=flow_row.astype(np.int64),
                    groups=groups.astype(np.int64), classes=classes)


def _top1(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {c: float((pred[y == c] == c).mean()) for c in np.unique(y)}


def _harmonic(a: float, b: float) -> float:
    return 0.0 if a + b <= 0 else 2 * a * b / (a + b)


def calibrate_gamma(data: PairData, seen: Sequence[str], val_x: np.ndarray, val_y: np.ndarray, traffic_side,
                    text_side, settings: OpenSetSettings, definitions: dict) -> float:
    """``gamma`` from seen classes only: train without two of them (pseudo-unseen), score the validation flows
    of all seen classes among the seen classes, and keep the ``gamma`` with the best harmonic mean of
    pseudo-unseen and pseudo-seen top-1 (ties: the smallest)."""
    seen = list(seen)
    pseudo = seen[:2]
    inner = seen_subset(data, [c for c in seen if c not in pseudo])
    model = new_model(inner, traffic_side, text_side, heads=settings.heads, seed=settings.seed)
    train(model, inner, TrainSettings(steps=settings.steps, seed=settings.seed, log_every=0))
    keep = np.isin(val_y, seen)
    if not np.isin(val_y[keep], pseudo).any():
        return 0.0
    logits = classify(model, val_x[keep], zero_shot_classifier(model, text_side, seen, definitions=definitions))
    is_seen = np.array([c not in pseudo for c in seen])
    best, best_score = 0.0, -1.0
    for gamma in GAMMAS:
        pred = np.asarray(seen, dtype=object)[(logits - gamma * is_seen).argmax(1)]
        hits = _top1(pred, val_y[keep])
        u = np.mean([v for c, v in hits.items() if c in pseudo])
        s = np.mean([v for c, v in hits.items() if c not in pseudo])
        score = _harmonic(float(u), float(s))
        if score > best_score + 1e-9:
            best, best_score = float(gamma), score
    return best


def open_set(traffic_side, text_side, workspace, descriptions: pd.DataFrame, split, *,
             settings: OpenSetSettings | None = None, classes: Sequence[str] = FINE_CLASSES,
             val_ids: np.ndarray | None = None, log=None) -> dict:
    """Run the folds of one design on an :class:`~packetclip.align.evaluate.EvalSplit`: ``unseen_top1`` (mean
    over unseen classes), ``seen_top1``, ``per_class``, ``gammas``."""
    s = settings or OpenSetSettings()
    classes = list(classes)
    definitions = prompts()["definitions"]
    table = observation_table(descriptions) if s.texts == "observations" else descriptions
    data = build_pairs(traffic_side, text_side, workspace, table, split.train_ids)
    val_x = val_y = None
    if s.calibrate:
        if val_ids is None:
            val_ids = workspace.split_flow_ids("val")
        described = descriptions.drop_duplicates("flow_id")
        described = described[described["flow_id"].isin(np.asarray(val_ids)) & described["label"].isin(classes)]
        val_x = traffic_side.embed(workspace, described["flow_id"].to_numpy(np.int64))
        val_y = described["label"].astype(str).to_numpy()
    per_class, seen_hits, gammas = {}, [], []
    for fold in range(s.folds):
        unseen = classes[2 * fold: 2 * fold + 2]
        seen = [c for c in classes if c not in unseen]
        gamma = 0.0
        if s.calibrate and val_x is not None and len(val_y):
            gamma = calibrate_gamma(data, seen, val_x, val_y, traffic_side, text_side, s, definitions)
        gammas.append(gamma)
        sub = seen_subset(data, seen)
        model = new_model(sub, traffic_side, text_side, heads=s.heads, seed=s.seed)
        train(model, sub, TrainSettings(steps=s.steps, seed=s.seed, log_every=0))
        logits = classify(model, split.test_x, zero_shot_classifier(model, text_side, classes,
                                                                     definitions=definitions))
        logits = logits - gamma * np.array([c in seen for c in classes])
        pred = np.asarray(classes, dtype=object)[logits.argmax(1)]
        hits = _top1(pred, split.test_y)
        per_class.update({c: v for c, v in hits.items() if c in unseen})
        seen_hits.extend(v for c, v in hits.items() if c in seen)
        if log is not None:
            log(f"open set fold {fold}: unseen {unseen} gamma {gamma} -> "
                f"{ {c: round(v, 3) for c, v in hits.items() if c in unseen} }")
    return {"unseen_top1": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
            "seen_top1": float(np.mean(seen_hits)) if seen_hits else float("nan"),
            "per_class": per_class, "gammas": gammas}


__all__ = ["OpenSetSettings", "open_set", "observation_table", "seen_subset", "calibrate_gamma"]
