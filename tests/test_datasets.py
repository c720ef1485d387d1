"""Reading a site's own data set folder: any subset of the pair types, its own folder names, a validation split
by atlas case, by a list or by a fraction taken in blocks, and one clear line for a wrong layout."""

import shutil
from pathlib import Path

import pytest

from mmif_monai.engines import bundle_pairs, bundle_split
from mmif_monai.io.aanlib import (
    DatasetLayoutError,
    FusionPair,
    list_pairs,
    split_by_fraction,
    split_by_list,
    split_dataset,
)
from mmif_monai.io.paths import SAMPLES_DIR


def _site(root: Path, pair_type: str, folders: tuple[str, str], names: list[str]) -> Path:
    """A data set folder with one pair type: the sample MRI-PET pair's images under the given names."""
    anatomical = sorted((SAMPLES_DIR / "mri_pet" / "MRI").iterdir())[0]
    second = SAMPLES_DIR / "mri_pet" / "PET" / anatomical.name
    for folder, source in zip(folders, (anatomical, second)):
        (root / pair_type / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(source, root / pair_type / folder / name)
    return root


def test_only_the_pair_types_present_are_read(tmp_path):
    shutil.copytree(SAMPLES_DIR / "mri_pet", tmp_path / "mri_pet")
    pairs = list_pairs(tmp_path)
    assert {p.pair_type for p in pairs} == {"mri_pet"}
    assert len(pairs) == len(list((SAMPLES_DIR / "mri_pet" / "MRI").iterdir()))


def test_a_sites_own_folder_names_are_read_through_a_mapping(tmp_path):
    _site(tmp_path, "brain_pet", ("T1", "FDG"), ["sub01_001.png", "sub01_002.png"])
    pairs = list_pairs(tmp_path, {"brain_pet": ["T1", "FDG"]})
    assert [(p.pair_type, p.name) for p in pairs] == [("brain_pet", "sub01_001.png"), ("brain_pet", "sub01_002.png")]
    assert pairs[0].functional == tmp_path / "brain_pet" / "FDG" / "sub01_001.png"


def test_a_folder_without_any_pair_type_names_the_expected_layout(tmp_path):
    _site(tmp_path, "brain_pet", ("T1", "FDG"), ["a.png"])
    with pytest.raises(DatasetLayoutError, match=r"none of the pair-type folders mri_ct, mri_pet.*mri_pet/PET"):
        list_pairs(tmp_path)


def test_a_missing_modality_folder_is_named_with_the_layout(tmp_path):
    _site(tmp_path, "brain_pet", ("T1", "FDG"), ["a.png"])
    with pytest.raises(
        DatasetLayoutError, match=r"brain_pet/PET: missing modality folder.*brain_pet/T1 \+ brain_pet/PET"
    ):
        list_pairs(tmp_path, {"brain_pet": ["T1", "PET"]})


def test_a_fraction_holds_out_the_last_block_of_each_pair_type():
    names = [f"sub{s:02d}_{i:03d}.png" for s in range(1, 5) for i in range(1, 6)]  # 4 subjects x 5 slices
    root = Path("/site")
    pairs = [FusionPair(pair_type, n, root / n, root / n) for pair_type in ("t_a", "t_b") for n in names]
    train, val = split_by_fraction(pairs, 0.25)
    for pair_type in ("t_a", "t_b"):
        held = [p.name for p in val if p.pair_type == pair_type]
        assert held == names[-5:]  # subject 4, whole; not slices drawn from every subject
    assert len(train) == 30 and not {p.name for p in train if p.pair_type == "t_a"} & {p.name for p in val}
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_by_fraction(pairs, 1.0)


def test_a_list_names_pairs_by_type_or_by_file_name(tmp_path):
    shutil.copytree(SAMPLES_DIR, tmp_path / "data", ignore=shutil.ignore_patterns("*.md"))
    pairs = list_pairs(tmp_path / "data")
    first_ct, first_pet = (next(p for p in pairs if p.pair_type == t) for t in ("mri_ct", "mri_pet"))
    listing = tmp_path / "validation.txt"
    listing.write_text(f"# held out\nmri_ct/{first_ct.name}\n\n{first_pet.name}\n")
    train, val = split_by_list(pairs, listing)
    assert first_ct in val and first_pet in val
    assert all(p.name in {first_ct.name, first_pet.name} for p in val)
    assert len(train) + len(val) == len(pairs)
    listing.write_text("mri_ct/no_such.png\n")
    with pytest.raises(ValueError, match=r"1 listed pairs are not in the data set, e.g. \['mri_ct/no_such.png'\]"):
        split_by_list(pairs, listing)


def test_the_split_rule_is_the_first_given_and_an_empty_part_is_refused(tmp_path):
    _site(tmp_path, "brain_pet", ("T1", "FDG"), ["sub01_001.png", "sub02_001.png"])
    own = {"brain_pet": ["T1", "FDG"]}
    # default atlas cases cannot apply to a site's names: the message says what to set instead
    with pytest.raises(ValueError, match="set validation_fraction or validation_file"):
        split_dataset(tmp_path, own)
    train, val = split_dataset(tmp_path, own, validation_fraction=0.5)
    assert [p.name for p in train] == ["sub01_001.png"] and [p.name for p in val] == ["sub02_001.png"]
    listing = tmp_path / "val.txt"
    listing.write_text("sub01_001.png\n")
    train, val = split_dataset(tmp_path, own, validation_file=listing, validation_fraction=0.5)
    assert [p.name for p in val] == ["sub01_001.png"]  # the list wins over the fraction
    with pytest.raises(ValueError, match="the training split is empty"):
        split_dataset(SAMPLES_DIR)  # every sample pair is from a held-out atlas case


def test_bundle_data_errors_end_with_one_line(tmp_path):
    with pytest.raises(SystemExit, match="^error: dataset_dir is required") as missing:
        bundle_split(None)
    with pytest.raises(SystemExit, match=r"^error: .*nowhere: data set folder not found; expected") as wrong:
        bundle_pairs(tmp_path / "nowhere")
    for error in (missing, wrong):
        assert "\n" not in str(error.value)
    train, val = bundle_split(SAMPLES_DIR, validation_cases=[30])
    assert train and val and {p.case for p in val} == {30}
