"""Finding a pupil the way a person types: part of the name, with or without diacritics, or the code."""

from __future__ import annotations

import unicodedata
from collections.abc import Set
from dataclasses import dataclass

import sqlalchemy as sa

from portal.assessment.models import Enrolment, Pupil, SchoolClass
from portal.extensions import db
from tenants.models import School
from tenants.roles import Permission

MAX_RESULTS = 50


def folded(text: str) -> str:
    """Lower case without diacritics ("Huỳnh Đức" -> "huynh duc"): how a name is typed on a phone."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).lower().split())


@dataclass(frozen=True)
class Found:
    pupil: Pupil
    school_class: SchoolClass | None  # the latest class the pupil is enrolled in


def search_pupils(school: School, text: str, user_id: int, permissions: Set[Permission]) -> list[Found]:
    """The school's pupils whose name contains `text` (diacritics optional) or whose code starts with it,
    among those the user may see, sorted as schools sort (by given name)."""
    from portal.grading.services import name_key
    from portal.pupils.services import can_view_pupil

    wanted = folded(text)
    if len(wanted) < 2:
        return []
    # Names are folded in Python: the same on SQLite and PostgreSQL, for a school's few thousand pupils.
    candidates = [p for p in db.session.scalars(sa.select(Pupil).where(Pupil.school_id == school.id))
                  if wanted in folded(p.full_name) or p.pupil_code.lower().startswith(wanted)]
    visible = [p for p in candidates if can_view_pupil(user_id, permissions, p)]
    latest = _latest_classes([p.id for p in visible])
    visible.sort(key=lambda p: name_key(p.full_name))
    return [Found(p, latest.get(p.id)) for p in visible[:MAX_RESULTS]]


def _latest_classes(pupil_ids: list[int]) -> dict[int, SchoolClass]:
    if not pupil_ids:
        return {}
    rows = db.session.execute(sa.select(Enrolment.pupil_id, SchoolClass).join(
        SchoolClass, SchoolClass.id == Enrolment.class_id).where(Enrolment.pupil_id.in_(pupil_ids))
        .order_by(Enrolment.id)).all()
    return dict(rows)  # the last enrolment of each pupil wins
