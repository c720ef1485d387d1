"""The end of a distributed bundle run (torchrun with ``multi_gpu_train.json`` or ``multi_gpu_evaluate.json``).

Why it is more than ``destroy_process_group()``: gloo's worker threads release a collective's tensors only after the
caller's wait has returned. When Python has already dropped those tensors (ignite's metric all-gather does), the
release needs the GIL; a worker thread that asks for it after interpreter shutdown has begun is exited by Python in
the middle of a C++ destructor, and the process aborts (``terminate called without an active exception``), so
torchrun reports a finished run as failed. A rank that ends right after its last collective can get there first.
A barrier does not close the window: gloo's barrier holds the works before it and releases them the same way.
Time with the GIL free while the process is still whole does, in practice: the thread needs microseconds of it.
It is a margin, not a proof; joining gloo's threads first would be, but DDP keeps the process group (and its
threads) alive after ``destroy_process_group()``.
"""

from __future__ import annotations

import time

import torch.distributed as dist

__all__ = ["SETTLE_SECONDS", "end_process_group"]

#: how long each rank sleeps (the GIL free) after destroying its process group, for gloo's worker threads to finish
#: releasing the last collectives; against the microseconds they need, it covers a thread kept off a busy CPU
SETTLE_SECONDS = 0.5


def end_process_group(settle_seconds: float = SETTLE_SECONDS) -> None:
    """Wait for every rank (so that none leaves while another still writes), destroy the default process group, then
    sleep ``settle_seconds`` before the interpreter shuts down (module docstring). Nothing when no group is
    initialised, as in a one-process run."""
    if not dist.is_initialized():
        return
    dist.barrier()
    dist.destroy_process_group()
    time.sleep(settle_seconds)
