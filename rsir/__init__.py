"""rsir: recursive self-improving sequential recommendation.

The public API, in the data's own ids::

    import rsir
    data = rsir.read_dataset("Beauty.txt")      # or rsir.from_dataframe(frame, user=..., item=..., time=...)
    model = rsir.Recommender().fit(data)
    model.recommend(["A1"], k=10)

Its names load on first use, so ``import rsir`` stays cheap.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "Recommender": "rsir.recommender",
    "RoundResult": "rsir.generation.loop",
    "Dataset": "rsir.data",
    "read_dataset": "rsir.data",
    "from_dataframe": "rsir.data",
    "make_synthetic": "rsir.data",
    "TrainParams": "rsir.training",
    "FitResult": "rsir.training",
    "GenerationParams": "rsir.generation",
    "RsirError": "rsir.errors",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'rsir' has no attribute {name!r}")
