"""Backup and restore of a workspace: ``create_backup`` (online, incremental by content hash),
``verify_backup`` and ``restore_backup``. The folder's layout and the manifest are described in
``store`` and in docs/backup.md."""

from vistudio.services.backup.create import Progress, create_backup, verify_backup
from vistudio.services.backup.restore import restore_backup
from vistudio.services.backup.store import BackupInvalid, snapshot_names

__all__ = ["BackupInvalid", "Progress", "create_backup", "restore_backup", "snapshot_names", "verify_backup"]
