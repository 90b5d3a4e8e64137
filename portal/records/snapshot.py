"""Build the content of a record version (the dict of `content.py`) from the assessment data.

Read-only: a handful of queries per school year of the pupil. Values are NFC and dates ISO, so that
the same data always give the same content (and the same hash).
"""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from portal.assessment.classification import Outcome
from portal.assessment.models import (
    Award,
    Enrolment,
    Period,
    PeriodNote,
    Pupil,
    SchoolClass,
    SchoolYear,
    SubjectRating,
    Trait,
    TraitKind,
    TraitRating,
    YearResult,
)
from portal.extensions import db
from portal.i18n import local_zone
from portal.records.content import CONTENT_FORMAT
from portal.results.services import YEAR_END_PERIOD, YEAR_END_TITLES, class_catalogue
from tenants.models import Membership, MembershipRole, School, User
from tenants.roles import Role

TRAIT_GROUP = {TraitKind.QUALITY: "qualities", TraitKind.GENERAL: "general_competencies",
               TraitKind.SPECIFIC: "specific_competencies"}


def text(value: str | None) -> str | None:
    """NFC, surrounding spaces removed; None for empty."""
    if value is None:
        return None
    value = unicodedata.normalize("NFC", value).strip()
    return value or None


def iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value else None


def principal_of(school: School) -> User | None:
    """The school's active principal (the first, if the data hold several)."""
    return db.session.scalar(
        sa.select(User).join(Membership, Membership.user_id == User.id)
        .join(MembershipRole, MembershipRole.membership_id == Membership.id)
        .where(Membership.school_id == school.id, Membership.active, User.active,
               MembershipRole.role == Role.PRINCIPAL).order_by(Membership.id).limit(1))


def principal_name(school: School) -> str | None:
    principal = principal_of(school)
    return text(principal.full_name) if principal else None


def pupil_enrolments(pupil: Pupil, up_to: SchoolYear) -> list[Enrolment]:
    """The pupil's enrolments in this school up to and including `up_to`, oldest first."""
    rows = db.session.scalars(
        sa.select(Enrolment).join(SchoolYear, SchoolYear.id == Enrolment.school_year_id)
        .where(Enrolment.pupil_id == pupil.id, SchoolYear.starts_on <= up_to.starts_on)
        .order_by(SchoolYear.starts_on))
    return list(rows)


def build_content(school: School, pupil: Pupil, year: SchoolYear, *, record: dict[str, Any]) -> dict[str, Any]:
    """The whole record of `pupil` up to `year`; `record` is the version's own part (code, number...)."""
    from portal.interop.received import received_years

    principal = principal_name(school)
    enrolments = pupil_enrolments(pupil, year)
    district = school.district
    own = {e.school_class.school_year.name for e in enrolments}
    # Years spent at an earlier school come from the record it issued and signed (received with the
    # transfer or returned by the city), as it issued them; a year this school taught is its own.
    received = [(page, rows) for page, rows in received_years(pupil)
                if page["school_year"] not in own and page["school_year"] <= year.name]
    # A past year names its own principal and school name, as issued then; the record's own year today's.
    today = {"principal": principal, "school_name": text(school.name)}
    past = [e.school_class.school_year for e in enrolments if e.school_class.school_year_id != year.id]
    issued = as_issued(pupil, past)

    def of_year(enrolment: Enrolment) -> dict[str, str | None]:
        return today | issued.get(enrolment.school_class.school_year.name, {})

    history = [history_row(e, of_year(e)) for e in enrolments]
    history += [row for _page, rows in received for row in rows]
    years = [year_page(e, school, of_year(e)) for e in enrolments]
    years += [page for page, _rows in received]
    return {
        "format": CONTENT_FORMAT,
        "record": record,
        "school": {"name": text(school.name), "moet_code": text(school.moet_code), "commune": text(school.commune),
                   "district": district_area(school), "city": text(district.city), "principal": principal},
        "pupil": identity(pupil),
        "history": sorted(history, key=lambda row: row["school_year"]),
        "years": sorted(years, key=lambda page: page["school_year"]),
    }


