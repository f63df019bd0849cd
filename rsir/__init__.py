"""rsir: recursive self-improving sequential recommendation."""

import os

# MKL may otherwise use fewer threads than asked when the machine is busy, which changes
# the order of floating-point sums and breaks exact repeatability of seeded runs.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")

__version__ = "0.1.0"
