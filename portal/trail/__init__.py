"""The audit trail's pages: a school's own trail, the district's view of all, and the Excel export."""