def as_issued(pupil: Pupil, years: list[SchoolYear]) -> dict[str, dict[str, str]]:
    """School year -> the principal and the school name printed on that year's page when the year's records
    were issued here ({"principal": ..., "school_name": ...}, only what was printed).

    No history of principals or school names is kept: the records issued at the end of a year are that
    history, signed. The pupil's own records come first (the newest saying so wins); for a year of theirs
    with no record issued, the school's latest record issued for that year. A later principal, or a renamed
    school, so does not rewrite an earlier year, and an earlier year page stays the same page.
    """
    from portal.records.models import RecordStatus, RecordVersion

    done = (RecordStatus.ISSUED, RecordStatus.SUPERSEDED)
    found: dict[str, dict[str, str]] = {}
    for year in years:
        content = db.session.scalar(
            sa.select(RecordVersion.content).where(RecordVersion.school_year_id == year.id,
                                                   RecordVersion.status.in_(done))
            .order_by(RecordVersion.id.desc()).limit(1))
        found.update(_printed(content, {year.name}))
    names = {year.name for year in years}
    for content in db.session.scalars(sa.select(RecordVersion.content).where(
            RecordVersion.pupil_id == pupil.id, RecordVersion.status.in_(done)).order_by(RecordVersion.number)):
        for name, values in _printed(content, names).items():
            found[name] = found.get(name, {}) | values
    return found


def _printed(content: dict[str, Any] | None, names: set[str]) -> dict[str, dict[str, str]]:
    """The principal and school name on the year pages of `content` this school printed, for the years `names`."""
    found = {}
    for page in (content or {}).get("years") or []:
        if page.get("source") == "this_school" and page.get("school_year") in names:
            found[page["school_year"]] = {key: page[key] for key in ("principal", "school_name") if page.get(key)}
    return found


def identity(pupil: Pupil) -> dict[str, Any]:
    """The identity page; the personal ID number is not printed on the record."""
    return {
        "pupil_code": text(pupil.pupil_code),
        "full_name": text(pupil.full_name),
        "gender": text(pupil.gender),
        "birth_date": iso(pupil.birth_date),
        **{name: text(getattr(pupil, name)) for name in
           ("ethnicity", "nationality", "birth_place", "hometown", "address", "father_name", "mother_name",
            "guardian_name", "register_number")},
        "personal_plan": bool(pupil.personal_plan),
        "disability": text(pupil.disability),
    }


def history_row(enrolment: Enrolment, of_year: dict[str, str | None]) -> dict[str, Any]:
    """A row of the study history; `of_year`: that year's principal and school name (see `as_issued`)."""
    school_class: SchoolClass = enrolment.school_class
    return {"school_year": school_class.school_year.name, "class_name": text(school_class.name),
            "school_name": of_year["school_name"], "enrolled_on": iso(enrolment.enrolled_on),
            "confirmed_by": of_year["principal"]}


def year_page(enrolment: Enrolment, school: School, of_year: dict[str, str | None]) -> dict[str, Any]:
    """One school-year page: measurements, the CN ratings, result, awards, completion; `of_year`: that year's
    principal and school name (see `as_issued`)."""
    school_class: SchoolClass = enrolment.school_class
    year: SchoolYear = school_class.school_year
    period = db.session.scalar(sa.select(Period).where(Period.school_year_id == year.id,
                                                       Period.code == YEAR_END_PERIOD))
    result = db.session.scalar(sa.select(YearResult).where(YearResult.enrolment_id == enrolment.id))
    page: dict[str, Any] = {
        "school_year": year.name, "class_name": text(school_class.name), "grade": school_class.grade,
        "school_name": of_year["school_name"], "source": "this_school",
        "homeroom_teacher": text(school_class.homeroom_teacher.full_name) if school_class.homeroom_teacher else None,
        "principal": of_year["principal"],
        **measurements(enrolment, year),
        "subjects": subject_rows(enrolment, school_class, period),
        **trait_rows(enrolment, school_class, period),
        **result_fields(result),
        "awards": [{"title": text(a.title), "awarded_on": iso(a.awarded_on)} for a in sorted(db.session.scalars(
            sa.select(Award).where(Award.enrolment_id == enrolment.id)), key=award_order)],
        "place": place_of(school),
        "dated_on": iso(dated_on(result, year)),
    }
    return page


def award_order(award: Award) -> tuple[int, date, int]:
    """The year-end title first, then the ad-hoc awards by date, then any undated ad-hoc award (one that
    came without its date), each group in the order entered; the same on every database."""
    if award.awarded_on is None:
        return (0 if award.title in YEAR_END_TITLES else 2, date.min, award.id)
    return (1, award.awarded_on, award.id)


