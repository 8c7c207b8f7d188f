"""End to end with a model that knows something: a tiny CLIP trained here on captioned shapes
("a red circle", …) with the standard contrastive loss, saved as a local checkpoint, used through
``vistudio embed --checkpoint``; text search must then rank the matching pictures first."""

from __future__ import annotations

from pathlib import Path

import pytest

from embed_factories import COLOURS, SHAPES, captioned_folder, train_tiny_clip
from factories import cli


@pytest.mark.slow
def test_a_trained_tiny_clip_finds_the_shapes_a_text_describes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = train_tiny_clip(tmp_path / "tiny-shapes.pt", steps=400, seed=0)
    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    monkeypatch.setenv("VISTUDIO_EMBED__WORKERS", "0")
    ws = tmp_path / "ws"
    cli(capsys, ws, "project", "create", "shapes", "--task", "classification")
    code, out = cli(
        capsys, ws, "import", "shapes", str(captioned_folder(tmp_path / "src", per_pair=5, seed=1))
    )
    assert code == 0 and out["report"]["imported"] == 60

    code, out = cli(capsys, ws, "embed", "shapes", "--checkpoint", str(checkpoint))
    assert code == 0, out
    report = out["report"]
    assert report["embedded"] == 60 and report["failed"] == 0
    model = report["model"]
    assert model["name"] == "tiny-shapes-clip" and model["untrained"] is False
    assert len(model["version"]) == 64 and model["checkpoint"] == str(checkpoint.resolve())

    def top5(text: str) -> list[str]:
        code, out = cli(capsys, ws, "search", "shapes", "--text", text, "--k", "5")
        assert code == 0, out
        assert all(item["why"].startswith("text similarity") and text in item["why"] for item in out["items"])
        return [item["labels"][0] for item in out["items"]]

    assert top5("a red circle") == ["red_circle"] * 5
    hits = {f"{c}_{s}": top5(f"a {c} {s}") for c in COLOURS for s in SHAPES}
    perfect = [pair for pair, labels in hits.items() if labels == [pair] * 5]
    assert len(perfect) >= 10, hits  # of 12 captions
    # every caption at least gets its colour right in the top 5
    assert all(
        all(label.split("_")[0] == pair.split("_")[0] for label in labels) for pair, labels in hits.items()
    )
