"""Experiments: a spec's cells run side by side (``runner``), their report with paired gains
(``report``), and metrics by user segment (``segments``)."""

from .runner import Spec, load_spec, run_experiment

__all__ = ["Spec", "load_spec", "run_experiment"]
