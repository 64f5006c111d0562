"""The reader of CompressAI-style result files, on the bundled published files and variants."""

from __future__ import annotations

import glob
import json
import math
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codecdash.experiments.vocabulary import rate_unit
from codecdash.results import (
    bundled_result_curves,
    parse_results,
    rd_pairs,
    read_result_file,
)

# Every file of the bundled copy of CompressAI's results/video/UVG-1080p: point count,
# description, MS-SSIM key, first and last point as (kbps, PSNR-RGB dB, MS-SSIM), exactly
# as written in the files.
Point = tuple[float, float, float | None]
UVG_FILES: dict[str, tuple[int, str, str | None, Point, Point]] = {
    "VTM-v15.0-lowdelay": (
        7,
        "VTM reference software, version 15.0",
        "ms-ssim-rgb",
        (26777.824685714288, 39.57384091423854, 0.9790219409125192),
        (285.6864, 29.157941841863924, 0.8638960463660104),
    ),
    "ssf2020-from-authors": (
        7,
        "Numbers reported in [Agustsson2020]",
        None,
        (5011.502627, 31.8495, None),
        (92473.11804, 39.3656, None),
    ),
    "ssf2020-mse-ans-vimeo": (
        7,
        "Inference (ans), trained on Vimeo90k",
        "ms-ssim-rgb",
        (10416.947199999999, 32.464655194963726, 0.9263219237327576),
        (119748.7232, 40.40175247192383, 0.9868059924670628),
    ),
    "x264-medium-tune-zerolatency": (
        8,
        "x264 medium, zerolatency configuration, ffmpeg version 3.4.8-0ubuntu0.2",
        "ms-ssim-rgb",
        (124751.51222857145, 40.15240685237069, 0.987276588167463),
        (1289.485257142857, 27.97759378616062, 0.8237434199878148),
    ),
    "x265-medium-tune-zerolatency": (
        8,
        "x265 medium, zerolatency configuration, ffmpeg version 3.4.8-0ubuntu0.2",
        "ms-ssim-rgb",
        (111391.40022857141, 40.62792470433646, 0.9862913915089199),
        (590.7865142857142, 28.149229788564973, 0.8402573892048427),
    ),
}


def as_point(values: Point) -> dict[str, float | None]:
    return dict(zip(("bitrate_kbps", "psnr_db", "ms_ssim"), values, strict=True))


PACKAGED = resources.files("codecdash") / "data" / "rd-results"


@pytest.fixture(scope="module")
def uvg_dir() -> Iterator[Path]:
    with resources.as_file(PACKAGED / "UVG-1080p") as folder:
        yield folder


def test_the_package_ships_every_file_with_its_notice(uvg_dir: Path) -> None:
    assert sorted(p.stem for p in uvg_dir.glob("*.json")) == sorted(UVG_FILES)
    assert "InterDigital" in (PACKAGED / "LICENSE.CompressAI").read_text(encoding="utf-8")
    assert "CompressAI" in (PACKAGED / "README.md").read_text(encoding="utf-8")


def test_wheels_would_ship_the_bundled_files() -> None:
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        pytest.skip("needs the source tree")
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["codecdash"]
    package = root / "src" / "codecdash"
    shipped = {
        name
        for pattern in patterns
        for name in glob.glob(pattern, root_dir=package, recursive=True)
        if (package / name).is_file()
    }
    data = {str(p.relative_to(package)) for p in (package / "data").rglob("*") if p.is_file()}
    assert data - shipped == set()


@pytest.mark.parametrize("name", UVG_FILES)
def test_reads_every_bundled_file(uvg_dir: Path, name: str) -> None:
    count, description, ms_ssim_key, first, last = UVG_FILES[name]
    curve = read_result_file(uvg_dir / f"{name}.json")
    assert curve.name == name
    assert curve.description == description
    assert curve.rate_unit == "kbps"
    assert curve.quality_key == "psnr-rgb"
    assert curve.ms_ssim_key == ms_ssim_key
    assert len(curve.points) == count
    assert curve.points[0] == as_point(first)
    assert curve.points[-1] == as_point(last)
    assert all(set(p) == {"bitrate_kbps", "psnr_db", "ms_ssim"} for p in curve.points)


