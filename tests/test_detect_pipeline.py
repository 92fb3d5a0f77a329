"""Detector plumbing without a model: per-alert latency taken when the line is written, interval closing by heap."""

import io
import json
import time

from packetclip.detect.alerts import Aggregator, AlertSink

NS = 1_000_000_000


def _add(agg, src, dst, ts_s, fine="SYN Flood", mission="DoS"):
    return agg.add(src=src, dst=dst, fine=fine, mission=mission, ts_ns=int(ts_s * NS), flows=1, packets=1,
                   decisions=1, score=0.9,
                   make_base=lambda: ({"event_type": "alert", "timestamp": ""}, {"mission": mission}))


def test_latency_is_taken_per_new_alert_when_its_line_is_written():
    out = io.StringIO()
    agg = Aggregator([AlertSink(stream=out)], interval_s=60)
    agg.trigger_wall, agg.trigger_cpu = time.perf_counter() - 0.005, time.thread_time()
    _add(agg, 1, 2, 0.0)
    _add(agg, 1, 2, 1.0)                 # same key: grows the alert, no new line, no latency
    agg.trigger_expiry = True
    _add(agg, 3, 4, 2.0)
    assert agg.alerts == 2 and len(out.getvalue().splitlines()) == 2
    assert len(agg.latencies_ms) == 2 and len(agg.latencies_cpu_ms) == 2
    assert all(x >= 5.0 for x in agg.latencies_ms)            # counted from the trigger, not from add()
    assert agg.latency_at_expiry == [False, True]


def test_intervals_close_in_time_order_and_a_reopened_key_stays_open():
    out = io.StringIO()
    agg = Aggregator([AlertSink(stream=out)], interval_s=10)
    first = _add(agg, 1, 2, 0.0)
    _add(agg, 1, 2, 5.0)                 # two decisions: a final line is due when the interval closes
    _add(agg, 5, 6, 8.0)
    agg.close_until(int(9 * NS))
    assert len(agg.open) == 2
    agg.close_until(int(10 * NS))        # the first alert's interval [0, 10) ended
    assert len(agg.open) == 1
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["packetclip"]["aggregate"]["status"] for x in lines] == ["new", "new", "final"]
    assert lines[-1]["packetclip"]["aggregate"]["alert_id"] == first
    again = _add(agg, 1, 2, 11.0)        # the same key opens a new alert with its own interval
    assert again != first
    agg.close_until(int(18.5 * NS))      # the (5, 6) alert closes (one decision: no final line), not the new one
    assert list(agg.open) == [(1, 2, "SYN Flood")]
    agg.close_until(int(21 * NS))
    assert not agg.open and not agg._ends
