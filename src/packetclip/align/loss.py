"""The contrastive loss of alignment: symmetric InfoNCE, plain (CLIP) or with several positives per row.

CLIP's targets are ``arange(batch)``: row i's only positive is column i. With PacketCLIP's texts ("A network
traffic of {label}. ...") many pairs in a batch share a class, so CLIP counts a flow's match with another
description of its own class as a *negative*. :func:`multi_positive_loss` counts every pair whose group
(class, or identical text) matches as a positive instead: the loss of a row is minus the log of the
probability mass on its positives. With one positive per row it equals :func:`clip_loss`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def logits_of(traffic: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """``scale * traffic @ text.T`` for L2-normalised rows (``scale = exp(logit_scale)``)."""
    return logit_scale.exp() * traffic @ text.t()


def clip_loss(traffic: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with ``arange`` targets (open_clip's ``ClipLoss``)."""
    logits = logits_of(traffic, text, logit_scale)
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def multi_positive_loss(traffic: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                        groups: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where pairs (i, j) with ``groups[i] == groups[j]`` are all positives."""
    logits = logits_of(traffic, text, logit_scale)
    positive = groups[:, None] == groups[None, :]
    neg_inf = torch.finfo(logits.dtype).min

    def one_side(lg: torch.Tensor) -> torch.Tensor:
        pos = torch.logsumexp(lg.masked_fill(~positive, neg_inf), dim=1)
        return (torch.logsumexp(lg, dim=1) - pos).mean()

    return 0.5 * (one_side(logits) + one_side(logits.t()))


class ContrastiveLoss(nn.Module):
    """``loss(traffic, text, logit_scale, groups=None)``; ``multi_positive`` picks the variant.

    ``groups`` (int64 [batch]) is required by the multi-positive variant and ignored by the plain one.
    """

    def __init__(self, multi_positive: bool = True):
        super().__init__()
        self.multi_positive = bool(multi_positive)

    def forward(self, traffic: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                groups: torch.Tensor | None = None) -> torch.Tensor:
        if self.multi_positive:
            if groups is None:
                raise ValueError("the multi-positive loss needs the pairs' groups")
            return multi_positive_loss(traffic, text, logit_scale, groups)
        return clip_loss(traffic, text, logit_scale)
