"""Albums: manual albums (photos chosen by hand, in the user's order, with a cover) and smart
albums (a query in the search box's syntax, ``vistudio.query_syntax``), and "On this day".

Manual albums keep their photos in ``album_photos``. Their order is a sparse integer ``position``
(gaps of :data:`GAP`): added photos go to the end, a move takes the midpoint between the new
neighbours, and when two neighbours have no room left between them the whole album is renumbered
(``GAP``, ``2·GAP``, …) first. A full order given at once is numbered the same way. A manual
album shows every photo put in it, a photo hidden later as a duplicate included: it was chosen.

Smart albums store only their query. Their photos are worked out when the album is read — the
filters as the search's filters (``hybrid_search.allowed_select``: hidden duplicates are out),
the free words by the full-text index alone (every word must match, as the search's full text
does; never CLIP, which ranks every photo and so defines no membership) — so photos that arrive
later join the album at once. They are listed newest first (the timeline's date ``sort_time``,
then id, both descending; undated photos last), a page at a time from a keyset cursor.

Deleting an album keeps its rows (``deleted_at``) so that it can be restored (the undo);
deleted albums older than :data:`KEEP_DELETED` are purged by the next delete. A cover is one of
the album's photos (for a smart album, one that still matches); without one, or when it left the
album, the first photo is the cover.

"On this day" (:func:`on_this_day`): the photos taken on a date's month and day in earlier
years, by year, newest year first. Photos of 29 February show on 28 February in years that have
no 29 February. One range read of the timeline index per earlier year that has photos (the years
found by a skip scan), never a scan of every photo's date.
"""

from vistudio.services.albums.edit import (
    add_photos,
    create_album,
    delete_album,
    move_photo,
    remove_photos,
    restore_album,
    set_order,
    update_album,
)
from vistudio.services.albums.on_this_day import (
    MAX_PER_YEAR,
    day_range,
    on_this_day,
    parse_day,
    years_ago_text,
)
from vistudio.services.albums.read import (
    DEFAULT_LIMIT,
    GAP,
    KEEP_DELETED,
    KINDS,
    MAX_BATCH,
    MAX_LIMIT,
    MAX_NAME,
    album_names,
    album_photo_ids,
    check_name,
    get_album,
    list_albums,
    photo_dict,
)

__all__ = [
    "DEFAULT_LIMIT",
    "GAP",
    "KEEP_DELETED",
    "KINDS",
    "MAX_BATCH",
    "MAX_LIMIT",
    "MAX_NAME",
    "MAX_PER_YEAR",
    "add_photos",
    "album_names",
    "album_photo_ids",
    "check_name",
    "create_album",
    "day_range",
    "delete_album",
    "get_album",
    "list_albums",
    "move_photo",
    "on_this_day",
    "parse_day",
    "photo_dict",
    "remove_photos",
    "restore_album",
    "set_order",
    "update_album",
    "years_ago_text",
]
