"""`codecdash import-results`: the published UVG-1080p files in, through the store and the API."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import codecdash
from codecdash.cli import main
from codecdash.codec_metrics import bd_report
from codecdash.config import Settings
from codecdash.experiments.readmodel import ExperimentsReadModel
from codecdash.net import free_port
from codecdash.results import rd_pairs, read_result_file
from codecdash.store import ListQuery, Store
from codecdash.store.reads import SqlExperiments

UVG = Path(codecdash.__file__).parent / "data" / "rd-results" / "UVG-1080p"
FILES = sorted(UVG.glob("*.json"))
X264 = UVG / "x264-medium-tune-zerolatency.json"
X265 = UVG / "x265-medium-tune-zerolatency.json"
VTM = UVG / "VTM-v15.0-lowdelay.json"
SSF = UVG / "ssf2020-mse-ans-vimeo.json"
SSF_AUTHORS = UVG / "ssf2020-from-authors.json"
# BD-rate (PSNR-RGB) against x264, as published in docs/codec-metrics.md.
VS_X264 = {
    "x264-medium-tune-zerolatency": 0.0,
    "x265-medium-tune-zerolatency": -34.87,
    "VTM-v15.0-lowdelay": -73.71,
    "ssf2020-mse-ans-vimeo": 93.77,
    "ssf2020-from-authors": 36.74,
}
WARNED = {"ssf2020-mse-ans-vimeo", "ssf2020-from-authors"}  # under 75 % quality overlap


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No codecdash.toml and no CODECDASH_* variable of the machine running the tests."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CODECDASH_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "imported.db"


@pytest.fixture
def open_store(db: Path) -> Iterator[Callable[[], Store]]:
    stores: list[Store] = []

    def opened() -> Store:
        stores.append(Store(str(db)))
        return stores[-1]

    yield opened
    for store in stores:
        store.close()


def run(*args: str | Path, config: Path | None = None) -> Result:
    prefix = ["--config", str(config)] if config else []
    return CliRunner().invoke(main, [*prefix, "import-results", *map(str, args)])


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def failed(result: Result, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, result.output
    return result.stderr


def expected_points(path: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if v is not None} for p in read_result_file(path).points]


def line_of(output: str, name: str) -> str:
    """The summary line of one file, with its warning line when there is one."""
    match = re.search(rf"^{re.escape(name)}: .*(\n  warning: .*)?$", output, re.M)
    assert match, f"no line for {name!r} in:\n{output}"
    return match.group(0)


def experiments(store: Store) -> dict[str, dict[str, Any]]:
    """The stored experiments as the API answers them."""
    model = ExperimentsReadModel(SqlExperiments(store), Settings(database_url=store.db.url))
    return {e["id"]: e for e in model.list(ListQuery(limit=1000)).items}


def check_experiment(row: dict[str, Any], path: Path) -> None:
    curve = read_result_file(path)
    points = expected_points(path)
    middle = sorted(points, key=lambda p: p["bitrate_kbps"])[(len(points) - 1) // 2]
    assert row["id"] == path.stem
    assert row["name"] == curve.name
    assert row["status"] == "completed" and row["finished_at"] is not None
    assert row["rd_points"] == points
    assert row["psnr_db"] == middle["psnr_db"]
    assert row["bitrate_kbps"] == middle["bitrate_kbps"]
    assert row["ms_ssim"] == middle.get("ms_ssim")
    assert row["params"] == {
        "source_file": path.name,
        "description": curve.description,
        "psnr_key": "psnr-rgb",
        "quality": "RGB PSNR",
    }
    assert row["tags"] == ["imported"]
    assert row["dataset"] == "UVG-1080p"  # the folder's name
    assert row["method"] is None


def check_bd_rates(rows: dict[str, dict[str, Any]], output: str | None = None) -> None:
    for name, expected in VS_X264.items():
        row = rows[name]
        assert row["bd_rate_pct"] == pytest.approx(expected, abs=0.005), name
        assert row["bd_rate_anchor"] == "x264-medium-tune-zerolatency"
        if output is None:
            continue
        line = line_of(output, name)
        assert f"BD-rate {expected:+.2f} % vs x264-medium-tune-zerolatency" in line, line
        assert ("warning: " in line and "under 75%" in line) == (name in WARNED), line


# -- --db: the store directly -----------------------------------------------------------------
def test_every_file_as_an_experiment(db: Path, open_store: Callable[[], Store]) -> None:
    out = ok(run(*FILES, "--db", db))
    rows = experiments(open_store())
    assert set(rows) == {path.stem for path in FILES}
    for path in FILES:
        check_experiment(rows[path.stem], path)
        points = len(expected_points(path))
        assert (
            f"{points} points (kbps, psnr-rgb = RGB PSNR) on UVG-1080p; "
            "no BD-rate: no anchor of UVG-1080p yet" in line_of(out, path.stem)
        )
        assert rows[path.stem]["bd_rate_pct"] is None
    assert "No anchor of UVG-1080p yet" in out


def test_every_file_as_an_anchor(db: Path, open_store: Callable[[], Store]) -> None:
    out = ok(run("--anchor", *FILES, "--db", db))
    anchors = open_store().anchors()
    assert [a["name"] for a in anchors] == [read_result_file(p).name for p in FILES]
    for anchor, path in zip(anchors, FILES, strict=True):
        assert anchor["rd_points"] == expected_points(path)
        assert anchor["description"] == read_result_file(path).description
    first = FILES[0].stem  # the first imported is in force when none is configured
    assert line_of(out, first).endswith("; in force")
    for path in FILES[1:]:
        assert f"anchor in force: {first}" in line_of(out, path.stem)


def test_bd_rates_against_x264(db: Path, open_store: Callable[[], Store]) -> None:
    out = ok(run("--anchor", X264, "--db", db))
    assert out.startswith(
        "x264-medium-tune-zerolatency: anchor added, "
        "8 points (kbps, psnr-rgb = RGB PSNR) on UVG-1080p"
    )
    out = ok(run(*FILES, "--db", db))
    rows = experiments(open_store())
    check_bd_rates(rows, out)
    for name, row in rows.items():
        report = bd_report(rd_pairs(expected_points(X264)), rd_pairs(row["rd_points"]))
        assert row["bd_rate_pct"] == pytest.approx(report.bd_rate_pct, abs=1e-4), name


def test_experiments_first_then_their_anchor(db: Path, open_store: Callable[[], Store]) -> None:
    ok(run(*FILES, "--db", db))
    out = ok(run("--anchor", X264, "--db", db))
    assert "in force; BD-rate of 5 experiments derived again" in out
    check_bd_rates(experiments(open_store()))


def test_importing_again_changes_nothing(db: Path, open_store: Callable[[], Store]) -> None:
    ok(run("--anchor", X264, "--db", db))
    ok(run(*FILES, "--db", db))
    store = open_store()
    before = experiments(store)
    version = store.version()
    out = ok(run("--anchor", X264, "--db", db))
    assert "anchor replaced" in out and "derived again" not in out
    ok(run(*FILES, "--db", db))
    after = experiments(store)
    assert set(after) == set(before)
    for name, row in after.items():
        assert {**row, "updated_at": None} == {**before[name], "updated_at": None}, name
    assert len(store.anchors()) == 1
    assert store.version() > version


def test_the_configured_default_anchor(tmp_path: Path, db: Path) -> None:
    config = tmp_path / "codecdash.toml"
    config.write_text('[default_anchors]\n"UVG-1080p" = "x265-medium-tune-zerolatency"\n')
    out = ok(run("--anchor", X264, "--db", db, config=config))
    assert "not in force (the set's configured anchor is missing)" in out
    out = ok(run("--anchor", X265, "--db", db, config=config))
    assert line_of(out, "x265-medium-tune-zerolatency").endswith("; in force")
    out = ok(run(VTM, "--db", db, config=config))
    expected = bd_report(rd_pairs(expected_points(X265)), rd_pairs(expected_points(VTM)))
    assert f"BD-rate {expected.bd_rate_pct:+.2f} % vs x265-medium-tune-zerolatency" in out


def test_a_new_default_anchor_in_the_config_rederives_first(
    tmp_path: Path, db: Path, open_store: Callable[[], Store]
) -> None:
    ok(run("--anchor", X264, X265, "--db", db))
    ok(run(VTM, SSF, "--db", db))
    config = tmp_path / "codecdash.toml"
    config.write_text('default_anchor = "x265-medium-tune-zerolatency"\n')
    out = ok(run(SSF_AUTHORS, "--db", db, config=config))
    assert out.startswith("BD-rate of 2 stored experiments derived again first")
    rows = experiments(open_store())
    for path in (VTM, SSF, SSF_AUTHORS):
        expected = bd_report(rd_pairs(expected_points(X265)), rd_pairs(expected_points(path)))
        assert rows[path.stem]["bd_rate_pct"] == pytest.approx(expected.bd_rate_pct, abs=1e-4)
        assert rows[path.stem]["bd_rate_anchor"] == "x265-medium-tune-zerolatency"


def test_ms_ssim_bd_rates(
    monkeypatch: pytest.MonkeyPatch, db: Path, open_store: Callable[[], Store]
) -> None:
    monkeypatch.setenv("CODECDASH_QUALITY_METRIC", "ms_ssim")
    failed_anchor = failed(run("--anchor", SSF_AUTHORS, "--db", db))
    assert "cannot anchor BD-rates in ms_ssim: 0 of the curve's 7 points have MS-SSIM" in (
        failed_anchor
    )
    ok(run("--anchor", X264, "--db", db))
    out = ok(run(X265, SSF_AUTHORS, "--db", db))
    expected = bd_report(
        rd_pairs(expected_points(X264), "ms_ssim"), rd_pairs(expected_points(X265), "ms_ssim")
    )
    assert f"BD-rate {expected.bd_rate_pct:+.2f} % vs" in line_of(out, X265.stem)
    assert "BD-MS-SSIM" in line_of(out, X265.stem)
    assert "no BD-rate: 0 of the experiment's 7 points have MS-SSIM" in line_of(
        out, SSF_AUTHORS.stem
    )
    rows = experiments(open_store())
    assert rows[X265.stem]["bd_rate_pct"] == pytest.approx(expected.bd_rate_pct, abs=1e-4)
    assert rows[SSF_AUTHORS.stem]["bd_rate_pct"] is None


def test_image_results_in_bpp(tmp_path: Path, db: Path, open_store: Callable[[], Store]) -> None:
    """CompressAI's image results: flat, `bpp`, `psnr` and `ms-ssim`."""
    anchor, test = tmp_path / "jpeg.json", tmp_path / "learned.json"
    rates = [0.1, 0.2, 0.4, 0.8, 1.6]
    anchor.write_text(
        json.dumps(
            {"name": "jpeg", "bpp": rates, "psnr": [26.0, 28.5, 31.0, 33.5, 36.0]},
        )
    )
    test.write_text(
        json.dumps(
            {
                "name": "learned",
                "bpp": [r * 0.7 for r in rates],
                "psnr": [26.0, 28.5, 31.0, 33.5, 36.0],
                "ms-ssim": [0.9, 0.93, 0.95, 0.97, 0.98],
            }
        )
    )
    ok(run("--anchor", anchor, "--db", db))
    out = ok(run(test, "--db", db))
    assert "5 points (bpp, psnr = RGB PSNR)" in out and "BD-rate -30.00 % vs jpeg" in out
    row = experiments(open_store())["learned"]
    assert row["bpp"] == pytest.approx(0.28) and row["bitrate_kbps"] is None
    assert row["bd_rate_pct"] == pytest.approx(-30.0, abs=1e-6)


