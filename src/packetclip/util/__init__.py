"""Plumbing every stage shares: the cache folder, progress display, logging. One place each."""
