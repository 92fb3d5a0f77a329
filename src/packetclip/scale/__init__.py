"""Scale-out on existing engines: Ray for data-parallel work (ingest, embedding, detection over many captures),
``torchrun`` / PyTorch distributed for training (:mod:`packetclip.scale.ddp`). Everything here is optional
(``pip install packetclip[ray]``); nothing else in the package imports it. See ``docs/scale.md``."""