def test_bundled_result_curves_match_the_files(uvg_dir: Path) -> None:
    curves = bundled_result_curves()
    assert [c.name for c in curves] == sorted(UVG_FILES)
    for curve in curves:
        assert read_result_file(uvg_dir / f"{curve.name}.json") == curve


# --- Variants -------------------------------------------------------------------------------

RESULTS: dict[str, Any] = {
    "bpp": [0.1, 0.2, 0.4, 0.8],
    "psnr-rgb": [28.0, 31.0, 34.0, 37.0],
    "ms-ssim-rgb": [0.9, 0.95, 0.97, 0.99],
    "encoding_time": [1.0, 1.0, 1.0, 1.0],
}


def write(tmp_path: Path, obj: Any, name: str = "curve.json") -> Path:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def test_flat_and_wrapped_files_read_alike(tmp_path: Path) -> None:
    wrapped = {"name": "bmshj2018", "description": "hyperprior", "results": RESULTS}
    flat = {"name": "bmshj2018", "description": "hyperprior", **RESULTS}
    a = read_result_file(write(tmp_path, wrapped, "a.json"))
    b = read_result_file(write(tmp_path, flat, "b.json"))
    assert a == b
    assert a.rate_unit == "bpp"
    assert a.points[0] == {"bpp": 0.1, "psnr_db": 28.0, "ms_ssim": 0.9}


def test_a_bpp_file_from_compressai_image_results(tmp_path: Path) -> None:
    # Shape of CompressAI's results/image/kodak/*.json (older files say "psnr" and "ms-ssim").
    obj = {
        "name": "JPEG",
        "description": "JPEG. Pillow version 7.1.2",
        "results": {
            "psnr": [24.68, 27.49, 29.23, 30.4],
            "ms-ssim": [0.8631, 0.9258, 0.9495, 0.9608],
            "bpp": [0.2485, 0.3913, 0.5208, 0.6389],
        },
    }
    curve = read_result_file(write(tmp_path, obj, "jpeg.json"))
    assert (curve.rate_unit, curve.quality_key, curve.ms_ssim_key) == ("bpp", "psnr", "ms-ssim")
    assert curve.points[-1] == {"bpp": 0.6389, "psnr_db": 30.4, "ms_ssim": 0.9608}


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (("psnr-rgb", "psnr", "psnr-yuv"), "psnr-rgb"),
        (("psnr-yuv", "psnr"), "psnr"),
        (("psnr-yuv", "psnr-y"), "psnr-yuv"),
    ],
)
def test_psnr_key_preference(keys: tuple[str, ...], expected: str) -> None:
    results: dict[str, Any] = {"bitrate": [100, 200, 400, 800]}
    for offset, key in enumerate(keys):
        results[key] = [30.0 + offset, 33.0, 36.0, 39.0]
    curve = parse_results({"results": results}, "x")
    assert curve.quality_key == expected
    assert curve.points[0]["psnr_db"] == 30.0 + keys.index(expected)


def test_ms_ssim_rgb_is_preferred_and_nulls_are_kept() -> None:
    results = {
        "bitrate": [100, 200],
        "psnr": [30, 33],
        "ms-ssim": [0.1, 0.2],
        "ms-ssim-rgb": [0.9, None],
    }
    curve = parse_results(results, "x")
    assert curve.ms_ssim_key == "ms-ssim-rgb"
    assert [p["ms_ssim"] for p in curve.points] == [0.9, None]
    assert curve.points[0] == {"bitrate_kbps": 100.0, "psnr_db": 30.0, "ms_ssim": 0.9}


