"""Transfers inside the district (chuyển trường): the sending school releases a pupil, the receiving
school accepts, and the pupil's issued records go along.

A transfer row belongs to the sending school; the receiving school finds it by `to_school_id`, reading
across schools on purpose and for that alone. On acceptance the receiving school gets its own pupil row
(identity copied), and each issued record as a `ReceivedRecord`: the very bytes the sending school
signed (the file store is content-addressed), verified, and fixed. The receiving school can read and
show them, never change them; its own later records continue the study history with their year pages.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _

from portal import audit
from portal.assessment.models import Enrolment, EnrolmentStatus, Pupil
from portal.extensions import db, utcnow
from portal.interop import received
from portal.interop.models import PupilTransfer, ReceivedSource, TransferState
from portal.records.models import RecordStatus, RecordVersion
from portal.storage import storage
from tenants.models import School
from tenants.scoping import all_schools


class TransferError(ValueError):
    """A transfer that cannot be made; the message is Vietnamese, for the page."""


def destinations(school: School) -> list[School]:
    """The other active schools of the district."""
    return list(db.session.scalars(sa.select(School).where(School.district_id == school.district_id,
                                                           School.id != school.id, School.active.is_(True))
                                   .order_by(School.name)))


def release_pupil(school: School, pupil: Pupil, to_school: School, *, reason: str, actor: Any) -> PupilTransfer:
    """The sending school lets the pupil go to `to_school`, with the issued versions that go along."""
    if to_school.id == school.id or to_school.district_id != school.district_id or not to_school.active:
        raise TransferError(_("Chỉ chuyển được tới một trường khác trong Phòng."))
    pending = db.session.scalar(sa.select(PupilTransfer.id).where(PupilTransfer.pupil_id == pupil.id,
                                                                  PupilTransfer.state == TransferState.RELEASED))
    if pending is not None:
        raise TransferError(_("Học sinh này đang chờ trường nhận tiếp nhận."))
    issued = list(db.session.scalars(sa.select(RecordVersion.id).where(
        RecordVersion.pupil_id == pupil.id, RecordVersion.status == RecordStatus.ISSUED)
        .order_by(RecordVersion.number)))
    transfer = PupilTransfer(school_id=school.id, pupil_id=pupil.id, to_school_id=to_school.id,
                             pupil_code=pupil.pupil_code, pupil_name=pupil.full_name, reason=reason.strip(),
                             record_version_ids=issued, released_by_id=getattr(actor, "id", None))
    db.session.add(transfer)
    for enrolment in db.session.scalars(sa.select(Enrolment).where(
            Enrolment.pupil_id == pupil.id, Enrolment.status.in_([EnrolmentStatus.STUDYING,
                                                                  EnrolmentStatus.TRANSFERRED_IN]))):
        enrolment.status = EnrolmentStatus.TRANSFERRED_OUT
    db.session.flush()
    audit.record("transfer.released", actor=actor, school_id=school.id, obj=transfer,
                 summary=_("Chuyển học sinh %(name)s tới %(to)s", name=pupil.full_name, to=to_school.name),
                 changes={"pupil_code": pupil.pupil_code, "to_school_id": to_school.id, "records": len(issued),
                          "reason": reason})
    return transfer


def outgoing(school: School) -> list[PupilTransfer]:
    return list(db.session.scalars(sa.select(PupilTransfer).where(PupilTransfer.school_id == school.id)
                                   .order_by(PupilTransfer.released_at.desc())))


def incoming(school: School) -> list[PupilTransfer]:
    """Transfers to this school (rows of the sending schools: read across schools, filtered to this one)."""
    with all_schools():
        rows = list(db.session.scalars(sa.select(PupilTransfer).where(PupilTransfer.to_school_id == school.id)
                                       .order_by(PupilTransfer.released_at.desc())))
        for row in rows:
            db.session.expunge(row)  # read-only here: never flushed back under this school's scope
    return rows


def get_incoming(school: School, transfer_id: int) -> PupilTransfer | None:
    return next((t for t in incoming(school) if t.id == transfer_id), None)


def school_names(ids: set[int]) -> dict[int, str]:
    return dict(db.session.execute(sa.select(School.id, School.name).where(School.id.in_(ids))).all())


def accept_transfer(school: School, transfer_id: int, *, actor: Any, roots: list[Any]) -> Pupil:
    """The receiving school takes the pupil in: its own pupil row, and the issued records, verified.
    Accepting twice gives the same pupil and adds nothing."""
    with all_schools():
        transfer = db.session.scalar(sa.select(PupilTransfer).where(PupilTransfer.id == transfer_id,
                                                                    PupilTransfer.to_school_id == school.id))
        if transfer is None or transfer.state == TransferState.WITHDRAWN:
            raise TransferError(_("Không tìm thấy yêu cầu chuyển trường này."))
        source_pupil = db.session.get(Pupil, transfer.pupil_id)
        versions = list(db.session.scalars(sa.select(RecordVersion).where(
            RecordVersion.id.in_(transfer.record_version_ids)).order_by(RecordVersion.number)))
        sender = db.session.get(School, transfer.school_id)
        assert source_pupil is not None and sender is not None
        identity = source_pupil.identity()
        files = [(v.id, v.code, v.number, v.grade, v.signed_digest) for v in versions]
    pupil = db.session.scalar(sa.select(Pupil).where(Pupil.school_id == school.id,
                                                     Pupil.pupil_code == transfer.pupil_code))
    if pupil is None:
        pupil = Pupil(school_id=school.id, pupil_code=transfer.pupil_code, **identity)
        db.session.add(pupil)
        db.session.flush()
    for version_id, code, number, grade, digest in files:
        pdf = storage().read(digest) if digest else b""
        received.receive(school, source=ReceivedSource.TRANSFER, external_ref=f"transfer:{transfer_id}:{version_id}",
                         pdf=pdf, roots=roots, transfer_id=transfer_id, actor=actor,
                         expected={"record_code": code, "version_number": number, "grade": grade, "sha256": digest,
                                   "pupil_code": transfer.pupil_code, "issuing_school_name": sender.name,
                                   "issuing_school_moet_code": sender.moet_code or ""})
    received.attach_waiting(school, pupil)
    if transfer.state == TransferState.RELEASED:
        with all_schools():
            row = db.session.get(PupilTransfer, transfer_id)
            assert row is not None
            row.state, row.accepted_at = TransferState.ACCEPTED, utcnow()
            row.accepted_by_id, row.received_pupil_id = getattr(actor, "id", None), pupil.id
            audit.record("transfer.accepted", actor=actor, school_id=row.school_id, obj=row,
                         summary=_("%(to)s đã tiếp nhận học sinh %(name)s", to=school.name, name=row.pupil_name),
                         changes={"to_school_id": school.id, "pupil_id": pupil.id})
            db.session.flush()
    audit.record("transfer.received", actor=actor, school_id=school.id, obj=pupil,
                 summary=_("Tiếp nhận học sinh %(name)s chuyển đến từ %(from)s", name=pupil.full_name,
                           **{"from": sender.name}),
                 changes={"transfer_id": transfer_id, "records": len(files)})
    return pupil


