"""The Lambda package: a zip of the installed codecdash and its runtime dependencies, for
Lambda's Python 3.11 (copied from this environment when its wheels fit, else built with pip).
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path

import click

PYTHON = "3.11"
GLIBC = (2, 26)  # the python3.11 runtime runs on Amazon Linux 2
# Runtime dependencies that Lambda does not need: the local server and the agent's GPU probe.
NOT_IN_LAMBDA = frozenset(
    {
        "uvicorn",
        "uvloop",
        "httptools",
        "watchfiles",
        "websockets",
        "python-dotenv",
        "pyyaml",
        "nvidia-ml-py",
    }
)
SKIP_PARTS = frozenset({"__pycache__", "tests", "test"})
Echo = Callable[[str], None]


class DeployError(click.ClickException):
    """A deployment problem, said in one clear message (exit code 1)."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements() -> list[str]:
    """codecdash's own requirements plus the `aws` extra, less what Lambda does not need."""
    dist = metadata.distribution("codecdash")
    wanted: list[str] = []
    for req in dist.requires or []:
        spec, _, marker = req.partition(";")
        if marker and "extra" in marker and '"aws"' not in marker and "'aws'" not in marker:
            continue
        name = re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0]
        if _canonical(name) in NOT_IN_LAMBDA:
            continue
        wanted.append(re.sub(r"\[[^\]]*\]", "", spec.strip()))
    return wanted


def _closure(requirements: Iterable[str]) -> list[metadata.Distribution]:
    """The installed distributions needed by `requirements`, recursively (extras ignored)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [re.split(r"[\s\[<>=!~;]", r.strip(), maxsplit=1)[0] for r in requirements]
    while todo:
        name = _canonical(todo.pop())
        if name in seen or name in NOT_IN_LAMBDA:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise DeployError(
                f"{name} is not installed here; install codecdash[aws] first, "
                "or let deploy build the package with pip"
            ) from None
        seen[name] = dist
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            if "extra" in marker:
                continue
            if marker.strip() and not _marker_holds(marker):
                continue
            todo.append(re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0])
    return list(seen.values())


def _marker_holds(marker: str) -> bool:
    """Whether an environment marker holds on Lambda (True when it cannot be evaluated)."""
    try:
        from packaging.markers import Marker
    except ImportError:  # pragma: no cover - pip and setuptools bring packaging
        return True
    environment = {
        "python_version": PYTHON,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
    }
    try:
        return bool(Marker(marker).evaluate(environment))
    except Exception:
        return True


def _wheel_fits(dist: metadata.Distribution, arch: str) -> bool:
    """Whether the installed wheel runs on Lambda (pure, or manylinux ≤ glibc 2.26, cp311)."""
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    for tag in tags:
        python, abi, platform = tag.split("-", 2)
        if platform == "any":
            return True
        if (
            python not in ("cp311", "cp36", "cp37", "cp38", "cp39", "cp310", "py3")
            and abi != "abi3"
        ):
            continue
        for plat in platform.split("."):
            if not plat.endswith(arch):
                continue
            legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
            prefix = plat[: -len(arch) - 1]
            if prefix in legacy and legacy[prefix] <= GLIBC:
                return True
            found = re.match(r"manylinux_(\d+)_(\d+)$", prefix)
            if found and (int(found[1]), int(found[2])) <= GLIBC:
                return True
    return False


def _skip(path: str) -> bool:
    parts = path.split("/")
    return (
        bool(SKIP_PARTS.intersection(parts[:-1]))
        or path.endswith((".pyc", ".pyi"))
        or parts[0] in ("..", "bin")
    )


def _add_tree(zf: zipfile.ZipFile, root: Path, prefix: str = "") -> None:
    for path in sorted(root.rglob("*")):
        rel = prefix + path.relative_to(root).as_posix()
        if path.is_file() and not _skip(rel) and ".dist-info/" not in rel:
            _write(zf, rel, path.read_bytes())


def _write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def _add_codecdash(zf: zipfile.ZipFile) -> None:
    import codecdash

    _add_tree(zf, Path(codecdash.__file__).parent, "codecdash/")


def build_lambda_zip(
    arch: str = "x86_64",
    *,
    mode: str = "auto",
    requirements: Sequence[str] | None = None,
    run: Callable[[list[str]], None] | None = None,
    echo: Echo = click.echo,
) -> bytes:
    """The zip for the functions: codecdash plus its runtime dependencies.

    `mode`: "env" copies the installed wheels (they must fit Lambda unless `requirements`
    is given explicitly), "pip" installs them for Lambda's platform with pip, "auto" picks
    "env" when every wheel fits and pip otherwise.
    """
    requirements = list(requirements) if requirements is not None else runtime_requirements()
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[arch]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        _add_codecdash(zf)
        if mode in ("env", "auto"):
            dists = _closure(requirements)
            misfits = [d.metadata["Name"] for d in dists if not _wheel_fits(d, machine)]
            local = sys.platform == "linux" and sys.version_info[:2] == (3, 11)
            if mode == "env" or (not misfits and local):
                if misfits and mode == "auto":
                    raise DeployError(f"wheels not built for Lambda: {', '.join(misfits)}")
                for dist in sorted(dists, key=lambda d: _canonical(d.metadata["Name"])):
                    base = Path(str(dist.locate_file("")))
                    for file in sorted(dist.files or [], key=str):
                        rel = file.as_posix()
                        if _skip(rel) or ".dist-info/" in rel:
                            continue
                        source = base / rel
                        if source.is_file():
                            _write(zf, rel, source.read_bytes())
                return _finish(zf, buffer, echo, "copied from this environment")
            echo(
                f"building the Lambda package with pip for {machine} "
                f"({', '.join(misfits) or 'this is not a Linux Python 3.11'} "
                "must be fetched for Lambda's platform)"
            )
        with tempfile.TemporaryDirectory(prefix="codecdash-lambda-") as target:
            platforms = [
                f"manylinux2014_{machine}",
                f"manylinux_2_17_{machine}",
                f"manylinux_2_24_{machine}",
                f"manylinux_2_26_{machine}",
            ]
            command = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                target,
                "--implementation",
                "cp",
                "--python-version",
                PYTHON,
                "--only-binary=:all:",
                "--upgrade",
            ]
            for platform in platforms:
                command += ["--platform", platform]
            command += requirements
            (run or _run_pip)(command)
            _add_tree(zf, Path(target))
        return _finish(zf, buffer, echo, "built with pip")


def _run_pip(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True)  # noqa: S603 - our own argument list
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DeployError(
            f"pip could not build the Lambda package ({exc}); check the network, "
            "or pass --lambda-zip with a package you built"
        ) from None


def _finish(zf: zipfile.ZipFile, buffer: io.BytesIO, echo: Echo, how: str) -> bytes:
    count = len(zf.infolist())
    zf.close()
    data = buffer.getvalue()
    echo(f"Lambda package: {count} files, {len(data) / 1e6:.1f} MB ({how})")
    return data
