"""Flow assembly against nDPI's ground truth: every capture in ../shared/data/ndpi, flow meter set like ndpiReader.

ndpiReader keeps one flow per 5-tuple (and VLAN) for the whole capture: no TCP FIN/RST termination, no active
timeout, and an idle purge that never fires on these short test captures; its first endpoint is the sender of
the flow's first packet. ``FlowMeter.ndpi_like()`` reproduces that, so each nDPI TCP/UDP flow should match
exactly one of our flows with the same packet count in each direction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from packetclip.errors import PacketClipError
from packetclip.traffic.datasets.join import join_ndpi
from packetclip.traffic.datasets.ndpi import read_ndpi_result
from packetclip.traffic.decode import decode_batch
from packetclip.traffic.flows import FlowMeter
from packetclip.traffic.pcap import open_capture

NDPI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ndpi"


def _captures():
    pcaps = sorted((NDPI / "pcap").glob("*")) if (NDPI / "pcap").is_dir() else []
    return [(p, NDPI / "result" / f"{p.name}.out") for p in pcaps if (NDPI / "result" / f"{p.name}.out").is_file()]


@pytest.mark.slow
def test_per_direction_packet_counts_equal_ndpi_on_all_captures():
    pairs = _captures()
    if not pairs:
        pytest.skip("../shared/data/ndpi not present")
    ours, theirs = [], []
    for pcap, result in pairs:
        meter = FlowMeter.ndpi_like()
        try:
            for batch in open_capture(pcap):
                meter.update(decode_batch(batch))
        except PacketClipError:
            pass                                        # a malformed capture keeps the flows read before the error
        flows = meter.flush()
        flows["capture"] = pcap.name
        ours.append(flows)
        nd = read_ndpi_result(result)
        nd["capture"] = pcap.name
        theirs.append(nd)
    flows = pd.concat(ours, ignore_index=True)
    ndpi = pd.concat(theirs, ignore_index=True)
    joined = join_ndpi(flows, ndpi)

    rows = joined[joined["ndpi_matched"] & joined["Protocol"].isin([6, 17])]
    same = rows["ndpi_same_direction"].to_numpy(dtype=bool)
    fwd, bwd = rows["Total Fwd Packet"].to_numpy(), rows["Total Bwd packets"].to_numpy()
    n_fwd, n_bwd = rows["ndpi_fwd_packets"].to_numpy(dtype=float), rows["ndpi_bwd_packets"].to_numpy(dtype=float)
    per_ndpi = pd.DataFrame({"row": rows["ndpi_row"].to_numpy(), "equal": (fwd == n_fwd) & (bwd == n_bwd),
                             "same": same})
    agg = per_ndpi.groupby("row").agg(segments=("equal", "size"), equal=("equal", "all"), same=("same", "all"))
    # strict: one of our flows per nDPI flow, equal counts both ways (no summing of split segments)
    strict = float(((agg["segments"] == 1) & agg["equal"]).mean())
    direction = float(agg["same"].mean())
    print(f"nDPI agreement over {len(pairs)} captures: {len(agg)} matched TCP/UDP flows, "
          f"per-direction packet counts equal for {strict:.4f}, first endpoint = our Src for {direction:.4f}, "
          f"split into several flows: {int((agg['segments'] > 1).sum())}")
    assert len(agg) > 5000
    assert strict >= 0.95
    assert direction >= 0.99
    # almost every nDPI TCP/UDP flow found a partner
    nd_tcp_udp = ndpi[ndpi["ip_proto"].isin([6, 17])]
    assert len(agg) / len(nd_tcp_udp) >= 0.97
    assert np.isfinite(strict)
