"""``make demo``: the whole pipeline that exists, on lab-generated traffic, into one report folder.

Each stage is a function that takes the run context and adds to the report; a stage that fails is reported as
failed (with its one-line reason) and the run exits non-zero at the end, so a broken stage is never hidden.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console

from packetclip.evaluate.report import Report


@dataclass
class DemoRun:
    out: Path
    seed: int
    duration_s: float
    report: Report
    console: Console
    encoder_minutes: float | None = None    # None: the shipped pre-trained encoder; minutes: pre-train one here
    align_steps: int = 1000
    state: dict = field(default_factory=dict)

    @property
    def workspace(self) -> Path:
        return self.out / "workspace"


def stage_lab(run: DemoRun) -> None:
    """Generate the labelled lab capture and ingest it into the demo workspace."""
    from packetclip.lab.synth import SynthLab

    lab = SynthLab(duration_s=run.duration_s, seed=run.seed)
    result = lab.generate(run.workspace, progress=True, overwrite=True)   # the demo folder is its own
    run.state["lab"] = result
    from packetclip.traffic.workspace import Workspace

    ws = Workspace.open(run.workspace)
    run.report.section("1. Lab traffic and ingest",
                       f"`packetclip lab synth --duration {int(run.duration_s)}s --seed {run.seed}` wrote a labelled "
                       f"capture of a small IoT network; `packetclip ingest` turned it into flows and masked packet views.")
    run.report.table(["what", "value"], ws.summary_rows())
    flows = ws.flows(columns=["label", "mission"])
    counts = flows.groupby(["mission", "label"]).size().reset_index(name="flows")
    run.report.table(["mission", "class", "flows"], counts.values.tolist())
    run.report.record(lab_flows=int(len(flows)), lab_classes=int(flows["label"].nunique()))
    from packetclip.lab.figures import draw_lab_traffic

    picture = draw_lab_traffic(run.workspace, run.out / "figures" / "lab_traffic.png", seed=run.seed)
    run.report.figure(picture, "packets over time per class (frame size vs seconds since the class's first packet)")


def stage_split(run: DemoRun) -> None:
    """Leakage-safe split: whole flows (the demo has one capture), stratified by class, seeded."""
    from packetclip.traffic.splits import split_workspace

    _, summary = split_workspace(run.workspace, by="flow", test_size=0.2, val_size=0.1, seed=run.seed)
    run.report.section("2. Leakage-safe split",
                       "`packetclip split --by flow`: every flow lies wholly in one split (never split by packet), "
                       "stratified by class; with several captures use `--by capture`.")
    header = [summary.index.name or "label", *map(str, summary.columns)]
    run.report.table(header, [[str(i), *map(int, row)] for i, row in zip(summary.index, summary.to_numpy())])


def stage_knowledge(run: DemoRun) -> None:
    """Mission knowledge graphs of the three attack missions from MITRE ATT&CK v15 (offline)."""
    from packetclip.knowledge import build_all, load_graphs

    kg_dir = run.out / "knowledge"
    written = build_all(kg_dir, seed=run.seed)
    run.report.section("3. Mission knowledge graphs (MITRE ATT&CK v15)",
                       "`packetclip kg build --source attack`: key concepts of each mission drawn from its ATT&CK "
                       "techniques, expanded level by level into a DAG with a sensor and an embedding node.")
    rows = []
    for graph in load_graphs(kg_dir):
        rows.append([graph.mission, len(graph.key_concepts()), len(graph.nodes) if hasattr(graph, "nodes") else "",
                     ", ".join(graph.key_concepts()[:6])])
    run.report.table(["mission", "key concepts", "nodes", "first key concepts"], rows)
    for key, paths in written.items():
        if "png" in paths:
            run.report.figure(paths["png"], f"{key} mission knowledge graph")


def stage_descriptions(run: DemoRun) -> None:
    """Flow descriptions (templates -> KG concepts -> rules paraphrase) and Figure 6 per mission."""
    from packetclip.language.describe import Describer
    from packetclip.language.figures import write_mission_figures
    from packetclip.language.workspace import describe_workspace

    describer = Describer("rules", 3, run.seed)
    target, table = describe_workspace(run.workspace, describer, limit=3000)
    run.state["descriptions"] = target
    run.report.section("4. Flow descriptions",
                       f"`packetclip describe --backend rules --texts-per-flow 3`: {len(table):,} descriptions of "
                       f"{table['flow_id'].nunique():,} flows (balanced over classes).")
    examples = table.drop_duplicates("label").head(10)
    run.report.table(["class", "example description"], examples[["label", "text"]].values.tolist())
    for path in write_mission_figures(table, run.out / "figures", seed=run.seed):
        run.report.figure(path, path.stem.replace("_", " "))
    run.report.record(descriptions=int(len(table)))


def encoder_dir(run: DemoRun) -> Path:
    """The packet encoder later stages use: the shipped pre-trained one, or the one pre-trained here with
    ``--encoder-minutes``."""
    if run.encoder_minutes is None:
        from packetclip.encoders.pretrained import default_packet_encoder_path

        return default_packet_encoder_path()
    return run.out / "models" / "lens-tiny"


def _shipped_encoder_section(run: DemoRun, model_dir: Path) -> str:
    """Section 5 for the shipped encoder: what its card says (figures from its metadata.json)."""
    from packetclip.encoders.pretrained import DEFAULT_PACKET_ENCODER, metadata

    meta = metadata(DEFAULT_PACKET_ENCODER)
    weights, pre = meta.get("weights", {}), meta.get("pretraining", {})
    run.report.section("5. Packet encoder (shipped pre-trained Lens, tiny)",
                       f"No pre-training here: every stage uses `{DEFAULT_PACKET_ENCODER}`, the Lens-style T5 packet "
                       "encoder shipped in the package (`LensModel.from_pretrained(\"lens-tiny\")`, `--encoder "
                       "lens-tiny`; its card is `src/packetclip/encoders/pretrained/lens-tiny/card.md`). Pre-train "
                       "one on this workspace instead with `--encoder-minutes N` (`make demo ENCODER_MINUTES=N`). "
                       + (f"Its pre-training data: {meta['data']}" if meta.get("data") else ""))
    rows = [["pre-training steps", pre.get("step")], ["parameters", weights.get("parameters")],
            ["weights (MB)", round(weights.get("file_bytes", 0) / 1e6, 1)], ["fingerprint", weights.get("fingerprint")]]
    last = pre.get("losses_last_steps", {})
    rows += [[f"training loss, {name} (last steps)", last.get(key)] for key, name in
             (("msp", "masked span"), ("pop", "packet order"), ("htp", "homologous traffic")) if key in last]
    figures = meta.get("figures") or {}
    if figures.get("measured_on_sha256") == weights.get("sha256"):     # the card's figures, if they are these weights'
        for task in ("ndpi", "lab"):
            a, b = figures.get(f"fewshot10_pretrained_{task}"), figures.get(f"fewshot10_random_{task}")
            if a is not None and b is not None:
                rows.append([f"card: {task} probe, 10 labels per class (pre-trained / random init)", f"{a:.3f} / {b:.3f}"])
    run.report.table(["what", "value"], rows)
    seeds = meta.get("pretrain_lab_seeds", [])
    run.report.record(demo_encoder=f"{DEFAULT_PACKET_ENCODER} (shipped, step {pre.get('step')})")
    if run.seed in seeds:
        return (f" Caution: lab seed {run.seed} is one the shipped encoder was pre-trained on, so this capture "
                "may repeat flows it saw; run the demo with another --seed for an honest probe.")
    return (" The shipped encoder never saw this capture (pre-trained on other lab seeds and nDPI captures); "
            "train and test flows are both new to it.")


def stage_encoder(run: DemoRun) -> None:
    """The packet encoder: the shipped pre-trained Lens (default; loaded, not trained), or with
    ``--encoder-minutes`` a tiny Lens pre-trained here on the train split. Then a linear probe on its frozen flow
    embeddings, fitted on train flows and scored on test flows, against the same architecture untrained."""
    import numpy as np

    from packetclip.encoders.lens import LensModel
    from packetclip.evaluate.probe import linear_probe
    from packetclip.traffic.workspace import Workspace

    ws = Workspace.open(run.workspace)
    model_dir = encoder_dir(run)
    if run.encoder_minutes is None:
        unseen = _shipped_encoder_section(run, model_dir)
        name = "shipped pre-trained"
    else:
        from packetclip.encoders.pretrain import pretrain_default

        result = pretrain_default(run.workspace, model_dir, minutes=run.encoder_minutes, seed=run.seed,
                                  progress=True)
        last = result.history[-1] if result.history else {}
        run.report.section("5. Packet encoder (Lens-style T5, tiny, pre-trained here)",
                           f"`packetclip encoder pretrain --size tiny` (demo `--encoder-minutes "
                           f"{run.encoder_minutes:g}`): {result.steps_done} steps in {result.seconds:.0f} s with masked "
                           "span, packet order and homologous traffic prediction on the lab's masked packet views (the "
                           "step count is fitted to the time budget, so a faster machine trains longer). Without "
                           "`--encoder-minutes` the demo uses the shipped pre-trained encoder instead.")
        if last:
            run.report.table(["objective", "last loss"], [["masked span", last.get("msp")],
                                                          ["packet order", last.get("pop")],
                                                          ["homologous traffic", last.get("htp")]])
        curves = model_dir / "loss_curves.png"
        if curves.is_file():
            run.report.figure(curves, "pre-training loss curves of the three objectives")
        run.report.record(demo_encoder=f"pre-trained here ({result.steps_done} steps)")
        unseen = (" The encoder was pre-trained on the train-split flows only, so the test flows were never "
                  "seen by it.")
        name = "pre-trained"
    run.state["encoder"] = model_dir

    # Linear probe on frozen flow embeddings. The split stage split by flow; an encoder pre-trained here read
    # only its train flows, so the test flows the probe is scored on were never seen by the encoder.
    table = ws.splits()[["flow_id", "split"]].merge(ws.labels()[["flow_id", "label"]], on="flow_id")
    table = table[table["split"].isin(["train", "test"])]
    per_class = table.groupby(["split", "label"], group_keys=False)[["flow_id", "split", "label"]].apply(
        lambda g: g.sample(n=min(len(g), 400 if g.name[0] == "train" else 100), random_state=run.seed))
    per_class = per_class.sort_values("flow_id")
    train = per_class["split"].to_numpy() == "train"
    if np.intersect1d(per_class["flow_id"].to_numpy()[~train], ws.split_flow_ids("train")).size:
        raise RuntimeError("probe test flows overlap the pre-training flows")   # cannot happen: splits are disjoint
    y = per_class["label"].to_numpy()
    rows = []
    pretrained = LensModel.from_pretrained(model_dir)
    for label, key, model in ((name, "pre_trained", pretrained),
                              ("random init", "random_init", LensModel(pretrained.config, seed=run.seed))):
        model.eval()
        emb = model.embed_flows(ws, per_class["flow_id"].to_numpy())
        score = linear_probe(emb[train], y[train], emb[~train], y[~train], seed=run.seed)
        rows.append([label, score.n_train, score.n_test, round(score.macro_f1, 3)])
        run.report.record(**{f"demo_probe_f1_{key}": round(score.macro_f1, 4)})
    run.report.section("6. Linear probe on frozen flow embeddings",
                       "Logistic regression on the encoder's pooled embedding of each flow's first packets, "
                       "lab classes, fitted on train flows (up to 400 per class) and scored on test flows (up to "
                       "100 per class); macro F1, next to the same architecture untrained." + unseen)
    run.report.table(["encoder", "train flows", "test flows", "macro F1"], rows)


def stage_align(run: DemoRun) -> None:
    """Traffic-language alignment on the demo's described, split workspace with the packet encoder of stage 5
    (the shipped one unless ``--encoder-minutes``): Table 1, Figure 7 and three example searches written without
    class names."""
    from packetclip.align import demo_stage

    encoder = run.state.get("encoder") or encoder_dir(run)
    result = demo_stage(run.workspace, run.out / "align", encoder=encoder if (encoder / "config.json").is_file() else None,
                        seed=run.seed, steps=run.align_steps, curve_steps=max(100, run.align_steps // 2),
                        report=run.report)
    run.state["align"] = result


def stage_detect(run: DemoRun) -> None:
    """`packetclip detect` with the shipped default model over a fresh lab capture of another seed than any
    training data: alerts as EVE lines, summarised per mission and drawn over time."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from packetclip.detect.api import run_detect, summary_line
    from packetclip.lab.synth import SynthLab
    from packetclip.traffic.workspace import Workspace

    fresh = run.out / "detect-lab"
    seed = run.seed + 1000
    SynthLab(duration_s=min(run.duration_s, 180.0), seed=seed, classes="all").generate(
        fresh, progress=True, overwrite=True, ingest=False)
    alerts = run.out / "alerts.jsonl"
    if alerts.exists():
        alerts.unlink()
    result = run_detect([Workspace(fresh).path("capture")], alerts=alerts)
    line = summary_line(result)
    run.console.print(f"detect: {line}")
    events = [json.loads(x) for x in alerts.read_text().splitlines() if x.strip()]
    from datetime import datetime

    per_mission: dict[str, list[float]] = {}
    for e in events:   # one "new" line per aggregated alert, stamped with its first packet's time
        if e.get("packetclip", {}).get("aggregate", {}).get("status") != "new":
            continue
        when = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        per_mission.setdefault(e["packetclip"].get("mission", "?"), []).append(when)
    t0 = min((min(v) for v in per_mission.values()), default=0.0)
    fig, ax = plt.subplots(figsize=(8, 3))
    for mission, times in sorted(per_mission.items()):
        ax.hist([t - t0 for t in times], bins=30, alpha=0.6, label=mission)
    ax.set_xlabel("seconds into the capture")
    ax.set_ylabel("alerts")
    if per_mission:
        ax.legend()
    ax.set_title("alerts per mission over time (demo detect capture)")
    figure = run.out / "figures" / "alerts_over_time.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    run.report.section("8. Detection on a fresh capture",
                       f"`packetclip detect` with the shipped default model over a new lab capture (seed {seed}, "
                       f"all lab classes, never trained on): {line}. Alerts (Suricata EVE lines) in `alerts.jsonl`.")
    run.report.table(["mission", "alerts"], sorted(result.per_mission.items()))
    # the same over time, as a table: new alerts per mission per 30 s of capture time
    missions = sorted(per_mission)
    bins: dict[int, dict[str, int]] = {}
    for mission, times in per_mission.items():
        for t in times:
            row = bins.setdefault(int((t - t0) // 30), {})
            row[mission] = row.get(mission, 0) + 1
    if bins:
        run.report.table(["capture time (s)", *missions],
                         [[f"{30 * b}-{30 * b + 30}", *[row.get(m, 0) for m in missions]]
                          for b, row in sorted(bins.items())])
    run.report.figure(figure, "alerts per mission over time")
    run.report.record(detect_alerts=int(result.alerts), detect_packets=int(result.packets))


def demo_reasoning_settings(seed: int):
    """The demo's GNN training: the default recipe with fewer epochs, descriptions and alignment steps, so the
    whole demo stays within its budget on a laptop CPU (default settings took ~6 min here alone)."""
    from packetclip.reasoning.train import ReasoningSettings

    return ReasoningSettings(epochs=3, min_batches=15, describe_flows=500, align_steps=300, seed=seed)


def stage_reasoning(run: DemoRun) -> None:
    """`packetclip train`: the mission GNN on the demo workspace (its own split), written as one bundle, then the
    test flows scored with explanations."""
    from packetclip.reasoning.train import train_bundle

    bundle_dir = run.out / "models" / "reasoning-bundle"
    settings = demo_reasoning_settings(run.seed)
    bundle, summary = train_bundle([run.workspace], bundle_dir, settings=settings,
                                   log=lambda r: run.console.print(f"reasoning epoch {r['epoch']}: loss "
                                                                   f"{r['loss']:.4f}, val mAUC {r.get('val_mauc')}"))
    run.state["bundle"] = bundle_dir
    test_auc = summary.get("test_mauc")
    run.report.section("9. Mission reasoning (MissionGNN over the knowledge graphs)",
                       f"`packetclip train {run.workspace.name} --out models/reasoning-bundle` with demo settings "
                       f"({settings.epochs} epochs, {settings.describe_flows} described flows, {settings.align_steps} "
                       f"alignment steps): {summary['train_flows']:,} training flows, "
                       f"{summary['trainable_params']:,} trainable GNN parameters, alert threshold "
                       f"{bundle.threshold:.4f} (1 % false positives on validation benign flows).")
    run.report.table(["split", "mAUC (Benign / DoS / Reconnaissance / Brute Force)"],
                     [["validation", summary.get("val_mauc")], ["test", test_auc]])
    from packetclip.traffic.workspace import Workspace

    test_ids = Workspace.open(run.workspace).split_flow_ids("test")
    scored = bundle.score_workspace(run.workspace, flow_ids=test_ids, explain=False)
    picks = []
    for mission in bundle.missions:
        if mission == "Benign" or f"p_{mission}" not in scored.columns:
            continue
        top = scored.sort_values(f"p_{mission}", ascending=False).head(1)
        if len(top):
            picks.append(int(top["flow_id"].iloc[0]))
    if picks:
        explained = bundle.score_workspace(run.workspace, flow_ids=picks, explain=True)
        run.report.table(["flow", "mission", "score", "explanation"],
                         [[int(r["flow_id"]), r["mission"], round(float(r["score"]), 3), str(r["explanation"])[:220]]
                          for _, r in explained.iterrows()])
    run.report.record(reasoning_val_mauc=summary.get("val_mauc"), reasoning_test_mauc=test_auc)


def stage_reproduce(run: DemoRun) -> None:
    """`packetclip reproduce --quick`: Tables 1-2 and Figures 6-9 as one self-contained HTML page."""
    from packetclip.evaluate.reproduce import ReproduceSettings, reproduce

    target = run.out / "reproduce"
    alignment = run.out / "align" / "align-packet+context"
    result = reproduce(run.workspace, target, quick=True, settings=ReproduceSettings.quick(run.seed),
                       alignment=alignment if (alignment / "config.json").is_file() else None)
    table2 = result["table2"]
    run.report.section("10. The paper's tables and figures",
                       f"`packetclip reproduce {run.workspace.name} --out reproduce --quick`: Tables 1-2 and Figures "
                       "6-9 in [reproduce/index.html](reproduce/index.html) (one self-contained page) and "
                       "[reproduce/report.md](reproduce/report.md). Table 2's test mAUC:")
    run.report.table(["model", "test mAUC"], [[name, round(v["mauc"], 4)] for name, v in table2.items()])
    run.report.record(reproduce_gnn_mauc=table2["MissionGNN (ours)"]["mauc"])


STAGES: list[tuple[str, Callable[[DemoRun], None]]] = [
    ("lab + ingest", stage_lab),
    ("split", stage_split),
    ("knowledge graphs", stage_knowledge),
    ("descriptions", stage_descriptions),
    ("packet encoder", stage_encoder),
    ("alignment", stage_align),
    ("detect", stage_detect),
    ("reasoning", stage_reasoning),
    ("reproduce", stage_reproduce),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the packetclip demo pipeline on lab-generated traffic.")
    parser.add_argument("--out", type=Path, default=Path("demo-report"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of simulated lab traffic")
    parser.add_argument("--encoder-minutes", type=float, default=None,
                        help="pre-train a tiny packet encoder from scratch on the demo lab for this many minutes "
                             "(default: none; every stage uses the shipped pre-trained lens-tiny)")
    parser.add_argument("--align-steps", type=int, default=1000, help="alignment training steps")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the free cores)")
    args = parser.parse_args(argv)
    from packetclip.cli import use_threads

    use_threads(args.threads)   # an entry point: the one place a process-wide setting belongs

    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    run = DemoRun(out=args.out, seed=args.seed, duration_s=args.duration,
                  report=Report(args.out, title="packetclip demo report"), console=console,
                  encoder_minutes=args.encoder_minutes, align_steps=args.align_steps)
    failures = []
    timings = []
    for name, stage in STAGES:
        console.rule(f"[bold]{name}")
        t0 = time.perf_counter()
        try:
            stage(run)
            status = "ok"
        except Exception as err:  # a failing stage is reported, then the run fails at the end
            status = f"FAILED: {' '.join(str(err).split())[:200]}"
            failures.append(name)
            traceback.print_exc()
        timings.append((name, status, round(time.perf_counter() - t0, 1)))
    run.report.section("Stage timings")
    run.report.table(["stage", "status", "seconds"], timings)
    path = run.report.write()
    console.print(f"\n[bold green]report:[/] {path.resolve()}")
    if failures:
        console.print(f"[bold red]failed stages:[/] {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
