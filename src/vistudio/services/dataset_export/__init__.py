"""Dataset export (see ``export``): write a project's samples and ground truth in a standard format."""

from vistudio.services.dataset_export.export import (
    JOB_KIND,
    MANIFEST,
    api_destination,
    check_format,
    check_out,
    formats,
    preview_export,
    run_dataset_export,
    start_dataset_export,
)
from vistudio.services.dataset_export.listing import export_archive, list_dataset_exports
from vistudio.services.dataset_export.selection import FILTERS

__all__ = [
    "FILTERS",
    "JOB_KIND",
    "MANIFEST",
    "api_destination",
    "check_format",
    "check_out",
    "export_archive",
    "formats",
    "list_dataset_exports",
    "preview_export",
    "run_dataset_export",
    "start_dataset_export",
]
