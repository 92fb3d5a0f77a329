"""packetclip detect --interface on real traffic: a veth pair whose far end lives in a network namespace, a
port scan sent from the namespace with real sockets. Root only (skipped otherwise, with the reason)."""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from packetclip.detect.alerts import validate

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 (network namespace + veth pair)")

SCAN = """
import socket
for port in range(1, 400):
    s = socket.socket()
    s.settimeout(0.05)
    try:
        s.connect(("10.231.0.1", port))
    except OSError:
        pass
    s.close()
"""


@pytest.fixture
def veth():
    tag = uuid.uuid4().hex[:6]
    ns, host, peer = f"pc{tag}", f"pch{tag}", f"pcp{tag}"

    def ip(*args, check=True):
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)

    try:
        ip("netns", "add", ns)
    except subprocess.CalledProcessError as err:
        pytest.skip(f"cannot create a network namespace here: {err.stderr.strip()}")
    try:
        ip("link", "add", host, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", ns)
        ip("addr", "add", "10.231.0.1/24", "dev", host)
        ip("link", "set", host, "up")
        ip("-n", ns, "addr", "add", "10.231.0.2/24", "dev", peer)
        ip("-n", ns, "link", "set", peer, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        yield ns, host
    finally:
        ip("link", "del", host, check=False)
        ip("netns", "del", ns, check=False)


def test_live_port_scan_on_veth(veth, tmp_path):
    ns, host = veth
    out = tmp_path / "alerts.jsonl"
    det = subprocess.Popen([sys.executable, "-m", "packetclip.cli", "detect", "--interface", host, "--duration", "8",
                            "--alerts", str(out), "--quiet", "--interval", "5"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # scan again and again until the detector (whose start-up time depends on the machine) has stopped
    deadline = time.monotonic() + 240
    while det.poll() is None and time.monotonic() < deadline:
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SCAN], check=True, timeout=60)
    stdout, stderr = det.communicate(timeout=120)
    assert det.returncode == 0, stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    assert "packets" in stdout and not stdout.startswith("0 packets"), (stdout, stderr)
    assert lines, f"no alert for a 400-port scan; detector said: {stdout.strip()} {stderr.strip()}"
    assert all(validate(x) == [] for x in lines)
    recon = [x for x in lines if x["packetclip"]["mission"] == "Reconnaissance"]
    assert recon and recon[0]["src_ip"] == "10.231.0.2"


def test_missing_interface_is_one_line_exit_2():
    r = subprocess.run([sys.executable, "-m", "packetclip.cli", "detect", "--interface", "pcnone0"],
                       capture_output=True, text=True, timeout=300)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "pcnone0" in lines[0]
