"""What each milestone counts, whether the portal can count it yet, and the status of one board cell.

Every milestone of the plan names a measure of `REGISTRY`. A measure says what it counts (pupils in
the milestone's scope, staff, or a piece of evidence the school uploads), where its data lives, and
whether that data exists in this portal yet. A measure whose data does not exist shows as "chưa đo
được" (not yet measurable) on every cell, never as a number.

`cell_status` is the one place where a cell's status is decided: a pure function of the deadline,
today, the counts and the recent history, so that its edges are tested without a database.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from tenants.roles import N_


class Counts(StrEnum):
    """The kind of thing a measure counts."""

    PUPILS = "pupils"
    STAFF = "staff"
    SCHOOL = "school"  # one thing per school (its seal)
    EVIDENCE = "evidence"


def _never() -> bool:
    return False


def _always() -> bool:
    return True


@dataclass(frozen=True)
class Measure:
    key: str
    name: str  # N_ source text: what the measure counts, for the plan editor
    label: str  # N_ source text: the missing-items phrase of the school view reads "<n> <label>"
    counts: Counts
    source: str  # N_ source text: where the data comes from, or why it cannot be counted yet
    available: Callable[[], bool] = _always
    fix_endpoint: str | None = None  # the page where a school fixes what is missing (a Flask endpoint)

    @property
    def measurable(self) -> bool:
        return self.available()


REGISTRY: dict[str, Measure] = {m.key: m for m in (
    Measure("evidence", N_("Minh chứng do trường nộp"),
            N_("chưa có minh chứng được Phòng chấp nhận"), Counts.EVIDENCE,
            N_("Minh chứng (quyết định, biên bản) trường tải lên, Phòng GD&ĐT chấp nhận hoặc trả lại."),
            fix_endpoint="compliance.evidence"),
    Measure("identity_reviewed", N_("Học sinh đã rà soát nhân thân"),
            N_("học sinh chưa rà soát thông tin nhân thân"), Counts.PUPILS,
            N_("Học sinh đã được đánh dấu rà soát thông tin nhân thân (trang Rà soát của lớp)."),
            fix_endpoint="pupils.review_class"),
    Measure("results_reviewed", N_("Học sinh đã rà soát kết quả"),
            N_("học sinh chưa rà soát kết quả"), Counts.PUPILS,
            N_("Kết quả cuối năm của học sinh đã được đánh dấu rà soát."),
            fix_endpoint="results.year_end"),
    Measure("imported", N_("Học sinh nhập từ CSDL ngành"),
            N_("học sinh chưa nhập từ CSDL ngành"), Counts.PUPILS,
            N_("Học sinh do chức năng nhập từ CSDL ngành tạo ra (ghi trong nhật ký: 'pupil.created')."),
            fix_endpoint="pupils.pupil_import"),
    Measure("records_issued", N_("Học bạ số đã ban hành"),
            N_("học sinh chưa được ban hành học bạ số"), Counts.PUPILS,
            N_("Học bạ số của năm học có bản ở trạng thái 'Đã ban hành' (đủ ba chữ ký số)."),
            fix_endpoint="records.index"),
    Measure("records_reviewed", N_("Học bạ đã qua rà soát sau ban hành"),
            N_("học bạ chưa hết thời hạn rà soát sau ban hành"), Counts.PUPILS,
            N_("Chưa đo được: cổng chưa ghi nhận thời điểm đóng việc rà soát, hủy bỏ, điều chỉnh học bạ "
               "sau ban hành."), available=_never),
    Measure("records_uploaded", N_("Học bạ đã lên hệ thống Thành phố"),
            N_("học bạ chưa được Thành phố xác nhận đã nhận"), Counts.PUPILS,
            N_("Học bạ số của năm học đã gửi lên hệ thống của Thành phố và được Thành phố xác nhận (có số biên "
               "nhận)."), fix_endpoint="interop.index"),
    Measure("records_returned", N_("Học bạ đã trả về trường tiếp nhận"),
            N_("học bạ chưa được trả về trường tiếp nhận"), Counts.PUPILS,
            N_("Chưa đo được: học bạ Thành phố trả về sau tuyển sinh đến các trường tiếp nhận (phần lớn là "
               "trường THCS, ngoài cổng này); trường tiểu học không biết được học bạ đã đến nơi hay chưa."),
            available=_never),
    Measure("staff_certificates", N_("Cán bộ, giáo viên có chứng thư số"),
            N_("cán bộ, giáo viên chưa có chứng thư số còn hiệu lực"), Counts.STAFF,
            N_("Cán bộ quản lí, GVCN, GVBM đang công tác có chứng thư số cá nhân đăng kí trên cổng, còn hiệu lực."),
            fix_endpoint="signing.staff"),
    Measure("seal_registered", N_("Con dấu số của trường"),
            N_("trường chưa đăng kí con dấu số còn hiệu lực"), Counts.SCHOOL,
            N_("Chứng thư số của trường (con dấu số) đăng kí trên cổng, còn hiệu lực."),
            fix_endpoint="signing.seal"),
    Measure("staff_trained", N_("Cán bộ, giáo viên đã tập huấn"),
            N_("cán bộ, giáo viên chưa dự tập huấn"), Counts.STAFF,
            N_("Cán bộ quản lí, GVCN, GVBM đang công tác đã dự ít nhất một buổi tập huấn trường ghi nhận."),
            fix_endpoint="compliance.training"),
)}


class CellState(StrEnum):
    DONE_ON_TIME = "done_on_time"
    DONE_LATE = "done_late"
    IN_PROGRESS = "in_progress"
    OVERDUE = "overdue"
    NOT_STARTED = "not_started"
    NOT_MEASURABLE = "not_measurable"
    NO_ONE_IN_SCOPE = "no_one_in_scope"
    NOT_COUNTED = "not_counted"  # measurable, but no count of it has been made yet

    @property
    def label(self) -> str:
        from flask_babel import gettext

        return gettext(STATE_LABELS[self])


STATE_LABELS = {
    CellState.DONE_ON_TIME: N_("Đúng hạn"),
    CellState.DONE_LATE: N_("Trễ hạn"),
    CellState.IN_PROGRESS: N_("Đang thực hiện"),
    CellState.OVERDUE: N_("Quá hạn"),
    CellState.NOT_STARTED: N_("Chưa bắt đầu"),
    CellState.NOT_MEASURABLE: N_("Chưa đo được"),
    CellState.NO_ONE_IN_SCOPE: N_("Không có đối tượng"),
    CellState.NOT_COUNTED: N_("Đang đếm"),
}
DONE_STATES = frozenset({CellState.DONE_ON_TIME, CellState.DONE_LATE})
# How far back the pace of a forecast looks: long enough to smooth a weekend, short enough to be current.
PACE_WINDOW_DAYS = 14


@dataclass(frozen=True)
class Cell:
    """One school against one milestone."""

    state: CellState
    done: int = 0
    total: int = 0
    completed_on: date | None = None  # for done cells
    days_late: int = 0  # for late cells
    forecast_on: date | None = None  # for cells in progress, at the current pace; None when there is no pace
    awaiting_review: bool = False  # evidence submitted, the district has not answered yet
    returned: bool = False  # the newest evidence was returned by the district
    at_risk: bool = False  # in progress, but the forecast falls after the deadline

    @property
    def percent(self) -> int | None:
        """Rounded down, so that 99.9% never reads as 100%; None when there is nothing to count."""
        if self.state in (CellState.NOT_MEASURABLE, CellState.NO_ONE_IN_SCOPE, CellState.NOT_COUNTED) \
                or self.total <= 0:
            return None
        return self.done * 100 // self.total

    @property
    def is_done(self) -> bool:
        return self.state in DONE_STATES



def cell_status(*, deadline: date, today: date, measurable: bool, done: int, total: int,
                completed_on: date | None = None, history: Sequence[tuple[date, int]] = (),
                awaiting_review: bool = False, returned: bool = False, counted: bool = True,
                forecast_on: date | None = None) -> Cell:
    """The status of one cell.

    `done` of `total` are complete today; `completed_on` is the day the last of them was (for a done
    cell); `history` holds earlier (day, done) points from the daily snapshots, for the pace of the
    forecast. `awaiting_review` marks evidence the district has not yet answered: the school has done
    its part, so the cell is in progress rather than overdue. `counted` is False when no count exists yet.
    `forecast_on` is a forecast already made (by the count that stored these numbers), used without history.
    """
    if not measurable:
        return Cell(CellState.NOT_MEASURABLE)
    if not counted:
        return Cell(CellState.NOT_COUNTED)
    if total <= 0:
        return Cell(CellState.NO_ONE_IN_SCOPE)
    done = min(done, total)
    if done == total:
        finished = completed_on or today
        late = (finished - deadline).days
        if late > 0:
            return Cell(CellState.DONE_LATE, done, total, completed_on=finished, days_late=late)
        return Cell(CellState.DONE_ON_TIME, done, total, completed_on=finished)
    if awaiting_review:
        return Cell(CellState.IN_PROGRESS, done, total, awaiting_review=True, returned=returned)
    if today > deadline:
        return Cell(CellState.OVERDUE, done, total, days_late=(today - deadline).days, returned=returned)
    if done == 0:
        return Cell(CellState.NOT_STARTED, done, total, returned=returned)
    expected = forecast(today, done, total, history) if history else forecast_on
    return Cell(CellState.IN_PROGRESS, done, total, forecast_on=expected, returned=returned,
                at_risk=expected is not None and expected > deadline)


def forecast(today: date, done: int, total: int, history: Sequence[tuple[date, int]]) -> date | None:
    """The day `total` is reached at the pace since the oldest point of the last PACE_WINDOW_DAYS days.

    None when there is no earlier point or no progress since it (no pace, no honest forecast).
    """
    window = [(day, count) for day, count in history if today - timedelta(days=PACE_WINDOW_DAYS) <= day < today]
    if not window:
        return None
    since, then = min(window)
    per_day = (done - then) / (today - since).days
    if per_day <= 0:
        return None
    return today + timedelta(days=math.ceil((total - done) / per_day))
