"""File jobs: fusing slice files, AANLIB-style folders and 3D studies, from paths to written outputs.

Each job is a sequence of named steps (read or load, normalise, align, model, fuse, write) and returns a
:class:`JobResult`: the written paths, how many images were fused, and the seconds of every step. ``mmif fuse``,
``mmif demo``, the bundle's 3D inference, the MONAI Deploy app and the benchmark run these steps.
"""

from .results import JobResult, StepTime
