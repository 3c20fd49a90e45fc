"""Snapfit's engine: data, models, training, LR finding, evaluation, prediction and export.

UI-free: nothing here imports gradio or prints. Long operations are generators of events (engine.events).
"""
from engine._compat import ensure_torchvision_ops

ensure_torchvision_ops()
