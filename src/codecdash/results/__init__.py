"""Rate-distortion result files: their formats (`reader`), the known test sets (`datasets`),
per-sequence results (`sequences`) and the published curves shipped with codecdash
(`bundled`)."""

from codecdash.results.bundled import BUNDLED_DATASET, bundled_result_curves, rd_pairs
from codecdash.results.datasets import (
    KNOWN_DATASETS,
    canonical_dataset,
    dataset_from_path,
    known_dataset,
)
from codecdash.results.reader import (
    MS_SSIM_KEYS,
    PSNR_KEYS,
    QUALITY_LABELS,
    RATE_KEYS,
    Quality,
    RDPoint,
    ResultCurve,
    parse_results,
    parse_text,
    read_result_file,
)

__all__ = [
    "BUNDLED_DATASET",
    "KNOWN_DATASETS",
    "MS_SSIM_KEYS",
    "PSNR_KEYS",
    "QUALITY_LABELS",
    "RATE_KEYS",
    "Quality",
    "RDPoint",
    "ResultCurve",
    "bundled_result_curves",
    "canonical_dataset",
    "dataset_from_path",
    "known_dataset",
    "parse_results",
    "parse_text",
    "rd_pairs",
    "read_result_file",
]
