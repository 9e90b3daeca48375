"""Files the domain publishes for other processes to read.

:func:`write_json_atomically` writes a JSON document to a temporary file beside its destination
and renames it over the destination, so that a reader sees either the old document or the new
one, never a half-written file; on any failure the temporary file is removed and the
destination is left as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, document: Any, *, prefix: str) -> None:
    """Write ``document`` as compact JSON to ``path``, replacing it atomically.

    The temporary file is created in ``path``'s directory (created if missing) and named
    ``prefix`` + a random part, so that the rename never crosses a file system.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
