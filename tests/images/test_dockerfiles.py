"""The container images, checked statically (no Docker engine here): what they copy exists and is
sent in the build context, the wheel they install builds from exactly those files, the entry points
they call exist, they run as a fixed non-root user, every base image and package is pinned, no
credential is baked in, and `make images` tags what the components name."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from importlib.util import find_spec
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
NAMES = ["runtime", "trainer-gpu", "mlflow"]
DOCKERFILES = {name: IMAGES / name / "Dockerfile" for name in NAMES}


# ------------------------------------------------------------------ a small Dockerfile reader

def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued RUN
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def arg_defaults(path: Path) -> dict[str, str]:
    defaults = {}
    for keyword, rest in instructions(path):
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name] = value
    return defaults


def base_images(path: Path) -> list[str]:
    """The external images of every FROM (build stages referring to earlier stages left out)."""
    defaults, stages, images = arg_defaults(path), set(), []
    for keyword, rest in instructions(path):
        if keyword != "FROM":
            continue
        words = rest.split()
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], words[0])
        if image not in stages:
            images.append(image)
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2])
    return images


def copy_sources(path: Path) -> list[str]:
    """Sources of COPY/ADD from the build context (not from another stage)."""
    sources = []
    for keyword, rest in instructions(path):
        if keyword in {"COPY", "ADD"}:
            words = [w for w in shlex.split(rest)]
            if any(w.startswith("--from=") for w in words):
                continue
            words = [w for w in words if not w.startswith("--")]
            sources += words[:-1]
    return sources


def run_commands(path: Path) -> list[str]:
    return [rest for keyword, rest in instructions(path) if keyword == "RUN"]


def sent_in_context(relative: str, dockerfile: Path) -> bool:
    """Whether <Dockerfile>.dockerignore (BuildKit, last matching pattern wins) sends the path."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    patterns = [p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch(c, pattern) for c in candidates):
            included = negate
    return included


# ------------------------------------------------------------------ the tests

def test_the_images_are_the_three_dockerfiles():
    assert sorted(p.parent.name for p in IMAGES.glob("*/Dockerfile")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_copied_files_exist_and_are_sent_in_the_build_context(name):
    dockerfile = DOCKERFILES[name]
    sources = copy_sources(dockerfile)
    assert sources, f"{name}: copies nothing"
    for source in sources:
        assert source != "." and ".." not in source, f"{name}: copies {source!r}, the whole context"
        assert list(REPO.glob(source)), f"{name}: COPY {source} does not exist in the repository"
        assert sent_in_context(source, dockerfile), f"{name}: {source} is excluded by the .dockerignore"
    # and the ignore file keeps the virtual environment and run outputs out of the context
    for heavy in [".venv/bin/python", "runs/demo/ledger", "tests/conftest.py"]:
        assert not sent_in_context(heavy, dockerfile), f"{name}: sends {heavy}"


@pytest.mark.parametrize("name", NAMES)
def test_base_images_are_pinned_by_version_tag(name):
    for image in base_images(DOCKERFILES[name]):
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"


@pytest.mark.parametrize("name", NAMES)
def test_runs_as_a_fixed_non_root_user(name):
    steps = instructions(DOCKERFILES[name])
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users, f"{name}: no USER, so it runs as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), f"{name}: USER {users[-1]}"
    # the user exists in the image with that uid (numeric, so runAsNonRoot can verify it)
    assert any(f"useradd --uid {uid} " in run for run in run_commands(DOCKERFILES[name]))
    # and nothing after it switches back
    last_user = max(i for i, (keyword, _) in enumerate(steps) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in steps[last_user:]), f"{name}: RUN after USER"


CREDENTIAL_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)
CREDENTIAL_VALUE = re.compile(r"AKIA[0-9A-Z]{16}|://[^/\s:@]+:[^/\s@]+@|-----BEGIN")


