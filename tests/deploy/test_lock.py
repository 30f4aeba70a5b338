"""requirements.lock, the image's dependency lock: every runtime dependency of pyproject.toml
pinned at a version its specifier allows, every pin hashed, and the Dockerfile installing from
it with --require-hashes before the wheel (--no-deps). No network: the lock and pyproject.toml
are read, not resolved. Docker has no engine here, so the Dockerfile is checked by reading."""
from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy import manifests

LOCK = manifests.ROOT / "requirements.lock"
DOCKERFILE = manifests.ROOT / "Dockerfile"
# the image's interpreter and platform (python:3.11-slim): markers are evaluated for it
IMAGE_ENV = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
             "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
             "platform_python_implementation": "CPython", "extra": ""}


def read_lock(text: str) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of sha256 hashes), from the lock's pip-compile format."""
    pins: dict[str, tuple[Version, int]] = {}
    # one entry: `name==version \` then its `--hash=sha256:...` continuation lines
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*(?:\\|;|$)", block)
        if not m:
            continue
        name = canonicalize_name(m.group(1))
        if name in pins:
            raise ValueError(f"{name} is pinned twice")
        pins[name] = (Version(m.group(2)), len(re.findall(r"--hash=sha256:[0-9a-f]{64}\b", block)))
    return pins


def lock_problems(dependencies: list[str], pins: dict[str, tuple[Version, int]]) -> list[str]:
    problems = []
    for dep in map(Requirement, dependencies):
        if dep.marker is not None and not dep.marker.evaluate(IMAGE_ENV):
            continue  # not installed in the image
        name = canonicalize_name(dep.name)
        if name not in pins:
            problems.append(f"{dep.name}: not in the lock")
        elif not dep.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{dep.name}: locked {pins[name][0]}, pyproject.toml asks {dep.specifier}")
    problems += [f"{name}: no sha256 hash" for name, (_, hashes) in pins.items() if hashes == 0]
    return problems


H = " \\\n    --hash=sha256:" + "ab" * 32
#  pyproject dependencies                     lock text                                 -> problems
LOCK_CASES = [
    (["numpy>=1.26"],                           f"numpy==2.4.6{H}\n",                      []),
    (["kubernetes>=37,<38"],                    f"kubernetes==38.0.0{H}\n",
     ["kubernetes: locked 38.0.0, pyproject.toml asks <38,>=37"]),      # 38.0.0 is not < 38
    (["PyYAML>=6"],                             f"pyyaml==6.0.4{H}\n",                     []),  # names canonical
    (["orjson>=3.9"],                           f"numpy==2.4.6{H}\n",                      ["orjson: not in the lock"]),
    (["numpy>=1.26"],                           "numpy==2.4.6\n",                          ["numpy: no sha256 hash"]),
    (["pywin32>=300; sys_platform == 'win32'"], "",                                        []),  # not in the image
    (["prometheus-client>=0.20"],               f"prometheus-client==0.19.0{H}\n",
     ["prometheus-client: locked 0.19.0, pyproject.toml asks >=0.20"]),  # 0.19 < 0.20
]


@pytest.mark.parametrize("deps, lock, want", LOCK_CASES)
def test_lock_problems(deps, lock, want):
    assert lock_problems(deps, read_lock(lock)) == want


def test_the_lock_covers_every_runtime_dependency():
    project = tomllib.loads((manifests.ROOT / "pyproject.toml").read_text())["project"]
    pins = read_lock(LOCK.read_text())
    assert lock_problems(project["dependencies"], pins) == [], (
        "regenerate requirements.lock with the uv command in the Dockerfile's header")
    # runtime only: the test and bench extras stay out of the image, unless a runtime
    # dependency needs the same package (tqdm comes with huggingface-hub)
    via = _via(LOCK.read_text())
    for extra in ("test", "bench"):
        for dep in map(Requirement, project["optional-dependencies"][extra]):
            name = canonicalize_name(dep.name)
            assert name not in pins or via.get(name, set()) - {"gpusched"}, f"{dep.name} ({extra} extra) is in the lock"


def _via(text: str) -> dict[str, set[str]]:
    """name -> the packages the lock says need it (its `# via` comments)."""
    out: dict[str, set[str]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==", block)
        if not m:
            continue
        comments = [line.strip().lstrip("#").strip() for line in block.splitlines() if line.strip().startswith("#")]
        words = [c.removeprefix("via").strip() for c in comments]
        out[canonicalize_name(m.group(1))] = {canonicalize_name(w.split()[0]) for w in words if w}
    return out


def test_the_lock_says_how_to_regenerate_it():
    header = LOCK.read_text().split("\n\n", 1)[0]
    assert "uv pip compile pyproject.toml --generate-hashes" in header and "-o requirements.lock" in header
    assert "--find-links" not in LOCK.read_text() and "--index-url" not in LOCK.read_text()  # no local paths
    assert "uv pip compile pyproject.toml --generate-hashes" in DOCKERFILE.read_text()


def test_the_image_installs_the_lock_with_hashes_then_the_wheel_alone():
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    instr = [ln.split(None, 1) for ln in (x.strip() for x in text.splitlines()) if ln and not ln.startswith("#")]
    build = instr[:[i for i, (op, _) in enumerate(instr) if op.upper() == "FROM"][1]]  # the first stage
    pips = [cmd.strip() for op, rest in build if op.upper() == "RUN"
            for cmd in rest.split("&&") if re.search(r"\bpip install\b", cmd)]
    assert len(pips) == 2, pips
    locked, wheel = pips
    assert "--require-hashes" in locked and "-r requirements.lock" in locked, locked
    assert "--no-deps" in wheel and ".whl" in wheel, wheel
    assert "--upgrade" not in " ".join(pips)  # nothing unpinned
    copies = [rest.split() for op, rest in build if op.upper() == "COPY"]
    assert ["requirements.lock", "./"] in copies
    ignored = [ln.strip() for ln in (manifests.ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.lstrip().startswith("#")]
    assert "requirements.lock" not in ignored and "*.lock" not in ignored
