"""Real face photos for the face tests, fetched once into ``.cache/test-faces`` (not committed).

The ``face_recognition`` 1.3.0 source distribution on the package index ships portraits under
``tests/test_images``: three photos of Barack Obama and one of Joe Biden. ``make test`` runs this
file first; the tests call :func:`face_photos` too, so a bare ``pytest`` fetches them as well.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "test-faces"
SDIST = "face_recognition==1.3.0"
NAMES = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")


def face_photos() -> Path:
    """The folder holding ``NAMES``; downloads the source distribution on first use."""
    if all((CACHE / n).is_file() for n in NAMES):
        return CACHE
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                SDIST,
                "-d",
                tmp,
            ],
            check=True,
        )
        (archive,) = Path(tmp).glob("face_recognition-*.tar.gz")
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if name in NAMES and "/tests/test_images/" in member.name:
                    data = tar.extractfile(member)
                    assert data is not None
                    (CACHE / name).write_bytes(data.read())
    missing = [n for n in NAMES if not (CACHE / n).is_file()]
    if missing:
        raise RuntimeError(f"{SDIST} did not hold {', '.join(missing)}")
    return CACHE


if __name__ == "__main__":
    print(face_photos())
