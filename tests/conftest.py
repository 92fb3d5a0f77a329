"""Test-wide settings: one compute thread per library, so the suite's speed does not collapse when the other
core is busy (OpenMP workers spin-wait for a core that is taken) and results do not depend on thread count."""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
