"""Training the reasoning model and building a bundle (``packetclip train``), apart from the model.

Data: every flow of every workspace given, in capture order. Labelled workspaces (the lab) bring their missions
and fine classes; unlabelled ones (real benign captures: the user's own network, or ``../shared/data/ndpi``)
are background and count as Benign. Splits: the workspace's own (``packetclip split``), else by capture when it
has at least three captures, else by flow — never by packet.

Windows (:mod:`packetclip.reasoning.windows`) run over all flows of a workspace as they happened; the loss
reads only training-split positions, and validation scores use the same windows, so what is trained is what
streams. Loss: class-weighted cross-entropy on missions + 0.5 x fine-class cross-entropy + ``smooth`` x the
temporal smoothing term (squared change of the mission probabilities between consecutive steps of a window).
Optional (``ReasoningSettings``, off by default): MissionGNN's normal-confidence regulariser and its decaying
pseudo-label threshold, for weakly labelled captures (a whole episode marked as one attack). The epoch with the
best validation mAUC is kept; the alert threshold is the validation benign flows' score quantile for a 1 %
false-positive rate.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from packetclip.errors import PacketClipError
from packetclip.reasoning.graphs import graph_tensors, tensors_to_dict
from packetclip.reasoning.model import MISSION_CLASSES, MissionGNN, ReasoningConfig
from packetclip.reasoning.windows import past_windows, sequence_keys, train_chunks

ATTACK_MISSION_KEYS = ("dos", "reconnaissance", "brute-force")
TARGET_FPR = 0.01


@dataclass
class ReasoningSettings:
    """Training knobs (not saved with the model)."""

    # Default from benchmarks/reasoning.py: per-flow steps had the best validation mAUC (1.0 vs 0.996 src, 0.993
    # dst, 0.998 global) and the best unseen-traffic figures; the host context in the embedding already carries
    # what a flow's source and destination did, and per-source windows overfit the lab's hosts (40 % of held-out
    # benign ndpi flows alerted).
    time_step: str = "flow"
    window: int = 30
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    smooth: float = 0.1
    fine_weight: float = 0.5
    seed: int = 0
    max_train_flows: int | None = None     # data-scarcity studies: a fraction is applied by the caller
    min_batches: int = 40                 # per epoch: small training sets (data-scarcity study) still get steps
    host_context: bool = True             # append the flows' host context to the traffic embedding
    align_steps: int = 1500
    describe_flows: int = 2000     # one rule-based description each: the text encoder is the slow part on a CPU
    # MissionGNN's two weak-supervision devices, off by default (our lab labels are per flow, not per video):
    # normal_confidence > 0 adds that weight x the mean over all-benign training windows of the window's largest
    # attack probability (the normal state must stay confident at every step, not on average);
    # pseudo_label=(start, end): an attack-labelled training step keeps its label only while the model's attack
    # score (1 - P(Benign), not back-propagated) reaches a threshold decaying linearly from start (first epoch) to
    # end (last), else counts as Benign, as MissionGNN does for the frames of an abnormal video.
    normal_confidence: float = 0.0
    pseudo_label: tuple[float, float] | None = None
    threads_note: str = field(default="", repr=False)


@dataclass
class FlowData:
    """All flows of a training run, row-aligned."""

    embeddings: np.ndarray        # raw traffic embeddings [n, d]
    mission: np.ndarray           # int [n] index into MISSION_CLASSES
    fine: np.ndarray              # object [n] fine class names
    split: np.ndarray             # object [n] train/val/test
    keys: dict                    # time_step -> sequence keys (object [n])
    times_ns: np.ndarray
    source: np.ndarray            # object [n] "<workspace>:<capture>"
    rows: pd.DataFrame            # the flow rows (for baselines / descriptions)
    workspace: np.ndarray         # int [n]


def mission_index(names: Sequence[str]) -> np.ndarray:
    lookup = {m: i for i, m in enumerate(MISSION_CLASSES)}
    return np.array([lookup.get(str(m), 0) for m in names], np.int64)


def assign_splits(flows: pd.DataFrame, *, seed: int, val: float = 0.15, test: float = 0.2) -> np.ndarray:
    """By capture when there are at least three, else by flow (seeded)."""
    rng = np.random.default_rng(seed)
    captures = flows["capture"].astype(str).to_numpy() if "capture" in flows.columns else None
    if captures is not None and len(np.unique(captures)) >= 3:
        names = np.unique(captures)
        perm = rng.permutation(len(names))
        n_test = max(1, int(round(test * len(names))))
        n_val = max(1, int(round(val * len(names))))
        split_of = {names[i]: ("test" if k < n_test else "val" if k < n_test + n_val else "train")
                    for k, i in enumerate(perm)}
        return np.array([split_of[c] for c in captures], dtype=object)
    u = rng.random(len(flows))
    return np.where(u < test, "test", np.where(u < test + val, "val", "train")).astype(object)


def load_flow_rows(workspaces: Sequence, *, seed: int = 0) -> tuple[pd.DataFrame, list]:
    """Every workspace's flows with ``label``/``mission`` (Benign where unlabelled), ``split``, ``ws_index``."""
    from packetclip.traffic.labels import mission_of
    from packetclip.traffic.workspace import Workspace

    tables, opened = [], []
    for i, w in enumerate(workspaces):
        ws = w if isinstance(w, Workspace) else Workspace.open(w)
        opened.append(ws)
        rows = ws.labelled_flows()
        if "label" not in rows.columns:
            rows["label"] = "Benign"
        rows["label"] = rows["label"].fillna("Benign").astype(str)
        if "mission" not in rows.columns:
            rows["mission"] = [mission_of(x) for x in rows["label"]]
        rows["mission"] = rows["mission"].fillna("Benign").astype(str)
        if ws.has_splits():
            sp = ws.splits().drop_duplicates("flow_id").set_index("flow_id")["split"]
            rows["split"] = sp.reindex(rows["flow_id"]).fillna("train").to_numpy(dtype=object)
        else:
            rows["split"] = assign_splits(rows, seed=seed + i)
        rows["ws_index"] = i
        tables.append(rows)
    if not tables:
        raise PacketClipError("no workspace given")
    return pd.concat(tables, ignore_index=True), opened