def test_name_status_and_id_prefix(db: Path, open_store: Callable[[], Store]) -> None:
    ok(
        run(
            X265,
            "--db",
            db,
            "--name",
            "HEVC anchor run",
            "--status",
            "running",
            "--id-prefix",
            "uvg.",
        )
    )
    row = experiments(open_store())["uvg.x265-medium-tune-zerolatency"]
    assert row["name"] == "HEVC anchor run" and row["status"] == "running"
    ok(run("--anchor", X264, "--db", db, "--name", "x264 (ffmpeg 3.4)"))
    assert [a["name"] for a in open_store().anchors()] == ["x264 (ffmpeg 3.4)"]


def test_an_environment_url_gives_way_to_db(
    monkeypatch: pytest.MonkeyPatch, db: Path, open_store: Callable[[], Store]
) -> None:
    monkeypatch.setenv("CODECDASH_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CODECDASH_TOKEN", "unused")
    ok(run(X264, "--db", db))
    assert set(experiments(open_store())) == {X264.stem}


def test_the_configured_database_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CODECDASH_DATABASE_URL", str(tmp_path / "configured.db"))
    ok(run(X264))
    store = Store(str(tmp_path / "configured.db"))
    try:
        assert set(experiments(store)) == {X264.stem}
    finally:
        store.close()


