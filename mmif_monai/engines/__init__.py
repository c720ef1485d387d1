from .checkpoints import AtomicDiskSaver, BestModelSaver, attach_checkpointing, latest_checkpoint
from .data import image_items
from .tasks import FusionTask, ReconstructionTask
from .tracking import attach_tracking_extras
from .autoencoder import AutoencoderTask
from .adversarial import AdversarialTrainer
