"""CLI tables at 80 columns: what identifies a row (a file name, a run id) is never cut; --wide puts
each row on one line; project show and project list are tables; an unknown task names the valid ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from factories import channel_model, draw_image
from vistudio.cli import output
from vistudio.cli.main import main
from vistudio.cli.output import common_folder
from vistudio.ml.tasks import task_names


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render as on an 80-column terminal (the console is built once, at import)."""
    monkeypatch.setattr(output.console, "_width", 80)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def widest_line(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def column_text(table_text: str, index: int) -> str:
    """The text of one column of a rendered table, its lines joined (undoes folding)."""
    cells = [line.split("│")[index + 1].strip() for line in table_text.splitlines() if line.startswith("│")]
    return "".join(cells)


def test_common_folder_hoists_the_shared_folder_and_keeps_what_differs() -> None:
    paths = ["/tmp/a/b/images/circle_0001.png", "/tmp/a/b/images/sub/square_0002.png"]
    assert common_folder(paths) == ("/tmp/a/b/images", ["circle_0001.png", "sub/square_0002.png"])
    assert common_folder(["/x/one.png"]) == ("/x", ["one.png"])
    # nothing worth hoisting: only the root in common, relative paths apart, mixed, empty
    assert common_folder(["/a/x.png", "/b/y.png"]) == ("", ["/a/x.png", "/b/y.png"])
    assert common_folder(["x.png", "d/y.png"]) == ("", ["x.png", "d/y.png"])
    assert common_folder(["/a/x.png", "a/y.png"]) == ("", ["/a/x.png", "a/y.png"])
    assert common_folder([]) == ("", [])


def tiny_classifier(path: Path) -> Path:
    """An ONNX classifier with vistudio metadata: logits = mean of each channel (red, green, blue)."""
    from vistudio.ml.inference.onnx import metadata_props
    from vistudio.ml.preprocess import preprocess_meta

    props = metadata_props(
        model="toy",
        classes=["red", "green", "blue"],
        preprocess=preprocess_meta(8, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
    )
    return channel_model(path, props)


def test_predict_shows_every_file_name_in_full_at_80_columns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, narrow: None
) -> None:
    # a deep folder, as pytest's or a user's, and long file names that differ only at their end
    folder = tmp_path / "a-rather-long-folder-name" / "holding" / "the-images-to-classify"
    names = [f"circle-with-a-long-descriptive-name-{i:04d}.png" for i in range(3)]
    for name, rgb in zip(names, ((250, 10, 10), (5, 240, 30), (0, 0, 255)), strict=True):
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 12), rgb).save(folder / name)
    model = tiny_classifier(tmp_path / "colours.onnx")
    code, out, _ = run_cli(capsys, "predict", str(model), str(folder))
    assert code == 0, out
    assert widest_line(out) <= 80
    assert "…" not in out
    assert str(folder) in out.replace("\n", "")  # the shared folder, once, above the table
    for name in names:  # each row shows its whole file name, on one line
        assert name in out
    assert out.replace("\n", "").count(str(folder)) == 1


def make_runs(tmp_path: Path, ws: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    images = tmp_path / "in"
    for i in range(2):
        draw_image(images / f"im{i}.png", seed=i, size=(24, 16))
    (images / "broken.png").write_text("not an image")  # a partial run: its row says more
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text(
        "name: shapes-to-greyscale-thumbnails\nstages:\n  - name: load\n"
        "  - name: small\n    uses: resize\n    params: {max_side: 8}\n"
    )
    ids = []
    for tag in ("v1.0-release-candidate", "v1.1"):
        code = main(
            ["--workspace", str(ws), "--json", "run", str(yaml_file), "--input", str(images), "--tag", tag]
        )
        out = capsys.readouterr().out
        assert code == 0, out
        ids.append(json.loads(out)["run"]["id"])
    return ids


def test_runs_list_shows_every_run_id_on_one_line_at_80_columns_and_wide_adds_all(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, narrow: None
) -> None:
    ws = tmp_path / "ws"
    ids = make_runs(tmp_path, ws, capsys)
    code, out, _ = run_cli(capsys, "--workspace", str(ws), "runs", "list")
    assert code == 0
    assert widest_line(out) <= 80 and "…" not in out
    for run_id in ids:
        assert run_id in out  # whole, on one line: `runs show ID` can be copied from it
    # the pipeline name folds onto more lines, every character of it there
    assert column_text(out, 1).count("shapes-to-greyscale-thumbnails") == 2

    code, wide, _ = run_cli(capsys, "--workspace", str(ws), "--wide", "runs", "list")
    assert code == 0
    assert widest_line(wide) > 80
    rows = [line for line in wide.splitlines() if any(run_id in line for run_id in ids)]
    assert len(rows) == 2  # one line per run, everything on it
    assert all("shapes-to-greyscale-thumbnails" in row and "partial" in row for row in rows)
    # --wide is for the table only: the console is back at its own width afterwards
    assert output.console.width == 80


def test_project_list_and_show_are_tables(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, narrow: None
) -> None:
    ws = str(tmp_path / "ws")
    code, out, _ = run_cli(capsys, "--workspace", ws, "project", "list")
    assert code == 0 and "no projects yet" in out
    long_name = "insects from the summer field trip 2024 - second batch"
    assert run_cli(capsys, "--workspace", ws, "project", "create", long_name)[0] == 0

    code, out, _ = run_cli(capsys, "--workspace", ws, "project", "list")
    assert code == 0 and "┃ name" in out and "…" not in out
    assert long_name.split()[0] in out and "classification" in out

    code, out, _ = run_cli(capsys, "--workspace", ws, "project", "show", long_name)
    assert code == 0
    assert not out.lstrip().startswith("{")  # a table, not JSON
    assert "┃ field" in out and "…" not in out
    for field in ("task", "samples", "classes", "splits", "created"):
        assert f"│ {field} " in out
    assert "classification" in out and "none" in out  # no classes yet, said so

    code, out, _ = run_cli(capsys, "--workspace", ws, "--json", "project", "show", long_name)
    assert code == 0 and json.loads(out)["project"]["name"] == long_name


def test_an_unknown_task_lists_the_valid_ones(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(
        capsys, "--workspace", str(tmp_path / "ws"), "project", "create", "p", "--task", "foo"
    )
    assert code == 1
    message = " ".join(err.split())  # Rich wraps the message at the terminal width
    assert "unknown task 'foo'" in message
    for task in task_names():
        assert task in message

    code, out, _ = run_cli(
        capsys, "--workspace", str(tmp_path / "ws"), "--json", "project", "create", "p", "--task", "foo"
    )
    error = json.loads(out)["error"]
    assert code == 1 and "classification" in error["message"] and error["details"]["tasks"] == task_names()
