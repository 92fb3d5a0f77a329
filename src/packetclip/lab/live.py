"""``packetclip lab live``: the lab's classes made by real tools against real servers, captured with tcpdump.

As root on Linux, :class:`LiveLab` builds a private network of namespaces (one server namespace holding a
bridge and the servers, one namespace per benign host and per attack episode, joined by veth pairs;
no namespace has a route anywhere else, so no packet can leave), starts nginx, sshd, vsftpd, mosquitto,
telnetd (under inetd) and dnsmasq bound to the server address, captures the bridge with tcpdump, runs benign clients for the
whole capture and the attack tools of :func:`packetclip.lab.live_plan.plan_schedule` (each one bounded
by ``timeout`` and by its own count/time options), then tears everything down — also on Ctrl-C.

Output, in the workspace layout of ``packetclip lab synth`` (file names are the workspace module's): the
capture, the episodes (the schedule with the real run windows and command lines), the packet labels (per
pcap record, from the schedule: client address + run window), and after ingest the flow table with
``label``/``mission``, the packet table, the flow labels (one row per flow) and a manifest of kind ``"lab"``.
The lab metadata holds the config, the capture statistics and the safety check (packets with an address
outside the lab subnet: must be 0). The capture filter leaves out IGMP (the kernel's link-local membership
reports, which no lab tool sends). A non-empty output folder is refused unless ``overwrite``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from packetclip.errors import PacketClipError
from packetclip.lab.live_plan import (ROLE_ATTACKER, SERVER_IP, SUBNET, Episode, LiveConfig, Step,
                                      assign_packet_labels, benign_actions, benign_pause, benign_step,
                                      check_bounded, ip_to_int, plan_schedule)
from packetclip.lab.live_servers import ServerSpec, prepare_servers
from packetclip.lab import live_tools
from packetclip.traffic.labels import ALL_CLASSES, MISSIONS, mission_of
from packetclip.traffic.workspace import Workspace

LOGS = "live-logs"
NS_PREFIX = "pclab-"
ROLE_NAMES = ("benign", "attacker", "victim", "other")


@dataclass
class LiveResult:
    out_dir: Path
    pcap: Path
    packet_labels: Path
    episodes: Path
    flows: Path | None = None
    flow_labels: Path | None = None
    packets: int = 0
    elapsed_s: float = 0.0
    capture_s: float = 0.0
    summary: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


# -- processes ----------------------------------------------------------------------------------------


class _Processes:
    """Every process the lab starts, so teardown can end exactly those (by process group id)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        with self._lock:
            self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 5.0) -> int | None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        return proc.poll()

    def stop_all(self) -> None:
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            self.stop(proc, wait_s=3.0)


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise PacketClipError(f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()[:300]}")
    return done


# -- the namespace network -----------------------------------------------------------------------------


