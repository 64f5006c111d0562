"""The known test sets and their spellings; per-sequence files and their average."""

from __future__ import annotations

from pathlib import Path

import pytest

from codecdash.results import (
    KNOWN_DATASETS,
    canonical_dataset,
    dataset_from_path,
    known_dataset,
    parse_results,
)
from codecdash.results.datasets import dataset_key
from codecdash.results.sequences import (
    average_point,
    check_alike,
    experiment_stem,
    merged_points,
    sequence_name,
)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("UVG-1080p", "UVG-1080p"),
        ("uvg_1080p", "UVG-1080p"),
        ("UVG1080P", "UVG-1080p"),
        ("uvg", "UVG"),
        ("mcl-jcv", "MCL-JCV"),
        ("MCL_JCV", "MCL-JCV"),
        ("HEVC-B", "HEVC-B"),
        ("HEVC_ClassB", "HEVC-B"),
        ("hevc-class-e", "HEVC-E"),
        ("ClassC", "HEVC-C"),
        ("JVET-A1", "JVET-A1"),
        ("jvet_ctc_class_a2", "JVET-A2"),
        ("kodak", "Kodak"),
        ("CLIC", "CLIC"),
        ("clic2020-mobile", "CLIC2020-mobile"),
        ("TECNICK", "Tecnick"),
    ],
)
def test_known_sets_in_any_spelling(spelling: str, canonical: str) -> None:
    assert known_dataset(spelling) == canonical
    assert canonical_dataset(f"  {spelling} ") == canonical


def test_one_table_and_no_spelling_names_two_sets() -> None:
    keys = [dataset_key(a) for aliases in KNOWN_DATASETS.values() for a in aliases]
    assert len(keys) == len(set(keys))
    assert all(known_dataset(name) == name for name in KNOWN_DATASETS)


def test_unknown_sets_are_kept_as_written() -> None:
    assert known_dataset("my-in-house-set") is None
    assert canonical_dataset("my-in-house set") == "my-in-house set"
    with pytest.raises(ValueError, match="empty"):
        canonical_dataset("  ")
    with pytest.raises(ValueError, match="over 100 characters"):
        canonical_dataset("x" * 101)


@pytest.mark.parametrize(
    ("path", "dataset"),
    [
        ("results/video/UVG-1080p/x264-medium-tune-zerolatency.json", "UVG-1080p"),
        ("results/image/kodak/vtm.json", "Kodak"),
        ("results/image/8bit-decoded/clic2020-mobile/jpeg.json", "CLIC2020-mobile"),
        ("out/HEVC_ClassB/ssf2020-mse-3.json", "HEVC-B"),
        ("out/ssf2020-mse-3-mcl-jcv.json", "MCL-JCV"),
        ("runs/uvg/UVG-4K/x.json", "UVG-4K"),  # the nearest name wins
        ("tests/data/rd-results/compressai-tests/bench_x265.json", None),
        ("results.json", None),
        ("/home/uvg/projects/codec/runs/x.json", None),  # three folders up at most
        ("/home/uvg/projects/codec/x.json", "UVG"),
    ],
)
def test_the_set_is_inferred_from_the_path(path: str, dataset: str | None) -> None:
    assert dataset_from_path(path) == dataset


@pytest.mark.parametrize(
    ("source", "short"),
    [
        ("Beauty_1920x1080_120fps_420_8bit_YUV", "Beauty"),
        ("C_RaceHorses_2frames_832x480_30Hz_8bit_P420", "C_RaceHorses_2frames"),
        ("ReadySteadyGo", "ReadySteadyGo"),
        ("kodim01", "kodim01"),
    ],
)
def test_sequence_names_are_shortened(source: str, short: str) -> None:
    assert sequence_name(source) == short


def per_sequence(source: str, kbps: float, psnr: float, ms_ssim: float | None = 0.95) -> dict:
    results = {"bitrate": kbps, "psnr-rgb": psnr}
    if ms_ssim is not None:
        results["ms-ssim-rgb"] = ms_ssim
    return {
        "source": source,
        "name": "ssf2020",
        "description": "Inference (ans)",
        "results": results,
    }


def test_per_sequence_files_of_one_model_make_one_experiment_with_its_average() -> None:
    files = {
        "Beauty_1920x1080_120fps_420_8bit_YUV": (1000.0, 34.0, 0.90),
        "Jockey_1920x1080_120fps_420_8bit_YUV": (3000.0, 36.0, 0.96),
    }
    curves = [parse_results(per_sequence(s, *v), s) for s, v in files.items()]
    paths = [Path(f"out/{s}-ssf2020-mse-3-ans.json") for s in files]
    assert {experiment_stem(p, c) for p, c in zip(paths, curves, strict=True)} == {
        "ssf2020-mse-3-ans"
    }
    points, averaged = merged_points(curves)
    assert averaged == 2
    assert points[0] == pytest.approx({"bitrate_kbps": 2000.0, "psnr_db": 35.0, "ms_ssim": 0.93})
    assert points[1:] == [
        {"bitrate_kbps": 1000.0, "psnr_db": 34.0, "ms_ssim": 0.90, "sequence": "Beauty"},
        {"bitrate_kbps": 3000.0, "psnr_db": 36.0, "ms_ssim": 0.96, "sequence": "Jockey"},
    ]


def test_no_average_of_curves_or_next_to_a_given_average() -> None:
    curve = parse_results({"source": "Beauty", "bitrate": [1.0, 2.0], "psnr": [30.0, 31.0]}, "b")
    points, averaged = merged_points([curve])
    assert averaged == 0
    assert [p["sequence"] for p in points] == ["Beauty", "Beauty"]
    average = parse_results({"bitrate": 5.0, "psnr": 30.0}, "avg")
    one = parse_results(per_sequence("Beauty", 4.0, 29.0), "b")
    points, averaged = merged_points([average, one])
    assert averaged == 0
    assert points == [
        {"bitrate_kbps": 5.0, "psnr_db": 30.0},
        {"bitrate_kbps": 4.0, "psnr_db": 29.0, "ms_ssim": 0.95, "sequence": "Beauty"},
    ]


def test_a_sequence_twice_or_unlike_files_are_refused() -> None:
    one = parse_results(per_sequence("Beauty", 4.0, 29.0), "b")
    with pytest.raises(ValueError, match="'Beauty' is given twice"):
        merged_points([one, one])
    image = parse_results({"source": "kodim01", "bpp": 0.4, "psnr": 30.0}, "k")
    with pytest.raises(ValueError, match=r"rates in bpp but a\.json has them in kbps"):
        check_alike([Path("a.json"), Path("b.json")], [one, image])
    y_only = parse_results({"source": "Jockey", "bitrate": 4.0, "y_psnr": 29.0}, "j")
    with pytest.raises(ValueError, match=r"quality is Y PSNR but a\.json has RGB PSNR"):
        check_alike([Path("a.json"), Path("b.json")], [one, y_only])


def test_average_leaves_out_ms_ssim_unless_every_point_has_it() -> None:
    points = [{"bpp": 0.1, "psnr_db": 30.0, "ms_ssim": 0.9}, {"bpp": 0.3, "psnr_db": 32.0}]
    assert average_point(points) == pytest.approx({"bpp": 0.2, "psnr_db": 31.0})