# -- --url/--token: through the API of a live server ---------------------------------------------
def test_every_file_through_the_api(live_server: Any) -> None:
    url, token = live_server.url, live_server.token
    out = ok(run("--anchor", X264, "--url", url, "--token", token))
    assert "x264-medium-tune-zerolatency: anchor added" in out and "; in force" in out
    out = ok(run(*FILES, "--url", url, "--token", token))
    rows = experiments(live_server.store)
    for path in FILES:
        check_experiment(rows[path.stem], path)
    check_bd_rates(rows, out)

    out = ok(run("--anchor", *FILES, "--url", url, "--token", token))
    names = [a["name"] for a in live_server.store.anchors()]
    assert names == ["x264-medium-tune-zerolatency"] + [
        read_result_file(p).name for p in FILES if p != X264
    ]
    assert "x264-medium-tune-zerolatency: anchor replaced" in out
    check_bd_rates(experiments(live_server.store))  # the anchor in force did not change

    again = ok(run(*FILES, "--url", url, "--token", token))
    assert set(experiments(live_server.store)) == set(rows)
    check_bd_rates(experiments(live_server.store), again)


def test_through_the_api_the_anchor_comes_after(live_server: Any) -> None:
    url, token = live_server.url, live_server.token
    out = ok(run(X265, VTM, SSF, "--url", url, "--token", token))
    assert out.count("no BD-rate: no anchor in force") == 3
    out = ok(run("--anchor", X264, "--url", url, "--token", token))
    assert "in force; the server derived the stored BD-rates again" in out
    rows = experiments(live_server.store)
    for path in (X265, VTM, SSF):
        assert rows[path.stem]["bd_rate_pct"] == pytest.approx(VS_X264[path.stem], abs=0.005)


