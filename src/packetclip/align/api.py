"""What the ``align`` and ``search`` commands and the demo do, as library functions (the CLI only wires them)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from packetclip.align.model import AlignModel
from packetclip.align.sides import TextSide, TrafficSide
from packetclip.align.train import TrainSettings, build_pairs, new_model, train
from packetclip.errors import PacketClipError
from packetclip.traffic.workspace import Workspace

DEFAULT_MODEL_FILE = "default_model.json"   # inside the workspace's search folder: the last alignment trained on it


def fit_flow_encoder(workspace: Workspace, flow_ids: np.ndarray, out: Path, *, epochs: int = 0, seed: int = 0):
    """A flow-table encoder fitted on the training flows (normalisation; ``epochs`` of masked-feature
    pre-training), saved in ``out`` so the alignment can refer to it."""
    from packetclip.encoders.flowtable import FlowTableConfig, FlowTableEncoder

    rows = workspace.flows().set_index("flow_id").loc[np.asarray(flow_ids)].reset_index()
    enc = FlowTableEncoder(FlowTableConfig(epochs=epochs, seed=seed, max_rows=20000)).fit(rows)
    enc.save_pretrained(out)
    return enc


def traffic_side_for(kind: str, workspace: Workspace, encoder: str | Path | None, out: Path | None = None, *,
                     train_ids: np.ndarray | None = None, seed: int = 0) -> TrafficSide:
    """The traffic side of a Table 1 row: from ``encoder`` (a saved encoder folder or a shipped name), for the
    packet sides without one the shipped pre-trained Lens (``lens-tiny``), and for ``flow`` without one a
    flow-table encoder fitted on the training flows and saved beside the alignment (``out/flow-encoder``)."""
    if encoder is None and kind != "flow":
        from packetclip.encoders.pretrained import default_packet_encoder_path

        encoder = default_packet_encoder_path()
    if encoder is not None:
        return TrafficSide.load(kind, encoder)
    if out is None or train_ids is None:
        raise PacketClipError("--traffic flow without --encoder needs the training flows and an output folder")
    path = Path(out) / "flow-encoder"
    return TrafficSide("flow", fit_flow_encoder(workspace, train_ids, path, seed=seed), path=path)


def train_alignment(workspace: str | Path, out: str | Path, *, traffic: str = "packet", heads: str = "both",
                    encoder: str | Path | None = None, settings: TrainSettings | None = None,
                    text_side: TextSide | None = None) -> tuple[AlignModel, list[dict], dict]:
    """``align train``: train on the described flows of the ``train`` split (all described flows when the
    workspace has no split), save to ``out``, and remember ``out`` as the workspace's default search model."""
    ws = Workspace.open(workspace)
    settings = settings or TrainSettings()
    descriptions = ws.descriptions()
    ids = np.unique(descriptions["flow_id"].to_numpy(np.int64))
    if ws.has_splits():
        ids = np.intersect1d(ids, ws.split_flow_ids("train"))
    out = Path(out)
    side = traffic_side_for(traffic, ws, encoder, out, train_ids=ids, seed=settings.seed)
    text_side = text_side or TextSide()
    t0 = time.perf_counter()
    data = build_pairs(side, text_side, ws, descriptions, ids)
    embed_s = time.perf_counter() - t0
    model = new_model(data, side, text_side, heads=heads, seed=settings.seed)
    t0 = time.perf_counter()
    history = train(model, data, settings)
    info = {"flows": int(len(np.unique(data.flow_row))), "descriptions": int(len(data.groups)),
            "embed_seconds": embed_s, "train_seconds": time.perf_counter() - t0}
    model.save_pretrained(out)
    (out / "train_log.json").write_text(json.dumps({"info": info, "history": history}, indent=1) + "\n")
    remember_model(ws, out)
    return model, history, info


def remember_model(ws: Workspace, model_dir: Path) -> None:
    with ws.atomic(f"{ws.path('search').name}/{DEFAULT_MODEL_FILE}") as tmp:
        tmp.write_text(json.dumps({"model": str(Path(model_dir).resolve())}) + "\n")


def default_model(ws: Workspace) -> Path:
    path = ws.path("search") / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise PacketClipError("no alignment trained on this workspace yet; pass --model or run "
                              "`packetclip align train`", path=str(ws.root))
    return Path(json.loads(path.read_text())["model"])


def load_for_workspace(model_dir: str | Path, workspace: Workspace, encoder: str | Path | None = None):
    """A saved alignment with its traffic side (its recorded encoder, or ``encoder``); refuses an encoder
    other than the one it was trained on, in one line."""
    model = AlignModel.from_pretrained(model_dir)
    rec = model.config.traffic_encoder
    from packetclip.encoders.pretrained import is_shipped_name, resolve_encoder

    path = encoder or rec.get("path")
    if path and not encoder and not Path(path).is_dir() and is_shipped_name(Path(path).name):
        path = Path(path).name        # the shipped encoder of another install: the fingerprint check below decides
    if path:
        path = resolve_encoder(path)
    if not path or not Path(path).is_dir():
        raise PacketClipError(f"the traffic encoder of this alignment is not at {path!r}; pass --encoder",
                              path=str(model_dir))
    side = TrafficSide.load(model.config.traffic, path)
    model.check_traffic_encoder(side.fingerprint, where=str(workspace.root))
    return model, side


def run_search(workspace: str | Path, query: str, *, model_dir: str | Path | None = None, top: int = 20,
               encoder: str | Path | None = None, rebuild: bool = False):
    from packetclip.align.search import SearchIndex, search

    ws = Workspace.open(workspace)
    model, side = load_for_workspace(model_dir or default_model(ws), ws, encoder)
    text_side = TextSide()
    index = SearchIndex.build(model, side, ws, rebuild=rebuild)
    return search(model, side, text_side, ws, query, top=top, index=index)


def run_eval(model_dir: str | Path, workspace: str | Path, out: str | Path, *, encoder=None, curves: bool = True,
             steps: int = 3000, eval_every: int = 250, xgboost: bool = True) -> dict:
    from packetclip.align.evaluate import evaluate_model

    ws = Workspace.open(workspace)
    model, side = load_for_workspace(model_dir, ws, encoder)
    return evaluate_model(model, side, TextSide(), ws, out, settings=TrainSettings(steps=steps, seed=model.config.seed),
                          curves=curves, eval_every=eval_every, xgboost=xgboost)
