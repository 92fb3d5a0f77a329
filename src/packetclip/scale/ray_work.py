"""Embedding and detection over Ray.

- :func:`embed_workspace_ray` / :class:`EmbedPool`: actors each load the encoder once and stay up across
  batches and calls, embedding batches of flow ids; the driver feeds them through the workspace's embedding
  store (``Workspace.embeddings``), so only missing flows are computed and the store is written once,
  atomically, by the driver, in flow order.
- :func:`detect_captures_ray`: one task per capture running :func:`packetclip.detect.api.run_detect` into a
  file of its own; the driver merges every capture's EVE lines in time order (ties: capture order, then the
  order the capture wrote them) into ``alerts`` and/or stdout.

Workers must see the workspace, the encoder/model folders and the captures at the same paths (shared storage
on a real cluster; see ``docs/scale.md``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from packetclip.errors import PacketClipError
from packetclip.scale.cluster import require_ray, task_failure
from packetclip.util.progress import progress as progress_bar


# --- embedding -----------------------------------------------------------------------------------------------

class EmbedWorker:
    """A Ray actor's state: the encoder, loaded once, and the workspace it reads views from."""

    def __init__(self, encoder_path: str, workspace: str):
        from packetclip.encoders.base import load_encoder
        from packetclip.traffic.workspace import Workspace

        self.encoder = load_encoder(encoder_path)
        self.workspace = Workspace.open(workspace)

    def ready(self) -> bool:
        return True

    def embed(self, flow_ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.encoder.embed_flows(self.workspace, flow_ids, cache=False), np.float32)


class EmbedPool:
    """Ray actors that each load the encoder once and then embed any number of batches: start-up (importing
    torch, loading the model; seconds per actor) is paid once per pool, not per call, and is timed apart
    (``startup_seconds``) from the embedding itself.

    Use as a context manager (the actors are killed on exit); ``embed`` may be called many times."""

    def __init__(self, workspace: str | Path, encoder_path: str | Path, actors: int | None = None):
        ray = require_ray()
        if not ray.is_initialized():
            raise PacketClipError("Ray is not initialised; use packetclip.scale.cluster.ray_session()")
        self.ray = ray
        self.size = int(actors or max(1, int(ray.cluster_resources().get("CPU", 1))))
        t0 = time.perf_counter()
        actor_cls = ray.remote(num_cpus=1, max_restarts=2, max_task_retries=2)(EmbedWorker)
        self.actors = [actor_cls.remote(str(Path(encoder_path).resolve()), str(Path(workspace).resolve()))
                       for _ in range(self.size)]
        try:
            ray.get([a.ready.remote() for a in self.actors])
        except Exception as err:  # noqa: BLE001 (an actor that cannot load the encoder: one line)
            self.close()
            raise PacketClipError(f"embedding actors did not start: {task_failure(err)}") from None
        self.startup_seconds = time.perf_counter() - t0

    def embed(self, ids: np.ndarray, *, batch_flows: int | None = None, progress: bool = False,
              embed_dim: int = 0) -> np.ndarray:
        """Rows for ``ids`` in their order. Batches go to whichever actor is free (a slow node gets fewer);
        default ``batch_flows``: four batches per actor (each batch reads its flows' views from the packet
        table, a cost per call that small batches multiply)."""
        from ray.util import ActorPool

        ids = np.asarray(ids, np.int64)
        if not len(ids):
            return np.zeros((0, embed_dim), np.float32)
        per_call = batch_flows or max(1, -(-len(ids) // (4 * self.size)))
        parts = [ids[i:i + per_call] for i in range(0, len(ids), per_call)]
        out = []
        with progress_bar("embed (ray)", total=len(ids), enabled=progress) as bar:
            for part, rows in zip(parts, ActorPool(self.actors).map(lambda a, p: a.embed.remote(p), parts)):
                out.append(rows)
                bar.advance(len(part))
        return np.concatenate(out)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []

    def __enter__(self) -> "EmbedPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def embed_workspace(workspace: str | Path, encoder_path: str | Path, *, flow_ids: Sequence[int] | None = None,
                    progress: bool = True) -> tuple[np.ndarray, dict]:
    """Every flow (or ``flow_ids``) of a workspace into its embedding store, in this process."""
    from packetclip.encoders.base import load_encoder
    from packetclip.traffic.workspace import Workspace

    ws = Workspace.open(workspace)
    encoder = load_encoder(encoder_path)
    ids = ws.flow_ids() if flow_ids is None else np.asarray(flow_ids, np.int64)
    t0 = time.perf_counter()
    emb = encoder.embed_flows(ws, ids, progress=progress)
    return emb, {"flows": int(len(ids)), "seconds": time.perf_counter() - t0, "workers": 1,
                 "fingerprint": encoder.fingerprint}


def embed_workspace_ray(workspace: str | Path, encoder_path: str | Path, *, flow_ids: Sequence[int] | None = None,
                        actors: int | None = None, batch_flows: int | None = None, progress: bool = True,
                        cache: bool = True, pool: EmbedPool | None = None) -> tuple[np.ndarray, dict]:
    """:func:`embed_workspace` over an :class:`EmbedPool` (``pool``, kept warm by the caller across calls, or
    one started for this call with ``actors`` actors, default one per CPU of the cluster); rows identical to a
    single-process embedding, written by the driver into the store in flow order. ``cache=False`` computes
    every flow and leaves the store alone (benchmarks). ``info``: ``seconds`` is the embedding alone,
    ``startup_seconds`` the actors' start (0 with a warm ``pool``)."""
    from packetclip.encoders.base import load_encoder
    from packetclip.traffic.workspace import Workspace

    require_ray()
    ws = Workspace.open(workspace)
    encoder = load_encoder(encoder_path)          # for the fingerprint and store settings (the key of the store)
    ids = ws.flow_ids() if flow_ids is None else np.asarray(flow_ids, np.int64)
    own = pool is None
    t_start = time.perf_counter()
    if own:
        pool = EmbedPool(ws.root, encoder_path, actors)
    info: dict = {"flows": int(len(ids)), "workers": pool.size, "fingerprint": encoder.fingerprint, "computed": 0,
                  "startup_seconds": pool.startup_seconds if own else 0.0}
    try:
        t0 = time.perf_counter()

        def compute(missing: np.ndarray) -> np.ndarray:
            info["computed"] = int(len(missing))
            return pool.embed(missing, batch_flows=batch_flows, progress=progress, embed_dim=encoder.embed_dim)

        if not len(ids):
            emb = np.zeros((0, encoder.embed_dim), np.float32)
        elif cache:
            emb = ws.embeddings(encoder.fingerprint, ids, compute, **encoder.store_settings())
        else:
            uniq, inverse = np.unique(ids, return_inverse=True)
            emb = compute(uniq)[inverse.reshape(-1)]
        info["seconds"] = time.perf_counter() - t0
    finally:
        if own:
            pool.close()
    info["total_seconds"] = time.perf_counter() - t_start
    return emb, info


# --- detection -----------------------------------------------------------------------------------------------

@dataclass
class MergedDetectResult:
    """What :func:`~packetclip.detect.api.summary_line` reads, summed over captures."""

    packets: int = 0
    flows: int = 0
    alerts: int = 0
    lines: int = 0
    per_mission: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    summaries: list = field(default_factory=list)
    failed: list = field(default_factory=list)


def detect_capture(capture: str, options: dict) -> dict:
    """One capture through ``run_detect`` into a temporary EVE file; its lines and counts come back."""
    from packetclip.detect.api import run_detect

    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="packetclip-detect-") as tmp:
        alerts = Path(tmp) / "alerts.jsonl"
        try:
            result = run_detect([capture], alerts=alerts, warn=warnings.append, **options)
        except PacketClipError as err:
            return {"capture": capture, "error": err.one_line(), "lines": [], "warnings": warnings}
        lines = alerts.read_text().splitlines() if alerts.is_file() else []
    return {"capture": capture, "lines": lines, "warnings": warnings, "packets": result.packets,
            "flows": result.flows, "alerts": result.alerts, "per_mission": dict(result.per_mission),
            "elapsed_s": result.elapsed_s, "error": None}


