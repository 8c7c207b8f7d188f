"""Schemathesis on the evaluation and export routes with real data behind them: never a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from eval_factories import digits_project, fake_evaluation, make_experiment, run_job
from vistudio.api.app import create_app
from vistudio.services import exports
from vistudio.studio import Studio

pytestmark = pytest.mark.slow


def test_evaluation_routes_never_answer_5xx(studio: Studio, tmp_path: Path) -> None:
    digits_project(studio, tmp_path, name="digits", per_class=6)
    make_experiment(studio, project="digits", name="small", model="mobilenet_v3_small", image_size=16)
    make_experiment(studio, project="digits", name="busy", model="mobilenet_v3_small", status="running")
    fake_evaluation(studio, project="digits", experiment="small")
    started = exports.start_export(studio, project="digits", experiment="small")
    assert run_job(studio, started["job"]["id"])["status"] == "succeeded"
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(studio))
    checked = []
    calls = [0]
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(("/api/v1/evaluations", "/api/v1/exports")):
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            # every other case goes to the real project and experiment, so the handlers run deep
            calls[0] += 1
            if case.path_parameters and calls[0] % 2 == 0:
                if "project" in case.path_parameters:
                    case.path_parameters["project"] = "digits"
                if "experiment" in case.path_parameters:
                    case.path_parameters["experiment"] = "small"
            response = case.call()
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message", "details"}

        check()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(checked) == 13, checked
