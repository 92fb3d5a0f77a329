"""The live lab's schedule: which real tool runs when, from which address, with which hard bounds.

Everything here is pure (no processes, no network), so the schedule, the safety rules and the label
assignment are unit-tested on any machine; :mod:`packetclip.lab.live` executes the plan as root.

Addressing (all inside network namespaces that the live lab creates and deletes):

- ``10.203.0.1``         the server namespace (bridge ``br0``): nginx, sshd, vsftpd, mosquitto, dnsmasq
- ``10.203.0.10`` ...    one namespace per benign host (IoT sensor, camera, hub, admin laptop, backup box)
- ``10.203.0.100`` ...   one namespace per attack episode, so a packet's client address names its episode
                         (a reflection episode has two: the victim whose address the spoofed queries carry,
                         which names the episode, and the sender, whose own address no IP packet carries)

Labels come from the schedule: a packet's client-side address picks the host, the host's episode gives
the class, and the recorded run window checks the time (packets outside it are counted). Between two
hosts (a ping sweep reaching benign hosts) the attack episode's host is the client.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
from dataclasses import dataclass, field

import numpy as np

from packetclip.errors import PacketClipError
from packetclip.traffic.labels import ALL_CLASSES

SUBNET = ipaddress.ip_network("10.203.0.0/24")
SERVER_IP = "10.203.0.1"
BENIGN_BASE = 10
ATTACK_BASE = 100
MAX_ATTACK_HOSTS = 150
MAX_BOUND_S = 600.0           # no single tool run may be bounded by more than this
KILL_AFTER_S = 3              # SIGKILL this long after the SIGTERM of ``timeout``
LAB_DOMAIN = "lab.iot"

# Ports the server namespace listens on (and ports the scans may expect closed).
PORTS = {"ftp": 21, "ssh": 22, "telnet": 23, "dns": 53, "http": 80, "mqtt": 1883}

BENIGN_PROFILES: tuple[str, ...] = ("sensor", "camera", "hub", "admin", "backup")

# Words for the dictionary attacks; the lab's real HTTP admin password is drawn into the list sometimes.
HTTP_ADMIN_USER = "admin"
HTTP_ADMIN_PASSWORD = "IoT-lab-2023!"
MQTT_USER, MQTT_PASSWORD = "iot-device", "mqtt-lab-2023"       # the broker needs a login; sensors have it
TELNET_USER, TELNET_PASSWORD = "admin", "telnet-lab-2023"      # the gateway's telnet console
AMP_NAME = "fw-notes"            # a name whose TXT records make a ~1.3 kB answer (the reflection's amplifier)
AMP_TXT_RECORDS = 5
_USERS = ("root", "admin", "pi", "ubnt", "user", "iot", "support", "operator", "guest", "ftp")
_PASSWORDS = ("123456", "password", "admin", "root", "raspberry", "12345678", "qwerty", "letmein", "toor",
              "default", "changeme", "ubnt", "1234", "admin123", "iot2023", "support", "guest", "pass",
              "111111", "dragon")
_IOT_USERS = ("admin", "root", "user", "mqtt", "device", "guest", "support", "iot", "pi", "ubnt")
_HTTP_PATHS = ("/", "/index.html", "/api/status.json", "/docs/faq.html", "/docs/setup.html", "/login.html")


@dataclass
class Step:
    """One bounded tool run: ``argv`` starts with ``timeout``; ``{work}`` is the lab's temp folder.

    ``files`` are written into the temp folder before the run (word lists, query files);
    ``stdin_lines`` are fed one by one, ``stdin_gap_s`` apart (interactive SSH).
    """

    argv: list[str]
    bound_s: float
    files: dict[str, str] = field(default_factory=dict)
    stdin_lines: list[str] = field(default_factory=list)
    stdin_gap_s: float = 0.0

    def resolved(self, work: str) -> list[str]:
        return [a.replace("{work}", work) for a in self.argv]

    def text(self) -> str:
        """The command without its ``timeout`` wrapper, as episodes.parquet records it."""
        return " ".join(self.argv[3:] if self.argv[:1] == ["timeout"] else self.argv)


@dataclass
class Episode:
    """One labelled unit of the schedule: a host (address) that runs steps during a window."""

    episode: int
    label: str
    scenario: str
    host_ip: str
    steps: list[Step]
    params: dict
    seed: int
    lane: int = -1                  # -1: benign host that runs for the whole capture
    planned_start_s: float = 0.0
    planned_end_s: float = 0.0
    sender_ip: str = ""             # where the steps run when not from host_ip (reflection: the spoofer)

    @property
    def runner_ip(self) -> str:
        return self.sender_ip or self.host_ip

    @property
    def bound_s(self) -> float:
        return sum(s.bound_s for s in self.steps) + 1.0 * max(0, len(self.steps) - 1)

    @property
    def host_name(self) -> str:
        return f"h{self.host_ip.rsplit('.', 1)[1]}"

    def tool_text(self) -> str:
        if not self.steps:
            return f"benign {self.scenario}: " + ", ".join(self.params.get("actions", []))
        return " ; ".join(s.text() for s in self.steps)


@dataclass
class LiveConfig:
    """What shapes a live run. ``scale`` multiplies flood packet counts and scan sizes (1.0: modest)."""

    duration_s: float = 180.0
    seed: int = 7
    classes: tuple[str, ...] = ALL_CLASSES
    benign_hosts: int = 5
    warmup_s: float = 6.0           # benign traffic only, before the first attack
    tail_s: float = 4.0             # benign traffic only, after the last attack
    max_lanes: int = 4              # attack episodes running at the same time, at most
    scale: float = 1.0
    use_dnsperf: bool = True        # False: the DNS flood is a bounded dig loop

    def validate(self) -> None:
        if not (self.duration_s > 0):
            raise PacketClipError(f"duration must be positive, not {self.duration_s}")
        if self.duration_s > 3600:
            raise PacketClipError("lab live is bounded to 1 hour per run; use several runs for more")
        unknown = [c for c in self.classes if c not in ALL_CLASSES]
        if unknown:
            raise PacketClipError(f"unknown class(es) {unknown}; known: {', '.join(ALL_CLASSES)}")
        if not 1 <= self.benign_hosts <= len(BENIGN_PROFILES):
            raise PacketClipError(f"benign_hosts must be 1..{len(BENIGN_PROFILES)}, not {self.benign_hosts}")
        if not 0.1 <= self.scale <= 4.0:
            raise PacketClipError(f"scale must be within 0.1..4, not {self.scale}")
        if not 1 <= self.max_lanes <= 6:
            raise PacketClipError(f"max_lanes must be 1..6, not {self.max_lanes}")


# -- bounded commands -------------------------------------------------------------------------------


def bounded(seconds: float, *argv: str) -> list[str]:
    """``timeout`` wrapper: SIGTERM after ``seconds``, SIGKILL ``KILL_AFTER_S`` later."""
    return ["timeout", f"--kill-after={KILL_AFTER_S}", f"{max(1, int(round(seconds)))}", *map(str, argv)]


_IP_RE = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
_URL_HOST_RE = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^@/]*@)?([^/:?#]+)", re.IGNORECASE)
_ALLOWED_TOOLS = {"nmap", "hping3", "slowhttptest", "hydra", "dnsperf", "dig", "curl", "mosquitto_pub",
                  "mosquitto_sub", "ssh", "ab", "siege", "nping", "ncrack"}
# nmap target ranges inside the lab: 10.203.0.1-40 or a CIDR block
_RANGE_RE = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3})(?:-(\d{1,3})|/(\d{1,2}))$")


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "=") and flag.startswith("--"):
            return a.split("=", 1)[1]
    return None


def _check_text(tool: str, text: str, subnet) -> bool:
    """Every address and URL host in ``text`` lies in ``subnet``; True when it names one."""
    named = False
    for ip in _IP_RE.findall(text):
        if ipaddress.ip_address(ip) not in subnet:
            raise ValueError(f"{tool}: address {ip} is outside the lab subnet {subnet}")
        named = True
    for word in text.split():
        m = _URL_HOST_RE.match(word)
        if m:
            try:
                ok = ipaddress.ip_address(m.group(1)) in subnet
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"{tool}: URL host {m.group(1)!r} is not an address in the lab subnet")
    return named


def _is_range_in(arg: str, subnet) -> bool:
    m = _RANGE_RE.match(arg)
    if not m:
        return False
    if m.group(2) is not None:
        last = int(m.group(2))
        if not int(m.group(1).rsplit(".", 1)[1]) <= last <= 254:
            raise ValueError(f"range {arg} is not an ascending range inside the lab subnet")
        return True
    block = ipaddress.ip_network(arg, strict=False)
    if not block.subnet_of(subnet):
        raise ValueError(f"range {arg} is larger than the lab subnet {subnet}")
    return True


def check_bounded(argv: list[str], *, subnet=SUBNET, files: dict[str, str] | None = None) -> None:
    """Raise ValueError unless a run is time-bounded, count-bounded and aimed only at the lab subnet.

    Every address in the command line (and in ``files``, the URL lists and word lists the step writes)
    must lie in ``subnet``; URLs must name such an address; the tool must be one the lab knows, with its
    count/time options present (hping3: ``-c`` and ``-i``, never ``--flood``/``--faster``/spoofing; nmap:
    ``--max-retries`` and ``--host-timeout``; nping: ``-c`` and ``--rate``, spoofing only lab addresses; ...).
    """
    if len(argv) < 4 or argv[0] != "timeout" or argv[1] != f"--kill-after={KILL_AFTER_S}":
        raise ValueError(f"not wrapped in `timeout --kill-after={KILL_AFTER_S} N`: {argv[:3]}")
    try:
        bound = float(argv[2])
    except ValueError:
        raise ValueError(f"timeout bound is not a number: {argv[2]!r}") from None
    if not 0 < bound <= MAX_BOUND_S:
        raise ValueError(f"timeout bound {bound}s outside (0, {MAX_BOUND_S}]")
    tool, args = argv[3], argv[4:]
    if tool not in _ALLOWED_TOOLS:
        raise ValueError(f"tool {tool!r} is not one the live lab runs")
    for a in args:
        for ip in _IP_RE.findall(a):
            if ipaddress.ip_address(ip) not in subnet:
                raise ValueError(f"{tool}: address {ip} is outside the lab subnet {subnet}")
        m = _URL_HOST_RE.match(a)
        if m:
            host = m.group(1)
            try:
                ok = ipaddress.ip_address(host) in subnet
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"{tool}: URL host {host!r} is not an address in the lab subnet")
    targets = [a for a in args if _IP_RE.fullmatch(a) or _URL_HOST_RE.match(a) or "@" in a
               or _is_range_in(a, subnet)]
    for text in (files or {}).values():
        if _check_text(tool, text, subnet) and tool == "siege":
            targets.append("url file")
    if not targets:
        raise ValueError(f"{tool}: no explicit lab address in the command line")

    def need(flag: str) -> str:
        v = _flag_value(args, flag)
        if v is None:
            raise ValueError(f"{tool}: missing {flag}")
        return v

    if tool == "hping3":
        for bad in ("--flood", "--faster", "--rand-source", "--rand-dest", "-a", "--spoof"):
            if bad in args:
                raise ValueError(f"hping3: {bad} is forbidden in the live lab")
        count = int(need("-c"))
        interval = need("-i")
        if not 0 < count <= 50_000:
            raise ValueError(f"hping3: -c {count} outside 1..50000")
        if not re.fullmatch(r"u?\d+", interval) or int(interval.lstrip("u")) <= 0:
            raise ValueError(f"hping3: -i {interval!r} must be a positive interval (e.g. u200)")
        if interval.startswith("u") and int(interval[1:]) < 50:
            raise ValueError("hping3: intervals below 50 µs are floods without a rate bound")
    elif tool == "nmap":
        need("--max-retries")
        need("--host-timeout")
        for bad in ("-iR", "-iL", "--script-updatedb", "--resume"):
            if bad in args:
                raise ValueError(f"nmap: {bad} is forbidden in the live lab")
        if "--script" in args:
            need("--script-timeout")
    elif tool == "slowhttptest":
        if int(need("-c")) > 2000 or float(need("-l")) > MAX_BOUND_S:
            raise ValueError("slowhttptest: -c above 2000 or -l above the bound")
    elif tool == "hydra":
        if int(need("-t")) > 16:
            raise ValueError("hydra: more than 16 tasks")
        need("-w")
        need("-L")
        need("-P")
    elif tool == "dnsperf":
        if int(need("-n")) != 1:
            raise ValueError("dnsperf: the query file must be run through once (-n 1)")
        need("-l")
        need("-Q")
    elif tool == "dig":
        if not any(a.startswith("+tries=") for a in args) or not any(a.startswith("+time=") for a in args):
            raise ValueError("dig: +tries= and +time= are required")
    elif tool == "curl":
        need("--max-time")
    elif tool == "mosquitto_sub":
        need("-W")
        need("-C")
    elif tool == "ssh":
        if not any(a.startswith("ConnectTimeout=") for a in args):
            raise ValueError("ssh: -o ConnectTimeout= is required")
    elif tool == "ab":
        if not 0 < int(need("-n")) <= 50_000 or not 0 < int(need("-c")) <= 200:
            raise ValueError("ab: -n must be 1..50000 and -c 1..200")
        need("-s")
    elif tool == "siege":
        if not 0 < int(need("-c")) <= 255:
            raise ValueError("siege: -c must be 1..255")
        if not re.fullmatch(r"\d+S", need("-t")) or int(need("-t")[:-1]) > MAX_BOUND_S:
            raise ValueError("siege: -t must be seconds (e.g. 10S) within the bound")
    elif tool == "nping":
        if not 0 < int(need("-c")) <= 50_000:
            raise ValueError("nping: -c must be 1..50000 (0 would never stop)")
        if not 0 < float(need("--rate")) <= 5_000:
            raise ValueError("nping: --rate must be within 1..5000 packets/s")
    elif tool == "ncrack":
        need("-U")
        need("-P")
        if not any("to=" in a for a in args):
            raise ValueError("ncrack: a service timeout (to=) is required")


# -- attack recipes ---------------------------------------------------------------------------------


def _scaled(rng: random.Random, lo: int, hi: int, scale: float) -> int:
    return max(1, int(round(rng.randint(lo, hi) * scale)))


def attack_steps(label: str, rng: random.Random, episode: int, cfg: LiveConfig,
                 host_ip: str = "") -> tuple[str, list[Step], dict]:
    """(scenario name, steps, parameters) of one attack episode of class ``label``, all bounded.

    ``host_ip`` is the episode's own address (the reflection's victim, whose address its queries carry).
    """
    t = SERVER_IP
    s = cfg.scale
    if label == "Port Scan":
        kind = rng.choice(["-sS", "-sS", "-sT"])
        timing = rng.choice(["-T3", "-T4", "-T4", "-T5"])
        hi = _scaled(rng, 1000, 3000, s)
        ports = rng.choice([f"1-{hi}", "--top-ports"])
        port_args = ["-p", ports] if ports != "--top-ports" else ["--top-ports", str(min(hi, 1000))]
        bound = 30
        argv = bounded(bound, "nmap", "-n", "-Pn", kind, timing, *port_args, "--max-retries", "1",
                       "--host-timeout", f"{bound - 5}s", t)
        return "nmap-portscan", [Step(argv, bound)], {"scan": kind, "timing": timing, "ports": " ".join(port_args)}
    if label == "OS Scan":
        tries = rng.choice([1, 2])
        closed = rng.choice([81, 443, 8080, 8883, 5683])
        ports = ",".join(str(p) for p in (21, 22, 80, 1883, closed))
        bound = 40
        argv = bounded(bound, "nmap", "-n", "-Pn", "-O", "--max-os-tries", str(tries), "-p", ports,
                       "--max-retries", "1", "--host-timeout", f"{bound - 5}s", t)
        return "nmap-osscan", [Step(argv, bound)], {"max_os_tries": tries, "ports": ports}
    if label == "Vulnerability Scan":
        scripts = ["http-enum"] + rng.sample(["http-headers", "http-methods", "http-title", "http-robots.txt",
                                              "http-auth-finder", "ftp-anon", "ssh2-enum-algos"], k=3)
        intensity = rng.choice([2, 3, 5])
        bound = 60
        argv = bounded(bound, "nmap", "-n", "-Pn", "-sV", "--version-intensity", str(intensity),
                       "-p", "21,22,80,1883", "--script", ",".join(scripts), "--script-timeout", f"{bound - 15}s",
                       "--max-retries", "1", "--host-timeout", f"{bound - 5}s", t)
        return "nmap-nse-vulnscan", [Step(argv, bound)], {"scripts": scripts, "version_intensity": intensity}
    if label in ("ICMP Flood", "SYN Flood", "UDP Flood"):
        count = _scaled(rng, 1500, 4000, s)
        interval_us = rng.choice([150, 200, 300, 500, 800])
        bound = count * interval_us / 1e6 + 10
        if label == "ICMP Flood":
            data = rng.choice([0, 56, 120, 512, 1000])
            argv = bounded(bound, "hping3", "--icmp", "-q", "-c", count, "-i", f"u{interval_us}", "-d", data, t)
            params = {"count": count, "interval_us": interval_us, "data": data}
            return "hping3-icmp", [Step(argv, bound)], params
        if label == "SYN Flood":
            port = rng.choice([80, 80, 22, 1883, 21])
            win = rng.choice([64, 512, 1024, 29200])
            argv = bounded(bound, "hping3", "-S", "-q", "-p", port, "-w", win, "-c", count, "-i", f"u{interval_us}", t)
            return "hping3-syn", [Step(argv, bound)], {"count": count, "interval_us": interval_us, "port": port}
        port = rng.choice([123, 161, 1900, 5683, rng.randint(1024, 65000)])
        data = rng.choice([32, 64, 256, 512, 1200])
        argv = bounded(bound, "hping3", "--udp", "-q", "-p", port, "-c", count, "-i", f"u{interval_us}",
                       "-d", data, t)
        return "hping3-udp", [Step(argv, bound)], {"count": count, "interval_us": interval_us, "port": port,
                                                   "data": data}
    if label == "DNS Flood":
        secs = rng.randint(6, 12)
        qps = _scaled(rng, 300, 900, s)
        total = qps * secs
        qfile = f"dnsflood-{episode}.txt"
        lines = []
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        for _ in range(total):
            sub = "".join(rng.choice(alphabet) for _ in range(rng.randint(6, 16)))
            qtype = rng.choices(["A", "AAAA", "TXT", "MX", "ANY"], [60, 20, 8, 6, 6])[0]
            lines.append(f"{sub}.{LAB_DOMAIN} {qtype}")
        bound = secs + 10
        if cfg.use_dnsperf:
            clients = rng.choice([1, 4, 8])
            argv = bounded(bound, "dnsperf", "-s", t, "-p", "53", "-d", "{work}/" + qfile, "-n", "1",
                           "-l", secs, "-Q", qps, "-c", clients, "-t", "2")
            name, params = "dnsperf-water-torture", {"qps": qps, "seconds": secs, "clients": clients}
        else:
            argv = bounded(bound, "dig", f"@{t}", "+tries=1", "+time=1", "+retry=0", "-f", "{work}/" + qfile)
            name, params = "dig-loop-water-torture", {"queries": total}
            lines = [f"{ln.split()[0]} {ln.split()[1]}" for ln in lines]
        params["queries"] = total
        return name, [Step(argv, bound, files={qfile: "\n".join(lines) + "\n"})], params
    if label == "Slowloris":
        conns = _scaled(rng, 100, 300, s)
        rate = rng.choice([20, 50, 100])
        interval = rng.randint(3, 8)
        secs = rng.randint(20, 32)
        maxlen = rng.choice([8, 16, 24, 32])
        bound = secs + 15
        argv = bounded(bound, "slowhttptest", "-H", "-c", conns, "-r", rate, "-i", interval, "-l", secs,
                       "-x", maxlen, "-p", "3", "-t", "GET", "-u", f"http://{t}/")
        return "slowhttptest-slowloris", [Step(argv, bound)], {"connections": conns, "rate": rate,
                                                                 "interval_s": interval, "seconds": secs}
    if label == "Dictionary Attack":
        services = rng.sample(["ssh", "ftp", "http-get"], k=rng.choice([2, 3]))
        users = rng.sample(_USERS, k=rng.randint(3, 5))
        words = rng.sample(_PASSWORDS, k=_scaled(rng, 6, 10, min(s, 2.0)))
        if rng.random() < 0.5:
            users[rng.randrange(len(users))] = HTTP_ADMIN_USER
            words[rng.randrange(len(words))] = HTTP_ADMIN_PASSWORD
        files = {f"users-{episode}.txt": "\n".join(dict.fromkeys(users)) + "\n",
                 f"words-{episode}.txt": "\n".join(words) + "\n"}
        steps = []
        for i, svc in enumerate(services):
            tasks = rng.choice([2, 4]) if svc == "ssh" else rng.choice([4, 6])
            bound = 25
            target = f"ssh://{t}" if svc == "ssh" else f"ftp://{t}" if svc == "ftp" else f"http-get://{t}/admin/"
            argv = bounded(bound, "hydra", "-I", "-L", f"{{work}}/users-{episode}.txt",
                           "-P", f"{{work}}/words-{episode}.txt", "-t", tasks, "-w", "5", "-u", target)
            steps.append(Step(argv, bound, files=files if i == 0 else {}))
        return "hydra-dictionary", steps, {"services": services, "users": len(set(users)), "passwords": len(words)}
    if label in EXTENDED_RECIPES:
        return EXTENDED_RECIPES[label](rng, episode, s, host_ip)
    raise PacketClipError(f"no live recipe for class {label!r}")


# -- the classes beyond the paper's ten -------------------------------------------------------------


def _http_flood(rng: random.Random, episode: int, s: float, host_ip: str):
    """Hulk/GoldenEye-like: siege, random URLs with random query strings (some POSTs), new connections or
    keep-alive; LOIC-like: ab hammering one page, with or without keep-alive."""
    t = SERVER_IP
    if rng.random() < 0.6:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

        def word(lo: int, hi: int) -> str:
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))

        lines = []
        for _ in range(_scaled(rng, 200, 500, s)):
            if rng.random() < 0.15:
                lines.append(f"http://{t}/upload POST {word(3, 8)}={word(20, 200)}")
            else:
                lines.append(f"http://{t}{rng.choice(_HTTP_PATHS)}?{word(3, 10)}={word(3, 10)}")
        conns = rng.choice([4, 8, 12, 16])
        secs = rng.randint(5, 9)
        delay = rng.choice([0.02, 0.05, 0.1])         # per-user pause bound: a flood, but a bounded one
        connection = rng.choice(["keep-alive", "close"])   # GoldenEye keeps connections; Hulk opens new ones
        rc = (f"connection = {connection}\nparser = false\nlogging = false\nshow-logfile = false\n"
              f"timeout = 5\nuser-agent = {rng.choice(_BROWSER_AGENTS)}\n")
        files = {f"urls-{episode}.txt": "\n".join(lines) + "\n", f"siegerc-{episode}": rc}
        bound = secs + 12
        argv = bounded(bound, "siege", "-R", f"{{work}}/siegerc-{episode}", "-q", "-i", "-d", delay, "-c", conns,
                       "-t", f"{secs}S", "-f", f"{{work}}/urls-{episode}.txt")
        return "siege-hulk", [Step(argv, bound, files=files)], {"users": conns, "seconds": secs, "urls": len(lines),
                                                                "delay_s": delay, "connection": connection}
    n = _scaled(rng, 1000, 3000, s)
    conns = rng.choice([10, 20, 40])
    keep = rng.random() < 0.5
    path = rng.choice(_HTTP_PATHS)
    bound = 25
    argv = bounded(bound, "ab", *(["-k"] if keep else []), "-q", "-n", n, "-c", conns, "-s", "5", f"http://{t}{path}")
    return "ab-loic", [Step(argv, bound)], {"requests": n, "concurrency": conns, "keep_alive": keep, "path": path}


_BROWSER_AGENTS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0",
                   "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
                   "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Safari/605.1.15")


def dns_query(name: str, qtype: int, query_id: int, edns_size: int = 4096) -> bytes:
    """A DNS query (RD set) with an EDNS0 OPT record, so the answer may exceed 512 bytes."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return (query_id.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01" + labels
            + qtype.to_bytes(2, "big") + b"\x00\x01" + b"\x00\x00\x29" + edns_size.to_bytes(2, "big")
            + b"\x00\x00\x00\x00\x00\x00")