def measurements(enrolment: Enrolment, year: SchoolYear) -> dict[str, Any]:
    """Height and weight of the latest period that has them; absences summed over the year's periods."""
    notes = db.session.execute(
        sa.select(PeriodNote, Period.position).join(Period, Period.id == PeriodNote.period_id)
        .where(PeriodNote.enrolment_id == enrolment.id).order_by(Period.position)).all()
    height = next((n.height_cm for n, _p in reversed(notes) if n.height_cm), None)
    weight = next((n.weight_kg for n, _p in reversed(notes) if n.weight_kg), None)
    return {"height_cm": height, "weight_kg": weight,
            "absent_excused": sum(n.absent_excused or 0 for n, _p in notes),
            "absent_unexcused": sum(n.absent_unexcused or 0 for n, _p in notes)}


def subject_rows(enrolment: Enrolment, school_class: SchoolClass, period: Period | None) -> list[dict[str, Any]]:
    subjects, _traits = class_catalogue(school_class)
    ratings = {} if period is None else {r.subject_id: r for r in db.session.scalars(
        sa.select(SubjectRating).where(SubjectRating.enrolment_id == enrolment.id,
                                       SubjectRating.period_id == period.id))}
    rows = []
    for subject, spec in subjects:
        rating = ratings.get(subject.id)
        if spec.optional and (rating is None or rating.level is None):
            continue  # an optional subject the pupil does not take
        rows.append({"code": subject.code, "name": text(subject.name),
                     "level": rating.level if rating else None,
                     "score": rating.score if rating and spec.is_tested(YEAR_END_PERIOD) else None,
                     "comment": text(rating.comment) or "" if rating else ""})
    return rows


def trait_rows(enrolment: Enrolment, school_class: SchoolClass, period: Period | None) -> dict[str, Any]:
    traits = db.session.scalars(sa.select(Trait).where(Trait.school_year_id == school_class.school_year_id,
                                                       Trait.from_grade <= school_class.grade)
                                .order_by(Trait.position))
    ratings = {} if period is None else {r.trait_id: r for r in db.session.scalars(
        sa.select(TraitRating).where(TraitRating.enrolment_id == enrolment.id, TraitRating.period_id == period.id))}
    groups: dict[str, list[dict[str, Any]]] = {group: [] for group in TRAIT_GROUP.values()}
    for trait in traits:
        rating = ratings.get(trait.id)
        groups[TRAIT_GROUP[trait.kind]].append({"code": trait.code, "name": text(trait.name),
                                                "level": rating.level if rating else None,
                                                "comment": text(rating.comment) or "" if rating else ""})
    return groups


def result_fields(result: YearResult | None) -> dict[str, Any]:
    outcome = Outcome(result.outcome) if result and result.outcome else None
    return {
        "outcome": outcome.value if outcome else None,
        "outcome_label": outcome.label if outcome else None,
        "completion": text(result.completion) if result else None,
        "promoted": result.promoted if result else None,
        "supplementary_note": supplementary_text(result),
    }


def supplementary_text(result: YearResult | None) -> str:
    """Section 6's supplementary assessment: its date, what was assessed and its result (Điều 11)."""
    if result is None:
        return ""
    note = text(result.supplementary_note) or ""
    if result.supplementary_on is None or result.supplementary_passed is None:
        return note
    verdict = "Hoàn thành" if result.supplementary_passed else "Chưa hoàn thành"
    return f"Ngày {result.supplementary_on:%d/%m/%Y}: {note.rstrip('.')}. Kết quả: {verdict}."


OFFICE_PREFIXES = ("Phòng Giáo dục và Đào tạo ", "Phòng GD&ĐT ", "Phòng GDĐT ")
AREA_KINDS = ("huyện", "quận", "thị xã", "thành phố")


def district_area(school: School) -> str | None:
    """The district as an area ("Huyện Nhà Bè"), from the education office's name when that is what is stored."""
    name = text(school.district.name) or ""
    for prefix in OFFICE_PREFIXES:
        if name.casefold().startswith(prefix.casefold()):
            name = name[len(prefix):]
    return text(name[:1].upper() + name[1:])


def place_of(school: School) -> str | None:
    """The place of the date line: the district's name without its kind ("Huyện Nhà Bè" -> "Nhà Bè"), but
    a numbered district keeps it ("Quận 7")."""
    area = district_area(school) or ""
    for kind in AREA_KINDS:
        rest = area[len(kind) + 1:]
        if area.casefold().startswith(kind + " ") and not rest.isdigit():
            return text(rest)
    return text(area)


def dated_on(result: YearResult | None, year: SchoolYear) -> date:
    """The date of the year page: when the results were reviewed (else confirmed), else the year's end."""
    for moment in (result.results_reviewed_at, result.confirmed_at) if result else ():
        if moment:
            return moment.astimezone(local_zone()).date()
    return year.ends_on
