"""pxe.files: confinement of requested paths under a root, against a real directory tree."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxe.files import PathRefused, Refusal, normalise, resolve


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "boot" / "grub").mkdir(parents=True)
    (r / "boot" / "grub" / "grub.cfg").write_text("set timeout=1\n")
    (r / "ipxe.efi").write_bytes(b"MZ" + b"\0" * 100)
    (tmp_path / "secret").write_text("outside\n")
    os.symlink(tmp_path / "secret", r / "leak")  # points out of the root
    os.symlink("boot/grub/grub.cfg", r / "inside-link")  # stays inside
    os.symlink(tmp_path, r / "dirlink")  # a directory link out of the root
    return r


def refused(root, name) -> Refusal:
    with pytest.raises(PathRefused) as info:
        resolve(root, name)
    return info.value.reason


def test_plain_nested_and_leading_slash(root):
    assert resolve(root, "ipxe.efi").size == 102
    assert resolve(root, "boot/grub/grub.cfg").relative == "boot/grub/grub.cfg"
    # A leading slash is "from the root", the way tftpd-hpa -s and HTTP read it.
    assert resolve(root, "/boot/grub/grub.cfg").path == (root / "boot/grub/grub.cfg").resolve()
    assert resolve(root, "boot//./grub/grub.cfg").relative == "boot/grub/grub.cfg"


def test_backslashes_are_separators(root):
    assert resolve(root, "boot\\grub\\grub.cfg").relative == "boot/grub/grub.cfg"
    assert refused(root, "..\\..\\etc\\passwd") is Refusal.OUTSIDE_ROOT


def test_escapes_refused(root):
    assert refused(root, "../secret") is Refusal.OUTSIDE_ROOT
    assert refused(root, "boot/../../secret") is Refusal.OUTSIDE_ROOT
    assert refused(root, "leak") is Refusal.OUTSIDE_ROOT
    assert refused(root, "dirlink/secret") is Refusal.OUTSIDE_ROOT
    assert refused(root, "a\x00b") is Refusal.BAD_NAME
    assert refused(root, "x" * 5000) is Refusal.BAD_NAME
    assert refused(root, "") is Refusal.BAD_NAME


def test_absolute_path_stays_in_root(root):
    # /etc/passwd exists on the host; under the root it does not.
    assert refused(root, "/etc/passwd") is Refusal.NOT_FOUND


def test_symlink_inside_root_is_followed(root):
    assert resolve(root, "inside-link").path == (root / "boot/grub/grub.cfg").resolve()


def test_directories_and_missing(root):
    assert refused(root, "boot") is Refusal.NOT_A_FILE
    assert refused(root, "/") is Refusal.NOT_A_FILE
    assert refused(root, "nope") is Refusal.NOT_FOUND
    assert refused(root, "ipxe.efi/x") is Refusal.NOT_FOUND


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_name_is_resolved_inside_or_refused(tmp_path_factory, name):
    root = tmp_path_factory.getbasetemp() / "fuzzroot"
    root.mkdir(exist_ok=True)
    (root / "f").write_text("x")
    try:
        found = resolve(root, name)
    except PathRefused:
        return
    assert str(found.path).startswith(str(root.resolve()) + "/")
    assert ".." not in normalise(name).split("/")