def _keys(rows: pd.DataFrame, mode: str) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    for i, part in rows.groupby("ws_index", sort=False):
        out[part.index.to_numpy()] = sequence_keys(part, mode, prefix=f"w{i}")
    return out


def make_flow_data(rows: pd.DataFrame, embeddings: np.ndarray, modes: Sequence[str]) -> FlowData:
    return FlowData(
        embeddings=np.asarray(embeddings, np.float32), mission=mission_index(rows["mission"]),
        fine=rows["label"].astype(str).to_numpy(dtype=object), split=rows["split"].to_numpy(dtype=object),
        keys={m: _keys(rows, m) for m in modes}, times_ns=rows["first_ts_ns"].to_numpy(np.int64),
        source=(rows["ws_index"].astype(str) + ":" + rows.get("capture", pd.Series("", index=rows.index))
                .astype(str)).to_numpy(dtype=object),
        rows=rows, workspace=rows["ws_index"].to_numpy(np.int64))


# ---- metrics ------------------------------------------------------------------------------------------

def mauc(y: np.ndarray, proba: np.ndarray, classes: Sequence[int] | None = None) -> tuple[float, dict]:
    """Mean one-vs-rest ROC-AUC over the classes present (with both outcomes) in ``y``."""
    from sklearn.metrics import roc_auc_score

    per = {}
    for c in (classes if classes is not None else range(proba.shape[1])):
        t = (y == c)
        if 0 < t.sum() < len(t):
            per[int(c)] = float(roc_auc_score(t, proba[:, c]))
    return (float(np.mean(list(per.values()))) if per else float("nan")), per


def calibrate_threshold(benign_scores: np.ndarray, fpr: float = TARGET_FPR) -> float:
    """The smallest threshold that alerts at most ``fpr`` of the given benign scores (validation flows)."""
    s = np.sort(np.asarray(benign_scores, np.float64))
    if not len(s):
        return 0.5
    k = int(np.floor(fpr * len(s)))
    return float(np.nextafter(s[len(s) - 1 - k], np.inf)) if k < len(s) else 0.0


# ---- GNN training ---------------------------------------------------------------------------------------

def build_gnn(graphs, text_vectors, *, embed_dim: int, settings: ReasoningSettings, fine_classes: list) -> MissionGNN:
    """``text_vectors(words) -> [n, E]`` aligned text vectors; graphs in model order."""
    tensors = [graph_tensors(g, text_vectors) for g in graphs]
    config = ReasoningConfig(embed_dim=embed_dim, window=settings.window, graphs=[tensors_to_dict(t) for t in tensors],
                             fine_classes=list(fine_classes), time_step=settings.time_step, seed=settings.seed)
    model = MissionGNN(config)
    model.set_graph_vectors([t.vectors for t in tensors])
    return model


def _window_batch(aligned: torch.Tensor, gaps: torch.Tensor, chunk: np.ndarray):
    valid = torch.from_numpy(chunk >= 0)
    rows = torch.from_numpy(np.maximum(chunk, 0))
    return aligned[rows], gaps[rows] * valid, valid, rows