def _event_time(line: str) -> str:
    try:
        return str(json.loads(line).get("timestamp", ""))
    except ValueError:
        return ""


def detect_captures_ray(captures: Sequence[str | Path], *, alerts: str | Path | None = None, eve: bool = False,
                        model: str | Path | None = None, fpr: float | None = None, interval_s: float = 60.0,
                        batch_packets: int = 4096, max_retries: int = 3, warn=None,
                        progress: bool = True) -> MergedDetectResult:
    """``packetclip detect CAPTURES... --ray``: one Ray task per capture, alerts merged in time order.

    EVE timestamps share one format and zone (ISO 8601 with offset, as the sinks write them), so ordering the
    strings orders the times. A capture whose task failed for good is reported through ``warn``."""
    ray = require_ray()
    if not ray.is_initialized():
        raise PacketClipError("Ray is not initialised; use packetclip.scale.cluster.ray_session()")
    paths = [Path(c) for c in captures]
    if not paths:
        raise PacketClipError("give capture files to detect on")
    for p in paths:
        if not p.is_file():
            raise PacketClipError("no such capture file", path=str(p))
    options = {"model": None if model is None else str(Path(model).resolve()), "fpr": fpr, "interval_s": interval_s,
               "batch_packets": batch_packets}
    task = ray.remote(num_cpus=1, max_retries=max_retries)(detect_capture)
    refs = [task.remote(str(p.resolve()), options) for p in paths]
    merged = MergedDetectResult()
    results: list[dict] = []
    t0 = time.perf_counter()
    with progress_bar("detect (ray)", total=len(refs), enabled=progress) as bar:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.advance(len(done))
    for path, ref in zip(paths, refs):
        try:
            res = ray.get(ref)
        except Exception as err:  # noqa: BLE001 (a worker death after every retry, reported per capture)
            res = {"capture": str(path), "error": f"task failed after {max_retries} retries: {task_failure(err)}",
                   "lines": [], "warnings": []}
        results.append(res)
        for line in res["warnings"]:
            if warn is not None:
                warn(line)
        if res["error"]:
            merged.failed.append(f"{path}: {res['error']}")
            if warn is not None:
                warn(f"{path}: {res['error']}")
            continue
        merged.packets += res["packets"]
        merged.flows += res["flows"]
        merged.alerts += res["alerts"]
        for mission, n in res["per_mission"].items():
            merged.per_mission[mission] = merged.per_mission.get(mission, 0) + n
    keyed = [(_event_time(line), k, j, line) for k, res in enumerate(results) for j, line in enumerate(res["lines"])]
    keyed.sort(key=lambda x: x[:3])
    merged.lines = len(keyed)
    merged.elapsed_s = time.perf_counter() - t0
    if alerts is not None:
        with open(alerts, "a", encoding="utf-8") as fh:
            for *_key, line in keyed:
                fh.write(line + "\n")
    if eve:
        for *_key, line in keyed:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    if merged.packets == 0 and len(merged.failed) == len(paths):
        raise PacketClipError(f"none of the {len(paths)} capture(s) could be read; first: {merged.failed[0]}")
    return merged
