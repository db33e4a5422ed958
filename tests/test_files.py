"""User files that are missing, unreadable or malformed end in one line naming the file."""

from __future__ import annotations

import pytest

from latkit.errors import LatkitError
from latkit.files import read_json, read_yaml


def test_missing_file(tmp_path):
    with pytest.raises(LatkitError, match=r"nope\.yaml: space file not found"):
        read_yaml(tmp_path / "nope.yaml", "space file")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(LatkitError, match="cannot read the architecture"):
        read_json(tmp_path, "architecture")


def test_syntax_errors_name_the_line(tmp_path):
    bad_yaml = tmp_path / "a.yaml"
    bad_yaml.write_text("ok: 1\nbad: [\n")
    with pytest.raises(LatkitError, match=r"a\.yaml: bad YAML at line 3"):
        read_yaml(bad_yaml, "LUT")
    bad_json = tmp_path / "a.json"
    bad_json.write_text('{\n  "x": 1,\n}')
    with pytest.raises(LatkitError, match=r"a\.json: not a JSON predictor \(.*line 3\)"):
        read_json(bad_json, "predictor")
