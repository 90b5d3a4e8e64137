"""The programme's words in the reader's language: catalogue names and the classifier's explanations.

The catalogue (subjects, qualities and competencies, periods, levels) is data in Vietnamese, and the
classifier writes its reasons in Vietnamese: they are what the record stores and prints. The screens
translate them when they are shown, by name for the catalogue and by the few sentence shapes the
classifier writes for the reasons. Anything not recognised is shown as it is, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask_babel import get_locale
from flask_babel import gettext as _

from portal.assessment.classification import PERSONAL_PLAN_REASON
from portal.i18n import request_memo
from tenants.roles import N_

CATALOGUE = {name: name for name in (
    N_("Tiếng Việt"), N_("Toán"), N_("Ngoại ngữ 1"), N_("Đạo đức"), N_("Tự nhiên và Xã hội"),
    N_("Lịch sử và Địa lí"), N_("Khoa học"), N_("Tin học"), N_("Công nghệ"), N_("Giáo dục thể chất"),
    N_("Nghệ thuật (Âm nhạc)"), N_("Nghệ thuật (Mĩ thuật)"), N_("Hoạt động trải nghiệm"),
    N_("Tiếng dân tộc thiểu số"),
    N_("Yêu nước"), N_("Nhân ái"), N_("Chăm chỉ"), N_("Trung thực"), N_("Trách nhiệm"), N_("Tự chủ và tự học"),
    N_("Giao tiếp và hợp tác"), N_("Giải quyết vấn đề và sáng tạo"), N_("Ngôn ngữ"), N_("Tính toán"),
    N_("Thẩm mĩ"), N_("Thể chất"),
    N_("Giữa học kì I"), N_("Cuối học kì I"), N_("Giữa học kì II"), N_("Cuối năm học"),
    N_("Hoàn thành xuất sắc"), N_("Hoàn thành tốt"), N_("Hoàn thành"), N_("Chưa hoàn thành"),
    N_("Tốt"), N_("Đạt"), N_("Cần cố gắng"), N_("phẩm chất"), N_("năng lực"),
    N_("Hoàn thành chương trình tiểu học"), N_("Hoàn thành chương trình lớp học"),
)}


def _vietnamese() -> bool:
    return str(get_locale() or "vi") == "vi"


def _remembered(kind: str, show: Callable[[str], str], text: str) -> str:
    """`show(text)` worked out once per request: a class page shows the same names and reasons on every
    row, and each call asked flask_babel for the locale again (it cannot change within a request)."""
    memo = request_memo(kind)
    if memo is None:
        return show(text)
    shown = memo.get(text)
    if shown is None:
        shown = memo[text] = show(text)
    return shown


def catalogue(name: str | None) -> str:
    """A subject, quality, competency, period or level name in the reader's language."""
    return _remembered("catalogue_words", _catalogue, name) if name else ""


def _catalogue(name: str) -> str:
    if _vietnamese():
        return name
    if name in CATALOGUE:
        return _(name)
    # A trait written with its kind ("năng lực Ngôn ngữ"), or capitalised at the start of a sentence.
    for kind in ("phẩm chất ", "năng lực ", "Phẩm chất ", "Năng lực "):
        if name.startswith(kind) and name[len(kind):] in CATALOGUE:
            return f"{_(kind.strip().lower())} {_(name[len(kind):])}"
    return name


_ACHIEVED_PARTS = {
    "các môn học đều mức Hoàn thành trở lên": N_("các môn học đều mức Hoàn thành trở lên"),
    "các phẩm chất và năng lực đều mức Đạt trở lên": N_("các phẩm chất và năng lực đều mức Đạt trở lên"),
    "các môn học đều mức Hoàn thành tốt": N_("các môn học đều mức Hoàn thành tốt"),
    "các phẩm chất và năng lực đều mức Tốt": N_("các phẩm chất và năng lực đều mức Tốt"),
}


def _gap(text: str) -> str:
    if m := re.fullmatch(r"(.+) được (\d+) điểm \(cần từ (\d+)\)", text):
        return _("%(name)s được %(n)s điểm (cần từ %(m)s)", name=catalogue(m[1]), n=m[2], m=m[3])
    if m := re.fullmatch(r"(.+) mức (.+)", text):
        return _("%(name)s mức %(level)s", name=catalogue(m[1]), level=catalogue(m[2]))
    return text


def _part(text: str) -> str:
    if text in _ACHIEVED_PARTS:
        return _(_ACHIEVED_PARTS[text])
    if m := re.fullmatch(r"điểm kiểm tra cuối năm đều từ (\d+)", text):
        return _("điểm kiểm tra cuối năm đều từ %(n)s", n=m[1])
    return text


_SHAPES: list[tuple[str, Callable[[re.Match[str]], str]]] = [
    (r"Chưa đạt ([^:]+): (.+)", lambda m: _("Chưa đạt %(level)s: %(gaps)s", level=catalogue(m[1]),
                                               gaps="; ".join(_gap(g) for g in m[2].split("; ")))),
    (r"Đạt ([^:]+): (.+)", lambda m: _("Đạt %(level)s: %(parts)s", level=catalogue(m[1]),
                                         parts=", ".join(_part(p) for p in m[2].split(", ")))),
    (r"Còn thiếu (\d+): (.+)", lambda m: _("Còn thiếu %(n)s: %(first)s", n=m[1], first=reason(m[2]))),
    (r"(.+): thiếu mức đạt được", lambda m: _("%(name)s: thiếu mức đạt được", name=catalogue(m[1]))),
    (r"(.+): thiếu điểm kiểm tra cuối năm",
     lambda m: _("%(name)s: thiếu điểm kiểm tra cuối năm", name=catalogue(m[1]))),
    (r"Chưa có (phẩm chất|năng lực) nào được đánh giá",
     lambda m: _("Chưa có %(kind)s nào được đánh giá", kind=_(m[1]))),
    (r"Chưa có môn học và hoạt động giáo dục nào", lambda m: _("Chưa có môn học và hoạt động giáo dục nào")),
]


def reason(text: str | None) -> str:
    """One of the classifier's explanations (or what is missing) in the reader's language."""
    return _remembered("reason_words", _reason, text) if text else ""


def _reason(text: str) -> str:
    if _vietnamese():
        return text
    if text == PERSONAL_PLAN_REASON:
        return _(PERSONAL_PLAN_MSGID)
    for pattern, build in _SHAPES:
        if m := re.fullmatch(pattern, text):
            return build(m)
    return text


PERSONAL_PLAN_MSGID = N_("Học sinh học theo kế hoạch giáo dục cá nhân: giáo viên chủ nhiệm đánh giá kết quả "
                         "giáo dục theo kế hoạch đó, phần mềm không tự xếp loại.")
