"""Ingest over a real local Ray cluster (a head and one worker node, started and stopped here) equals a plain
ingest, column for column, including a capture split into chunks; a worker killed mid-ingest loses nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from packetclip.scale.ray_ingest import ingest_captures_ray, plan_chunks  # noqa: E402
from packetclip.traffic.ingest import ingest_captures  # noqa: E402

NDPI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ndpi" / "pcap"
if not NDPI.is_dir():
    NDPI = Path("/work/shared/data/ndpi/pcap")
RAY_BIN = Path(sys.executable).with_name("ray")
CAPTURES = ["1kxun.pcap", "opera-vpn.pcapng", "reddit.pcap", "teams.pcap", "wechat.pcap", "alexa-app.pcapng"]
CHUNK = 300_000      # 1kxun (2.5 MB pcap) and opera-vpn / alexa-app (pcapng) are read in several chunks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc), so that only this test's Ray processes are ever touched."""
    parent_of = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent_of[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent_of.items() if pp == p]
        out.extend(kids)
        frontier.extend(kids)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _stop(proc: subprocess.Popen) -> None:
    family = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)            # `ray start --block` stops its node's processes on SIGTERM
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    for pid in family:                          # anything of this node still alive: by pid, never by name
        with_ok = Path(f"/proc/{pid}").exists()
        if with_ok:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _start_node(args: list[str], env: dict, log: Path) -> subprocess.Popen | None:
    """``ray start ... --block`` in its own session; the process once its node is up, None if it gave up."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(RAY_BIN), "start", *args, "--num-cpus", "1", "--block",
                                 "--disable-usage-stats"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    deadline = time.monotonic() + 120
    while b"Ray runtime started" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            return None
        time.sleep(0.3)
    return proc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not NDPI.is_dir():
        pytest.skip("nDPI captures not available")
    temp = tmp_path_factory.mktemp("r")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # a throw-away cluster on the loopback: no token authentication (its token would be shared via ~/.ray)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, "RAY_AUTH_MODE": "disabled"}
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")     # the driver (this process) too, for the module's lifetime
    head = worker = None
    try:
        # `ray start` gives a node 30 s to register; on a loaded machine that can run out: try again
        for _attempt in range(3):
            head = _start_node(["--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                                "--include-dashboard=false", "--temp-dir", str(temp)], env, temp / "head.log")
            if head is not None:
                break
        else:
            pytest.fail("ray head did not start")
        for _attempt in range(3):
            worker = _start_node(["--address", address, "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp)],
                                 env, temp / "worker.log")
            if worker is not None:
                break
        else:
            pytest.fail("ray worker node did not start")
        ray.init(address=address, log_to_driver=False)
        deadline = time.monotonic() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            if worker.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray worker node did not join")
            time.sleep(0.3)
        yield {"address": address, "worker": worker}
    finally:
        ray.shutdown()
        for proc in (worker, head):
            if proc is not None:
                _stop(proc)
        patch.undo()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    paths = [NDPI / c for c in CAPTURES]
    out = tmp_path_factory.mktemp("plain")
    ingest_captures(paths, out, progress=False, overwrite=True)
    return paths, out


def _assert_same_tables(a: Path, b: Path) -> None:
    for name in ("flows.parquet", "packets.parquet"):
        left, right = pd.read_parquet(a / name), pd.read_parquet(b / name)
        assert len(left) > 0
        pd.testing.assert_frame_equal(left, right, check_exact=True)


def test_ray_ingest_equals_plain_ingest_with_chunks(cluster, plain, tmp_path):
    paths, plain_out = plain
    chunked = [p.name for p in paths if plan_chunks(p, CHUNK) is not None]
    assert {"1kxun.pcap", "opera-vpn.pcapng", "alexa-app.pcapng"} <= set(chunked)
    ws = ingest_captures_ray(paths, tmp_path / "ws", chunk_bytes=CHUNK, progress=False)
    _assert_same_tables(plain_out, ws.root)
    report = ws.manifest["ray"]
    assert report["chunked_captures"] == len(chunked) and report["chunks"] > len(chunked)
    assert not report["failed_captures"]
    assert [c["path"] for c in ws.manifest["captures"]] == [str(p) for p in paths]
    assert ws.manifest["totals"] == {**ws.manifest["totals"], **_totals(plain_out)}


def _totals(root: Path) -> dict:
    from packetclip.traffic.workspace import Workspace

    t = Workspace.open(root).manifest["totals"]
    return {k: t[k] for k in ("packets", "flows", "stored_packets", "captures")}


def test_killed_worker_mid_ingest_loses_no_capture(cluster, plain, tmp_path):
    """A task's worker process on the worker node is killed while it runs; Ray retries it, and the
    workspace still equals the plain ingest with every capture read."""
    paths, plain_out = plain
    worker_node = cluster["worker"].pid
    for attempt in range(3):
        out: dict = {}

        def run():
            try:
                out["ws"] = ingest_captures_ray(paths, tmp_path / f"ws{attempt}", chunk_bytes=CHUNK,
                                                progress=False, max_retries=3)
            except BaseException as err:  # noqa: BLE001 (reported by the assertion below)
                out["error"] = err

        thread = threading.Thread(target=run)
        thread.start()
        killed = None
        while thread.is_alive() and killed is None:
            for pid in _children(worker_node):
                if _cmdline(pid).startswith(("ray::meter_captures", "ray::read_chunk", "ray::encode_parts")):
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed = _cmdline(pid) or "ray task"
                    except ProcessLookupError:
                        continue
                    break
            time.sleep(0.005)
        thread.join()
        assert "error" not in out, out.get("error")
        if killed is not None:
            break
    assert killed is not None, "no task ran on the worker node to be killed"
    ws = out["ws"]
    assert not ws.manifest["ray"]["failed_captures"]
    assert all(not c["error"] for c in ws.manifest["captures"])
    _assert_same_tables(plain_out, ws.root)


def test_embed_and_detect_over_ray_equal_one_process(cluster, plain, tmp_path):
    import json

    import numpy as np

    from packetclip.align import random_lens
    from packetclip.detect.api import run_detect
    from packetclip.encoders.base import load_encoder
    from packetclip.scale.ray_work import detect_captures_ray, embed_workspace_ray
    from packetclip.traffic.workspace import Workspace

    paths, plain_out = plain
    ws = Workspace.open(plain_out)
    lens = random_lens(tmp_path / "lens", seed=0)
    ids = ws.flow_ids()[:16]
    one = load_encoder(lens).embed_flows(ws, ids, cache=False)
    rows, info = embed_workspace_ray(ws.root, lens, flow_ids=ids, actors=2, batch_flows=8, progress=False,
                                     cache=False)
    assert info["workers"] == 2 and rows.shape == one.shape
    np.testing.assert_allclose(rows, one, rtol=0, atol=1e-5)

    captures = [NDPI / "synscan.pcap", NDPI / "srvloc.pcap", NDPI / "tcp_scan.pcapng"]   # captures that alert
    expected = []
    for c in captures:
        run_detect([c], alerts=tmp_path / f"{c.stem}.jsonl")
        expected += (tmp_path / f"{c.stem}.jsonl").read_text().splitlines()
    merged = detect_captures_ray(captures, alerts=tmp_path / "merged.jsonl", progress=False)
    lines = (tmp_path / "merged.jsonl").read_text().splitlines()
    assert len(expected) > 0 and merged.lines == len(lines) == len(expected)
    stamps = [json.loads(line)["timestamp"] for line in lines]
    assert stamps == sorted(stamps)
    assert sorted(lines) == sorted(expected)


def test_cli_ingest_with_ray_address(cluster, plain, tmp_path):
    paths, plain_out = plain
    small = [p for p in paths if p.name in ("reddit.pcap", "teams.pcap")]
    run = subprocess.run([sys.executable, "-m", "packetclip.cli", "ingest", *map(str, small), "--out",
                          str(tmp_path / "ws"), "--ray", cluster["address"], "-q"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    expected = tmp_path / "plain"
    ingest_captures(small, expected, progress=False)
    _assert_same_tables(expected, tmp_path / "ws")
