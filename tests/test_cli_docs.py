"""Shell completion for nkoctl (bash, zsh, fish), the man pages, and the release: sdist and wheel that install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nkod.ctl import build_parser
from tests.helpers import BIN, REPO, binary, env


def _subcommands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[arg-type]


def _shell_env() -> dict[str, str]:
    """nkoctl found on PATH, as it is for a user whose shell completes it."""
    e = env()
    e["PATH"] = f"{Path(binary('nkoctl')).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


def _run_shell(argv: list[str]) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=_shell_env())
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


BASH_QUERY = """
source <(nkoctl completion bash)
complete -p nkoctl
ask() {{ COMP_LINE="$1"; COMP_POINT=${{#COMP_LINE}}; read -ra COMP_WORDS <<< "$1"
        [[ "$1" == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMPREPLY=()
        _python_argcomplete nkoctl; echo "$2: ${{COMPREPLY[*]}}"; }}
ask "nkoctl " top
ask "nkoctl status --" status
ask "nkoctl completion " shells
"""


def test_bash_completion_offers_subcommands_options_and_shells() -> None:
    """The script loaded in a real bash registers nkoctl and, asked as on <Tab>, answers from the parser."""
    out = _run_shell(["bash", "-c", BASH_QUERY.format()])
    assert "-F _python_argcomplete nkoctl" in out
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert set(_subcommands()) <= set(lines["top"].split())
    assert {"--json", "--watch", "--interval"} <= set(lines["status"].split())
    assert set(lines["shells"].split()) >= {"bash", "zsh", "fish"}


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (.ci/run installs it)")
def test_zsh_completion_offers_the_subcommands() -> None:
    """In a real zsh, the completion function hands every subcommand (with its help) to the menu."""
    script = """
compdef() { : }  # compinit is not loaded in `zsh -f`; registration is not what is tested here
_describe() { print -rl -- "${(@P)2}" }  # the completion system's menu: print what it would offer
eval "$(nkoctl completion zsh)"
words=(nkoctl ""); CURRENT=2; BUFFER="nkoctl "; CURSOR=${#BUFFER}
_python_argcomplete
"""
    out = _run_shell(["zsh", "-f", "-c", script])
    offered = {line.split(":", 1)[0] for line in out.splitlines()}
    assert set(_subcommands()) <= offered
    assert "report:write one self-contained HTML report with plots (needs nkod[report])" in out


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed (.ci/run installs it)")
def test_fish_completion_offers_the_subcommands() -> None:
    """In a real fish, `complete -C` after loading the script lists every subcommand and log's options."""
    out = _run_shell(["fish", "--no-config", "-c", 'nkoctl completion fish | source; complete -C "nkoctl "'])
    assert set(_subcommands()) <= {line.split("\t", 1)[0] for line in out.splitlines()}
    out = _run_shell(["fish", "--no-config", "-c", 'nkoctl completion fish | source; complete -C "nkoctl log --"'])
    assert {"--follow", "--json", "--video"} <= {line.split("\t", 1)[0] for line in out.splitlines()}


def test_completion_for_an_unknown_shell_is_a_usage_error() -> None:
    """`nkoctl completion tcsh` exits 2 naming the shells there are."""
    r = subprocess.run([binary("nkoctl"), "completion", "tcsh"], capture_output=True, text=True, timeout=60, env=env())
    assert r.returncode == 2
    assert "'bash', 'zsh', 'fish'" in r.stderr


# -- release: python -m build, the wheel's man pages, installing it -------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build` of the checkout: the sdist, then the wheel built from that sdist."""
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = (r.stdout + r.stderr).lower()
    assert "warning" not in log.replace("is ignored", ""), log  # a clean build
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("nkod-*.whl")
    return wheel


def test_build_makes_an_sdist_and_a_wheel_with_both_man_pages(dist: Path) -> None:
    """The wheel (built from the sdist) carries nkod.1 and nkoctl.1 under share/man/man1."""
    (sdist,) = dist.glob("nkod-*.tar.gz")
    names = zipfile.ZipFile(_wheel(dist)).namelist()
    for prog in ("nkod", "nkoctl"):
        assert any(n.endswith(f".data/data/share/man/man1/{prog}.1") for n in names), names
    assert sdist.stat().st_size > 0


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed (.ci/run installs groff-base)")
def test_man_pages_render_and_follow_the_parsers(dist: Path, tmp_path: Path) -> None:
    """groff renders both pages without a warning; nkoctl(1) names every subcommand, nkod(1) every option."""
    with zipfile.ZipFile(_wheel(dist)) as z:
        for name in z.namelist():
            if "/share/man/man1/" in name:
                (tmp_path / Path(name).name).write_bytes(z.read(name))
    rendered = {}
    for prog in ("nkod", "nkoctl"):
        r = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", str(tmp_path / f"{prog}.1")],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
        assert r.returncode == 0 and r.stderr == "", r.stderr
        # groff's hyphens and minus signs as "-", and its bold/underline overstrikes ("n\bn") undone
        plain = re.sub(".\b", "", r.stdout)
        rendered[prog] = plain.replace("\u2010", "-").replace("\u2212", "-")
    assert "nkoctl - see where nkod stands and steer it" in rendered["nkoctl"]
    for sub in _subcommands():
        assert f"nkoctl {sub}" in rendered["nkoctl"], sub
    for option in ("--data-dir", "--config", "--workers", "--once", "--processor", "--print-config", "--version"):
        assert option in rendered["nkod"], option


@pytest.mark.slow
def test_the_built_wheel_installs_into_a_fresh_venv_and_runs(dist: Path, tmp_path: Path) -> None:
    """pip installs the wheel into a new venv: nkod --version, nkoctl --help and the man pages are there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    r = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(_wheel(dist))], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    version = subprocess.run([str(venv / "bin" / "nkod"), "--version"], capture_output=True, text=True, env=clean)
    assert version.returncode == 0 and version.stdout.strip() == "nkod 0.1.0"
    help_ = subprocess.run([str(venv / "bin" / "nkoctl"), "--help"], capture_output=True, text=True, env=clean)
    assert help_.returncode == 0 and "report" in help_.stdout
    assert (venv / "share" / "man" / "man1" / "nkoctl.1").is_file()
    assert (venv / "share" / "man" / "man1" / "nkod.1").is_file()
    assert venv.resolve() != BIN.parent.resolve()