def test_bitrate_wins_over_bpp() -> None:
    curve = parse_results({"bitrate": [1000], "bpp": [0.1], "psnr": [30]}, "x")
    assert curve.rate_unit == "kbps"
    assert curve.points == [{"bitrate_kbps": 1000.0, "psnr_db": 30.0, "ms_ssim": None}]


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    curve = read_result_file(write(tmp_path, {"results": RESULTS}, "my-codec.json"))
    assert curve.name == "my-codec"
    assert curve.description == ""
    assert parse_results({"name": "  ", **RESULTS}, "fallback").name == "fallback"


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(RESULTS).encode())
    assert len(read_result_file(path).points) == 4


def test_result_curve_is_frozen() -> None:
    curve = parse_results(RESULTS, "x")
    with pytest.raises(AttributeError):
        curve.name = "y"  # type: ignore[misc]


# --- Real files of CompressAI's other formats (tests/data/rd-results, see its README) --------

DATA = Path(__file__).parent / "data" / "rd-results"


def test_image_results_in_bpp_with_rgb_psnr() -> None:
    curve = read_result_file(DATA / "kodak" / "vtm.json")
    assert (curve.name, curve.rate_unit, curve.quality, curve.quality_key) == (
        "VTM",
        "bpp",
        "rgb",
        "psnr-rgb",
    )
    assert len(curve.points) == 8
    assert curve.points[0] == {
        "bpp": 0.04824490017361111,
        "psnr_db": 26.14484539430146,
        "ms_ssim": 0.8606081604957581,
    }
    assert (curve.sequence, curve.dataset, curve.single) == (None, None, False)


def test_a_paper_file_names_its_test_set() -> None:
    curve = read_result_file(DATA / "kodak" / "paper-elic2022_mse.json")
    assert (curve.dataset, curve.ms_ssim_key, len(curve.points)) == ("kodak", None, 6)
    assert curve.points[-1] == {"bpp": 0.8573, "psnr_db": 37.624, "ms_ssim": None}


def test_one_lambda_run_of_the_video_eval_model_is_one_point() -> None:
    curve = read_result_file(DATA / "compressai-tests" / "eval_0_ssf2020_mse_4.json")
    assert (curve.name, curve.rate_unit, curve.quality_key) == ("ssf2020-mse", "kbps", "psnr-rgb")
    assert curve.points == [
        {"bitrate_kbps": 6828.12, "psnr_db": 31.087793350219727, "ms_ssim": 0.9698339700698853}
    ]
    assert not curve.single  # one-element lists


def test_december_2021_keys_rgb_psnr_and_ms_ssim() -> None:
    curve = read_result_file(DATA / "compressai-tests" / "bench_x264-2021-12-23.json")
    assert (curve.quality, curve.quality_key, curve.ms_ssim_key) == ("rgb", "rgb_psnr", "ms-ssim")
    assert curve.points == [
        {"bitrate_kbps": 363.24, "psnr_db": 29.12749459721975, "ms_ssim": 0.940115749835968}
    ]
    old_eval = read_result_file(DATA / "compressai-tests" / "eval_1_ssf2020_mse_1-2021-12-23.json")
    assert (old_eval.rate_unit, old_eval.quality_key, old_eval.ms_ssim_key) == (
        "bpp",
        "rgb_psnr",
        "msssim",
    )
    assert old_eval.points[0]["ms_ssim"] == 0.9069530963897705


@pytest.mark.parametrize("name", ["bench_x264-2021-12-17.json", "x264-per-sequence-bare.json"])
def test_one_number_per_key_wrapped_or_bare(name: str) -> None:
    curve = read_result_file(DATA / "compressai-tests" / name)
    assert curve.single
    assert curve.points == [
        {"bitrate_kbps": 115.7, "psnr_db": 20.40487101056509, "ms_ssim": 0.9822360873222351}
    ]
    assert curve.quality_key == "rgb_psnr"


YUV = {"y_psnr": [30.0, 33.0, 36.0, 39.0], "u_psnr": [38.0, 40.0, 42.0, 44.0]}
YUV["v_psnr"] = [38.0, 39.0, 40.0, 41.0]


