"""The shipped detector on real captures it was never trained on: nDPI's scan captures and benign applications.

- Scan captures (``synscan.pcap``: ~2k nmap SYN probes; ``tcp_scan.pcapng``: NULL/FIN/XMAS probes): every flow
  is a probe, so ``recon_recall`` is the share of their flows that raised a Reconnaissance alert
  (``any_alert_recall``: any mission).
- Benign captures: the nDPI captures the default model's recipe held out (``benign_held_out`` in its
  config.json: split by capture, never trained or calibrated on); ``benign_fpr`` is the share of their flows
  that raised any alert, ``benign_alerts_per_capture`` the alerts (aggregated EVE alerts) per capture, and
  ``benign_captures_with_alerts`` how many captures raised any.

Goals (issue 12): ``recon_recall`` >= 0.9 with ``benign_fpr`` <= 0.01. ``scan_median_packets_to_detect``: packets
of a scan flow seen before its first alert. ``--curve``: the same figures at every FPR the model is calibrated for
(the trade-off, under ``curve``). One core; last line: one JSON object.

    python benchmarks/detect_generalisation.py [--model MODEL] [--fpr 0.001] [--curve] [--ndpi ../shared/data/ndpi/pcap]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SCANS = ("synscan.pcap", "tcp_scan.pcapng")


def scan_capture(scorer, path: Path, fpr) -> dict:
    """Flows of one capture and the first alert (flow id, mission) of each flow that alerted."""
    from packetclip.detect.pipeline import Detector

    res = Detector(scorer, fpr=fpr, record=True).run([path])
    fa = res.first_alerts
    fids, first = np.unique(fa["flow_id"], return_index=True) if len(fa["flow_id"]) else (np.zeros(0), [])
    missions = fa["mission"][first] if len(fids) else np.zeros(0, object)
    n = fa["n"][first] if len(fids) else np.zeros(0)
    return {"flows": res.flows, "packets": res.packets, "alerted_flows": int(len(fids)), "alerts": res.alerts,
            "per_mission_flows": {str(m): int((missions == m).sum()) for m in np.unique(missions)},
            "first_alert_n": [int(x) for x in n]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="detector model folder (default: the shipped one)")
    ap.add_argument("--fpr", type=float, default=None, help="calibrated target FPR (default: the model's)")
    ap.add_argument("--curve", action="store_true", help="also every calibrated FPR (trade-off curve)")
    ap.add_argument("--ndpi", default=str(ROOT.parent / "shared" / "data" / "ndpi" / "pcap"),
                    help="folder of the nDPI captures")
    args = ap.parse_args()
    from packetclip.detect.scorer import load_scorer

    ndpi = Path(args.ndpi)
    if not ndpi.is_dir():
        raise SystemExit(f"no nDPI captures at {ndpi}")
    scorer = load_scorer(args.model)
    held = set(scorer.info.get("benign_held_out", []))
    if not held:
        raise SystemExit("the model lists no held-out benign captures (benign_held_out); train it with the recipe")
    t0 = time.perf_counter()
    out = figures(scorer, ndpi, held, args.fpr, verbose=True)
    if args.curve:
        out["curve"] = [{k: v for k, v in figures(scorer, ndpi, held, float(f)).items() if k in CURVE_KEYS}
                        for f in sorted(scorer.calibration, key=float)]
    out.update(wall_s=round(time.perf_counter() - t0, 1), model=str(args.model or "shipped default"))
    print(json.dumps(out))


CURVE_KEYS = ("fpr", "recon_recall", "recon_recall_per_capture", "benign_fpr", "benign_alerted_flows",
              "benign_captures_with_alerts", "benign_alerts_per_capture", "scan_median_packets_to_detect")


def figures(scorer, ndpi: Path, held: set, fpr, verbose: bool = False) -> dict:
    """The benchmark's figures at one calibrated FPR (None: the model's default)."""
    scans = {name: scan_capture(scorer, ndpi / name, fpr) for name in SCANS if (ndpi / name).is_file()}
    benign = {}
    for path in sorted(p for p in ndpi.rglob("*") if p.name in held):
        benign[path.name] = scan_capture(scorer, path, fpr)
    scan_flows = sum(s["flows"] for s in scans.values())
    recon = sum(s["per_mission_flows"].get("Reconnaissance", 0) for s in scans.values())
    any_alert = sum(s["alerted_flows"] for s in scans.values())
    b_flows = sum(b["flows"] for b in benign.values())
    b_alerted = sum(b["alerted_flows"] for b in benign.values())
    per_capture = {k: v["alerts"] for k, v in benign.items() if v["alerts"]}
    if verbose:
        print(json.dumps({"scans": {k: {a: b for a, b in v.items() if a != "first_alert_n"} for k, v in scans.items()},
                          "benign_with_alerts": {k: benign[k] for k in per_capture}}), file=sys.stderr)
    th = scorer.thresholds(fpr)
    n = [x for s in scans.values() for x in s["first_alert_n"]]
    return {
        "recon_recall": round(recon / max(scan_flows, 1), 4),
        "any_alert_recall": round(any_alert / max(scan_flows, 1), 4),
        "recon_recall_per_capture": {k: round(v["per_mission_flows"].get("Reconnaissance", 0) / max(v["flows"], 1), 4)
                                     for k, v in scans.items()},
        "scan_flows": scan_flows,
        "scan_median_packets_to_detect": float(np.median(n)) if n else None,
        "benign_fpr": round(b_alerted / max(b_flows, 1), 5),
        "benign_flows": b_flows, "benign_alerted_flows": b_alerted, "benign_captures": len(benign),
        "benign_captures_with_alerts": len(per_capture),
        "benign_alerts_per_capture": round(sum(v["alerts"] for v in benign.values()) / max(len(benign), 1), 4),
        "benign_alerts_by_capture": per_capture,
        "fpr": fpr if fpr is not None else scorer.info.get("default_fpr"),
        "thresholds": {k: round(v, 4) for k, v in th.items()},
    }


if __name__ == "__main__":
    main()
