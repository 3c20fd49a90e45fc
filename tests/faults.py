"""Fault injection for the reliability tests: hold or break a training job at a chosen forward pass.

A process-wide forward pre-hook (`torch.nn.modules.module.register_module_forward_pre_hook`) sees every
module call; this one acts only on a job thread's top-level timm model (the module that has a
`pretrained_cfg`), so predictions served by the app meanwhile run untouched, and only from the chosen
train-mode forward on. The real training runs around it: only the chosen fault is artificial.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

WAIT = 120.0  # seconds a held job waits for release; only reached when a test is broken


class Fault:
    """From the `at_step`-th train-mode forward of job models on (counted after their first validation pass if
    `after_validation`): note the thread as arrived, wait for `release` if `hold` (every forward, in every job,
    until released), and raise `exc` once, at the `at_step`-th."""

    def __init__(self, at_step: int = 1, after_validation: bool = False, hold: bool = False,
                 exc: BaseException | None = None, thread_prefix: str = "snapfit-job-train") -> None:
        self.at_step, self.after_validation, self.hold, self.exc = at_step, after_validation, hold, exc
        self.thread_prefix = thread_prefix
        self.release = threading.Event()
        self.steps, self.validated, self.trained = 0, False, False
        self.arrived: set[str] = set()  # names of the job threads that reached the fault
        self._cond = threading.Condition()

    def __call__(self, module, args):
        if not hasattr(module, "pretrained_cfg") or not threading.current_thread().name.startswith(self.thread_prefix):
            return
        with self._cond:
            if not module.training:  # eval mode: a validation pass, once training has begun (set-up probes run in eval too)
                self.validated = self.validated or self.trained
                return
            self.trained = True
            if self.after_validation and not self.validated:
                return
            self.steps += 1
            if self.steps < self.at_step:
                return
            first = self.steps == self.at_step
            self.arrived.add(threading.current_thread().name)
            self._cond.notify_all()
        if self.hold:
            self.release.wait(WAIT)
        if first and self.exc is not None:
            raise self.exc

    def wait_arrived(self, n: int = 1, timeout: float = WAIT) -> bool:
        """Whether `n` job threads reached the fault within `timeout` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.arrived) >= n, timeout)


@contextmanager
def injected(fault: Fault):
    """Install the fault for the block; on the way out release anything it holds."""
    handle = torch.nn.modules.module.register_module_forward_pre_hook(fault)
    try:
        yield fault
    finally:
        handle.remove()
        fault.release.set()
