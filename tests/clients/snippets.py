"""The client code printed in the two API references, found at test time by its distinctive first
and last lines in the reference files themselves: a test runs what the reference says today."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The references live beside the repository (`../shared/spec/`). A machine without them (a bare
# clone) reads the verbatim copies kept here, which test_reference_copies keeps identical.
SHARED = ROOT.parent / "shared" / "spec"
COPIES = Path(__file__).resolve().parent / "reference"
SPEC_DIR = Path(os.environ.get("WAGATE_SPEC_DIR") or (SHARED if SHARED.is_dir() else COPIES))
LOGINWA = "loginwa-api.txt"
SPWP = "spwp-api.txt"

# The only change a snippet gets: the reference's hosts become the stack under test.
HOSTS = {LOGINWA: ("https://api.loginwa.com", ""), SPWP: ("https://api.spwp.app/api/v1", "/api/v1")}


def reference(name: str) -> str:
    path = SPEC_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"the {name} reference is not at {path}; set WAGATE_SPEC_DIR to its folder")
    return path.read_text(encoding="utf-8")


def localize(name: str, snippet: str, api: str) -> str:
    """`snippet` aimed at the stack whose base URL is `api` instead of the reference's host."""
    host, path = HOSTS[name]
    assert host in snippet, f"the snippet does not name {host}:\n{snippet}"
    return snippet.replace(host, api + path)


def block(name: str, first: str, last: str) -> str:
    """The lines from the one reading exactly `first` to the next reading exactly `last`. When
    `first` is not unique (two PHP snippets open with the same line), `last` must be, and the
    block is the nearest `first` above it."""
    lines = reference(name).splitlines()
    firsts = [i for i, line in enumerate(lines) if line.rstrip() == first]
    lasts = [i for i, line in enumerate(lines) if line.rstrip() == last]
    if len(firsts) == 1:
        end = next((i for i in lasts if i > firsts[0]), None)
        assert end is not None, f"{last!r} never follows {first!r} in {name}"
        return "\n".join(lines[firsts[0] : end + 1]) + "\n"
    assert len(lasts) == 1, f"{first!r} occurs {len(firsts)} times and {last!r} {len(lasts)} times in {name}"
    start = max((i for i in firsts if i < lasts[0]), default=None)
    assert start is not None, f"{first!r} never precedes {last!r} in {name}"
    return "\n".join(lines[start : lasts[0] + 1]) + "\n"


def curl_commands(name: str) -> list[str]:
    """Every `curl` command of the reference, each with its continuation lines: those after a
    trailing backslash, and a `-d '{` body running over several lines up to its closing `'`."""
    lines = reference(name).splitlines()
    commands, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("curl "):
            i += 1
            continue
        j, body_open = i, False
        while True:
            line = lines[j].rstrip()
            if body_open:
                body_open = not line.endswith("'")
            else:
                body_open = line.endswith("'{")
            if (not body_open and not line.endswith("\\")) or j + 1 == len(lines):
                break
            j += 1
        commands.append("\n".join(lines[i : j + 1]) + "\n")
        i = j + 1
    return commands


def curl(name: str, *needles: str) -> str:
    """The one curl command of the reference that contains every needle."""
    found = [c for c in curl_commands(name) if all(n in c for n in needles)]
    assert len(found) == 1, f"{len(found)} curl commands of {name} contain {needles}: {found}"
    return found[0]
