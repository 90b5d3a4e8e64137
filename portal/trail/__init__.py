"""The audit trail's pages: a school's own trail, the district's view of all, and the Excel export; and
the hash chain's seals: signed checkpoints, verification, archives and the export anyone can check
offline (`services`, `verify_offline`, docs/audit-trail.md)."""