def test_a_wrong_token_or_no_server(live_server: Any) -> None:
    err = failed(run(X264, "--url", live_server.url, "--token", "wrong"))
    assert "401" in err and "0 of 1 files imported" in err
    assert experiments(live_server.store) == {}
    err = failed(run(X264, "--url", f"http://127.0.0.1:{free_port()}", "--token", "t"))
    assert "unreachable" in err


def test_a_unit_other_than_the_anchors_through_the_api(live_server: Any, tmp_path: Path) -> None:
    image = tmp_path / "image.json"
    image.write_text(json.dumps({"bpp": [0.1, 0.2, 0.4, 0.8], "psnr": [28, 30, 32, 34]}))
    ok(run("--anchor", X264, "--url", live_server.url, "--token", live_server.token))
    args = ("--dataset", "UVG-1080p", "--url", live_server.url, "--token", live_server.token)
    err = failed(run(image, X265, *args))
    assert (
        "rates in bpp but the anchor in force 'x264-medium-tune-zerolatency' on UVG-1080p "
        "is in kbps" in err
    )
    assert experiments(live_server.store) == {}


# -- errors: nothing is written -------------------------------------------------------------------
def _write(tmp_path: Path, name: str, content: str | dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


BAD_FILES = [
    pytest.param("missing.json", None, "no such file", id="missing"),
    pytest.param("broken.json", '{"name": "x", "results": {', "not valid JSON", id="broken"),
    pytest.param("empty.json", "", "the file is empty", id="empty"),
    pytest.param("list.json", "[1, 2]", "expected a JSON object", id="not-an-object"),
    pytest.param("norate.json", {"psnr": [30, 31, 32, 33]}, "no rate", id="no-rate"),
    pytest.param("nopsnr.json", {"bitrate": [1, 2, 3, 4]}, "no PSNR", id="no-psnr"),
    pytest.param(
        "uneven.json",
        {"bitrate": [1, 2, 3, 4], "psnr": [30, 31, 32]},
        "differ in length",
        id="uneven",
    ),
    pytest.param(
        "many.json",
        {"bitrate": list(range(1, 514)), "psnr": [30 + i / 100 for i in range(513)]},
        "513 points; at most 512",
        id="too-many-points",
    ),
    pytest.param(
        "high.json",
        {"bitrate": [1, 2, 3, 4], "psnr": [30, 31, 32, 300]},
        "psnr_db",
        id="psnr-out-of-range",
    ),
]


@pytest.mark.parametrize(("name", "content", "words"), BAD_FILES)
def test_bad_files_stop_the_import(
    tmp_path: Path, db: Path, name: str, content: str | dict[str, Any] | None, words: str
) -> None:
    path = tmp_path / name if content is None else _write(tmp_path, name, content)
    err = failed(run(X264, path, "--db", db))
    assert "nothing imported" in err and str(path) in err and words in err, err
    assert not db.exists()  # not even opened


def test_every_problem_is_listed_at_once(tmp_path: Path, db: Path) -> None:
    broken = _write(tmp_path, "broken.json", "{")
    err = failed(run(tmp_path / "a.json", broken, UVG, "--db", db))
    assert "a.json: no such file" in err
    assert "broken.json: not valid JSON" in err
    assert "is a directory" in err


def test_unusable_anchor_curves(tmp_path: Path, db: Path) -> None:
    flat = _write(tmp_path, "flat.json", {"bitrate": [1, 2, 3, 4], "psnr": [30, 30, 31, 32]})
    short = _write(tmp_path, "short.json", {"bitrate": [1, 2, 3], "psnr": [30, 31, 32]})
    slash = _write(
        tmp_path, "slash.json", {"name": "a/b", "bitrate": [1, 2, 3, 4], "psnr": [1, 2, 3, 4]}
    )
    err = failed(run("--anchor", flat, short, slash, "--db", db))
    assert "flat.json: cannot be an anchor: anchor curve has two points at quality 30" in err
    assert "short.json: cannot be an anchor" in err and "at least 4" in err
    assert "slash.json: cannot be an anchor: anchor name 'a/b' is not usable" in err
    assert not db.exists()


def test_same_ids_or_names_from_two_files(tmp_path: Path, db: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    copy = other / X264.name
    copy.write_bytes(X264.read_bytes())
    err = failed(run(X264, copy, "--db", db))
    assert "give the same experiment id 'x264-medium-tune-zerolatency'" in err
    assert "--id-prefix" in err
    err = failed(run("--anchor", X264, copy, "--dataset", "uvg-1080p", "--db", db))
    assert "give the same anchor name" in err
    # Anchors are named within their set: x264 of UVG-1080p and x264 of no set are two.
    assert "anchor added" in ok(run("--anchor", X264, copy, "--db", db))


def test_a_unit_other_than_the_anchors(
    tmp_path: Path, db: Path, open_store: Callable[[], Store]
) -> None:
    image = _write(tmp_path, "image.json", {"bpp": [0.1, 0.2, 0.4, 0.8], "psnr": [28, 30, 32, 34]})
    ok(run("--anchor", X264, "--db", db))
    err = failed(run(X265, image, "--dataset", "UVG-1080p", "--db", db))
    assert f"{image}: rates in bpp but the anchor in force" in err and "is in kbps" in err
    assert experiments(open_store()) == {}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--url", "http://127.0.0.1:9", "--db", "x.db"], "either --url"),
        (["--url", "http://127.0.0.1:9"], "--url needs --token"),
        (["--name", "n", str(X265)], "--name names one file"),
        (["--anchor", "--status", "running"], "--status applies to experiments"),
        (["--status", "done"], "'done' is not one of"),
    ],
)
def test_usage_errors(args: list[str], words: str) -> None:
    err = failed(run(X264, *args), exit_code=2)
    assert words in err, err


