"""MONAI Deploy operators of the fusion app: select the two series, load and align them, fuse, write the series.

The study is loaded by the SDK's own ``DICOMDataLoaderOperator`` and the selection reuses the matching of its
``DICOMSeriesSelectorOperator`` (subclassed here for the study checks and the anatomical/functional pairing).
Loading, normalising, aligning and fusing are the steps of the library's 3D job (:mod:`mmif_monai.jobs.volumes`)
and the writer is :mod:`mmif_monai.io.dicom_series`'s: the app adds no second implementation of any of them.
Volumes travel between operators as a :class:`~mmif_monai.jobs.volumes.VolumePair` of MONAI ``MetaTensor``s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.deploy.core import Fragment, Operator, OperatorSpec
from monai.deploy.core.domain.dicom_series_selection import SelectedSeries, StudySelectedSeries
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator

from mmif_monai.deploy.selection import (
    ANATOMICAL,
    FUNCTIONAL,
    ROLES,
    check_single_study,
    choose_pair,
    describe_series,
    load_rules,
    series_folder,
    series_order,
)
from mmif_monai.fusion.engines import engine_line
from mmif_monai.fusion.methods import load_fusion_method
from mmif_monai.io.dicom_series import SourceSeries, write_fused_series
from mmif_monai.io.volumes import volume_name
from mmif_monai.jobs.volumes import align_pair, fuse_pair, load_volume_pair, normalise_pair

__all__ = [
    "FusionSeriesSelectorOperator",
    "AlignedVolumesOperator",
    "FusionInferenceOperator",
    "FusedSeriesWriterOperator",
]

#: user-facing progress (which series, which model, what was written); the app prints this logger to stdout
logger = logging.getLogger("mmif_monai.deploy")

_SELECTED_PORT = "study_selected_series_list"  # the SDK selector's output name, kept for its consumers
#: the port carrying the aligned :class:`~mmif_monai.jobs.volumes.VolumePair`
ALIGNED = "aligned"
#: the port carrying the two selected series as :class:`~mmif_monai.io.dicom_series.SourceSeries`, which the fused
#: series references
SOURCES = "sources"


class FusionSeriesSelectorOperator(DICOMSeriesSelectorOperator):
    """Checks the loaded study and selects its anatomical and functional series by rules.

    Named input:
        dicom_study_list: the list of ``DICOMStudy`` from ``DICOMDataLoaderOperator``.

    Named output:
        study_selected_series_list: one ``StudySelectedSeries`` with two ``SelectedSeries`` named
        ``anatomical`` and ``functional``.

    The rules and the pairing are described in :mod:`mmif_monai.deploy.selection`; the condition matching is
    the SDK selector's (``filter``), run once per selection so that the order of selections is the preference.
    """

    def __init__(
        self, fragment: Fragment, *args, study_folder: str | Path, rules: Mapping[str, Any] | None = None, **kwargs
    ):
        self._study_folder = Path(study_folder)
        self._selection_rules = dict(rules) if rules is not None else load_rules()
        super().__init__(fragment, *args, rules=json.dumps(self._selection_rules), all_matched=True, **kwargs)

    def compute(self, op_input, op_output, context):
        studies = op_input.receive(self.input_name_study_list)
        op_output.emit(self.select_pair(studies), self.output_name_selected_series)

    def select_pair(self, studies) -> StudySelectedSeries:
        """Raises ValueError naming the study folder: several patients or studies, or a role without a series."""
        study = check_single_study(studies, self._study_folder)
        candidates: dict[str, list] = {role: [] for role in ROLES}
        for selection in self._selection_rules["selections"]:
            matched = self.filter({"selections": [selection]}, [study], all_matched=True)
            series = [chosen.series for study_series in matched for chosen in study_series.selected_series]
            candidates[selection["name"]].extend(sorted(series, key=series_order))
        anatomical, functional = choose_pair(candidates, study, self._study_folder, self._selection_rules)
        logger.info("anatomical: %s; functional: %s", describe_series(anatomical), describe_series(functional))
        selected = StudySelectedSeries(study)
        selected.add_selected_series(SelectedSeries(ANATOMICAL, anatomical, None))
        selected.add_selected_series(SelectedSeries(FUNCTIONAL, functional, None))
        return selected


class AlignedVolumesOperator(Operator):
    """Loads the two selected series, normalises each, and resamples the functional one onto the anatomical grid.

    These are the ``load``, ``normalise`` and ``align`` steps of the 3D job that ``mmif fuse`` runs
    (:mod:`mmif_monai.jobs.volumes`), with its checks of the pair: each volume is normalised from its own units on
    its own grid (``ModalityNormalize``: CT window, MR percentiles, PET SUV from the DICOM header...), and the
    registration, when asked for, sees the anatomical volume in its own units.

    Named input:
        study_selected_series_list: the ``StudySelectedSeries`` of :class:`FusionSeriesSelectorOperator`.

    Named outputs:
        aligned: a :class:`~mmif_monai.jobs.volumes.VolumePair`, both volumes in [0, 1] on the anatomical grid;
            the anatomical volume's meta keeps the DICOM identity.
        sources: the anatomical and the functional series as
            :class:`~mmif_monai.io.dicom_series.SourceSeries`, the functional one through the registration when
            one was run, for the fused series' references.
    """

    def __init__(self, fragment: Fragment, *args, study_folder: str | Path, register: bool | str = False, **kwargs):
        self._study_folder = Path(study_folder)
        self._register = register
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(_SELECTED_PORT)
        spec.output(ALIGNED)
        spec.output(SOURCES)

    def compute(self, op_input, op_output, context):
        selected = op_input.receive(_SELECTED_PORT)
        by_role = {chosen.selection_name: chosen.series for chosen in selected.selected_series}
        folders = [series_folder(by_role[role], self._study_folder) for role in ROLES]
        uids = [str(by_role[role].SeriesInstanceUID) for role in ROLES]
        loaded = load_volume_pair(*folders, series=uids, register=self._register)
        normalised, rules = normalise_pair(loaded)
        aligned, report = align_pair(loaded, normalised, self._register)
        logger.info("%s; alignment: %s", rules, report.summary())
        op_output.emit(aligned, ALIGNED)
        # the headers the SDK's loader read; a fused point shows the functional value at the registration's image
        sources = tuple(
            SourceSeries.from_datasets(
                [instance.get_native_sop_instance() for instance in by_role[role].get_sop_instances()],
                to_source=report.matrix if role == FUNCTIONAL else None,
            )
            for role in ROLES
        )
        op_output.emit(sources, SOURCES)


class FusionInferenceOperator(Operator):
    """Fuses the aligned volumes slice by slice with the bundle's network (or a classical method): the job's
    ``fuse`` step (:func:`~mmif_monai.jobs.volumes.fuse_pair`).

    Named input:
        aligned: the :class:`~mmif_monai.jobs.volumes.VolumePair` of :class:`AlignedVolumesOperator`.

    Named outputs:
        fused: a ``MetaTensor`` (C, X, Y, Z) in [0, 1] with the anatomical affine; C = 3 when the functional
            series is PT or NM (coloured as in ``mmif fuse``), else 1.
        description: what was fused with what, for the fused series' SeriesDescription.

    The model is loaded on the first call, from ``model_path`` (a state dict file), to run on ``engine``
    (:mod:`mmif_monai.fusion.engines`; ``auto``: the faster ONNX runtime on the CPU, torch on a GPU).
    """

    def __init__(
        self,
        fragment: Fragment,
        *args,
        model_path: str | Path | None,
        method: str = "mmif-net",
        device: str = "cpu",
        engine: str = "auto",
        **kwargs,
    ):
        self._model_path = model_path
        self._method = method
        self._device = device
        self._engine = engine
        self._fuse_fn = None
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(ALIGNED)
        spec.output("fused")
        spec.output("description")

    def compute(self, op_input, op_output, context):
        aligned = op_input.receive(ALIGNED)
        if self._fuse_fn is None:
            self._fuse_fn, description = load_fusion_method(
                self._method, self._model_path, self._device, self._engine, report=logger.info
            )
            logger.info("model: %s", description)
            if line := engine_line(self._fuse_fn, self._device):
                logger.info("engine: %s", line)
        try:
            fused = fuse_pair(self._fuse_fn, aligned, device=self._device).volume
        except ValueError as error:  # say which series
            raise ValueError(f"{volume_name(aligned.anatomical)}: {error}") from error
        op_output.emit(fused, "fused")
        op_output.emit(aligned.series_label(self._method), "description")


class FusedSeriesWriterOperator(Operator):
    """Writes the fused volume as a new DICOM series of the anatomical series' patient and study.

    Named inputs:
        fused, description: from :class:`FusionInferenceOperator`.
        aligned: the pair whose anatomical volume's DICOM identity the series keeps (PatientID,
            StudyInstanceUID...).
        sources: from :class:`AlignedVolumesOperator`: each fused image references the anatomical image on its
            plane and the functional images its resampling read.
    """

    def __init__(self, fragment: Fragment, *args, output_folder: str | Path, overwrite: bool = False, **kwargs):
        self._output_folder = Path(output_folder)
        self._overwrite = overwrite
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("fused")
        spec.input("description")
        spec.input(ALIGNED)
        spec.input(SOURCES)

    def compute(self, op_input, op_output, context):
        fused, description = op_input.receive("fused"), op_input.receive("description")
        reference, sources = op_input.receive(ALIGNED).anatomical, op_input.receive(SOURCES)
        written = write_fused_series(fused, reference, self._output_folder, self._overwrite, description, sources)
        logger.info("wrote %d DICOM files to %s", len(written), self._output_folder)
