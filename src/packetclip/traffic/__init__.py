"""Traffic ingest: capture reading, packet decoding, flow assembly, packet views, dataset adapters."""
