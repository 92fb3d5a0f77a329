"""Does Lens pre-training earn its keep? Few-label probes, header generation and the objectives' shortcuts.

Peers in the same run: the **same architecture randomly initialised** (same seed, same config) and a
**256-bin byte histogram** of the same views; for generation, the field's **most frequent** training value
and the **previous packet** of the flow in the same direction.

1. **Few-label study** (Lens's data-efficiency claim): linear probe
   (:func:`packetclip.evaluate.probe.linear_probe`) trained on 1, 5, 10, 50 and all labelled flows per class,
   macro-F1 on the test side, ``--seeds`` draws of the labelled flows (mean and std); and a **light
   fine-tune** (:func:`packetclip.evaluate.finetune.fine_tune_probe`: encoder + linear head, same fixed
   recipe for both models) on ``--finetune-shots`` flows per class, same draws. Tasks as in
   ``benchmarks/encoder_quality.py``: ``ndpi`` (nDPI categories of ``../shared/data/ndpi``, split by capture)
   and ``lab`` (10 ACI-IoT classes; train on lab captures of seeds 1..N, test on seeds 101..100+N: other
   attack episodes with their own parameters, i.e. split by episode).
2. **Generation** (:mod:`packetclip.encoders.generation`) on the test side's flows (ndpi test captures + lab
   test captures), baselines learned on the pre-training side.
3. **Shortcuts**: accuracy of trivial rules on the packet-order and same-flow batches, with the earlier
   objectives and with the current ones (hidden seq/ack, hard negatives): sort packets by flow-relative
   ``seq + ack``; call two segments one flow when protocol and TTLs agree.

Pre-training (unless ``--checkpoint``) uses only the training side (ndpi training captures, lab train
captures). ``--checkpoint`` evaluates any saved Lens model (e.g. a long run's) instead.

Last line: one JSON object (``fewshot{10,50}_{pretrained,random,hist}_{ndpi,lab}`` and ``..._std``,
``finetune{10,50}_{pretrained,random}_{ndpi,lab}`` and ``..._std``,
``gen_exact_mean``, ``gen_exact_mean_baseline`` (best baseline per field, averaged), ``gen_exact_min_margin``
(worst field: model - best baseline), ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import encoder_quality as eq  # noqa: E402  (the shared task builders)

SHOTS = (1, 5, 10, 50, 0)   # 0: all labelled flows


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def few_label_draw(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``n`` flows per class (all of them for ``n == 0``)."""
    if n == 0:
        return np.arange(len(y))
    picks = [rng.choice(np.flatnonzero(y == c), min(n, int((y == c).sum())), replace=False) for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def fine_tune_scores(model, train_views, train_y, test_views, test_y, seeds: int, shots, steps: int
                     ) -> dict[int, list[float]]:
    """Light fine-tune macro-F1 per labelled-flow budget, on the same draws as the linear probe."""
    from packetclip.evaluate.finetune import FineTuneSettings, fine_tune_probe

    out: dict[int, list[float]] = {}
    for n in shots:
        out[n] = []
        for seed in range(seeds):
            idx = few_label_draw(train_y, n, np.random.default_rng((seed, n)))
            if len(np.unique(train_y[idx])) < 2:
                continue
            out[n].append(fine_tune_probe(model, train_views[idx], train_y[idx], test_views, test_y, seed,
                                          FineTuneSettings(steps=steps)).macro_f1)
    return out


def few_label_scores(train_x, train_y, test_x, test_y, seeds: int) -> dict[int, list[float]]:
    from packetclip.evaluate.probe import linear_probe

    out: dict[int, list[float]] = {}
    for n in SHOTS:
        out[n] = []
        for seed in range(seeds if n else 1):
            idx = few_label_draw(train_y, n, np.random.default_rng((seed, n)))
            if len(np.unique(train_y[idx])) < 2:
                continue
            out[n].append(linear_probe(train_x[idx], train_y[idx], test_x, test_y, seed).macro_f1)
    return out


# --- shortcuts ------------------------------------------------------------------------------------------------
def _l4(views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    version = views[:, 0] >> 4
    proto = np.where(version == 4, views[:, 9], np.where(version == 6, views[:, 6], -1)).astype(np.int64)
    l4 = np.where(version == 4, (views[:, 0] & 15).astype(np.int64) * 4, 40)
    return proto, l4


def pop_rule_accuracy(corpus, rows: np.ndarray, target: np.ndarray, hide: bool) -> float:
    """Share of packet slots whose position the rule "rank by flow-relative seq + ack" gets right."""
    from packetclip.encoders.corruption import hide_order_fields

    present = rows >= 0
    flat = np.where(present, rows, 0).ravel()
    views = corpus.views[flat]
    if hide:
        views = hide_order_fields(views, corpus.lengths[flat])
    proto, l4 = _l4(views)
    cols = np.clip(l4[:, None] + np.arange(4, 12)[None, :], 0, views.shape[1] - 1)
    b = np.take_along_axis(views, cols, axis=1).astype(np.int64)
    seq = (b[:, 0] << 24) | (b[:, 1] << 16) | (b[:, 2] << 8) | b[:, 3]
    ack = (b[:, 4] << 24) | (b[:, 5] << 16) | (b[:, 6] << 8) | b[:, 7]
    key = np.where(proto == 6, seq + ack, 0).reshape(rows.shape).astype(np.float64)
    key[~present] = np.inf
    rank = np.argsort(np.argsort(key, axis=1, kind="stable"), axis=1, kind="stable")
    valid = target >= 0
    return float((rank[valid] == target[valid]).mean())


def htp_rule_accuracy(corpus, rows: np.ndarray, seg: int) -> float:
    """Share of (anchor, same-flow) and (anchor, other-flow) pairs the rule "same protocol and same set of
    TTLs" calls right."""
    def signature(block):
        present = block >= 0
        v = corpus.views[np.where(present, block, 0)]
        proto, _ = _l4(v.reshape(-1, v.shape[-1]))
        ttl = np.where((v[..., 0] >> 4) == 4, v[..., 8], v[..., 7]).astype(np.int64)
        ttl = np.where(present, ttl, -1)
        return proto.reshape(block.shape)[:, 0], [set(r[r >= 0].tolist()) for r in ttl]

    pa, ta = signature(rows[:, :seg])
    pb, tb = signature(rows[:, seg: 2 * seg])
    pc, tc = signature(rows[:, 2 * seg:])
    same_b = (pa == pb) & np.array([x == y for x, y in zip(ta, tb)])
    same_c = (pa == pc) & np.array([x == y for x, y in zip(ta, tc)])
    return float(np.concatenate([same_b, ~same_c]).mean())


def shortcut_table(corpus, batches: int = 8, size: int = 128) -> dict:
    """Trivial-rule accuracy on POP / HTP batches, earlier objectives (``old``) vs current (``new``)."""
    from packetclip.encoders.lens import LensConfig, LensModel
    from packetclip.encoders.pretrain import BatchBuilder, PretrainSettings

    model = LensModel(LensConfig(size="tiny", d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64),
                      seed=0)
    out = {}
    variants = {"old": PretrainSettings(hide_order_fields=False, hard_negative_prob=0.0, field_context=False),
                "new": PretrainSettings()}
    for name, settings in variants.items():
        builder = BatchBuilder(model, corpus, settings)
        pop, htp, chance = [], [], []
        for b in range(batches):
            rng = np.random.default_rng((123, b))
            batch = builder.pop(rng, size)
            pop.append(pop_rule_accuracy(corpus, batch.rows, batch.target.numpy(), settings.hide_order_fields))
            m = (batch.rows >= 0).sum(axis=1)
            chance.append(float(np.mean(np.repeat(1.0 / m, m))))
            batch = builder.htp(rng, size)
            htp.append(htp_rule_accuracy(corpus, batch.rows, model.config.htp_segment))
        out[f"shortcut_pop_rule_{name}"] = round(float(np.mean(pop)), 4)
        out[f"shortcut_htp_rule_{name}"] = round(float(np.mean(htp)), 4)
        out["pop_chance"] = round(float(np.mean(chance)), 4)
    return out


# --- figures --------------------------------------------------------------------------------------------------
def plot_few_label(scores: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({t for (_, t) in scores})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for name in ("pretrained", "random", "hist", "finetune-pretrained", "finetune-random"):
            if (name, task) not in scores:
                continue
            xs = [n for n in SHOTS if n and scores[(name, task)].get(n)]
            mean = [np.mean(scores[(name, task)][n]) for n in xs]
            std = [np.std(scores[(name, task)][n]) for n in xs]
            ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=name,
                        ls="--" if name.startswith("finetune") else "-")
            if scores[(name, task)].get(0):
                ax.axhline(scores[(name, task)][0][0], ls=":", lw=0.8, color=ax.lines[-1].get_color())
        ax.set_xscale("log")
        ax.set_xlabel("labelled flows per class (dotted: all)")
        ax.set_ylabel("macro-F1 (test side)")
        ax.set_title(task)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_objective_curves(histories: dict[str, list[dict]], path: Path) -> None:
    """POP / HTP training accuracy vs step for runs with the earlier and the current objectives."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from packetclip.encoders.pretrain import _ema

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, history in histories.items():
        steps = np.array([h["step"] for h in history])
        for ax, key in zip(axes, ("pop_acc", "htp_acc")):
            ax.plot(steps, _ema(np.array([h[key] for h in history])), label=name)
    for ax, title in zip(axes, ("packet order (accuracy per slot)", "same flow (binary accuracy)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main -----------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="example: python benchmarks/lens.py --checkpoint /tmp/lens-long --seeds 3")
    ap.add_argument("--checkpoint", type=Path, help="Evaluate this saved Lens model instead of pre-training here.")
    ap.add_argument("--pretrain-minutes", type=float, default=10.0)
    ap.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    ap.add_argument("--seeds", type=int, default=3, help="Draws of the labelled flows per budget.")
    ap.add_argument("--per-group", type=int, default=30, help="ndpi: flows per (capture, category).")
    ap.add_argument("--per-class", type=int, default=300, help="lab: flows per class and side.")
    ap.add_argument("--lab-seconds", type=float, default=180.0, help="Traffic duration of each lab capture.")
    ap.add_argument("--lab-captures", type=int, default=3, help="Lab captures on each side.")
    ap.add_argument("--finetune-shots", type=int, nargs="*", default=[10, 50],
                    help="Labelled flows per class for the light fine-tune (none: skip it).")
    ap.add_argument("--finetune-steps", type=int, default=120, help="AdamW steps of each light fine-tune.")
    ap.add_argument("--gen-packets", type=int, default=3000, help="Held-out packets scored per field.")
    ap.add_argument("--curves", type=Path, nargs="*", default=[],
                    help="Pre-training output folders (losses.json) whose POP/HTP accuracy curves to plot.")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "packetclip-bench-lens",
                    help="Folder for workspaces, the model and the figures (reused between runs).")
    ap.add_argument("--threads", type=int, default=1, help="torch threads.")
    ap.add_argument("--long", type=Path, metavar="DIR",
                    help="Only pre-train, resumably, into DIR for --pretrain-minutes (the shipped encoder's recipe); "
                         "snapshots at doubling step counts go to DIR/snapshots/step-N for the learning curve.")
    ap.add_argument("--total-steps", type=int, help="--long: total steps of the run (default: fitted to the time).")
    ap.add_argument("--field-prob", type=float, help="--long: share of span inputs that hide one header field.")
    ap.add_argument("--field-windows", choices=["same-direction", "consecutive"],
                    help="--long: what a hidden field's packet is read after (default same-direction).")
    ap.add_argument("--stop-at-step", type=int, help="--long: end this call at that step.")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from packetclip.encoders.data import TrafficCorpus
    from packetclip.encoders.generation import evaluate_generation_corpus
    from packetclip.encoders.lens import LensConfig, LensModel
    from packetclip.encoders.pretrain import PretrainSettings, pretrain, time_steps

    t_start = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    tasks, pre_ws, pre_files = eq.build_tasks(args.work, 4, args.per_group, args.per_class, args.lab_seconds, 0,
                                              args.lab_captures)
    for task in tasks.values():
        log(task.describe())
    corpus = TrafficCorpus.from_workspaces(pre_ws, view_bytes=128, split=None, files=pre_files)
    metrics: dict = {}
    metrics.update(shortcut_table(corpus))
    log("shortcuts:", metrics)

    if args.long:
        return long_pretrain(args, corpus, pre_ws)
    if args.checkpoint:
        pretrained = LensModel.from_pretrained(args.checkpoint)
        steps = _steps_of(args.checkpoint)
    else:
        config = LensConfig(size=args.size)
        settings = PretrainSettings(seed=0, steps=1_000_000)
        per_step = time_steps(config, settings, corpus)
        settings.steps = int(max(50, args.pretrain_minutes * 60 * 0.9 / per_step))
        settings.warmup_steps = max(10, min(100, settings.steps // 10))
        settings.save_every = max(100, settings.steps // 4)
        log(f"pre-training: {settings.steps} steps (~{per_step:.2f} s/step) on {len(corpus):,} packets")
        result = pretrain(pre_ws, args.work / "model", config=config, settings=settings, overwrite=True,
                          max_seconds=args.pretrain_minutes * 60 * 1.25, progress=False, corpus=corpus)
        pretrained, steps = LensModel.from_pretrained(result.out_dir), result.steps_done
        args.curves = [result.out_dir, *args.curves]
    config = pretrained.config
    random_init = LensModel(config, seed=0)
    k = config.k_packets
    metrics.update({"size": config.size, "parameters": pretrained.num_parameters(), "pretrain_steps": steps})

    scores = {}
    for task in tasks.values():
        feats = {"hist": (eq.histogram_features(task.train_firsts[:, :k]), eq.histogram_features(task.test_firsts[:, :k]))}
        for name, model in (("pretrained", pretrained), ("random", random_init)):
            feats[name] = (model.embed(task.train_firsts[:, :k]), model.embed(task.test_firsts[:, :k]))
        for name, (tr, te) in feats.items():
            t0 = time.perf_counter()
            scores[(name, task.name)] = few_label_scores(tr, task.train_y, te, task.test_y, args.seeds)
            log(f"  {task.name:5s} {name:10s} " + "  ".join(
                f"{n or 'all'}: {np.mean(v):.3f}" for n, v in scores[(name, task.name)].items() if v)
                + f"  ({time.perf_counter() - t0:.0f} s)")
    for (name, task), by_n in scores.items():
        for n, values in by_n.items():
            label = "all" if n == 0 else str(n)
            metrics[f"fewshot{label}_{name}_{task}"] = round(float(np.mean(values)), 4) if values else None
            metrics[f"fewshot{label}_{name}_{task}_std"] = round(float(np.std(values)), 4) if values else None
    for task in tasks.values() if args.finetune_shots else ():
        for name, model in (("pretrained", pretrained), ("random", random_init)):
            t0 = time.perf_counter()
            by_n = fine_tune_scores(model, task.train_firsts[:, :k], task.train_y, task.test_firsts[:, :k],
                                    task.test_y, args.seeds, args.finetune_shots, args.finetune_steps)
            scores[(f"finetune-{name}", task.name)] = by_n
            log(f"  {task.name:5s} fine-tune {name:10s} " + "  ".join(
                f"{n}: {np.mean(v):.3f}" for n, v in by_n.items() if v) + f"  ({time.perf_counter() - t0:.0f} s)")
            for n, values in by_n.items():
                metrics[f"finetune{n}_{name}_{task.name}"] = round(float(np.mean(values)), 4) if values else None
                metrics[f"finetune{n}_{name}_{task.name}_std"] = round(float(np.std(values)), 4) if values else None
    plot_few_label(scores, args.work / "few_label.png")

    test_side = _test_corpus(args.work, tasks, args)
    report = evaluate_generation_corpus(pretrained, test_side, corpus, max_packets=args.gen_packets)
    gen = report.to_dict()
    log("generation:", json.dumps(gen))
    for s in report.scores:
        log(f"  {s.field:15s} n={s.packets:5d} model {s.model_accuracy:.3f} most-frequent {s.baseline_accuracy:.3f} "
            f"previous {s.previous_accuracy:.3f}   within tolerance: model {s.model_tolerance:.3f} "
            f"most-frequent {s.baseline_tolerance:.3f} previous {s.previous_tolerance:.3f}")
    metrics.update({f"gen_{k_}": v for k_, v in gen.items() if k_ not in ("split",)})
    metrics["gen_exact_mean"] = gen.get("mean_model")
    metrics["gen_exact_mean_baseline"] = gen.get("mean_best_baseline")
    metrics["gen_exact_min_margin"] = gen.get("min_margin")

    histories = {}
    for folder in args.curves:
        path = Path(folder) / "losses.json"
        if path.is_file():
            histories[Path(folder).name] = json.loads(path.read_text())
    if histories:
        plot_objective_curves(histories, args.work / "objective_curves.png")
    metrics["figures"] = str(args.work)
    metrics["seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(metrics))
    return 0


def long_pretrain(args, corpus, pre_ws) -> int:
    """Hours of pre-training in one resumable folder; a snapshot at each doubling of the step count.

    The total step count is fixed on the first call from a timing run (so the cosine schedule ends within
    ``--pretrain-minutes``) unless ``--total-steps`` gives it; a later call with the same DIR resumes and keeps
    the stored settings, except those given again: ``--total-steps`` (the cosine schedule stretches),
    ``--field-prob`` and ``--field-windows`` are written into the checkpoint's settings before resuming (a
    phase of the recipe; the card lists the phases). ``--stop-at-step`` ends the call at that step.
    """
    import shutil

    from packetclip.encoders.lens import LensConfig
    from packetclip.encoders.pretrain import TRAINER_STATE, PretrainSettings, pretrain, time_steps

    out = args.long
    resume = (out / "checkpoint").is_dir()
    config = LensConfig(size=args.size)
    settings = None
    changes = {k: v for k, v in (("steps", args.total_steps), ("field_prob", args.field_prob),
                                 ("field_same_direction", None if args.field_windows is None
                                  else args.field_windows == "same-direction")) if v is not None}
    if not resume:
        settings = PretrainSettings(seed=0, steps=1_000_000)
        if args.total_steps is None:
            per_step = time_steps(config, settings, corpus)
            settings.steps = int(max(100, args.pretrain_minutes * 60 * 0.92 / per_step))
        for key, value in changes.items():
            setattr(settings, key, value)
        settings.save_every = 250
        log(f"long pre-training: {settings.steps} steps on {len(corpus):,} packets")
    elif changes:
        state_path = out / "checkpoint" / TRAINER_STATE
        state = json.loads(state_path.read_text())
        log(f"resuming with {changes} (stored: { {k: state['settings'].get(k) for k in changes} })")
        state["settings"].update(changes)
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(state_path)
    started = time.perf_counter()
    step = _steps_of(out) or 0
    milestone = 250
    while True:
        while milestone <= step:
            milestone *= 2
        left = args.pretrain_minutes * 60 - (time.perf_counter() - started)
        if left <= 0 or (args.stop_at_step is not None and step >= args.stop_at_step):
            break
        stop = milestone if args.stop_at_step is None else min(milestone, args.stop_at_step)
        result = pretrain(pre_ws, out, config=None if resume else config, settings=settings, resume=resume,
                          overwrite=not resume, max_seconds=left, stop_after=stop - step, progress=False,
                          corpus=corpus)
        resume, settings = True, None
        step = result.steps_done
        snap = out / "snapshots" / f"step-{step}"
        if snap.exists():
            shutil.rmtree(snap)
        snap.mkdir(parents=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copy2(out / name, snap / name)
        log(f"step {step}: msp {result.history[-1]['msp']:.3f} pop {result.history[-1]['pop']:.3f} "
            f"htp {result.history[-1]['htp']:.3f}; snapshot {snap}")
        total = json.loads((out / "checkpoint" / "trainer_state.json").read_text())["settings"]["steps"]
        if not result.stopped_early or step >= total:
            break
    print(json.dumps({"long_steps": step, "long_dir": str(out), "seconds": round(time.perf_counter() - started, 1)}))
    return 0


def _steps_of(checkpoint: Path) -> int | None:
    for path in (checkpoint / "trainer_state.json", checkpoint / "checkpoint" / "trainer_state.json"):
        if path.is_file():
            return int(json.loads(path.read_text())["step"])
    return None


def _test_corpus(work: Path, tasks, args):
    """Packets of the test side: ndpi test captures and the lab test captures (never pre-trained on)."""
    from packetclip.encoders.data import TrafficCorpus
    from packetclip.traffic.workspace import Workspace

    workspaces, files = [], []
    if "ndpi" in tasks:
        ws, flows = eq.ndpi_workspace(work)
        test_captures = set(flows.loc[flows["split"] == "test", "capture"])
        manifest = Workspace.open(ws).manifest
        workspaces.append(ws)
        files.append([c["file_index"] for c in manifest["captures"] if Path(c["path"]).name in test_captures])
    for seed in range(101, 101 + args.lab_captures):
        workspaces.append(work / f"lab_seed{seed}_{int(args.lab_seconds)}s")
        files.append(None)
    return TrafficCorpus.from_workspaces(workspaces, view_bytes=128, split=None, files=files)


if __name__ == "__main__":
    sys.exit(main())
