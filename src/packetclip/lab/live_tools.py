"""What ``packetclip lab live`` needs from the system, how to check it, and how to install it (Debian/Ubuntu).

The live lab runs real servers and real attack tools inside network namespaces, so it needs root, Linux,
and a fixed set of binaries. ``doctor_rows`` reports them, ``require_live_environment`` refuses to start
with one line naming what is missing, and ``install_missing`` installs the Debian packages that provide
them without starting any system service (the lab starts its own servers with its own config files).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from packetclip.errors import PacketClipError

# Root's sbin folders are not on every user's PATH; the lab runs as root and looks there too.
_EXTRA_PATH = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class Tool:
    """One binary the live lab runs, the Debian package that provides it, and what it is for."""

    binary: str
    package: str
    purpose: str
    required: bool = True
    classes: tuple[str, ...] = ()   # needed only when one of these classes runs (empty: always)


LIVE_TOOLS: tuple[Tool, ...] = (
    Tool("ip", "iproute2", "network namespaces, veth pairs, bridge"),
    Tool("ss", "iproute2", "waits until the lab servers listen"),
    Tool("timeout", "coreutils", "hard time bound around every tool run"),
    Tool("tcpdump", "tcpdump", "captures the lab bridge into the lab capture"),
    Tool("nginx", "nginx", "HTTP server (benign web, slowloris and vuln-scan target, HTTP basic auth)"),
    Tool("sshd", "openssh-server", "SSH server (benign sessions, dictionary attack target)"),
    Tool("ssh", "openssh-client", "benign SSH client (key authentication)"),
    Tool("ssh-keygen", "openssh-client", "host and client keys for the lab SSH server"),
    Tool("vsftpd", "vsftpd", "FTP server (benign downloads, dictionary attack target)"),
    Tool("mosquitto", "mosquitto", "MQTT broker"),
    Tool("mosquitto_pub", "mosquitto-clients", "benign MQTT telemetry"),
    Tool("mosquitto_sub", "mosquitto-clients", "benign MQTT subscriber"),
    Tool("dnsmasq", "dnsmasq-base", "DNS server (benign lookups, DNS flood target)"),
    Tool("dig", "bind9-dnsutils", "benign DNS lookups (and the DNS flood when dnsperf is missing)"),
    Tool("curl", "curl", "benign HTTP/FTP client"),
    Tool("nmap", "nmap", "Port Scan (-sS/-sT), OS Scan (-O), Vulnerability Scan (NSE http-enum & co.)"),
    Tool("hping3", "hping3", "SYN, UDP and ICMP floods (always with -c and -i)"),
    Tool("slowhttptest", "slowhttptest", "Slowloris (-H)"),
    Tool("hydra", "hydra", "Dictionary Attack on SSH, FTP and HTTP basic auth"),
    Tool("dnsperf", "dnsperf", "DNS Flood (random subdomains); a bounded dig loop is used without it",
         required=False),
    Tool("mosquitto_passwd", "mosquitto", "the broker's password file (devices log in; IoT Brute Force target)"),
    Tool("siege", "siege", "HTTP Flood, Hulk/GoldenEye-like (keep-alive, random URLs)", classes=("HTTP Flood",)),
    Tool("ab", "apache2-utils", "HTTP Flood, LOIC-like (one page, -n requests)", classes=("HTTP Flood",)),
    Tool("nping", "nmap", "Reflection Amplification (spoofed DNS queries, source: the lab victim)",
         classes=("Reflection Amplification",)),
    Tool("ncrack", "ncrack", "IoT Brute Force on MQTT and Telnet", classes=("IoT Brute Force",)),
    Tool("telnetd", "inetutils-telnetd", "Telnet server (IoT Brute Force target)", classes=("IoT Brute Force",)),
    Tool("inetutils-inetd", "inetutils-inetd", "starts telnetd per connection", classes=("IoT Brute Force",)),
)


def find_binary(name: str) -> str | None:
    """Path of ``name`` on PATH or in root's sbin folders, else None."""
    path = os.environ.get("PATH", "")
    extra = os.pathsep.join(p for p in _EXTRA_PATH if p not in path.split(os.pathsep))
    return shutil.which(name, path=path + (os.pathsep + extra if extra else ""))


def doctor_rows(which: Callable[[str], str | None] | None = None) -> list[dict]:
    """One row per tool: binary, package, purpose, required, path (None when missing)."""
    which = which or find_binary
    return [{"binary": t.binary, "package": t.package, "purpose": t.purpose, "required": t.required,
             "path": which(t.binary)} for t in LIVE_TOOLS]


