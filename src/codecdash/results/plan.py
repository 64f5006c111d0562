"""What `codecdash import-results` will write: result files read, checked and grouped into
experiments or anchors, before anything is written.

Each file is one experiment (its id the file's name) or one anchor (named by its `name`),
except per-sequence files: those of one model (`{sequence}-{model}.json`), with the file of
its set's average if there is one (`{model}.json`), make one experiment or anchor together
(`codecdash.results.sequences`). The test set is `--dataset`, else the one the file
names (`meta.dataset`), else the known set its path names, else none (unspecified). An
experiment of one average point (one λ run) joins the method its `name` says unless
`--method` names one.

Every file is read and checked first; each one that cannot be used gets one line saying why,
and then nothing at all is written (`ImportProblem`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from codecdash.results.datasets import canonical_dataset, dataset_from_path
from codecdash.results.reader import ResultCurve, read_result_file
from codecdash.results.sequences import check_alike, experiment_stem, merged_points

if TYPE_CHECKING:
    from codecdash.experiments.vocabulary import QualityMetric

ID_CHARS: Final = re.compile(r"[^A-Za-z0-9._:\-]+")
MAX_RD_POINTS: Final = 512


class ImportProblem(Exception):
    """Something about the files or the target that stops the import; nothing was written."""


@dataclass
class Item:
    """One experiment or anchor to write, from one file or several (per-sequence) files."""

    paths: list[Path]
    curves: list[ResultCurve]
    key: str
    """The anchor's name, or the experiment's id."""
    body: dict[str, Any]
    """The anchor's description, points and set, or the experiment's fields."""
    averaged: int = 0
    """How many sequences the added set average is the mean of (0: none added)."""
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.paths[0]

    @property
    def curve(self) -> ResultCurve:
        return self.curves[0]

    @property
    def points(self) -> list[dict[str, Any]]:
        points: list[dict[str, Any]] = self.body["rd_points"]
        return points

    @property
    def dataset(self) -> str | None:
        dataset: str | None = self.body.get("dataset")
        return dataset

    @property
    def where(self) -> str:
        if len(self.paths) == 1:
            return str(self.path)
        return f"{self.path} (and {len(self.paths) - 1} more files)"


@dataclass(frozen=True)
class Options:
    anchor: bool = False
    name: str | None = None
    status: str = "completed"
    id_prefix: str = ""
    dataset: str | None = None
    method: str | None = None


def experiment_id(path: Path, prefix: str = "", stem: str | None = None) -> str:
    """A stable id from the file's name: A-Z a-z 0-9 . _ : - kept, other runs become '-'."""
    cleaned = ID_CHARS.sub("-", path.stem if stem is None else stem).strip("-") or "results"
    return (prefix + cleaned)[:128]


