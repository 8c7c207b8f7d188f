"""Database models and session helpers."""

# table modules owned by one feature each; imported so the metadata knows every table
from vistudio.db import (  # noqa: F401
    albums,
    captions,
    changes,
    duplicates,
    embeddings,
    events,
    faces,
    label_issues,
    library,
    settings,
    text_index,
    training,
    users,
    versions,
    videos,
    views,
)
from vistudio.db.artifacts import Artifact
from vistudio.db.base import Base, utcnow
from vistudio.db.jobs import Job, JobEvent
from vistudio.db.projects import LabelClass, Project
from vistudio.db.runs import Run, RunOutput, RunStage
from vistudio.db.samples import Annotation, Sample, SampleTag
from vistudio.db.splits import Split, SplitMember

__all__ = [
    "Annotation",
    "Artifact",
    "Base",
    "Job",
    "JobEvent",
    "LabelClass",
    "Project",
    "Run",
    "RunOutput",
    "RunStage",
    "Sample",
    "SampleTag",
    "Split",
    "SplitMember",
    "utcnow",
]