def test_no_file_is_a_usage_error() -> None:
    assert "Missing argument" in failed(run("--db", "x.db"), exit_code=2)


# -- the documentation's table --------------------------------------------------------------------
DOCS = Path(__file__).parent.parent / "docs" / "codec-metrics.md"


def _number(cell: str) -> float | None:
    match = re.match(r"([+−-]?[\d.]+)", cell.strip())
    return None if match is None else float(match.group(1).replace("−", "-"))


def test_the_documented_uvg_table_is_what_the_code_computes() -> None:
    text = DOCS.read_text(encoding="utf-8")
    curves = {path.stem: expected_points(path) for path in FILES}
    checked = 0
    for anchor, table in re.findall(r"Against \*\*([\w.-]+)\*\*:\n\n((?:\|.*\n)+)", text):
        for row in table.splitlines()[2:]:
            cells = [c.strip() for c in row.strip("|").split("|")]
            test = cells[0]
            psnr = bd_report(rd_pairs(curves[anchor]), rd_pairs(curves[test]))
            assert _number(cells[1]) == pytest.approx(psnr.bd_rate_pct, abs=0.005), row
            assert _number(cells[2]) == pytest.approx(psnr.bd_psnr_db, abs=0.005), row
            assert _number(cells[3]) == pytest.approx(100 * psnr.overlap, abs=0.5), row
            assert ("⚠" in cells[3]) == (psnr.warning is not None), row
            if _number(cells[4]) is None:
                with pytest.raises(ValueError):
                    bd_report(
                        rd_pairs(curves[anchor], "ms_ssim"), rd_pairs(curves[test], "ms_ssim")
                    )
            else:
                ms = bd_report(
                    rd_pairs(curves[anchor], "ms_ssim"), rd_pairs(curves[test], "ms_ssim")
                )
                assert _number(cells[4]) == pytest.approx(ms.bd_rate_pct, abs=0.005), row
                assert _number(cells[5]) == pytest.approx(100 * ms.overlap, abs=0.5), row
                assert ("⚠" in cells[5]) == (ms.warning is not None), row
            checked += 1
    assert checked == 8


