"""Evaluating alignments: zero-shot metrics, the linear probe on the same frozen embeddings, Table 1 as
Markdown, Figure 7 (zero-shot top-1 over training steps for heads none / packet / both) as PNG, and the
``align eval`` / demo entry points that put them together on one workspace."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from packetclip.align.model import HEADS, AlignModel
from packetclip.align.train import PairData, TrainSettings, build_pairs, new_model, train
from packetclip.align.zero_shot import classify, mission_top1, topk_macro, zero_shot_classifier
from packetclip.errors import PacketClipError
from packetclip.traffic.labels import FINE_CLASSES
from packetclip.traffic.workspace import Workspace


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 *, seed: int = 0) -> float:
    """Macro top-1 (balanced accuracy) of the project's one linear probe on the same frozen embeddings."""
    from packetclip.evaluate.probe import linear_probe as probe

    return probe(train_x, train_y, test_x, test_y, seed=seed).macro_recall


def zero_shot_metrics(model: AlignModel, text_side, traffic: np.ndarray, labels: Sequence[str],
                      classnames: Sequence[str] = FINE_CLASSES, definitions=None) -> dict:
    """top1 / top5 (macro over the true classes present) and mission_top1 of ``traffic`` rows."""
    classnames = list(classnames)
    y = np.array([classnames.index(l) for l in labels])
    logits = classify(model, traffic, zero_shot_classifier(model, text_side, classnames, definitions=definitions))
    return {"top1": topk_macro(logits, y, 1), "top5": topk_macro(logits, y, 5),
            "mission_top1": mission_top1(logits, y, classnames)}


@dataclass
class EvalSplit:
    """Cached frozen embeddings of one workspace's train and test flows (one row per flow)."""

    data: PairData                 # training pairs (train flows and their descriptions)
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    train_ids: np.ndarray
    test_ids: np.ndarray


def eval_split(traffic_side, text_side, workspace: Workspace, descriptions: pd.DataFrame,
               classnames: Sequence[str] = FINE_CLASSES) -> EvalSplit:
    """Train pairs from the ``train`` split, test flows from the ``test`` split (flows with a description)."""
    splits = workspace.splits()
    described = descriptions.drop_duplicates("flow_id")
    described = described[described["label"].astype(str).isin(list(classnames))]
    both = described.merge(splits[["flow_id", "split"]], on="flow_id")
    tr, te = both[both["split"] == "train"], both[both["split"] == "test"]
    if tr.empty or te.empty:
        raise PacketClipError("need described flows in both the train and the test split", path=str(workspace.root))
    data = build_pairs(traffic_side, text_side, workspace, descriptions, tr["flow_id"].to_numpy())
    tr = tr.sort_values("flow_id")
    train_ids, test_ids = tr["flow_id"].to_numpy(np.int64), te["flow_id"].to_numpy(np.int64)
    return EvalSplit(data, traffic_side.embed(workspace, train_ids), tr["label"].astype(str).to_numpy(),
                     traffic_side.embed(workspace, test_ids), te["label"].astype(str).to_numpy(),
                     train_ids, test_ids)


def heads_curves(split: EvalSplit, traffic_side, text_side, *, settings: TrainSettings | None = None,
                 eval_every: int = 250, classnames: Sequence[str] = FINE_CLASSES,
                 models: dict | None = None) -> dict[str, list[tuple[int, float]]]:
    """Figure 7's data: for heads none / packet / both, test zero-shot top-1 every ``eval_every`` steps (the
    trained models are put in ``models`` by heads setting when a dict is given)."""
    base = settings or TrainSettings()
    curves = {}
    for heads in HEADS:
        s = TrainSettings(**{**base.__dict__, "eval_every": eval_every, "log_every": 0})
        model = new_model(split.data, traffic_side, text_side, heads=heads, seed=s.seed)
        hist = train(model, split.data, s, on_eval=lambda step, m: {
            "top1": zero_shot_metrics(m, text_side, split.test_x, split.test_y, classnames)["top1"]})
        curves[heads] = [(h["step"], h["top1"]) for h in hist if "top1" in h]
        if models is not None:
            models[heads] = model
    return curves


