"""Live lab: schedule, safety rules, label assignment and refusals (always); a real run (opt-in, root).

The real run needs root, Linux, the tools of ``packetclip lab install`` and PACKETCLIP_LIVE_TESTS=1
(``make lab-test``); it takes about 4 minutes (every class, paper and extended), so ``make test`` skips it.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from packetclip.errors import PacketClipError
from packetclip.lab import live_tools
from packetclip.lab.live_plan import (AMP_NAME, ATTACK_BASE, BENIGN_PROFILES, KILL_AFTER_S, ROLE_ATTACKER,
                                      ROLE_BENIGN, ROLE_OTHER, ROLE_VICTIM, SERVER_IP, SUBNET, LiveConfig,
                                      assign_packet_labels, benign_actions, benign_step, check_bounded, dns_query,
                                      ip_to_int, plan_schedule)
from packetclip.traffic.labels import ALL_CLASSES, EXTENDED_CLASSES, FINE_CLASSES

IP_RE = __import__("re").compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


# -- schedule ---------------------------------------------------------------------------------------


def _argvs(episodes):
    return [step.argv for ep in episodes for step in ep.steps]


def test_schedule_covers_all_classes_and_is_seeded():
    a = plan_schedule(LiveConfig(duration_s=180, seed=7))
    b = plan_schedule(LiveConfig(duration_s=180, seed=7))
    c = plan_schedule(LiveConfig(duration_s=180, seed=8))
    assert {ep.label for ep in a} == set(ALL_CLASSES)
    assert _argvs(a) == _argvs(b)
    assert [ep.planned_start_s for ep in a] == [ep.planned_start_s for ep in b]
    assert _argvs(a) != _argvs(c)
    hosts = [ep.host_ip for ep in a] + [ep.sender_ip for ep in a if ep.sender_ip]
    assert len(hosts) == len(set(hosts)), "every episode has its own address, so the address names the episode"
    assert SERVER_IP not in hosts
    assert all(ipaddress.ip_address(h) in SUBNET for h in hosts)
    benign = [ep for ep in a if ep.label == "Benign"]
    assert [ep.scenario for ep in benign] == list(BENIGN_PROFILES)
    assert all(ep.lane == -1 and ep.planned_end_s == 180 for ep in benign)


def test_schedule_fits_the_duration_and_lanes_do_not_overlap():
    for seed in range(6):
        cfg = LiveConfig(duration_s=150, seed=seed, classes=FINE_CLASSES, max_lanes=3)
        eps = [ep for ep in plan_schedule(cfg) if ep.lane >= 0]
        assert len(eps) == 9
        assert all(ep.planned_start_s >= cfg.warmup_s - 1e-6 for ep in eps)
        assert all(ep.planned_end_s <= cfg.duration_s - cfg.tail_s + 1e-6 for ep in eps)
        for lane in {ep.lane for ep in eps}:
            mine = sorted((ep for ep in eps if ep.lane == lane), key=lambda e: e.planned_start_s)
            for prev, nxt in zip(mine, mine[1:]):
                assert nxt.planned_start_s >= prev.planned_end_s - 1e-6
            assert all(ep.planned_end_s - ep.planned_start_s == pytest.approx(ep.bound_s, abs=1e-2) for ep in mine)
        assert max(ep.lane for ep in eps) < cfg.max_lanes


def test_too_short_duration_is_refused_with_the_minimum():
    with pytest.raises(PacketClipError, match=r"too short.*--duration \d+s"):
        plan_schedule(LiveConfig(duration_s=30, seed=7))
    with pytest.raises(PacketClipError, match="unknown class"):
        plan_schedule(LiveConfig(duration_s=300, classes=("Benign", "Teleport")))


def test_longer_runs_repeat_each_attack_class():
    eps = plan_schedule(LiveConfig(duration_s=600, seed=3))
    counts = pd.Series([ep.label for ep in eps if ep.lane >= 0]).value_counts()
    assert set(counts.index) == set(ALL_CLASSES) - {"Benign"}
    assert (counts == 2).all()
    used = [ep.host_ip for ep in eps] + [ep.sender_ip for ep in eps if ep.sender_ip]
    # 36 attack episodes, the two reflections with a second address (their sender)
    assert ipaddress.ip_address(max(used, key=ip_to_int)) == ipaddress.ip_address(f"10.203.0.{ATTACK_BASE + 37}")


def test_extended_classes_run_their_real_tools():
    eps = [ep for seed in range(3) for ep in plan_schedule(LiveConfig(duration_s=180, seed=seed))
           if ep.label in EXTENDED_CLASSES]
    tools = {}
    for ep in eps:
        tools.setdefault(ep.label, set()).update(step.argv[3] for step in ep.steps)
    assert tools["HTTP Flood"] <= {"siege", "ab"} and tools["ACK Flood"] == {"hping3"}
    assert tools["Reflection Amplification"] == {"nping"} and tools["IoT Brute Force"] == {"ncrack"}
    assert tools["Slow HTTP"] == {"slowhttptest"} and tools["HTTP Brute Force"] == {"hydra"}
    assert tools["UDP Scan"] == tools["Ping Sweep"] == tools["Service Scan"] == {"nmap"}
    for ep in eps:
        argvs = [step.argv for step in ep.steps]
        if ep.label == "Reflection Amplification":
            # the queries carry the victim's address (which names the episode); the sender has its own
            assert ep.sender_ip and ep.sender_ip != ep.host_ip and ep.runner_ip == ep.sender_ip
            for argv in argvs:
                assert argv[argv.index("-S") + 1] == ep.host_ip
                query = bytes.fromhex(argv[argv.index("--data") + 1])
                assert AMP_NAME.encode() in query and query[-11:-8] == b"\x00\x00\x29"   # EDNS0 OPT
        else:
            assert not ep.sender_ip and ep.runner_ip == ep.host_ip
        if ep.label == "Ping Sweep":
            target = argvs[0][-1]
            first, last = target.split("-")
            assert first == SERVER_IP and int(last) < ATTACK_BASE, "the sweep never reaches attack hosts"
        if ep.label == "Slow HTTP":
            assert {"-B", "-X"} & set(argvs[0])
        if ep.label == "UDP Scan":
            assert "-sU" in argvs[0]
        if ep.label == "Service Scan":
            assert "-sV" in argvs[0] and "--script" not in argvs[0]
    assert dns_query("a.b", 255, 7)[:2] == b"\x00\x07"


def test_paper_classes_only():
    eps = plan_schedule(LiveConfig(duration_s=150, seed=1, classes=FINE_CLASSES))
    assert {ep.label for ep in eps} == set(FINE_CLASSES)
    assert not any(ep.sender_ip for ep in eps)


def test_a_subset_of_classes_and_no_dnsperf():
    eps = plan_schedule(LiveConfig(duration_s=60, classes=("Benign", "DNS Flood"), use_dnsperf=False))
    flood = [ep for ep in eps if ep.label == "DNS Flood"]
    assert len(flood) == 1 and flood[0].steps[0].argv[3] == "dig"
    assert flood[0].steps[0].files, "the query file travels with the step"
    queries = next(iter(flood[0].steps[0].files.values())).split()
    assert len(queries) == 2 * flood[0].params["queries"]


# -- safety rules -----------------------------------------------------------------------------------


def test_every_planned_and_benign_command_is_bounded_and_aims_only_at_the_lab():
    for seed in range(5):
        for ep in plan_schedule(LiveConfig(duration_s=300, seed=seed)):
            for step in ep.steps:
                argv = step.argv
                check_bounded(argv, files=step.files)
                assert argv[:2] == ["timeout", f"--kill-after={KILL_AFTER_S}"]
                assert float(argv[2]) <= step.bound_s + 1
                ips = {ip for a in argv + list(step.files.values()) for ip in IP_RE.findall(a)}
                # a reflection spoofs its victim (its own episode address); a sweep names a range from the server
                assert ips == ({SERVER_IP, ep.host_ip} if ep.sender_ip else {SERVER_IP}), (ep.label, argv)
                if argv[3] == "hping3":
                    assert "-c" in argv and "-i" in argv and "--flood" not in argv
                if argv[3] == "nmap":
                    assert "--max-retries" in argv and "--host-timeout" in argv
    rng = random.Random(0)
    for profile in BENIGN_PROFILES:
        for action in set(benign_actions(profile)):
            step = benign_step(profile, action, rng, host_ip="10.203.0.10", remaining_s=50)
            check_bounded(step.argv)
            assert {ip for a in step.argv for ip in IP_RE.findall(a)} == {SERVER_IP}


@pytest.mark.parametrize("argv, why", [
    (["hping3", "-S", "-c", "10", "-i", "u100", SERVER_IP], "timeout"),
    (["timeout", "--kill-after=3", "10", "hping3", "-S", "--flood", "-c", "10", "-i", "u100", SERVER_IP], "--flood"),
    (["timeout", "--kill-after=3", "10", "hping3", "-S", "-i", "u100", SERVER_IP], "-c"),
    (["timeout", "--kill-after=3", "10", "hping3", "-S", "-c", "10", SERVER_IP], "-i"),
    (["timeout", "--kill-after=3", "10", "hping3", "-S", "-c", "10", "-i", "u10", SERVER_IP], "50"),
    (["timeout", "--kill-after=3", "10", "hping3", "-S", "-a", "10.203.0.7", "-c", "10", "-i", "u100", SERVER_IP],
     "-a"),
    (["timeout", "--kill-after=3", "10", "hping3", "-S", "--rand-source", "-c", "9", "-i", "u100", SERVER_IP],
     "rand-source"),
    (["timeout", "--kill-after=3", "10", "hping3", "-S", "-c", "10", "-i", "u100", "8.8.8.8"], "outside"),
    (["timeout", "--kill-after=3", "10", "nmap", "-sS", "--max-retries", "1", SERVER_IP], "host-timeout"),
    (["timeout", "--kill-after=3", "10", "nmap", "-sS", "--max-retries", "1", "--host-timeout", "5s",
      "10.203.1.0/24"], "outside"),
    (["timeout", "--kill-after=3", "10", "nmap", "-iR", "5", "--max-retries", "1", "--host-timeout", "5s",
      SERVER_IP], "-iR"),
    (["timeout", "--kill-after=3", "10", "curl", "--max-time", "5", "http://example.com/"], "URL host"),
    (["timeout", "--kill-after=3", "10", "curl", "http://10.203.0.1/"], "--max-time"),
    (["timeout", "--kill-after=3", "10", "rm", "-rf", SERVER_IP], "not one the live lab runs"),
    (["timeout", "--kill-after=3", "10000", "dig", "+tries=1", "+time=1", f"@{SERVER_IP}", "x"], "bound"),
    (["timeout", "--kill-after=3", "10", "dig", f"@{SERVER_IP}", "x.lab.iot"], "tries"),
    (["timeout", "--kill-after=3", "10", "slowhttptest", "-c", "50000", "-l", "10", "-u", f"http://{SERVER_IP}/"],
     "2000"),
    (["timeout", "--kill-after=3", "10", "hydra", "-t", "64", "-w", "5", "-L", "u", "-P", "p", f"ssh://{SERVER_IP}"],
     "16 tasks"),
    (["timeout", "--kill-after=3", "10", "dnsperf", "-s", SERVER_IP, "-n", "5", "-l", "5", "-Q", "9"], "-n 1"),
    (["timeout", "--kill-after=3", "10", "nmap", "--max-retries", "1", "--host-timeout", "5s"], "no explicit"),
    (["timeout", "--kill-after=3", "10", "nmap", "-sn", "--max-retries", "1", "--host-timeout", "5s",
      "10.203.0.0/16"], "larger than the lab subnet"),
    (["timeout", "--kill-after=3", "10", "nmap", "-sn", "--max-retries", "1", "--host-timeout", "5s",
      "10.203.0.40-7"], "ascending range"),
    (["timeout", "--kill-after=3", "10", "nping", "--udp", "-S", "192.168.1.5", "-c", "10", "--rate", "10",
      SERVER_IP], "outside"),
    (["timeout", "--kill-after=3", "10", "nping", "--udp", "-c", "0", "--rate", "10", SERVER_IP], "never stop"),
    (["timeout", "--kill-after=3", "10", "nping", "--udp", "-c", "10", SERVER_IP], "--rate"),
    (["timeout", "--kill-after=3", "10", "ncrack", "-U", "u", "-P", "p", f"mqtt://{SERVER_IP}:1883"], "to="),
    (["timeout", "--kill-after=3", "10", "ab", "-n", "900000", "-c", "5", "-s", "5", f"http://{SERVER_IP}/"],
     "-n must be"),
    (["timeout", "--kill-after=3", "10", "siege", "-c", "10", "-t", "5M", f"http://{SERVER_IP}/"], "seconds"),
])
def test_check_bounded_rejects_unbounded_or_outside_commands(argv, why):
    with pytest.raises(ValueError, match=__import__("re").escape(why)):
        check_bounded(argv)


def test_check_bounded_reads_the_files_a_step_writes():
    argv = ["timeout", "--kill-after=3", "10", "siege", "-c", "10", "-t", "5S", "-f", "{work}/urls.txt"]
    check_bounded(argv, files={"urls.txt": f"http://{SERVER_IP}/?a=1\nhttp://{SERVER_IP}/upload POST a=b\n"})
    with pytest.raises(ValueError, match="URL host"):
        check_bounded(argv, files={"urls.txt": f"http://{SERVER_IP}/\nhttp://example.com/\n"})
    with pytest.raises(ValueError, match="outside"):
        check_bounded(argv, files={"urls.txt": "http://10.9.0.1/\n"})
    with pytest.raises(ValueError, match="no explicit"):
        check_bounded(argv)


# -- labels from the schedule -----------------------------------------------------------------------


def test_assign_packet_labels_by_client_address_and_window():
    s = 1_000_000_000
    server = ip_to_int(SERVER_IP)
    benign, atk1, atk2, stranger = (ip_to_int(x) for x in ("10.203.0.10", "10.203.0.100", "10.203.0.101",
                                                           "10.203.0.77"))
    windows = [{"host": benign, "start_ns": 0, "end_ns": 100 * s, "benign": True},
               {"host": atk1, "start_ns": 10 * s, "end_ns": 20 * s, "benign": False},
               {"host": atk2, "start_ns": 30 * s, "end_ns": 40 * s, "benign": False}]
    rows = [  # ts, src, dst, expected episode, role, in window
        (5 * s, benign, server, 0, ROLE_BENIGN, True),
        (15 * s, server, benign, 0, ROLE_BENIGN, True),
        (15 * s, atk1, server, 1, ROLE_ATTACKER, True),
        (15 * s, server, atk1, 1, ROLE_VICTIM, True),
        (9 * s + s // 2 + 1, atk1, server, 1, ROLE_ATTACKER, True),    # just inside the 0.5 s lead
        (24 * s, server, atk1, 1, ROLE_VICTIM, True),                  # late reply, inside the 5 s tail
        (90 * s, atk1, server, 1, ROLE_ATTACKER, False),               # the host's only episode, out of window
        (35 * s, atk2, server, 2, ROLE_ATTACKER, True),
        (35 * s, stranger, server, -1, ROLE_OTHER, False),             # unknown host
        (35 * s, 0, 0, -1, ROLE_OTHER, False),                         # ARP and other non-IP frames
        (15 * s, atk1, benign, 1, ROLE_ATTACKER, True),                # a sweep reaching a benign host ...
        (15 * s, benign, atk1, 1, ROLE_VICTIM, True),                  # ... and its answer: the sweep's
    ]
    ts, src, dst, ep, role, inw = (np.array(col) for col in zip(*rows))
    got_ep, got_role, got_in = assign_packet_labels(ts, src, dst, windows)
    assert got_ep.tolist() == ep.tolist()
    assert got_role.tolist() == role.tolist()
    assert got_in.tolist() == inw.tolist()


def test_assign_packet_labels_picks_the_episode_whose_window_holds_the_time():
    s = 1_000_000_000
    host = ip_to_int("10.203.0.100")
    windows = [{"host": host, "start_ns": 0, "end_ns": 10 * s, "benign": False},
               {"host": host, "start_ns": 100 * s, "end_ns": 110 * s, "benign": False}]
    ts = np.array([1 * s, 105 * s, 60 * s, 40 * s])
    ep, _, inw = assign_packet_labels(ts, np.full(4, host), np.full(4, ip_to_int(SERVER_IP)), windows)
    assert ep.tolist() == [0, 1, 1, 0]
    assert inw.tolist() == [True, True, False, False]


# -- refusals, doctor, install ----------------------------------------------------------------------


def _which_without(*missing):
    return lambda name: None if name in missing else f"/usr/bin/{name}"


def test_refuses_when_not_linux_not_root_or_tools_missing():
    with pytest.raises(PacketClipError, match="needs Linux"):
        live_tools.require_live_environment(system="Darwin", root=True, which=_which_without())
    with pytest.raises(PacketClipError, match="needs root"):
        live_tools.require_live_environment(system="Linux", root=False, which=_which_without())
    with pytest.raises(PacketClipError) as err:
        live_tools.require_live_environment(system="Linux", root=True, which=_which_without("hping3", "hydra", "ssh"))
    text = err.value.one_line()
    assert "hping3 (hping3)" in text and "hydra (hydra)" in text and "ssh (openssh-client)" in text
    assert "packetclip lab install" in text
    assert "\n" not in str(err.value)
    # dnsperf is optional (the DNS flood falls back to a dig loop)
    live_tools.require_live_environment(system="Linux", root=True, which=_which_without("dnsperf"))


def test_missing_packages_are_listed_once_and_optional_ones_on_request():
    which = _which_without("ssh", "ssh-keygen", "dnsperf", "ip")
    assert live_tools.missing_packages(which) == ["iproute2", "openssh-client", "dnsperf"]
    assert live_tools.missing_packages(which, include_optional=False) == ["iproute2", "openssh-client"]
    assert live_tools.install_missing(which=_which_without(), runner=None) == []
    assert live_tools.install_missing(which=which, dry_run=True, runner=None) == \
        ["iproute2", "openssh-client", "dnsperf"]
    rows = live_tools.doctor_rows(which)
    assert {r["binary"] for r in rows if r["path"] is None} == {"ssh", "ssh-keygen", "dnsperf", "ip"}


@pytest.mark.skipif(platform.system() != "Linux" or live_tools.find_binary("apt-get") is None
                    or not (live_tools.is_root() or Path("/usr/sbin/policy-rc.d").exists()),
                    reason="needs a Debian-like Linux with apt-get (and root, or an existing policy-rc.d)")
def test_install_runs_apt_get_noninteractively_and_reports_failure():
    calls = []
    installed = {"done": False}

    def which(name):
        return f"/usr/bin/{name}" if installed["done"] or name not in ("hping3", "hydra") else None

    def runner(argv, env):
        calls.append((argv, env))
        if argv[1] == "install":
            installed["done"] = True
        return subprocess.CompletedProcess(argv, 0)

    assert live_tools.install_missing(which=which, runner=runner, root=True) == ["hping3", "hydra"]
    assert [c[0][:2] for c in calls] == [["apt-get", "update"], ["apt-get", "install"]]
    assert calls[1][0][-2:] == ["hping3", "hydra"] and "-y" in calls[1][0]
    assert all(env["DEBIAN_FRONTEND"] == "noninteractive" for _, env in calls)

    def failing(argv, env):
        return subprocess.CompletedProcess(argv, 100)

    with pytest.raises(PacketClipError, match="exit code 100"):
        live_tools.install_missing(which=_which_without("hydra"), runner=failing, root=True)
    with pytest.raises(PacketClipError, match="needs root"):
        live_tools.install_missing(which=_which_without("hydra"), runner=failing, root=False)


def test_cli_doctor_lists_every_tool(capsys):
    from packetclip.cli import main

    with pytest.raises(SystemExit) as code:
        main(["lab", "doctor"])
    out = capsys.readouterr().out
    assert code.value.code in (0, 1)
    for tool in live_tools.LIVE_TOOLS:
        assert tool.binary in out and tool.package in out


def test_cli_live_refuses_with_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    from packetclip.cli import main

    monkeypatch.setattr(live_tools, "find_binary", _which_without("hping3", "slowhttptest"))
    with pytest.raises(SystemExit) as code:
        main(["lab", "live", "--out", str(tmp_path / "live"), "--duration", "2m"])
    assert code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("packetclip: error: lab live needs")
    if platform.system() == "Linux" and live_tools.is_root():
        assert "hping3 (hping3)" in err and "slowhttptest (slowhttptest)" in err and "lab install" in err


def test_cli_help_has_examples():
    from typer.testing import CliRunner

    from packetclip.cli import app

    for cmd in ("live", "doctor", "install"):
        result = CliRunner().invoke(app, ["lab", cmd, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output, cmd


# -- a real run (opt-in) ----------------------------------------------------------------------------

LIVE = os.environ.get("PACKETCLIP_LIVE_TESTS") == "1"


def _live_skip_reason() -> str | None:
    if not LIVE:
        return "live lab test is opt-in: run `make lab-test` (PACKETCLIP_LIVE_TESTS=1, root, lab tools)"
    if platform.system() != "Linux":
        return "live lab needs Linux"
    if not live_tools.is_root():
        return "live lab needs root"
    missing = live_tools.missing_tools()
    if missing:
        return "missing lab tools: " + ", ".join(t.binary for t in missing) + " (run `packetclip lab install`)"
    return None


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    reason = _live_skip_reason()
    if reason:
        pytest.skip(reason)
    from packetclip.lab.live import LiveLab

    out = tmp_path_factory.mktemp("live")
    result = LiveLab(duration_s=float(os.environ.get("PACKETCLIP_LIVE_DURATION", "180")), seed=7).run(out, progress=False)
    return result


def test_live_run_captures_every_class_with_pure_flow_labels(live_run):
    flows = pd.read_parquet(live_run.flows)
    present = set(flows["label"].astype(str))
    assert present == set(ALL_CLASSES), f"missing classes: {sorted(set(ALL_CLASSES) - present)}"
    assert flows["mission"].notna().all()
    labels = pd.read_parquet(live_run.flow_labels)
    impure = labels[labels["purity"] < 1.0]
    assert impure.empty, impure.groupby("label", observed=True).size().to_dict()
    assert list(labels.columns) == ["flow_id", "label", "mission", "episode", "attacker", "victim", "packets",
                                    "attack_packets", "purity", "first_packet"]
    assert flows["label"].astype(str).value_counts().to_dict() == labels["label"].astype(str).value_counts().to_dict()
    episodes = pd.read_parquet(live_run.episodes)
    attacks = episodes[episodes["label"] != "Benign"]
    assert attacks["ran"].all()
    assert (attacks["end_s"] - attacks["start_s"] <= attacks["planned_end_s"] - attacks["planned_start_s"] + 5).all()


def test_live_capture_rereads_through_ingest(live_run, tmp_path):
    from packetclip.traffic.ingest import ingest_captures

    ws = ingest_captures([live_run.pcap], tmp_path / "again", progress=False, strict=True)
    capture = ws.manifest["captures"][0]
    assert not capture.get("error")
    again = pd.read_parquet(tmp_path / "again" / "flows.parquet")
    assert len(again) == len(pd.read_parquet(live_run.flows)) > 1000
    packet_labels = pd.read_parquet(live_run.packet_labels)
    assert len(packet_labels) == live_run.packets == live_run.stats["tcpdump_captured"]


def test_live_capture_never_leaves_the_lab_subnet(live_run):
    from packetclip.traffic.decode import decode_batch
    from packetclip.traffic.pcap import open_capture

    lo, hi = int(SUBNET.network_address), int(SUBNET.broadcast_address)
    n_ip = 0
    for batch in open_capture(live_run.pcap):
        decode_batch(batch)
        assert not (batch.ip_version == 6).any(), "no IPv6 in the lab"
        v4 = batch.ip_version == 4
        assert not (v4 & (batch.proto == 2)).any(), "IGMP is filtered out of the lab capture"
        n_ip += int(v4.sum())
        for col in (batch.src_lo, batch.dst_lo):
            addr = (col[v4] & 0xFFFFFFFF).astype(np.int64)
            assert ((addr >= lo) & (addr <= hi)).all(), "a packet with an address outside 10.203.0.0/24"
    assert n_ip > 10_000
    assert live_run.stats["packets_outside_lab_subnet"] == 0


def test_live_run_cleans_up_namespaces(live_run):
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"pclab-{os.getpid()}-" not in names
    assert not list(Path("/etc/netns").glob(f"pclab-{os.getpid()}-*")) if Path("/etc/netns").exists() else True
