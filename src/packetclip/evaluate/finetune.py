"""Light fine-tune: how fast a packet encoder's *weights* adapt to a task from a few labelled flows.

The linear probe (:mod:`packetclip.evaluate.probe`) reads frozen embeddings; Lens's data-efficiency claim is
about fine-tuning, where pre-training pays off by giving the optimiser a good starting point. This is the
same recipe for every model it is handed (pre-trained or randomly initialised), so their scores compare:
a copy of the encoder plus one linear head on its pooled embedding, AdamW for a fixed number of steps
(encoder and head at their own learning rates, class-balanced cross-entropy, fixed seed), then macro-F1 on
the test flows. Nothing is tuned on the test side; the caller's model is never modified.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from packetclip.errors import PacketClipError
from packetclip.evaluate.probe import ProbeScore, score_predictions


@dataclass
class FineTuneSettings:
    steps: int = 120
    batch_size: int = 32
    encoder_lr: float = 2e-4
    head_lr: float = 2e-3
    weight_decay: float = 0.01
    eval_batch_size: int = 256


def fine_tune_probe(model, train_views: np.ndarray, train_y, test_views: np.ndarray, test_y, seed: int = 0,
                    settings: FineTuneSettings | None = None) -> ProbeScore:
    """Fine-tune a copy of ``model`` (a :class:`~packetclip.encoders.lens.LensModel`) with a linear head on
    flows ``uint8 [n, k, L]`` and score it on the test flows (macro-F1 over the test classes)."""
    import torch

    from packetclip.encoders.base import local_seed

    s = settings or FineTuneSettings()
    train_views, test_views = np.asarray(train_views), np.asarray(test_views)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if train_views.ndim != 3 or test_views.ndim != 3 or train_views.dtype != np.uint8:
        raise PacketClipError(f"fine-tune needs uint8 flows [n, k, L], got {train_views.dtype} {train_views.shape}")
    if len(train_views) != len(train_y) or len(test_views) != len(test_y) or not len(test_y):
        raise PacketClipError("fine-tune: features and labels differ in length, or no test rows")
    classes, y_index = np.unique(train_y, return_inverse=True)
    if len(classes) < 2:
        raise PacketClipError(f"fine-tune needs at least 2 classes in the training rows, got {len(classes)}")

    def encode(net, views):
        present = views.any(axis=2)
        present[:, 0] = True
        units, n_units = net.units(views)
        enc = net.to_device(net.tokenise(units, np.where(present, n_units, 0), present))
        return net.pool_embedding(net.encoder_states(enc), enc)

    with local_seed(seed):
        net = copy.deepcopy(model).train()
        head = torch.nn.Sequential(torch.nn.LayerNorm(net.embed_dim), torch.nn.Linear(net.embed_dim, len(classes)))
        head.to(net.device)
        encoder_params = [p for name, p in net.named_parameters() if ".decoder." not in name and "htp" not in name
                          and "pop" not in name]
        opt = torch.optim.AdamW([{"params": encoder_params, "lr": s.encoder_lr},
                                 {"params": head.parameters(), "lr": s.head_lr}], weight_decay=s.weight_decay)
        counts = np.bincount(y_index, minlength=len(classes))
        weight = torch.tensor(len(y_index) / (len(classes) * counts), dtype=torch.float32, device=net.device)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y_index))
        pos = 0
        for _ in range(s.steps):
            if pos + s.batch_size > len(order):
                order, pos = rng.permutation(len(y_index)), 0
            idx = order[pos: pos + s.batch_size]
            pos += s.batch_size
            logits = head(encode(net, train_views[idx]))
            target = torch.as_tensor(y_index[idx], device=net.device)
            loss = torch.nn.functional.cross_entropy(logits, target, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        head.eval()
        predicted = np.empty(len(test_y), np.int64)
        with torch.inference_mode():
            for a in range(0, len(test_y), s.eval_batch_size):
                predicted[a: a + s.eval_batch_size] = head(encode(net, test_views[a: a + s.eval_batch_size])
                                                            ).argmax(-1).cpu().numpy()
    return score_predictions(test_y, classes[predicted], n_train=len(train_y), n_classes=len(classes))
