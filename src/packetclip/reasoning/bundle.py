"""The model bundle: one self-describing folder that ``packetclip train`` writes and one call loads.

Layout (every model part is ``config.json`` + ``model.safetensors``; nothing is pickled)::

    BUNDLE/
      bundle.json        format, version, traffic kind, encoder fingerprint, time step, window, missions,
                         fine classes, calibrated threshold (+ how it was calibrated), training summary
      encoder/           the frozen traffic encoder (a copy; ``encoder_ref`` in bundle.json when too big to copy)
      alignment/         the alignment (traffic + text heads, standardiser)           -> AlignModel
      gnn/               the mission GNN + temporal transformer + heads                  -> MissionGNN
      graphs/<m>.json    the mission knowledge graphs the GNN was built from (for reading; the GNN config holds
                         their words, ATT&CK ids, adjacency, and the word vectors are in its weights)

Scoring API (what ``detect`` calls)::

    bundle = Bundle.load("BUNDLE")

    # batch, from a workspace: one row per flow (flow_id, p_<mission>..., mission, fine_class, score, alert)
    table = bundle.score_workspace(ws, flow_ids=None)

    # batch, from arrays: raw traffic embeddings [n, traffic_dim] (bundle.embed(ws, ids) or, for a flow-table
    # bundle, bundle.embed_rows(flow_rows_dataframe); with ``host_context`` in bundle.json the rows should carry
    # the ctx_* columns of packetclip.traffic.context.HostContextPlugin, else they are computed over the rows
    # given), the flows' sequence keys and start times
    keys = bundle.sequence_keys(flow_rows)             # per the bundle's time step (source host by default)
    table = bundle.score(embeddings, keys=keys, times_ns=first_ts_ns, explain=False)

    # streaming: flows scored as they are embedded; past-only windows kept per sequence key
    scorer = bundle.stream()
    result = scorer.push(embedding, src_ip=..., dst_ip=..., ts_ns=..., flow_id=..., explain=True)
    result["mission"], result["score"], result["alert"], result["concepts"], result["explanation"]
    scorer.expire(now_ns)                              # frees sequences idle for longer than ``idle_s``

``score`` is ``1 - p(Benign)``; ``alert`` is ``score >= threshold`` where the threshold was calibrated on
validation flows for a 1 % false-positive rate. ``mission`` is the most likely attack mission when alerted,
else ``Benign``. ``explain`` adds, per flow, the concept nodes of that mission's graph that carried the most
signal (gradient x activation of the node states for the mission's logit) as ``[(word, technique, weight)]``
and one plain sentence (:meth:`Bundle.explain`).
"""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict, deque
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from packetclip.errors import CheckpointError, PacketClipError
from packetclip.reasoning.model import MissionGNN
from packetclip.reasoning.windows import MAX_GAP_S, log_gap, past_windows, sequence_keys

FORMAT_NAME = "packetclip.bundle"
FORMAT_VERSION = 1
META_NAME = "bundle.json"
COPY_LIMIT_BYTES = 200 * 1024 * 1024


def _mission_label(graph_mission: str) -> str:
    from packetclip.knowledge.missions import mission_spec

    try:
        return mission_spec(graph_mission).label
    except PacketClipError:
        return graph_mission


