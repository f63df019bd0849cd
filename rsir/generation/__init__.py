"""Synthetic sequences and the loop that trains on them: generation with the fidelity check,
retrieval, acquisition, state retention, statistics of a round, the rounds themselves and
the identity of each phase of a run."""

from .generate import GenerationParams, GenerationResult, generate
from .loop import ImproveParams, LoopSpec, improve

__all__ = ["GenerationParams", "GenerationResult", "ImproveParams", "LoopSpec", "generate", "improve"]
