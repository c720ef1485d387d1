from .adversarial import AdversarialTrainer
from .autoencoder import AutoencoderTask
from .checkpoints import (
    AtomicDiskSaver,
    BestModelSaver,
    EvaluatorBestMetric,
    ResumableEarlyStopHandler,
    attach_checkpointing,
    latest_checkpoint,
)
from .data import bundle_pairs, bundle_split, image_items
from .distributed import end_process_group
from .preflight import (
    check_bundle_weights,
    check_checkpoint_dir,
    check_outputs_outside_inputs,
    check_resume_checkpoint,
    refuse_in_one_line,
)
from .progress import print_run_summary, run_summary
from .tasks import FusionTask, ReconstructionTask
from .tracking import attach_evaluation_tracking_extras, attach_tracking_extras, log_evaluation_run
