"""Training curves in the store, on both databases: every answer of the downsampled reads
is checked against brute force over the raw points (which power-of-two bucket width,
which buckets, and their last value, time, min and max, exactly), through overlapping,
out-of-order, sparse and non-finite writes; retention; the training summary."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from codecdash.curve_models import MetricPoint
from codecdash.curve_rules import encode_value
from codecdash.models import ExperimentIn
from codecdash.store import Store
from codecdash.store.curves import MAX_METRICS, TooManyMetrics, UnknownExperiments
from conftest import writes

History = dict[int, tuple[float, float]]  # step -> (at, value)


def points(
    steps: list[int], name: str = "loss", value: Any = None, at: float = 1e9
) -> list[MetricPoint]:
    out = []
    for step in steps:
        v = value(step) if callable(value) else (float(step) if value is None else value)
        out.append(
            MetricPoint.model_validate(
                {"step": step, "at": _iso(at + step), "values": {name: encode_value(v)}}
            )
        )
    return out


def _iso(ts: float) -> str:
    from codecdash.timefmt import iso

    return iso(ts)


def brute(history: History, max_points: int, after: int | None = None) -> dict[str, Any]:
    """The documented rule, computed the slow way from the raw points."""
    steps = sorted(s for s in history if after is None or s > after)
    bits = 0
    while len({s >> bits for s in steps}) > max_points:
        bits += 1
    groups: dict[int, list[int]] = {}
    for s in steps:
        groups.setdefault(s >> bits, []).append(s)
    out: dict[str, list[Any]] = {"step": [], "value": [], "time": [], "min": [], "max": []}
    for key in sorted(groups):
        if after is not None and bits and key << bits <= after:
            continue
        members = groups[key]
        last = members[-1]
        values = [history[s][1] for s in members]
        finite = [v for v in values if not math.isnan(v)]
        out["step"].append(last)
        out["value"].append(encode_value(history[last][1]))
        out["time"].append(round(history[last][0], 3))
        out["min"].append(encode_value(min(finite)) if finite else "NaN")
        out["max"].append(encode_value(max(finite)) if finite else "NaN")
    if bits == 0:
        del out["min"], out["max"]
    return {"bucket_steps": 1 << bits, **out}


def served(
    store: Store, experiment_id: str, name: str, max_points: int, after: int | None = None
) -> dict[str, Any]:
    answer = store.metric_history(experiment_id, [name], max_points, after)
    assert answer is not None
    series = dict(answer["series"][name])
    series.pop("points")
    return series


def write(
    store: Store, history: History, steps: list[int], rng: random.Random, name: str = "loss"
) -> None:
    """Logs `steps` (in the order given) with random values, some non-finite; `history`
    follows what the store should now hold (a step logged again takes the new value)."""
    batch = []
    for step in steps:
        roll = rng.random()
        value = (
            math.nan
            if roll < 0.03
            else math.inf
            if roll < 0.04
            else -math.inf
            if roll < 0.05
            else rng.uniform(-5, 5)
        )
        at = 1.7e9 + rng.uniform(0, 1e6)
        batch.append(
            MetricPoint.model_validate(
                {"step": step, "at": _iso(at), "values": {name: encode_value(value)}}
            )
        )
        history[step] = (round(at * 1000) / 1000, value)  # times travel as ISO, to the ms
    store.log_metrics([("run", batch)])


def check_all(store: Store, history: History, name: str = "loss") -> None:
    last = max(history)
    for max_points in (1, 2, 3, 10, 64, 1000, 5000):
        assert served(store, "run", name, max_points) == brute(history, max_points), max_points
        for after in (min(history), last // 3, last - 5, last):
            assert served(store, "run", name, max_points, after) == brute(
                history, max_points, after
            ), (max_points, after)


@pytest.fixture
def run(store: Store) -> Store:
    writes(store).create(ExperimentIn(id="run", status="running"))
    return store


def test_downsampling_matches_brute_force_through_every_kind_of_write(run: Store) -> None:
    rng = random.Random(7)
    history: History = {}
    write(run, history, list(range(0, 3000)), rng)  # dense
    check_all(run, history)
    write(run, history, rng.sample(range(0, 3000), 400), rng)  # steps logged again
    write(run, history, list(range(5000, 2999, -7)), rng)  # out of order, overlapping
    write(run, history, [rng.randrange(10**6, 10**9) for _ in range(300)], rng)  # sparse, far
    write(run, history, list(range(70_000, 90_000)), rng)  # several chunks of every tier
    check_all(run, history)
    answer = run.metric_history("run", None, 1000)
    assert answer is not None and answer["total_points"] == len(history)
    assert answer["series"]["loss"]["points"] == len(history)


def test_a_long_history_reads_as_at_most_max_points(run: Store) -> None:
    rng = random.Random(3)
    history: History = {}
    for start in range(0, 200_000, 20_000):
        write(run, history, list(range(start, start + 20_000)), rng)
    for max_points in (1000, 2000):
        got = served(run, "run", "loss", max_points)
        assert got == brute(history, max_points)
        assert max_points // 2 <= len(got["step"]) <= max_points


def test_nan_and_infinities_round_trip(run: Store) -> None:
    run.log_metrics(
        [("run", points([0, 1, 2, 3], value=lambda s: [1.5, math.nan, math.inf, -math.inf][s]))]
    )
    got = served(run, "run", "loss", 100)
    assert got["value"] == [1.5, "NaN", "Infinity", "-Infinity"]
    csv = b"".join(run.metric_csv("run", None) or []).decode().splitlines()
    assert csv[0] == "metric,step,time,value"
    assert [line.rsplit(",", 1)[1] for line in csv[1:]] == ["1.5", "NaN", "Infinity", "-Infinity"]
    # in a bucket, min and max ignore NaN; a bucket of NaN only is NaN
    got = served(run, "run", "loss", 1)
    assert (got["min"], got["max"], got["value"]) == (["-Infinity"], ["Infinity"], ["-Infinity"])


def test_several_metrics_and_experiments_in_one_write(store: Store) -> None:
    for i in ("a", "b"):
        writes(store).create(ExperimentIn(id=i, status="running"))
    both = [
        MetricPoint.model_validate(
            {"step": s, "values": {"loss": 1.0 / (s + 1), "lr": 1e-4, "val/psnr_db": 30.0 + s}}
        )
        for s in range(100)
    ]
    assert store.log_metrics([("a", both), ("b", both[:10]), ("a", both[50:])]) == 300 + 30 + 150
    a = store.metric_history("a", None, 1000)
    assert a is not None and a["names"] == ["loss", "lr", "val/psnr_db"]  # the loss first
    assert a["total_points"] == 300 and a["series"]["val/psnr_db"]["value"][-1] == 129.0
    b = store.metric_history("b", ["lr"], 1000)
    assert b is not None and list(b["series"]) == ["lr"] and b["total_points"] == 10
    assert store.metric_history("a", ["nope"], 10) == {
        "series": {},
        "total_points": 0,
        "names": a["names"],
    }
    assert store.metric_history("missing", None, 10) is None
    assert store.metric_csv("missing", None) is None


def test_unknown_experiments_and_too_many_metrics_store_nothing(run: Store) -> None:
    with pytest.raises(UnknownExperiments, match="no experiment 'ghost'"):
        run.log_metrics([("run", points([1])), ("ghost", points([1]))])
    assert run.metric_history("run", None, 10) == {"series": {}, "total_points": 0, "names": []}
    many = [MetricPoint.model_validate({"step": 0, "values": {f"m{i}": 1.0 for i in range(100)}})]
    for k in range(MAX_METRICS // 100):
        run.log_metrics(
            [
                (
                    "run",
                    [
                        MetricPoint.model_validate(
                            {"step": 0, "values": {f"m{k}_{i}": 1.0 for i in range(100)}}
                        )
                    ],
                )
            ]
        )
    with pytest.raises(TooManyMetrics):
        run.log_metrics([("run", many)])
    answer = run.metric_history("run", None, 10)
    assert answer is not None and len(answer["names"]) == MAX_METRICS


def test_retention_drops_raw_points_and_keeps_the_curve(run: Store) -> None:
    rng = random.Random(11)
    history: History = {}
    write(run, history, list(range(0, 4000)), rng)
    before = served(run, "run", "loss", 100)
    assert run.prune_metrics(before=0.0) == 0  # nothing that old
    import time

    assert run.prune_metrics(before=time.time() + 1) == 1
    assert run.prune_metrics(before=time.time() + 1) == 0  # done already
    assert served(run, "run", "loss", 100) == before  # the tiers still draw it
    assert b"".join(run.metric_csv("run", None) or []) == b"metric,step,time,value\n"
    # Finer than the tiers: buckets of at least 8 steps (their raw points are gone).
    assert served(run, "run", "loss", 4000)["bucket_steps"] == 8
    # Newer points after the pruning: raw again from there, exact.
    write(run, history, list(range(4000, 4100)), rng)
    assert served(run, "run", "loss", 1000, after=3999) == brute(history, 1000, after=3999)
    assert served(run, "run", "loss", 100) == brute(history, 100)
    # A step logged again where the raw points are gone is merged into its buckets: the
    # bucket's last value is the new one, its max takes it in (its min keeps what it had).
    before = served(run, "run", "loss", 4000)
    i = before["step"].index(3999)  # the bucket of steps 3992-3999
    run.log_metrics([("run", points([3999], value=1e6))])
    after = served(run, "run", "loss", 4000)
    assert (after["step"][i], after["value"][i], after["max"][i]) == (3999, 1e6, 1e6)
    assert after["min"][i] == before["min"][i]


def test_training_summary_and_its_alerts(run: Store) -> None:
    changes: list[int] = []
    run.on_change(lambda: changes.append(1))
    steps_seen: list[dict[str, int]] = []
    run.on_metrics(lambda newest: steps_seen.append(dict(newest)))
    version = run.version()
    run.log_metrics([("run", points(list(range(50)), value=lambda s: 2.0 - s / 50))])
    training = run.get_experiment("run")["training"]  # type: ignore[index]
    assert (
        training["step"] == 49 and training["loss_metric"] == "loss" and training["alert"] is None
    )
    assert training["loss"] == pytest.approx(2.0 - 49 / 50)
    assert run.version() == version and changes == []  # a metrics write: no new snapshot
    assert steps_seen == [{"run": 49}]

    run.log_metrics([("run", points(list(range(50, 60)), value=10.0))])  # the loss jumps
    assert run.get_experiment("run")["training"]["alert"] == "loss_rising"  # type: ignore[index]
    assert run.version() == version + 1 and changes == [1]  # the table's mark changed

    run.log_metrics([("run", points([60, 61], value=math.nan))])
    training = run.get_experiment("run")["training"]  # type: ignore[index]
    assert (training["alert"], training["loss"], training["non_finite_step"]) == (
        "non_finite_loss",
        "NaN",
        60,
    )
    latest = run.training_latest(running_only=True)
    assert [(t["experiment_id"], t["status"], t["step"], t["alert"]) for t in latest] == [
        ("run", "running", 61, "non_finite_loss")
    ]
    assert latest[0]["latest"] == {"loss": "NaN"} and latest[0]["received_at"] > latest[0]["at"]
    assert run.training_latest(alert_only=True) == latest
    page, _, _ = run.list_experiments(
        __import__("codecdash.store", fromlist=["ListQuery"]).ListQuery()
    )
    assert page[0]["training"]["alert"] == "non_finite_loss"
    assert [(i, s) for i, s, _ in run.metrics_written_since(0)] == [("run", 61)]


def test_a_quiet_noisy_loss_raises_no_alert(run: Store) -> None:
    rng = random.Random(5)
    run.log_metrics(
        [
            (
                "run",
                points(
                    list(range(2000)),
                    value=lambda s: (1.0 + 5 / (1 + s / 50)) * rng.uniform(0.8, 1.2),
                ),
            )
        ]
    )
    assert run.get_experiment("run")["training"]["alert"] is None  # type: ignore[index]
