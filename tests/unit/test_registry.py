from __future__ import annotations

import pytest

from vistudio.ml.tasks import TaskSpec, get_task, register_task, task_names
from vistudio.registry import Registry


def test_registry_refuses_duplicates_and_names_the_known_entries() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("b")
    def _b() -> int:
        return 2

    reg.add("a", 1)
    assert reg.names() == ["a", "b"]
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", 3)
    with pytest.raises(KeyError, match="unknown widget 'zz'; known: a, b"):
        reg.get("zz")


def test_the_task_registry_holds_the_project_tasks() -> None:
    assert task_names() == [
        "classification",
        "detection",
        "semantic_segmentation",
        "instance_segmentation",
        "anomaly_detection",
        "regression",
        "oriented_detection",
        "library",
    ]
    assert get_task("library").trainable is False
    assert get_task("detection").annotation_kinds == ("box",)
    with pytest.raises(ValueError):
        register_task(TaskSpec("classification", "again", ("label",)))
