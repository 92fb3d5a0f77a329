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
- ``gnn_mauc_30pct`` / ``gnn_mauc_1pct`` (and ``xgb_flow_mauc_*``): the same with 30 % / 1 % of the training
  flows (stratified by mission, seeded), same test set.
- ``gnn_trainable_params``; ``gnn_train_flops_per_step``: ``FlopCounterMode`` over one training step (forward +
  backward, batch 64 x window 30) with the MHA fast path off and the MATH attention backend.
- ``ndpi_benign_fpr_*``: share of the flows of the held-out benign ndpi captures alerted at the threshold calibrated
  on the validation benign flows (lab + ndpi validation captures) for 1 % false positives; ``ndpi_scan_recall_*``:
  share of the scan captures' flows alerted as Reconnaissance. For the GNN and XGBoost-flow.
- ``etbert_ft_trainable_params`` / ``etbert_ft_train_flops_per_step``: ET-BERT base fine-tuned end to end (batch 32
  packets of 128 tokens), counted on the meta device; its mAUC figures are not measured here.

Run: ``nice .venv/bin/python benchmarks/reasoning.py`` (about 10 minutes on one core).
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


def stratified_mask(y: np.ndarray, base: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``fraction`` of the ``base`` rows per class (at least 2 per class present)."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(base)
    for c in np.unique(y[base]):
        rows = np.flatnonzero(base & (y == c))
        k = max(2, int(round(fraction * len(rows))))
        out[rng.choice(rows, size=min(k, len(rows)), replace=False)] = True
    return out


def proba4(model, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Class probabilities in the 4 mission columns (classes absent from training get 0)."""
    p = model.predict_proba(x)
    out = np.zeros((len(x), 4), np.float64)
    out[:, classes] = p
    return out


def fit_xgb(x, y, seed):
    from xgboost import XGBClassifier

    classes, yy = np.unique(y, return_inverse=True)
    m = XGBClassifier(n_estimators=200, max_depth=6, learning_rate=0.1, n_jobs=1, random_state=seed,
                      tree_method="hist", verbosity=0)
    m.fit(x, yy, sample_weight=balanced_weights(yy))
    return lambda z: proba4(m, z, classes)


def fit_lgbm(x, y, seed):
    from lightgbm import LGBMClassifier

    classes, yy = np.unique(y, return_inverse=True)
    m = LGBMClassifier(n_estimators=200, num_leaves=31, learning_rate=0.1, n_jobs=1, random_state=seed,
                       class_weight="balanced", verbose=-1)
    m.fit(x, yy)
    return lambda z: proba4(m, z, classes)


def fit_dnn(x, y, seed):
    from sklearn.neural_network import MLPClassifier

    classes, yy = np.unique(y, return_inverse=True)
    m = MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=60, random_state=seed, early_stopping=True)
    m.fit(x, yy)
    return lambda z: proba4(m, z, classes)


def balanced_weights(y: np.ndarray) -> np.ndarray:
    counts = np.bincount(y)
    return (len(y) / (len(counts) * counts))[y]


def flops_per_step(gnn, batch: int = 64) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    c = gnn.config
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(batch * c.window, c.embed_dim, generator=gen), dim=-1)
    gaps = torch.rand(batch, c.window, generator=gen)
    y = torch.randint(0, len(c.missions), (batch, c.window), generator=gen)
    torch.backends.mha.set_fastpath_enabled(False)
    gnn.train()
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        steps = gnn.step_features(x).reshape(batch, c.window, -1)
        logits, fine = gnn.temporal(steps, gaps)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
    gnn.zero_grad(set_to_none=True)
    gnn.eval()
    return int(counter.get_total_flops())


def etbert_cost(batch: int = 32) -> tuple[int, int]:
    """Trainable parameters and FLOPs of one fine-tuning step (forward + backward, ``batch`` packets of 128
    tokens, 4-class head) of ET-BERT base (12 x 768), counted on the meta device (nothing is computed)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from packetclip.encoders.etbert import ETBertConfig, build_bert

    cfg = ETBertConfig.preset("base")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--ndpi-captures", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--compare-epochs", type=int, default=6)
    parser.add_argument("--work", type=Path, default=None, help="Keep intermediate workspaces here.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()

    from packetclip.align.sides import TextSide
    from packetclip.encoders.flowtable import CICFLOW_FEATURES, feature_matrix
    from packetclip.lab.synth import SynthLab
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
    flow_x = feature_matrix(data.rows, list(CICFLOW_FEATURES))
    flow_x = np.sign(flow_x) * np.log1p(np.abs(flow_x))
    for name, fit, x in (("xgb_emb", fit_xgb, aligned), ("lgbm_emb", fit_lgbm, aligned), ("dnn_emb", fit_dnn, aligned),
                         ("xgb_flow", fit_xgb, flow_x)):
        predict = fit(x[train], y[train], 0)
        p = predict(x)
        result[f"lab_{name}_mauc"] = round(mauc(y[lab_test], p[lab_test])[0], 5)
        log(f"{name}: lab test mAUC {result[f'lab_{name}_mauc']}")
        if name == "xgb_flow":
            xgb_flow_proba, xgb_flow_predict = p, predict

    # --- data scarcity -------------------------------------------------------------------------------------
    for pct in (30, 1):
        mask = stratified_mask(y, train, pct / 100, seed=pct)
        g, st = new_gnn(best_mode, args.epochs)
        fit_gnn(g, aligned, data, st, train_mask=mask)
        p = predict_proba(g, aligned, keys, data.times_ns)
        result[f"gnn_mauc_{pct}pct"] = round(mauc(y[lab_test], p[lab_test])[0], 5)
        px = fit_xgb(flow_x[mask], y[mask], 0)(flow_x)
        result[f"xgb_flow_mauc_{pct}pct"] = round(mauc(y[lab_test], px[lab_test])[0], 5)
        log(f"{pct} % of training flows ({mask.sum():,}): GNN {result[f'gnn_mauc_{pct}pct']}, "
            f"XGB-flow {result[f'xgb_flow_mauc_{pct}pct']}")

    # --- efficiency ----------------------------------------------------------------------------------------
    result["gnn_trainable_params"] = gnn.trainable_parameters()
    result["gnn_train_flops_per_step"] = flops_per_step(gnn)
    try:
        result["etbert_ft_trainable_params"], result["etbert_ft_train_flops_per_step"] = etbert_cost()
        result["gnn_params_share_of_etbert"] = round(result["gnn_trainable_params"]
                                                     / result["etbert_ft_trainable_params"], 6)
        result["gnn_flops_share_of_etbert"] = round(result["gnn_train_flops_per_step"]
                                                    / result["etbert_ft_train_flops_per_step"], 6)
    except Exception as err:  # noqa: BLE001 - a peer that cannot be counted is reported, not fatal
        log(f"ET-BERT cost not counted: {type(err).__name__}: {err}")

    # --- generalisation: held-out benign captures and the scan captures ---------------------------------------
    from packetclip.traffic.workspace import Workspace

    scan_ws = Workspace.open(scan_dir)
    scan_rows = scan_ws.flows()
    scan_emb = embed_flows(side, scan_ws, scan_rows["flow_id"].to_numpy(np.int64), host_context=s.host_context)
    scan_aligned = align.traffic_vectors(scan_emb)
    scan_keys = sequence_keys(scan_rows, best_mode, prefix="scan")
    scan_p = predict_proba(gnn, scan_aligned, scan_keys, scan_rows["first_ts_ns"].to_numpy(np.int64))
    scan_x = feature_matrix(scan_rows, list(CICFLOW_FEATURES))
    scan_x = np.sign(scan_x) * np.log1p(np.abs(scan_x))
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
    result["etbert_ft_mauc"] = "not measured in this run"
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
