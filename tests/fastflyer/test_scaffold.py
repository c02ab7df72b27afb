"""The generated project works as generated: its scripts find the SDK, it installs exactly
this SDK (``--bundle-sdk``), its workers share their data, its README tells the truth.

Real processes throughout: the ``fastflyer`` command, the project's scripts, gunicorn, and
fresh virtual environments that install the bundled wheel.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from test_cli import BIN, bound_url, env_for, fastflyer, running, wait_until

from fastkit import __version__

WHEEL = f"fastflyer-{__version__}-py3-none-any.whl"
DEV_PURELIB = sysconfig.get_paths()["purelib"]


def create(project: Path, *args: str) -> Path:
    project.mkdir(parents=True, exist_ok=True)
    result = fastflyer("create_app", *args, cwd=project)
    assert result.returncode == 0, result.stderr
    return project


def bare_path(tmp_path: Path, python3: bool = False) -> str:
    """A PATH with no fastflyer and no virtualenv: only ``dirname`` (and, if asked, a
    ``python3`` that is the dev venv's, which imports fastflyer)."""
    bin_dir = tmp_path / "bare-bin"
    bin_dir.mkdir(exist_ok=True)
    dirname = shutil.which("dirname")
    assert dirname
    (bin_dir / "dirname").symlink_to(dirname)
    if python3:
        wrapper = bin_dir / "python3"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        wrapper.chmod(0o755)
    return str(bin_dir)


# --- 2. the scripts find the SDK without an active venv ---------------------------------

SCRIPTS = ["start.sh", "start-reload.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_without_any_sdk_says_in_one_line_what_to_do(tmp_path, script):
    project = create(tmp_path / "shop")
    result = subprocess.run([f"./{script}"], cwd=project, capture_output=True, text=True,
                            env=env_for(PATH=bare_path(tmp_path)), timeout=30)
    assert result.returncode == 127, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "the FastFlyer SDK is not installed" in result.stderr
    assert "python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt" \
        in result.stderr
    assert "not found" not in result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("where", [".venv", "venv", "python3 -m fastflyer"])
def test_a_script_finds_the_sdk_without_an_active_venv(tmp_path, script, where):
    project = create(tmp_path / "shop")
    if where == "python3 -m fastflyer":
        path = bare_path(tmp_path, python3=True)
    else:
        (project / where).symlink_to(sys.prefix)  # the project's virtualenv: the dev venv
        path = bare_path(tmp_path)
    log = tmp_path / "server.log"
    with running([f"./{script}", "--port", "0"], project, log, PATH=path,
                 flyer_host="127.0.0.1", flyer_workers="1",
                 flyer_log_path=str(tmp_path / "logs")) as process:
        base = bound_url(process, log)
        wait_until(lambda: httpx.get(f"{base}/health_check", timeout=1).status_code == 200,
                   process, log)
    assert process.returncode == 0, log.read_text()


def test_python_m_fastflyer_is_the_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastflyer", "--version"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"fastflyer {__version__}\n"


# --- 3. the project installs exactly this SDK ----------------------------------------------

def test_the_default_install_spec_is_this_exact_version(tmp_path):
    project = create(tmp_path / "shop")
    spec = f"fastflyer=={__version__}"
    assert f'ARG FASTFLYER_SPEC="{spec}"' in (project / "Dockerfile").read_text()
    assert 'pip install --no-cache-dir "${FASTFLYER_SPEC}"' in (project / "Dockerfile").read_text()
    assert f'FASTFLYER_SPEC="${{FASTFLYER_SPEC:-{spec}}}"' in (project / "dev_ctrl.sh").read_text()
    assert spec in (project / "requirements-dev.txt").read_text().splitlines()
    for name in ["Dockerfile", "dev_ctrl.sh", "requirements-dev.txt", "README.md"]:
        assert "fastflyer[web]" not in (project / name).read_text(), name
    assert [p.name for p in (project / "wheels").iterdir()] == ["README.md"]


def make_venv(path: Path, wheel: Path, with_dev_libraries: bool = False) -> Path:
    """A fresh venv with ``wheel`` installed (its dependencies left out); with
    ``with_dev_libraries``, the dev venv's libraries (never its fastflyer) come after it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120)
    python = path / "bin" / "python"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    if with_dev_libraries:
        purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                                  "print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        # A path line: the dev venv's own .pth files (its editable fastflyer) are not read.
        (Path(purelib) / "dev_libraries.pth").write_text(DEV_PURELIB + "\n")
    return path


def check_wheel(wheel: Path) -> dict[str, bytes]:
    """The wheel's files, after checking its name, metadata and RECORD."""
    assert wheel.name == WHEEL
    with zipfile.ZipFile(wheel) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    dist_info = f"fastflyer-{__version__}.dist-info"
    metadata = files[f"{dist_info}/METADATA"].decode()
    assert "Name: fastflyer\n" in metadata
    assert f"Version: {__version__}\n" in metadata
    assert "Tag: py3-none-any" in files[f"{dist_info}/WHEEL"].decode()
    assert "fastflyer = fastflyer.cli:main" in files[f"{dist_info}/entry_points.txt"].decode()
    rows = list(csv.reader(io.StringIO(files[f"{dist_info}/RECORD"].decode())))
    assert sorted(row[0] for row in rows) == sorted(files)
    for name, digest, size in rows:
        if name == f"{dist_info}/RECORD":
            assert digest == size == ""
            continue
        expected = base64.urlsafe_b64encode(hashlib.sha256(files[name]).digest())
        assert digest == "sha256=" + expected.rstrip(b"=").decode(), name
        assert int(size) == len(files[name]), name
    assert "fastflyer/templates/project/start.sh" in files
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    assert not [name for name in files if name.split("/")[-1] in
                ("INSTALLER", "REQUESTED", "direct_url.json")]
    return files


def run_in(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = env_for(PATH=f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_bundle_sdk_writes_a_wheel_of_this_sdk_that_the_project_installs(tmp_path):
    project = create(tmp_path / "shop", "--bundle-sdk")
    wheel = project / "wheels" / WHEEL
    assert wheel.is_file()
    spec = f"./wheels/{WHEEL}"
    dockerfile = (project / "Dockerfile").read_text()
    assert f'ARG FASTFLYER_SPEC="{spec}"' in dockerfile
    assert dockerfile.index("COPY wheels/ ./wheels/") < dockerfile.index("pip install")
    assert f'FASTFLYER_SPEC="${{FASTFLYER_SPEC:-{spec}}}"' in (project / "dev_ctrl.sh").read_text()
    assert spec in (project / "requirements-dev.txt").read_text().splitlines()
    check_wheel(wheel)
    shellcheck = shutil.which("shellcheck", path=str(BIN)) or shutil.which("shellcheck")
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert shellcheck and hadolint
    scripts = [str(p.relative_to(project)) for p in project.rglob("*.sh")]
    assert len(scripts) == 5
    checked = subprocess.run([shellcheck, *scripts], cwd=project, capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout
    linted = subprocess.run([hadolint, "Dockerfile"], cwd=project, capture_output=True,
                            text=True, timeout=60)
    assert linted.returncode == 0, linted.stdout

    # The wheel installs into a fresh venv and is this SDK.
    fresh = make_venv(tmp_path / "fresh", wheel)
    imported = run_in(fresh, "python", "-c",
                      "import fastflyer; print(fastflyer.__version__, fastflyer.__file__)",
                      cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    version, where = imported.stdout.split()
    assert version == __version__
    assert Path(where).is_relative_to(fresh)
    command = run_in(fresh, "fastflyer", "--version", cwd=tmp_path)
    assert command.stdout == f"fastflyer {__version__}\n", command.stderr
    assert Path(shutil.which("fastflyer", path=str(fresh / "bin")) or "").is_file()


def test_bundle_sdk_from_a_regular_install_repacks_its_recorded_files(tmp_path):
    # A regular (non-editable) install of the SDK: the wheel the dev install builds.
    first = create(tmp_path / "first", "--bundle-sdk") / "wheels" / WHEEL
    regular = make_venv(tmp_path / "regular", first, with_dev_libraries=True)
    where = run_in(regular, "python", "-c", "import fastflyer; print(fastflyer.__file__)",
                   cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(regular), where.stderr

    # That install bundles itself: packed again from its RECORD.
    project = tmp_path / "second"
    project.mkdir()
    result = run_in(regular, "fastflyer", "create_app", "--bundle-sdk", cwd=project)
    assert result.returncode == 0, result.stderr
    again = project / "wheels" / WHEEL
    repacked = check_wheel(again)
    original = check_wheel(first)
    record = f"fastflyer-{__version__}.dist-info/RECORD"
    assert sorted(repacked) == sorted(original)
    assert [name for name in repacked if name != record and repacked[name] != original[name]] \
        == []

    # The repacked wheel installs and runs: the project it generates passes its own tests.
    second = make_venv(tmp_path / "from-repacked", again, with_dev_libraries=True)
    assert run_in(second, "fastflyer", "--version", cwd=tmp_path).stdout == \
        f"fastflyer {__version__}\n"
    shop = tmp_path / "shop"
    shop.mkdir()
    assert run_in(second, "fastflyer", "create_app", cwd=shop).returncode == 0
    tests = run_in(second, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "-W", "error", "tests", cwd=shop)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "passed" in tests.stdout


# --- 4. and 5. workers share the demo's data; the demo does what the README says ------------

PID_HEADER = """
import os

from fastflyer import FlyerAPI

app = FlyerAPI(app_path=__file__)


@app.middleware("http")
async def worker_pid(request, call_next):
    response = await call_next(request)
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response
"""


def test_two_workers_share_the_items_and_the_demo_answers_as_the_readme_says(tmp_path):
    project = create(tmp_path / "shop")
    (project / "main.py").write_text(PID_HEADER)  # which worker answered, for the test
    log = tmp_path / "server.log"
    readme = (project / "README.md").read_text()
    with running([str(BIN / "fastflyer"), "serve", "--port", "0"], project, log,
                 flyer_host="127.0.0.1", flyer_workers="2",
                 flyer_log_path=str(tmp_path / "logs")) as process:
        base = bound_url(process, log)
        wait_until(lambda: log.read_text().count("Application startup complete") == 2,
                   process, log)
        # A new connection for every request, so that both workers take some.
        with httpx.Client(base_url=base, timeout=10,
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            created = client.post("/flyer/items", json={"name": "pen", "price": 2.5})
            assert created.status_code == 201, created.text
            item = created.json()["data"]
            statuses, pids = [], {created.headers["X-Worker-Pid"]}
            deadline = time.monotonic() + 30
            while len(statuses) < 8 or len(pids) < 2:
                assert time.monotonic() < deadline, f"one worker took every request: {pids}"
                answer = client.get(f"/flyer/items/{item['itemId']}")
                statuses.append(answer.status_code)
                pids.add(answer.headers["X-Worker-Pid"])
                assert answer.status_code == 200, (statuses, answer.text)
                assert answer.json()["data"] == item

            # Inputs the database cannot hold are refused as 422, never a 500.
            too_large = client.get("/flyer/items/827623764023692569503552503808")
            assert too_large.status_code == 422, too_large.text
            infinite = client.post("/flyer/items", content=b'{"name": "x", "price": 1e400}',
                                   headers={"Content-Type": "application/json"})
            assert infinite.status_code == 422, infinite.text

            # 5. the README's demo call, answered as the README says
            assert "GET /flyer/demo?id=-1` shows a business error: HTTP 504" in readme
            late = client.get("/flyer/demo", params={"id": -1})
            assert late.status_code == 504
            assert late.json() == {"code": 604, "message": "inventory timed out"}
            assert json.dumps(late.json()) in readme
            assert client.get("/flyer/demo", params={"id": 7}).json() == {
                "code": 200, "message": "success", "data": {"itemId": 7}}
    assert process.returncode == 0, log.read_text()
    assert (project / "data" / "fastflyer.sqlite3").is_file()


def test_a_capitalised_project_name_gives_a_lower_case_image_name(tmp_path):
    project = create(tmp_path / "Shop", "--name", "Shop")
    readme = (project / "README.md").read_text()
    assert "docker build -t shop ." in readme
    assert 'API_TITLE = "Shop"' in (project / "settings.py").read_text()


@pytest.mark.parametrize("where", ["a-file", "a-file/sub", "app-is-a-file"])
def test_a_project_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path, where):
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "app-is-a-file").mkdir()
    (tmp_path / "app-is-a-file" / "app").write_text("not a directory")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    result = fastflyer("create_app", "--name", "shop", "--dir", where, "-f", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("fastflyer: error: cannot write the project into "), line
    if where != "app-is-a-file":  # -f over a directory of the user's: its files stay
        assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_the_demo_never_overwrites_a_directory_it_is_given(tmp_path):
    mine = create(tmp_path / "mine")
    router = mine / "app" / "items" / "router.py"
    router.write_text(router.read_text() + "\n# my change\n")
    result = subprocess.run([str(BIN / "fastflyer"), "demo", "--port", "0", "--dir", str(mine)],
                            capture_output=True, text=True, timeout=60, env=env_for())
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "is not an empty directory" in line and "--dir" in line
    assert router.read_text().endswith("# my change\n")


def test_a_name_taken_from_the_directory_says_so(tmp_path):
    result = fastflyer("create_app", "--dir", "my shop", cwd=tmp_path)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "project name 'my shop' is not allowed" in line
    assert line.endswith("it was taken from the directory's name: give one with --name")


def test_an_sdk_from_no_index_says_how_the_project_gets_it(tmp_path):
    # The test venv's SDK is an editable install of this checkout: fastflyer==<version>
    # may be on no index, and create_app says what to do about it.
    plain = fastflyer("create_app", "--dir", "plain", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    [_, note] = plain.stdout.splitlines()
    assert note.startswith(f"note: this SDK (fastflyer {__version__}) was installed from file:")
    assert "--bundle-sdk" in note
    bundled = fastflyer("create_app", "--dir", "bundled", "--bundle-sdk", cwd=tmp_path)
    assert bundled.returncode == 0, bundled.stderr
    assert "note:" not in bundled.stdout
