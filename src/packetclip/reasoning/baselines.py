"""The mission GNN's peers on the same split (Table 2, Figures 8-9): XGBoost / LightGBM / a DNN on the aligned
embeddings, XGBoost on the raw CICFlowMeter columns (the classic NIDS), and the ET-BERT-style end-to-end fine-tune
on each flow's first packets; plus the cost counts of Figure 8 and the stratified subsets of Figure 9.

Shared by ``benchmarks/reasoning.py`` and ``packetclip reproduce`` so both measure the same thing. Every ``fit_*``
returns a function ``rows -> [n, 4]`` mission probabilities (missions absent from training get 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from packetclip.errors import PacketClipError

SCARCITY_PERCENTS = (100, 70, 50, 40, 30, 10, 5, 1)


def stratified_mask(y: np.ndarray, base: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``fraction`` of the ``base`` rows per class (at least 2 per class present), seeded."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(base)
    for c in np.unique(y[base]):
        rows = np.flatnonzero(base & (y == c))
        k = max(2, int(round(fraction * len(rows))))
        out[rng.choice(rows, size=min(k, len(rows)), replace=False)] = True
    return out


def balanced_weights(y: np.ndarray) -> np.ndarray:
    counts = np.bincount(y)
    return (len(y) / (len(counts) * counts))[y]


def _proba4(model, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    p = model.predict_proba(x)
    out = np.zeros((len(x), 4), np.float64)
    out[:, classes] = p
    return out


def flow_features(rows: pd.DataFrame) -> np.ndarray:
    """The CICFlowMeter columns, sign-log scaled (what XGBoost-flow reads)."""
    from packetclip.encoders.flowtable import CICFLOW_FEATURES, feature_matrix

    x = feature_matrix(rows, list(CICFLOW_FEATURES))
    return np.sign(x) * np.log1p(np.abs(x))


def fit_xgb(x, y, seed: int = 0, *, n_estimators: int = 200) -> Callable[[np.ndarray], np.ndarray]:
    from xgboost import XGBClassifier

    classes, yy = np.unique(y, return_inverse=True)
    m = XGBClassifier(n_estimators=n_estimators, max_depth=6, learning_rate=0.1, n_jobs=1, random_state=seed,
                      tree_method="hist", verbosity=0)
    m.fit(x, yy, sample_weight=balanced_weights(yy))
    return lambda z: _proba4(m, z, classes)


def fit_lgbm(x, y, seed: int = 0, *, n_estimators: int = 200) -> Callable[[np.ndarray], np.ndarray]:
    from lightgbm import LGBMClassifier

    classes, yy = np.unique(y, return_inverse=True)
    m = LGBMClassifier(n_estimators=n_estimators, num_leaves=31, learning_rate=0.1, n_jobs=1, random_state=seed,
                       class_weight="balanced", verbose=-1)
    m.fit(x, yy)
    return lambda z: _proba4(m, z, classes)


def fit_dnn(x, y, seed: int = 0, *, max_iter: int = 60) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.neural_network import MLPClassifier

    classes, yy = np.unique(y, return_inverse=True)
    m = MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=max_iter, random_state=seed, early_stopping=True)
    m.fit(x, yy)
    return lambda z: _proba4(m, z, classes)


# ---- ET-BERT-style fine-tune on flows ----------------------------------------------------------------------

@dataclass
class EtbertFlowSettings:
    """The end-to-end fine-tune as run on a CPU: ET-BERT's recipe (bigram tokens, [CLS] pooling, AdamW with
    warm-up) at a reduced size. Each training flow contributes its first ``first_k`` packets, labelled with the
    flow's mission; at most ``max_train_flows`` flows (class-balanced sample) are used; a flow's score is the mean
    of its packets' probabilities. ``size`` tiny = 2 x 64 (random init: the published weights are not shipped);
    ``seq_length`` 64 tokens = each packet's first 65 bytes from the IP header (ET-BERT: 128)."""

    size: str = "tiny"
    seq_length: int = 64
    first_k: int = 2
    epochs: int = 2
    max_train_flows: int = 1500
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0


