"""One cache folder for everything packetclip keeps between runs (model weights converted once, LLM answers,
the ATT&CK corpus, text embeddings)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str, root: str | Path | None = None) -> Path:
    """``ROOT/kind``; ROOT is ``root`` if given, else ``$PACKETCLIP_CACHE``, else ``~/.cache/packetclip``.

    Read at call time (never at import) so a CLI option or a test's environment decides, not import order.
    """
    base = Path(root) if root is not None else Path(os.environ.get("PACKETCLIP_CACHE") or
                                                      Path.home() / ".cache" / "packetclip")
    return base / kind