def figure7(curves: dict[str, list[tuple[int, float]]], path: str | Path) -> Path:
    """Zero-shot top-1 over training steps, one line per heads setting (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for heads, points in curves.items():
        steps, top1 = zip(*points) if points else ((), ())
        ax.plot(steps, top1, marker="o", ms=3, label=f"heads: {heads}")
    ax.set_xlabel("training step")
    ax.set_ylabel("zero-shot top-1 (macro)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Figure 7: what the projection heads buy")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def table1_markdown(rows: Sequence[dict]) -> str:
    """Table 1 as Markdown: rows of {traffic, method, top1, top5, ...}."""
    head = "| traffic side | method | top-1 (macro) | top-5 (macro) | mission top-1 |\n| --- | --- | --- | --- | --- |\n"

    def f(x):
        return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"

    return head + "".join(f"| {r['traffic']} | {r['method']} | {f(r.get('top1'))} | {f(r.get('top5'))} | "
                          f"{f(r.get('mission_top1'))} |\n" for r in rows)


def xgboost_top1(workspace: Workspace, train_ids, train_y, test_ids, test_y, *, seed: int = 0) -> float:
    """Macro top-1 of XGBoost on the CICFlowMeter columns (the flow-feature baseline), same split."""
    from sklearn.metrics import balanced_accuracy_score
    from xgboost import XGBClassifier

    from packetclip.align.sides import context_features
    from packetclip.encoders.flowtable import CICFLOW_FEATURES

    flows = workspace.flows(["flow_id", *CICFLOW_FEATURES]).drop_duplicates("flow_id").set_index("flow_id")
    classes = sorted(set(train_y))
    enc = {c: i for i, c in enumerate(classes)}
    keep = np.array([y in enc for y in test_y])
    xtr = context_features(flows.loc[np.asarray(train_ids)].reset_index())
    xte = context_features(flows.loc[np.asarray(test_ids)[keep]].reset_index())
    clf = XGBClassifier(n_estimators=200, max_depth=6, learning_rate=0.2, tree_method="hist", n_jobs=1,
                        random_state=seed)
    clf.fit(xtr, np.array([enc[y] for y in train_y]))
    pred = np.asarray(classes)[clf.predict(xte)]
    return float(balanced_accuracy_score(np.asarray(test_y)[keep], pred))


def evaluate_model(model: AlignModel, traffic_side, text_side, workspace: Workspace, out_dir: str | Path, *,
                   settings: TrainSettings | None = None, curves: bool = True, eval_every: int = 250,
                   xgboost: bool = True) -> dict:
    """``align eval``: Table 1 (this alignment's zero-shot, the linear probe on the same frozen embeddings,
    XGBoost on flow features) as ``table1.md`` and Figure 7 as ``figure7.png`` in ``out_dir``."""
    model.check_traffic_encoder(traffic_side.fingerprint, where=str(workspace.root))
    model.check_text_encoder(text_side.fingerprint)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split = eval_split(traffic_side, text_side, workspace, workspace.descriptions())
    zs = zero_shot_metrics(model, text_side, split.test_x, split.test_y)
    rows = [{"traffic": model.config.traffic, "method": f"PacketCLIP zero-shot (heads {model.config.heads})", **zs},
            {"traffic": model.config.traffic, "method": "linear probe (same frozen embeddings)",
             "top1": linear_probe(split.train_x, split.train_y, split.test_x, split.test_y)}]
    if xgboost:
        rows.append({"traffic": "flow features", "method": "XGBoost (CICFlowMeter columns)",
                     "top1": xgboost_top1(workspace, split.train_ids, split.train_y, split.test_ids, split.test_y)})
    table = table1_markdown(rows)
    (out_dir / "table1.md").write_text("# Table 1: zero-shot classification, lab workspace\n\n" + table)
    result = {"rows": rows, "table": table, "table_path": str(out_dir / "table1.md")}
    if curves:
        c = heads_curves(split, traffic_side, text_side, settings=settings, eval_every=eval_every)
        result["curves"] = c
        result["figure_path"] = str(figure7(c, out_dir / "figure7.png"))
    return result