def _reflection(rng: random.Random, episode: int, s: float, host_ip: str):
    """Spoofed DNS queries (source: the victim) to the lab's open resolver; ~1.3 kB answers hit the victim."""
    steps, params = [], {"victim": host_ip, "queries": []}
    bursts = rng.choice([1, 2, 5, 8])                  # one victim port, or a tool cycling through a few
    for _ in range(bursts):
        count = max(20, _scaled(rng, 300, 1200, s) // bursts)
        rate = rng.choice([100, 200, 400])
        qtype = rng.choice([255, 16])                  # ANY or TXT
        sport = rng.randint(1024, 65000)
        query = dns_query(f"{AMP_NAME}.{LAB_DOMAIN}", qtype, rng.randrange(1 << 16))
        bound = count / rate + 3
        argv = bounded(bound, "nping", "--udp", "-p", "53", "-g", sport, "-S", host_ip, "--data", query.hex(),
                       "-c", count, "--rate", rate, "-N", "-H", "-q", SERVER_IP)
        steps.append(Step(argv, bound))
        params["queries"].append({"count": count, "rate": rate, "qtype": "ANY" if qtype == 255 else "TXT"})
    return "nping-dns-reflection", steps, params


def _ack_flood(rng: random.Random, episode: int, s: float, host_ip: str):
    count = _scaled(rng, 1500, 4000, s)
    interval_us = rng.choice([150, 200, 300, 500, 800])
    flags = rng.choice([["-A"], ["-A"], ["-R"], ["-A", "-P"]])
    port = rng.choice([80, 80, 22, 1883, 443])
    bound = count * interval_us / 1e6 + 10
    argv = bounded(bound, "hping3", *flags, "-q", "-p", port, "-c", count, "-i", f"u{interval_us}", SERVER_IP)
    return "hping3-ack", [Step(argv, bound)], {"count": count, "interval_us": interval_us, "flags": "".join(flags),
                                                "port": port}


def _slow_http(rng: random.Random, episode: int, s: float, host_ip: str):
    conns = _scaled(rng, 50, 150, s)
    rate = rng.choice([20, 50])
    secs = rng.randint(15, 22)
    bound = secs + 15
    if rng.random() < 0.5:
        interval = rng.randint(3, 8)
        argv = bounded(bound, "slowhttptest", "-B", "-c", conns, "-r", rate, "-i", interval, "-l", secs,
                       "-s", rng.choice([4096, 8192, 16384]), "-x", rng.choice([10, 24]), "-p", "3",
                       "-t", "POST", "-u", f"http://{SERVER_IP}/upload")
        return "slowhttptest-slow-post", [Step(argv, bound)], {"connections": conns, "rate": rate,
                                                              "interval_s": interval, "seconds": secs}
    window = rng.choice([[1, 32], [16, 64], [32, 128]])
    argv = bounded(bound, "slowhttptest", "-X", "-c", conns, "-r", rate, "-l", secs, "-w", window[0],
                   "-y", window[1], "-n", rng.choice([2, 3, 5]), "-z", rng.choice([16, 32]), "-k", "2", "-p", "3",
                   "-u", f"http://{SERVER_IP}/cam/snapshot-{rng.randint(1, 4)}.jpg")
    return "slowhttptest-slow-read", [Step(argv, bound)], {"connections": conns, "rate": rate, "seconds": secs,
                                                           "window": window}


def _udp_scan(rng: random.Random, episode: int, s: float, host_ip: str):
    top = min(1000, _scaled(rng, 30, 100, s))
    timing = rng.choice(["-T3", "-T4", "-T4", "-T5"])
    bound = 30
    argv = bounded(bound, "nmap", "-n", "-Pn", "-sU", timing, "--top-ports", top, "--max-retries", "1",
                   "--host-timeout", f"{bound - 5}s", SERVER_IP)
    return "nmap-udpscan", [Step(argv, bound)], {"top_ports": top, "timing": timing}


def _ping_sweep(rng: random.Random, episode: int, s: float, host_ip: str):
    """Host discovery over the low part of the lab subnet (server, benign hosts, unused addresses).

    Attack hosts (``ATTACK_BASE`` and up) are left out, so every answering host is one whose packets
    the sweep's address labels."""
    last = rng.randint(20, ATTACK_BASE - 1)
    how = rng.choice([["--unprivileged"], ["--send-ip"], ["--send-ip", "-PE"]])
    timing = rng.choice(["-T3", "-T4"])
    bound = 30
    argv = bounded(bound, "nmap", "-n", "-sn", *how, timing, "--max-retries", "1", "--host-timeout", "8s",
                   f"{SERVER_IP}-{last}")
    return "nmap-pingsweep", [Step(argv, bound)], {"range": f"{SERVER_IP}-{last}", "probes": " ".join(how)}


def _service_scan(rng: random.Random, episode: int, s: float, host_ip: str):
    kind = rng.choice(["-sT", "-sS"])
    intensity = rng.choice([2, 5, 7, 9])
    bound = 45
    argv = bounded(bound, "nmap", "-n", "-Pn", kind, "-sV", "--version-intensity", intensity,
                   "-p", "21,22,23,53,80,1883", "--max-retries", "1", "--host-timeout", f"{bound - 5}s", SERVER_IP)
    return "nmap-versionscan", [Step(argv, bound)], {"scan": kind, "version_intensity": intensity}


def _wordlists(rng: random.Random, episode: int, users: tuple[str, ...], real: tuple[str, str], s: float,
               tag: str) -> tuple[dict[str, str], str, str]:
    picked = rng.sample(users, k=rng.randint(3, 5))
    words = rng.sample(_PASSWORDS, k=_scaled(rng, 8, 14, min(s, 1.5)))
    if rng.random() < 0.5:                  # the real credentials are in the lists half of the time
        picked[rng.randrange(len(picked))] = real[0]
        words[rng.randrange(len(words))] = real[1]
    u, p = f"{tag}-users-{episode}.txt", f"{tag}-words-{episode}.txt"
    return {u: "\n".join(dict.fromkeys(picked)) + "\n", p: "\n".join(words) + "\n"}, u, p


def _http_brute(rng: random.Random, episode: int, s: float, host_ip: str):
    files, u, p = _wordlists(rng, episode, _USERS, (HTTP_ADMIN_USER, HTTP_ADMIN_PASSWORD), s, "web")
    tasks = rng.choice([4, 8, 16])
    bound = 25
    if rng.random() < 0.5:
        service = ["http-post-form", "/login:user=^USER^&pass=^PASS^:F=invalid login"]
    else:
        service = ["http-get", "/admin/"]
    argv = bounded(bound, "hydra", "-I", "-L", f"{{work}}/{u}", "-P", f"{{work}}/{p}", "-t", tasks, "-w", "5",
                   SERVER_IP, *service)
    return "hydra-http-login", [Step(argv, bound, files=files)], {"form": service[0], "tasks": tasks}


def _iot_brute(rng: random.Random, episode: int, s: float, host_ip: str):
    services = rng.sample(["mqtt", "telnet"], k=rng.choice([1, 2]))
    steps = []
    for svc in services:
        real = (MQTT_USER, MQTT_PASSWORD) if svc == "mqtt" else (TELNET_USER, TELNET_PASSWORD)
        users = _IOT_USERS + ((MQTT_USER,) if svc == "mqtt" else ())
        files, u, p = _wordlists(rng, episode, users, real, s, svc)
        bound = 25
        port = PORTS[svc]
        argv = bounded(bound, "ncrack", "-U", f"{{work}}/{u}", "-P", f"{{work}}/{p}", rng.choice(["-T3", "-T4"]),
                       f"{svc}://{SERVER_IP}:{port},cl={rng.choice([2, 4, 6])},to={bound - 5}s")
        steps.append(Step(argv, bound, files=files))
    return "ncrack-iot", steps, {"services": services}


EXTENDED_RECIPES = {
    "HTTP Flood": _http_flood,
    "Reflection Amplification": _reflection,
    "ACK Flood": _ack_flood,
    "Slow HTTP": _slow_http,
    "UDP Scan": _udp_scan,
    "Ping Sweep": _ping_sweep,
    "Service Scan": _service_scan,
    "HTTP Brute Force": _http_brute,
    "IoT Brute Force": _iot_brute,
}


# -- benign actions ---------------------------------------------------------------------------------

_SSH_OPTS = ("-F", "/dev/null", "-i", "{work}/client_key", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR")


def benign_actions(profile: str) -> tuple[str, ...]:
    return {
        "sensor": ("mqtt-publish", "mqtt-publish", "mqtt-publish", "dns-lookup"),
        "camera": ("http-snapshot", "http-upload", "http-snapshot", "dns-lookup", "mqtt-publish"),
        "hub": ("mqtt-subscribe", "http-status", "dns-lookup", "mqtt-publish", "http-status"),
        "admin": ("ssh-status", "ssh-interactive", "http-admin", "http-page", "ftp-list", "dns-lookup"),
        "backup": ("http-firmware", "ftp-download", "ssh-logs", "dns-lookup"),
    }[profile]


def benign_pause(profile: str, rng: random.Random) -> float:
    """Think time between actions: sensors talk often, the backup box rarely."""
    lo, hi = {"sensor": (0.5, 2.5), "camera": (1.0, 4.0), "hub": (1.0, 4.0), "admin": (2.0, 6.0),
              "backup": (6.0, 18.0)}[profile]
    return rng.uniform(lo, hi)


def benign_step(profile: str, action: str, rng: random.Random, *, host_ip: str, remaining_s: float) -> Step:
    """One benign client action as a bounded command (the client runs in its own namespace)."""
    t = SERVER_IP
    name = f"{profile}-{host_ip.rsplit('.', 1)[1]}"
    if action == "mqtt-publish":
        topic = f"sensors/{name}/" + rng.choice(["temperature", "humidity", "power", "motion", "battery"])
        value = json.dumps({"v": round(rng.uniform(0, 100), 2), "seq": rng.randint(0, 10**6)})
        argv = bounded(10, "mosquitto_pub", "-h", t, "-i", f"{name}-{rng.randint(0, 9999)}", "-u", MQTT_USER,
                       "-P", MQTT_PASSWORD, "-q", rng.choice(["0", "1"]), "-t", topic, "-m", value)
        return Step(argv, 10)
    if action == "mqtt-subscribe":
        secs = max(5, int(min(remaining_s, rng.uniform(20, 60))))
        argv = bounded(secs + 2, "mosquitto_sub", "-h", t, "-i", f"{name}-sub", "-u", MQTT_USER, "-P", MQTT_PASSWORD,
                       "-t", "sensors/#", "-W", secs, "-C", "100000")
        return Step(argv, secs + 2)
    if action == "dns-lookup":
        host = rng.choice(["broker", "ntp", "api", "cam1", "fw", "time", "gateway"]) + "." + LAB_DOMAIN
        argv = bounded(6, "dig", f"@{t}", "+tries=1", "+time=2", host, rng.choice(["A", "A", "AAAA", "TXT"]))
        return Step(argv, 6)
    if action in ("http-snapshot", "http-status", "http-page", "http-firmware", "http-admin", "http-upload"):
        base = ["curl", "-s", "-o", "/dev/null", "--max-time"]
        if action == "http-firmware":
            return Step(bounded(40, *base, "35", f"http://{t}/firmware/fw-{rng.randint(1, 3)}.bin"), 40)
        if action == "http-admin":
            return Step(bounded(12, *base, "10", "-u", f"{HTTP_ADMIN_USER}:{HTTP_ADMIN_PASSWORD}",
                                f"http://{t}/admin/"), 12)
        if action == "http-upload":
            size = rng.randint(2_000, 60_000)
            return Step(bounded(15, *base, "12", "-X", "POST", "-H", "Content-Type: image/jpeg",
                                "--data-binary", f"@{{work}}/upload-{size % 4}.jpg", f"http://{t}/upload"), 15)
        path = {"http-snapshot": f"/cam/snapshot-{rng.randint(1, 4)}.jpg", "http-status": "/api/status.json",
                "http-page": rng.choice(["/", "/index.html", "/docs/setup.html", "/docs/faq.html"])}[action]
        return Step(bounded(12, *base, "10", f"http://{t}{path}"), 12)
    if action == "ftp-list":
        return Step(bounded(15, "curl", "-s", "-o", "/dev/null", "--max-time", "12", f"ftp://{t}/pub/"), 15)
    if action == "ftp-download":
        return Step(bounded(40, "curl", "-s", "-o", "/dev/null", "--max-time", "35",
                            f"ftp://{t}/pub/" + rng.choice(["backup.tar", "fw-1.bin", "logs.txt"])), 40)
    if action in ("ssh-status", "ssh-logs"):
        return Step(bounded(15, "ssh", *_SSH_OPTS, f"root@{t}", action.split("-")[1]), 15)
    if action == "ssh-interactive":
        lines = [rng.choice(["uptime", "status", "sensors", "df", "ls", "who", "date"]) for _ in range(rng.randint(3, 8))]
        gap = rng.uniform(0.3, 1.5)
        return Step(bounded(len(lines) * gap + 15, "ssh", *_SSH_OPTS, f"root@{t}", "interactive"),
                    len(lines) * gap + 15, stdin_lines=lines + ["exit"], stdin_gap_s=gap)
    raise PacketClipError(f"unknown benign action {action!r}")


# -- the schedule -----------------------------------------------------------------------------------


def _seeds(seed: int, n: int) -> list[int]:
    seq = np.random.SeedSequence([int(seed), 0x11FE])
    return [int(s.generate_state(1, dtype=np.uint64)[0] & ((1 << 63) - 1)) for s in seq.spawn(n)]


def plan_schedule(cfg: LiveConfig) -> list[Episode]:
    """Benign hosts for the whole run, then every attack class placed in lanes that fit the duration.

    Longer runs repeat each attack class (one per 5 minutes). The smallest number of parallel lanes
    (up to ``max_lanes``) whose worst case fits between warm-up and tail is used; the slack of a lane
    is spread as benign-only gaps between its episodes. Raises PacketClipError when the duration is
    too short for the chosen classes even with ``max_lanes`` lanes.
    """
    cfg.validate()
    rng = random.Random(_seeds(cfg.seed, 1)[0])
    episodes: list[Episode] = []
    if "Benign" in cfg.classes:
        for i, profile in enumerate(BENIGN_PROFILES[: cfg.benign_hosts]):
            episodes.append(Episode(len(episodes), "Benign", profile, f"10.203.0.{BENIGN_BASE + i}", [],
                                    {"actions": sorted(set(benign_actions(profile)))}, rng.getrandbits(63),
                                    planned_start_s=0.0, planned_end_s=cfg.duration_s))
    attack_classes = [c for c in cfg.classes if c != "Benign"]
    rounds = max(1, int(cfg.duration_s // 300))
    attacks: list[Episode] = []
    addresses = 0
    for _ in range(rounds):
        order = attack_classes[:]
        rng.shuffle(order)
        for label in order:
            k = len(episodes) + len(attacks)
            ep_seed = rng.getrandbits(63)
            host = f"10.203.0.{ATTACK_BASE + addresses}"
            sender = f"10.203.0.{ATTACK_BASE + addresses + 1}" if label == "Reflection Amplification" else ""
            addresses += 2 if sender else 1
            if addresses > MAX_ATTACK_HOSTS:
                raise PacketClipError("too many attack episodes for the lab subnet; shorten the run")
            name, steps, params = attack_steps(label, random.Random(ep_seed), k, cfg, host_ip=host)
            attacks.append(Episode(k, label, name, host, steps, params, ep_seed, sender_ip=sender))
    if attacks:
        room = cfg.duration_s - cfg.warmup_s - cfg.tail_s
        lanes = _assign_lanes(attacks, room, cfg.max_lanes)
        if lanes is None:
            need = _min_duration(attacks, cfg)
            raise PacketClipError(f"duration {cfg.duration_s:.0f}s is too short for {len(attacks)} bounded attack "
                                  f"episodes with {cfg.max_lanes} parallel lanes; use --duration {need:.0f}s or more")
        for lane_no, lane in enumerate(lanes):
            slack = room - sum(e.bound_s for e in lane)
            cuts = sorted(rng.uniform(0, slack) for _ in range(len(lane)))
            gaps = [b - a for a, b in zip([0.0] + cuts[:-1], cuts)]
            t = cfg.warmup_s
            for ep, gap in zip(lane, gaps):
                t += gap
                ep.lane = lane_no
                ep.planned_start_s = round(t, 3)
                t += ep.bound_s
                ep.planned_end_s = round(t, 3)
    episodes.extend(attacks)
    for ep in episodes:
        for step in ep.steps:
            check_bounded(step.argv, files=step.files)
    return episodes


def _assign_lanes(attacks: list[Episode], room: float, max_lanes: int) -> list[list[Episode]] | None:
    """Fewest lanes (longest-first greedy) whose load fits in ``room``; lane order is the schedule's."""
    for k in range(1, max_lanes + 1):
        load = [0.0] * k
        lanes: list[list[Episode]] = [[] for _ in range(k)]
        for ep in sorted(attacks, key=lambda e: -e.bound_s):
            j = min(range(k), key=lambda i: load[i])
            load[j] += ep.bound_s
            lanes[j].append(ep)
        if max(load) <= room:
            position = {id(e): i for i, e in enumerate(attacks)}
            return [sorted(lane, key=lambda e: position[id(e)]) for lane in lanes]
    return None


def _min_duration(attacks: list[Episode], cfg: LiveConfig) -> float:
    lo, hi = 1.0, sum(e.bound_s for e in attacks) + 1
    while hi - lo > 1:
        mid = (lo + hi) / 2
        if _assign_lanes(attacks, mid, cfg.max_lanes) is None:
            lo = mid
        else:
            hi = mid
    return hi + cfg.warmup_s + cfg.tail_s


# -- labels from the schedule -----------------------------------------------------------------------

ROLE_BENIGN, ROLE_ATTACKER, ROLE_VICTIM, ROLE_OTHER = 0, 1, 2, 3


def ip_to_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def assign_packet_labels(ts_ns: np.ndarray, src: np.ndarray, dst: np.ndarray, windows: list[dict], *,
                         server: int = ip_to_int(SERVER_IP), before_ns: int = 500_000_000,
                         after_ns: int = 5_000_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per packet: (episode index into ``windows`` or -1, role, in-window flag).

    ``src``/``dst`` are IPv4 addresses as integers (0 for non-IP frames). ``windows`` holds one dict per
    episode with ``host`` (int address), ``start_ns``, ``end_ns`` and ``benign`` (bool). The client side
    of a packet is whichever end is not the server (between two hosts: the attack host, so a benign
    host's answers to a sweep are the sweep's). A benign host's packets belong to its episode; an
    attack host's packets to its episode whose run window (widened by ``before_ns``/``after_ns`` for
    connection teardown and late replies) holds the time, else to its nearest episode in time, flagged
    out-of-window. Packets of unknown hosts get -1 and role ``other``.
    """
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    n = len(ts_ns)
    attack_hosts = np.array([int(w["host"]) for w in windows if not w.get("benign")], dtype=np.int64)
    to_attack_host = np.isin(dst, attack_hosts) & ~np.isin(src, attack_hosts)
    client = np.where(src == server, dst, np.where(to_attack_host, dst, src))
    from_client = src == client
    episode = np.full(n, -1, dtype=np.int64)
    in_window = np.zeros(n, dtype=bool)
    best_gap = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    benign = np.zeros(n, dtype=bool)
    for k, w in enumerate(windows):
        mine = (client == int(w["host"])) & (client != 0)
        if not mine.any():
            continue
        if w.get("benign"):
            episode[mine] = k
            in_window[mine] = True
            benign[mine] = True
            continue
        lo, hi = int(w["start_ns"]) - before_ns, int(w["end_ns"]) + after_ns
        gap = np.where(ts_ns < lo, lo - ts_ns, np.where(ts_ns > hi, ts_ns - hi, 0))
        better = mine & (gap < best_gap)
        episode[better] = k
        best_gap[better] = gap[better]
        in_window[better] = gap[better] == 0
    role = np.full(n, ROLE_OTHER, dtype=np.int8)
    attack = (episode >= 0) & ~benign
    role[benign] = ROLE_BENIGN
    role[attack & from_client] = ROLE_ATTACKER
    role[attack & ~from_client] = ROLE_VICTIM
    return episode, role, in_window
