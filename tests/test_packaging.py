"""The image build is reproducible: constraints.txt pins every runtime dependency (and theirs), each pin satisfies
pyproject.toml, the test environment runs those very versions, and the Dockerfile installs through it."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", line.strip())
        assert m, f"constraints.txt: {line!r} is not name==version"
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def _runtime() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def test_every_runtime_dependency_is_pinned_within_pyproject_bounds() -> None:
    pins = _pins()
    for req in _runtime():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a dependency but constraints.txt does not pin it"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} breaks {req}"
    assert "motadata-faas" not in pins  # the project itself is what gets installed


def test_the_pins_are_closed_and_are_what_the_tests_run_on() -> None:
    pins = _pins()
    env = {k: str(v) for k, v in default_environment().items()}
    seen: set[str] = set()
    todo: list[tuple[str, set[str]]] = [(canonicalize_name(r.name), set(r.extras)) for r in _runtime()]
    while todo:
        name, extras = todo.pop()
        if (key := f"{name}[{','.join(sorted(extras))}]") in seen:
            continue
        seen.add(key)
        assert name in pins, f"{name} is installed at run time but constraints.txt does not pin it"
        try:
            installed = distribution(name).version
        except PackageNotFoundError:
            raise AssertionError(f"{name} is pinned but not installed in the test environment") from None
        assert installed == pins[name], f"tests run {name} {installed}, constraints.txt pins {pins[name]}"
        for raw in distribution(name).requires or []:
            req = Requirement(raw)
            if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in extras or {""}):
                todo.append((canonicalize_name(req.name), set(req.extras)))
    reached = {key.split("[")[0] for key in seen}
    assert set(pins) - reached == set(), "constraints.txt pins packages nothing installs at run time (test tools?)"


def test_the_dockerfile_installs_through_the_constraints() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "constraints.txt" in re.search(r"^COPY .*$", dockerfile, re.M).group(0)  # type: ignore[union-attr]
    assert re.search(r"^RUN pip install -c constraints\.txt ", dockerfile, re.M)
