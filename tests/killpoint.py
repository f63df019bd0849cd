"""Run the rsir command line and SIGKILL it at a chosen point (used by test_reliability).

    python tests/killpoint.py SPEC rsir-arguments...

SPEC is ``call:MODULE.FUNCTION:N`` (killed as the N-th call of that function starts) or
``replace:RELATIVE/PATH:N`` (killed just before the N-th atomic rename onto that path
inside ``--out``, so the finished temporary file is left behind). Nothing in rsir is
changed: the process dies as it would from ``kill -9`` at that moment.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path


def arm(spec: str, out: Path) -> None:
    kind, target, nth = spec.split(":")
    calls = 0

    def hit() -> None:
        nonlocal calls
        calls += 1
        if calls == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)

    if kind == "call":
        module_name, name = target.rsplit(".", 1)
        module = importlib.import_module(module_name)
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            hit()
            return original(*args, **kwargs)

        setattr(module, name, wrapper)
    elif kind == "replace":
        real_replace = os.replace
        destination = (out / target).resolve()

        def replace(src, dst, *args, **kwargs):
            if Path(dst).resolve() == destination:
                hit()
            return real_replace(src, dst, *args, **kwargs)

        os.replace = replace
    else:
        raise SystemExit(f"unknown kill point {spec!r}")


if __name__ == "__main__":
    spec, argv = sys.argv[1], sys.argv[2:]
    arm(spec, Path(argv[argv.index("--out") + 1]))
    from rsir.cli import main

    sys.exit(main(argv))
