"""``packetclip reproduce``: the paper's tables and figures from one workspace, in one folder.

Table 1 and Figure 7 come from :mod:`packetclip.align.evaluate` (the alignment's own evaluation), Figure 6 from
:mod:`packetclip.knowledge.draw`, Table 2 and Figures 8-9 from the reasoning model and its peers
(:mod:`packetclip.reasoning.baselines`), all on the workspace's own split.

Figure 8 (efficiency) and Figure 9 (data scarcity) are drawn here so that ``benchmarks/reasoning.py`` and the
report draw the same pictures from the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from packetclip.errors import PacketClipError
from packetclip.reasoning.baselines import SCARCITY_PERCENTS, EtbertFlowSettings


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure8(costs: Mapping[str, tuple[int, int]], path: str | Path) -> Path:
    """Trainable parameters and training FLOPs per step per model (log scale): ``{name: (params, flops)}``."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(costs)
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.4), dpi=120)
    for ax, k, label in ((axes[0], 0, "trainable parameters"), (axes[1], 1, "training FLOPs per step")):
        values = [max(1, costs[n][k]) for n in names]
        bars = ax.bar(range(len(names)), values, color=["#2a9d8f", "#e76f51", "#f4a261", "#8d99ae"][:len(names)])
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
        ax.set_title(label, fontsize=10)
        for b, v in zip(bars, values):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.2g}", ha="center", va="bottom", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Figure 8: training cost", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def figure9(curves: Mapping[str, Sequence[tuple[float, float]]], path: str | Path) -> Path:
    """Test mAUC against the share of training data used: ``{model: [(percent, mauc), ...]}``."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.8, 3.6), dpi=120)
    for name, points in curves.items():
        pts = sorted((p, m) for p, m in points if m == m)
        if pts:
            ax.plot([p for p, _ in pts], [m for _, m in pts], marker="o", ms=4, label=name)
    ax.set_xscale("log")
    ax.set_xticks([1, 5, 10, 30, 40, 50, 70, 100], ["1", "5", "10", "30", "40", "50", "70", "100"])
    ax.set_xlabel("% of the training flows")
    ax.set_ylabel("test mAUC")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Figure 9: data scarcity (same test set)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---- the whole reproduction ---------------------------------------------------------------------------------

@dataclass
class ReproduceSettings:
    """How much work each study gets. ``quick()``: minutes on a laptop CPU (the demo), same tables and figures
    from smaller training runs and a seeded sample of the test flows (the same sample for every model)."""

    seed: int = 0
    gnn_epochs: int = 12
    min_batches: int = 40
    align_steps: int = 1500
    describe_flows: int = 2000
    table1_steps: int = 1000          # per heads setting of Figure 7
    table1_eval_every: int = 100
    etbert: EtbertFlowSettings = field(default_factory=EtbertFlowSettings)
    scarcity: tuple = SCARCITY_PERCENTS
    max_test_flows: int | None = None
    boosted_trees: int = 200
    dnn_iterations: int = 60

    @classmethod
    def quick(cls, seed: int = 0) -> "ReproduceSettings":
        return cls(seed=seed, gnn_epochs=2, min_batches=8, align_steps=250, describe_flows=400, table1_steps=200,
                   table1_eval_every=50, etbert=EtbertFlowSettings(epochs=1, max_train_flows=300, seed=seed),
                   max_test_flows=1500, boosted_trees=60, dnn_iterations=20)


def _alignment_for_table1(ws, out: Path, alignment, s: ReproduceSettings, text_side):
    """The alignment Table 1 evaluates: the one given, else the workspace's own (``align train``), else a quick
    flow-feature alignment trained here on the workspace's descriptions (written if it has none)."""
    from packetclip.align.api import default_model, load_for_workspace, train_alignment
    from packetclip.align.train import TrainSettings

    if alignment is None:
        try:
            alignment = default_model(ws)
        except PacketClipError:
            alignment = None
    if alignment is not None:
        return load_for_workspace(alignment, ws)
    if not ws.path("descriptions").is_file():
        from packetclip.language.describe import Describer
        from packetclip.language.workspace import describe_workspace

        describe_workspace(ws, Describer("rules", 1, s.seed), limit=s.describe_flows)
    train_alignment(ws.root, out / "alignment", traffic="flow", text_side=text_side,
                    settings=TrainSettings(steps=s.align_steps, seed=s.seed, log_every=0))
    return load_for_workspace(out / "alignment", ws)


