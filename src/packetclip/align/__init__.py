"""align stage: frozen traffic and text encoders, one linear head each, trained with InfoNCE into one space.

Laid out the open_clip way: :mod:`~packetclip.align.model` (heads, temperature, save/load, encoders by
fingerprint), :mod:`~packetclip.align.loss` (plain and multi-positive InfoNCE),
:mod:`~packetclip.align.zero_shot` (class prompts -> one matrix), :mod:`~packetclip.align.search` (sentence ->
flows), and apart from them :mod:`~packetclip.align.train` (the loop, on cached embeddings) and
:mod:`~packetclip.align.evaluate` (Table 1, Figure 7). :func:`demo_stage` is the demo's alignment stage.
"""

from __future__ import annotations

from pathlib import Path

from packetclip.align.loss import ContrastiveLoss, clip_loss, multi_positive_loss
from packetclip.align.model import AlignConfig, AlignModel, EncoderMismatchError
from packetclip.align.train import TrainSettings

#: Example searches of the demo (written without class names).
DEMO_QUERIES = (
    "a swarm of TCP handshake requests from spoofed addresses that are never completed",
    "one source trying hundreds of different ports on the same host",
    "repeated short login attempts guessing passwords on a remote shell",
)


def demo_stage(workspace, out_dir, *, encoder=None, seed: int = 7, steps: int = 3000, curve_steps: int = 1000,
               report=None, queries=DEMO_QUERIES, top: int = 5) -> dict:
    """The demo's alignment stage on a described, split workspace: Table 1 (zero-shot for the packet and
    packet+context rows, the linear probe on the same embeddings, XGBoost on flow features), Figure 7 and
    three example searches. The packet+context alignment trains ``steps`` steps; the packet row is the heads
    ``both`` run of Figure 7 (``curve_steps`` steps, like the none / packet runs). ``encoder``: a packet-encoder folder (None: a randomly initialised tiny Lens,
    saved under ``out_dir``). Writes ``out_dir/table1.md`` and ``out_dir/figure7.png``; adds a section to
    ``report`` (a :class:`packetclip.evaluate.report.Report`) when given. Returns the figures as a dict."""
    from packetclip.align.evaluate import (eval_split, figure7, heads_curves, linear_probe, table1_markdown,
                                           xgboost_top1, zero_shot_metrics)
    from packetclip.align.search import SearchIndex, search
    from packetclip.align.sides import TextSide, TrafficSide
    from packetclip.align.train import new_model, train
    from packetclip.traffic.workspace import Workspace

    ws = Workspace.open(workspace)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if encoder is None:
        encoder = random_lens(out_dir / "lens-random", seed=seed)
    text = TextSide()
    descriptions = ws.descriptions()
    settings = TrainSettings(steps=steps, seed=seed)
    rows, models, result = [], {}, {}
    for kind in ("packet", "packet+context"):
        side = TrafficSide.load(kind, encoder)
        split = eval_split(side, text, ws, descriptions)
        if kind == "packet":
            trained: dict = {}
            curve_settings = TrainSettings(steps=curve_steps, seed=seed)
            curves = heads_curves(split, side, text, settings=curve_settings, eval_every=max(1, curve_steps // 10),
                                  models=trained)
            result["figure_path"] = str(figure7(curves, out_dir / "figure7.png"))
            model = trained["both"]
        else:
            model = new_model(split.data, side, text, heads="both", seed=seed)
            train(model, split.data, settings)
        models[kind] = (model, side)
        zs = zero_shot_metrics(model, text, split.test_x, split.test_y)
        n = curve_steps if kind == "packet" else steps
        rows.append({"traffic": kind, "method": f"PacketCLIP zero-shot ({n} steps)", **zs})
        rows.append({"traffic": kind, "method": "linear probe (same frozen embeddings)",
                     "top1": linear_probe(split.train_x, split.train_y, split.test_x, split.test_y, seed=seed)})
        result[f"{kind}_top1"] = zs["top1"]
    rows.append({"traffic": "flow features", "method": "XGBoost (CICFlowMeter columns)",
                 "top1": xgboost_top1(ws, split.train_ids, split.train_y, split.test_ids, split.test_y, seed=seed)})
    table = table1_markdown(rows)
    (out_dir / "table1.md").write_text("# Table 1 (demo lab workspace)\n\n" + table)
    result["table_path"] = str(out_dir / "table1.md")
    model, side = models["packet+context"]
    model.save_pretrained(out_dir / "align-packet+context")
    index = SearchIndex.build(model, side, ws)
    searches = []
    for q in queries:
        hits = search(model, side, text, ws, q, top=top, index=index)
        searches.append((q, hits))
    result["searches"] = [(q, h.to_dict("records")) for q, h in searches]
    if report is not None:
        report.section("7. Traffic-language alignment (Table 1, Figure 7, search)",
                       "Frozen packet encoder + MiniLM, one linear head each, multi-positive "
                       f"InfoNCE, {steps} steps on cached embeddings; zero-shot over the 10 class names, split by flow.")
        report.table(["traffic side", "method", "top-1", "top-5", "mission top-1"],
                     [[r["traffic"], r["method"], *(None if r.get(k) is None else round(float(r[k]), 3)
                                                    for k in ("top1", "top5", "mission_top1"))] for r in rows])
        report.figure(Path(result["figure_path"]), "Figure 7: zero-shot top-1 over training steps, heads none/packet/both")
        for q, hits in searches:
            report.section(f"Search: “{q}”")
            report.table(["similarity", "class", "src", "dst", "proto", "description"],
                         [[round(float(r["similarity"]), 3), r.get("label", ""), f"{r.get('Src IP')}:{r.get('Src Port')}",
                           f"{r.get('Dst IP')}:{r.get('Dst Port')}", r.get("Protocol"), str(r.get("description", ""))[:160]]
                          for r in hits.to_dict("records")])
        report.record(align_packet_top1=round(float(result["packet_top1"]), 4),
                      align_packet_context_top1=round(float(result["packet+context_top1"]), 4))
    return result


def random_lens(path, *, seed: int = 0, size: str = "tiny"):
    """A randomly initialised Lens saved to ``path`` (the baseline encoder when no pre-trained one exists)."""
    from packetclip.encoders.lens import LensConfig, LensModel

    path = Path(path)
    if (path / "config.json").is_file():
        return path
    model = LensModel(LensConfig(size=size), seed=seed)
    model.save_pretrained(path)
    return path


__all__ = ["AlignConfig", "AlignModel", "ContrastiveLoss", "EncoderMismatchError", "TrainSettings", "clip_loss",
           "multi_positive_loss", "demo_stage", "random_lens", "DEMO_QUERIES"]
