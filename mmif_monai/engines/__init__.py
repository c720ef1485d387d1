from .checkpoints import AtomicDiskSaver, BestModelSaver, attach_checkpointing, latest_checkpoint
from .data import image_items
from .tasks import FusionTask, ReconstructionTask
from .tracking import attach_evaluation_tracking_extras, attach_tracking_extras, log_evaluation_run
from .autoencoder import AutoencoderTask
from .adversarial import AdversarialTrainer
