"""The AWS read replica's commands against moto: `codecdash import-results --aws` writes
with the caller's credentials, `codecdash doctor` checks the replica and reads through it,
`codecdash deploy --rebuild-read-model` says when a stack has none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import test_aws_replica as replica
from aws_fixtures import *  # noqa: F403
from aws_fixtures import AWS_WARNINGS, READ_MODEL, TABLE, AwsEnv
from codecdash import aws_lambda
from codecdash.cli import main
from codecdash.config import Settings
from codecdash.sources.aws.replica_writer import experiment_item
from test_aws_replica import (
    ANCHOR,
    KEY,
    UVG,
    aws_get,
    dataset,
    put_items,
    stream_records,
)

pytestmark = [pytest.mark.aws, *(pytest.mark.filterwarnings(w) for w in AWS_WARNINGS)]
deployed = replica.deployed  # the fixture: table, stream, buckets, the functions' environment


# -- codecdash import-results --aws -----------------------------------------------------------
def test_import_results_aws_writes_the_table_and_the_stream_carries_it(
    deployed: AwsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    aws_lambda.stream_handler({"rebuild": True}, None)  # an empty replica, published

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, ["import-results", "--aws", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    records = stream_records(deployed, lambda: run("--anchor", str(UVG / f"{ANCHOR}.json")))
    aws_lambda.stream_handler(records, None)
    vtm = UVG / "VTM-v15.0-lowdelay.json"
    out: list[str] = []
    records = stream_records(deployed, lambda: out.append(run(str(vtm))))
    assert "BD-rate -73.71 % vs x264-medium-tune-zerolatency" in out[0]
    aws_lambda.stream_handler(records, None)
    status, found = aws_get("/api/v1/experiments/VTM-v15.0-lowdelay")
    assert status == 200 and found["bd_rate_anchor"] == ANCHOR
    assert round(found["bd_rate_pct"], 2) == -73.71
    # The files' folder names their test set: the anchor is UVG-1080p's, in force there.
    in_force = aws_get("/api/v1/anchors")[1]["in_force"]
    assert {"dataset": "UVG-1080p", "anchor": ANCHOR} in [
        {"dataset": f["dataset"], "anchor": f["anchor"]} for f in in_force
    ]
    assert found["dataset"] == "UVG-1080p"
    assert not any(k.endswith(("scan", "query")) for k in deployed.calls if "import" in k)


def test_import_results_aws_says_what_is_missing(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert "CODECDASH_AWS_READ_MODEL_BUCKET" not in os.environ
    result = CliRunner().invoke(main, ["import-results", "--aws", str(UVG / f"{ANCHOR}.json")])
    assert result.exit_code == 1
    assert "nothing imported" in result.output and "aws_read_model_bucket" in result.output
    both = CliRunner().invoke(
        main, ["import-results", "--aws", "--db", "x.db", str(UVG / f"{ANCHOR}.json")]
    )
    assert both.exit_code == 2 and "--aws" in both.output


# -- codecdash doctor -------------------------------------------------------------------------
def test_doctor_checks_the_read_replica_and_reads_through_it(
    deployed: AwsEnv, tmp_path: Path
) -> None:
    from codecdash.doctor import Doctor

    settings = Settings(
        aws_experiments_table=TABLE,
        aws_read_model_bucket=READ_MODEL,
        database_url=str(tmp_path / "unused.db"),
    )
    lines: list[str] = []
    assert Doctor(settings, echo=lines.append).run(skip_cost_explorer=True) == 1
    text = "\n".join(lines)
    assert "✗ experiments read replica: not found" in text
    assert "fix: codecdash deploy --stack STACK --rebuild-read-model" in text
    assert "aggregate" not in text  # the older aggregate is not looked for

    put_items(deployed, [experiment_item(dataset()[0], "exp-00")])
    aws_lambda.stream_handler({"rebuild": True}, None)
    lines.clear()
    Doctor(settings, echo=lines.append).run(skip_cost_explorer=True)
    text = "\n".join(lines)
    assert f"✓ experiments read replica: s3://{READ_MODEL}/{KEY}" in text
    assert "✓ source aws.experiments" in text


def test_rebuild_read_model_says_when_the_stack_has_none() -> None:
    from codecdash.deploy.package import DeployError
    from codecdash.deploy.stack import Deployer, DeployOptions

    deployer = Deployer(DeployOptions(stack="old-stack", region="us-east-1"), Settings())
    with pytest.raises(DeployError, match="no read replica"):
        deployer.rebuild_read_model({"StreamFunctionName": "old-stack-stream"})
