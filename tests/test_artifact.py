"""``Artifact.open``: each kind, and every input it refuses, with the line the user sees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from uploader.artifact import KINDS, TAKEN, Artifact, UnsupportedInput, for_stapling, kind_named
from uploader.errors import SourceChangedError
from uploader.source_file import FileIdentity, SourceRejected
from uploader.staple.files import StapleInputError


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    root = tmp_path / "builds"
    root.mkdir()
    (root / "Game.app" / "Contents").mkdir(parents=True)
    for name in ("Game.zip", "Game.pkg", "Game.dmg"):
        (root / name).write_bytes(b"archive " + name.encode())
    return root


@pytest.mark.parametrize("name, kind", [("Game.app", "app"), ("Game.zip", "zip"),
                                        ("Game.pkg", "pkg"), ("Game.dmg", "dmg")])
def test_each_kind_opens_with_its_row(inputs: Path, name: str, kind: str) -> None:
    for roots in (None, [inputs]):
        opened = Artifact.open(inputs / name, roots)
        assert opened.kind.name == kind and opened.kind is kind_named(inputs / name)
        assert opened.path == inputs / name and opened.path.is_absolute()
        st = os.stat(inputs / name)
        assert (opened.identity.inode, opened.identity.size) == (st.st_ino, st.st_size)
        assert opened.kind.folder == opened.kind.zipped == (kind == "app")


def test_the_suffix_is_read_without_regard_to_case(inputs: Path) -> None:
    os.rename(inputs / "Game.app", inputs / "Game.APP")
    os.rename(inputs / "Game.pkg", inputs / "Game.PKG")
    assert Artifact.open(inputs / "Game.APP").kind.name == "app"
    assert Artifact.open(inputs / "Game.PKG").kind.name == "pkg"


def test_a_relative_path_becomes_absolute(inputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(inputs)
    assert Artifact.open(Path("Game.zip")).path == inputs / "Game.zip"


def test_the_table_is_what_the_messages_offer() -> None:
    assert TAKEN == "a .app bundle (notaryd zips it), or a .zip, .pkg or .dmg archive"
    assert [kind.name for kind in KINDS] == ["app", "zip", "pkg", "dmg"]
    for kind in KINDS:
        assert kind.suffix in TAKEN
        assert kind.stapled == (kind.ticket_key is not None) == (kind.read_ticket is not None)
        assert kind.stapled or kind.unstapleable


@pytest.mark.parametrize("name, words", [
    ("Game.tar.gz", r"^Game.tar.gz: the notary service does not take this format; it takes "
                    r"\.zip, \.pkg and \.dmg \(and notaryd zips a \.app bundle itself\)"),
    ("tool", r"^tool: the notary service does not take this format"),
    ("Fake.app", r"^Fake.app: the notary service does not take this format"),  # a file, not a folder
])
def test_an_unknown_suffix_is_refused_naming_what_is_taken(inputs: Path, name: str, words: str) -> None:
    (inputs / name).write_bytes(b"x")
    with pytest.raises(UnsupportedInput, match=words):
        Artifact.open(inputs / name)


def test_a_folder_that_is_not_a_bundle_and_a_missing_path(inputs: Path) -> None:
    (inputs / "Build").mkdir()
    with pytest.raises(UnsupportedInput, match=r"Build is a folder, not a \.app bundle; give a \.app"):
        Artifact.open(inputs / "Build")
    with pytest.raises(UnsupportedInput, match=r"Gone.zip: no such file or folder; give ") as gone:
        Artifact.open(inputs / "Gone.zip")
    assert gone.value.missing
    with pytest.raises(UnsupportedInput, match="the path contains a NUL byte"):
        Artifact.open(f"{inputs}/Game\0.zip")


@pytest.mark.parametrize("roots", [None, "confined"])
def test_a_fifo_is_named_and_never_waited_on(inputs: Path, roots: str | None) -> None:
    os.mkfifo(inputs / "Piped.zip")  # no writer: a blocking open would hang
    with pytest.raises(UnsupportedInput, match=r"Piped.zip: not a regular file \(a FIFO\); give "):
        Artifact.open(inputs / "Piped.zip", [inputs] if roots else None)


def test_a_symlink_is_followed_for_the_cli_and_refused_in_the_roots(inputs: Path, tmp_path: Path) -> None:
    (inputs / "Linked.zip").symlink_to(inputs / "Game.zip")
    (inputs / "Linked.app").symlink_to(inputs / "Game.app")
    assert Artifact.open(inputs / "Linked.zip").identity.size == (inputs / "Game.zip").stat().st_size
    assert Artifact.open(inputs / "Linked.app").kind.name == "app"
    with pytest.raises(SourceRejected, match=r"Linked\.zip: is a symbolic link"):
        Artifact.open(inputs / "Linked.zip", [inputs])
    with pytest.raises(SourceRejected, match=r"Linked\.app: is a symbolic link"):
        Artifact.open(inputs / "Linked.app", [inputs])


def test_outside_the_roots_is_refused(inputs: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("Game.zip", "Game.app"):
        with pytest.raises(SourceRejected, match="outside the allowed roots") as refused:
            Artifact.open(inputs / name, [elsewhere])
        assert refused.value.outside_roots


def test_in_the_roots_a_second_name_and_a_changed_file_are_refused(inputs: Path) -> None:
    os.link(inputs / "Game.pkg", inputs / "Other.pkg")
    with pytest.raises(SourceRejected, match="has 2 hard links"):
        Artifact.open(inputs / "Game.pkg", [inputs])
    opened = Artifact.open(inputs / "Game.zip", [inputs])
    (inputs / "Game.zip").write_bytes(b"rebuilt, longer than before")
    with pytest.raises(SourceChangedError, match="size"):
        Artifact.open(inputs / "Game.zip", [inputs], expected=opened.identity)
    assert isinstance(opened.identity, FileIdentity)


def test_what_cannot_be_stapled_says_why(inputs: Path) -> None:
    with pytest.raises(StapleInputError, match=r"Racer.zip: a zip cannot be stapled; staple the "
                                               r"\.app it was made from \(notaryd staple Racer.app\)"):
        for_stapling(inputs / "Racer.zip")  # said before looking: it need not exist
    with pytest.raises(StapleInputError, match=r"Game.zip: a zip cannot be stapled"):
        for_stapling(Artifact.open(inputs / "Game.zip"))
    (inputs / "tool").write_bytes(b"\0")
    with pytest.raises(StapleInputError, match=r"only a \.app bundle, a flat \.pkg or a \.dmg can be"):
        for_stapling(inputs / "tool")
    with pytest.raises(StapleInputError, match=r"Gone.dmg: no such file or folder"):
        for_stapling(inputs / "Gone.dmg")
    assert for_stapling(inputs / "Game.dmg").kind.name == "dmg"