# -- what codec tools really write: real CompressAI files of each shape, on both stores ---------
DATA = Path(__file__).parent / "data" / "rd-results"
KODAK = DATA / "kodak"
TESTS = DATA / "compressai-tests"


def stored(url: str) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    store = Store(url)
    try:
        return experiments(store), store.anchors()
    finally:
        store.close()


def test_image_results_of_a_set_named_by_the_folder(store_url: str) -> None:
    """CompressAI's results/image/kodak: VTM as the anchor, JPEG and ELIC (a paper's file that
    names its set in `meta`) measured against it, in bpp."""
    out = ok(run("--anchor", KODAK / "vtm.json", "--db", store_url))
    assert out.startswith("VTM: anchor added, 8 points (bpp, psnr-rgb = RGB PSNR) on Kodak")
    out = ok(run(KODAK / "jpeg.json", KODAK / "paper-elic2022_mse.json", "--db", store_url))
    rows, anchors = stored(store_url)
    assert [(a["name"], a["dataset"]) for a in anchors] == [("VTM", "Kodak")]
    for stem in ("jpeg", "paper-elic2022_mse"):
        row = rows[stem]
        assert (row["dataset"], row["method"], row["params"]["quality"]) == (
            "Kodak",
            None,
            "RGB PSNR",
        )
        expected = bd_report(
            rd_pairs(expected_points(KODAK / "vtm.json")),
            rd_pairs(expected_points(KODAK / f"{stem}.json")),
        )
        assert row["bd_rate_pct"] == pytest.approx(expected.bd_rate_pct, abs=1e-4)
        assert row["bd_rate_anchor"] == "VTM"
        assert f"BD-rate {expected.bd_rate_pct:+.2f} % vs VTM" in out


def test_a_lambda_sweep_one_point_per_run(store_url: str) -> None:
    """CompressAI's video eval_model of one model per λ: one R-D point each, one method."""
    sweep = [TESTS / f"eval_0_ssf2020_mse_{q}.json" for q in (1, 4, 8)]
    out = ok(run(*sweep, "--dataset", "hevc_class_c", "--db", store_url))
    rows, _ = stored(store_url)
    assert set(rows) == {p.stem for p in sweep}
    for path in sweep:
        row = rows[path.stem]
        assert (row["dataset"], row["method"]) == ("HEVC-C", "ssf2020-mse")
        assert row["rd_points"] == expected_points(path) and len(row["rd_points"]) == 1
        assert "1 points (kbps, psnr-rgb = RGB PSNR) on HEVC-C, method ssf2020-mse" in out
    ok(run(*sweep, "--method", "ssf-ours", "--db", store_url))
    assert {r["method"] for r in stored(store_url)[0].values()} == {"ssf-ours"}