def representative(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The middle point by rate (the lower middle of an even number) of the set's average."""
    average = [p for p in points if p.get("sequence") is None] or points
    ordered = sorted(average, key=lambda p: p.get("bitrate_kbps") or p.get("bpp") or 0.0)
    return ordered[(len(ordered) - 1) // 2]


def read_items(paths: list[Path], options: Options) -> list[Item]:
    """Read every file and build what will be written; ImportProblem lists every problem."""
    problems: list[str] = []
    dataset_option = None
    if options.dataset is not None:
        try:
            dataset_option = canonical_dataset(options.dataset)
        except ValueError as exc:
            raise ImportProblem(f"--dataset: {exc}") from None
    # Anchors are named within their set; experiment ids are unique across sets.
    groups: dict[tuple[str, str | None], tuple[list[Path], list[ResultCurve], list[str | None]]]
    groups = {}
    for path in paths:
        try:
            curve = read_result_file(path)
            dataset = dataset_option or _file_dataset(path, curve)
        except FileNotFoundError:
            problems.append(f"{path}: no such file")
            continue
        except IsADirectoryError:
            problems.append(f"{path}: is a directory; name the .json files in it")
            continue
        except OSError as exc:
            problems.append(f"{path}: cannot read it ({exc.strerror or exc})")
            continue
        except ValueError as exc:
            problems.append(str(exc))
            continue
        key = _key(path, curve, options)
        group = groups.setdefault((key, dataset if options.anchor else None), ([], [], []))
        group[0].append(path)
        group[1].append(curve)
        group[2].append(dataset)

    items: list[Item] = []
    for (key, _), (group_paths, curves, datasets) in groups.items():
        problem = _group_problem(key, group_paths, curves, datasets, options.anchor)
        if problem is not None:
            problems.append(problem)
            continue
        try:
            items.append(_item(key, group_paths, curves, datasets[0], options))
        except ValueError as exc:
            what = "an anchor" if options.anchor else "an experiment"
            problems.append(f"{_where(group_paths)}: cannot be {what}: {exc}")
    if problems:
        raise ImportProblem("\n".join(problems))
    return items


def _file_dataset(path: Path, curve: ResultCurve) -> str | None:
    if curve.dataset is not None:
        try:
            return canonical_dataset(curve.dataset)
        except ValueError as exc:
            raise ValueError(f"{path}: its dataset: {exc}") from None
    return dataset_from_path(path)


def _key(path: Path, curve: ResultCurve, options: Options) -> str:
    if options.anchor:
        return options.name or curve.name
    return experiment_id(path, options.id_prefix, experiment_stem(path, curve))


def _where(paths: list[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else " and ".join(map(str, paths[:3]))


def _group_problem(
    key: str,
    paths: list[Path],
    curves: list[ResultCurve],
    datasets: list[str | None],
    anchor: bool,
) -> str | None:
    if len(paths) == 1:
        return None
    # One set's average and per-sequence files of the same thing are one; two averages are not.
    averages = [path for path, curve in zip(paths, curves, strict=True) if curve.sequence is None]
    if len(averages) > 1:
        what = "anchor name" if anchor else "experiment id"
        hint = "" if anchor else " (use --id-prefix in separate runs)"
        return f"{averages[0]} and {averages[1]} give the same {what} {key!r}{hint}"
    if len(set(datasets)) > 1:
        listed = ", ".join(sorted(str(d) for d in set(datasets)))
        return f"{_where(paths)}: the sequences of {key!r} are of different sets ({listed})"
    try:
        check_alike(paths, curves)
    except ValueError as exc:
        return f"{_where(paths)}: cannot be one {'anchor' if anchor else 'experiment'}: {exc}"
    return None


def _item(
    key: str,
    paths: list[Path],
    curves: list[ResultCurve],
    dataset: str | None,
    options: Options,
) -> Item:
    from pydantic import ValidationError

    from codecdash.experiments.anchors import check_anchor_name, check_curve
    from codecdash.models import ExperimentIn

    points, averaged = merged_points(curves)
    if len(points) > MAX_RD_POINTS:
        raise ValueError(f"{len(points)} points; at most {MAX_RD_POINTS} are kept")
    curve = curves[0]
    if options.anchor:
        check_anchor_name(key)
        check_curve(points, "psnr")
        body: dict[str, Any] = {
            "description": curve.description or None,
            "rd_points": points,
            "dataset": dataset,
        }
        return Item(paths, curves, key, body, averaged)
    body = experiment_body(paths, curve, points, dataset, options, averaged)
    try:
        ExperimentIn.model_validate({"id": key, **body})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"not a valid experiment: {where}: {first['msg']}") from None
    return Item(paths, curves, key, body, averaged)


def experiment_body(
    paths: list[Path],
    curve: ResultCurve,
    points: list[dict[str, Any]],
    dataset: str | None,
    options: Options,
    averaged: int = 0,
) -> dict[str, Any]:
    middle = representative(points)
    one_run = len([p for p in points if p.get("sequence") is None]) == 1
    method = options.method or (curve.name if one_run and curve.name else None)
    body: dict[str, Any] = {
        "name": options.name or curve.name,
        "status": options.status,
        "rd_points": points,
        "psnr_db": middle.get("psnr_db"),
        "ms_ssim": middle.get("ms_ssim"),
        "dataset": dataset,
        "method": method,
        "params": {
            "source_file": paths[0].name,
            "description": curve.description or None,
            "psnr_key": curve.quality_key,
            "quality": curve.quality_label,
            "sequences_averaged": averaged or None,
        },
        "tags": ["imported"],
    }
    body["params"] = {k: v for k, v in body["params"].items() if v is not None}
    rate_key = "bitrate_kbps" if curve.rate_unit == "kbps" else "bpp"
    body[rate_key] = middle[rate_key]
    return {k: v for k, v in body.items() if v is not None}


def check_units(items: list[Item], anchors: dict[str | None, dict[str, Any] | None]) -> None:
    """Experiments must share their set's anchor's rate unit, or they could never get a
    BD-rate; `anchors` holds the anchor in force of each set the items are of."""
    from codecdash.experiments.vocabulary import average_points, rate_unit

    wrong = []
    for item in items:
        anchor = anchors.get(item.dataset)
        if anchor is None:
            continue
        unit = rate_unit(average_points(anchor["rd_points"]))
        if item.curve.rate_unit != unit:
            wrong.append(
                f"{item.where}: rates in {item.curve.rate_unit} but the anchor in force "
                f"{anchor['name']!r}{_on(item.dataset)} is in {unit}: no BD-rate could be "
                f"derived (import a {item.curve.rate_unit} anchor of that set and make it "
                "the set's anchor in force)"
            )
    if wrong:
        raise ImportProblem("\n".join(wrong))


def check_anchor_curves(items: list[Item], quality: QualityMetric) -> None:
    """Anchors must be usable on the quality axis the BD-rates are derived on."""
    from codecdash.experiments.anchors import check_curve

    problems = []
    for item in items:
        try:
            check_curve(item.points, quality)
        except ValueError as exc:
            problems.append(f"{item.where}: cannot anchor BD-rates in {quality}: {exc}")
    if problems:
        raise ImportProblem("\n".join(problems))


def _on(dataset: str | None) -> str:
    return f" on {dataset}" if dataset else ""
