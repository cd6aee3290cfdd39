"""RLlib's import path for callbacks; they live with the env runners, which call most hooks."""

from runners.callbacks import DefaultCallbacks, RLlibCallback, make_callbacks

__all__ = ["DefaultCallbacks", "RLlibCallback", "make_callbacks"]
