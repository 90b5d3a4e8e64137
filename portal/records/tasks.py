"""The bulk jobs of records: generating the drafts of classes, one pupil at a time, each committed alone,
and a signing step for a batch of versions.

A grade's or a school's work is split into a part per class (`start_generation`, `start_signing`), queued
longest first, so that every worker has work to the end; the user follows one job, the parts' parent.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _

from portal import jobs
from portal.assessment.models import Enrolment, Pupil, SchoolClass
from portal.extensions import db
from portal.records import services, workflow
from portal.records.models import RecordVersion
from portal.records.services import GenerationOutcome
from portal.signing.requests import OPEN_STATES, SigningRequest
from tenants.models import School, User

log = logging.getLogger(__name__)


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The result of a split action: the parts' items in the action's order, their counts added up."""
    counts: Counter[str] = Counter()
    for result in results:
        counts.update({label: count for label, count in result.get("counts", [])})
    merged: dict[str, Any] = {"items": [item for result in results for item in result.get("items", [])],
                              "counts": [[label, count] for label, count in counts.items()],
                              "back": ["records.index", {}]}
    batches = sorted({batch for result in results for batch in result.get("batches", [])})
    if any("batches" in result for result in results):
        merged["batches"] = batches
        merged["next"] = ["signing.batch", {"batch_id": batches[0]}] if len(batches) == 1 else None
    return merged


def start_generation(school: School, classes: list[SchoolClass], title: str, *, actor: User) -> jobs.JobRun:
    """Queue the generation of the classes' drafts: a part per class, the costliest first (more pupils,
    more year pages); the caller commits."""
    sizes = dict(db.session.execute(
        sa.select(Enrolment.class_id, sa.func.count()).where(Enrolment.class_id.in_([c.id for c in classes]))
        .group_by(Enrolment.class_id)).all())
    parts = [jobs.Part(title=c.name, size=sizes.get(c.id, 0), params={"class_ids": [c.id]},
                       cost=sizes.get(c.id, 0) * c.grade)  # a grade-5 pupil's record has five year pages
             for c in sorted(classes, key=lambda c: c.name)]
    return jobs.enqueue_parts("records.generate", school_id=school.id, actor=actor, title=title, parts=parts)


def start_signing(school: School, step: workflow.Step, versions: list[RecordVersion], title: str, *,
                  actor: User, split: bool) -> jobs.JobRun:
    """Queue a signing step for the versions: with a key on the server (`split`), a part per class; a key
    elsewhere (USB token, remote service) is one job, so that the signer approves one batch. The caller
    commits (and stashes what the signer typed under the returned job's id)."""
    by_class: dict[str, list[int]] = {}
    for version in versions:
        by_class.setdefault(version.school_class.name, []).append(version.id)
    if not split:
        by_class = {"": [v.id for v in versions]}
    parts = [jobs.Part(title=name, size=len(ids), params={"step": step.field, "version_ids": ids})
             for name, ids in sorted(by_class.items())]
    return jobs.enqueue_parts("records.sign", school_id=school.id, actor=actor, title=title, parts=parts)


@jobs.task("records.generate", resumable=True, merge=merge_results)
def generate_records(run: jobs.JobRun, class_ids: list[int]) -> dict[str, Any]:
    """Generate the drafts of every active pupil of the classes; a failure is listed and the batch goes on."""
    school = db.session.get(School, run.school_id)
    actor = db.session.get(User, run.created_by_id) if run.created_by_id else None
    classes = list(db.session.scalars(sa.select(SchoolClass).where(SchoolClass.id.in_(class_ids))
                                      .order_by(SchoolClass.name)))
    work = [(c.id, p.id) for c in classes for p in services.class_pupils(c)]
    items: list[dict[str, Any]] = []
    for done, (class_id, pupil_id) in enumerate(work, start=1):
        items.append(_one(school, class_id, pupil_id, actor))
        run = db.session.get(jobs.JobRun, run.id)  # the commit above expired it
        run.report(done, len(work), f"{done}/{len(work)}")
    counts = Counter(item["outcome"] for item in items)
    return {"items": items, "counts": [[GenerationOutcome(k).label, counts[k]] for k in GenerationOutcome if counts[k]],
            "back": ["records.class_records", {"class_id": classes[0].id}] if len(classes) == 1
            else ["records.index", {}]}


