"""Where an external signing batch stands: the page a signer lands on after "Ký tất cả" with a USB token or
remote signing, and the list of their batches.

A batch is the set of `SigningRequest`s that share a `batch_id` (one PIN entry, one phone approval). Its
status is read from the requests themselves (the commit points of signing), the CSC job that asks the
phone, and the signer's signing agent (when it last connected), so the page always says how it ended:
waiting on the device, approved, refused, expired, failed, signed or cancelled, with the provider's or the
agent's words.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _

from portal import jobs
from portal.extensions import db
from portal.signing import requests as signing_requests
from portal.signing.requests import RequestKind, RequestState, SigningRequest
from tenants.models import School, User
from tenants.scoping import school_scope

# What each request's state means to the signer, per kind of device (the page's words).
WAITING_LABELS = {
    RequestKind.USB: lambda: _("Đang chờ chương trình ký số"),
    RequestKind.CSC: lambda: _("Đang chờ xác nhận trên điện thoại"),
}
STATE_LABELS = {
    RequestState.ANSWERED: lambda: _("Đã xác nhận, đang gắn chữ ký"),
    RequestState.FINISHED: lambda: _("Đã ký"),
    RequestState.REFUSED: lambda: _("Bị từ chối"),
    RequestState.EXPIRED: lambda: _("Hết hạn"),
    RequestState.FAILED: lambda: _("Không ký được"),
    RequestState.CANCELLED: lambda: _("Đã hủy"),
}
# The states a retry starts again from (the record still needs this signature).
RETRYABLE = (RequestState.REFUSED, RequestState.EXPIRED, RequestState.FAILED, RequestState.CANCELLED)


@dataclass
class BatchItem:
    request: SigningRequest
    label: str
    tone: str  # waiting / ok / bad / neutral: the colour of its tag


@dataclass
class BatchStatus:
    batch_id: str
    kind: RequestKind
    signer: User
    step: str
    step_label: str
    items: list[BatchItem]
    counts: Counter[str] = field(default_factory=Counter)
    created_at: datetime | None = None
    agent_last_seen: datetime | None = None
    job: jobs.JobRun | None = None

    @property
    def waiting(self) -> int:
        return sum(1 for item in self.items if item.request.state == RequestState.PENDING)

    @property
    def open(self) -> bool:
        return any(item.request.is_open for item in self.items)

    @property
    def retryable(self) -> list[SigningRequest]:
        return [i.request for i in self.items if i.request.state in RETRYABLE]


def _item(request: SigningRequest) -> BatchItem:
    if request.state == RequestState.PENDING:
        return BatchItem(request, WAITING_LABELS[request.kind](), "waiting")
    tone = {RequestState.ANSWERED: "waiting", RequestState.FINISHED: "ok",
            RequestState.CANCELLED: "neutral"}.get(request.state, "bad")
    return BatchItem(request, STATE_LABELS[request.state](), tone)


def batch_status(school: School, batch_id: str) -> BatchStatus | None:
    """The batch's requests at this school, with what each one's state means; None if there is none."""
    with school_scope(school.id):
        rows = list(db.session.scalars(sa.select(SigningRequest).where(
            SigningRequest.school_id == school.id, SigningRequest.batch_id == batch_id).order_by(SigningRequest.id)))
    if not rows:
        return None
    first = rows[0]
    signer = db.session.get(User, first.user_id)
    assert signer is not None
    status = BatchStatus(batch_id, first.kind, signer, first.step, first.step_label, [_item(r) for r in rows],
                         created_at=first.created_at)
    status.counts = Counter(item.label for item in status.items)
    if first.kind == RequestKind.USB:
        status.agent_last_seen = agent_last_seen(signer.id)
    else:
        status.job = _csc_job(school.id, batch_id)
    return status


def agent_last_seen(user_id: int) -> datetime | None:
    """When the user's signing agent last called the portal (signed in, listed or sent signatures)."""
    from portal.signing.agent_api import AgentToken

    return db.session.scalar(sa.select(sa.func.max(sa.func.coalesce(AgentToken.last_used_at, AgentToken.created_at)))
                             .where(AgentToken.user_id == user_id))


def _csc_job(school_id: int, batch_id: str) -> jobs.JobRun | None:
    from portal.signing.csc import PURPOSE_TITLE

    runs = db.session.scalars(sa.select(jobs.JobRun).where(jobs.JobRun.school_id == school_id,
                                                           jobs.JobRun.kind == PURPOSE_TITLE)
                              .order_by(jobs.JobRun.created_at.desc()).limit(200))
    return next((run for run in runs if (run.params or {}).get("batch_id") == batch_id), None)


@dataclass(frozen=True)
class BatchSummary:
    batch_id: str
    kind: RequestKind
    step_label: str
    created_at: datetime
    total: int
    waiting: int
    finished: int
    problems: int


def batches_of(school: School, user_id: int, *, limit: int = 20) -> list[BatchSummary]:
    """The user's most recent external batches at this school, newest first, with their counts."""
    with school_scope(school.id):
        rows = list(db.session.execute(
            sa.select(SigningRequest.batch_id, SigningRequest.kind, SigningRequest.step, SigningRequest.state,
                      SigningRequest.created_at)
            .where(SigningRequest.school_id == school.id, SigningRequest.user_id == user_id)
            .order_by(SigningRequest.created_at.desc(), SigningRequest.id.desc()).limit(2000)))
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.batch_id, []).append(row)
    summaries = []
    for batch_id, members in list(grouped.items())[:limit]:
        states = Counter(m.state for m in members)
        label = _(signing_requests.STEP_LABELS.get(members[0].step, members[0].step))
        summaries.append(BatchSummary(batch_id, members[0].kind, label, members[0].created_at, len(members),
                                      states[RequestState.PENDING] + states[RequestState.ANSWERED],
                                      states[RequestState.FINISHED],
                                      sum(states[s] for s in RETRYABLE if s != RequestState.CANCELLED)))
    return summaries


def cancel_batch(status: BatchStatus, *, actor: User) -> int:
    """Withdraw the batch's requests still waiting for the signer (the caller commits); returns how many.

    CSC has no standard way to withdraw an authorisation at the provider: the job that waits for the phone
    sees the requests closed and stops asking, and an approval that comes later is ignored.
    """
    pending = [i.request.id for i in status.items if i.request.state == RequestState.PENDING]
    signing_requests.cancel(pending, _("Đã hủy trên cổng bởi %(name)s.", name=actor.full_name), actor=actor)
    return len(pending)