def test_yuv_weighted_6_1_1_where_there_is_no_rgb() -> None:
    bare = {
        "bpp": [0.1, 0.2, 0.4, 0.8],
        **YUV,
        "psnr-yuv": [1.0, 1.0, 1.0, 1.0],
        "qp": [37, 32, 27, 22],
    }
    curve = parse_results(bare, "bare")
    assert (curve.quality, curve.quality_key) == ("yuv-6:1:1", "y_psnr+u_psnr+v_psnr")
    assert curve.quality_label == "YUV PSNR, (6Y+U+V)/8"
    assert [p["psnr_db"] for p in curve.points] == pytest.approx([32.0, 34.625, 37.25, 39.875])
    with_rgb = parse_results({**bare, "rgb_psnr": [29.0, 32.0, 35.0, 38.0]}, "bare")
    assert (with_rgb.quality, with_rgb.points[0]["psnr_db"]) == ("rgb", 29.0)


def test_real_video_file_without_rgb_psnr_is_weighted_6_1_1() -> None:
    obj = json.loads((DATA / "compressai-tests" / "bench_x265.json").read_text(encoding="utf-8"))
    del obj["results"]["psnr-rgb"]
    curve = parse_results(obj, "x265")
    r = obj["results"]
    expected = (6 * r["psnr-y"][0] + r["psnr-u"][0] + r["psnr-v"][0]) / 8
    assert curve.quality_key == "psnr-y+psnr-u+psnr-v"
    assert curve.points[0]["psnr_db"] == pytest.approx(expected)
    assert curve.points[0]["psnr_db"] != pytest.approx(r["psnr-yuv"][0])  # CompressAI's 4:1:1


@pytest.mark.parametrize(
    ("keys", "quality"),
    [(("psnr-yuv", "y_psnr"), "yuv"), (("y_psnr", "u_psnr"), "y"), (("psnr-y",), "y")],
)
def test_then_the_files_yuv_then_y_psnr(keys: tuple[str, ...], quality: str) -> None:
    results: dict[str, Any] = {"bitrate": [100.0, 200.0]}
    for key in keys:
        results[key] = [30.0 + len(key), 33.0]
    curve = parse_results(results, "x")
    assert curve.quality == quality
    assert curve.quality_key == keys[0]
    assert curve.points[0]["psnr_db"] == 30.0 + len(keys[0])


def test_a_per_sequence_file_names_its_sequence() -> None:
    obj = {
        "source": "Beauty_1920x1080_120fps_420_8bit_YUV",
        "name": "ssf2020",
        "results": {
            "bitrate": 2016.5,
            "psnr-rgb": 35.1,
            "ms-ssim-rgb": 0.95,
            "q": "ssf2020-mse-3-ans",
        },
    }
    curve = parse_results(obj, "Beauty-ssf2020-mse-3-ans")
    assert (curve.sequence, curve.single) == ("Beauty_1920x1080_120fps_420_8bit_YUV", True)
    assert curve.points == [{"bitrate_kbps": 2016.5, "psnr_db": 35.1, "ms_ssim": 0.95}]
    assert parse_results({**obj, "sequence": "Jockey"}, "x").sequence == "Jockey"


# --- Errors, each naming the file -----------------------------------------------------------

