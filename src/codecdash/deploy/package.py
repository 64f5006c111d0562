"""The Lambda package: a zip of the installed codecdash and its runtime dependencies, for
Lambda's newest Python runtime (copied from this environment when its wheels fit, else built
with pip). Either way the package holds exactly the versions installed here, the ones the
tests ran with (``constraints.txt``): pip installs each of them pinned (``name==version``,
no dependency resolution), and a version without a wheel for Lambda's platform fails the
build with its name, never falling back to another version.
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

PYTHON = "3.14"  # the runtime of the template's functions: python3.14
RUNTIME = f"python{PYTHON}"
GLIBC = (2, 34)  # the python3.14 runtime runs on Amazon Linux 2023
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


def _python_fits(python: str, abi: str) -> bool:
    """Whether a wheel's python and abi tags load on Lambda's Python."""
    major, minor = (int(p) for p in PYTHON.split("."))
    if python in ("py3", "py2.py3"):
        return True
    found = re.fullmatch(r"cp(\d)(\d+)", python)
    if not found or int(found[1]) != major:
        return False
    if abi == "abi3":
        return int(found[2]) <= minor
    return int(found[2]) == minor


def _wheel_fits(dist: metadata.Distribution, arch: str) -> bool:
    """Whether the installed wheel runs on Lambda (pure, or manylinux within Amazon Linux
    2023's glibc, for Lambda's Python)."""
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    for tag in tags:
        python, abi, platform = tag.split("-", 2)
        if platform == "any":
            return True
        if not _python_fits(python, abi):
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
    is given explicitly), "pip" installs the same versions for Lambda's platform with pip,
    "auto" picks "env" when every wheel fits and pip otherwise. pip gets every package of
    the closure pinned to its installed version, with ``--no-deps``: the package is what
    the tests ran with, or the build fails naming what has no wheel for Lambda.
    """
    requirements = list(requirements) if requirements is not None else runtime_requirements()
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[arch]
    dists = _closure(requirements)
    check_tested_versions(dists, find_constraints())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        _add_codecdash(zf)
        if mode in ("env", "auto"):
            misfits = [d.metadata["Name"] for d in dists if not _wheel_fits(d, machine)]
            here = tuple(int(p) for p in PYTHON.split("."))
            local = sys.platform == "linux" and sys.version_info[:2] == here
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
                f"({', '.join(misfits) or f'this is not a Linux Python {PYTHON}'} "
                "must be fetched for Lambda's platform)"
            )
        with tempfile.TemporaryDirectory(prefix="codecdash-lambda-") as target:
            platforms = [f"manylinux2014_{machine}"] + [
                f"manylinux_2_{minor}_{machine}"
                for minor in (17, 24, 26, 27, 28, 31, 34)
                if minor <= GLIBC[1]
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
                "--no-deps",  # the closure below is complete: no resolution, no other versions
                "--upgrade",
            ]
            for platform in platforms:
                command += ["--platform", platform]
            command += pinned(dists)
            (run or _run_pip)(command)
            _add_tree(zf, Path(target))
        return _finish(zf, buffer, echo, "built with pip")


def find_constraints() -> Path | None:
    """The checkout's ``constraints.txt`` (the versions the tests ran with), if any."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (root / "constraints.txt").is_file() and (root / "pyproject.toml").is_file():
            return root / "constraints.txt"
    return None


def check_tested_versions(dists: Iterable[metadata.Distribution], constraints: Path | None) -> None:
    """Refuses to package a version other than the one ``constraints.txt`` pins."""
    if constraints is None:
        return
    tested: dict[str, str] = {}
    for line in constraints.read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if found:
            tested[_canonical(found[1])] = found[2]
    wrong = [
        f"{name} {d.version} (tested: {tested[name]})"
        for d in dists
        if (name := _canonical(d.metadata["Name"])) in tested and tested[name] != d.version
    ]
    if wrong:
        raise DeployError(
            f"installed versions differ from {constraints.name}, the ones the tests ran with: "
            f"{', '.join(sorted(wrong))}. Install them (pip install -c {constraints} -e "
            "'.[aws]') or pass --lambda-zip with a package you built"
        )


def pinned(dists: Iterable[metadata.Distribution]) -> list[str]:
    """``name==version`` of each distribution, as installed here (sorted)."""
    return sorted(f"{_canonical(d.metadata['Name'])}=={d.version}" for d in dists)


def _run_pip(command: list[str]) -> None:
    try:
        answer = subprocess.run(  # noqa: S603 - our own argument list
            command, check=False, capture_output=True, text=True
        )
    except OSError as exc:
        raise DeployError(f"pip could not run ({exc})") from None
    if answer.returncode != 0:
        lines = [line for line in answer.stderr.splitlines() if line.strip()]
        missing = [line for line in lines if "No matching distribution" in line]
        raise DeployError(
            "pip could not build the Lambda package from the tested versions "
            f"({(missing or lines or ['no output'])[-1].strip()[:300]}). The package is "
            f"never built with other versions: install versions that have wheels for "
            f"{RUNTIME} on Amazon Linux 2023 (glibc {GLIBC[0]}.{GLIBC[1]}) and test them, "
            "check the network, or pass --lambda-zip with a package you built"
        )


def _finish(zf: zipfile.ZipFile, buffer: io.BytesIO, echo: Echo, how: str) -> bytes:
    count = len(zf.infolist())
    zf.close()
    data = buffer.getvalue()
    echo(f"Lambda package: {count} files, {len(data) / 1e6:.1f} MB ({how})")
    return data
