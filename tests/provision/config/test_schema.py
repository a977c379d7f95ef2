from __future__ import annotations

import pytest

from provision.config import (
    ConfigError,
    Enum,
    Field,
    FilePath,
    Int,
    List,
    Obj,
    Size,
    Str,
    load_file,
    load_text,
)

SPEC = Obj(
    {
        "name": Field(Str(), required=True),
        "size": Field(Size(), default=0),
        "count": Field(Int(1, 10), default=1),
        "mode": Field(Enum("uefi", "bios"), default="uefi"),
        "items": Field(List(Obj({"label": Field(Str(), required=True)}, name="item")), default_factory=list),
    },
    name="spec",
)


def test_valid_document_comes_back_as_values_with_marks():
    data = load_text("name: leaf\nsize: 128M\ncount: 3\nitems:\n  - label: A\n", SPEC, "x.yml")
    assert data == {
        "name": "leaf",
        "size": 128 * 1024**2,
        "count": 3,
        "mode": "uefi",
        "items": [{"label": "A"}],
    }
    assert data.mark_of("count").line == 3


def test_unknown_key_is_an_error_with_line_and_suggestion():
    with pytest.raises(ConfigError) as exc:
        load_text("name: leaf\ncuont: 3\n", SPEC, "switch.yml")
    assert exc.value.mark.line == 2 and exc.value.mark.column == 1
    assert "unknown key 'cuont'" in str(exc.value)
    assert "did you mean 'count'" in str(exc.value)
    assert str(exc.value).startswith("switch.yml:2:1:")


def test_nested_error_points_at_nested_line():
    with pytest.raises(ConfigError) as exc:
        load_text("name: leaf\nitems:\n  - label: A\n  - lable: B\n", SPEC, "s.yml")
    assert exc.value.mark.line == 4
    assert "did you mean 'label'" in str(exc.value)


def test_missing_required_key_names_the_fix():
    with pytest.raises(ConfigError) as exc:
        load_text("count: 2\n", SPEC, "s.yml")
    assert "missing required key 'name'" in exc.value.message
    assert "name:" in exc.value.fix


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("name: x\ncount: 11\n", 2, "out of range"),
        ("name: x\ncount: many\n", 2, "not a whole number"),
        ("name: x\nmode: uefl\n", 2, "did you mean 'uefi'"),
        ("name: x\nsize: lots\n", 2, "not a size"),
        ("name: x\nitems: {a: 1}\n", 2, "expected a list"),
        ("name: [x\n", 2, "YAML syntax error"),
        ("name: x\nname: y\n", 2, "appears twice"),
    ],
)
def test_bad_values_name_their_line(text, line, needle):
    with pytest.raises(ConfigError) as exc:
        load_text(text, SPEC, "s.yml")
    assert exc.value.mark.line == line
    assert needle in str(exc.value)


def test_relative_paths_resolve_against_the_naming_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "kernel").write_bytes(b"k")
    (tmp_path / "sub" / "spec.yml").write_text("kernel: kernel\n")
    data = load_file(tmp_path / "sub" / "spec.yml", Obj({"kernel": Field(FilePath(), required=True)}))
    assert data["kernel"] == tmp_path / "sub" / "kernel"


def test_missing_path_is_an_error_naming_where_it_looked(tmp_path):
    (tmp_path / "spec.yml").write_text("kernel: nope\n")
    with pytest.raises(ConfigError) as exc:
        load_file(tmp_path / "spec.yml", Obj({"kernel": Field(FilePath(), required=True)}))
    assert exc.value.mark.line == 1 and str(tmp_path / "nope") in str(exc.value)