BAD_FILES: list[Any] = [
    pytest.param("", "the file is empty", id="empty"),
    pytest.param(" \n\t", "the file is empty", id="blank"),
    pytest.param('{"bitrate": [1,', "not valid JSON", id="truncated"),
    pytest.param("[1, 2, 3]", "expected a JSON object", id="top-level-list"),
    pytest.param({"results": [1, 2]}, "'results' must be an object", id="results-list"),
    pytest.param({"results": None}, "'results' must be an object", id="results-null"),
    pytest.param({"psnr": [30.0]}, "no rate: expected 'bitrate' \\(kbps\\) or 'bpp'", id="no-rate"),
    pytest.param({"bitrate": [100.0], "ms-ssim": [0.9]}, "no PSNR", id="no-psnr"),
    pytest.param({}, "no rate", id="no-keys"),
    pytest.param(
        {"bitrate": [1, 2, 3], "psnr": [30, 31]},
        "differ in length: 'bitrate' has 3, 'psnr' has 2",
        id="length",
    ),
    pytest.param(
        {"bitrate": [1, 2], "psnr": [30, 31], "ms-ssim-rgb": [0.9]},
        "'ms-ssim-rgb' has 1",
        id="ms-ssim-length",
    ),
    pytest.param({"bitrate": [], "psnr": []}, "no points", id="no-points"),
    pytest.param({"bitrate": "100", "psnr": [30]}, "'bitrate' must be a list", id="rate-str"),
    pytest.param({"bitrate": [100], "psnr": 30}, "'psnr' must be a list", id="psnr-number"),
    pytest.param({"bitrate": 100, "psnr": "30"}, "'psnr' is not a number", id="single-str"),
    pytest.param({"bitrate": 100, "psnr": None}, "'psnr' is not a number", id="single-null"),
    pytest.param({"bitrate": 0, "psnr": 30}, "'bitrate' must be positive", id="single-zero"),
    pytest.param(
        {"bitrate": [1], "psnr": [30], "meta": {"dataset": 3}},
        "'meta.dataset' must be a string",
        id="meta-dataset",
    ),
    pytest.param(
        {"bitrate": [100], "psnr": ["30.1"]}, "'psnr'\\[0\\] is not a number", id="psnr-str"
    ),
    pytest.param({"bitrate": [100], "psnr": [None]}, "'psnr'\\[0\\] is not a number", id="null"),
    pytest.param({"bitrate": [True], "psnr": [30]}, "'bitrate'\\[0\\] is not a number", id="bool"),
    pytest.param(
        {"bitrate": [100], "psnr": [30], "ms-ssim": ["high"]},
        "'ms-ssim'\\[0\\] is not a number",
        id="ms-ssim-str",
    ),
    pytest.param('{"bitrate": [NaN], "psnr": [30]}', "'bitrate'\\[0\\] is not finite", id="nan"),
    pytest.param(
        '{"bitrate": [100, 200], "psnr": [30, Infinity]}',
        "'psnr'\\[1\\] is not finite",
        id="infinity",
    ),
    pytest.param(
        '{"bitrate": [1' + "0" * 400 + '], "psnr": [30]}',
        "'bitrate'\\[0\\] is not finite",
        id="huge-int",
    ),
    pytest.param({"bitrate": [0], "psnr": [30]}, "'bitrate'\\[0\\] must be positive", id="zero"),
    pytest.param({"bpp": [-0.1], "psnr": [30]}, "'bpp'\\[0\\] must be positive", id="negative"),
    pytest.param({"name": 7, "bitrate": [1], "psnr": [30]}, "'name' must be a string", id="name"),
    pytest.param(
        {"description": ["x"], "bitrate": [1], "psnr": [30]},
        "'description' must be a string",
        id="description",
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_malformed_files_raise_value_errors_naming_the_file(
    tmp_path: Path, content: Any, message: str
) -> None:
    path = write(tmp_path, content, "bad-file.json")
    with pytest.raises(ValueError, match=message) as error:
        read_result_file(path)
    assert str(path) in str(error.value)


def test_non_utf8_file_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8") as error:
        read_result_file(path)
    assert str(path) in str(error.value)


def test_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_result_file(tmp_path / "absent.json")


def test_parse_results_names_its_source_in_errors() -> None:
    with pytest.raises(ValueError, match=r"^upload-42: no PSNR"):
        parse_results({"bitrate": [1]}, "curve", source="upload-42")
    with pytest.raises(ValueError, match=r"^curve: no PSNR"):
        parse_results({"bitrate": [1]}, "curve")
    with pytest.raises(ValueError, match="expected a JSON object"):
        parse_results([1, 2], "curve")  # type: ignore[arg-type]


# --- Round trip -----------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
positive = st.floats(min_value=1e-6, max_value=1e9)


@st.composite
def result_objects(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    n = draw(st.integers(min_value=1, max_value=12))
    results: dict[str, Any] = {
        draw(st.sampled_from(["bitrate", "bpp"])): draw(st.lists(positive, min_size=n, max_size=n)),
        draw(st.sampled_from(["psnr-rgb", "psnr", "psnr-yuv"])): draw(
            st.lists(finite, min_size=n, max_size=n)
        ),
    }
    if draw(st.booleans()):
        results["ms-ssim-rgb"] = draw(st.lists(st.none() | st.floats(0, 1), min_size=n, max_size=n))
    wrapped = draw(st.booleans())
    header = {"name": "curve", "description": "drawn"}
    return ({**header, "results": results} if wrapped else {**header, **results}), wrapped


@settings(deadline=None)
@given(result_objects())
def test_file_values_come_back_unchanged(drawn: tuple[dict[str, Any], bool]) -> None:
    obj, wrapped = drawn
    curve = parse_results(json.loads(json.dumps(obj)), "default")
    results = obj["results"] if wrapped else obj
    rate_key = "bitrate" if "bitrate" in results else "bpp"
    assert curve.name == "curve"
    assert [p["bitrate_kbps" if rate_key == "bitrate" else "bpp"] for p in curve.points] == (
        results[rate_key]
    )
    assert [p["psnr_db"] for p in curve.points] == results[curve.quality_key]
    assert [p["ms_ssim"] for p in curve.points] == results.get(
        "ms-ssim-rgb", [None] * len(curve.points)
    )


# --- rd_points to BD pairs ------------------------------------------------------------------


def test_rd_pairs_for_psnr_and_ms_ssim() -> None:
    curve = parse_results(RESULTS, "x")
    assert rd_pairs(curve.points) == [(0.1, 28.0), (0.2, 31.0), (0.4, 34.0), (0.8, 37.0)]
    pairs = rd_pairs(curve.points, quality="ms_ssim")
    assert [r for r, _ in pairs] == [0.1, 0.2, 0.4, 0.8]
    assert [q for _, q in pairs] == pytest.approx([10.0, 13.0103, 15.2288, 20.0], abs=1e-4)
    assert rate_unit(curve.points) == "bpp"


def test_rd_pairs_leave_out_points_without_that_quality() -> None:
    points: list[dict[str, Any]] = [
        {"bitrate_kbps": 100.0, "psnr_db": 30.0, "ms_ssim": None},
        {"bitrate_kbps": 200.0, "psnr_db": None, "ms_ssim": 0.9},
        {"bitrate_kbps": 400.0, "psnr_db": 36.0},
    ]
    assert rd_pairs(points) == [(100.0, 30.0), (400.0, 36.0)]
    [(rate, db)] = rd_pairs(points, quality="ms_ssim")
    assert rate == 200.0
    assert db == pytest.approx(10.0)
    assert rate_unit(points) == "kbps"
    assert rd_pairs([]) == []


def test_rd_pairs_of_the_real_x264_curve(uvg_dir: Path) -> None:
    curve = read_result_file(uvg_dir / "x264-medium-tune-zerolatency.json")
    pairs = rd_pairs(curve.points, quality="ms_ssim")
    assert pairs[0][0] == 124751.51222857145
    assert pairs[0][1] == pytest.approx(-10 * math.log10(1 - 0.987276588167463))


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([{"bitrate_kbps": 1.0, "psnr_db": 30.0}, {"bpp": 0.1, "psnr_db": 31.0}], "mix"),
        ([{"psnr_db": 30.0}], "neither 'bitrate_kbps' nor 'bpp'"),
        ([{"bitrate_kbps": 1.0, "ms_ssim": 1.0}], "no finite dB value"),
    ],
)
def test_rd_pairs_errors(points: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rd_pairs(points, quality="ms_ssim")


def test_rd_pairs_rejects_unknown_quality() -> None:
    with pytest.raises(ValueError, match="quality must be"):
        rd_pairs([], quality="vmaf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        rate_unit([])
