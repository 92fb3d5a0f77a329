"""Reasoning benchmark (issue 11): the mission GNN against its peers on the same split, and how it generalises to
real traffic it was not trained on. Last line: one JSON object.

Data: a ``SynthLab`` capture (``--duration`` s, ``--seed``, the paper's classes), split by flow; and a seeded
subset (``--ndpi-captures``) of the benign captures of ../shared/data/ndpi (attack-like captures left out:
:data:`packetclip.reasoning.data.ATTACK_LIKE`), split **by capture** (train / val / test). The two scan captures
(synscan.pcap, tcp_scan.pcapng) are held out entirely. Training data = lab train flows + ndpi train captures.

Traffic side: the flow-table encoder (fitted on the training flows) + normalised CICFlowMeter features + the
flow's host context (:mod:`packetclip.traffic.context`); the
alignment is trained on rule-based descriptions of a balanced sample of training flows (MiniLM text side).

Figures:
- ``timestep_val_mauc``: validation mAUC (lab + ndpi validation flows) of one GNN per time step (src / dst /
  global / flow, ``--compare-epochs`` each); the default is the best.
- ``lab_*_mauc``: mission mAUC (mean one-vs-rest ROC-AUC over Benign / DoS / Reconnaissance / Brute Force) on the
  lab test flows; GNN, and XGBoost / LightGBM / DNN on the same aligned embeddings, XGBoost on the raw
  CICFlowMeter columns (the classic NIDS). All trained on the same training flows.
- ``lab_etbert_ft_mauc``: the ET-BERT-style end-to-end fine-tune (:class:`packetclip.encoders.etbert.ETBertClassifier`)
  on the same training flows, as a CPU allows: tiny size (2 x 64, random init: the published weights are not
  shipped), 64 tokens per packet, each flow's first 2 packets labelled with its mission, 2 epochs, batch 32, AdamW
  lr 1e-3 with warm-up, at most
  ``--etbert-flows`` training flows (class-balanced sample); a flow's score is the mean over its packets
  (:class:`packetclip.reasoning.baselines.EtbertFlowSettings`).
- ``scarcity``: Figure 9's data, lab test mAUC of GNN / ET-BERT-ft / XGBoost-flow trained on 100/70/50/40/30/10/5/1 %
  of the training flows (stratified by mission, seeded), same test set; ``gnn_mauc_30pct`` / ``gnn_mauc_1pct`` /
  ``etbert_ft_mauc_30pct`` (and ``xgb_flow_mauc_*``) are its points. ET-BERT-ft never sees more than its cap.
- Figures: ``--figures`` (default ``bench-figures/``) gets ``figure8_efficiency.png`` and ``figure9_scarcity.png``.
- ``gnn_trainable_params``; ``gnn_train_flops_per_step``: ``FlopCounterMode`` over one training step (forward +
  backward, batch 64 x window 30) with the MHA fast path off and the MATH attention backend.
- ``ndpi_benign_fpr_*``: share of the flows of the held-out benign ndpi captures alerted at the threshold calibrated
  on the validation benign flows (lab + ndpi validation captures) for 1 % false positives; ``ndpi_scan_recall_*``:
  share of the scan captures' flows alerted as Reconnaissance. For the GNN and XGBoost-flow.
- ``etbert_ft_trainable_params`` / ``etbert_ft_train_flops_per_step``: ET-BERT base (12 x 768, as published)
  fine-tuned end to end (batch 32 packets of 128 tokens), counted on the meta device; ``etbert_ft_tiny_*``: the
  same for the tiny model whose mAUC is measured here.

Run: ``nice .venv/bin/python benchmarks/reasoning.py`` (about 40 minutes on one core).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

NDPI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ndpi" / "pcap"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--ndpi-captures", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--compare-epochs", type=int, default=6)
    parser.add_argument("--work", type=Path, default=None, help="Keep intermediate workspaces here.")
    parser.add_argument("--etbert-flows", type=int, default=1500, help="training-flow cap of the ET-BERT fine-tune")
    parser.add_argument("--etbert-epochs", type=int, default=2)
    parser.add_argument("--figures", type=Path, default=Path("bench-figures"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()

    from packetclip.align.sides import TextSide
    from packetclip.lab.synth import SynthLab
    from packetclip.evaluate.reproduce import figure8, figure9
    from packetclip.reasoning.baselines import (SCARCITY_PERCENTS, EtbertFlowSettings, FlowPackets, etbert_cost,
                                                fit_dnn, fit_etbert_flows, fit_lgbm, fit_xgb, flow_features,
                                                gnn_flops_per_step, stratified_mask)
    from packetclip.reasoning.bundle import embed_flows
    from packetclip.reasoning.data import SCAN_CAPTURES, benign_captures
    from packetclip.reasoning.train import (ReasoningSettings, build_gnn, calibrate_threshold, default_graphs,
                                            fit_gnn, mauc, predict_proba, prepare, train_alignment_on)
    from packetclip.reasoning.windows import sequence_keys
    from packetclip.traffic.ingest import ingest_captures

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-reasoning-"))
    work.mkdir(parents=True, exist_ok=True)
    lab_dir, ndpi_dir, scan_dir = work / "lab", work / "ndpi", work / "scan"
    if not (lab_dir / "flows.parquet").exists():
        SynthLab(duration_s=args.duration, seed=args.seed, classes="paper").generate(lab_dir, progress=False,
                                                                                     overwrite=True)
    caps = benign_captures(NDPI)
    pick = sorted(np.random.default_rng(0).choice(len(caps), min(args.ndpi_captures, len(caps)), replace=False))
    if not (ndpi_dir / "flows.parquet").exists():
        ingest_captures([caps[i] for i in pick], ndpi_dir, progress=False, overwrite=True)
    if not (scan_dir / "flows.parquet").exists():
        ingest_captures([NDPI / c for c in SCAN_CAPTURES], scan_dir, progress=False, overwrite=True)
    log(f"data ready ({time.perf_counter() - t_start:.0f} s)")

    modes = ("src", "dst", "global", "flow")
    s = ReasoningSettings(epochs=args.epochs, seed=0)
    data, side = prepare([lab_dir, ndpi_dir], work / "model", settings=s, modes=modes)
    lab = data.workspace == 0
    ndpi = data.workspace == 1
    train, val, test = (data.split == "train"), (data.split == "val"), (data.split == "test")
    log(f"{len(data.mission):,} flows: lab {lab.sum():,}, ndpi {ndpi.sum():,} in "
        f"{data.rows.loc[ndpi, 'capture'].nunique()} captures; train {train.sum():,} val {val.sum():,} "
        f"test {test.sum():,}")
    text_side = TextSide()
    align = train_alignment_on(data.rows, data.embeddings, side, text_side, settings=s, train_mask=train)
    aligned = align.traffic_vectors(data.embeddings)
    graphs = default_graphs(0)
    fine = sorted(set(data.fine[train].tolist()))
    words = lambda w: align.text_vectors(text_side.embed(list(w)))  # noqa: E731
    log(f"alignment trained ({time.perf_counter() - t_start:.0f} s)")

    def new_gnn(mode: str, epochs: int):
        settings = ReasoningSettings(time_step=mode, epochs=epochs, seed=0)
        return build_gnn(graphs, words, embed_dim=aligned.shape[1], settings=settings, fine_classes=fine), settings

    # --- what a time step is ----------------------------------------------------------------------------
    compare, models = {}, {}
    for mode in modes:
        gnn, settings = new_gnn(mode, args.compare_epochs)
        hist = fit_gnn(gnn, aligned, data, settings)
        compare[mode] = round(max(h.get("val_mauc", float("nan")) for h in hist), 5)
        models[mode] = gnn
        log(f"time step {mode}: val mAUC {compare[mode]}")
    best_mode = max(compare, key=lambda m: compare[m])

    gnn, settings = new_gnn(best_mode, args.epochs)
    fit_gnn(gnn, aligned, data, settings)
    keys = data.keys[best_mode]
    proba = predict_proba(gnn, aligned, keys, data.times_ns)
    y = data.mission
    result = {"timestep_val_mauc": compare, "time_step": best_mode}
    lab_test = lab & test
    result["lab_gnn_mauc"] = round(mauc(y[lab_test], proba[lab_test])[0], 5)
    result["lab_gnn_auc_per_class"] = {k: round(v, 5) for k, v in mauc(y[lab_test], proba[lab_test])[1].items()}
    log(f"GNN ({best_mode}): lab test mAUC {result['lab_gnn_mauc']}")

    # --- baselines on the same split ---------------------------------------------------------------------
    flow_x = flow_features(data.rows)
    for name, fit, x in (("xgb_emb", fit_xgb, aligned), ("lgbm_emb", fit_lgbm, aligned), ("dnn_emb", fit_dnn, aligned),
                         ("xgb_flow", fit_xgb, flow_x)):
        predict = fit(x[train], y[train], 0)
        p = predict(x)
        result[f"lab_{name}_mauc"] = round(mauc(y[lab_test], p[lab_test])[0], 5)
        log(f"{name}: lab test mAUC {result[f'lab_{name}_mauc']}")
        if name == "xgb_flow":
            xgb_flow_proba, xgb_flow_predict = p, predict

    # --- ET-BERT-style fine-tune ------------------------------------------------------------------------------
    from packetclip.traffic.workspace import Workspace

    ets = EtbertFlowSettings(epochs=args.etbert_epochs, max_train_flows=args.etbert_flows)
    packets = FlowPackets([Workspace.open(lab_dir), Workspace.open(ndpi_dir)], data.rows, ets.first_k)
    predict_et, clf = fit_etbert_flows(packets, y, train, ets)
    p = predict_et(lab_test)
    result["lab_etbert_ft_mauc"] = round(mauc(y[lab_test], p[lab_test])[0], 5)
    result["lab_etbert_ft_auc_per_class"] = {k: round(v, 5) for k, v in mauc(y[lab_test], p[lab_test])[1].items()}
    result["etbert_ft_settings"] = {**ets.__dict__, "train_flows_used": clf.used_flows_}
    log(f"etbert_ft ({clf.used_flows_:,} training flows): lab test mAUC {result['lab_etbert_ft_mauc']}")

    # --- data scarcity (Figure 9) ------------------------------------------------------------------------------
    scarcity = {"GNN": [], "ET-BERT-ft": [], "XGBoost-flow": []}
    for pct in SCARCITY_PERCENTS:
        if pct == 100:
            mask = train
            gm, em, xm = (result["lab_gnn_mauc"], result["lab_etbert_ft_mauc"], result["lab_xgb_flow_mauc"])
        else:
            mask = stratified_mask(y, train, pct / 100, seed=pct)
            g, st = new_gnn(best_mode, args.epochs)
            fit_gnn(g, aligned, data, st, train_mask=mask)
            gm = round(mauc(y[lab_test], predict_proba(g, aligned, keys, data.times_ns)[lab_test])[0], 5)
            px = fit_xgb(flow_x[mask], y[mask], 0)(flow_x)
            xm = round(mauc(y[lab_test], px[lab_test])[0], 5)
            pe, _ = fit_etbert_flows(packets, y, mask, ets)
            em = round(mauc(y[lab_test], pe(lab_test)[lab_test])[0], 5)
        for name, v in (("GNN", gm), ("ET-BERT-ft", em), ("XGBoost-flow", xm)):
            scarcity[name].append((pct, v))
        if pct in (30, 1):
            result[f"gnn_mauc_{pct}pct"], result[f"xgb_flow_mauc_{pct}pct"] = gm, xm
            result[f"etbert_ft_mauc_{pct}pct"] = em
        log(f"{pct} % of training flows ({mask.sum():,}): GNN {gm}, ET-BERT-ft {em}, XGB-flow {xm}")
    result["scarcity"] = {k: dict(v) for k, v in scarcity.items()}

    # --- efficiency (Figure 8) ---------------------------------------------------------------------------------
    result["gnn_trainable_params"] = gnn.trainable_parameters()
    result["gnn_train_flops_per_step"] = gnn_flops_per_step(gnn)
    costs = {"MissionGNN": (result["gnn_trainable_params"], result["gnn_train_flops_per_step"])}
    try:
        result["etbert_ft_trainable_params"], result["etbert_ft_train_flops_per_step"] = etbert_cost("base")
        (result["etbert_ft_tiny_trainable_params"],
         result["etbert_ft_tiny_train_flops_per_step"]) = etbert_cost("tiny", seq_length=ets.seq_length)
        result["gnn_params_share_of_etbert"] = round(result["gnn_trainable_params"]
                                                     / result["etbert_ft_trainable_params"], 6)
        result["gnn_flops_share_of_etbert"] = round(result["gnn_train_flops_per_step"]
                                                    / result["etbert_ft_train_flops_per_step"], 6)
        costs["ET-BERT-ft base"] = (result["etbert_ft_trainable_params"], result["etbert_ft_train_flops_per_step"])
        costs["ET-BERT-ft tiny"] = (result["etbert_ft_tiny_trainable_params"],
                                    result["etbert_ft_tiny_train_flops_per_step"])
    except Exception as err:  # noqa: BLE001 - a peer that cannot be counted is reported, not fatal
        log(f"ET-BERT cost not counted: {type(err).__name__}: {err}")
    result["figures"] = [str(figure8(costs, args.figures / "figure8_efficiency.png")),
                         str(figure9(scarcity, args.figures / "figure9_scarcity.png"))]

    # --- generalisation: held-out benign captures and the scan captures ---------------------------------------
    scan_ws = Workspace.open(scan_dir)
    scan_rows = scan_ws.flows()
    scan_emb = embed_flows(side, scan_ws, scan_rows["flow_id"].to_numpy(np.int64), host_context=s.host_context)
    scan_aligned = align.traffic_vectors(scan_emb)
    scan_keys = sequence_keys(scan_rows, best_mode, prefix="scan")
    scan_p = predict_proba(gnn, scan_aligned, scan_keys, scan_rows["first_ts_ns"].to_numpy(np.int64))
    scan_x = flow_features(scan_rows)
    scan_px = xgb_flow_predict(scan_x)
    benign_val = val & (y == 0)
    ndpi_test = ndpi & test
    for name, p, ps in (("gnn", proba, scan_p), ("xgb_flow", xgb_flow_proba, scan_px)):
        thr = calibrate_threshold(1.0 - p[benign_val, 0])
        alerted = (1.0 - p[:, 0]) >= thr
        result[f"ndpi_benign_fpr_{name}"] = round(float(alerted[ndpi_test].mean()), 5)
        result[f"val_benign_fpr_{name}"] = round(float(alerted[benign_val].mean()), 5)
        scan_alert = ((1.0 - ps[:, 0]) >= thr) & (ps[:, 1:].argmax(1) + 1 == 2)
        result[f"ndpi_scan_recall_{name}"] = round(float(scan_alert.mean()), 5)
        result[f"ndpi_scan_alerted_any_{name}"] = round(float(((1.0 - ps[:, 0]) >= thr).mean()), 5)
        log(f"{name}: threshold {thr:.4f}; held-out benign ndpi FPR {result[f'ndpi_benign_fpr_{name}']}; "
            f"scan recall {result[f'ndpi_scan_recall_{name}']}")
    # the same two figures for every time step's comparison model (what context buys on unseen traffic)
    per_mode = {}
    for mode, g in models.items():
        p = predict_proba(g, aligned, data.keys[mode], data.times_ns)
        ps = predict_proba(g, scan_aligned, sequence_keys(scan_rows, mode, prefix="scan"),
                           scan_rows["first_ts_ns"].to_numpy(np.int64))
        thr = calibrate_threshold(1.0 - p[benign_val, 0])
        per_mode[mode] = {"ndpi_benign_fpr": round(float(((1.0 - p[ndpi_test, 0]) >= thr).mean()), 5),
                          "ndpi_scan_recall": round(float((((1.0 - ps[:, 0]) >= thr)
                                                           & (ps[:, 1:].argmax(1) + 1 == 2)).mean()), 5)}
    result["timestep_generalisation"] = per_mode
    log(f"per time step on unseen traffic: {per_mode}")
    result["ndpi_benign_fpr"] = result["ndpi_benign_fpr_gnn"]
    result["ndpi_scan_recall"] = result["ndpi_scan_recall_gnn"]
    result["ndpi_test_flows"] = int(ndpi_test.sum())
    result["ndpi_test_captures"] = int(data.rows.loc[ndpi_test, "capture"].nunique())
    result["scan_flows"] = int(len(scan_rows))
    result["lab_test_flows"] = int(lab_test.sum())
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
