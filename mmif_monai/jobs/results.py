"""What a fusion job did: the files it wrote, how many images it fused, and the time each step took."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["StepTime", "JobResult"]


@dataclass(frozen=True)
class StepTime:
    """Wall-clock and process CPU seconds of one step; on a shared machine the CPU time is the steadier of the two."""

    wall: float
    cpu: float


@dataclass
class JobResult:
    """The outcome of a file job (:mod:`mmif_monai.jobs`).

    Attributes:
        outputs: the written paths, the main output first (a fused file or DICOM series folder).
        count: how many ``unit`` were fused (pairs for slice jobs, slices for a volume).
        unit: ``"pair"`` or ``"slice"``.
        timings: seconds per named step, in the order the steps ran.
        notes: one line per decision a reader should see (modalities and their normalisation, alignment, model).
        report: called with each note as it is made (e.g. ``print``), so a long job says what it does as it goes.
    """

    outputs: list[Path] = field(default_factory=list)
    count: int = 0
    unit: str = "pair"
    timings: dict[str, StepTime] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    report: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def note(self, line: str) -> None:
        self.notes.append(line)
        if self.report is not None:
            self.report(line)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the enclosed block as step ``name`` (added to an earlier step of that name)."""
        start = (time.perf_counter(), time.process_time())
        try:
            yield
        finally:
            wall, cpu = time.perf_counter() - start[0], time.process_time() - start[1]
            earlier = self.timings.get(name, StepTime(0.0, 0.0))
            self.timings[name] = StepTime(earlier.wall + wall, earlier.cpu + cpu)

    @property
    def total(self) -> StepTime:
        return StepTime(sum(t.wall for t in self.timings.values()), sum(t.cpu for t in self.timings.values()))

    def timing_line(self) -> str:
        """``timing: load 0.21 s (cpu 0.20), ...; total 5.30 s (cpu 9.80)``."""
        steps = ", ".join(f"{name} {t.wall:.2f} s (cpu {t.cpu:.2f})" for name, t in self.timings.items())
        return f"timing: {steps}; total {self.total.wall:.2f} s (cpu {self.total.cpu:.2f})"

    def summary(self) -> str:
        """One line for the end of a run: ``fused 180 slices in 5.30 s (34.0 slices/s)``."""
        seconds = self.total.wall
        rate = f"{self.count / seconds:.1f}" if seconds > 0 else "n/a"
        plural = "" if self.count == 1 else "s"
        return f"fused {self.count} {self.unit}{plural} in {seconds:.2f} s ({rate} {self.unit}s/s)"