def missing_tools(which: Callable[[str], str | None] | None = None, *, include_optional: bool = False,
                  classes: Sequence[str] | None = None) -> list[Tool]:
    """Tools not found; ``classes`` (default: every class) leaves out tools only other classes need."""
    which = which or find_binary
    wanted = None if classes is None else set(classes)
    return [t for t in LIVE_TOOLS if (t.required or include_optional) and which(t.binary) is None
            and (wanted is None or not t.classes or wanted & set(t.classes))]


def missing_packages(which: Callable[[str], str | None] | None = None, *, include_optional: bool = True) -> list[str]:
    """Debian packages to install, each once, in table order."""
    out: list[str] = []
    for tool in missing_tools(which, include_optional=include_optional):
        if tool.package not in out:
            out.append(tool.package)
    return out


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def require_live_environment(*, root: bool | None = None, system: str | None = None,
                             which: Callable[[str], str | None] | None = None,
                             classes: Sequence[str] | None = None) -> None:
    """Refuse (PacketClipError, one line) unless this is Linux, we are root and every required tool is here.

    ``root``/``system``/``which`` default to the real machine; tests pass them to check each refusal.
    """
    system = platform.system() if system is None else system
    if system != "Linux":
        raise PacketClipError(f"lab live needs Linux (network namespaces, tcpdump, raw sockets); this is {system}. "
                              "Use `packetclip lab synth` instead.")
    root = is_root() if root is None else root
    if not root:
        raise PacketClipError("lab live needs root (it creates network namespaces, opens raw sockets and "
                              "captures with tcpdump): run it with sudo, or use `packetclip lab synth`")
    missing = missing_tools(which, classes=classes)
    if missing:
        names = ", ".join(f"{t.binary} ({t.package})" for t in missing)
        raise PacketClipError(f"lab live needs these missing tools: {names}; install them with "
                              "`sudo packetclip lab install`")


_POLICY_RC = "/usr/sbin/policy-rc.d"


def install_missing(*, include_optional: bool = True, dry_run: bool = False,
                    which: Callable[[str], str | None] | None = None,
                    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                    root: bool | None = None, echo: Callable[[str], None] | None = None) -> list[str]:
    """``apt-get update`` + ``apt-get install -y`` of the missing packages; returns the packages.

    System services are not started: while apt runs, a ``policy-rc.d`` that answers 101 ("action
    forbidden") is in place unless the system already has one. ``dry_run`` returns the list only.
    """
    packages = missing_packages(which, include_optional=include_optional)
    if not packages or dry_run:
        return packages
    if platform.system() != "Linux" or find_binary("apt-get") is None:
        raise PacketClipError("lab install needs a Debian/Ubuntu system with apt-get; install these packages "
                              f"by hand: {' '.join(packages)}")
    if not (is_root() if root is None else root):
        raise PacketClipError(f"lab install needs root: run `sudo packetclip lab install` "
                              f"(packages: {' '.join(packages)})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", NEEDRESTART_MODE="a")
    policy = Path(_POLICY_RC)
    wrote_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\n# written by packetclip lab install: do not start services\nexit 101\n")
        policy.chmod(0o755)
        wrote_policy = True
    try:
        for argv in (["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]):
            if echo:
                echo("$ " + " ".join(argv))
            done = runner(argv, env=env)
            if done.returncode != 0:
                raise PacketClipError(f"`{' '.join(argv[:2])}` failed with exit code {done.returncode}; "
                                      f"packages wanted: {' '.join(packages)}")
        if "inetutils-telnetd" in packages and find_binary("update-inetd"):
            # the lab starts its own inetd with its own config; the system's inetd must never serve telnet
            argv = ["update-inetd", "--disable", "telnet"]
            if echo:
                echo("$ " + " ".join(argv))
            runner(argv, env=env)
    finally:
        if wrote_policy:
            policy.unlink(missing_ok=True)
    still = missing_packages(which, include_optional=False)
    if still:
        raise PacketClipError(f"after apt-get install these packages still lack their binaries: {' '.join(still)}")
    return packages


def apt_packages(tools: Sequence[Tool] = LIVE_TOOLS) -> list[str]:
    """Every Debian package the live lab can use (for docs and CI scripts)."""
    out: list[str] = []
    for t in tools:
        if t.package not in out:
            out.append(t.package)
    return out
