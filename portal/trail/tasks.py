"""The audit-trail export job: every entry of one school (or of the district) as an Excel file."""

from __future__ import annotations

import io
from typing import Any

import sqlalchemy as sa
from openpyxl import Workbook

from portal import audit, jobs
from portal.extensions import db
from portal.i18n import format_datetime
from portal.storage import storage
from tenants.models import School

HEADERS = ("Thời gian", "Người thực hiện", "Trường", "Hành động", "Đối tượng", "Mã đối tượng", "Nội dung",
           "Thay đổi", "Địa chỉ IP")


@jobs.task("audit.export", resumable=True)
def export_audit(run: jobs.JobRun) -> dict[str, Any]:
    """Write the trail of the job's school (all of it for a district job) to an .xlsx in the file store."""
    school_id = run.school_id
    total = db.session.scalar(audit.entries_query(school_id).with_only_columns(sa.func.count()).order_by(None))
    school_names = dict(db.session.execute(sa.select(School.id, School.name)).all())
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Nhật ký")
    sheet.append(HEADERS)
    written = 0
    for entry in audit.iter_entries(school_id):
        sheet.append([format_datetime(entry.at), entry.actor_name, school_names.get(entry.school_id, ""),
                      entry.action, entry.object_type, entry.object_id, entry.summary,
                      _changes_text(entry.changes), entry.address or ""])
        written += 1
        if written % 500 == 0:
            run.report(written, total or 1, f"{written}/{total}")
    buffer = io.BytesIO()
    workbook.save(buffer)
    digest = storage().put(buffer.getvalue())
    return {"digest": digest, "filename": "nhat-ky-hoat-dong.xlsx", "rows": written,
            "mimetype": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def _changes_text(changes: dict[str, Any]) -> str:
    return "; ".join(f"{key}: {value}" for key, value in sorted(changes.items()))
