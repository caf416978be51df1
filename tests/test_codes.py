"""The refusal codes the Lua scripts document, return, and Python maps agree."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from redpromise.store.scripts import CODES, SCRIPT_NAMES, _source

_HEADER = re.compile(r"\A--\[\[(.*?)\]\]", re.DOTALL)
_DOCUMENTED = re.compile(r"^\s*\{\s*(-?\d+)\b", re.MULTILINE)
_RETURNED = re.compile(r"\breturn\s*\{\s*(-?\d+)\b")


def _script(name: str) -> tuple[str, str]:
    """(header, body) of ``lua/<name>.lua``."""
    text = (resources.files("redpromise.store") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    match = _HEADER.match(text)
    assert match, f"{name}.lua must open with a --[[ … ]] header"
    return match.group(1), text[match.end() :]


def documented(name: str) -> set[int]:
    return {int(c) for c in _DOCUMENTED.findall(_script(name)[0])}


# includes/fenced_read.lua's checks that a nil argument turns off: (group) -5, (version) -3.
_FENCED_READ = (resources.files("redpromise.store") / "lua" / "includes" / "fenced_read.lua")
_FENCED_READ_CALL = re.compile(r"\bfenced_read\(\s*[^,]+,\s*([^,]+),\s*([^,)]+)")


def returned(name: str) -> set[int]:
    """The codes the script returns, its includes' returns counted (acquire.lua and
    take.lua answer with includes/acquire_entry.lua's replies); fenced_read's only as
    the script calls it (no -5 without a group, no -3 without a version)."""
    body = _HEADER.sub("", _source(name), count=1)
    fenced = _FENCED_READ.read_text(encoding="utf-8")
    codes = {int(c) for c in _RETURNED.findall(body.replace(fenced, ""))}
    for group, version in _FENCED_READ_CALL.findall(body.replace(fenced, "")):
        off = {-5} if group.strip() == "nil" else set()
        off |= {-3} if version.strip() == "nil" else set()
        codes |= {int(c) for c in _RETURNED.findall(fenced)} - off
    return codes


def test_every_lua_file_is_a_loaded_script() -> None:
    files = {
        p.name.removesuffix(".lua")
        for p in (resources.files("redpromise.store") / "lua").iterdir()
        if p.name.endswith(".lua")
    }
    assert files == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_script_header_documents_exactly_the_codes_it_returns(name: str) -> None:
    assert documented(name), f"{name}.lua documents no return codes"
    assert returned(name) == documented(name)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_negative_code_of_a_script_is_in_the_table(name: str) -> None:
    negative = {c for c in documented(name) if c < 0}
    assert negative <= CODES.keys(), f"{name}.lua returns unmapped {negative - CODES.keys()}"


def test_every_code_in_the_table_is_returned_by_some_script() -> None:
    used = set().union(*(returned(n) for n in SCRIPT_NAMES))
    assert set(CODES) <= used, f"CODES maps codes no script returns: {set(CODES) - used}"


def test_code_names_are_unique() -> None:
    assert len(set(CODES.values())) == len(CODES)