class LabNetwork:
    """Namespaces joined by a bridge in the server namespace; created on enter, deleted on exit."""

    def __init__(self, host_ips: list[str], tag: str | None = None):
        self.tag = tag or f"{NS_PREFIX}{os.getpid()}"
        self.server_ns = f"{self.tag}-srv"
        self.hosts = {ip: f"{self.tag}-h{ip.rsplit('.', 1)[1]}" for ip in host_ips}
        self.created: list[str] = []
        self.etc_dirs: list[Path] = []

    def __enter__(self) -> "LabNetwork":
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    def _add_ns(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self.created.append(name)
        # IPv6 off: no router solicitations or MLD reports in the capture, only the lab's own traffic.
        _run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
              "net.ipv6.conf.default.disable_ipv6=1"], check=False)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        etc = Path("/etc/netns") / name
        try:     # stray name lookups inside the namespace go to the lab DNS, never to the host's resolver
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(f"nameserver {SERVER_IP}\noptions timeout:1 attempts:1\n")
            (etc / "hosts").write_text(f"127.0.0.1 localhost\n{SERVER_IP} lab-gw.lab.iot lab-gw\n")
            self.etc_dirs.append(etc)
        except OSError:
            pass

    def _build(self) -> None:
        prefix = SUBNET.prefixlen
        self._add_ns(self.server_ns)
        _run(["ip", "-n", self.server_ns, "link", "add", "br0", "type", "bridge", "forward_delay", "0"])
        _run(["ip", "-n", self.server_ns, "addr", "add", f"{SERVER_IP}/{prefix}", "dev", "br0"])
        _run(["ip", "-n", self.server_ns, "link", "set", "br0", "up"])
        for i, (ip, ns) in enumerate(self.hosts.items()):
            if ipaddress.ip_address(ip) not in SUBNET:
                raise PacketClipError(f"host address {ip} outside the lab subnet {SUBNET}")
            self._add_ns(ns)
            port = f"p{i}"
            _run(["ip", "link", "add", port, "netns", self.server_ns, "type", "veth", "peer", "name", "eth0",
                  "netns", ns])
            _run(["ip", "-n", self.server_ns, "link", "set", port, "master", "br0"])
            _run(["ip", "-n", self.server_ns, "link", "set", port, "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        # Fail closed: no namespace of ours may have a default route.
        for ns in self.created:
            routes = _run(["ip", "-n", ns, "route", "show", "default"]).stdout.strip()
            if routes:
                raise PacketClipError(f"namespace {ns} unexpectedly has a default route: {routes}")

    def exec_argv(self, host_ip: str | None, argv: list[str]) -> list[str]:
        ns = self.server_ns if host_ip is None else self.hosts[host_ip]
        return ["ip", "netns", "exec", ns, *argv]

    def teardown(self) -> None:
        for ns in reversed(self.created):
            _kill_namespace_pids(ns)
            _run(["ip", "netns", "delete", ns], check=False)
        self.created.clear()
        for etc in self.etc_dirs:
            shutil.rmtree(etc, ignore_errors=True)
        self.etc_dirs.clear()


def _kill_namespace_pids(ns: str) -> None:
    """End what still runs inside a namespace the lab created (the processes it started there)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(int(pid), sig)
            except (ProcessLookupError, ValueError):
                pass
        time.sleep(0.5)


def cleanup_stale_namespaces() -> list[str]:
    """Delete lab namespaces left by a lab process that no longer runs (e.g. killed with SIGKILL)."""
    listing = _run(["ip", "netns", "list"], check=False).stdout.split("\n")
    removed = []
    for line in listing:
        name = line.split(" ")[0].strip()
        if not name.startswith(NS_PREFIX):
            continue
        try:
            pid = int(name[len(NS_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        _kill_namespace_pids(name)
        _run(["ip", "netns", "delete", name], check=False)
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
        removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# -- the lab --------------------------------------------------------------------------------------------


class LiveLab:
    """Live lab: ``LiveLab(duration_s=180, seed=7).run("out/")`` (root, Linux, tools from ``lab install``)."""

    def __init__(self, duration_s: float = 180.0, seed: int = 7, **kwargs):
        self.config = LiveConfig(duration_s=float(duration_s), seed=int(seed), **kwargs)
        self.config.validate()

    def schedule(self) -> list[Episode]:
        if self.config.use_dnsperf and live_tools.find_binary("dnsperf") is None:
            self.config.use_dnsperf = False
        return plan_schedule(self.config)

    def run(self, out_dir: str | Path, *, progress: bool = True, ingest: bool = True,
            overwrite: bool = False) -> LiveResult:
        """Run the schedule, capture it, label it; everything started is stopped and deleted on exit.
        A non-empty ``out_dir`` is refused unless ``overwrite`` (before anything runs)."""
        live_tools.require_live_environment(classes=self.config.classes)
        started = time.perf_counter()
        episodes = self.schedule()                      # refuses a too-short run before writing anything
        ws = Workspace.create(out_dir, overwrite=overwrite, empty=True)
        out = ws.root
        logs = out / LOGS
        logs.mkdir(exist_ok=True)
        cleanup_stale_namespaces()
        work = Path(tempfile.mkdtemp(prefix="packetclip-lab-"))
        procs = _Processes()
        stop = threading.Event()
        runs: dict[int, dict] = {}
        capture_info: dict = {}
        old_term = _sigterm_as_interrupt()
        bar = _progress(progress)
        try:
            for ep in episodes:
                for step in ep.steps:
                    for name, text in step.files.items():
                        (work / name).write_text(text)
            servers = prepare_servers(work, self.config.seed)
            hosts = [ep.host_ip for ep in episodes] + [ep.sender_ip for ep in episodes if ep.sender_ip]
            with LabNetwork(hosts) as net:
                try:
                    self._start_servers(net, servers, procs, logs)
                    tcpdump, t0_ns = self._start_capture(net, procs, ws.path("capture"), logs)
                    capture_info["start_ns"] = t0_ns
                    threads = []
                    for ep in episodes:
                        if ep.lane < 0:
                            threads.append(threading.Thread(
                                target=self._benign_host, args=(net, ep, work, procs, stop, runs, logs, t0_ns),
                                daemon=True, name=f"benign-{ep.host_ip}"))
                    for lane in sorted({ep.lane for ep in episodes if ep.lane >= 0}):
                        mine = [ep for ep in episodes if ep.lane == lane]
                        threads.append(threading.Thread(target=self._attack_lane,
                                                        args=(net, mine, work, procs, stop, runs, logs, t0_ns),
                                                        daemon=True, name=f"lane-{lane}"))
                    for th in threads:
                        th.start()
                    self._wait(episodes, runs, threads, t0_ns, stop, bar)
                    stop.set()
                    for th in threads:
                        th.join(timeout=15)
                    time.sleep(1.0)                      # last replies and teardowns reach the capture
                    capture_info.update(self._stop_capture(tcpdump, procs, logs))
                    capture_info["end_ns"] = time.time_ns()
                finally:                                 # no client may start while the network goes away
                    stop.set()
                    procs.stop_all()
        finally:
            stop.set()
            procs.stop_all()
            if bar is not None:
                bar.stop()
            shutil.rmtree(work, ignore_errors=True)
            try:
                signal.signal(signal.SIGTERM, old_term)
            except (ValueError, TypeError):
                pass
        result = self._write_labels(ws, episodes, runs, capture_info)
        result.capture_s = (capture_info["end_ns"] - capture_info["start_ns"]) / 1e9
        meta = {"generator": "packetclip lab live", "config": asdict(self.config), "stats": result.stats}
        if ingest:
            from packetclip.lab.synth import label_flows

            label_flows(ws, progress=progress, result=result, lab=meta)
        result.summary = summarise(ws)
        result.elapsed_s = time.perf_counter() - started
        result.stats["elapsed_s"] = round(result.elapsed_s, 2)
        meta = json.loads(json.dumps(meta, default=list))
        with ws.atomic("lab_meta") as tmp:
            tmp.write_text(json.dumps(meta, indent=2))
        if ingest:
            ws.update_manifest(lab=meta)
        return result

    # -- servers and capture --

    def _start_servers(self, net: LabNetwork, servers: list[ServerSpec], procs: _Processes, logs: Path) -> None:
        handles = []
        for spec in servers:
            log = open(logs / f"server-{spec.name}.log", "wb")
            handles.append((spec, procs.start(net.exec_argv(None, spec.argv), stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL), log))
        want_tcp = {p for s in servers for p in s.tcp_ports}
        want_udp = {p for s in servers for p in s.udp_ports}
        deadline = time.monotonic() + 15
        while True:
            tcp, udp = _listening(net)
            if want_tcp <= tcp and want_udp <= udp:
                return
            for spec, proc, log in handles:
                if proc.poll() is not None:
                    log.flush()
                    tail = (logs / f"server-{spec.name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                    raise PacketClipError(f"lab server {spec.name} exited with code {proc.returncode}: "
                                          + " | ".join(tail))
            if time.monotonic() > deadline:
                raise PacketClipError(f"lab servers did not listen within 15 s (missing tcp {sorted(want_tcp - tcp)}, "
                                      f"udp {sorted(want_udp - udp)}); see {logs}")
            time.sleep(0.2)

    def _start_capture(self, net: LabNetwork, procs: _Processes, pcap: Path, logs: Path):
        pcap.unlink(missing_ok=True)
        err = open(logs / "tcpdump.log", "wb")
        argv = [live_tools.find_binary("tcpdump") or "tcpdump", "-i", "br0", "-n", "-U", "-B", "32768", "-s", "0",
                "-Z", "root", "-w", str(pcap.resolve()),
                # the kernel's IGMPv3 membership reports (to 224.0.0.22, sent a random delay after an interface
                # comes up) are housekeeping, not lab traffic; CI once caught one as the first packet
                "not", "igmp"]
        proc = procs.start(net.exec_argv(None, argv), stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = (logs / "tcpdump.log").read_text(errors="replace")
            if "listening on" in text:
                time.sleep(0.3)
                return proc, time.time_ns()
            if proc.poll() is not None:
                raise PacketClipError(f"tcpdump exited with code {proc.returncode}: {text.strip()[:300]}")
            time.sleep(0.1)
        raise PacketClipError("tcpdump did not start listening within 10 s")

    def _stop_capture(self, proc: subprocess.Popen, procs: _Processes, logs: Path) -> dict:
        procs.stop(proc, sig=signal.SIGINT, wait_s=10)
        text = (logs / "tcpdump.log").read_text(errors="replace")
        info = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0].isdigit():
                key = " ".join(parts[1:]).replace("packets ", "").replace(" ", "_")
                info[f"tcpdump_{key}"] = int(parts[0])
        return info

    # -- clients --

    def _run_step(self, net: LabNetwork, host_ip: str, step: Step, work: Path, procs: _Processes, log,
                  stop: threading.Event) -> int:
        argv = step.resolved(str(work))
        check_bounded(step.argv, files=step.files)                 # never run anything unbounded
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        # HOME is the lab's temp folder: tools that keep dotfiles (siege, ncrack) leave nothing behind
        proc = procs.start(net.exec_argv(host_ip, argv), stdout=log, stderr=subprocess.STDOUT, cwd=str(work),
                           env=dict(os.environ, HOME=str(work)),
                           stdin=subprocess.PIPE if step.stdin_lines else subprocess.DEVNULL)
        if step.stdin_lines:
            try:
                for line in step.stdin_lines:
                    if stop.wait(step.stdin_gap_s):
                        break
                    proc.stdin.write((line + "\n").encode())
                    proc.stdin.flush()
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + step.bound_s + 10
        while proc.poll() is None:
            if stop.is_set() or time.monotonic() > deadline:
                procs.stop(proc, wait_s=3)
                break
            time.sleep(0.05)
        code = proc.poll()
        log.write(f"# exit {code}\n".encode())
        return -1 if code is None else code

    def _attack_lane(self, net, lane: list[Episode], work, procs, stop, runs, logs, t0_ns) -> None:
        for ep in lane:
            start_at = t0_ns + int(ep.planned_start_s * 1e9)
            while time.time_ns() < start_at:
                if stop.wait(min(0.2, (start_at - time.time_ns()) / 1e9)):
                    return
            record = {"start_ns": time.time_ns(), "end_ns": None, "exit_codes": [], "running": True}
            runs[ep.episode] = record
            try:
                with open(logs / f"episode-{ep.episode:03d}-{ep.label.replace(' ', '_')}.log", "wb") as log:
                    for step in ep.steps:
                        if stop.is_set():
                            break
                        record["exit_codes"].append(self._run_step(net, ep.runner_ip, step, work, procs, log,
                                                                   stop))
            finally:
                record["end_ns"] = time.time_ns()
                record["running"] = False

    def _benign_host(self, net, ep: Episode, work, procs, stop, runs, logs, t0_ns) -> None:
        rng = random.Random(ep.seed)
        end_ns = t0_ns + int(self.config.duration_s * 1e9)
        record = {"start_ns": time.time_ns(), "end_ns": None, "exit_codes": [], "actions": 0, "running": True}
        runs[ep.episode] = record
        actions = benign_actions(ep.scenario)
        try:
            with open(logs / f"benign-{ep.scenario}-{ep.host_ip}.log", "wb") as log:
                self._benign_loop(net, ep, rng, actions, end_ns, work, procs, stop, record, log)
        finally:
            record["end_ns"] = time.time_ns()
            record["running"] = False

    def _benign_loop(self, net, ep, rng, actions, end_ns, work, procs, stop, record, log) -> None:
        """Pick an action, run it bounded, pause; a subscriber (hub) runs beside the other actions."""
        subscriber = None
        if stop.wait(rng.uniform(0.0, 1.5)):
            return
        while not stop.is_set() and time.time_ns() < end_ns:
            remaining = (end_ns - time.time_ns()) / 1e9
            action = rng.choice(actions)
            if action == "mqtt-subscribe" and subscriber is not None and subscriber.is_alive():
                action = "mqtt-publish"
            step = benign_step(ep.scenario, action, rng, host_ip=ep.host_ip, remaining_s=remaining)
            record["actions"] += 1
            if action == "mqtt-subscribe":
                subscriber = threading.Thread(target=self._run_step, daemon=True,
                                              args=(net, ep.host_ip, step, work, procs, log, stop))
                subscriber.start()
                continue
            record["exit_codes"].append(self._run_step(net, ep.host_ip, step, work, procs, log, stop))
            if stop.wait(min(benign_pause(ep.scenario, rng), max(0.0, (end_ns - time.time_ns()) / 1e9))):
                break
        if subscriber is not None:
            subscriber.join(timeout=10)

    def _wait(self, episodes, runs, threads, t0_ns, stop, bar) -> None:
        """Until the duration is over and every attack lane is done; shows progress."""
        duration = self.config.duration_s
        attacks = [ep for ep in episodes if ep.lane >= 0]
        lanes = [th for th in threads if th.name.startswith("lane-")]
        task = bar.add_task("lab live", total=duration) if bar is not None else None
        if bar is not None:
            bar.start()
        while True:
            elapsed = (time.time_ns() - t0_ns) / 1e9
            done = sum(1 for ep in attacks if ep.episode in runs and not runs[ep.episode]["running"])
            running = [ep.label for ep in attacks if ep.episode in runs and runs[ep.episode]["running"]]
            if bar is not None:
                now = ", ".join(running) if running else "benign only"
                bar.update(task, completed=min(elapsed, duration),
                           description=f"lab live: {done}/{len(attacks)} attacks done; now: {now}")
            if elapsed >= duration and not any(th.is_alive() for th in lanes):
                return
            if elapsed >= duration + 30 + sum(ep.bound_s for ep in attacks):   # belt and braces
                return
            time.sleep(0.25)

    # -- labels --

    def _write_labels(self, ws: Workspace, episodes: list[Episode], runs: dict, capture: dict) -> LiveResult:
        """Episodes (schedule + real windows) and per-packet labels from client address + time window."""
        from packetclip.traffic.decode import decode_batch
        from packetclip.traffic.pcap import open_capture

        t0 = capture["start_ns"]
        rows = []
        for ep in episodes:
            run = runs.get(ep.episode, {})
            start_ns = run.get("start_ns") or t0 + int(ep.planned_start_s * 1e9)
            end_ns = run.get("end_ns") or start_ns
            attack = ep.lane >= 0
            rows.append({"episode": ep.episode, "label": ep.label, "mission": mission_of(ep.label),
                         "scenario": ep.scenario, "tool": ep.tool_text(),
                         "start_s": round((start_ns - t0) / 1e9, 6), "end_s": round((end_ns - t0) / 1e9, 6),
                         "attacker": ep.runner_ip if attack else "",
                         "victim": (ep.host_ip if ep.sender_ip else SERVER_IP) if attack else "",
                         "params": json.dumps(ep.params, sort_keys=True), "seed": ep.seed, "packets": 0,
                         "start_ns": int(start_ns), "end_ns": int(end_ns), "host": ep.host_ip, "lane": ep.lane,
                         "planned_start_s": ep.planned_start_s, "planned_end_s": ep.planned_end_s,
                         "ran": bool(run), "exit_codes": json.dumps(run.get("exit_codes", [])),
                         "actions": int(run.get("actions", len(ep.steps)))})
        ep_df = pd.DataFrame(rows)
        windows = [{"host": ip_to_int(r["host"]), "start_ns": r["start_ns"], "end_ns": r["end_ns"],
                    "benign": r["label"] == "Benign"} for r in rows]
        num_parts, ts_parts, src_parts, dst_parts, v4_parts = [], [], [], [], []
        pcap = ws.path("capture")
        for batch in open_capture(pcap):
            decode_batch(batch)
            num_parts.append(batch.first_packet_number + np.arange(len(batch), dtype=np.int64))
            ts_parts.append(batch.ts_ns.astype(np.int64))
            v4 = batch.ip_version == 4
            v4_parts.append(v4 | (batch.ip_version == 0))
            src_parts.append(np.where(v4, (batch.src_lo & 0xFFFFFFFF).astype(np.int64), 0))
            dst_parts.append(np.where(v4, (batch.dst_lo & 0xFFFFFFFF).astype(np.int64), 0))
        numbers = np.concatenate(num_parts) if num_parts else np.zeros(0, np.int64)
        ts = np.concatenate(ts_parts) if ts_parts else np.zeros(0, np.int64)
        src = np.concatenate(src_parts) if src_parts else np.zeros(0, np.int64)
        dst = np.concatenate(dst_parts) if dst_parts else np.zeros(0, np.int64)
        not_v6 = np.concatenate(v4_parts) if v4_parts else np.zeros(0, bool)
        idx, role, in_window = assign_packet_labels(ts, src, dst, windows)
        net_lo, net_hi = int(SUBNET.network_address), int(SUBNET.broadcast_address)
        ip_rows = (src != 0) | (dst != 0)
        outside = ip_rows & ~(((src >= net_lo) & (src <= net_hi)) & ((dst >= net_lo) & (dst <= net_hi)))
        labels = np.array([r["label"] for r in rows] + ["Benign"], dtype=object)
        missions = np.array([r["mission"] for r in rows] + ["Benign"], dtype=object)
        attackers = np.array([r["attacker"] for r in rows] + [""], dtype=object)
        victims = np.array([r["victim"] for r in rows] + [""], dtype=object)
        pick = np.where(idx >= 0, idx, len(rows))
        pk = pd.DataFrame({
            "packet_number": numbers,
            "ts_ns": ts,
            "episode": np.where(idx >= 0, ep_df["episode"].to_numpy()[np.maximum(idx, 0)], -1).astype(np.int32),
            "label": pd.Categorical(labels[pick], categories=list(ALL_CLASSES)),
            "mission": pd.Categorical(missions[pick], categories=list(MISSIONS)),
            "role": pd.Categorical(np.array(ROLE_NAMES, dtype=object)[role], categories=list(ROLE_NAMES)),
            "attacker": attackers[pick],
            "victim": victims[pick],
        })
        ws.write_table("packet_labels", pk)
        ep_df["packets"] = np.bincount(idx[idx >= 0], minlength=len(rows))[: len(rows)]
        ep_df["attacker_packets"] = np.bincount(idx[(idx >= 0) & (role == ROLE_ATTACKER)], minlength=len(rows))[: len(rows)]
        ws.write_table("episodes", ep_df)
        stats = {
            "packets": int(len(ts)),
            "packets_outside_lab_subnet": int(outside.sum()),
            "packets_ipv6": int((~not_v6).sum()),
            "packets_unattributed": int(((idx < 0) & ip_rows).sum()),
            "packets_non_ip": int((~ip_rows & not_v6).sum()),
            "attack_packets_outside_run_window": int(((idx >= 0) & ~in_window).sum()),
            **{k: v for k, v in capture.items() if k.startswith("tcpdump_")},
        }
        return LiveResult(ws.root, pcap, ws.path("packet_labels"), ws.path("episodes"), packets=int(len(ts)),
                          stats=stats)


def summarise(out_dir) -> list[dict]:
    """Per class: episodes, packets and (when the flow table exists) flows."""
    ws = out_dir if isinstance(out_dir, Workspace) else Workspace(out_dir)
    ep = pd.read_parquet(ws.path("episodes"), columns=["label", "packets", "tool", "scenario"])
    flows = None
    if ws.has("labels"):
        flows = pd.read_parquet(ws.path("labels"), columns=["label"])["label"].astype(str).value_counts()
    rows = []
    for label in ALL_CLASSES:
        sel = ep[ep["label"] == label]
        if sel.empty:
            continue
        rows.append({"class": label, "mission": mission_of(label), "episodes": int(len(sel)),
                     "packets": int(sel["packets"].sum()),
                     "flows": None if flows is None else int(flows.get(label, 0)),
                     "tool": sel["tool"].iloc[0].split(" ")[0] if label != "Benign" else "curl/mqtt/dig/ssh/ftp",
                     "scenarios": ", ".join(sorted(set(sel["scenario"].astype(str))))})
    return rows


def _listening(net: LabNetwork) -> tuple[set[int], set[int]]:
    out = _run(net.exec_argv(None, ["ss", "-Hlntu"]), check=False).stdout
    tcp, udp = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        try:
            port = int(parts[4].rsplit(":", 1)[1])
        except (IndexError, ValueError):
            continue
        (tcp if parts[0] == "tcp" else udp).add(port)
    return tcp, udp


def _sigterm_as_interrupt():
    """SIGTERM takes the same clean-up path as Ctrl-C (only possible from the main thread)."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return signal.getsignal(signal.SIGTERM)


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TimeElapsedColumn

    return Progress("[progress.description]{task.description}", BarColumn(), TimeElapsedColumn(), transient=False)
