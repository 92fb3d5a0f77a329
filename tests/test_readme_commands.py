"""The README's commands, copied verbatim from its ```bash blocks, run in order and expected to exit 0.

Each command is run as written except for the substitutions in :data:`SMALLER` (sizes and shared data made
small so the file runs in about two minutes) and :data:`SKIPPED` (needs root or a piece not built yet).
Relative output paths (``ws/``, ``lab/``, ``kg/``, ``models/``) land in a temporary folder.
"""

from __future__ import annotations

import contextlib
import glob
import io
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from packetclip.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"

#: (regular expression, replacement) applied to every README command, in order: small sizes, small data.
SMALLER = [
    (r"--duration 10m", "--duration 20s"),
    (r"--steps 2000", "--steps 3 --save-every 0"),
    (r"--steps \d{3,}", "--steps 3"),                       # any other training command: a few steps
    (r"(encoder eval-generation \S+ \S+)$", r"\1 --max-packets 100"),
    (r"(describe lab/ --backend rules .*)$", r"\1 --limit 300 -q"),
    (r"(describe lab/ --backend openai .*)$", r"\1 --limit 2 --texts-per-flow 1 -q"),
    (r"\.\./shared/data/ndpi/pcap", "{ndpi_pcaps}"),        # three small captures (symlinks)
    (r"\.\./shared/data/ndpi/result", "{ndpi_results}"),    # their nDPI results
    (r"\.\./shared/data/cicids2017/\*\.csv", "{cic}/*.csv"),  # two small CSVs (symlinks)
    (r"^(packetclip train lab/ .*)$", r"\1 --epochs 1"),  # the reasoning bundle: one epoch
    (r"--port 8000", "--port {port}"),
    (r"http://127\.0\.0\.1:8000/v1", "http://127.0.0.1:{port}/v1"),
    (r"^(packetclip serve .*)$", r"\1 --check"),           # the console runs until stopped: check and exit
]
NDPI_SAMPLE = ("dns.pcap", "443-curl.pcap", "among_us.pcap")
CIC_SAMPLE = ("Heartbleed_11.csv", "Infiltration_36.csv")


def readme_commands() -> list[str]:
    """Lines starting with ``packetclip `` inside the README's ```bash blocks, comments removed."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("packetclip "):
                commands.append(line)
    return commands


def _skip_reason(command: str) -> str | None:
    if command.startswith("packetclip label ndpi"):
        from packetclip.traffic import datasets

        if not hasattr(datasets, "label_ndpi"):
            return "packetclip.traffic.datasets.label_ndpi is not there yet"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, out.getvalue()


def _serve(argv: list[str], cwd: Path) -> subprocess.Popen:
    """`llm serve` runs until stopped: start it aside and wait until it answers."""
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "packetclip.cli", *argv], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = argv[argv.index("--port") + 1]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`packetclip {' '.join(argv)}` exited {proc.returncode}: {proc.stdout.read()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError("llm serve did not answer within 120 s")


def test_readme_lists_the_commands_of_every_stage():
    commands = " ".join(readme_commands())
    for needle in ("packetclip ingest", "packetclip info", "packetclip split", "packetclip import-csv",
                   "packetclip lab synth", "packetclip kg build", "packetclip describe", "packetclip encoder pretrain"):
        assert needle in commands


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "ndpi").is_dir() or not (SHARED / "cicids2017").is_dir(),
                    reason="../shared/data not present")
def test_readme_commands_run_in_order(tmp_path):
    data = tmp_path / "data"
    for sub, names, src in (("pcap", NDPI_SAMPLE, SHARED / "ndpi" / "pcap"),
                            ("result", [n + ".out" for n in NDPI_SAMPLE], SHARED / "ndpi" / "result"),
                            ("cic", CIC_SAMPLE, SHARED / "cicids2017")):
        (data / sub).mkdir(parents=True)
        for name in names:
            (data / sub / name).symlink_to((src / name).resolve())
    values = {"ndpi_pcaps": str(data / "pcap"), "ndpi_results": str(data / "result"), "cic": str(data / "cic"),
              "port": str(_free_port())}
    work = tmp_path / "work"
    work.mkdir()
    server = None
    ran = []
    try:
        with contextlib.chdir(work):
            for command in readme_commands():
                reason = _skip_reason(command)
                if reason:
                    print(f"skipped: {command} ({reason})")
                    continue
                line = command
                for pattern, replacement in SMALLER:
                    line = re.sub(pattern, replacement, line)
                line = line.format(**values)
                argv = []
                for token in shlex.split(line)[1:]:
                    argv.extend(sorted(glob.glob(token)) if "*" in token else [token])
                if argv[:2] == ["llm", "serve"]:
                    server = _serve(argv, work)
                    ran.append(command)
                    continue
                started = time.perf_counter()
                code, output = _run(argv)
                assert code == 0, f"README command failed (exit {code}): {command}\nran: {line}\n{output[-3000:]}"
                print(f"{time.perf_counter() - started:6.1f} s  {line}")
                ran.append(command)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    assert len(ran) >= 10