class FlowPackets:
    """Each row's first ``first_k`` packet views, read once from the rows' workspaces (``ws_index`` column)."""

    def __init__(self, workspaces: Sequence, rows: pd.DataFrame, first_k: int):
        views, owner = [], []
        for i, ws in enumerate(workspaces):
            part = rows.index[rows["ws_index"].to_numpy() == i].to_numpy()
            if not len(part):
                continue
            ids = rows.loc[part, "flow_id"].to_numpy(np.int64)
            pv = ws.packet_views(ids, first_k=first_k)
            position = pd.Series(np.arange(len(part)), index=ids)
            local = position.reindex(pv.flow_id).to_numpy()
            keep = ~np.isnan(local)
            views.append(pv.views[keep])
            owner.append(part[local[keep].astype(np.int64)])
        if not views:
            raise PacketClipError("no packet views for the ET-BERT fine-tune")
        self.views = np.concatenate(views)
        self.row = np.concatenate(owner)            # positional row of each packet in ``rows``
        self.n_rows = len(rows)

    def of(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        take = mask[self.row]
        return self.views[take], self.row[take]


def balanced_cap(y: np.ndarray, base: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most ``cap`` rows of ``base``, spread evenly over the classes present (small classes kept whole)."""
    rng = np.random.default_rng(seed)
    classes = [c for c in np.unique(y[base])]
    out = np.zeros_like(base)
    left, budget = list(classes), cap
    # give small classes all their rows, share the rest among the big ones
    sizes = {c: int((base & (y == c)).sum()) for c in classes}
    for c in sorted(classes, key=lambda c: sizes[c]):
        share = budget // max(1, len(left))
        rows = np.flatnonzero(base & (y == c))
        take = rows if len(rows) <= share else rng.choice(rows, size=share, replace=False)
        out[take] = True
        budget -= len(take)
        left.remove(c)
    return out


def fit_etbert_flows(packets: FlowPackets, y: np.ndarray, train_mask: np.ndarray,
                     settings: EtbertFlowSettings | None = None, *, progress: bool = False):
    """Fine-tune ET-BERT end to end on the training flows' first packets; returns ``(predict, classifier)`` where
    ``predict(mask) -> [n_rows, 4]`` scores the masked rows (other rows stay 0) and ``classifier.used_flows_``
    says how many flows it trained on."""
    from packetclip.encoders.etbert import ETBertClassifier, ETBertConfig

    s = settings or EtbertFlowSettings()
    use = balanced_cap(y, train_mask, s.max_train_flows, s.seed) if train_mask.sum() > s.max_train_flows \
        else train_mask.copy()
    views, owner = packets.of(use)
    if not len(views):
        raise PacketClipError("no packets in the training flows for the ET-BERT fine-tune")
    config = ETBertConfig.preset(s.size, seq_length=s.seq_length)
    clf = ETBertClassifier(config, 4, epochs=s.epochs, batch_size=s.batch_size, learning_rate=s.learning_rate,
                           seed=s.seed, progress=progress)
    clf.fit(views, y[owner].astype(np.int64))
    clf.used_flows_ = int(use.sum())

    def predict(mask: np.ndarray) -> np.ndarray:
        v, r = packets.of(mask)
        out = np.zeros((packets.n_rows, 4), np.float64)
        if not len(v):
            return out
        p = clf.predict_proba(v, batch_size=256).astype(np.float64)
        counts = np.bincount(r, minlength=packets.n_rows).astype(np.float64)
        for c in range(4):
            out[:, c] = np.bincount(r, weights=p[:, c], minlength=packets.n_rows)
        seen = counts > 0
        out[seen] /= counts[seen, None]
        out[mask & ~seen] = 0.25     # a flow without a packet view: no information
        return out

    return predict, clf


# ---- cost (Figure 8) ----------------------------------------------------------------------------------------

def gnn_flops_per_step(gnn, batch: int = 64) -> int:
    """FLOPs of one GNN training step (forward + backward, ``batch`` windows of the model's length), counted with
    ``FlopCounterMode`` with the MHA fast path off and the MATH attention backend (the message-passing sums are
    the matmuls and means the counter sees)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    c = gnn.config
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(batch * c.window, c.embed_dim, generator=gen), dim=-1)
    gaps = torch.rand(batch, c.window, generator=gen)
    y = torch.randint(0, len(c.missions), (batch, c.window), generator=gen)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    was_training = gnn.training
    gnn.train()
    try:
        counter = FlopCounterMode(display=False)
        with sdpa_kernel(SDPBackend.MATH), counter:
            steps = gnn.step_features(x).reshape(batch, c.window, -1)
            logits, _ = gnn.temporal(steps, gaps)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            loss.backward()
    finally:
        gnn.zero_grad(set_to_none=True)
        gnn.train(was_training)
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops())


def etbert_cost(size: str = "base", batch: int = 32, seq_length: int = 128) -> tuple[int, int]:
    """Trainable parameters and FLOPs of one fine-tuning step (forward + backward, ``batch`` packets of 128
    tokens, 4-class head) of ET-BERT at ``size`` (base = 12 x 768 as published), on the meta device."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from packetclip.encoders.etbert import ETBertConfig, build_bert

    cfg = ETBertConfig.preset(size, seq_length=seq_length)
    with torch.device("meta"):
        bert = build_bert(cfg)
        head = torch.nn.Linear(cfg.hidden_size, 4)
        ids = torch.zeros(batch, cfg.seq_length, dtype=torch.long)
    params = sum(p.numel() for p in bert.parameters()) + sum(p.numel() for p in head.parameters())
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        out = bert(input_ids=ids).pooler_output
        head(out).sum().backward()
    return int(params), int(counter.get_total_flops())
