from .checkpoints import attach_checkpointing, latest_checkpoint
from .data import image_items
from .tasks import FusionTask, ReconstructionTask
