"""Linear-probe quality of the Lens packet encoder: pre-trained vs the same architecture randomly initialised
vs a 256-bin byte histogram, same flows, same splits, same probe, same run.

Tasks (flow-level; a flow is represented by its first ``k`` packets' masked views):

- ``ndpi``: nDPI application category (``../shared/data/ndpi/result/*.out``) of the flows of
  ``../shared/data/ndpi/pcap``, ingested here with ``packetclip.traffic.ingest``. Split **by capture file**
  (stratified, seeded); categories kept when they have >= 5 training flows and appear in the test captures.
  At most ``--per-group`` flows per (capture, category) so that a few huge captures do not dominate.
- ``lab``: the 10 ACI-IoT classes of ``packetclip lab synth`` captures with different seeds: the probe
  trains on the flows of ``--lab-captures`` captures (seeds 1..N) and is tested on as many others (seeds
  101..100+N), split by capture. A capture holds only 1-3 attack episodes per class, each with its own
  randomised parameters, so several captures per side are needed for the score to measure the classes
  rather than a few episodes. At most ``--per-class`` flows per class and side.

Pre-training (unless ``--checkpoint``) uses only the training side: the ndpi training captures and the
training lab captures; test captures are never seen, not even unlabelled. Probe:
:func:`packetclip.evaluate.probe.linear_probe` (standardised features, balanced logistic regression), the
probe every stage uses; metric: macro-F1 on the test side.

``--compare-tokenisation`` instead pre-trains byte patches (4 bytes/token), single bytes and ET-BERT's
stride-1 bigrams on the same time budget, and reports probe F1 and embedding speed for each (the
measurement behind ``LensConfig.tokenisation``'s default).

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
NDPI_PCAP = SHARED / "ndpi" / "pcap"
NDPI_RESULT = SHARED / "ndpi" / "result"


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# --- data ------------------------------------------------------------------------------------------------
def ndpi_workspace(work: Path):
    """Ingest the ndpi captures once (cached in ``work``); return (workspace dir, labelled flows)."""

    from packetclip.traffic.datasets.join import join_ndpi
    from packetclip.traffic.datasets.ndpi import read_ndpi_results
    from packetclip.traffic.ingest import ingest_captures
    from packetclip.traffic.splits import group_split
    from packetclip.traffic.workspace import Workspace

    ws = work / "ndpi"
    if not Workspace(ws).manifest:
        log("ingesting", NDPI_PCAP)
        captures = sorted(f for f in NDPI_PCAP.rglob("*") if f.suffix.lower() in (".pcap", ".pcapng", ".cap"))
        ingest_captures(captures, ws, progress=False)
    flows = Workspace.open(ws).flows()
    joined = join_ndpi(flows, read_ndpi_results(NDPI_RESULT, progress=False))
    joined = joined[joined["ndpi_matched"] & joined["ndpi_category"].notna()]
    joined = joined[~joined["ndpi_category"].isin(["Unknown", "Unspecified", ""])].copy()
    joined["label"] = joined["ndpi_category"].astype(str)
    joined["split"] = group_split(joined, by="capture", label_col="label", test_size=0.3, val_size=0.0, seed=0)
    return ws, joined[["flow_id", "file_index", "capture", "label", "split"]]


def lab_workspaces(work: Path, duration_s: float, n_captures: int = 3):
    """``n_captures`` synthetic lab captures per side (train seeds 1.., test seeds 101..), generated once."""
    from packetclip.lab.synth import SynthLab
    from packetclip.traffic.workspace import Workspace

    out = []
    plan = [(s, "train") for s in range(1, n_captures + 1)] + [(100 + s, "test") for s in range(1, n_captures + 1)]
    for seed, split in plan:
        ws = work / f"lab_seed{seed}_{int(duration_s)}s"
        if not Workspace(ws).has("labels"):
            log(f"lab synth seed {seed} ({duration_s:.0f} s of traffic)")
            SynthLab(duration_s=duration_s, seed=seed).generate(ws, progress=False, overwrite=True)
        flows = Workspace.open(ws).labelled_flows(columns=["flow_id", "file_index", "label"])
        flows["capture"] = f"lab{seed}"
        flows["split"] = split
        out.append((ws, flows[flows["label"].notna()].copy()))
    return out


def cap_groups(df, by: list[str], n: int, seed: int):
    """At most ``n`` rows per group (seeded sample)."""
    return (df.sample(frac=1.0, random_state=seed).groupby(by, sort=False, group_keys=False).head(n)
            .sort_values("flow_id"))


def flow_views(ws: Path, flow_ids: np.ndarray, k: int):
    """First-k views ``[n, k, L]`` of the given flows, in the order of ``flow_ids`` (only those flows are read)."""
    from packetclip.encoders.data import first_k_packets
    from packetclip.traffic.workspace import Workspace

    pv = Workspace.open(ws).packet_views(flow_ids, first_k=k)
    ids, firsts, _ = first_k_packets(pv.views, pv.flow_id, k)
    pos = np.searchsorted(ids, flow_ids)
    if not np.array_equal(ids[np.minimum(pos, len(ids) - 1)], flow_ids):
        raise RuntimeError("some labelled flows have no packets in packets.parquet")
    return firsts[pos]


# --- features and probe ------------------------------------------------------------------------------------
def histogram_features(firsts: np.ndarray) -> np.ndarray:
    """256-bin histogram of all view bytes of the first k packets, as frequencies."""
    flat = firsts.reshape(firsts.shape[0], -1)
    hist = np.zeros((flat.shape[0], 256), np.float32)
    rows = np.repeat(np.arange(flat.shape[0]), flat.shape[1])
    np.add.at(hist, (rows, flat.ravel()), 1.0)
    return hist / flat.shape[1]


def lens_features(model, firsts: np.ndarray, mode: str, batch_size: int = 256) -> np.ndarray:
    if mode == "sequence":
        return model.embed(firsts, batch_size=batch_size)
    n, k, width = firsts.shape
    per_packet = model.embed(firsts.reshape(-1, width), batch_size=batch_size).reshape(n, k, -1)
    present = firsts.any(axis=2)
    present[:, 0] = True
    w = present[..., None].astype(np.float32)
    return (per_packet * w).sum(1) / w.sum(1)


def probe_f1(train_x, train_y, test_x, test_y, seed: int = 0) -> float:
    from packetclip.evaluate.probe import linear_probe

    return linear_probe(train_x, train_y, test_x, test_y, seed).macro_f1


class Task:
    """One probe task: train/test flows with their first-k views and labels."""

    def __init__(self, name, train_firsts, train_y, test_firsts, test_y):
        self.name = name
        self.train_firsts, self.train_y = train_firsts, np.asarray(train_y)
        self.test_firsts, self.test_y = test_firsts, np.asarray(test_y)

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train_y)} train / {len(self.test_y)} test flows, "
                f"{len(set(self.train_y))} classes")


def build_tasks(work: Path, k: int, per_group: int, per_class: int, lab_seconds: float, seed: int,
                lab_captures: int = 3):
    """The ndpi and lab tasks plus what pre-training may use: (tasks, pretrain workspaces, file selection)."""
    tasks, pre_ws, pre_files = {}, [], []
    if NDPI_PCAP.is_dir() and NDPI_RESULT.is_dir():
        ws, flows = ndpi_workspace(work)
        test_captures = set(flows.loc[flows["split"] == "test", "capture"])
        train = flows[flows["split"] == "train"]
        counts = train["label"].value_counts()
        keep = set(counts[counts >= 5].index) & set(flows.loc[flows["split"] == "test", "label"])
        capped = cap_groups(flows[flows["label"].isin(keep)], ["capture", "label"], per_group, seed)
        tr, te = capped[capped["split"] == "train"], capped[capped["split"] == "test"]
        tasks["ndpi"] = Task("ndpi", flow_views(ws, tr["flow_id"].to_numpy(), k), tr["label"],
                             flow_views(ws, te["flow_id"].to_numpy(), k), te["label"])
        from packetclip.traffic.workspace import Workspace

        manifest = Workspace.open(ws).manifest
        pre_ws.append(ws)
        pre_files.append([c["file_index"] for c in manifest["captures"] if Path(c["path"]).name not in test_captures])
    else:
        log("ndpi data not found at", NDPI_PCAP, "- skipping the ndpi task")
    sides = {"train": ([], []), "test": ([], [])}
    per_capture = max(1, per_class // lab_captures)
    for ws, flows in lab_workspaces(work, lab_seconds, lab_captures):
        split = flows["split"].iloc[0]
        flows = cap_groups(flows, ["label"], per_capture, seed)
        sides[split][0].append(flow_views(ws, flows["flow_id"].to_numpy(), k))
        sides[split][1].append(flows["label"].to_numpy())
        if split == "train":
            pre_ws.append(ws)
            pre_files.append(None)
    (tr_x, tr_y), (te_x, te_y) = ([np.concatenate(p) for p in sides[s]] for s in ("train", "test"))
    tasks["lab"] = Task("lab", tr_x, tr_y, te_x, te_y)
    return tasks, pre_ws, pre_files


def evaluate(tasks: dict, models: dict, mode: str, seed: int) -> dict:
    """macro-F1 per (model name, task); ``models`` maps a name to a LensModel or ``"hist"``."""
    out = {}
    for task in tasks.values():
        for name, model in models.items():
            t0 = time.perf_counter()
            if model == "hist":
                tr, te = histogram_features(task.train_firsts), histogram_features(task.test_firsts)
            else:
                tr, te = lens_features(model, task.train_firsts, mode), lens_features(model, task.test_firsts, mode)
            out[(name, task.name)] = probe_f1(tr, task.train_y, te, task.test_y, seed)
            log(f"  {task.name:5s} {name:12s} macro-F1 {out[(name, task.name)]:.3f}  ({time.perf_counter() - t0:.0f} s)")
    return out


def embed_speed(model, views: np.ndarray, seconds: float = 10.0) -> float:
    """Distinct packets embedded per second (dedup cannot help: every row is distinct)."""
    n, done, t0 = len(views), 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.embed(views[: min(n, 1024)], batch_size=256)
        done += min(n, 1024)
    return done / (time.perf_counter() - t0)


# --- main ------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, help="Use this pre-trained model instead of pre-training here.")
    ap.add_argument("--pretrain-minutes", type=float, default=12.0)
    ap.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    ap.add_argument("--k", type=int, default=4, help="Packets per flow.")
    ap.add_argument("--mode", default="sequence", choices=["sequence", "mean"],
                    help="Flow embedding: k packets as one input, or the mean of per-packet embeddings.")
    ap.add_argument("--per-group", type=int, default=30, help="ndpi: flows per (capture, category).")
    ap.add_argument("--per-class", type=int, default=300, help="lab: flows per class and capture.")
    ap.add_argument("--lab-seconds", type=float, default=300.0, help="Traffic duration of each lab capture.")
    ap.add_argument("--lab-captures", type=int, default=3, help="Lab captures on each side (train / test).")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "packetclip-bench-encoder",
                    help="Folder for ingested workspaces and the model (reused between runs).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    ap.add_argument("--compare-tokenisation", action="store_true")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from packetclip.encoders.data import TrafficCorpus
    from packetclip.encoders.lens import LensConfig, LensModel
    from packetclip.encoders.pretrain import PretrainSettings, pretrain

    args.work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    tasks, pre_ws, pre_files = build_tasks(args.work, args.k, args.per_group, args.per_class, args.lab_seconds,
                                           args.seed, args.lab_captures)
    for task in tasks.values():
        log(task.describe())

    def train(config: LensConfig, name: str):
        settings = PretrainSettings(seed=args.seed, steps=1_000_000)
        # this benchmark's split is by capture (pre_files: the training captures), so every flow of those
        # captures is used; the test captures are never read here
        corpus = TrafficCorpus.from_workspaces(pre_ws, view_bytes=config.view_bytes, split=None, files=pre_files)
        from packetclip.encoders.pretrain import time_steps

        per_step = time_steps(config, settings, corpus)
        settings.steps = int(max(50, args.pretrain_minutes * 60 * 0.9 / per_step))
        settings.warmup_steps = max(10, min(100, settings.steps // 10))
        settings.save_every = max(100, settings.steps // 4)
        log(f"pre-training {name}: {settings.steps} steps (~{per_step:.2f} s/step) on {len(corpus):,} packets")
        result = pretrain(pre_ws, args.work / f"model_{name}", config=config, settings=settings, overwrite=True,
                          max_seconds=args.pretrain_minutes * 60 * 1.25, progress=False, corpus=corpus)
        log(f"  done: {result.steps_done} steps in {result.seconds:.0f} s; last losses "
            + ", ".join(f"{k} {np.mean([h[k] for h in result.history[-50:]]):.3f}" for k in ("msp", "pop", "htp")))
        return LensModel.from_pretrained(result.out_dir)

    if args.compare_tokenisation:
        variants = {"byte_p4": LensConfig(size=args.size, k_packets=args.k, patch_size=4),
                    "byte_p1": LensConfig(size=args.size, k_packets=args.k, patch_size=1),
                    "bigram_p1": LensConfig(size=args.size, k_packets=args.k, tokenisation="bigram", patch_size=1)}
        models = {name: train(cfg, name) for name, cfg in variants.items()}
        scores = evaluate(tasks, models, args.mode, args.seed)
        sample = np.unique(tasks["lab"].test_firsts[:, 0], axis=0)[:1024]
        metrics = {}
        for name, model in models.items():
            for t in tasks:
                metrics[f"probe_f1_{name}_{t}"] = round(scores[(name, t)], 4)
            metrics[f"pkts_per_s_{name}"] = round(embed_speed(model, sample), 1)
        metrics["pretrain_minutes_each"] = args.pretrain_minutes
        print(json.dumps(metrics))
        return 0

    config = LensConfig(size=args.size, k_packets=args.k)
    if args.checkpoint:
        pretrained = LensModel.from_pretrained(args.checkpoint)
        config = pretrained.config
    else:
        pretrained = train(config, "pretrained")
    random_init = LensModel(config, seed=args.seed)
    scores = evaluate(tasks, {"pretrained": pretrained, "random": random_init, "hist": "hist"}, args.mode, args.seed)
    metrics = {}
    for t in ("ndpi", "lab"):
        for name in ("pretrained", "random", "hist"):
            metrics[f"probe_f1_{name}_{t}"] = round(scores[(name, t)], 4) if (name, t) in scores else None
    for t in ("ndpi", "lab"):
        if (("pretrained", t)) in scores:
            metrics[f"gain_vs_random_{t}"] = round(scores[("pretrained", t)] - scores[("random", t)], 4)
            metrics[f"gain_vs_hist_{t}"] = round(scores[("pretrained", t)] - scores[("hist", t)], 4)
    metrics.update({"mode": args.mode, "k": config.k_packets, "size": config.size,
                    "pretrain_minutes": None if args.checkpoint else args.pretrain_minutes,
                    "seconds": round(time.perf_counter() - t_start, 1)})
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