def context_block(rows: pd.DataFrame) -> np.ndarray:
    """Host-context features (:mod:`packetclip.traffic.context`: what the flow's source and destination did in the
    same 10-s window) as signed ``log1p``, ``[n, k]``. Rows without the ``ctx_*`` columns get them computed over
    the rows given (a streaming caller passes what ``HostContextPlugin`` computed)."""
    from packetclip.traffic.context import CONTEXT_COLUMNS, add_host_context

    cols = [c for c in CONTEXT_COLUMNS if c != "ctx_window_s"]
    if not set(cols) <= set(rows.columns):
        rows = add_host_context(rows)
    out = np.zeros((len(rows), len(cols)), np.float32)
    for i, name in enumerate(cols):
        if name in rows.columns:
            v = pd.to_numeric(rows[name], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            v = np.where(np.isfinite(v), v, 0.0)
            out[:, i] = np.sign(v) * np.log1p(np.abs(v))
    return out


def embed_flows(side, workspace, flow_ids: np.ndarray, *, host_context: bool) -> np.ndarray:
    """The bundle's raw traffic embedding: the traffic side's, plus host context when ``host_context``."""
    emb = side.embed(workspace, np.asarray(flow_ids, np.int64))
    if not host_context:
        return emb
    rows = workspace.flows().drop_duplicates("flow_id")
    ctx = context_block(rows).astype(np.float32)
    pos = pd.Index(rows["flow_id"].to_numpy(np.int64)).get_indexer(np.asarray(flow_ids, np.int64))
    return np.concatenate([emb, ctx[pos]], axis=1).astype(np.float32)


def is_bundle_target(out: Path) -> bool:
    """An empty or missing folder, a bundle, or a folder holding only the encoder a training run just fitted."""
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    return (out / META_NAME).is_file() or not [p for p in out.iterdir() if p.name != "encoder"]


class Bundle:
    """A trained detector: traffic side + alignment + mission GNN + calibrated threshold (see module docstring)."""

    def __init__(self, gnn: MissionGNN, alignment, traffic_side, *, threshold: float, meta: dict | None = None,
                 graphs: Sequence | None = None):
        self.gnn = gnn.eval()
        self.alignment = alignment.eval()
        self.traffic_side = traffic_side
        self.threshold = float(threshold)
        self.meta = dict(meta or {})
        self.graphs = list(graphs or [])
        c = gnn.config
        self.missions = list(c.missions)
        self.fine_classes = list(c.fine_classes)
        self.time_step = c.time_step
        self.window = c.window
        self.branch_missions = [_mission_label(g["mission"]) for g in c.graphs]

    # ---- persistence ----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the bundle folder (refuses a non-empty folder that is not a bundle)."""
        out = Path(directory)
        if not is_bundle_target(out):
            raise PacketClipError("--out exists and is not a bundle folder; choose an empty folder", path=str(out))
        out.mkdir(parents=True, exist_ok=True)
        enc_src = self.traffic_side.path
        meta = {**self.meta, "format": FORMAT_NAME, "version": FORMAT_VERSION, "traffic": self.traffic_side.kind,
                "encoder_fingerprint": self.traffic_side.fingerprint, "threshold": self.threshold,
                "time_step": self.time_step, "window": self.window, "missions": self.missions,
                "fine_classes": self.fine_classes}
        if enc_src and Path(enc_src).resolve() != (out / "encoder").resolve():
            size = sum(f.stat().st_size for f in Path(enc_src).rglob("*") if f.is_file())
            if size <= COPY_LIMIT_BYTES:
                if (out / "encoder").exists():
                    shutil.rmtree(out / "encoder")
                shutil.copytree(enc_src, out / "encoder")
                meta["encoder_ref"] = None
            else:
                meta["encoder_ref"] = str(Path(enc_src).resolve())
        elif not enc_src:
            raise PacketClipError("the traffic encoder has no folder to copy into the bundle")
        self.alignment.save_pretrained(out / "alignment")
        self.gnn.save_pretrained(out / "gnn")
        if self.graphs:
            (out / "graphs").mkdir(exist_ok=True)
            for g in self.graphs:
                g.to_json(out / "graphs" / f"{g.mission}.json")
        (out / META_NAME).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> "Bundle":
        """One call: encoder, alignment, GNN and threshold; a folder that is not a bundle is one line."""
        from packetclip.align.model import AlignModel
        from packetclip.align.sides import TrafficSide

        root = Path(directory)
        meta_path = root / META_NAME
        if not meta_path.is_file():
            raise CheckpointError("not a model bundle (no bundle.json; make one with `packetclip train`)",
                                  path=str(root))
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(f"bundle.json is unreadable ({err})", path=str(meta_path)) from None
        if meta.get("format") != FORMAT_NAME or not isinstance(meta.get("version"), int) \
                or meta["version"] > FORMAT_VERSION:
            raise CheckpointError(f"not a bundle this packetclip reads (format {meta.get('format')!r}, "
                                  f"version {meta.get('version')!r})", path=str(meta_path))
        enc_path = Path(meta.get("encoder_ref") or root / "encoder")
        if not enc_path.is_dir():
            raise CheckpointError(f"the bundle's traffic encoder is missing ({enc_path})", path=str(root))
        side = TrafficSide.load(meta["traffic"], enc_path)
        alignment = AlignModel.from_pretrained(root / "alignment")
        alignment.check_traffic_encoder(side.fingerprint, where=str(root))
        gnn = MissionGNN.from_pretrained(root / "gnn")
        return cls(gnn, alignment, side, threshold=float(meta["threshold"]), meta=meta)

    # ---- embeddings -------------------------------------------------------------------------------------
    def embed(self, workspace, flow_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Raw traffic embeddings ``[n, traffic_dim]`` of a workspace's flows (the frozen encoder, plus host
        context when the bundle was trained with it)."""
        from packetclip.traffic.workspace import Workspace

        ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        return embed_flows(self.traffic_side, ws, flow_ids, host_context=bool(self.meta.get("host_context")))

    def embed_rows(self, rows: pd.DataFrame) -> np.ndarray:
        """Raw traffic embeddings from flow-table rows (CICFlowMeter columns), for flow-table bundles: what a
        streaming caller has when a flow ends."""
        enc = self.traffic_side.encoder
        if not hasattr(enc, "normalized_features"):
            raise PacketClipError("this bundle embeds packets; use Bundle.embed(workspace, flow_ids)")
        parts = [enc.embed(rows), enc.normalized_features(rows)]
        if self.meta.get("host_context"):
            parts.append(context_block(rows))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def sequence_keys(self, rows: pd.DataFrame, *, prefix: str = "") -> np.ndarray:
        """The time-step sequence key of each flow row (its source host for ``src``; see windows.py)."""
        return sequence_keys(rows, self.time_step, prefix=prefix)

    @torch.no_grad()
    def step_features(self, embeddings: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Per-flow GNN output (embedding nodes of all missions), ``[n, S]``: the only per-flow state a window
        needs."""
        x = np.asarray(embeddings, np.float32)
        out = []
        for s in range(0, len(x), batch_size):
            z = self.alignment.encode_traffic(torch.from_numpy(x[s:s + batch_size]))
            out.append(self.gnn.step_features(z).numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    # ---- scoring ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def _logits(self, steps: np.ndarray, gaps: np.ndarray, idx: np.ndarray, lengths: np.ndarray,
                batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        mission, fine = [], []
        for s in range(0, len(idx), batch_size):
            i, ln = idx[s:s + batch_size], lengths[s:s + batch_size]
            t = int(ln.max())
            i = i[:, :t]
            st = torch.from_numpy(np.where(i[..., None] >= 0, steps[np.maximum(i, 0)], 0.0).astype(np.float32))
            gp = torch.from_numpy(np.where(i >= 0, gaps[np.maximum(i, 0)], 0.0).astype(np.float32))
            m, f = self.gnn.temporal(st, gp)
            rows = torch.arange(len(i))
            mission.append(m[rows, torch.from_numpy(ln - 1)].numpy())
            fine.append(f[rows, torch.from_numpy(ln - 1)].numpy())
        k = len(self.missions)
        return (np.concatenate(mission) if mission else np.zeros((0, k), np.float32),
                np.concatenate(fine) if fine else np.zeros((0, max(1, len(self.fine_classes))), np.float32))

    def _table(self, mission_logits: np.ndarray, fine_logits: np.ndarray) -> pd.DataFrame:
        p = torch.softmax(torch.from_numpy(mission_logits), -1).numpy()
        table = pd.DataFrame({f"p_{m}": p[:, i] for i, m in enumerate(self.missions)})
        benign = self.missions.index("Benign") if "Benign" in self.missions else 0
        score = 1.0 - p[:, benign]
        attack = p.copy()
        attack[:, benign] = -1.0
        best = attack.argmax(1)
        alert = score >= self.threshold
        table["score"] = score
        table["alert"] = alert
        table["mission"] = np.where(alert, np.asarray(self.missions, dtype=object)[best], "Benign")
        if self.fine_classes:
            fine = np.asarray(self.fine_classes, dtype=object)[fine_logits.argmax(1)]
            table["fine_class"] = np.where(alert, fine, "Benign")
        else:
            table["fine_class"] = table["mission"]
        return table

    def score(self, embeddings: np.ndarray, *, keys: np.ndarray, times_ns: np.ndarray,
              explain: bool = False, top: int = 5) -> pd.DataFrame:
        """Score flows (row order kept) with past-only windows per sequence key; see the module docstring."""
        from packetclip.reasoning.model import band_logits

        keys = np.asarray(keys, dtype=object)
        times_ns = np.asarray(times_ns, np.int64)
        steps = self.step_features(embeddings)
        idx, lengths, gaps = past_windows(keys, times_ns, self.window)
        m, f = band_logits(self.gnn, steps, gaps, keys, times_ns)
        table = self._table(m, f)
        if explain:
            x = np.asarray(embeddings, np.float32)
            concepts, sentences = [], []
            for r in range(len(table)):
                c, s = self._explain_one(x[r], steps, gaps, idx[r, :lengths[r]], top=top)
                concepts.append(c)
                sentences.append(s)
            table["concepts"] = concepts
            table["explanation"] = sentences
        return table

    def score_workspace(self, workspace, flow_ids: Sequence[int] | np.ndarray | None = None, *,
                        explain: bool = False) -> pd.DataFrame:
        """Score a workspace's flows (all by default); windows are built over all of its flows, so a flow's
        history includes flows outside ``flow_ids``."""
        from packetclip.traffic.workspace import Workspace

        ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        rows = ws.flows()
        emb = self.embed(ws, rows["flow_id"].to_numpy(np.int64))
        table = self.score(emb, keys=self.sequence_keys(rows), times_ns=rows["first_ts_ns"].to_numpy(np.int64))
        table.insert(0, "flow_id", rows["flow_id"].to_numpy(np.int64))
        if flow_ids is not None:
            table = table[table["flow_id"].isin(np.asarray(flow_ids, np.int64))].reset_index(drop=True)
        if explain and len(table):
            pos = pd.Index(rows["flow_id"]).get_indexer(table["flow_id"])
            steps = self.step_features(emb)
            idx, lengths, gaps = past_windows(self.sequence_keys(rows), rows["first_ts_ns"].to_numpy(np.int64),
                                              self.window)
            out = [self._explain_one(emb[p], steps, gaps, idx[p, :lengths[p]]) for p in pos]
            table["concepts"] = [o[0] for o in out]
            table["explanation"] = [o[1] for o in out]
        return table

    def stream(self, *, idle_s: float = MAX_GAP_S, max_sequences: int = 100_000) -> "StreamScorer":
        return StreamScorer(self, idle_s=idle_s, max_sequences=max_sequences)

    # ---- explanations -----------------------------------------------------------------------------------
    def _explain_one(self, x: np.ndarray, steps: np.ndarray, gaps: np.ndarray, window_rows: np.ndarray, *,
                     top: int = 5, mission: str | None = None) -> tuple[list, str]:
        hist = steps[window_rows[:-1]] if len(window_rows) > 1 else np.zeros((0, steps.shape[1]), np.float32)
        return self.explain(x, hist, gaps[window_rows], top=top, mission=mission)

    def explain(self, embedding: np.ndarray, history_steps: np.ndarray | None = None,
                gaps: np.ndarray | None = None, *, top: int = 5, mission: str | None = None) -> tuple[list, str]:
        """The concepts that carried the decision for one flow: ``([(word, technique, weight), ...], sentence)``.

        ``embedding`` is the flow's raw traffic embedding; ``history_steps`` the step features of the flows before
        it in its window (``[L-1, S]``, may be empty) and ``gaps`` the window's time features (``[L]``). Concepts
        come from the graph of ``mission`` (default: the most likely attack mission), ranked by gradient x
        activation of their node states for that mission's logit."""
        hist = np.zeros((0, self.gnn.branches[0].r.out_features * len(self.gnn.branches)), np.float32) \
            if history_steps is None else np.asarray(history_steps, np.float32)
        gaps = np.full(len(hist) + 1, log_gap(MAX_GAP_S), np.float32) if gaps is None else np.asarray(gaps, np.float32)
        keep: list[torch.Tensor] = []
        z = self.alignment.encode_traffic(torch.from_numpy(np.asarray(embedding, np.float32)[None])).detach()
        step = self.gnn.step_features(z, keep)
        for h in keep:
            h.retain_grad()
        seq = torch.cat([torch.from_numpy(hist), step], 0)[None]
        m, _ = self.gnn.temporal(seq, torch.from_numpy(gaps[None]))
        logits = m[0, -1]
        p = torch.softmax(logits, -1).detach().numpy()
        attack = [i for i, name in enumerate(self.missions) if name in self.branch_missions]
        target = self.missions.index(mission) if mission else max(attack, key=lambda i: p[i])
        self.gnn.zero_grad(set_to_none=True)
        logits[target].backward()
        branch = self.branch_missions.index(self.missions[target])
        offset = sum(len(self.gnn.config.graphs[b]["words"]) for b in range(branch))
        nodes, weights = [], []
        graph = self.gnn.config.graphs[branch]
        for lv in range(len(graph["words"])):
            h = keep[offset + lv]
            contrib = (h * h.grad).sum(-1)[0].detach().numpy()
            for j, w in enumerate(graph["words"][lv]):
                nodes.append((w, graph["techniques"][lv][j]))
                weights.append(float(contrib[j]))
        self.gnn.zero_grad(set_to_none=True)
        order = np.argsort(-np.asarray(weights))[:top]
        concepts = [(nodes[i][0], nodes[i][1], round(weights[i], 4)) for i in order if weights[i] > 0] \
            or [(nodes[i][0], nodes[i][1], round(weights[i], 4)) for i in order[:1]]
        name = self.missions[target]
        score = 1.0 - p[self.missions.index("Benign")] if "Benign" in self.missions else float(p[target])
        words = ", ".join(f"{w} ({t})" for w, t, _ in concepts[:3])
        if score >= self.threshold:
            sentence = (f"Flagged as {name} (p={p[target]:.2f}): the traffic matched the {name} concepts {words} "
                        f"most strongly.")
        else:
            sentence = (f"Not flagged (attack score {score:.2f} < threshold {self.threshold:.2f}); the closest "
                        f"mission, {name}, was carried by {words}.")
        return concepts, sentence


class StreamScorer:
    """Scores flows one at a time, keeping the last ``window - 1`` step features per sequence key (the bundle's
    time step: source host by default). Memory is bounded by ``max_sequences`` (least recently used dropped) and
    :meth:`expire` frees sequences idle for more than ``idle_s``."""

    def __init__(self, bundle: Bundle, *, idle_s: float = MAX_GAP_S, max_sequences: int = 100_000):
        self.bundle = bundle
        self.idle_ns = int(idle_s * 1e9)
        self.max_sequences = int(max_sequences)
        self._seq: OrderedDict[str, tuple[deque, deque, int]] = OrderedDict()

    def key(self, *, src_ip=None, dst_ip=None, flow_id=None) -> str:
        mode = self.bundle.time_step
        if mode == "src" and src_ip is not None:
            return f"|{src_ip}"
        if mode == "dst" and dst_ip is not None:
            return f"|{dst_ip}"
        if mode == "global":
            return "all"
        return f"#{flow_id}"

    def push(self, embedding: np.ndarray, *, ts_ns: int, src_ip=None, dst_ip=None, flow_id=None,
             explain: bool = False, top: int = 5) -> dict:
        """Score one flow now; returns ``{flow_id, p_<mission>..., score, alert, mission, fine_class}`` (+
        ``concepts``, ``explanation`` when ``explain``)."""
        b = self.bundle
        key = self.key(src_ip=src_ip, dst_ip=dst_ip, flow_id=flow_id)
        steps, gaps, last = self._seq.pop(key, (deque(maxlen=b.window - 1), deque(maxlen=b.window - 1), None))
        step = b.step_features(np.asarray(embedding, np.float32)[None])[0]
        gap = log_gap(MAX_GAP_S if last is None else (int(ts_ns) - last) / 1e9)
        hist = np.asarray(list(steps), np.float32).reshape(len(steps), step.shape[0])
        all_steps = np.concatenate([hist, step[None]])
        all_gaps = np.asarray(list(gaps) + [gap], np.float32)
        idx = np.arange(len(all_steps))[None]
        m, f = b._logits(all_steps, all_gaps, idx, np.array([len(all_steps)]))
        row = b._table(m, f).iloc[0].to_dict()
        row["flow_id"] = flow_id
        if explain:
            row["concepts"], row["explanation"] = b.explain(embedding, hist, all_gaps, top=top)
        steps.append(step)
        gaps.append(gap)
        self._seq[key] = (steps, gaps, int(ts_ns))
        while len(self._seq) > self.max_sequences:
            self._seq.popitem(last=False)
        return row

    def expire(self, now_ns: int) -> int:
        """Drop sequences whose last flow is older than ``idle_s``; returns how many were dropped."""
        old = [k for k, (_, _, last) in self._seq.items() if last is not None and now_ns - last > self.idle_ns]
        for k in old:
            del self._seq[k]
        return len(old)

    def __len__(self) -> int:
        return len(self._seq)
