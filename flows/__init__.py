"""Prefect flows over the pipeline's stage functions (no logic the CLI lacks)."""
from .augment import augment_flow, train_flow

__all__ = ["augment_flow", "train_flow"]
