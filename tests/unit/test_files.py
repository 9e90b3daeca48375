import json

import pytest

from vastmarket.files import write_json_atomically


class _ListsTheDirectoryWhileWritten(dict):
    """A document that records the destination directory's files while it is being serialized."""

    def __init__(self, directory, seen, **items):
        super().__init__(**items)
        self._directory = directory
        self._seen = seen

    def items(self):
        self._seen.extend(p.name for p in self._directory.iterdir())
        return super().items()


def test_a_document_is_written_as_compact_json_into_a_directory_it_creates(tmp_path):
    path = tmp_path / "state" / "doc.json"
    write_json_atomically(path, {"a": [1, 2], "b": "x"}, prefix=".doc-")
    assert path.read_text(encoding="utf-8") == '{"a":[1,2],"b":"x"}'
    assert [p.name for p in path.parent.iterdir()] == ["doc.json"], "no temporary files left behind"


def test_the_document_goes_to_a_prefixed_temporary_file_beside_the_destination_and_is_renamed_over_it(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{"old":true}', encoding="utf-8")
    old_inode = path.stat().st_ino
    seen: list[str] = []
    write_json_atomically(path, _ListsTheDirectoryWhileWritten(tmp_path, seen, new=True), prefix=".doc-")
    temporary = [name for name in seen if name != "doc.json"]
    assert len(temporary) == 1 and temporary[0].startswith(".doc-")
    assert "doc.json" in seen, "the old document stays in place while the new one is written"
    assert json.loads(path.read_text(encoding="utf-8")) == {"new": True}
    assert path.stat().st_ino != old_inode, "replaced by a rename, not rewritten in place"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_a_failed_write_leaves_the_old_document_and_no_temporary_file(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{"old":true}', encoding="utf-8")
    with pytest.raises(TypeError):
        write_json_atomically(path, {"fine": 1, "bad": object()}, prefix=".doc-")
    assert path.read_text(encoding="utf-8") == '{"old":true}'
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]
