"""packetclip detect vs the classic ML-NIDS pipeline (nfstream 6.6 flows + XGBoost, alerting at flow expiry).

Capture: a lab synth capture of another seed than the detector's training (``--seed``, default 11; 420 s
with floods of 3-8 k packets/s for 30-90 s: 1.86 M packets), followed by the nDPI benign captures the default
model held out (when ``--ndpi`` exists). Generated once into ``--cache`` (``bench-lab-SEED-SECONDS``, with
``bench.json`` saying how long it took) and reused. One core: every child process runs with one thread
(OMP/OpenBLAS/numba = 1, nfstream ``n_meters=1``).

Figures (children are separate processes so that peak RSS is each run's own):

- ``detect_pkts_per_s``: packets / CPU seconds of the detector process (read + decode + flow meter + early
  features + model + alerts); ``detect_pkts_per_s_wall`` the same over wall time (the machine may be shared);
- ``alert_latency_p99_ms``: per new alert, wall time from the read of the batch holding the packet that raised
  it to its EVE line being written and flushed to a file (``alerts.jsonl`` in the cache; ``--batch-packets``
  bounds it); ``early_``/``expiry_alert_latency_p99_ms`` split it by alerts raised at a decision packet and at
  a flow's end (timeout, eviction at the flow cap, end of capture: measured from the read of the batch whose
  packet time ended the flow);
- ``median_packets_to_detect``: packets of an attack flow (its first packet is labelled attack by the lab)
  seen when it first alerted, over attack flows that alerted; ``attack_flow_recall`` the share that did;
  ``benign_flow_alert_share`` the share of benign-started flows that alerted;
- ``peak_rss_mb_1m`` / ``peak_rss_mb_5m``: peak RSS of a detector process streaming the capture once /
  ``--passes`` times back to back in one stream (timestamps shifted, one flow meter: a 5x longer stream of the
  same traffic), without evaluation hooks;
- ``peer_pkts_per_s``: packets / CPU seconds (nfstream parent + meter processes) of NFStreamer
  (statistical_analysis=True, n_dissections=0) + XGBoost predicting every expired flow (in chunks of 1,024);
  ``peer_median_packets_to_detect``: bidirectional packets of attack flows it flagged (it can only alert at
  expiry). The peer's XGBoost is trained on nfstream features of the detector's training lab, labelled by
  5-tuple from the lab's packet labels.

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- data -----------------------------------------------------------------------------------------------

def prepare(args) -> dict:
    from packetclip.lab.synth import SynthLab

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    lab = cache / f"bench-lab-{args.seed}-{int(args.duration)}"
    if not (lab / "packet_labels.parquet").is_file():
        c0, t0 = time.process_time(), time.perf_counter()
        r = SynthLab(duration_s=args.duration, seed=args.seed, classes="all", flood_rate_pps=(3000.0, 8000.0),
                     flood_duration_s=(30.0, 90.0)).generate(lab, progress=False, ingest=False, overwrite=True)
        (lab / "bench.json").write_text(json.dumps({"packets": r.packets, "cpu_s": round(time.process_time() - c0, 1),
                                                    "wall_s": round(time.perf_counter() - t0, 1)}))
    model = Path(args.model) if args.model else None
    if model is None:
        from packetclip.detect.scorer import DEFAULT_MODEL

        model = DEFAULT_MODEL if (DEFAULT_MODEL / "config.json").is_file() else cache / "model"
    if not (model / "config.json").is_file():
        from packetclip.detect.train import train_default

        train_default(model, work=cache, ndpi=args.ndpi if Path(args.ndpi).is_dir() else None)
    info = json.loads((model / "config.json").read_text()).get("info", {})
    extra = []
    if Path(args.ndpi).is_dir():
        held = set(info.get("benign_held_out", []))
        extra = sorted(str(p) for p in Path(args.ndpi).rglob("*") if p.name in held)
    train_lab = cache / f"lab-{info.get('lab_seed', 7)}-{int(info.get('lab_duration_s', 300))}"
    if not args.no_peer and not (train_lab / "packet_labels.parquet").is_file():     # the peer trains on it
        SynthLab(duration_s=float(info.get("lab_duration_s", 300)), seed=int(info.get("lab_seed", 7)),
                 classes="all").generate(train_lab, progress=False, ingest=False, overwrite=True)
    gen = json.loads((lab / "bench.json").read_text()) if (lab / "bench.json").is_file() else {}
    return {"lab": str(lab), "model": str(model), "extra": extra, "train_lab": str(train_lab), "lab_gen": gen}


class ReplaySource:
    """A capture streamed ``passes`` times as one source, each pass shifted after the previous one ends."""

    def __init__(self, path: str, passes: int, batch_packets: int):
        from packetclip.traffic.stream import CaptureSource

        self.path, self.passes, self.batch_packets = path, passes, batch_packets
        self.name = Path(path).name
        self._cap = CaptureSource

    def __iter__(self):
        shift, number = 0, 0
        for _ in range(self.passes):
            last = None
            first = None
            for batch in self._cap(self.path, batch_packets=self.batch_packets):
                if first is None:
                    first = int(batch.ts_ns[0])
                batch.ts_ns = batch.ts_ns + shift
                batch.first_packet_number = number
                number += len(batch)
                last = int(batch.ts_ns[-1])
                yield batch
            shift = last - first + 1_000_000_000        # ``last`` is already shifted


# --- children ---------------------------------------------------------------------------------------------

def child_detect(args, data: dict) -> dict:
    import pandas as pd

    from packetclip.detect.pipeline import Detector
    from packetclip.detect.scorer import load_scorer
    from packetclip.traffic.stream import FlowUpdate

    from packetclip.detect.alerts import AlertSink

    scorer = load_scorer(data["model"])
    # compile the numba kernels and touch every code path outside the timed run
    _warmup(scorer, [str(Path(data["lab"]) / "capture.pcap")] + data["extra"][:1])
    evaluate = args.child == "measure"
    alerts = Path(args.cache) / f"alerts-{args.child}-{os.getpid()}.jsonl"
    sink = AlertSink(alerts)           # a real file, flushed per line: the latency includes the write
    det = Detector(scorer, sinks=[sink], batch_packets=args.batch_packets, record=evaluate,
                   max_open_flows=args.max_open)
    hook = None
    truth = {}
    if evaluate:
        pl = pd.read_parquet(Path(data["lab"]) / "packet_labels.parquet", columns=["packet_number", "label"])
        lab = np.full(int(pl["packet_number"].max()) + 1, 0, np.int8)
        lab[pl["packet_number"].to_numpy()] = (pl["label"].to_numpy() != "Benign").astype(np.int8)
        state = {"max": -1, "attack": [], "benign": 0}

        def hook(event):
            if not isinstance(event, FlowUpdate) or event.source_index != 0:
                return
            sel = np.flatnonzero(event.flow_id > state["max"])
            if not len(sel):
                return
            fids, first = np.unique(event.flow_id[sel], return_index=True)
            rows = sel[first]
            attack = lab[np.minimum(rows + int(event.batch.first_packet_number), len(lab) - 1)] == 1
            state["attack"].append(fids[attack])
            state["benign"] += int((~attack).sum())
            state["max"] = int(fids.max())
        truth = state
    capture = str(Path(data["lab"]) / "capture.pcap")
    sources = [ReplaySource(capture, args.passes, args.batch_packets)] + ([] if args.passes > 1 else data["extra"])
    c0, t0 = _cpu(), time.perf_counter()
    res = det.run(sources, on_event=hook)
    cpu, wall = _cpu() - c0, time.perf_counter() - t0
    sink.close()
    alerts.unlink()
    out = {"packets": res.packets, "flows": res.flows, "alerts": res.alerts, "eve_lines": res.lines,
           "per_mission": res.per_mission, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
           "pkts_per_s": res.packets / max(cpu, 1e-9), "pkts_per_s_wall": res.packets / max(wall, 1e-9),
           "rss_mb": _rss_mb()}
    if res.latencies_ms:
        lat, at_exp = np.asarray(res.latencies_ms), np.asarray(res.latency_at_expiry, bool)
        out["latency_p50_ms"] = float(np.percentile(lat, 50))
        out["latency_p99_ms"] = float(np.percentile(lat, 99))
        out["latency_max_ms"] = float(lat.max())
        cpu_lat = np.asarray(res.latencies_cpu_ms)
        out["latency_cpu_p50_ms"] = float(np.percentile(cpu_lat, 50))
        out["latency_cpu_p99_ms"] = float(np.percentile(cpu_lat, 99))
        for name, sel in (("early", ~at_exp), ("expiry", at_exp)):
            out[f"{name}_alerts"] = int(sel.sum())
            if sel.any():
                out[f"{name}_latency_p99_ms"] = float(np.percentile(lat[sel], 99))
    out["open_flow_cap"] = det.stream_settings.max_open_flows
    out["peak_open_flows"] = res.peak_tracked_flows
    if evaluate:
        attack = np.concatenate(truth["attack"]) if truth["attack"] else np.zeros(0, np.int64)
        fa = res.first_alerts
        src0 = fa["source"] == 0
        # a flow's first alert only (a flow whose slot was reused by a newer flow can be recorded again)
        alerted, first = np.unique(fa["flow_id"][src0], return_index=True)
        n_at = fa["n"][src0][first]
        is_attack = np.isin(alerted, attack)
        out["median_packets_to_detect"] = float(np.median(n_at[is_attack])) if is_attack.any() else None
        out["attack_flows"] = int(len(attack))
        out["attack_flow_recall"] = float(is_attack.sum() / max(len(attack), 1))
        out["benign_flow_alert_share"] = float((~is_attack).sum() / max(truth["benign"], 1))
        out["extra_capture_alerts"] = int((fa["source"] > 0).sum())
    return out


def _warmup(scorer, paths: list[str]) -> None:
    from packetclip.detect.pipeline import Detector

    class _Head:
        name = "warmup"

        def __init__(self, path):
            self.path = path

        def __iter__(self):
            from packetclip.traffic.stream import CaptureSource

            for k, b in enumerate(CaptureSource(self.path, batch_packets=2048)):
                yield b
                if k >= 2:
                    return

    Detector(scorer, max_open_flows=64).run([_Head(p) for p in paths])      # a tiny cap: eviction compiled too


# --- peer ---------------------------------------------------------------------------------------------------

def _nf_columns(df):
    skip = {"id", "expiration_id", "src_ip", "src_mac", "src_oui", "dst_ip", "dst_mac", "dst_oui", "vlan_id",
            "tunnel_id", "application_name", "application_category_name", "requested_server_name",
            "client_fingerprint", "server_fingerprint", "user_agent", "content_type", "bidirectional_first_seen_ms",
            "bidirectional_last_seen_ms", "src2dst_first_seen_ms", "src2dst_last_seen_ms", "dst2src_first_seen_ms",
            "dst2src_last_seen_ms", "src_port", "application_is_guessed", "application_confidence", "ip_version"}
    return [c for c in df.columns if c not in skip and df[c].dtype.kind in "iufb"]


def _keys_from_packets(capture: str):
    """Canonical bidirectional 5-tuple string per pcap record (packet_number = record index)."""
    import pandas as pd

    from packetclip.traffic.decode import decode_batch, format_ips
    from packetclip.traffic.pcap import open_capture

    parts = []
    for b in open_capture(capture, batch_packets=65536):
        decode_batch(b)
        ok = b.status == 0
        src = format_ips(b.src_hi[ok], b.src_lo[ok]).astype(str)
        dst = format_ips(b.dst_hi[ok], b.dst_lo[ok]).astype(str)
        a = pd.Series(src) + ":" + pd.Series(b.sport[ok].astype(str))
        c = pd.Series(dst) + ":" + pd.Series(b.dport[ok].astype(str))
        lo, hi = a.where(a < c, c), c.where(a < c, a)
        parts.append(pd.DataFrame({"packet_number": np.flatnonzero(ok) + int(b.first_packet_number),
                                   "key": pd.Series(b.proto[ok].astype(str)) + "|" + lo + "|" + hi}))
    return pd.concat(parts, ignore_index=True)


def _flow_keys(df):
    a = df["src_ip"].astype(str) + ":" + df["src_port"].astype(str)
    c = df["dst_ip"].astype(str) + ":" + df["dst_port"].astype(str)
    lo, hi = a.where(a < c, c), c.where(a < c, a)
    return df["protocol"].astype(str) + "|" + lo + "|" + hi


def _key_labels(lab: str):
    import pandas as pd

    keys = _keys_from_packets(str(Path(lab) / "capture.pcap"))
    pl = pd.read_parquet(Path(lab) / "packet_labels.parquet", columns=["packet_number", "label"])
    k = keys.merge(pl, on="packet_number")
    k["attack"] = k["label"] != "Benign"
    k = k.sort_values(["key", "attack"], ascending=[True, False]).drop_duplicates("key")
    return k.set_index("key")["label"]


def child_peer(args, data: dict) -> dict:
    import xgboost as xgb
    from nfstream import NFStreamer

    def stream(path):
        return NFStreamer(source=path, statistical_analysis=True, n_dissections=0, n_meters=1,
                          idle_timeout=120, active_timeout=1800)

    # training (not timed): nfstream features of the detector's training lab, labelled by 5-tuple
    import pandas as pd

    values, names = [], None             # iterated, not to_pandas(): that leaves a temporary CSV in the cwd
    for f in stream(str(Path(data["train_lab"]) / "capture.pcap")):
        names = names or list(f.keys())
        values.append(f.values())
    train = pd.DataFrame(values, columns=names).infer_objects()
    labels = _key_labels(data["train_lab"]).reindex(_flow_keys(train)).fillna("Benign").to_numpy()
    cols = _nf_columns(train)
    classes = sorted(set(labels))
    y = np.array([classes.index(c) for c in labels])
    booster = xgb.train({"objective": "multi:softprob", "num_class": len(classes), "max_depth": 6, "eta": 0.3,
                         "nthread": 1, "tree_method": "hist", "seed": 0},
                        xgb.DMatrix(train[cols].to_numpy(np.float32), label=y), num_boost_round=60)
    benign = classes.index("Benign")
    # timed: stream + predict at expiry
    c0, t0 = _cpu(), time.perf_counter()
    packets, flagged, chunk, rows = 0, [], [], []

    def flush():
        if not chunk:
            return
        X = np.asarray(chunk, np.float32)
        p = booster.inplace_predict(X).reshape(len(X), -1)
        hit = p.argmax(axis=1) != benign
        flagged.extend(r for r, h in zip(rows, hit) if h)
        chunk.clear()
        rows.clear()

    sources = [str(Path(data["lab"]) / "capture.pcap")] + data["extra"]
    at = None
    for si, path in enumerate(sources):
        for f in stream(path):
            if at is None:
                names = list(f.keys())
                at = [names.index(c) for c in cols]
            packets += f.bidirectional_packets
            v = f.values()
            chunk.append([v[i] for i in at])
            rows.append((si, f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.protocol, f.bidirectional_packets))
            if len(chunk) >= 1024:
                flush()
    flush()
    cpu, wall = _cpu() - c0, time.perf_counter() - t0
    # evaluation (not timed)
    fl = pd.DataFrame(flagged, columns=["si", "src_ip", "src_port", "dst_ip", "dst_port", "protocol", "n"])
    fl = fl[fl["si"] == 0]
    lab_of = _key_labels(data["lab"])
    truth = lab_of.reindex(_flow_keys(fl)).fillna("Benign").to_numpy() if len(fl) else np.array([])
    att = truth != "Benign"
    return {"pkts_per_s": packets / max(cpu, 1e-9), "pkts_per_s_wall": packets / max(wall, 1e-9),
            "packets": int(packets), "flagged_flows": int(len(flagged)),
            "median_packets_to_detect": float(np.median(fl["n"].to_numpy()[att])) if att.any() else None,
            "flagged_attack_flows": int(att.sum()), "rss_mb": _rss_mb()}


# --- main ---------------------------------------------------------------------------------------------------

def _run_child(mode: str, args, extra=()) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--cache", args.cache, "--seed", str(args.seed),
           "--duration", str(args.duration), "--ndpi", args.ndpi, "--batch-packets", str(args.batch_packets),
           "--max-open", str(args.max_open), *extra]
    if args.model:
        cmd += ["--model", args.model]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child {mode} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from packetclip.util.cache import cache_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=str(cache_dir("bench-detect")), help="folder for the capture and models")
    ap.add_argument("--seed", type=int, default=11, help="lab seed of the test capture (training uses 7)")
    ap.add_argument("--duration", type=float, default=420.0, help="lab capture seconds")
    ap.add_argument("--min-packets", type=int, default=1_000_000, help="refuse a smaller test capture")
    ap.add_argument("--passes", type=int, default=5, help="passes over the capture for peak_rss_mb_5m")
    ap.add_argument("--batch-packets", type=int, default=2048, help="detector batch size")
    ap.add_argument("--max-open", type=int, default=1 << 16, help="detector's cap on open flows")
    ap.add_argument("--measure-only", action="store_true", help="only the measured detector run (no RSS, no peer)")
    ap.add_argument("--model", default=None, help="detector model folder (default: shipped, else trained here)")
    ap.add_argument("--ndpi", default=str(ROOT.parent / "shared" / "data" / "ndpi" / "pcap"),
                    help="nDPI captures (held-out benign ones are appended to the test capture)")
    ap.add_argument("--no-peer", action="store_true", help="skip nfstream + XGBoost")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    data = prepare(args)
    if args.child in ("measure", "rss"):
        print(json.dumps(child_detect(args, data)))
        return
    if args.child == "peer":
        print(json.dumps(child_peer(args, data)))
        return
    m = _run_child("measure", args, ["--passes", "1"])
    if args.measure_only:
        print(json.dumps(m))
        return
    if m["packets"] < args.min_packets:
        raise SystemExit(f"test capture has {m['packets']:,} packets < --min-packets {args.min_packets:,}")
    r1 = _run_child("rss", args, ["--passes", "1"])
    r5 = _run_child("rss", args, ["--passes", str(args.passes)]) if args.passes > 1 else None
    peer = None if args.no_peer else _run_child("peer", args)
    print(json.dumps({"measure": m, "rss_1": r1, "rss_n": r5, "peer": peer}), file=sys.stderr)
    result = {
        "detect_pkts_per_s": round(m["pkts_per_s"]),
        "detect_pkts_per_s_wall": round(m["pkts_per_s_wall"]),
        "alert_latency_p99_ms": round(m.get("latency_p99_ms", float("nan")), 1),
        "alert_latency_p50_ms": round(m.get("latency_p50_ms", float("nan")), 1),
        "alert_latency_max_ms": round(m.get("latency_max_ms", float("nan")), 1),
        # the same per alert in the detector thread's CPU time: what one free core gives (wall/CPU > 1 = shared)
        "alert_latency_cpu_p99_ms": round(m.get("latency_cpu_p99_ms", float("nan")), 1),
        "alert_latency_cpu_p50_ms": round(m.get("latency_cpu_p50_ms", float("nan")), 1),
        "early_alert_latency_p99_ms": round(m.get("early_latency_p99_ms", float("nan")), 1),
        "expiry_alert_latency_p99_ms": round(m.get("expiry_latency_p99_ms", float("nan")), 1),
        "early_alerts": m.get("early_alerts"), "expiry_alerts": m.get("expiry_alerts"),
        "path": "flow features + early MLP (packet encoder not on the default path)",
        "open_flow_cap": m.get("open_flow_cap"), "peak_open_flows_5x": r5.get("peak_open_flows") if r5 else None,
        "median_packets_to_detect": m["median_packets_to_detect"],
        "attack_flow_recall": round(m["attack_flow_recall"], 4),
        "benign_flow_alert_share": round(m["benign_flow_alert_share"], 5),
        "alerts": m["alerts"], "eve_lines": m["eve_lines"], "packets": m["packets"],
        "peak_rss_mb_1m": round(r1["rss_mb"], 1),
        f"peak_rss_mb_{args.passes}x": round(r5["rss_mb"], 1) if r5 else None,
        "rss_packets_1m": r1["packets"], f"rss_packets_{args.passes}x": r5["packets"] if r5 else None,
        "peer_pkts_per_s": round(peer["pkts_per_s"]) if peer else None,
        "peer_pkts_per_s_wall": round(peer["pkts_per_s_wall"]) if peer else None,
        "peer_median_packets_to_detect": peer["median_packets_to_detect"] if peer else None,
        "batch_packets": args.batch_packets, "model": data["model"],
        "lab_generation": data["lab_gen"], "detect_cpu_s": m["cpu_s"], "detect_wall_s": m["wall_s"],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if r5 and args.passes == 5:
        result["peak_rss_mb_5m"] = result.pop("peak_rss_mb_5x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