@pytest.mark.parametrize(
    ("name", "psnr_key"),
    [
        ("bench_x264-2021-12-17.json", "rgb_psnr"),  # one number per key, wrapped
        ("x264-per-sequence-bare.json", "rgb_psnr"),  # one number per key, bare
        ("bench_x264-2021-12-23.json", "rgb_psnr"),  # December 2021 keys, lists
        ("eval_1_ssf2020_mse_1-2021-12-23.json", "rgb_psnr"),  # bpp, msssim
    ],
)
def test_older_and_bare_compressai_outputs(db: Path, name: str, psnr_key: str) -> None:
    path = TESTS / name
    ok(run(path, "--db", db))
    row = stored(str(db))[0][path.stem]
    assert row["rd_points"] == expected_points(path)
    assert row["params"]["psnr_key"] == psnr_key and row["dataset"] is None


def test_yuv_6_1_1_where_a_file_has_no_rgb_psnr(tmp_path: Path, db: Path) -> None:
    obj = json.loads((TESTS / "bench_x265.json").read_text())
    del obj["results"]["psnr-rgb"]
    path = _write(tmp_path, "x265-yuv.json", obj)
    out = ok(run(path, "--db", db))
    assert "psnr-y+psnr-u+psnr-v = YUV PSNR, (6Y+U+V)/8" in out
    assert "warning" not in out  # no anchor: nothing compared
    row = stored(str(db))[0]["x265-yuv"]
    r = obj["results"]
    assert row["psnr_db"] == pytest.approx(
        (6 * r["psnr-y"][0] + r["psnr-u"][0] + r["psnr-v"][0]) / 8
    )
    assert row["params"]["quality"] == "YUV PSNR, (6Y+U+V)/8"


SEQUENCES = {  # UVG 1080p sequences: (kbps, PSNR-RGB) of one λ run
    "Beauty_1920x1080_120fps_420_8bit_YUV": (1105.0, 34.10),
    "Bosphorus_1920x1080_120fps_420_8bit_YUV": (1512.0, 37.20),
    "Jockey_1920x1080_120fps_420_8bit_YUV": (2210.0, 36.30),
}


