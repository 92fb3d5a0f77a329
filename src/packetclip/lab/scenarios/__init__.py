"""Behaviour models of benign IoT traffic and of the attack tools behind the paper's 10 classes and the lab's extended ones."""

from __future__ import annotations

from packetclip.lab.scenarios.base import Ctx, Plan, Scenario


def attack_scenarios(cfg: dict) -> dict[str, Scenario]:
    """Class -> the scenario that produces it: the paper's nine attack classes and the lab's extended ones."""
    from packetclip.lab.scenarios import brute, discovery, dos, floods, http_flood, recon, web_brute

    models = [*recon.SCENARIOS, *dos.scenarios(cfg), *brute.SCENARIOS,
              http_flood.HttpFlood(cfg), floods.ReflectionAmplification(cfg), floods.AckFlood(cfg),
              http_flood.SlowHttp(), discovery.UdpScan(), discovery.PingSweep(), discovery.ServiceScan(),
              *web_brute.SCENARIOS]
    return {m.label: m for m in models}


def benign_scenarios() -> tuple[list[Scenario], list[Scenario]]:
    """(background models that run for the whole capture, burst models scheduled like attacks)."""
    from packetclip.lab.scenarios import benign

    return list(benign.BACKGROUND), list(benign.BURSTS)


__all__ = ["Ctx", "Plan", "Scenario", "attack_scenarios", "benign_scenarios"]
