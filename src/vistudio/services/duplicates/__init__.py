"""Duplicate review in three layers, with one set of decisions.

- **exact**: files with identical bytes. Within a project the same bytes are one sample, so these
  groups are *files*: the paths of a photo library (``library_files``) that hold one sample. In a
  project without library folders there are none; the imports' reports count the identical
  files they skipped, and that count is given instead.
- **perceptual**: samples whose perceptual hashes are within ``threshold`` bits, allowing a
  rotation by 90°, 180° or 270° and mirror images (``vistudio.ingest.dedup``). The eight variant
  hashes of each sample come from its thumbnail, once (``duplicate_hashes``); samples not hashed
  yet use variants predicted from their stored hash until a ``duplicate_hashes`` job (or the
  request itself, for a few) has hashed them.
- **semantic**: samples whose image embeddings have a cosine similarity >= ``threshold``
  (``vistudio.ml.embed.dedup``), from ``services.embeddings.project_vectors``.

Each group has a suggested keeper (the largest resolution, then the earliest date) and an id
(``p-1a2b3c4d5e6f``) naming its level and exact members. A decision on a group is one of
``keep`` (mark it reviewed), ``hide`` (hide the others from browsing; undo shows them again) and
``remove`` (delete the others from the project: their annotations and tags go with them, their
blob references are released — originals on disk are never touched, and copies in the workspace
are only collected by the next garbage collection, so the removal can be undone until then).

Modules by concern: ``params`` (levels, thresholds, paging), ``grouping`` (forming and caching
groups, keepers), ``hashes`` (the dihedral hashes and their ``duplicate_hashes`` job),
``listing`` (pages of groups for review), ``decisions`` (keep/hide/remove and undo) and
``removal`` (what blocks a removal, its snapshot and the restore from it).
"""

from vistudio.services.duplicates.decisions import decide, hidden_ids, list_decisions, undo
from vistudio.services.duplicates.grouping import CACHED_THRESHOLDS, EMBED_HINT, near_duplicate_groups
from vistudio.services.duplicates.hashes import (
    HASH_BATCH,
    HASH_JOB,
    INLINE_HASHES,
    compute_hashes,
    count_unhashed,
    run_hash_job,
    start_hashing,
)
from vistudio.services.duplicates.listing import decision_dict, get_group, list_groups
from vistudio.services.duplicates.params import (
    ACTIONS,
    DEFAULT_SIMILARITY,
    GROUP_KEY,
    IN_CHUNK,
    LEVELS,
    MAX_BITS,
    MAX_LIMIT,
    MIN_SIMILARITY,
    STATUSES,
    check_level,
    check_threshold,
)

__all__ = [
    "ACTIONS",
    "CACHED_THRESHOLDS",
    "DEFAULT_SIMILARITY",
    "EMBED_HINT",
    "GROUP_KEY",
    "HASH_BATCH",
    "HASH_JOB",
    "INLINE_HASHES",
    "IN_CHUNK",
    "LEVELS",
    "MAX_BITS",
    "MAX_LIMIT",
    "MIN_SIMILARITY",
    "STATUSES",
    "check_level",
    "check_threshold",
    "compute_hashes",
    "count_unhashed",
    "decide",
    "decision_dict",
    "get_group",
    "hidden_ids",
    "list_decisions",
    "list_groups",
    "near_duplicate_groups",
    "run_hash_job",
    "start_hashing",
    "undo",
]