def fit_gnn(model: MissionGNN, aligned: np.ndarray, data: FlowData, settings: ReasoningSettings, *,
            train_mask: np.ndarray | None = None, log=None) -> list[dict]:
    """Train ``model`` in place on ``aligned`` vectors (the alignment's output, frozen); keeps the best epoch by
    validation mAUC. Returns the history. Dropout draws from torch's RNG seeded locally with ``settings.seed``, so
    the same settings train the same model (and the caller's random stream is left as it was)."""
    from packetclip.encoders.base import local_seed

    with local_seed(settings.seed):
        return _fit_gnn(model, aligned, data, settings, train_mask=train_mask, log=log)


def _fit_gnn(model: MissionGNN, aligned: np.ndarray, data: FlowData, settings: ReasoningSettings, *,
             train_mask: np.ndarray | None, log) -> list[dict]:
    gen = torch.Generator().manual_seed(int(settings.seed))
    rng = np.random.default_rng(settings.seed)
    mode = settings.time_step
    keys = data.keys[mode]
    _, _, gaps_np = past_windows(keys, data.times_ns, settings.window)
    x = torch.from_numpy(np.asarray(aligned, np.float32))
    gaps = torch.from_numpy(gaps_np)
    y = torch.from_numpy(data.mission)
    fine_lookup = {c: i for i, c in enumerate(model.config.fine_classes)}
    yf = torch.from_numpy(np.array([fine_lookup.get(f, 0) for f in data.fine], np.int64))
    train = (data.split == "train") if train_mask is None else train_mask
    counts = np.bincount(data.mission[train], minlength=len(MISSION_CLASSES)).astype(np.float64)
    weights = torch.tensor(np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** 0.5, 0.0), dtype=torch.float32)
    weights = weights / weights[weights > 0].mean()
    train_t = torch.from_numpy(train)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    val = data.split == "val"
    best, best_state, history = -1.0, None, []
    t0 = time.perf_counter()
    if settings.pseudo_label is not None:
        start, end = (float(v) for v in settings.pseudo_label)
        if not (0.0 <= end <= start <= 1.0):
            raise PacketClipError("pseudo_label needs 0 <= end <= start <= 1 (a decaying threshold)")
    for epoch in range(settings.epochs):
        threshold = None
        if settings.pseudo_label is not None:
            threshold = start + (end - start) * (epoch / max(1, settings.epochs - 1))
        batches: list[np.ndarray] = []
        n_chunks = 0
        while len(batches) < max(1, settings.min_batches):
            chunks = train_chunks(keys, data.times_ns, settings.window, offset=int(rng.integers(settings.window)))
            chunks = chunks[train[np.maximum(chunks, 0)].any(1) & (chunks >= 0).any(1)]
            if not len(chunks):
                raise PacketClipError("no training flows (the train split is empty)")
            n_chunks += len(chunks)
            batches += length_batches(chunks, settings.batch_size * settings.window, 4 * settings.batch_size, rng)
        model.train()
        total = 0.0
        for ch in batches:
            loss = gnn_batch_loss(model, x, gaps, ch, y, yf, train_t, weights, settings, threshold)
            if loss is None:
                continue
            b = ch.shape[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            total += float(loss.detach()) * b
        model.eval()
        record = {"epoch": epoch + 1, "loss": total / max(1, n_chunks), "seconds": time.perf_counter() - t0}
        if val.any():
            proba = predict_proba(model, aligned, keys, data.times_ns)
            record["val_mauc"] = mauc(data.mission[val], proba[val])[0]
            score = record["val_mauc"] if np.isfinite(record["val_mauc"]) else -record["loss"]
        else:
            score = -record["loss"]
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
        history.append(record)
        if log:
            log(record)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def gnn_batch_loss(model, x: torch.Tensor, gaps: torch.Tensor, ch: np.ndarray, y: torch.Tensor, yf: torch.Tensor,
                   train_t: torch.Tensor, weights: torch.Tensor, settings: ReasoningSettings,
                   threshold: float | None, *, forward=None, always: bool = False):
    """The training loss of one batch of window chunks (None when no step of it is a training flow). One
    function for the one-process loop and the DDP one (``packetclip.scale.ddp``): ``forward(x, gaps) ->
    (logits, fine)`` replaces the model's own steps (the DDP wrapper), and ``always`` returns a zero loss tied
    to the outputs instead of None, so that every rank runs its backward (gradients are all-reduced)."""
    t = ch.shape[1]
    xb, gb, valid, rows = _window_batch(x, gaps, ch)
    b = xb.shape[0]
    if forward is None:
        steps = model.step_features(xb.reshape(b * t, -1)).reshape(b, t, -1)
        logits, fine = model.temporal(steps, gb)
    else:
        logits, fine = forward(xb, gb)
    use = valid & train_t[rows]
    if not use.any():
        return 0.0 * (logits.sum() + fine.sum()) if always else None
    target = y[rows]
    if threshold is not None:
        attack_score = 1.0 - logits.detach().softmax(-1)[..., 0]
        target = torch.where((target > 0) & (attack_score < threshold), torch.zeros_like(target), target)
    loss = F.cross_entropy(logits[use], target[use], weight=weights)
    if settings.fine_weight and model.config.fine_classes:
        loss = loss + settings.fine_weight * F.cross_entropy(fine[use], yf[rows][use])
    if settings.smooth and t > 1:
        p = logits.softmax(-1)
        pair = valid[:, 1:] & valid[:, :-1]
        if pair.any():
            loss = loss + settings.smooth * ((p[:, 1:] - p[:, :-1]) ** 2).sum(-1)[pair].mean()
    if settings.normal_confidence:
        benign_window = (use & (y[rows] == 0)).any(1) & ~(use & (y[rows] > 0)).any(1)
        if benign_window.any():
            worst = (1.0 - logits.softmax(-1)[..., 0]).masked_fill(~use, 0.0).amax(1)
            loss = loss + settings.normal_confidence * worst[benign_window].mean()
    return loss


@torch.no_grad()
def predict_proba(model: MissionGNN, aligned: np.ndarray, keys: np.ndarray, times_ns: np.ndarray) -> np.ndarray:
    """Mission probabilities ``[n, 4]`` of every flow with its past-only window."""
    from packetclip.reasoning.model import band_logits

    model.eval()
    x = torch.from_numpy(np.asarray(aligned, np.float32))
    steps = torch.cat([model.step_features(x[s:s + 8192]) for s in range(0, len(x), 8192)]).numpy() \
        if len(x) else np.zeros((0, 1), np.float32)
    _, _, gaps = past_windows(keys, times_ns, model.config.window)
    m, _ = band_logits(model, steps, gaps, keys, times_ns)
    return torch.softmax(torch.from_numpy(m), -1).numpy()


def length_batches(chunks: np.ndarray, tokens: int, max_batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Chunks grouped by length (so short host sequences are not padded to the window), at most ``tokens`` steps
    and ``max_batch`` chunks per batch; batch order shuffled."""
    lengths = (chunks >= 0).sum(1)
    order = np.lexsort((rng.random(len(chunks)), lengths))
    batches, i = [], 0
    while i < len(order):
        j = i + 1
        while j < len(order) and j - i < max_batch and (j - i + 1) * lengths[order[j]] <= tokens:
            j += 1
        b = chunks[order[i:j]]
        batches.append(b[:, :int(lengths[order[i:j]].max())])
        i = j
    return [batches[k] for k in rng.permutation(len(batches))]


# ---- alignment (when none is given) --------------------------------------------------------------------

def train_alignment_on(rows: pd.DataFrame, embeddings: np.ndarray, side, text_side, *, settings: ReasoningSettings,
                       train_mask: np.ndarray):
    """A quick alignment on rule-based descriptions of a class-balanced sample of training flows (in memory:
    nothing is written into the workspaces)."""
    from packetclip.align.train import PairData, TrainSettings, new_model, train
    from packetclip.language.context import add_host_context
    from packetclip.language.describe import Describer
    from packetclip.language.workspace import balanced_sample

    part = rows[train_mask].copy()
    part["_row"] = np.flatnonzero(train_mask)
    parts = [add_host_context(p) for _, p in part.groupby("ws_index", sort=False)]
    part = pd.concat(parts, ignore_index=True)
    part = balanced_sample(part, settings.describe_flows, seed=settings.seed)
    part = part.copy()
    part["flow_id"] = part["_row"].to_numpy(np.int64)     # unique across workspaces: the row number
    table = Describer("rules", 1, settings.seed).describe(part)
    ids, flow_row = np.unique(table["flow_id"].to_numpy(np.int64), return_inverse=True)
    classes = sorted(table["label"].astype(str).unique())
    groups = pd.Categorical(table["label"].astype(str), categories=classes).codes.astype(np.int64)
    data = PairData(traffic=np.asarray(embeddings, np.float32)[ids], text=text_side.embed(table["text"].tolist()),
                    flow_row=flow_row.astype(np.int64), groups=groups, classes=classes)
    model = new_model(data, side, text_side, heads="both", seed=settings.seed)
    train(model, data, TrainSettings(steps=settings.align_steps, seed=settings.seed, log_every=0))
    return model


# ---- the whole recipe -------------------------------------------------------------------------------------

def default_graphs(seed: int = 0):
    from packetclip.knowledge import load_default_graph

    return [load_default_graph(k, seed=seed) for k in ATTACK_MISSION_KEYS]


def prepare(workspaces: Sequence, work: Path, *, encoder: str | Path | None = None,
            settings: ReasoningSettings | None = None, modes: Sequence[str] = ("src",)):
    """Rows, traffic side (a flow-table encoder fitted on training flows and saved in ``work/encoder`` unless a
    packet ``encoder`` is given) and raw embeddings of every flow: ``(FlowData, side)``."""
    from packetclip.align.sides import TrafficSide

    s = settings or ReasoningSettings()
    rows, opened = load_flow_rows(workspaces, seed=s.seed)
    if encoder is not None:
        side = TrafficSide.load("packet", encoder)
    else:
        train_rows = rows[rows["split"] == "train"]
        from packetclip.encoders.flowtable import FlowTableConfig, FlowTableEncoder

        enc = FlowTableEncoder(FlowTableConfig(epochs=0, seed=s.seed, max_rows=20000)).fit(train_rows)
        enc.save_pretrained(Path(work) / "encoder")
        side = TrafficSide("flow", enc, path=Path(work) / "encoder")
    from packetclip.reasoning.bundle import embed_flows

    parts = []
    for i, ws in enumerate(opened):
        ids = rows.loc[rows["ws_index"] == i, "flow_id"].to_numpy(np.int64)
        parts.append(embed_flows(side, ws, ids, host_context=s.host_context))
    emb = np.concatenate(parts)
    return make_flow_data(rows, emb, modes), side


def train_bundle(workspaces: Sequence, out: str | Path, *, encoder: str | Path | None = None,
                 alignment: str | Path | None = None, settings: ReasoningSettings | None = None,
                 graphs=None, log=None, data_side=None, text_side=None):
    """``packetclip train``: the default recipe end to end; writes and returns the :class:`Bundle`."""
    from packetclip.align.model import AlignModel
    from packetclip.align.sides import TextSide
    from packetclip.reasoning.bundle import Bundle

    from packetclip.reasoning.bundle import is_bundle_target

    s = settings or ReasoningSettings()
    out = Path(out)
    if not is_bundle_target(out):
        raise PacketClipError("--out exists and is not a bundle folder; choose an empty folder", path=str(out))
    out.mkdir(parents=True, exist_ok=True)
    data, side = data_side or prepare(workspaces, out, encoder=encoder, settings=s, modes=(s.time_step,))
    train = data.split == "train"
    text_side = text_side or TextSide()
    if alignment is not None:
        align = AlignModel.from_pretrained(alignment)
        align.check_traffic_encoder(side.fingerprint, where=str(alignment))
    else:
        align = train_alignment_on(data.rows, data.embeddings, side, text_side, settings=s, train_mask=train)
    aligned = align.traffic_vectors(data.embeddings)
    graphs = graphs or default_graphs(s.seed)
    fine = sorted(set(data.fine[train].tolist()))
    gnn = build_gnn(graphs, lambda w: align.text_vectors(text_side.embed(list(w))), embed_dim=aligned.shape[1],
                    settings=s, fine_classes=fine)
    history = fit_gnn(gnn, aligned, data, s, log=log)
    keys = data.keys[s.time_step]
    proba = predict_proba(gnn, aligned, keys, data.times_ns)
    val = data.split == "val"
    benign_val = val & (data.mission == 0)
    threshold = calibrate_threshold(1.0 - proba[benign_val, 0]) if benign_val.any() else 0.5
    test = data.split == "test"
    summary = {"flows": int(len(data.mission)), "train_flows": int(train.sum()),
               "val_mauc": mauc(data.mission[val], proba[val])[0] if val.any() else None,
               "test_mauc": mauc(data.mission[test], proba[test])[0] if test.any() else None,
               "calibration": {"target_fpr": TARGET_FPR, "benign_val_flows": int(benign_val.sum())},
               "history": history, "trainable_params": gnn.trainable_parameters(),
               "workspaces": [str(Path(getattr(w, "root", w) if not isinstance(w, (str, Path)) else w).resolve())
                              for w in workspaces]}
    bundle = Bundle(gnn, align, side, threshold=threshold, meta={"training": summary, "host_context": s.host_context},
                    graphs=graphs)
    bundle.save(out)
    return bundle, summary