def _one(school: School, class_id: int, pupil_id: int, actor: User | None) -> dict[str, Any]:
    school_class = db.session.get(SchoolClass, class_id)
    pupil = db.session.get(Pupil, pupil_id)
    name = f"{pupil.full_name} ({school_class.name})"
    try:
        try:
            generated = services.generate_record(school, school_class, pupil, actor=actor)
            db.session.commit()
        except (sa.exc.IntegrityError, sa.exc.OperationalError):
            # Another job (a double click, two workers) wrote this pupil's draft at the same moment:
            # generating again finds that draft and answers from it.
            db.session.rollback()
            school_class, pupil = db.session.get(SchoolClass, class_id), db.session.get(Pupil, pupil_id)
            generated = services.generate_record(school, school_class, pupil, actor=actor)
            db.session.commit()
    except Exception as exc:  # one pupil's failure is reported and must not stop the class
        db.session.rollback()
        log.exception("generating the record of pupil %s failed", pupil_id)
        return {"pupil_id": pupil_id, "name": name, "outcome": GenerationOutcome.FAILED.value,
                "label": GenerationOutcome.FAILED.label, "reason": _failure_reason(exc)}
    version = generated.version
    return {"pupil_id": pupil_id, "name": name, "outcome": generated.outcome.value,
            "label": generated.outcome.label, "reason": generated.reason,
            "code": version.code if version else None,
            "link": ["records.show", {"version_id": version.id}] if version else None}


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, sa.exc.SQLAlchemyError):  # never a raw SQL statement on the page: the log has it
        return _("Cơ sở dữ liệu đang bận với cùng học sinh này; hãy tạo lại học bạ của học sinh sau ít phút.")
    return str(exc) or type(exc).__name__


@jobs.task("records.sign", resumable=True, merge=merge_results)
def sign_records(run: jobs.JobRun, step: str, version_ids: list[int]) -> dict[str, Any]:
    """One signing step for a batch of versions; resumable: versions already signed at this step are skipped.
    What the signer typed is kept under the action's id (the parent's, for a part): the last part to end
    lets it go (`jobs`), as does an action that was not split."""
    school = db.session.get(School, run.school_id)
    signer = db.session.get(User, run.created_by_id)
    run_id, secret_id, part = run.id, run.parent_id or run.id, run.parent_id is not None

    def progress(done: int, total: int) -> None:
        current = db.session.get(jobs.JobRun, run_id)
        current.report(done, total, f"{done}/{total}")

    try:
        results = workflow.sign_batch(school, workflow.STEPS[step], version_ids, signer=signer,
                                      secret=jobs.job_secret(secret_id), progress=progress)
    except jobs.JobInterrupted:
        raise  # the rest of the batch runs again soon: it needs the PIN (it expires on its own)
    except BaseException:
        if not part:
            jobs.drop_secret(secret_id)
        raise
    if not part:
        jobs.drop_secret(secret_id)
    names = dict(db.session.execute(sa.select(RecordVersion.id, RecordVersion.content)
                                   .where(RecordVersion.id.in_([r.version_id for r in results]))).all())
    items = [{"version_id": r.version_id, "outcome": r.outcome, "label": SIGN_LABELS[r.outcome](),
              "reason": r.reason, "name": _name(names.get(r.version_id)),
              "link": ["records.show", {"version_id": r.version_id}]} for r in results]
    counts = Counter(r.outcome for r in results)
    # Records asked of the signer's USB token or phone: the batch's own page follows how each one ends.
    waiting = [r.version_id for r in results if r.outcome == "waiting"]
    batches = sorted(set(db.session.scalars(sa.select(SigningRequest.batch_id).where(
        SigningRequest.purpose == workflow.PURPOSE, SigningRequest.step == step,
        SigningRequest.subject_id.in_(waiting), SigningRequest.state.in_(OPEN_STATES))))) if waiting else []
    return {"items": items, "counts": [[SIGN_LABELS[k](), n] for k, n in counts.items()],
            "back": ["records.index", {}], "batches": batches,
            "next": ["signing.batch", {"batch_id": batches[0]}] if len(batches) == 1 else None}


def _name(content: dict[str, Any] | None) -> str:
    if not content:
        return "?"
    return f"{content['pupil']['full_name']} ({content['years'][-1]['class_name']})"


SIGN_LABELS = {
    "signed": lambda: _("Đã ký"),
    "already": lambda: _("Đã ký trước đó"),
    "skipped": lambda: _("Bỏ qua"),
    "failed": lambda: _("Không ký được"),
    "waiting": lambda: _("Chờ xác nhận trên thiết bị ký"),
}


@jobs.warm_up
def warm_up_layout() -> None:
    """Load the record layout (the fonts and their metrics, the paragraph styles) before a worker forks its jobs:
    otherwise every part of a school's generation would load it again. (The signature machinery is warmed
    for every process by `portal.app.prepare_process`.)"""
    from portal.records import pdf

    pdf.warm_up()


@jobs.task("records.finish_signature")
def finish_signature(run: jobs.JobRun, request_id: int) -> dict[str, Any]:
    """Put a signature that came back from a USB token or a remote service into its record."""
    result = workflow.finish_external(request_id)
    return {"version_id": result.version_id, "outcome": result.outcome, "reason": result.reason}
