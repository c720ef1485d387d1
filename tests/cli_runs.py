"""Running the ``mmif`` command in-process from the tests."""

from mmif_monai.cli.main import main


def fuse_pair(anatomical, functional, output, *options: str) -> int:
    """``mmif fuse`` of one pair; its exit status."""
    return main(["fuse", "--anatomical", str(anatomical), "--functional", str(functional), "-o", str(output), *options])
