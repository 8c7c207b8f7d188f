"""Class-folders writer: ``<class>/<image>`` (by split: ``<subset>/<class>/<image>``, as
ImageNet's ``train/`` and ``val/``; import one subset's folder to get its labels back).

For classification: each sample with exactly one label goes into its class's folder, under its
file name alone (the folder reader labels images exactly one level deep, so the sample's own
folders cannot be kept; names that meet in one class folder get a numbered suffix). Class names
become safe folder names (reported in ``converted`` when they change). Left out: unlabelled and
multi-label samples. Dropped: every annotation but the label.
"""

from __future__ import annotations

from collections.abc import Sequence

from vistudio.ingest.writers._base import ExportSample, Rendered, Writer, register_writer
from vistudio.ingest.writers._names import safe_component


def _labels(s: ExportSample) -> list[str]:
    return [a.class_name for a in s.annotations if a.kind == "label" and a.class_name]


@register_writer("folders")
class FoldersWriter(Writer):
    kinds = frozenset({"label"})
    layout = "<class>/<image> (by split: <subset>/<class>/<image>)"

    def format_class_name(self, name: str) -> str | None:
        return safe_component(name) or "_"

    def class_key(self, name: str) -> str:
        return name.casefold()  # Cat/ and cat/ are one folder on macOS and Windows

    def exclude(self, s: ExportSample) -> str | None:
        labels = set(_labels(s))
        if not labels:
            return "unlabelled samples"
        return "multi-label samples" if len(labels) > 1 else None

    def image_path(self, s: ExportSample, name: str) -> str:
        folder = self.class_label(_labels(s)[0]) or "_"
        base = name.rsplit("/", 1)[-1]
        return f"{self.subset_folder(s)}/{folder}/{base}" if self.by_split else f"{folder}/{base}"

    def render(self, entries: Sequence[tuple[ExportSample, str]]) -> Rendered:
        rendered = Rendered()
        for s, _ in entries:
            labels = _labels(s)
            for a in s.annotations:
                if a.kind != "label":
                    rendered.dropped[a.kind] += 1
            rendered.dropped["duplicate labels"] += len(labels) - 1
            rendered.annotations += 1
        return self.finish(rendered)
