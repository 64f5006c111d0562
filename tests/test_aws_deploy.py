"""Deployment: the template (cfn-lint, and what it must contain), the Lambda package, the
deploy flow against moto (stack, uploads, outputs, invalidation), the deploy script, and
`codecdash doctor`."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aws_fixtures import *  # noqa: F403
from aws_fixtures import AWS_WARNINGS, REGION, AwsEnv, create_experiments_table, put_experiment
from codecdash.cli import main
from codecdash.config import Settings
from codecdash.deploy import command as deploy_command
from codecdash.deploy import package as deploy_package
from codecdash.deploy.package import DeployError, _wheel_fits, build_lambda_zip
from codecdash.deploy.parameters import find_template, stack_parameters
from codecdash.deploy.stack import Deployer, DeployOptions
from codecdash.doctor import Doctor
from codecdash.sources.aws.read_model import NO_REPLICA_BUCKET

pytestmark = [pytest.mark.aws, *(pytest.mark.filterwarnings(w) for w in AWS_WARNINGS)]

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infrastructure" / "cloudformation" / "dashboard.yaml"
TABLE = "experiments"


def load_template() -> dict[str, Any]:
    from cfnlint.decode import decode_str

    template, problems = decode_str(TEMPLATE.read_text())
    assert not problems
    return json.loads(json.dumps(template))


# -- the template ----------------------------------------------------------------------------
def test_template_passes_cfn_lint() -> None:
    from cfnlint.api import lint

    matches = lint(TEMPLATE.read_text(), regions=["us-east-1", "eu-west-1"])
    assert [str(m) for m in matches] == []  # no errors, and no warnings either


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in load_template()["Resources"].items() if v["Type"] == kind}


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]
    ]


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return value if isinstance(value, list) else [value]


def test_template_site_is_private_https_compressed_with_security_headers() -> None:
    from codecdash.api.guard import CSP

    bucket = resources("AWS::S3::Bucket")["SiteBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    oac = resources("AWS::CloudFront::OriginAccessControl")["SiteOriginAccessControl"]
    assert oac["Properties"]["OriginAccessControlConfig"]["SigningBehavior"] == "always"
    config = resources("AWS::CloudFront::Distribution")["Distribution"]["Properties"][
        "DistributionConfig"
    ]
    behaviors = [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]
    assert all(b["ViewerProtocolPolicy"] in ("redirect-to-https", "https-only") for b in behaviors)
    assert all(b["Compress"] is True for b in behaviors)
    assert all("ResponseHeadersPolicyId" in b for b in behaviors)
    site = next(o for o in config["Origins"] if o["Id"] == "site")
    assert "OriginAccessControlId" in site
    headers = resources("AWS::CloudFront::ResponseHeadersPolicy")["SecurityHeadersPolicy"][
        "Properties"
    ]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert headers["ContentSecurityPolicy"]["ContentSecurityPolicy"] == CSP
    assert headers["FrameOptions"]["FrameOption"] == "DENY"
    assert "StrictTransportSecurity" in headers
    # /api/v1/dashboard is the snapshot object in the bucket: polling never reaches the API.
    dashboard = next(b for b in config["CacheBehaviors"] if b["PathPattern"] == "/api/v1/dashboard")
    assert dashboard["TargetOriginId"] == "site"
    assert config["CacheBehaviors"][0] is dashboard  # before /api/*
    assert "OriginGroups" not in config
    # The API is reachable only with the secret header CloudFront adds.
    api = next(o for o in config["Origins"] if o["Id"] == "api")
    assert api["OriginCustomHeaders"] == [
        {"HeaderName": "x-codecdash-origin", "HeaderValue": {"Ref": "OriginSecret"}}
    ]
    function = resources("AWS::Lambda::Function")["ApiFunction"]["Properties"]
    assert function["Environment"]["Variables"]["CODECDASH_AWS_ORIGIN_SECRET"] == {
        "Ref": "OriginSecret"
    }
    assert load_template()["Parameters"]["OriginSecret"]["NoEcho"] is True


def test_template_api_allows_get_from_the_site_only() -> None:
    api = resources("AWS::ApiGatewayV2::Api")["HttpApi"]["Properties"]
    cors = api["CorsConfiguration"]["Fn::If"]
    assert cors[0] == "HasSiteOrigin"
    assert cors[1]["AllowMethods"] == ["GET"]
    assert cors[1]["AllowOrigins"] == [{"Ref": "SiteOrigin"}]
    routes = [r["Properties"]["RouteKey"] for r in resources("AWS::ApiGatewayV2::Route").values()]
    assert routes and all(r.startswith("GET ") for r in routes)
    integration = resources("AWS::ApiGatewayV2::Integration")["ApiIntegration"]["Properties"]
    assert integration["PayloadFormatVersion"] == "2.0"


def test_template_least_privilege() -> None:
    roles = resources("AWS::IAM::Role")
    api, snapshot, stream = roles["ApiRole"], roles["SnapshotRole"], roles["StreamRole"]
    assert not any(a.startswith("ce:") for s in statements(api) for a in actions(s))
    ce = [a for s in statements(snapshot) for a in actions(s) if a.startswith("ce:")]
    assert sorted(ce) == ["ce:GetCostAndUsage", "ce:GetCostForecast"]
    writes = [s for s in statements(snapshot) if "s3:PutObject" in actions(s)]
    assert len(writes) == 1 and len(writes[0]["Resource"]) == 2  # the snapshot, the cost cache
    # No function writes the experiments table; the stream function reads it with one Scan
    # (the replica's rare rebuild), the others only describe it (experiments come from the
    # replica).
    table_actions = [
        a for role in (api, snapshot, stream) for s in statements(role) for a in actions(s)
    ]
    table_actions += [
        a
        for policy in resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        for a in actions(s)
    ]
    dynamodb = {a for a in table_actions if a.startswith("dynamodb:")}
    assert dynamodb == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
        "dynamodb:Scan",
        "dynamodb:DescribeTable",
    }
    # The read replica: one writer (the stream function); the others only read it.
    publish = [s for s in statements(stream) if actions(s) == ["s3:PutObject"]]
    assert [s["Resource"] for s in publish] == [{"Fn::Sub": "${ReadModelBucket.Arn}/read-model/*"}]
    for reader in (api, snapshot):
        assert not any("ReadModelBucket" in str(s["Resource"]) for s in statements(reader))
    replica_read = resources("AWS::IAM::Policy")["ReadModelReadPolicy"]["Properties"]
    assert {r["Ref"] for r in replica_read["Roles"]} == {"ApiRole", "SnapshotRole", "StreamRole"}
    bucket = resources("AWS::S3::Bucket")["ReadModelBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    # Every read policy is scoped to one configured resource and read-only.
    for name, policy in resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Resource"] != "*", name
            assert all(re.search(r":(Get|BatchGet|Describe|List)", a) for a in actions(statement))
    wildcard = resources("AWS::IAM::ManagedPolicy")["SourcesReadPolicy"]["Properties"][
        "PolicyDocument"
    ]["Statement"]
    assert all(
        a.split(":")[1].startswith(("Describe", "Get")) for s in wildcard for a in actions(s)
    )


def test_template_functions_schedule_logs_outputs() -> None:
    from codecdash import aws_lambda

    functions = resources("AWS::Lambda::Function")
    for function in functions.values():
        module, _, name = function["Properties"]["Handler"].rpartition(".")
        assert module == "codecdash.aws_lambda" and callable(getattr(aws_lambda, name))
    groups = resources("AWS::Logs::LogGroup")
    assert len(groups) == len(functions)
    assert all(
        g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values()
    )
    rule = resources("AWS::Events::Rule")["SnapshotSchedule"]["Properties"]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    outputs = load_template()["Outputs"]
    assert {"DashboardURL", "ApiURL"} <= set(outputs)
    env = functions["ApiFunction"]["Properties"]["Environment"]["Variables"]
    settings_names = {f"CODECDASH_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= settings_names
    # The newest Python runtime, the one the package is built for; arm64 by default.
    assert {f["Properties"]["Runtime"] for f in functions.values()} == {deploy_package.RUNTIME}
    assert load_template()["Parameters"]["Architecture"]["Default"] == "arm64"


def test_template_releases_are_versions_behind_an_alias() -> None:
    template = load_template()
    res = template["Resources"]
    for name in ("Api", "Snapshot", "Stream"):
        version = res[f"{name}Version"]
        assert version["Type"] == "AWS::Lambda::Version"
        assert version["DeletionPolicy"] == version["UpdateReplacePolicy"] == "Retain"
        assert version["Properties"]["FunctionName"] == {"Ref": f"{name}Function"}
        described = version["Properties"]["Description"]["Fn::Join"][1]
        assert {"Ref": "Release"} in described and {"Ref": "CodeKey"} in described
        alias = res[f"{name}Alias"]["Properties"]
        assert alias["Name"] == "live" and alias["Description"] == {"Ref": "Release"}
        assert alias["FunctionVersion"] == {"Fn::GetAtt": [f"{name}Version", "Version"]}
    # Everything that invokes a function invokes its alias.
    assert res["ApiIntegration"]["Properties"]["IntegrationUri"] == {"Ref": "ApiAlias"}
    assert res["ApiInvokePermission"]["Properties"]["FunctionName"] == {"Ref": "ApiAlias"}
    assert res["SnapshotSchedule"]["Properties"]["Targets"][0]["Arn"] == {"Ref": "SnapshotAlias"}
    assert res["SnapshotSchedulePermission"]["Properties"]["FunctionName"] == {
        "Ref": "SnapshotAlias"
    }
    assert res["StreamMapping"]["Properties"]["FunctionName"] == {"Ref": "StreamAlias"}


def test_template_watches_itself() -> None:
    from codecdash.sources.aws.costs import BUDGET_USED_UP

    res = load_template()["Resources"]
    alarms = {
        r["Properties"]["AlarmName"]["Fn::Sub"]: r
        for r in res.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert set(alarms) == {
        f"${{AWS::StackName}}-{n}"
        for n in (
            "api-5xx",  # the API function's errors, timeouts and throttles reach viewers as 5xx
            "api-duration",
            "snapshot-stale",
            "stream-errors",
            "stream-iterator-age",
            "cost-explorer-budget",
        )
    }
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    stale = alarms["${AWS::StackName}-snapshot-stale"]["Properties"]
    assert stale["TreatMissingData"] == "breaching"  # no run at all is stale too
    assert stale["EvaluationPeriods"] * 60 == 300
    # The budget alarm counts the line the costs source logs.
    pattern = res["CostExplorerBudgetFilter"]["Properties"]["FilterPattern"]
    assert pattern.strip('"') in f"{BUDGET_USED_UP} (9 requests today)"
    # A stream batch that fails every retry lands in the failure queue (after the
    # stream-errors alarm fired on its first failure; doctor reports the queue's depth).
    mapping = res["StreamMapping"]["Properties"]
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["StreamFailureQueue", "Arn"]
    }
    stream_role = statements(res["StreamRole"])
    assert any(actions(s) == ["sqs:SendMessage"] for s in stream_role)
    assert res["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"
    # The health dashboard ($3 a month at list price) is there when asked for.
    assert res["HealthDashboard"]["Condition"] == "WantsHealthDashboard"
    assert load_template()["Parameters"]["WithHealthDashboard"]["Default"] == "false"
    # Its body is JSON once its names are filled in.
    body, _names = res["HealthDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    filled = re.sub(r"\$\{[^}]+\}", "x", body)
    widgets = json.loads(filled)["widgets"]
    titles = " ".join(w["properties"]["title"] for w in widgets)
    for needle in ("Lambda duration", "CloudFront", "API Gateway", "Site bucket", "Alarms"):
        assert needle in titles


# -- the deployer's policy -------------------------------------------------------------------
POLICY = ROOT / "infrastructure" / "iam" / "deployer-policy.json"
# What CloudFormation calls to create, update, tag and delete each resource type.
NEEDS = {
    "AWS::S3::Bucket": [
        "s3:CreateBucket",
        "s3:DeleteBucket",
        "s3:PutBucketPublicAccessBlock",
        "s3:PutEncryptionConfiguration",
        "s3:PutBucketOwnershipControls",
        "s3:PutBucketTagging",
    ],
    "AWS::S3::BucketPolicy": ["s3:PutBucketPolicy", "s3:GetBucketPolicy", "s3:DeleteBucketPolicy"],
    "AWS::CloudFront::OriginAccessControl": [
        "cloudfront:CreateOriginAccessControl",
        "cloudfront:DeleteOriginAccessControl",
    ],
    "AWS::CloudFront::ResponseHeadersPolicy": [
        "cloudfront:CreateResponseHeadersPolicy",
        "cloudfront:UpdateResponseHeadersPolicy",
    ],
    "AWS::CloudFront::CachePolicy": [
        "cloudfront:CreateCachePolicy",
        "cloudfront:UpdateCachePolicy",
    ],
    "AWS::CloudFront::Distribution": [
        "cloudfront:CreateDistribution",
        "cloudfront:UpdateDistribution",
        "cloudfront:GetDistribution",
        "cloudfront:TagResource",
    ],
    "AWS::ApiGatewayV2::Api": [
        "apigateway:POST",
        "apigateway:PATCH",
        "apigateway:DELETE",
        "apigateway:GET",
        "apigateway:TagResource",
    ],
    "AWS::ApiGatewayV2::Integration": ["apigateway:POST"],
    "AWS::ApiGatewayV2::Route": ["apigateway:POST"],
    "AWS::ApiGatewayV2::Stage": ["apigateway:POST", "apigateway:PATCH"],
    "AWS::Lambda::Permission": ["lambda:AddPermission", "lambda:RemovePermission"],
    "AWS::Lambda::Function": [
        "lambda:CreateFunction",
        "lambda:UpdateFunctionCode",
        "lambda:UpdateFunctionConfiguration",
        "lambda:GetFunction",
        "lambda:DeleteFunction",
        "lambda:TagResource",
        "iam:PassRole",
        "s3:GetObject",
    ],
    "AWS::Lambda::Version": ["lambda:PublishVersion", "lambda:ListVersionsByFunction"],
    "AWS::Lambda::Alias": [
        "lambda:CreateAlias",
        "lambda:UpdateAlias",
        "lambda:DeleteAlias",
        "lambda:GetAlias",
    ],
    "AWS::Lambda::EventInvokeConfig": [
        "lambda:PutFunctionEventInvokeConfig",
        "lambda:DeleteFunctionEventInvokeConfig",
    ],
    "AWS::Lambda::EventSourceMapping": [
        "lambda:CreateEventSourceMapping",
        "lambda:UpdateEventSourceMapping",
        "lambda:DeleteEventSourceMapping",
        "lambda:GetEventSourceMapping",
    ],
    "AWS::IAM::ManagedPolicy": [
        "iam:CreatePolicy",
        "iam:CreatePolicyVersion",
        "iam:DeletePolicy",
        "iam:DeletePolicyVersion",
        "iam:ListPolicyVersions",
        "iam:TagPolicy",
    ],
    "AWS::IAM::Policy": ["iam:PutRolePolicy", "iam:DeleteRolePolicy"],
    "AWS::IAM::Role": [
        "iam:CreateRole",
        "iam:DeleteRole",
        "iam:GetRole",
        "iam:TagRole",
        "iam:PutRolePolicy",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
    ],
    "AWS::Logs::LogGroup": [
        "logs:CreateLogGroup",
        "logs:DeleteLogGroup",
        "logs:PutRetentionPolicy",
        "logs:TagResource",
    ],
    "AWS::Logs::MetricFilter": ["logs:PutMetricFilter", "logs:DeleteMetricFilter"],
    "AWS::Events::Rule": [
        "events:PutRule",
        "events:DeleteRule",
        "events:PutTargets",
        "events:RemoveTargets",
        "events:TagResource",
    ],
    "AWS::SQS::Queue": [
        "sqs:CreateQueue",
        "sqs:DeleteQueue",
        "sqs:GetQueueAttributes",
        "sqs:SetQueueAttributes",
        "sqs:TagQueue",
    ],
    "AWS::SNS::Topic": [
        "sns:CreateTopic",
        "sns:DeleteTopic",
        "sns:GetTopicAttributes",
        "sns:TagResource",
    ],
    "AWS::SNS::Subscription": ["sns:Subscribe", "sns:Unsubscribe"],
    "AWS::CloudWatch::Alarm": [
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:DeleteAlarms",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:TagResource",
    ],
    "AWS::CloudWatch::Dashboard": ["cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards"],
}
# What `codecdash deploy` itself calls (besides CloudFormation).
DEPLOY_CALLS = [
    "sts:GetCallerIdentity",
    "cloudformation:CreateStack",
    "cloudformation:UpdateStack",
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "cloudformation:TagResource",
    "s3:CreateBucket",
    "s3:ListBucket",
    "s3:GetObject",
    "s3:PutObject",
    "s3:PutBucketPublicAccessBlock",
    "lambda:GetAlias",
    "lambda:UpdateAlias",
    "lambda:InvokeFunction",
    "cloudfront:CreateInvalidation",
    "dynamodb:DescribeTable",
]


def test_deployer_policy_covers_every_resource_type_with_its_tags() -> None:
    policy = json.loads(POLICY.read_text())
    granted = {a for s in policy["Statement"] for a in actions(s) if s["Effect"] == "Allow"}
    types = {r["Type"] for r in load_template()["Resources"].values()}
    assert types <= set(NEEDS), f"add the new resource types to NEEDS: {types - set(NEEDS)}"
    missing = {t: [a for a in NEEDS[t] if a not in granted] for t in types}
    assert not {t: m for t, m in missing.items() if m}
    assert not [a for a in DEPLOY_CALLS if a not in granted]
    # Scoped to the stack's own resources except where a service allows nothing narrower.
    for statement in policy["Statement"]:
        resources_ = statement["Resource"]
        resources_ = resources_ if isinstance(resources_, list) else [resources_]
        if "*" in resources_:
            assert statement["Sid"] in ("Identity", "Cdn", "StreamMappingCreate"), statement
            if statement["Sid"] == "StreamMappingCreate":
                assert "lambda:FunctionArn" in json.dumps(statement["Condition"])
        assert not any(a.endswith(":*") or a == "*" for a in actions(statement))
    # The docs show exactly this policy.
    docs = (ROOT / "docs" / "aws.md").read_text()
    assert POLICY.read_text().strip() in docs


# -- the Lambda package ------------------------------------------------------------------------
def test_lambda_zip_from_this_environment() -> None:
    lines: list[str] = []
    data = build_lambda_zip(mode="env", requirements=["mangum"], echo=lines.append)
    names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert "codecdash/aws_lambda.py" in names
    assert "codecdash/dashboard/index.html" in names
    assert "codecdash/sources/aws/costs.py" in names
    assert "mangum/adapter.py" in names
    assert "typing_extensions.py" in names  # mangum's own requirement
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any("/tests/" in n for n in names)
    # Deterministic: the same code gives the same zip (so CloudFormation sees no change).
    assert build_lambda_zip(mode="env", requirements=["mangum"], echo=lines.append) == data
    assert "copied from this environment" in lines[0]


def test_lambda_zip_with_pip_targets_lambdas_platform() -> None:
    seen: list[list[str]] = []

    def fake_pip(command: list[str]) -> None:
        seen.append(command)
        target = Path(command[command.index("--target") + 1])
        (target / "somepackage").mkdir()
        (target / "somepackage" / "__init__.py").write_text("x = 1\n")

    data = build_lambda_zip(
        "arm64", mode="pip", requirements=["fastapi>=0.115,<1"], run=fake_pip, echo=lambda _: None
    )
    command = seen[0]
    assert command[1:4] == ["-m", "pip", "install"]
    assert "--only-binary=:all:" in command and "--no-deps" in command
    assert command[command.index("--python-version") + 1] == "3.14"
    assert "manylinux2014_aarch64" in command and "manylinux_2_34_aarch64" in command
    assert "manylinux_2_35_aarch64" not in command  # Amazon Linux 2023 has glibc 2.34
    # Exactly the installed versions, the closure of the requirement, and nothing unpinned.
    from importlib.metadata import version

    pins = [a for a in command if "==" in a]
    assert f"fastapi=={version('fastapi')}" in pins
    assert f"starlette=={version('starlette')}" in pins  # fastapi's own requirement
    assert f"pydantic=={version('pydantic')}" in pins
    assert not [a for a in command if re.search(r"[<>~]|^fastapi$", a)]
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "somepackage/__init__.py" in names and "codecdash/aws_lambda.py" in names


def test_the_package_holds_the_versions_constraints_txt_pins(tmp_path: Path) -> None:
    from importlib import metadata

    dists = [metadata.distribution("fastapi"), metadata.distribution("starlette")]
    assert deploy_package.find_constraints() == ROOT / "constraints.txt"
    # This environment is the tested one (scripts/bootstrap installs with -c constraints.txt).
    deploy_package.check_tested_versions(dists, ROOT / "constraints.txt")
    other = tmp_path / "constraints.txt"
    other.write_text("# pins\nfastapi==0.0.1\nstarlette==" + dists[1].version + "\n")
    with pytest.raises(DeployError, match=r"fastapi .* \(tested: 0\.0\.1\)"):
        deploy_package.check_tested_versions(dists, other)


def test_a_tested_version_without_a_lambda_wheel_fails_the_build_loudly() -> None:
    import sys

    failing = [
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('ERROR: Could not find a version that satisfies the "
        "requirement numpy==2.4.6\\nERROR: No matching distribution found for numpy==2.4.6\\n'); "
        "sys.exit(1)",
    ]
    with pytest.raises(DeployError) as caught:
        deploy_package._run_pip(failing)
    message = caught.value.message
    assert "No matching distribution found for numpy==2.4.6" in message
    assert "never built with other versions" in message
    assert "python3.14" in message


def test_runtime_requirements_leave_out_the_server() -> None:
    wanted = deploy_package.runtime_requirements()
    names = {re.split(r"[<>=!~ ]", r)[0].lower() for r in wanted}
    assert {"fastapi", "sqlalchemy", "pydantic", "mangum", "boto3"} <= names
    assert "uvicorn" not in names and "nvidia-ml-py" not in names and "pytest" not in names


def test_wheel_tags_for_lambda() -> None:
    class Dist:
        def __init__(self, *tags: str) -> None:
            self.text = "".join(f"Tag: {t}\n" for t in tags)

        def read_text(self, name: str) -> str:
            return self.text

    assert _wheel_fits(Dist("py3-none-any"), "x86_64")  # type: ignore[arg-type]
    assert _wheel_fits(Dist("cp314-cp314-manylinux_2_17_x86_64"), "x86_64")  # type: ignore[arg-type]
    assert _wheel_fits(Dist("cp314-cp314-manylinux_2_28_x86_64"), "x86_64")  # type: ignore[arg-type]
    assert _wheel_fits(Dist("cp39-abi3-manylinux_2_17_aarch64"), "aarch64")  # type: ignore[arg-type]
    assert not _wheel_fits(Dist("cp314-cp314-manylinux_2_35_x86_64"), "x86_64")  # type: ignore[arg-type]
    assert not _wheel_fits(Dist("cp314-cp314-manylinux2014_x86_64"), "aarch64")  # type: ignore[arg-type]
    assert not _wheel_fits(Dist("cp311-cp311-manylinux2014_x86_64"), "x86_64")  # type: ignore[arg-type]


def test_stack_parameters_derive_the_arns() -> None:
    settings = Settings(
        aws_training_queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/train",
        aws_buckets="raw,models",
        aws_experiments_table="t",
    )
    params = {
        p["ParameterKey"]: p["ParameterValue"]
        for p in stack_parameters(
            settings, "eu-west-1", "arn:stream", ("code", "key.zip"), "arm64", ""
        )
    }
    assert params["QueueArns"] == "arn:aws:sqs:eu-west-1:123456789012:train"
    assert params["BucketArns"] == "arn:aws:s3:::raw,arn:aws:s3:::models"
    assert params["Buckets"] == "raw,models"
    assert params["ExperimentsStreamArn"] == "arn:stream"
    template_params = load_template()["Parameters"]
    assert set(params) <= set(template_params)
    assert all("Default" in template_params[name] for name in set(template_params) - set(params))
    # The health dashboard ($3 a month at list price) only when asked for.
    assert params["WithHealthDashboard"] == "false"
    asked = stack_parameters(
        settings, "eu-west-1", "", ("code", "key.zip"), "arm64", "", health_dashboard=True
    )
    assert {"ParameterKey": "WithHealthDashboard", "ParameterValue": "true"} in asked
    assert template_params["WithHealthDashboard"]["AllowedValues"] == ["true", "false"]


# -- the deploy flow against moto ------------------------------------------------------------
def moto_template(distribution_id: str) -> str:
    """The real template, less what moto's CloudFormation cannot model (CloudFront, API
    Gateway v2, the bucket policy…) and what refers to it; their outputs become fixed
    values (the distribution is one the test made in moto's CloudFront)."""
    from moto.cloudformation.parsing import get_model_map

    template = load_template()
    supported = get_model_map()
    resources_ = template["Resources"]
    removed = {k for k, r in resources_.items() if r["Type"] not in supported}
    # The alarms and the health dashboard name the API and the distribution: give them
    # stand-in ids rather than leave them out.
    stand_ins = {"HttpApi": "a1b2c3d4e5", "Distribution": distribution_id}

    def stand_in(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("Ref") in stand_ins:
                return stand_ins[node["Ref"]]
            return {k: stand_in(v) for k, v in node.items()}
        if isinstance(node, list):
            return [stand_in(v) for v in node]
        if isinstance(node, str):
            for name, value in stand_ins.items():
                node = node.replace("${" + name + "}", value)
        return node

    for name, resource in resources_.items():
        if resource["Type"] in ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard"):
            resources_[name] = stand_in(resource)

    def refers(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("Ref") in removed:
                return True
            if "Fn::GetAtt" in node and node["Fn::GetAtt"][0] in removed:
                return True
            if "Fn::Sub" in node:
                text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
                if any(re.search(r"\$\{" + re.escape(n) + r"[.}]", text) for n in removed):
                    return True
            return any(refers(v) for v in node.values())
        if isinstance(node, list):
            return any(refers(v) for v in node)
        return False

    changed = True
    while changed:
        changed = False
        for name, resource in list(resources_.items()):
            if name not in removed and (refers(resource) or resource.get("DependsOn") in removed):
                removed.add(name)
                changed = True
    for name in removed:
        del resources_[name]
    fixed = {
        "DashboardURL": "https://d111111abcdef8.cloudfront.net/",
        "ApiURL": "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/",
        "SiteOriginValue": "https://d111111abcdef8.cloudfront.net",
        "DistributionId": distribution_id,
    }
    for name, value in fixed.items():
        template["Outputs"][name]["Value"] = value
    assert "ApiFunction" in resources_ and "SnapshotSchedule" in resources_
    return json.dumps(template)


def make_distribution(aws: AwsEnv) -> str:
    answer = aws.client("cloudfront").create_distribution(
        DistributionConfig={
            "CallerReference": "codecdash-test",
            "Comment": "stand-in",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "site",
                        "DomainName": "site.s3.amazonaws.com",
                        "S3OriginConfig": {"OriginAccessIdentity": ""},
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "site",
                "ViewerProtocolPolicy": "redirect-to-https",
            },
        }
    )
    return str(answer["Distribution"]["Id"])


def small_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("codecdash/__init__.py", "")
    return buffer.getvalue()


@pytest.fixture
def research(aws: AwsEnv) -> Settings:
    """The research resources the dashboard reports on."""
    ddb = aws.client("dynamodb")
    create_experiments_table(ddb, TABLE)
    put_experiment(ddb, TABLE, id="exp-1", psnr_db=35.0)
    queue = aws.client("sqs").create_queue(QueueName="training")["QueueUrl"]
    aws.client("s3").create_bucket(Bucket="artifacts-data")
    return Settings(
        aws_experiments_table=TABLE, aws_training_queue_url=queue, aws_buckets="artifacts-data"
    )


def test_deploy_flow(aws: AwsEnv, research: Settings, tmp_path: Path) -> None:
    distribution = make_distribution(aws)
    template = tmp_path / "dashboard.json"
    template.write_text(moto_template(distribution))
    lines: list[str] = []
    options = DeployOptions(
        stack="codecdash-test",
        region=REGION,
        template=template,
        lambda_zip=small_zip(),
        poll_seconds=0.2,
        timeout_s=120,
    )
    result = Deployer(options, research, echo=lines.append).run()
    print("\n".join(lines))

    cfn = aws.client("cloudformation")
    stack = cfn.describe_stacks(StackName="codecdash-test")["Stacks"][0]
    assert stack["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["SiteOrigin"] == "https://d111111abcdef8.cloudfront.net"  # second pass
    assert params["ExperimentsStreamArn"].startswith("arn:aws:dynamodb:")
    assert result.dashboard_url == "https://d111111abcdef8.cloudfront.net/"
    assert result.api_url.startswith("https://")
    # The functions exist with their handlers, from the uploaded package.
    functions = {f["FunctionName"]: f for f in aws.client("lambda").list_functions()["Functions"]}
    assert functions["codecdash-test-api"]["Handler"] == "codecdash.aws_lambda.handler"
    assert (
        functions["codecdash-test-snapshot"]["Handler"] == "codecdash.aws_lambda.snapshot_handler"
    )
    assert functions["codecdash-test-stream"]["Handler"] == "codecdash.aws_lambda.stream_handler"
    env = functions["codecdash-test-api"]["Environment"]["Variables"]
    assert env["CODECDASH_AWS_EXPERIMENTS_TABLE"] == TABLE
    assert env["CODECDASH_AWS_SITE_BUCKET"] == result.bucket
    # The read replica's private bucket, known to its writer and its readers; the first
    # deploy asks the stream function to build it (moto cannot run it: a note says how).
    replica = result.outputs["ReadModelBucketName"]
    for name in ("api", "snapshot", "stream"):
        variables = functions[f"codecdash-test-{name}"]["Environment"]["Variables"]
        assert variables["CODECDASH_AWS_READ_MODEL_BUCKET"] == replica, name
    assert any("rebuild-read-model" in line for line in lines) or any(
        "Rebuilding the read replica" in line for line in lines
    )
    # The site: content types and cache headers, the page last.
    s3 = aws.client("s3")
    index = s3.head_object(Bucket=result.bucket, Key="index.html")
    assert index["ContentType"] == "text/html; charset=utf-8"
    assert index["CacheControl"] == "no-cache"
    script = s3.head_object(Bucket=result.bucket, Key="app.js")
    assert script["ContentType"] == "text/javascript; charset=utf-8"
    assert script["CacheControl"] == "public, max-age=31536000, immutable"
    assert s3.head_object(Bucket=result.bucket, Key="styles.css")["ContentType"].startswith(
        "text/css"
    )
    assert any(k.startswith("vendor/") for k in result.uploaded)
    assert result.uploaded[-1] == "index.html"
    # The page's rules and labels, for when it reads the site without the API.
    vocabulary = json.loads(
        s3.get_object(Bucket=result.bucket, Key="vocabulary.json")["Body"].read()
    )
    assert vocabulary["bd_rate"]["min_points"] == 4
    snapshot = json.loads(
        s3.get_object(Bucket=result.bucket, Key="api/v1/dashboard")["Body"].read()
    )
    assert set(snapshot) >= {"generated_at", "summary", "infrastructure", "sources"}
    # The package, content-addressed in a new artifacts bucket with an unguessable name.
    params = {p["ParameterKey"]: p.get("ParameterValue") for p in stack["Parameters"]}
    artifacts = params["CodeBucket"]
    assert re.fullmatch(r"codecdash-artifacts-[0-9a-f]{16}", artifacts)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=artifacts)["Contents"]]
    assert len(keys) == 1 and re.fullmatch(r"codecdash/lambda-[0-9a-f]{20}\.zip", keys[0])
    # A release: each function's alias `live` on the version the stack published for it.
    lam = aws.client("lambda")
    first = result.release
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", first)
    record = json.loads(
        s3.get_object(Bucket=result.bucket, Key=f"_codecdash/releases/{first}/release.json")[
            "Body"
        ].read()
    )
    assert set(record["versions"]) == {
        "codecdash-test-api",
        "codecdash-test-snapshot",
        "codecdash-test-stream",
    }
    for function, version in record["versions"].items():
        assert lam.get_alias(FunctionName=function, Name="live")["FunctionVersion"] == version
    assert "index.html" in record["files"]
    kept = s3.get_object(Bucket=result.bucket, Key=f"_codecdash/releases/{first}/site/index.html")
    kept_index = kept["Body"].read()
    assert kept_index == s3.get_object(Bucket=result.bucket, Key="index.html")["Body"].read()
    # The API's origin secret: made once, random, on the API function only.
    secret = functions["codecdash-test-api"]["Environment"]["Variables"][
        "CODECDASH_AWS_ORIGIN_SECRET"
    ]
    assert len(secret) >= 40
    # CloudFront was invalidated; the URL was printed.
    invalidations = aws.client("cloudfront").list_invalidations(DistributionId=distribution)
    assert invalidations["InvalidationList"]["Quantity"] == 1
    assert any("invalidation" in line for line in lines)

    # Deploying again updates in place, reuses the uploaded package and the secret, keeps
    # the snapshot, and is a new release with new versions of the functions.
    lines.clear()
    s3.put_object(Bucket=result.bucket, Key="api/v1/dashboard", Body=b'{"kept": true}')
    s3.put_object(Bucket=result.bucket, Key="index.html", Body=b"<p>tampered</p>")
    second = Deployer(options, research, echo=lines.append).run()
    assert any("already uploaded" in line for line in lines)
    assert json.loads(
        s3.get_object(Bucket=result.bucket, Key="api/v1/dashboard")["Body"].read()
    ) == {"kept": True}
    assert second.release != first
    api_env = lam.get_function(FunctionName="codecdash-test-api")["Configuration"]["Environment"]
    assert api_env["Variables"]["CODECDASH_AWS_ORIGIN_SECRET"] == secret
    now_live = {
        f: lam.get_alias(FunctionName=f, Name="live")["FunctionVersion"] for f in record["versions"]
    }
    assert all(int(now_live[f]) > int(v) for f, v in record["versions"].items())

    # --releases lists both, the live one marked; --rollback returns to the first: the
    # aliases and the site's files together.
    runner = CliRunner()
    common = ["deploy", "--stack", "codecdash-test", "--region", REGION]
    listed = runner.invoke(main, [*common, "--releases"])
    assert listed.exit_code == 0, listed.output
    rows = listed.output.splitlines()
    assert rows[0].startswith(f"* {second.release}") and rows[1].startswith(f"  {first}")
    s3.put_object(Bucket=result.bucket, Key="index.html", Body=b"<p>tampered</p>")
    rolled = runner.invoke(main, [*common, "--rollback"])
    assert rolled.exit_code == 0, rolled.output
    assert rolled.output.splitlines()[-1] == f"Rolled back to release {first}"
    for function, version in record["versions"].items():
        assert lam.get_alias(FunctionName=function, Name="live")["FunctionVersion"] == version
    index = s3.get_object(Bucket=result.bucket, Key="index.html")
    assert index["Body"].read() == kept_index
    assert index["CacheControl"] == "no-cache"
    listed = runner.invoke(main, [*common, "--releases"])
    assert listed.output.splitlines()[1].startswith(f"* {first}")
    # Forward again, by name; an unknown release is refused with a clear message.
    again = runner.invoke(main, [*common, "--rollback", second.release])
    assert again.exit_code == 0, again.output
    assert (
        lam.get_alias(FunctionName="codecdash-test-api", Name="live")["FunctionVersion"]
        == (now_live["codecdash-test-api"])
    )
    missing = runner.invoke(main, [*common, "--rollback", "20200101T000000Z-00000000"])
    assert missing.exit_code == 1
    assert "no release 20200101T000000Z-00000000" in missing.output
    assert invalidation_count(aws, distribution) == 4  # two deploys, two rollbacks


def invalidation_count(aws: AwsEnv, distribution: str) -> int:
    answer = aws.client("cloudfront").list_invalidations(DistributionId=distribution)
    return int(answer["InvalidationList"]["Quantity"])


def test_deploy_command_prints_the_urls(
    aws: AwsEnv, research: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "dashboard.json"
    template.write_text(moto_template(make_distribution(aws)))
    package = tmp_path / "lambda.zip"
    package.write_bytes(small_zip())
    monkeypatch.setenv("CODECDASH_AWS_EXPERIMENTS_TABLE", TABLE)
    result = CliRunner().invoke(
        main,
        [
            "deploy",
            "--stack",
            "cli-stack",
            "--region",
            REGION,
            "--template",
            str(template),
            "--lambda-zip",
            str(package),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "Dashboard URL: https://d111111abcdef8.cloudfront.net/"


def test_deploy_without_credentials_says_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["deploy", "--stack", "x", "--lambda-zip", str(TEMPLATE)])
    assert result.exit_code == 1
    assert "no AWS credentials found" in result.output
    assert "aws configure" in result.output
    assert "Traceback" not in result.output


def test_deploy_permission_denied_names_the_doc(
    aws: AwsEnv, research: Settings, tmp_path: Path
) -> None:
    import boto3
    from botocore.exceptions import ClientError

    class Denying:
        region_name = REGION

        def __init__(self) -> None:
            self.real = boto3.session.Session(region_name=REGION)

        def client(self, service: str, **kwargs: Any) -> Any:
            real = self.real.client(service, **kwargs)
            if service != "cloudformation":
                return real

            class Cfn:
                def __getattr__(self, name: str) -> Any:
                    if name in ("create_stack", "update_stack"):

                        def denied(**kwargs: Any) -> Any:
                            raise ClientError(
                                {
                                    "Error": {
                                        "Code": "AccessDenied",
                                        "Message": "User is not authorized to perform "
                                        "cloudformation:CreateStack",
                                    }
                                },
                                "CreateStack",
                            )

                        return denied
                    return getattr(real, name)

            return Cfn()

    template = tmp_path / "dashboard.json"
    template.write_text(moto_template("E123"))
    options = DeployOptions(stack="denied", template=template, lambda_zip=small_zip())
    with pytest.raises(DeployError) as caught:
        Deployer(options, research, echo=lambda _: None, session=Denying()).run()
    message = caught.value.message
    assert "permission denied" in message and "cloudformation:CreateStack" in message
    assert "docs/aws.md" in message


def test_deploy_rejects_a_bad_stack_name(aws: AwsEnv) -> None:
    with pytest.raises(DeployError, match="--stack"):
        Deployer(DeployOptions(stack="bad_name!"), Settings(), echo=lambda _: None).run()


@pytest.mark.parametrize(
    ("statuses", "ends"),
    [
        (["CREATE_IN_PROGRESS", "CREATE_COMPLETE"], "Stack s: CREATE_COMPLETE"),
        (["IMPORT_COMPLETE"], "Stack s: IMPORT_COMPLETE"),
        (["UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE"], "ended in UPDATE_ROLLBACK"),
        (["ROLLBACK_COMPLETE"], "ended in ROLLBACK_COMPLETE"),
        ([None], "ended in DELETE_COMPLETE"),  # gone while we waited
    ],
)
def test_deploy_waits_for_the_stack_to_settle(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, statuses: list[str | None], ends: str
) -> None:
    lines: list[str] = []
    options = DeployOptions(stack="s", region=REGION, poll_seconds=0, timeout_s=60)
    deployer = Deployer(options, Settings(), echo=lines.append)
    answers = iter(statuses)

    def describe(stack: str) -> dict[str, Any] | None:
        status = next(answers)
        return None if status is None else {"StackStatus": status}

    monkeypatch.setattr(deployer, "_describe", describe)
    try:
        deployer._wait(time.time())
    except DeployError as exc:
        assert ends in exc.message
    else:
        assert lines[-1] == ends
    assert next(answers, "all read") == "all read"


def test_the_template_is_found_from_any_directory_of_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_template() == TEMPLATE


def test_deploy_script_calls_codecdash_deploy(tmp_path: Path) -> None:
    fake = tmp_path / "codecdash"
    fake.write_text(
        "#!/usr/bin/env bash\necho \"args: $*\"\necho 'Dashboard URL: https://d1.cloudfront.net/'\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "CODECDASH": str(fake), "CODECDASH_DEPLOY_SKIP_CREDENTIAL_CHECK": "1"}
    answer = subprocess.run(
        [str(ROOT / "scripts" / "deploy_dashboard.sh"), "--region", "eu-west-1"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "args: deploy --stack codecdash-dashboard --region eu-west-1" in answer.stdout
    assert answer.stdout.strip().endswith("Dashboard URL: https://d1.cloudfront.net/")
    answer = subprocess.run(
        [str(ROOT / "scripts" / "deploy_dashboard.sh"), "--stack", "mine"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "args: deploy --stack mine" in answer.stdout


# -- doctor --------------------------------------------------------------------------------------
def test_doctor_all_good(aws: AwsEnv, research: Settings, tmp_path: Path) -> None:
    from codecdash.sources.aws.replica_writer import ReplicaWriter

    aws.client("s3").create_bucket(Bucket="read-model")
    research = research.model_copy(update={"aws_read_model_bucket": "read-model"})
    writer = ReplicaWriter(research, aws.client("s3"), tmp_path / "writer.db")
    writer.rebuild(aws.client("dynamodb"), TABLE)
    writer.copy.close()
    lines: list[str] = []
    status = Doctor(research, echo=lines.append).run(skip_cost_explorer=True)
    text = "\n".join(lines)
    assert status == 0, text
    assert "✓ AWS credentials" in text
    assert f"✓ experiments table {TABLE}" in text
    assert "✓ training queue: 0 messages waiting" in text
    assert "✓ source aws.experiments" in text
    assert "No problems found." in text


def test_doctor_says_what_is_wrong_and_how_to_fix_it(aws: AwsEnv, research: Settings) -> None:
    settings = research.model_copy(
        update={
            "aws_training_asg": "missing-group",
            "aws_buckets": ["no-such-bucket"],
            "aws_stack_name": "no-such-stack",
        }
    )
    lines: list[str] = []
    status = Doctor(settings, echo=lines.append).run(skip_cost_explorer=True)
    text = "\n".join(lines)
    assert status == 1
    # A table without the read replica's bucket: what to set, and where its value is.
    assert "✗ experiments read replica: not configured" in text
    assert f"    fix: {NO_REPLICA_BUCKET}" in text
    assert f"✗ source aws.experiments: {NO_REPLICA_BUCKET}" in text
    assert "aggregate" not in text
    assert "✗ Auto Scaling group missing-group: not found" in text
    assert "✗ bucket no-such-bucket" in text
    assert "✗ stack no-such-stack: not found" in text
    assert "problems found" in text


def test_doctor_checks_the_stack_and_the_metrics_with_one_client_each(
    aws: AwsEnv, research: Settings
) -> None:
    template = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
    aws.client("cloudformation").create_stack(
        StackName="research", TemplateBody=json.dumps(template)
    )
    settings = research.model_copy(
        update={"aws_stack_name": "research", "aws_orchestrator_instance_id": "i-0abc"}
    )
    lines: list[str] = []
    doctor = Doctor(settings, echo=lines.append)
    doctor.run(skip_cost_explorer=True)
    assert "✓ stack research: CREATE_COMPLETE" in lines
    at = lines.index("! metric AWS/EC2/CPUUtilization: no data in the last hour")
    assert lines[at + 1].startswith("    fix: is the instance running?")
    assert "! metric CWAgent/mem_used_percent: no data in the last hour" in lines
    # The checks and the refresh share one client per service (and region).
    assert {"sts", "dynamodb", "cloudformation", "sqs", "s3"} <= set(doctor.clients.created)
    assert set(doctor.clients.created.values()) == {1}


def test_doctor_rebuild_aggregate_is_the_read_replica_rebuild(
    aws: AwsEnv, research: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deprecated option rebuilds the read replica as `codecdash deploy --stack STACK
    --rebuild-read-model` does (moto cannot run the stream function: its answer is faked)."""
    lines: list[str] = []
    Doctor(research, echo=lines.append).run(skip_cost_explorer=True, rebuild_aggregate=True)
    assert "note: --rebuild-aggregate is a deprecated name: it rebuilds the read replica" in lines
    at = lines.index(
        "✗ experiments read replica rebuild: needs the dashboard stack, whose stream function "
        "rebuilds the replica"
    )
    assert lines[at + 1] == (
        "    fix: codecdash deploy --stack STACK --rebuild-read-model "
        "(or codecdash doctor --stack STACK --rebuild-aggregate)"
    )

    asked: list[str] = []

    def rebuild_read_model(self: Deployer) -> dict[str, Any]:
        asked.append(self.options.stack)
        return {"rebuilt": True, "total": 1, "table": TABLE}

    monkeypatch.setattr(Deployer, "rebuild_read_model", rebuild_read_model)
    lines.clear()
    Doctor(research, echo=lines.append).run(
        skip_cost_explorer=True, rebuild_aggregate=True, stack="dash"
    )
    assert asked == ["dash"]
    assert "✓ experiments read replica rebuild: rebuilt: 1 experiments" in lines
    help_text = CliRunner().invoke(main, ["doctor", "--help"]).output
    assert "Deprecated name: rebuild the read replica" in " ".join(help_text.split())


def test_doctor_cost_explorer_tag(aws: AwsEnv) -> None:
    lines: list[str] = []
    Doctor(Settings(source="aws"), echo=lines.append).cost_explorer()
    # moto does not model cost-allocation tags: the check reports it could not confirm.
    assert lines[0].startswith(("✗ Cost Explorer tag Component", "✓ Cost Explorer tag"))


def test_doctor_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    result = CliRunner().invoke(
        main,
        ["doctor", "--skip-cost-explorer"],
        env={"CODECDASH_SOURCE": "aws", "CODECDASH_DATABASE_URL": str(tmp_path / "x.db")},
    )
    assert result.exit_code == 1
    assert "✗ AWS credentials" in result.output
    assert "aws configure" in result.output


def test_doctor_local(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["doctor"], env={"CODECDASH_DATABASE_URL": str(tmp_path / "local.db")}
    )
    assert result.exit_code == 0, result.output
    assert "✓ store" in result.output and "✓ dashboard page" in result.output


def test_cli_registers_the_commands() -> None:
    assert {"export", "deploy", "doctor"} <= set(main.commands)
    assert main.commands["deploy"] is deploy_command.deploy


def test_doctor_reports_the_deployed_dashboards_alarms_snapshot_and_failures(
    aws: AwsEnv, research: Settings, tmp_path: Path
) -> None:
    from codecdash.sources.aws.checks import check_snapshot_age

    template = tmp_path / "dashboard.json"
    template.write_text(moto_template(make_distribution(aws)))
    options = DeployOptions(
        stack="watched",
        region=REGION,
        template=template,
        lambda_zip=small_zip(),
        poll_seconds=0.2,
        timeout_s=120,
    )
    result = Deployer(options, research, echo=lambda _: None).run()
    cw = aws.client("cloudwatch")
    alarms = cw.describe_alarms(AlarmNamePrefix="watched-")["MetricAlarms"]
    names = sorted(a["AlarmName"] for a in alarms)
    assert len(names) == 6 and "watched-snapshot-stale" in names
    assert all(a["AlarmActions"] == [result.outputs["AlarmTopicArn"]] for a in alarms)
    for name in names:
        cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="fine")
    cw.set_alarm_state(
        AlarmName="watched-snapshot-stale",
        StateValue="ALARM",
        StateReason="Threshold Crossed: 5 datapoints were less than the threshold (1.0)",
    )
    queue = result.outputs["StreamFailureQueueUrl"]
    aws.client("sqs").send_message(QueueUrl=queue, MessageBody='{"DDBStreamBatchInfo": {}}')

    lines: list[str] = []
    status = Doctor(research, echo=lines.append).run(skip_cost_explorer=True, stack="watched")
    text = "\n".join(lines)
    assert status == 1
    assert "✗ alarm watched-snapshot-stale: ALARM: Threshold Crossed: 5 datapoints" in text
    assert "No snapshot was written for 5 minutes" in text  # the alarm's description as fix
    assert "✓ alarm watched-api-5xx: OK" in text
    assert re.search(r"✓ snapshot: written \d+ s ago", text)
    assert "✗ stream failure queue: 1 failed batch recorded" in text
    # A snapshot older than 5 minutes is a problem too.
    later = time.time() + 600
    findings = check_snapshot_age(aws.client("s3"), result.bucket, "api/v1/dashboard", later)
    assert findings[0].status == "fail" and "minutes ago" in findings[0].detail
    # A stack that does not exist says so.
    lines.clear()
    Doctor(Settings(), echo=lines.append).run(stack="no-such-stack")
    assert any(line.startswith("✗ stack no-such-stack") for line in lines)


def test_artifacts_go_only_to_a_bucket_of_this_account(aws: AwsEnv) -> None:
    from botocore.exceptions import ClientError

    from codecdash.deploy.artifacts import new_bucket_name, upload_code

    seen: list[tuple[str, dict[str, Any]]] = []
    s3 = aws.client("s3")

    class Recording:
        def __getattr__(self, name: str) -> Any:
            def call(**kwargs: Any) -> Any:
                seen.append((name, kwargs))
                return getattr(s3, name)(**kwargs)

            return call

    bucket = new_bucket_name()
    assert bucket != new_bucket_name() and re.fullmatch(r"codecdash-artifacts-[0-9a-f]{16}", bucket)
    common = {"account": "123456789012", "region": REGION, "echo": lambda _: None}
    step = lambda doing, call: call()  # noqa: E731
    upload_code(Recording(), data=b"zip", bucket=bucket, step=step, **common)
    assert [name for name, _ in seen] == [
        "head_bucket",
        "create_bucket",
        "put_public_access_block",
        "head_object",
        "put_object",
    ]
    assert all(
        kwargs.get("ExpectedBucketOwner") == "123456789012"
        for name, kwargs in seen
        if name != "create_bucket"  # CreateBucket has no owner to expect
    )

    class Foreign:
        def head_bucket(self, **kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadBucket")

    with pytest.raises(DeployError, match="belongs to another account"):
        upload_code(Foreign(), data=b"zip", bucket="codecdash-artifacts-x", step=step, **common)
