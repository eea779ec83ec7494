"""The test suite is the user's too: it passes on a machine where the user has registered
and submitted methods, and never reads or writes their wsssbed folder (`conftest.py`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import USER_HOMES, snapshot

from wsssbed.catalogue.lookup import CATALOGUE, all_manifests, user_registry
from wsssbed.catalogue.manifest import ChangelogEntry, Content, Manifest, Source
from wsssbed.embedded.sample import SAMPLE_VERSION, ensure_sample
from wsssbed.io.home import home

ROOT = Path(__file__).resolve().parents[1]
COUNTING = [  # tests that count or list the catalogue
    "tests/test_download.py::test_catalogue_names_only_the_upstream_release_addresses",
    "tests/test_manifests.py::test_catalogue_validates_and_holds_the_wsssbed_release",
    "tests/test_manifests.py::test_manifest_listing",
]


def _pytest(arguments: list[str], user: Path, basetemp: Path) -> subprocess.CompletedProcess:
    """A separate pytest session as a user whose home folder is `user`."""
    env = {k: v for k, v in os.environ.items() if k != "WSSSBED_HOME"}
    env.update(HOME=str(user), PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--basetemp={basetemp}", *arguments]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _populated_home(user: Path, maps: Path) -> Path:
    """`user/.wsssbed` as after `wsssbed submit` and `wsssbed fetch --path`: the user's own
    manifests (one shadowing a catalogue entry) and the sample they rendered."""
    registry = user / ".wsssbed/manifests/voc2012/activation"
    registry.mkdir(parents=True)
    pinned = Content("npz", "sha256:" + "1" * 64, 48, "submission")
    changelog = [ChangelogEntry("1.0.0", "2026-11-29", "submitted")]
    mine = Manifest("my-cams", "1.0.0", "activation", "voc2012", "train",
                    source=Source(path=str(maps)), content=pinned, changelog=changelog)  # fmt: skip
    copy = Manifest("voc2012-cam", "1.1.0", "activation", "voc2012", "train_aug",
                    source=Source(url="https://example.org/x.zip", path=str(maps)),
                    content=Content("png-per-class", "sha256:" + "2" * 64, 90, "local-copy"),
                    changelog=[ChangelogEntry("1.1.0", "2026-11-29", "registered")])  # fmt: skip
    for manifest in (mine, copy):
        (registry / f"{manifest.name}.toml").write_text(manifest.to_toml())
    ensure_sample(user / f".wsssbed/sample-{SAMPLE_VERSION}")
    return user / ".wsssbed"


def test_the_catalogue_tests_pass_for_a_user_with_a_registry(tmp_path, sample_root):
    user = tmp_path / "user"
    registry = _populated_home(user, sample_root / "activation/sample-cam/npz")
    before = snapshot(registry)
    result = _pytest(COUNTING, user, tmp_path / "basetemp")
    assert result.returncode == 0, result.stdout[-4000:]
    assert f"{len(COUNTING)} passed" in result.stdout
    assert snapshot(registry) == before


def test_a_test_that_writes_to_the_users_folder_fails_the_session(tmp_path):
    user = tmp_path / "user"
    registry = _populated_home(user, tmp_path)
    leak = tmp_path / "test_leak.py"
    leak.write_text(
        "import conftest\n\n\n"
        "def test_leaks():\n"
        "    (conftest.USER_HOMES[0] / 'manifests' / 'leaked.toml').write_text('')\n"
    )
    result = _pytest(["-p", "conftest", str(leak)], user, tmp_path / "basetemp")
    assert result.returncode != 0
    assert f"the test suite changed the user's {registry}" in result.stdout


def test_each_test_has_its_own_home_with_the_session_sample(wsssbed_home, sample_root):
    assert home() == wsssbed_home and user_registry() == wsssbed_home / "manifests"
    assert Path.home() not in (wsssbed_home, *wsssbed_home.parents)
    assert all(not folder.is_relative_to(Path.home()) for folder in USER_HOMES)
    assert ensure_sample() == wsssbed_home / f"sample-{SAMPLE_VERSION}"
    assert ensure_sample().resolve() == sample_root.resolve()  # linked, not rendered again
    assert all(m.path.is_relative_to(CATALOGUE) for m in all_manifests().values())
