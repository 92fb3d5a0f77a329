"""Figure 6 of the paper: per mission, a word cloud and the top-10 vocabulary of the generated descriptions.

The opening "A network traffic of {label}." is removed first (it would dominate every cloud), then
stopwords, numbers and units; what is left is the vocabulary the templates, concepts and paraphrases
actually contribute.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterable

import pandas as pd

from packetclip.errors import PacketClipError

_WORD = re.compile(r"[a-z][a-z\-]*[a-z]|[a-z]")
# Units and template glue that say nothing about the traffic.
EXTRA_STOPWORDS = frozenset({
    "bytes", "byte", "kb", "mb", "gb", "ms", "µs", "min", "s", "packets", "packet", "flags", "flag",
    "concepts", "also", "moreover", "addition", "notably", "one", "two", "whole", "around", "roughly", "about",
    "per", "every", "each", "within", "its", "it", "this", "that", "these", "the", "a", "an", "while", "via",
})


def mission_slug(mission: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", str(mission).lower())) or "unknown"


def vocabulary(texts: Iterable[str], labels: Iterable[str]) -> Counter:
    """Word counts of descriptions with their opening sentence, stopwords and numbers removed."""
    from wordcloud import STOPWORDS

    stop = set(STOPWORDS) | EXTRA_STOPWORDS
    counts: Counter = Counter()
    for text, label in zip(texts, labels):
        body = str(text).replace(f"A network traffic of {label}.", " ")
        for word in _WORD.findall(body.lower()):
            word = word.strip("-")
            if len(word) > 1 and word not in stop:
                counts[word] += 1
    return counts


def write_mission_figures(descriptions: pd.DataFrame, out_dir: str | Path, *, top: int = 10,
                          seed: int = 0) -> list[Path]:
    """``wordcloud_<mission>.png`` and ``top_words_<mission>.png`` for every mission present; returns the paths."""
    for column in ("text", "label", "mission"):
        if column not in descriptions.columns:
            raise PacketClipError(f"descriptions have no {column!r} column")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from wordcloud import WordCloud

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PacketClipError(f"cannot create the figures folder: {err.strerror or err}", path=out) from None
    written: list[Path] = []
    frame = descriptions.dropna(subset=["mission"])
    for mission, group in sorted(frame.groupby("mission"), key=lambda kv: str(kv[0])):
        counts = vocabulary(group["text"], group["label"])
        if not counts:
            continue
        slug = mission_slug(mission)
        cloud = WordCloud(width=900, height=500, background_color="white", random_state=seed,
                          collocations=False, max_words=150).generate_from_frequencies(dict(counts))
        path = out / f"wordcloud_{slug}.png"
        cloud.to_file(str(path))
        written.append(path)

        words, freqs = zip(*counts.most_common(top))
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
        ax.barh(range(len(words))[::-1], freqs, color="#3b6ea5")
        ax.set_yticks(range(len(words))[::-1], words)
        ax.set_xlabel("occurrences")
        ax.set_title(f"{mission}: top {len(words)} words of {len(group):,} descriptions")
        fig.tight_layout()
        path = out / f"top_words_{slug}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
