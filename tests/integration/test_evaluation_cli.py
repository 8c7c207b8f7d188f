"""CLI contracts of evaluate, evaluation show/results/reset, export and exports (--json)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eval_factories import digits_project, make_experiment, workspace_settings
from vistudio.cli.main import main
from vistudio.studio import open_studio


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("eval-cli")
    studio = open_studio(workspace_settings(root))
    digits_project(studio, root)
    make_experiment(studio, project="digits", name="small", model="mobilenet_v3_small", seed=2)
    make_experiment(studio, project="digits", name="busy", model="mobilenet_v3_small", status="queued")
    studio.close()
    return studio.home


@pytest.fixture
def cli(ws: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*args: str) -> tuple[int, dict[str, Any]]:
        code = main(["--workspace", str(ws), "--json", *args])
        lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
        assert len(lines) == 1, lines  # exactly one JSON document
        return code, json.loads(lines[0])

    return run


def test_evaluate_results_and_reset(cli: Any, ws: Path) -> None:
    code, out = cli(
        "evaluate",
        "digits",
        "small",
        "--subsets",
        "test,val",
        "--checkpoint",
        "last",
        "--batch-size",
        "4",
        "--device",
        "cpu",
    )
    assert code == 0, out
    ev = out["evaluation"]
    assert {"metrics", "confusion_matrix", "classes", "results_path"} <= set(ev)
    assert {"accuracy", "macro_f1", "macro_precision", "macro_recall", "micro_f1", "per_class"} <= set(
        ev["metrics"]
    )
    assert (
        ev["checkpoint"] == "last" and ev["subsets"] == ["val", "test"] and ev["classes"] == ["0", "1", "2"]
    )
    assert sum(map(sum, ev["confusion_matrix"])) == ev["metrics"]["samples"] == 24
    assert Path(ev["results_path"]).is_absolute() and Path(ev["results_path"]).is_file()
    assert Path(ev["confusion_png_path"]).is_file() and ev["job"]["status"] == "succeeded"

    code, shown = cli("evaluation", "show", "digits", "small")
    assert code == 0 and shown["evaluation"]["metrics"] == ev["metrics"]

    code, res = cli("evaluation", "results", "digits", "small", "--limit", "500")
    assert code == 0 and res["total"] == 24 and len(res["items"]) == 24
    code, wrong = cli("evaluation", "results", "digits", "small", "--wrong", "--limit", "500")
    assert wrong["total"] == 24 - ev["metrics"]["correct"] and all(not r["correct"] for r in wrong["items"])
    code, cell = cli("evaluation", "results", "digits", "small", "--true", "0", "--pred", "2")
    assert cell["total"] == ev["confusion_matrix"][0][2]
    code, page = cli(
        "evaluation", "results", "digits", "small", "--sort", "confidence", "--offset", "2", "--limit", "3"
    )
    code, everything = cli(
        "evaluation", "results", "digits", "small", "--sort", "confidence", "--limit", "500"
    )
    assert [r["sample_id"] for r in page["items"]] == [r["sample_id"] for r in everything["items"][2:5]]
    confs = [r["confidence"] for r in everything["items"]]
    assert confs == sorted(confs)
    code, sub = cli("evaluation", "results", "digits", "small", "--subset", "val")
    assert sub["total"] == 12

    code, err = cli("evaluation", "results", "digits", "small", "--true", "nine")
    assert code == 1 and err["error"]["code"] == "invalid_input"
    code, err = cli("evaluation", "results", "digits", "small", "--limit", "100000")
    assert code == 2 and err["error"]["code"] == "usage"

    code, gone = cli("evaluation", "reset", "digits", "small")
    assert code == 0 and gone == {"reset": True, "project": "digits", "experiment": "small"}
    assert not Path(ev["results_path"]).exists()
    code, err = cli("evaluation", "show", "digits", "small")
    assert code == 1 and err["error"]["code"] == "not_found"


def test_no_wait_and_errors(cli: Any) -> None:
    code, out = cli("evaluate", "digits", "small", "--no-wait")
    assert code == 0 and out["job"]["status"] == "queued" and out["evaluation"]["status"] == "queued"
    code, err = cli("evaluate", "digits", "small")
    assert (
        code == 1 and err["error"]["code"] == "conflict" and "being evaluated now" in err["error"]["message"]
    )
    cli("evaluation", "reset", "digits", "small")
    code, err = cli("evaluate", "digits", "busy")
    assert code == 1 and err["error"]["code"] == "conflict" and "queued" in err["error"]["message"]
    code, err = cli("evaluate", "digits", "ghost")
    assert code == 1 and err["error"]["code"] == "not_found"
    code, err = cli("evaluate", "digits", "small", "--subsets", "everything")
    assert code == 1 and err["error"]["code"] == "bad_request"
    code, err = cli("export", "digits", "small", "--format", "pickle")
    assert code == 1 and "format must be one of onnx, torchscript" in err["error"]["message"]


def test_export_and_list(cli: Any) -> None:
    code, out = cli("export", "digits", "small", "--format", "torchscript", "--checkpoint", "last")
    assert code == 0, out
    e = out["export"]
    assert {"path", "validation", "format", "checkpoint", "sha256", "size", "id"} <= set(e)
    assert {"max_abs_diff", "top1_agreement"} <= set(e["validation"])
    assert (
        e["validation"]["top1_agreement"] == 1.0
        and Path(e["path"]).is_file()
        and Path(e["path"]).suffix == ".pt"
    )
    code, out = cli("export", "digits", "small", "--opset", "18")
    assert code == 0 and Path(out["export"]["path"]).name == f"small-best-opset18-{out['export']['id']}.onnx"
    code, listed = cli("exports", "digits", "small")
    assert code == 0 and listed["total"] == 2 and all(Path(x["path"]).is_absolute() for x in listed["items"])
    code, queued = cli("export", "digits", "small", "--no-wait")
    assert code == 0 and queued["job"]["kind"] == "export" and queued["export"]["status"] == "queued"