def _per_sequence(folder: Path, model: str, values: dict[str, tuple[float, float]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        _write(
            folder,
            f"{source}-{model}.json",
            {
                "source": source,
                "name": "ssf2020",
                "description": "Inference (ans)",
                "results": {"bitrate": kbps, "psnr-rgb": psnr, "q": model},
            },
        )
        for source, (kbps, psnr) in values.items()
    ]


def test_per_sequence_files_make_one_experiment_with_the_average(
    tmp_path: Path, store_url: str
) -> None:
    """compressai.utils.video.eval_model writes `{sequence}-{model}.json` per sequence."""
    files = _per_sequence(tmp_path / "UVG-1080p", "ssf2020-mse-3-ans", SEQUENCES)
    out = ok(run(*files, "--method", "ssf2020", "--db", store_url))
    assert "the set's average made of 3 sequences" in out
    rows, _ = stored(store_url)
    assert list(rows) == ["ssf2020-mse-3-ans"]
    row = rows["ssf2020-mse-3-ans"]
    assert (row["dataset"], row["method"], row["params"]["sequences_averaged"]) == (
        "UVG-1080p",
        "ssf2020",
        3,
    )
    average, *per_sequence = row["rd_points"]
    assert "sequence" not in average
    assert average["bitrate_kbps"] == pytest.approx(1609.0)
    assert average["psnr_db"] == pytest.approx(35.8667, abs=1e-4)
    assert [p["sequence"] for p in per_sequence] == ["Beauty", "Bosphorus", "Jockey"]
    assert row["bitrate_kbps"] == pytest.approx(1609.0)  # the set's average


def test_each_unusable_file_gets_one_line_and_nothing_is_written(tmp_path: Path, db: Path) -> None:
    good = _per_sequence(tmp_path / "UVG-1080p", "m1", dict(list(SEQUENCES.items())[:1]))
    other_set = _per_sequence(tmp_path / "MCL-JCV", "m1", dict(list(SEQUENCES.items())[1:2]))
    bad = {
        "mixed.json": {"bitrate": [1, 2], "psnr": 30},
        "string.json": {"bitrate": 100, "rgb_psnr": "31.2"},
        "nopsnr.json": {"bitrate": 100, "ms-ssim": 0.9},
        "broken.json": '{"bitrate": [1, 2',
        "meta.json": {"bitrate": [1], "psnr": [30], "meta": {"dataset": ""}},
    }
    paths = [_write(tmp_path, name, content) for name, content in bad.items()]
    err = failed(run(*paths, *good, *other_set, KODAK / "vtm.json", "--db", db))
    lines = err.strip().splitlines()
    assert lines[0] == "Error: nothing imported:"
    for path in paths[:4]:
        assert sum(str(path) in line for line in lines) == 1, (path, err)
    assert "'psnr' must be a list like 'bitrate'" in err
    assert "'rgb_psnr' is not a number: '31.2'" in err
    assert "the sequences of 'm1' are of different sets (MCL-JCV, UVG-1080p)" in err
    assert len(lines) == 1 + 4 + 1, err  # meta.json's empty set is no set: it is fine
    assert not db.exists()


def test_a_bad_dataset_option(db: Path) -> None:
    err = failed(run(X264, "--dataset", "x" * 101, "--db", db))
    assert "--dataset: the test set's name is over 100 characters" in err
    assert "applies to experiments" in failed(run("--anchor", "--method", "m", X264), 2)


def test_sets_methods_and_sequences_through_the_api(live_server: Any, tmp_path: Path) -> None:
    api = ("--url", live_server.url, "--token", live_server.token)
    sweep = [TESTS / f"eval_0_ssf2020_mse_{q}.json" for q in (1, 4, 8)]
    ok(run(*sweep, "--dataset", "HEVC-C", "--method", "ssf-ours", *api))
    files = _per_sequence(tmp_path / "uvg_1080p", "ssf2020-mse-3-ans", SEQUENCES)
    ok(run(*files, *api))
    rows = experiments(live_server.store)
    assert {(rows[p.stem]["dataset"], rows[p.stem]["method"]) for p in sweep} == {
        ("HEVC-C", "ssf-ours")
    }
    row = rows["ssf2020-mse-3-ans"]
    # One λ run (its average one point): it joins the method its files name.
    assert (row["dataset"], row["method"], len(row["rd_points"])) == ("UVG-1080p", "ssf2020", 4)
    assert [p.get("sequence") for p in row["rd_points"]] == [None, "Beauty", "Bosphorus", "Jockey"]


def test_an_anchor_from_per_sequence_curves(tmp_path: Path, store_url: str) -> None:
    """Per-sequence curves of one codec make one anchor: its points carry their sequence,
    and the set's average (given in its own file) is what BD-rates use."""
    folder = tmp_path / "MCL-JCV"
    folder.mkdir()
    curve = json.loads(X264.read_text())
    _write(folder, "x264.json", curve)
    for sequence in ("videoSRC01_1920x1080_30", "videoSRC02_1920x1080_30"):
        _write(folder, f"{sequence}-x264.json", {**curve, "source": sequence})
    out = ok(run("--anchor", *sorted(folder.iterdir()), "--db", store_url))
    assert out.count("anchor added") == 1 and "24 points" in out and "on MCL-JCV" in out
    [anchor] = stored(store_url)[1]
    assert (anchor["name"], anchor["dataset"]) == ("x264-medium-tune-zerolatency", "MCL-JCV")
    sequences = [p.get("sequence") for p in anchor["rd_points"]]
    assert sequences.count(None) == 8 and sequences.count("videoSRC01") == 8


def test_a_yuv_curve_against_an_rgb_anchor_is_flagged(tmp_path: Path, db: Path) -> None:
    obj = json.loads(X265.read_text())
    del obj["results"]["psnr-rgb"]  # the published x265 curve, YUV 6:1:1 from its components
    path = _write(tmp_path, "x265-yuv.json", obj)
    ok(run("--anchor", X264, "--db", db))
    out = ok(run(path, "--dataset", "UVG-1080p", "--db", db))
    assert "BD-rate" in out and "vs x264-medium-tune-zerolatency" in out
    assert "warning: the file has no RGB PSNR, so its YUV PSNR, (6Y+U+V)/8 is compared" in out
    assert "no RGB PSNR" not in ok(run(X265, "--db", db))