def reproduce(workspace, out, *, quick: bool = False, alignment=None, settings: ReproduceSettings | None = None,
              progress: bool = True, text_side=None) -> dict:
    """Tables 1-2 and Figures 6-9 of the paper on one labelled, split workspace: ``out/report.md`` and a
    self-contained ``out/index.html`` (figures in ``out/figures``). Returns the measured numbers. ``text_side``:
    the text encoder (default MiniLM)."""
    import numpy as np

    from packetclip.align.evaluate import evaluate_model
    from packetclip.align.sides import TextSide
    from packetclip.align.train import TrainSettings
    from packetclip.evaluate.report import Report
    from packetclip.knowledge.draw import draw_graph
    from packetclip.reasoning.baselines import (FlowPackets, etbert_cost, fit_dnn, fit_etbert_flows, fit_lgbm,
                                                fit_xgb, flow_features, gnn_flops_per_step, stratified_mask)
    from packetclip.reasoning.model import MISSION_CLASSES
    from packetclip.reasoning.train import (ReasoningSettings, build_gnn, default_graphs, fit_gnn, mauc,
                                            predict_proba, prepare, train_alignment_on)
    from packetclip.traffic.workspace import Workspace
    from packetclip.util.progress import Progress

    s = settings or (ReproduceSettings.quick() if quick else ReproduceSettings())
    ws = Workspace.open(workspace)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PacketClipError("--out must be a folder", path=str(out))
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    report = Report(out, title="packetclip: the paper's tables and figures")
    result: dict = {"workspace": str(ws.root.resolve()), "quick": bool(quick)}
    n_stages = 5 + len(s.scarcity)
    with Progress("reproduce", n_stages, enabled=progress) as bar:
        def step(what: str) -> None:
            bar.set(bar.done + 1, description=f"reproduce: {what}")

        report.section("About", f"Workspace `{ws.root}`; {'quick settings (the demo)' if quick else 'settings'}"
                       f": GNN {s.gnn_epochs} epochs, alignment {s.align_steps} steps, ET-BERT-ft {s.etbert.size} "
                       f"({s.etbert.epochs} epochs, first {s.etbert.first_k} packets of at most "
                       f"{s.etbert.max_train_flows} training flows, {s.etbert.seq_length} tokens); split: the "
                       "workspace's own (by flow or capture, never by packet); every figure is measured on test "
                       "flows no model trained on." + (f" Test flows: a seeded sample of {s.max_test_flows}, the "
                                                       "same for every model." if s.max_test_flows else ""))

        # Figure 6 -------------------------------------------------------------------------------------
        graphs = default_graphs(s.seed)
        report.section("Figure 6: mission knowledge graphs", "MITRE ATT&CK v15 key concepts, expanded level by level "
                       "(sensor on the left, embedding node on the right); one GNN branch per graph.")
        for g in graphs:
            path = draw_graph(g, figures / f"figure6_{g.mission}.png", title=f"{g.mission} mission graph")
            report.figure(path, f"Figure 6: {g.mission} mission graph")
        step("Table 1")

        # Table 1 + Figure 7 -----------------------------------------------------------------------------
        text_side = text_side or TextSide()
        model, side = _alignment_for_table1(ws, out, alignment, s, text_side)
        evaluation = evaluate_model(model, side, text_side, ws, out / "table1",
                                    settings=TrainSettings(steps=s.table1_steps, seed=s.seed),
                                    curves=True, eval_every=s.table1_eval_every)
        fig7 = figures / "figure7_zero_shot.png"
        Path(evaluation["figure_path"]).replace(fig7)
        report.section("Table 1: zero-shot classification", f"Alignment `{model.config.traffic}` traffic side, "
                       "zero-shot over the class names on the test flows; the linear probe and XGBoost read the same "
                       "train / test flows.")
        report.table(["traffic side", "method", "top-1 (macro)", "top-5 (macro)", "mission top-1"],
                     [[r["traffic"], r["method"], *(None if r.get(k) is None else round(float(r[k]), 3)
                                                    for k in ("top1", "top5", "mission_top1"))]
                      for r in evaluation["rows"]])
        report.figure(fig7, f"Figure 7: zero-shot top-1 over training steps ({s.table1_steps} steps per heads "
                      "setting)")
        result["table1"] = evaluation["rows"]
        step("reasoning data")

        # Table 2 ----------------------------------------------------------------------------------------
        rs = ReasoningSettings(epochs=s.gnn_epochs, seed=s.seed, min_batches=s.min_batches,
                               align_steps=s.align_steps, describe_flows=s.describe_flows)
        data, traffic_side = prepare([ws], out / "reasoning", settings=rs, modes=(rs.time_step,))
        y = data.mission
        train, test = data.split == "train", data.split == "test"
        if not train.any() or not test.any():
            raise PacketClipError("the workspace needs train and test flows (run `packetclip split`)",
                                  path=str(ws.root))
        if s.max_test_flows and test.sum() > s.max_test_flows:
            keep = np.random.default_rng(s.seed).choice(np.flatnonzero(test), s.max_test_flows, replace=False)
            test = np.zeros_like(test)
            test[keep] = True
        align = train_alignment_on(data.rows, data.embeddings, traffic_side, text_side, settings=rs,
                                   train_mask=train)
        aligned = align.traffic_vectors(data.embeddings)
        fine = sorted(set(data.fine[train].tolist()))
        words = lambda w: align.text_vectors(text_side.embed(list(w)))  # noqa: E731
        keys = data.keys[rs.time_step]

        def gnn_on(mask):
            g = build_gnn(graphs, words, embed_dim=aligned.shape[1], settings=rs, fine_classes=fine)
            fit_gnn(g, aligned, data, rs, train_mask=mask)
            return g, predict_proba(g, aligned, keys, data.times_ns)

        step("Table 2")
        gnn, p_gnn = gnn_on(train)
        flow_x = flow_features(data.rows)
        packets = FlowPackets([ws], data.rows, s.etbert.first_k)
        probas = {"MissionGNN (ours)": p_gnn}
        t = s.boosted_trees
        probas["XGBoost on aligned embeddings"] = fit_xgb(aligned[train], y[train], s.seed, n_estimators=t)(aligned)
        probas["LightGBM on aligned embeddings"] = fit_lgbm(aligned[train], y[train], s.seed, n_estimators=t)(aligned)
        probas["DNN on aligned embeddings"] = fit_dnn(aligned[train], y[train], s.seed,
                                                          max_iter=s.dnn_iterations)(aligned)
        probas["XGBoost on CICFlowMeter features"] = fit_xgb(flow_x[train], y[train], s.seed, n_estimators=t)(flow_x)
        predict_et, _ = fit_etbert_flows(packets, y, train, s.etbert)
        probas["ET-BERT-style fine-tune"] = predict_et(test)
        rows2, table2 = [], {}
        for name, p in probas.items():
            m, per = mauc(y[test], p[test])
            table2[name] = {"mauc": m, **{MISSION_CLASSES[c]: v for c, v in per.items()}}
            rows2.append([name, *(round(per[c], 4) if c in per else "—" for c in range(4)), round(m, 4)])
        report.section("Table 2: mission detection, per-class ROC-AUC", "One-vs-rest ROC-AUC per mission and their "
                       "mean (mAUC) on the test flows; every model trained on the same training flows. Classes "
                       "absent from the test flows show —.")
        report.table(["model", *MISSION_CLASSES, "mAUC"], rows2)
        result["table2"] = table2

        # Figure 9 -------------------------------------------------------------------------------------------
        curves = {"MissionGNN": [], "ET-BERT-ft": [], "XGBoost-flow": []}
        for pct in s.scarcity:
            step(f"Figure 9 ({pct} %)")
            if pct == 100:
                points = (table2["MissionGNN (ours)"]["mauc"], table2["ET-BERT-style fine-tune"]["mauc"],
                          table2["XGBoost on CICFlowMeter features"]["mauc"])
            else:
                mask = stratified_mask(y, train, pct / 100, seed=pct)
                _, pg = gnn_on(mask)
                pe, _ = fit_etbert_flows(packets, y, mask, s.etbert)
                px = fit_xgb(flow_x[mask], y[mask], s.seed, n_estimators=t)(flow_x)
                points = (mauc(y[test], pg[test])[0], mauc(y[test], pe(test)[test])[0], mauc(y[test], px[test])[0])
            for name, v in zip(curves, points):
                curves[name].append((pct, float(v)))
        fig9 = figure9(curves, figures / "figure9_scarcity.png")
        report.section("Figure 9: data scarcity", "Test mAUC with a stratified, seeded share of the training flows "
                       f"(ET-BERT-ft never more than {s.etbert.max_train_flows} flows: its CPU budget).")
        report.table(["% of training flows", *curves], [[pct, *(round(curves[n][i][1], 4) for n in curves)]
                                                        for i, pct in enumerate(s.scarcity)])
        report.figure(fig9, "Figure 9: test mAUC against the share of training data")
        result["scarcity"] = {k: dict(v) for k, v in curves.items()}

        # Figure 8 -------------------------------------------------------------------------------------------
        step("Figure 8")
        costs = {"MissionGNN": (gnn.trainable_parameters(), gnn_flops_per_step(gnn)),
                 f"ET-BERT-ft {s.etbert.size}": etbert_cost(s.etbert.size, seq_length=s.etbert.seq_length),
                 "ET-BERT-ft base": etbert_cost("base")}
        fig8 = figure8(costs, figures / "figure8_efficiency.png")
        report.section("Figure 8: efficiency", "Trainable parameters and FLOPs of one training step (forward + "
                       "backward; GNN: 64 windows of 30 steps; ET-BERT: 32 packets), counted with FlopCounterMode "
                       "and the MATH attention backend; ET-BERT base is the published size (counted, not trained).")
        report.table(["model", "trainable parameters", "training FLOPs per step"],
                     [[k, int(v[0]), int(v[1])] for k, v in costs.items()])
        report.figure(fig8, "Figure 8: trainable parameters and training FLOPs per step")
        result["costs"] = {k: {"params": int(v[0]), "flops_per_step": int(v[1])} for k, v in costs.items()}
        report.record(**{k: v for k, v in result.items() if k != "table1"})
        result["report_md"] = str(report.write())
        result["index_html"] = str(report.write_html())
        bar.set(n_stages, description="reproduce: done")
    return result
