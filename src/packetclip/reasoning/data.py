"""Real benign background from ``../shared/data/ndpi`` (issue 11, deliverable 4).

nDPI's test captures are mostly ordinary application traffic, but some are attacks, malware, scans, fuzzing or
deliberately broken packets; those are not "benign diversity" and are left out by name (:data:`ATTACK_LIKE`).
The two scan captures (:data:`SCAN_CAPTURES`) are held out entirely: they are the Reconnaissance recall test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Scan captures: never trained on; flows of these should be alerted as Reconnaissance.
SCAN_CAPTURES = ("synscan.pcap", "tcp_scan.pcapng")

#: Attack, malware, exfiltration/tunnelling, fuzzed or malformed captures: not benign background.
ATTACK_LIKE = SCAN_CAPTURES + (
    "WebattackRCE.pcap", "WebattackSQLinj.pcap", "log4j-webapp-exploit.pcap", "dos_win98_smb_netbeui.pcap",
    "bot.pcap", "trickbot.pcap", "emotet.pcap", "malware.pcap", "crynet.pcap", "mining.pcapng", "elf.pcap",
    "exe_download.pcap", "exe_download_as_png.pcap", "portable_executable.pcap", "shell.pcap",
    "tls_heur__trojan-tcp-tls.pcapng", "dns-exf.pcap", "dns_exfiltration.pcap", "dns-tunnel-iodine.pcap",
    "dns2tcp_tunnel.pcap", "icmp-tunnel.pcap", "bad-dns-traffic.pcap", "badpackets.pcap", "dhcp-fuzz.pcapng",
    "fuzz-2006-06-26-2594.pcap", "fuzz-2006-09-29-28586.pcap", "fuzz-2020-02-16-11740.pcap",
    "fuzz-2021-06-07-c6c72a0a56.pcap", "fuzz-2021-10-13.pcap", "kerberos_fuzz.pcapng", "quic-fuzz-overflow.pcapng",
    "tls-esni-fuzzed.pcap", "ossfuzz_seed_fake_traces_1.pcapng", "ossfuzz_seed_fake_traces_2.pcapng",
    "ossfuzz_seed_fake_traces_3.pcapng", "ossfuzz_seed_fake_traces_4.pcapng", "h323-overflow.pcap",
    "http-crash-content-disposition.pcap", "ip_fragmented_garbage.pcap", "malformed_dns.pcap",
    "malformed_icmp.pcap", "reasm_crash_anon.pcapng", "reasm_segv_anon.pcapng", "tls_invalid_reads.pcap",
    "dns-invalid-chars.pcap",
)

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


def benign_captures(folder: str | Path) -> list[Path]:
    """The benign captures of an nDPI-style folder (sorted; attack-like ones left out)."""
    skip = set(ATTACK_LIKE)
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix in CAPTURE_SUFFIXES and p.name not in skip)


def split_captures(captures: list[Path], *, seed: int = 0, test: float = 0.3, val: float = 0.15
                   ) -> dict[str, list[Path]]:
    """Captures split three ways by capture (seeded): a capture is never on two sides."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(captures))
    n_test, n_val = int(round(test * len(captures))), int(round(val * len(captures)))
    pick = [captures[i] for i in perm]
    return {"test": sorted(pick[:n_test]), "val": sorted(pick[n_test:n_test + n_val]),
            "train": sorted(pick[n_test + n_val:])}