@pytest.mark.parametrize("name", NAMES)
def test_no_credential_is_baked_in(name):
    dockerfile = DOCKERFILES[name]
    for keyword, rest in instructions(dockerfile):
        if keyword in {"ENV", "ARG"}:
            names = re.findall(r"(\w+)=", rest) or [rest.split()[0]]
            offenders = [n for n in names if CREDENTIAL_NAME.search(n)]
            assert not offenders, f"{name}: {keyword} {offenders}"
        assert not CREDENTIAL_VALUE.search(rest), f"{name}: {keyword} {rest[:60]}..."
        assert "--mount=type=secret" not in rest or keyword != "RUN"  # none is needed
    assert "AWS_" not in dockerfile.read_text() and "MLFLOW_TRACKING" not in dockerfile.read_text()


def _pinned(requirement: str) -> bool:
    return "==" in requirement or requirement.endswith(".whl")


def _constrained_names() -> set[str]:
    names = set()
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            names.add(line.split("==")[0].strip().lower().replace("_", "-"))
    return names


@pytest.mark.parametrize("name", NAMES)
def test_every_python_package_is_pinned(name):
    constrained = _constrained_names()
    installs = [cmd for run in run_commands(DOCKERFILES[name]) for cmd in run.split("&&")
                if re.search(r"\bpip install\b", cmd)]
    assert installs, f"{name}: installs nothing"
    for cmd in installs:
        words = shlex.split(cmd.split("pip install", 1)[1])
        uses_constraints = "-c" in words and words[words.index("-c") + 1] == "/tmp/constraints.txt"
        skip_next, requirements = False, []
        for word in words:
            if skip_next:
                skip_next = False
            elif word in {"-c", "--index-url"}:
                skip_next = True
            elif not word.startswith("-"):
                requirements.append(word)
        for requirement in requirements:
            if _pinned(requirement):
                continue
            assert uses_constraints, f"{name}: {requirement} unpinned in `pip install{cmd}`"
            assert requirement.lower() in constrained, f"{name}: {requirement} is not in constraints.txt"


def test_torch_is_2_13_0_cpu_in_runtime_and_a_matching_cuda_build_in_the_trainer():
    runtime, trainer = arg_defaults(DOCKERFILES["runtime"]), arg_defaults(DOCKERFILES["trainer-gpu"])
    assert runtime["TORCH_VERSION"] == trainer["TORCH_VERSION"] == "2.13.0"
    assert runtime["TORCH_INDEX_URL"].endswith("/whl/cpu")
    cuda_build = re.fullmatch(r"https://download\.pytorch\.org/whl/cu(\d+)(\d)", trainer["TORCH_INDEX_URL"])
    assert cuda_build, trainer["TORCH_INDEX_URL"]
    cuda_base = base_images(DOCKERFILES["trainer-gpu"])[-1]
    assert cuda_base.startswith("nvidia/cuda:"), cuda_base
    assert cuda_base.split(":")[1].split(".")[0] == cuda_build.group(1), (cuda_base, cuda_build.group(0))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project wheel, built from only the files the Dockerfiles' wheel stage copies."""
    context = tmp_path_factory.mktemp("context")
    for source in copy_sources(DOCKERFILES["runtime"]):
        if source == "constraints.txt":
            continue
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, context / source,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(origin, context / source)
    out = tmp_path_factory.mktemp("wheels")
    # --no-build-isolation: the backend (setuptools) is already in the venv and nothing downloads.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--quiet", "--wheel-dir", str(out), str(context)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheels = list(out.glob("transfer_automl-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_builds_and_holds_what_the_steps_need(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    for module in ["transfer_automl/cli.py", "transfer_automl/steps/pipeline_steps.py"]:
        assert module in names, module
    assert any(n.startswith("transfer_automl/tasks/samples/") and n.endswith(".parquet") for n in names)
    # the benchmark harnesses run from a checkout (benchmarks/, like pipelines/), not from the wheel
    assert not any(n.startswith(("benchmarks/", "transfer_automl/bench/")) for n in names)
    assert re.search(r"^taml = transfer_automl\.cli:main$", entry_points, re.M), entry_points
    # kfp must be in the image: the components are compiled with install_kfp_package=False
    requires = re.findall(r"^Requires-Dist: ([A-Za-z0-9_.-]+)(.*)$", metadata, re.M)
    required = {n.lower(): spec for n, spec in requires}
    assert "kfp" in required and "torch" in required and "2.13.0" in required["torch"], required


