"""Scale-out on this machine: packets/s of ingest and flows/s of embedding with 1 vs 2 Ray workers (a local
Ray started with 1, then 2 CPUs), and steps/s of alignment training and Lens pre-training with 1 vs 2
``torchrun`` ranks (gloo, CPU).

Inputs. Ingest: ``--captures`` captures of realistic size, each the 303 Ethernet pcaps of the nDPI set played
one after another (an hour apart, so no flow spans two) ``--reps`` times — the nDPI files themselves are tens of
kB, where per-task costs, not ingest, would be measured. Embedding: the flows of one such capture (one
repetition), a randomly initialised tiny Lens (speed does not depend on the weights). DDP: a 60 s lab workspace,
``--steps`` alignment steps of global batch 512 (at 128 a step is ~20 ms of compute and the gradient exchange
dominates), ``--lens-steps`` Lens pre-training steps of the default global batch (8 + 16 + 16 examples).

What is timed. Ingest: the second of two runs per worker count (the first starts Ray's workers and fills numba's
caches); the driver's CPU seconds are kept too (its serial share caps the speed-up). Embedding: the actors are
started once per worker count and timed apart (``startup_s``); the steady state is a timed call on warm actors
(after a warm-up call) — both are reported. The peers (plain ``ingest_captures``, the encoder's own
``embed_flows``) run in this process.

This box's 2 cores are shared: the load average (``uptime``) before and after each part is printed and kept in
the JSON, because a speed-up measured while other jobs run says more about them than about us.

Last line: one JSON object with ``ingest_speedup_2w``, ``embed_speedup_2w`` (steady state),
``embed_speedup_2w_with_startup``, ``ddp_speedup_2r`` (alignment), ``lens_speedup_2r`` (Lens pre-training,
same global batch) and the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
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


def merged_template(folder: Path):
    """Every Ethernet, microsecond, little-endian classic pcap of ``folder`` as one record stream: (record bytes,
    offsets of their ts_sec fields, ts_sec values on one clock, the clock's span)."""
    import numpy as np

    parts, positions, seconds = [], [], []
    pos = clock = 0
    for f in sorted(folder.glob("*.pcap")):
        b = f.read_bytes()
        if len(b) < 24 or struct.unpack_from("<I", b, 0)[0] != 0xA1B2C3D4 or struct.unpack_from("<I", b, 20)[0] != 1:
            continue
        p, secs, offs = 24, [], []
        while p + 16 <= len(b):
            sec, _usec, incl, _orig = struct.unpack_from("<IIII", b, p)
            if incl > 262144 or p + 16 + incl > len(b):
                break
            secs.append(sec)
            offs.append(p)
            p += 16 + incl
        if not secs:
            continue
        secs_a = np.asarray(secs, np.int64)
        seconds.append(secs_a - secs_a.min() + clock)
        positions.append(np.asarray(offs, np.int64) - 24 + pos)
        clock += int(secs_a.max() - secs_a.min()) + 3600      # an hour apart: no flow continues into the next file
        parts.append(b[24:p])
        pos += p - 24
    return b"".join(parts), np.concatenate(positions), np.concatenate(seconds), clock


def write_capture(path: Path, template, reps: int, start: int) -> None:
    """The template's records ``reps`` times, one after another in time, as a classic pcap."""
    import numpy as np

    body, positions, seconds, span = template
    arr = np.frombuffer(body, np.uint8).copy()
    at = positions[:, None] + np.arange(4)
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for r in range(reps):
            arr[at] = (seconds + start + r * span).astype("<u4").view(np.uint8).reshape(-1, 4)
            out.write(arr.tobytes())


def ray_ingest_rate(captures, work: Path, cpus: int) -> dict:
    from packetclip.scale.cluster import ray_session
    from packetclip.scale.ray_ingest import ingest_captures_ray

    with ray_session("local", num_cpus=cpus):
        ingest_captures_ray(captures, work / f"warm{cpus}", progress=False, overwrite=True)
        shutil.rmtree(work / f"warm{cpus}", ignore_errors=True)
        before = load()
        cpu0, t0 = time.process_time(), time.perf_counter()
        ws = ingest_captures_ray(captures, work / f"ray{cpus}", progress=False, overwrite=True)
        seconds, driver_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    manifest = ws.manifest
    shutil.rmtree(ws.root, ignore_errors=True)
    packets = manifest["totals"]["packets"]
    return {"packets": packets, "seconds": seconds, "pkts_per_s": packets / seconds, "driver_cpu_s": driver_cpu,
            "bundles": manifest["ray"]["bundles"], "load_before": before, "load_after": load()}


def ray_embed_rate(ws_root: Path, encoder: Path, cpus: int, flow_ids) -> dict:
    from packetclip.scale.cluster import ray_session
    from packetclip.scale.ray_work import EmbedPool, embed_workspace_ray

    with ray_session("local", num_cpus=cpus), EmbedPool(ws_root, encoder, actors=cpus) as pool:
        embed_workspace_ray(ws_root, encoder, flow_ids=flow_ids[:cpus * 32], pool=pool, progress=False,
                            cache=False)                                  # every actor has run once
        before = load()
        _, info = embed_workspace_ray(ws_root, encoder, flow_ids=flow_ids, pool=pool, progress=False, cache=False)
    return {"flows": info["flows"], "seconds": info["seconds"], "flows_per_s": info["flows"] / info["seconds"],
            "startup_s": pool.startup_seconds,
            "flows_per_s_with_startup": info["flows"] / (info["seconds"] + pool.startup_seconds),
            "load_before": before, "load_after": load()}


def ddp_rate(lab: Path, work: Path, ranks: int, steps: int, batch: int = 512) -> dict:
    torchrun = Path(sys.executable).with_name("torchrun")
    out = work / f"ddp{ranks}"
    before = load()
    run = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", str(ranks), "-m", "packetclip.scale.ddp",
                          "align", str(lab), "--traffic", "flow", "--steps", str(steps), "--batch-size", str(batch),
                          "--save-every", "0", "--out", str(out)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if run.returncode != 0:
        raise SystemExit(f"torchrun failed: {run.stderr[-1500:]}")
    log = json.loads((out / "ddp_log.json").read_text())
    return {"steps": log["steps"], "global_batch": log["global_batch"], "train_seconds": log["train_seconds"],
            "steps_per_s": log["steps_per_s"], "zero_shot_top1": log["zero_shot"]["top1"], "load_before": before, "load_after": load()}


def _lab_ready(lab: Path) -> bool:
    from packetclip.errors import PacketClipError
    from packetclip.traffic.workspace import Workspace

    try:
        return Workspace.open(lab).has("descriptions")
    except PacketClipError:
        return False


def lens_rate(lab: Path, work: Path, ranks: int, steps: int) -> dict:
    """Lens pre-training steps/s (global batch fixed: 8 span, 16 order, 16 same-flow examples per step)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    out = work / f"lens{ranks}"
    shutil.rmtree(out, ignore_errors=True)
    before = load()
    run = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", str(ranks), "-m", "packetclip.scale.ddp",
                          "lens", str(lab), "--steps", str(steps), "--save-every", "0", "--out", str(out)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if run.returncode != 0:
        raise SystemExit(f"torchrun failed: {run.stderr[-1500:]}")
    log = json.loads((out / "ddp_log.json").read_text())
    return {"steps": log["steps"], "train_seconds": log["train_seconds"], "steps_per_s": log["steps_per_s"],
            "final_total_loss": log["final"].get("total"), "load_before": before, "load_after": load()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captures", type=int, default=8, help="captures to ingest (one task each)")
    parser.add_argument("--reps", type=int, default=3, help="times each capture plays the nDPI pcaps")
    parser.add_argument("--embed-flows", type=int, default=1536, help="flows to embed per timed run")
    parser.add_argument("--steps", type=int, default=200, help="alignment DDP steps per timed run")
    parser.add_argument("--lens-steps", type=int, default=12, help="Lens pre-training steps per timed run")
    parser.add_argument("--lab", default=None, help="a prepared DDP lab workspace (made here when missing: "
                        "60 s SynthLab seed 1, split by flow, 600 rule descriptions)")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: ingest, embed, ddp, lens")
    args = parser.parse_args()
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from packetclip.align import random_lens
    from packetclip.traffic.ingest import ingest_captures

    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="packetclip-bench-scale-"))
    result: dict = {"machine_cores": os.cpu_count(), "load_start": load()}
    try:
        template = merged_template(NDPI)
        captures = []
        for i in range(args.captures):
            captures.append(work / f"merged{i}.pcap")
            write_capture(captures[-1], template, args.reps, 1_600_000_000 + i * 10_000_000)
        write_capture(work / "embed.pcap", template, 1, 1_500_000_000)
        result["ingest_bytes"] = sum(c.stat().st_size for c in captures)
        if "ingest" not in skip:
            ingest_captures(captures[:1], work / "plain-warm", progress=False)     # numba's caches, imports
            before = load()
            t0 = time.perf_counter()
            ws = ingest_captures(captures, work / "plain", progress=False)
            plain_s = time.perf_counter() - t0
            result["ingest_plain"] = {"packets": ws.manifest["totals"]["packets"], "seconds": plain_s,
                                      "pkts_per_s": ws.manifest["totals"]["packets"] / plain_s,
                                      "load_before": before, "load_after": load()}
            shutil.rmtree(work / "plain", ignore_errors=True)
            one, two = ray_ingest_rate(captures, work, 1), ray_ingest_rate(captures, work, 2)
            result.update(ingest_1w=one, ingest_2w=two, ingest_speedup_2w=two["pkts_per_s"] / one["pkts_per_s"])
            print(f"ingest: plain {result['ingest_plain']['pkts_per_s']:,.0f} pkts/s, ray 1 worker "
                  f"{one['pkts_per_s']:,.0f}, 2 workers {two['pkts_per_s']:,.0f} pkts/s (driver CPU "
                  f"{one['driver_cpu_s']:.2f} / {two['driver_cpu_s']:.2f} s of {one['seconds']:.2f} / "
                  f"{two['seconds']:.2f} s)", flush=True)
        if "embed" not in skip:
            from packetclip.encoders.base import load_encoder

            ws_root = work / "embed-ws"
            ws = ingest_captures([work / "embed.pcap"], ws_root, progress=False)
            encoder = random_lens(work / "lens", seed=0)
            ids = ws.flow_ids()[:args.embed_flows]
            enc = load_encoder(encoder)
            enc.embed_flows(ws, ids[:64], cache=False)
            before = load()
            t0 = time.perf_counter()
            enc.embed_flows(ws, ids, cache=False)
            result["embed_plain"] = {"flows_per_s": len(ids) / (time.perf_counter() - t0), "load_before": before,
                                     "load_after": load()}
            one, two = ray_embed_rate(ws_root, encoder, 1, ids), ray_embed_rate(ws_root, encoder, 2, ids)
            result.update(embed_1w=one, embed_2w=two, embed_speedup_2w=two["flows_per_s"] / one["flows_per_s"],
                          embed_speedup_2w_with_startup=two["flows_per_s_with_startup"]
                          / one["flows_per_s_with_startup"])
            print(f"embed: plain {result['embed_plain']['flows_per_s']:,.1f} flows/s, warm ray 1 actor "
                  f"{one['flows_per_s']:,.1f}, 2 actors {two['flows_per_s']:,.1f} flows/s (actor start-up "
                  f"{one['startup_s']:.1f} / {two['startup_s']:.1f} s)", flush=True)
        if "ddp" not in skip:
            from packetclip.lab.synth import SynthLab
            from packetclip.language.describe import Describer
            from packetclip.language.workspace import describe_workspace
            from packetclip.traffic.splits import split_workspace

            lab = Path(args.lab) if args.lab else work / "lab"
            if not _lab_ready(lab):
                SynthLab(duration_s=60, seed=1).generate(lab, progress=False, overwrite=True)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    split_workspace(lab, by="flow", seed=0)
                describe_workspace(lab, Describer("rules", per_flow=2, seed=0), limit=600)
            ddp_rate(lab, work, 1, 20)                                    # warm the caches
            one, two = ddp_rate(lab, work, 1, args.steps), ddp_rate(lab, work, 2, args.steps)
            result.update(ddp_1r=one, ddp_2r=two, ddp_speedup_2r=two["steps_per_s"] / one["steps_per_s"])
            print(f"ddp: 1 rank {one['steps_per_s']:.1f} steps/s, 2 ranks {two['steps_per_s']:.1f} steps/s "
                  f"(zero-shot top-1 {one['zero_shot_top1']:.4f} vs {two['zero_shot_top1']:.4f})", flush=True)
            if "lens" not in skip:
                lens_rate(lab, work, 1, 2)                                  # warm the caches
                one, two = lens_rate(lab, work, 1, args.lens_steps), lens_rate(lab, work, 2, args.lens_steps)
                result.update(lens_1r=one, lens_2r=two, lens_speedup_2r=two["steps_per_s"] / one["steps_per_s"])
                print(f"lens pre-training: 1 rank {one['steps_per_s']:.2f} steps/s, 2 ranks "
                      f"{two['steps_per_s']:.2f} steps/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_end"] = load()
    print(json.dumps(result, default=lambda x: float(x) if isinstance(x, np.floating) else str(x)))


if __name__ == "__main__":
    main()
