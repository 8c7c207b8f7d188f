"""The Runner: every item through every stage, in parallel, one failing item never stops the run."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vistudio.pipelines.saver import ItemResult, OutputSaver, Saved, label_of
from vistudio.pipelines.spec import PipelineSpec, StageSpec
from vistudio.pipelines.stage import STAGES, Item, StageError, StageFn, as_output


def resolve_stage(spec: StageSpec) -> StageFn:
    """The function behind a stage: a registered name, or ``custom:package.module:function``."""
    importlib.import_module("vistudio.pipelines.builtin")  # registers the built-in stages
    if spec.function.startswith("custom:"):
        from vistudio.pipelines.builtin import load_custom

        return load_custom(spec.function.removeprefix("custom:"))
    try:
        return STAGES.get(spec.function)
    except KeyError as exc:
        raise StageError(str(exc.args[0])) from None


@dataclass
class StageRecord:
    name: str
    status: str  # ok | failed
    duration_ms: float
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ItemReport:
    key: str
    index: int
    status: str  # ok | failed
    mistaken: bool
    ground_truth: str | None
    prediction: str | None
    stages: list[StageRecord]
    saved: list[Saved]


class Runner:
    def __init__(self, spec: PipelineSpec, saver: OutputSaver) -> None:
        self.spec = spec
        self.saver = saver
        self.stages = [(s, resolve_stage(s)) for s in spec.stages]

    def process(self, item: Item, index: int) -> ItemReport:
        result = ItemResult(item=item, index=index)
        records: list[StageRecord] = []
        data: Any = None
        for spec, fn in self.stages:
            t0 = time.perf_counter()
            try:
                out = as_output(fn(item, data, **spec.params))
            except Exception as exc:  # the stage's failure is this item's, never the run's
                message = (
                    exc.args[0]
                    if isinstance(exc, StageError) and exc.args
                    else f"{type(exc).__name__}: {exc}"
                )
                records.append(StageRecord(spec.name, "failed", _ms(t0), str(message)[:1000]))
                result.failed_stage, result.error = spec.name, str(message)[:1000]
                break
            records.append(StageRecord(spec.name, "ok", _ms(t0), None, _numbers(out.metrics)))
            result.steps.append((spec.name, out))
            data = out.data
        if result.error is None:
            result.prediction = data
        try:
            saved = self.saver.save(result)
        except Exception as exc:  # a write that fails (disk full, bad output) fails the item, loudly
            records.append(StageRecord("save", "failed", 0.0, f"{type(exc).__name__}: {exc}"[:1000]))
            result.error = result.error or f"saving outputs failed: {exc}"
            saved = []
        return ItemReport(
            key=item.key,
            index=index,
            status="failed" if result.error else "ok",
            mistaken=result.mistaken,
            ground_truth=item.ground_truth,
            prediction=label_of(result.prediction),
            stages=records,
            saved=saved,
        )

    def run(
        self,
        items: Iterable[Item],
        *,
        workers: int | None = None,
        on_item: Callable[[ItemReport], None] | None = None,
    ) -> Iterator[ItemReport]:
        """Process items in parallel (threads: Pillow and NumPy release the GIL), in order."""
        workers = workers or self.spec.workers
        indexed = list(enumerate(items))
        if workers <= 1:
            for i, item in indexed:
                report = self.process(item, i)
                if on_item:
                    on_item(report)
                yield report
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage") as pool:
            window = workers * 4
            for lo in range(0, len(indexed), window):
                futures = [pool.submit(self.process, item, i) for i, item in indexed[lo : lo + window]]
                for f in futures:
                    report = f.result()
                    if on_item:
                        on_item(report)
                    yield report


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in metrics.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            continue
    return out
