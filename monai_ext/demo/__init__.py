"""Synthetic demo datasets written as real files (PNG, NIfTI, CSV, JSON), deterministic for a given seed.

- :func:`make_chest_xray_dataset`: chest X-rays whose report names a subset of the lesions (LViT / QaTa-COV19 layout).
- :func:`make_lvit_release`: the same images laid out like LViT's QaTa-COV19 or MosMedData+ release (dry runs).
- :func:`make_chest_xray_kinds_dataset`: demo task v2, lesions of three kinds named by clinical term and zone; and
  :func:`make_caption_corpus`, the plain-word caption corpus for pretraining a tiny CLIP.
- :func:`make_fundus_dataset`: fundus photographs with optic disc/cup labels from four imitation cameras.
- :func:`make_cardiac_dataset`: short-axis cardiac MRI volumes (LV, myocardium, RV) in bSSFP/LGE/T2-like sequences.
- :func:`make_demo_data`: the fundus or cardiac set laid out per domain, as the domain-generalisation experiment reads it.
- :func:`make_slaug_mscmrseg_release`, :func:`make_ccsdg_riga_release`: stand-ins of SLAug's MS-CMRSeg and CCSDG's
  RIGA+ releases (their folders, file formats and label values) for dry runs of the DG protocols.

Nothing is downloaded; a few hundred images take seconds. Outputs are staged in a hidden folder and renamed into
place when complete; an existing non-empty output folder is only replaced with ``overwrite=True`` and only if it is an
earlier synthetic dataset (it holds ``synthetic.json``).
"""

from .cardiac import (
    CARDIAC_DOMAINS,
    CARDIAC_LABELS,
    MSCMRSEG_LABEL_MAP,
    SLAUG_DEMO_DOMAINS,
    CardiacDomain,
    make_cardiac_dataset,
    make_slaug_mscmrseg_release,
    render_cardiac_volume,
)
from .chest_xray import (
    LUNG_ZONES,
    LVIT_SPLITS,
    compose_report,
    make_chest_xray_dataset,
    make_rereported_split,
    mask_for_zones,
    parse_report_zones,
    render_chest_xray,
)
from .chest_xray_kinds import (
    CAPTION_APPEARANCE,
    CORPUS_SOURCES,
    LESION_KINDS,
    REPORT_PHRASINGS,
    compose_findings_report,
    make_caption_corpus,
    make_chest_xray_kinds_dataset,
    make_kinds_rereported_split,
    mask_for_findings,
    oracle_channels,
    parse_report_findings,
    render_chest_xray_kinds,
    with_oracle_inputs,
)
from .common import MARKER_FILE, sample_rng
from .dicom import write_dicom_ct_slice
from .domains import DEMO_DOMAINS, make_demo_data
from .fundus import (
    FUNDUS_DOMAINS,
    FUNDUS_LABELS,
    RIGA_DEMO_SITES,
    FundusDomain,
    make_ccsdg_riga_release,
    make_fundus_dataset,
    render_fundus,
)
from .lvit_release import LVIT_RELEASES, LViTRelease, make_lvit_release

__all__ = [
    "DEMO_DOMAINS",
    "make_demo_data",
    "write_dicom_ct_slice",
    "MARKER_FILE",
    "sample_rng",
    "LUNG_ZONES",
    "LVIT_SPLITS",
    "compose_report",
    "parse_report_zones",
    "mask_for_zones",
    "render_chest_xray",
    "make_chest_xray_dataset",
    "make_rereported_split",
    "LVIT_RELEASES",
    "LViTRelease",
    "make_lvit_release",
    "LESION_KINDS",
    "REPORT_PHRASINGS",
    "CORPUS_SOURCES",
    "CAPTION_APPEARANCE",
    "compose_findings_report",
    "parse_report_findings",
    "mask_for_findings",
    "oracle_channels",
    "render_chest_xray_kinds",
    "make_chest_xray_kinds_dataset",
    "make_kinds_rereported_split",
    "make_caption_corpus",
    "with_oracle_inputs",
    "FundusDomain",
    "FUNDUS_DOMAINS",
    "FUNDUS_LABELS",
    "render_fundus",
    "make_fundus_dataset",
    "RIGA_DEMO_SITES",
    "make_ccsdg_riga_release",
    "CardiacDomain",
    "CARDIAC_DOMAINS",
    "CARDIAC_LABELS",
    "MSCMRSEG_LABEL_MAP",
    "render_cardiac_volume",
    "make_cardiac_dataset",
    "SLAUG_DEMO_DOMAINS",
    "make_slaug_mscmrseg_release",
]
