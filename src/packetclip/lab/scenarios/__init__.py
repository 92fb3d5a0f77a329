"""Behaviour models of benign IoT traffic and of the attack tools behind the 10 fine classes."""

from __future__ import annotations

from packetclip.lab.scenarios.base import Ctx, Plan, Scenario


def attack_scenarios(cfg: dict) -> dict[str, Scenario]:
    """Fine class -> the scenario that produces it."""
    from packetclip.lab.scenarios import brute, dos, recon

    models = [*recon.SCENARIOS, *dos.scenarios(cfg), *brute.SCENARIOS]
    return {m.label: m for m in models}


def benign_scenarios() -> tuple[list[Scenario], list[Scenario]]:
    """(background models that run for the whole capture, burst models scheduled like attacks)."""
    from packetclip.lab.scenarios import benign

    return list(benign.BACKGROUND), list(benign.BURSTS)


__all__ = ["Ctx", "Plan", "Scenario", "attack_scenarios", "benign_scenarios"]
