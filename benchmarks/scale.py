"""Scale-out on this machine: packets/s of ingest and flows/s of embedding with 1 vs 2 Ray workers (a local
Ray started with 1, then 2 CPUs), and steps/s of alignment training with 1 vs 2 ``torchrun`` ranks (gloo, CPU).

The peer is the single-process path, run in the same process: ``ingest_captures`` (plain ingest) and the
encoder's own ``embed_flows``. Every timed run is the second of two (the first starts Ray's workers, fills
numba's and the text encoder's caches). Inputs: the ``--captures`` largest nDPI captures listed ``--repeat`` times (one task each), the
flows of the resulting workspace (embedding with a randomly initialised tiny Lens: speed does not depend on the
weights), a 60 s lab workspace (DDP: ``--steps`` steps of global batch 128).

This box's 2 cores are shared: the load average (``uptime``) before and after each part is printed and kept in
the JSON, because a speed-up measured while other jobs run says more about them than about us.

Last line: one JSON object with ``ingest_speedup_2w``, ``embed_speedup_2w``, ``ddp_speedup_2r`` and the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NDPI = ROOT.parent / "shared" / "data" / "ndpi" / "pcap"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def ray_ingest_rate(captures, work: Path, cpus: int) -> dict:
    from packetclip.scale.cluster import ray_session
    from packetclip.scale.ray_ingest import ingest_captures_ray

    session = ray_session("local", num_cpus=cpus)
    session.__enter__()
    try:
        ingest_captures_ray(captures, work / f"warm{cpus}", progress=False, overwrite=True)
        before = load()
        t0 = time.perf_counter()
        ws = ingest_captures_ray(captures, work / f"ray{cpus}", progress=False, overwrite=True)
        seconds = time.perf_counter() - t0
    finally:
        session.__exit__(None, None, None)
    packets = ws.manifest["totals"]["packets"]
    return {"packets": packets, "seconds": seconds, "pkts_per_s": packets / seconds, "load_before": before,
            "load_after": load()}


def ray_embed_rate(ws_root: Path, encoder: Path, cpus: int, flow_ids) -> dict:
    from packetclip.scale.cluster import ray_session
    from packetclip.scale.ray_work import embed_workspace_ray

    session = ray_session("local", num_cpus=cpus)
    session.__enter__()
    try:
        embed_workspace_ray(ws_root, encoder, flow_ids=flow_ids[:cpus * 64], actors=cpus, progress=False,
                            cache=False)
        before = load()
        _, info = embed_workspace_ray(ws_root, encoder, flow_ids=flow_ids, actors=cpus, progress=False,
                                      cache=False)
    finally:
        session.__exit__(None, None, None)
    return {"flows": info["flows"], "seconds": info["seconds"], "flows_per_s": info["flows"] / info["seconds"],
            "load_before": before, "load_after": load()}


def ddp_rate(lab: Path, work: Path, ranks: int, steps: int) -> dict:
    torchrun = Path(sys.executable).with_name("torchrun")
    out = work / f"ddp{ranks}"
    before = load()
    run = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", str(ranks), "-m", "packetclip.scale.ddp",
                          "align", str(lab), "--traffic", "flow", "--steps", str(steps), "--batch-size", "128",
                          "--save-every", "0", "--out", str(out)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if run.returncode != 0:
        raise SystemExit(f"torchrun failed: {run.stderr[-1500:]}")
    log = json.loads((out / "ddp_log.json").read_text())
    return {"steps": log["steps"], "train_seconds": log["train_seconds"], "steps_per_s": log["steps_per_s"],
            "zero_shot_top1": log["zero_shot"]["top1"], "load_before": before, "load_after": load()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captures", type=int, default=8, help="largest nDPI captures to ingest (one task each)")
    parser.add_argument("--repeat", type=int, default=4, help="times the capture list is repeated")
    parser.add_argument("--embed-flows", type=int, default=1536, help="flows to embed per timed run")
    parser.add_argument("--steps", type=int, default=300, help="DDP steps per timed run")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: ingest, embed, ddp")
    args = parser.parse_args()
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from packetclip.align import random_lens
    from packetclip.traffic.ingest import ingest_captures

    skip = set(filter(None, args.skip.split(",")))
    largest = sorted(NDPI.glob("*.pcap*"), key=lambda p: p.stat().st_size, reverse=True)[:args.captures]
    captures = largest * args.repeat        # each listed capture is one task; repeats give every task real work
    work = Path(tempfile.mkdtemp(prefix="packetclip-bench-scale-"))
    result: dict = {"machine_cores": os.cpu_count(), "load_start": load()}
    try:
        ws_root = work / "plain"
        ingest_captures(captures[:2], work / "plain-warm", progress=False)     # numba's caches, imports
        t0 = time.perf_counter()
        ws = ingest_captures(captures, ws_root, progress=False)
        plain_s = time.perf_counter() - t0
        result["ingest_plain_pkts_per_s"] = ws.manifest["totals"]["packets"] / plain_s
        if "ingest" not in skip:
            one, two = ray_ingest_rate(captures, work, 1), ray_ingest_rate(captures, work, 2)
            result.update(ingest_1w=one, ingest_2w=two, ingest_speedup_2w=two["pkts_per_s"] / one["pkts_per_s"])
            print(f"ingest: plain {result['ingest_plain_pkts_per_s']:,.0f} pkts/s, ray 1 worker "
                  f"{one['pkts_per_s']:,.0f}, 2 workers {two['pkts_per_s']:,.0f} pkts/s", flush=True)
        if "embed" not in skip:
            encoder = random_lens(work / "lens", seed=0)
            from packetclip.encoders.base import load_encoder

            ids = ws.flow_ids()[:args.embed_flows]
            enc = load_encoder(encoder)
            enc.embed_flows(ws, ids[:64], cache=False)
            t0 = time.perf_counter()
            enc.embed_flows(ws, ids, cache=False)
            result["embed_plain_flows_per_s"] = len(ids) / (time.perf_counter() - t0)
            views = ws.packet_views(ids, first_k=getattr(enc.config, "k_packets", 4))
            per_flow = len(views) / max(1, len(ids)) if hasattr(views, "__len__") else float("nan")
            one, two = ray_embed_rate(ws_root, encoder, 1, ids), ray_embed_rate(ws_root, encoder, 2, ids)
            result.update(embed_1w=one, embed_2w=two, embed_speedup_2w=two["flows_per_s"] / one["flows_per_s"],
                          embed_packets_per_flow=per_flow,
                          embed_pkts_per_s_1w=one["flows_per_s"] * per_flow,
                          embed_pkts_per_s_2w=two["flows_per_s"] * per_flow)
            print(f"embed: plain {result['embed_plain_flows_per_s']:,.1f} flows/s, ray 1 worker "
                  f"{one['flows_per_s']:,.1f}, 2 workers {two['flows_per_s']:,.1f} flows/s", flush=True)
        if "ddp" not in skip:
            from packetclip.lab.synth import SynthLab
            from packetclip.language.describe import Describer
            from packetclip.language.workspace import describe_workspace
            from packetclip.traffic.splits import split_workspace

            lab = work / "lab"
            SynthLab(duration_s=60, seed=1).generate(lab, progress=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                split_workspace(lab, by="flow", seed=0)
            describe_workspace(lab, Describer("rules", per_flow=2, seed=0), limit=600)
            ddp_rate(lab, work, 1, 20)                                    # warm the caches
            one, two = ddp_rate(lab, work, 1, args.steps), ddp_rate(lab, work, 2, args.steps)
            result.update(ddp_1r=one, ddp_2r=two, ddp_speedup_2r=two["steps_per_s"] / one["steps_per_s"])
            print(f"ddp: 1 rank {one['steps_per_s']:.1f} steps/s, 2 ranks {two['steps_per_s']:.1f} steps/s "
                  f"(zero-shot top-1 {one['zero_shot_top1']:.4f} vs {two['zero_shot_top1']:.4f})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_end"] = load()
    print(json.dumps(result, default=lambda x: float(x) if isinstance(x, np.floating) else str(x)))


if __name__ == "__main__":
    main()