@pytest.mark.parametrize("name", ["runtime", "trainer-gpu"])
def test_the_modules_and_commands_the_image_calls_exist(name):
    text = " ".join(run_commands(DOCKERFILES[name]))
    imported = re.findall(r"import ([\w., ]+?)(?:;|\"|$)", " ".join(re.findall(r'python3? -c "([^"]+)"', text)))
    modules = {m.strip() for group in imported for m in group.split(",")}
    assert {"kfp.dsl.executor_main", "transfer_automl.steps.pipeline_steps"} <= modules, modules
    for module in modules:
        assert find_spec(module) is not None, f"{name}: imports {module}, which does not exist"
    entrypoint = dict(instructions(DOCKERFILES[name]))["ENTRYPOINT"]
    assert entrypoint == '["taml"]'
    assert (Path(sys.executable).parent / "taml").exists()


def test_the_mlflow_image_runs_the_mlflow_server_of_the_client_version():
    dockerfile = DOCKERFILES["mlflow"]
    assert dict(instructions(dockerfile))["ENTRYPOINT"] == '["mlflow", "server"]'
    assert any("-c /tmp/constraints.txt mlflow boto3" in run for run in run_commands(dockerfile))
    from click.testing import CliRunner
    from mlflow.cli import cli

    help_text = CliRunner().invoke(cli, ["server", "--help"]).output
    for option in ["--backend-store-uri", "--artifacts-destination", "--serve-artifacts", "--allowed-hosts"]:
        assert option in help_text, option  # the options manifests/base/mlflow.yaml passes


@pytest.mark.parametrize("name", ["runtime", "trainer-gpu"])
def test_kfp_finds_python3_and_kfp_first_on_the_images_path(name):
    sys.path.insert(0, str(REPO))
    from components.init_search.component import init_search

    container = init_search.component_spec.implementation.container
    command = " ".join(container.command)
    assert container.command[0] == "sh" and "python3 -m kfp.dsl.executor_main" in command, command
    env = dict(instructions(DOCKERFILES[name]))
    venv = re.search(r"VIRTUAL_ENV=(\S+)", env["ENV"]).group(1)
    assert re.search(rf"PATH={re.escape(venv)}/bin:\$PATH", env["ENV"]), "the venv's python3 comes first"
    assert any(re.search(rf"python3? -m venv {re.escape(venv)}\b", run) for run in run_commands(DOCKERFILES[name]))


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("registry, tag", [(None, None), ("registry.example.com/team", "1.2.3")])
def test_make_images_tags_the_images_the_components_name(registry, tag):
    make_args, env = ["make", "-n", "images"], {k: v for k, v in os.environ.items() if not k.startswith("TAML_IMAGE")}
    if registry:
        make_args += [f"REGISTRY={registry}", f"TAG={tag}"]
        env |= {"TAML_IMAGE_REGISTRY": registry, "TAML_IMAGE_TAG": tag}
    plan = subprocess.run(make_args, cwd=REPO, capture_output=True, text=True, check=True).stdout
    names = subprocess.run(
        [sys.executable, "-c", "from components.image import RUNTIME_IMAGE as r, TRAINER_GPU_IMAGE as t; print(r, t)"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.split()
    looped = re.search(r"for name in ([\w\- ]+);", plan).group(1).split()
    for image, name in zip(names, ["runtime", "trainer-gpu"], strict=True):
        assert name in looped, looped
        assert f"-f images/{name}/Dockerfile -t {image} ." in plan.replace("$name", name), plan
    if registry:
        assert names[0] == f"{registry}/taml-runtime:{tag}"
