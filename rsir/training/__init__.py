"""Training and its parts: the trainer (``fit``), its callbacks, the losses and negative sampling."""

from .trainer import FitResult, TrainParams, fit

__all__ = ["FitResult", "TrainParams", "fit"]
