"""The demo district's assessment data: every Học bạ số school year from 2024-2025 up to the one `today`
falls in, at every demo school, with classes, teachers, pupils moving up a grade each year, the ratings
of every period whose entry window had opened by `today`, and the year-end results of the years that
are over.

Demo data only, made up but realistic, so that every page has something true-to-life to show:
- names drawn from Southern Vietnamese family-name frequencies, with a few Hoa and Khmer pupils;
- levels T/H/C about 55/42/3 % and qualities and competencies T/Đ/C about 60/38/2 %, correlated per
  pupil (a strong pupil is strong almost everywhere, year after year), with fewer C as the year goes
  on, so the year-end results spread roughly as in a real school: a fifth Hoàn thành xuất sắc, a few
  Chưa hoàn thành;
- test scores (integers 1-10) only in the periods where the catalogue tests the subject, in line with
  the level; height and weight growing with age; absences.
- a year that is over has its results confirmed and reviewed; a pupil not completing gets a
  supplementary assessment and the principal's decision, and stays in her grade when not promoted.
  Grade 5 leaves; a new grade 1 comes every year.
- the current year is partway through: the periods whose window has passed are entered, and when no
  window is open today the next one opens today, so that the grids take entries.
At Lê Quang Định most pupils' identity data is marked reviewed so that the review progress page has
something to show.

Fast and safe to run again, on any later day: rows go in with bulk inserts, one school at a time in its
own tenant scope; a year already there is kept, and only what the days since have added (a period's
ratings, a year's results, the next year) is built. Every school, year and period draws from its own
seeded generator, so the data is the same on every machine and whichever schools are built.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from statistics import NormalDist
from typing import Any

import sqlalchemy as sa

from portal import audit
from portal.assessment.catalogue import build_year
from portal.assessment.classification import Outcome, completion_text
from portal.assessment.models import (
    Award,
    Enrolment,
    EnrolmentStatus,
    Period,
    PeriodNote,
    Pupil,
    SchoolClass,
    SchoolYear,
    SubjectRating,
    TeachingAssignment,
    TraitRating,
    YearResult,
)
from portal.demo import SCHOOLS
from portal.extensions import db, utcnow
from portal.schoolyear.services import school_year_start, year_label
from tenants.models import School, User
from tenants.scoping import school_scope

FIRST_YEAR = 2024  # the district's first Học bạ số year: 2024-2025
YEAR_NAME = "2024-2025"


def year_dates(start: int) -> tuple[date, date]:
    """The first and last day of the school year starting in September of `start`."""
    return date(start, 9, 5), date(start + 1, 5, 31)


# When teachers may enter each period's ratings, both days included, in the year starting 2024 (later
# years move by whole years). Each window opens once the period's tests are marked: mid-term I at the
# end of October, end of term I in the first week of January (before Tết), mid-term II mid-March, year
# end early May. The CN window runs to the last day of the year, past the plan's review deadlines (16
# and 19/05) and grade 5's issue (30/05).
ENTRY_WINDOWS: dict[str, tuple[date, date]] = {
    "GHK1": (date(2024, 11, 4), date(2024, 11, 15)),
    "CHK1": (date(2025, 1, 6), date(2025, 1, 17)),
    "GHK2": (date(2025, 3, 24), date(2025, 4, 4)),
    "CN": (date(2025, 5, 12), date(2025, 5, 31)),
}
# The plan: identity data of all pupils reviewed in CSDL ngành by 16/05 (of 2025, then every year).
IDENTITY_REVIEW_DAYS = (date(2025, 5, 5), date(2025, 5, 16))
REVIEWED_SCHOOL, REVIEWED_SHARE = "lequangdinh", 0.8


def _moved(day: date, start: int) -> date:
    return day.replace(year=day.year + start - FIRST_YEAR)


def entry_windows(start: int, today: date) -> dict[str, tuple[date, date]]:
    """The windows of the year starting in `start`; in the year under way, when no window is open today,
    the next one opens today (a school lets teachers enter as they go), so that the demo's grids take entries."""
    windows = {code: (_moved(opens, start), _moved(closes, start)) for code, (opens, closes) in ENTRY_WINDOWS.items()}
    starts_on, ends_on = year_dates(start)
    if starts_on <= today <= ends_on and not any(o <= today <= c for o, c in windows.values()):
        code, (_opens, closes) = next((c, w) for c, w in windows.items() if w[0] > today)
        windows[code] = (today, closes)
    return windows


CLASSES = ("1A", "2A", "3A", "4A", "5A")
EXTRA_CLASSES = {"lequangdinh": ("5B",)}  # the principal's school has two grade-5 classes
# One GVCN per class; at Lê Quang Định gvcn5 also has 5B, the demo's teacher with two classes.
HOMEROOM = {"1A": "gvcn1", "2A": "gvcn2", "3A": "gvcn3", "4A": "gvcn4", "5A": "gvcn5", "5B": "gvcn5"}
SUBJECT_TEACHERS = {"ngoai_ngu_1": "gvbm1", "tin_hoc": "gvbm1", "am_nhac": "gvbm2", "mi_thuat": "gvbm2",
                    "gdtc": "gvbm2"}  # the GVCN teaches the other subjects of her class
# Optional subjects the demo schools teach: English from grade 1, as schools in the city do. None of
# them teaches a minority language.
TAUGHT_OPTIONAL = frozenset({"ngoai_ngu_1"})
PUPILS_PER_CLASS = (25, 35)
# A pupil not completing gets help over the summer and a supplementary assessment; most then complete,
# and the principal promotes most of the others; a few stay in their grade.
COMPLETED_AFTER_SUPPLEMENTARY = 0.6
PROMOTED_AFTER_SUPPLEMENTARY = 0.6

COUNTED = ("schools", "years", "classes", "pupils", "enrolments", "teaching_assignments", "subject_ratings",
           "trait_ratings", "period_notes", "identity_reviewed", "year_results")


def build_assessment_demo(today: date, *, schools: Collection[str] | None = None) -> dict[str, int]:
    """Give the demo schools (or those named) every year from 2024-2025 up to `today`'s, as of `today`;
    returns what was created."""
    created = Counter(dict.fromkeys(COUNTED, 0))
    for number, (code, _name, commune) in enumerate(SCHOOLS, start=1):
        if schools is not None and code not in schools:
            continue
        school = db.session.scalar(sa.select(School).where(School.code == code))
        if school is None:
            continue
        with school_scope(school.id):
            added = _SchoolBuilder(school, number, commune, today).build()
            if any(added.values()):
                added["schools"] = 1
            created.update(added)
    return dict(created)


def build_school_years(school: School, today: date, *, classes_per_grade: int,
                       pupils_per_class: tuple[int, int] = PUPILS_PER_CLASS) -> dict[str, int]:
    """One school's years as the demo builds them, with `classes_per_grade` classes in every grade, each
    taught by the grade's demo GVCN (a large school for the benchmarks; its staff built as the demo's)."""
    with school_scope(school.id):
        return dict(_SchoolBuilder(school, 1, school.commune, today, classes_per_grade=classes_per_grade,
                                   pupils_per_class=pupils_per_class).build())


def demo_years(today: date) -> list[str]:
    """The labels of the demo's years as of `today`, oldest first."""
    return [year_label(start) for start in range(FIRST_YEAR, max(FIRST_YEAR, school_year_start(today)) + 1)]


# --- people --------------------------------------------------------------------------------------------

def _weighted(*pairs: tuple[str, float]) -> tuple[tuple[str, ...], list[float]]:
    """Names with cumulative weights, for `random.choices`."""
    return tuple(name for name, _w in pairs), list(itertools.accumulate(w for _n, w in pairs))


def _zipf(names: str) -> tuple[tuple[str, ...], list[float]]:
    """Names listed from the most to the least popular."""
    return _weighted(*((name, 1 / (rank + 4)) for rank, name in enumerate(names.split(","))))


# Southern Vietnam: Huỳnh and Võ where the North says Hoàng and Vũ.
KINH_FAMILY = _weighted(("Nguyễn", 31), ("Trần", 11), ("Lê", 9.5), ("Phạm", 6), ("Huỳnh", 5.5), ("Võ", 5),
                        ("Phan", 4.5), ("Trương", 2.5), ("Đặng", 2), ("Bùi", 2), ("Hồ", 2), ("Đỗ", 1.5),
                        ("Ngô", 1.5), ("Hoàng", 1.5), ("Dương", 1.3), ("Vũ", 1), ("Đoàn", 0.8), ("Đinh", 0.8),
                        ("Lý", 0.8), ("Lâm", 0.8), ("Châu", 0.6), ("Mai", 0.6), ("Cao", 0.5), ("Lưu", 0.5),
                        ("Thái", 0.5), ("Tô", 0.5), ("Tạ", 0.4), ("La", 0.3))
HOA_FAMILY = _zipf("Lâm,Lý,Trương,Quách,Mã,Hứa,Tăng,Diệp,La,Huỳnh,Trần,Châu")
KHMER_FAMILY = _zipf("Thạch,Sơn,Danh,Kim,Lâm,Chau,Lý,Tăng")
MIDDLE = {
    "Nam": _zipf("Minh,Gia,Bảo,Hoàng,Quốc,Văn,Nhật,Đức,Anh,Thành,Đăng,Tấn,Khánh,Trung,Hữu,Thiên,Tuấn,Thanh,"
                 "Duy,Phúc,Trọng,Hoài"),
    "Nữ": _zipf("Ngọc,Bảo,Thị,Gia,Khánh,Minh,Phương,Thanh,Thùy,Hoàng,Kim,Thảo,Tuệ,Mai,Diệu,Như,Quỳnh,Tường,"
                "An,Cát,Hải,Uyên,Yến"),
}
GIVEN = {
    "Nam": _zipf("Khang,Huy,Bảo,Phúc,Khoa,Nam,Minh,Long,An,Khôi,Duy,Kiệt,Quân,Thịnh,Hào,Lâm,Phong,Tín,Trí,"
                 "Vinh,Đạt,Hiếu,Hưng,Nguyên,Thiện,Tuấn,Sơn,Tài,Hoàng,Vũ,Đăng,Khải,Luân,Nhân,Phát,Tân,"
                 "Thắng,Toàn,Trung,Tú,Việt,Khánh,Lộc,Quang,Thái,Kha,Bách,Hải,Dương"),
    "Nữ": _zipf("Anh,Vy,Ngân,Nhi,Hân,Linh,Trâm,Thư,Như,Quỳnh,Uyên,My,Châu,Hà,Ngọc,Thảo,Tiên,Trinh,Yến,Vân,"
                "Hương,Lan,Nhung,Phương,Diệp,Khuê,Tâm,An,Hạnh,Mai,Thy,Trân,Loan,Giang,Nhiên,Ly,Oanh,Hằng,"
                "Xuân"),
}
KHMER_GIVEN = {"Nam": _zipf("Sa Rinh,Ra Tha,Sóc Khum,Chanh Đa,Sô Phắt,Ta Ra,Minh Tài,Rô Mân"),
               "Nữ": _zipf("Sô Phi,Sa Ry,Srây Nich,Ly Na,Chanh Thu,Sô Phia,Kim Hoàn,Sa Rên")}
PARENT_MIDDLE = {"Nam": _zipf("Văn,Minh,Thanh,Hoàng,Quốc,Hữu,Công,Ngọc,Đức,Tấn,Trung,Phước"),
                 "Nữ": _zipf("Thị,Ngọc,Thanh,Thu,Kim,Mỹ,Hồng,Bích,Thúy,Phương")}
PARENT_GIVEN = {
    "Nam": _zipf("Hùng,Dũng,Tuấn,Hải,Sơn,Phong,Thắng,Long,Tâm,Bình,Cường,Hòa,Trung,Phúc,Nghĩa,Tài,Vũ,Hiếu,"
                 "Lộc,Thanh,Nam,Khoa,Quang,Hậu"),
    "Nữ": _zipf("Lan,Hương,Hạnh,Trang,Thảo,Nhung,Loan,Hoa,Mai,Phương,Hằng,Tuyết,Diễm,Hà,Vân,Yến,Thu,Oanh,"
                "Ngọc,Nga,Liên,Dung,Trinh,Linh"),
}
ETHNICITY = _weighted(("Kinh", 95.5), ("Hoa", 3), ("Khmer", 1.5))
FAMILY_BY_ETHNICITY = {"Kinh": KINH_FAMILY, "Hoa": HOA_FAMILY, "Khmer": KHMER_FAMILY}

CITY = "TP. Hồ Chí Minh"
CITY_PID = "079"  # the province part of a personal ID (số định danh cá nhân)
BIRTH_DISTRICTS = _weighted(("Huyện Nhà Bè", 40), ("Quận 7", 25), ("Quận 1", 10), ("Quận 8", 8),
                            ("Huyện Bình Chánh", 6), ("Quận 4", 5), ("Quận 5", 3), ("Huyện Cần Giờ", 3))
PROVINCES = (  # where families who moved to Nhà Bè come from, with the code of their personal IDs
    ("Tỉnh Long An", "080"), ("Tỉnh Tiền Giang", "082"), ("Tỉnh Bến Tre", "083"), ("Tỉnh Trà Vinh", "084"),
    ("Tỉnh Vĩnh Long", "086"), ("Tỉnh Đồng Tháp", "087"), ("Tỉnh An Giang", "089"),
    ("Tỉnh Kiên Giang", "091"), ("TP. Cần Thơ", "092"), ("Tỉnh Sóc Trăng", "094"), ("Tỉnh Bạc Liêu", "095"),
    ("Tỉnh Cà Mau", "096"), ("Tỉnh Quảng Ngãi", "051"), ("Tỉnh Bình Định", "052"), ("Tỉnh Nghệ An", "040"),
    ("Tỉnh Thanh Hóa", "038"),
)
KHMER_PROVINCES = (("Tỉnh Sóc Trăng", "094"), ("Tỉnh Trà Vinh", "084"), ("Tỉnh Kiên Giang", "091"))
STREETS = {
    "Thị trấn Nhà Bè": ("Huỳnh Tấn Phát", "Nguyễn Bình", "Lê Văn Lương", "Dương Cát Lợi"),
    "Xã Phú Xuân": ("Huỳnh Tấn Phát", "Đào Tông Nguyên", "Phạm Hữu Lầu"),
    "Xã Phước Kiển": ("Lê Văn Lương", "Nguyễn Hữu Thọ", "Đào Sư Tích", "Phạm Hữu Lầu"),
    "Xã Long Thới": ("Nguyễn Văn Tạo", "Lê Văn Lương"),
    "Xã Nhơn Đức": ("Lê Văn Lương", "Nguyễn Bình", "Đào Sư Tích"),
    "Xã Phước Lộc": ("Đào Sư Tích", "Nguyễn Hữu Thọ", "Lê Văn Lương"),
    "Xã Hiệp Phước": ("Nguyễn Văn Tạo", "Đường số 1", "Đường số 4"),
}
DISABILITIES = ("Khuyết tật trí tuệ", "Khuyết tật học tập", "Khuyết tật vận động", "Khuyết tật nghe, nói",
                "Rối loạn phổ tự kỷ")
PERSONAL_PLAN_SHARE = 0.35  # the share of classes with one pupil on a personal education plan


# --- ratings -------------------------------------------------------------------------------------------

_Z = NormalDist().inv_cdf
# Per period (GHK1, CHK1, GHK2, CN): the share rated T (or Tốt) grows and the share rated C shrinks
# through the year, as teachers help the pupils who struggle; averages about 55/42/3 and 60/38/2.
SUBJECT_T_CUTS = tuple(_Z(1 - share) for share in (0.51, 0.55, 0.58, 0.61))
SUBJECT_C_CUTS = tuple(_Z(share) for share in (0.05, 0.034, 0.02, 0.004))
TRAIT_T_CUTS = tuple(_Z(1 - share) for share in (0.57, 0.60, 0.62, 0.65))
TRAIT_C_CUTS = tuple(_Z(share) for share in (0.035, 0.025, 0.015, 0.003))
SCORE_RANGE = {"T": (7, 10), "H": (5, 8), "C": (2, 4)}  # a test score goes with the level
# Days absent with leave in one period: mostly none, a few after a fever or a family trip.
ABSENCES, ABSENCE_WEIGHTS = (0, 1, 2, 3, 4, 5), (55, 80, 92, 97, 99, 100)

_GENERIC = {"T": ("Hoàn thành tốt nội dung môn học.", "Nắm vững kiến thức, tích cực phát biểu xây dựng bài."),
            "H": ("Hoàn thành nội dung môn học.", "Nắm được kiến thức cơ bản, cần tích cực hơn."),
            "C": ("Chưa hoàn thành một số nội dung; cần được hỗ trợ thêm.",)}
_NATURE = {"T": ("Hiểu bài, biết liên hệ thực tế tốt.",), "H": ("Nắm được kiến thức cơ bản của bài học.",)}
SUBJECT_COMMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "tieng_viet": {
        "T": ("Đọc to, rõ ràng, diễn cảm; viết đúng chính tả.", "Đọc lưu loát, viết chữ đẹp, trình bày sạch sẽ.",
              "Viết đoạn văn mạch lạc, dùng từ hay."),
        "H": ("Đọc đúng nhưng còn chậm, cần luyện đọc thêm.", "Viết còn sai chính tả, cần cẩn thận hơn.",
              "Cần mở rộng vốn từ khi viết đoạn văn."),
        "C": ("Đọc còn đánh vần, viết sai nhiều lỗi chính tả; cần được hỗ trợ thêm.",),
    },
    "toan": {
        "T": ("Tính toán nhanh, chính xác; giải toán có lời văn tốt.", "Nắm vững kiến thức, vận dụng linh hoạt."),
        "H": ("Biết làm các phép tính, cần cẩn thận hơn khi tính.", "Giải toán có lời văn còn chậm, cần luyện thêm."),
        "C": ("Còn nhầm lẫn khi thực hiện phép tính; cần luyện tập thêm ở nhà.",),
    },
    "ngoai_ngu_1": {
        "T": ("Phát âm chuẩn, mạnh dạn giao tiếp bằng tiếng Anh.", "Nhớ từ vựng tốt, nghe hiểu nhanh."),
        "H": ("Nhớ được từ vựng cơ bản, cần mạnh dạn nói hơn.", "Cần luyện phát âm và ôn từ vựng thường xuyên."),
        "C": ("Chưa nhớ từ vựng cơ bản; cần ôn luyện thêm.",),
    },
    "dao_duc": {"T": ("Hiểu và thực hiện tốt các chuẩn mực hành vi đã học.",),
                "H": ("Biết thực hiện các hành vi đạo đức đã học.",)},
    "tn_xh": _NATURE, "khoa_hoc": _NATURE, "ls_dl": _NATURE,
    "tin_hoc": {"T": ("Thao tác máy tính thành thạo, hoàn thành tốt bài thực hành.",),
                "H": ("Thực hiện được các thao tác cơ bản, cần luyện gõ phím thêm.",)},
    "cong_nghe": {"T": ("Làm sản phẩm đúng kĩ thuật, sáng tạo.",), "H": ("Làm được sản phẩm theo hướng dẫn.",)},
    "gdtc": {"T": ("Thực hiện đúng, đẹp các động tác; tích cực tập luyện.",),
             "H": ("Thực hiện được các động tác cơ bản.",)},
    "am_nhac": {"T": ("Hát đúng giai điệu, thuộc lời, biểu diễn tự tin.",),
                "H": ("Hát đúng giai điệu, cần mạnh dạn biểu diễn hơn.",)},
    "mi_thuat": {"T": ("Vẽ đẹp, phối màu hài hòa, có sáng tạo.",),
                 "H": ("Hoàn thành bài vẽ, cần tô màu cẩn thận hơn.",)},
    "hdtn": {"T": ("Hăng hái tham gia các hoạt động trải nghiệm.",),
             "H": ("Có tham gia các hoạt động, cần chủ động hơn.",)},
}
TRAIT_COMMENTS: dict[str, tuple[str, str]] = {  # code: (Tốt, Đạt)
    "yeu_nuoc": ("Yêu quê hương, kính trọng thầy cô, ông bà.", "Biết kính trọng thầy cô, yêu quý bạn bè."),
    "nhan_ai": ("Biết quan tâm, giúp đỡ bạn bè.", "Hòa đồng với bạn bè."),
    "cham_chi": ("Chăm học, chăm làm, tích cực tham gia các hoạt động.", "Có ý thức học tập, cần chăm chỉ hơn."),
    "trung_thuc": ("Thật thà, mạnh dạn nhận lỗi khi làm sai.", "Thật thà trong học tập và sinh hoạt."),
    "trach_nhiem": ("Có trách nhiệm với bản thân và tập thể lớp.", "Biết giữ gìn đồ dùng học tập, cần chủ động hơn."),
    "tu_chu_tu_hoc": ("Tự giác học tập, chuẩn bị bài đầy đủ.", "Tự làm được việc của mình, đôi khi cần nhắc nhở."),
    "giao_tiep_hop_tac": ("Mạnh dạn giao tiếp, hợp tác tốt khi làm việc nhóm.", "Biết hợp tác với bạn trong nhóm."),
    "gqvd_sang_tao": ("Biết đặt câu hỏi, tìm cách giải quyết vấn đề.", "Giải quyết được vấn đề đơn giản."),
    "ngon_ngu": ("Diễn đạt rõ ràng, mạch lạc.", "Diễn đạt được ý của mình, cần mạch lạc hơn."),
    "tinh_toan": ("Tính toán nhanh, chính xác.", "Biết tính toán, cần cẩn thận hơn."),
    "khoa_hoc": ("Ham tìm hiểu thế giới tự nhiên.", "Biết quan sát, nhận xét sự vật xung quanh."),
    "tham_mi": ("Cảm nhận và yêu thích cái đẹp.", "Biết nhận ra cái đẹp trong cuộc sống."),
    "the_chat": ("Khỏe mạnh, tích cực tập thể dục.", "Tham gia được các hoạt động thể chất."),
    "cong_nghe": ("Sử dụng đồ dùng, dụng cụ đúng cách, an toàn.", "Biết sử dụng một số dụng cụ đơn giản."),
    "tin_hoc": ("Sử dụng máy tính đúng cách, hiệu quả.", "Biết sử dụng máy tính ở mức cơ bản."),
}
TRAIT_C_COMMENT = "Cần cố gắng hơn; giáo viên và gia đình cùng nhắc nhở, giúp đỡ."


@dataclass(frozen=True)
class _Learner:
    """A pupil as the generator sees her: how strong she is drives every rating, every year."""

    enrolment_id: int
    gender: str
    birth_date: date
    ability: float  # N(0, 1): subjects
    conduct: float  # correlated with ability: qualities and competencies
    growth: float  # height against the age's average, in standard deviations
    bmi: float

    @classmethod
    def of(cls, school_code: str, enrolment_id: int, pupil_code: str, gender: str, birth_date: date,
           personal_plan: bool) -> _Learner:
        # Drawn from the pupil's own seed, so that the same pupil is as strong in every year and every run.
        rng = random.Random(f"hocba-demo-pupil-{school_code}-{pupil_code}")
        ability = rng.gauss(0, 1) - (1.2 if personal_plan else 0)
        return cls(enrolment_id, gender, birth_date, ability, conduct=0.85 * ability + 0.53 * rng.gauss(0, 1),
                   growth=rng.gauss(0, 1), bmi=min(27.0, max(12.5, rng.gauss(15.4, 2.0))))


@dataclass(frozen=True, slots=True)
class _Sheet:
    """A column of ratings one teacher saved at once, in plain values: reading ORM attributes for each of
    200,000 rows would cost seconds."""

    period_id: int
    position: int  # 0 for GHK1 ... 3 for CN
    opens_on: date
    entered: datetime


PENDING = (TeachingAssignment, SubjectRating, TraitRating, PeriodNote, YearResult, Award)


class _SchoolBuilder:
    """Builds one school's years: catalogue and classes through the ORM, the rest with bulk inserts."""

    def __init__(self, school: School, number: int, commune: str, today: date, *, classes_per_grade: int = 0,
                 pupils_per_class: tuple[int, int] = PUPILS_PER_CLASS) -> None:
        self.school, self.number, self.commune, self.today = school, number, commune, today
        # The demo's classes, or `classes_per_grade` classes in every grade (1A..1F, ...: a large school).
        self.class_names = (tuple(f"{grade}{letter}" for grade in range(1, 6)
                                  for letter in "ABCDEFGHIJ"[:classes_per_grade]) if classes_per_grade
                            else CLASSES + EXTRA_CLASSES.get(school.code, ()))
        self.pupils_per_class = pupils_per_class
        self.school_id = school.id
        self.rng = random.Random(f"hocba-demo-{school.code}")
        self.now = utcnow()
        self.serial = db.session.scalar(sa.select(sa.func.count()).select_from(Pupil)) or 0
        self.created: Counter[str] = Counter()
        # Rows to insert, per model, in an order that keeps foreign keys satisfied.
        self.pending: dict[Any, list[dict[str, Any]]] = {m: [] for m in PENDING}
        self.teachers = self._teachers()

    def _teachers(self) -> dict[str, int]:
        prefixes = sorted({"ht", *HOMEROOM.values(), *SUBJECT_TEACHERS.values()})
        wanted = {f"{prefix}.{self.school.code}": prefix for prefix in prefixes}
        found = dict(db.session.execute(sa.select(User.username, User.id).where(User.username.in_(wanted))).all())
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise LookupError(f"demo teachers missing (build the demo staff first): {', '.join(missing)}")
        return {wanted[username]: user_id for username, user_id in found.items()}

    def build(self) -> Counter[str]:
        previous: SchoolYear | None = None
        for start in range(FIRST_YEAR, school_year_start(self.today) + 1):
            year = db.session.scalar(sa.select(SchoolYear).where(SchoolYear.name == year_label(start)))
            if year is None:
                year = self._new_year(start, previous)
            self._fill_periods(year)
            self._flush()
            if self.today > year.ends_on:
                self._settle(year)
                self._flush()
            previous = year
        return self.created

    def _flush(self) -> None:
        # One plain executemany per table: Core, as the ORM's bulk insert would spend a second more on
        # per-row bookkeeping that rows without relationships do not need.
        for model, rows in self.pending.items():
            if rows:
                db.session.execute(sa.insert(model.__table__), rows)
                self.created[model.__tablename__] += len(rows)
                rows.clear()

    # --- a new year ----------------------------------------------------------------------------------

    def _new_year(self, start: int, previous: SchoolYear | None) -> SchoolYear:
        name = year_label(start)
        starts_on, ends_on = year_dates(start)
        self.rng = random.Random(f"hocba-demo-{self.school.code}-{name}")
        # A new year copies the last one's catalogue and thresholds, as the school's set-up page does.
        year = build_year(self.school_id, name, starts_on, ends_on, copy_from=previous)
        windows = entry_windows(start, self.today)
        for period in year.periods:
            period.entry_opens_on, period.entry_closes_on = windows[period.code]
        classes = [SchoolClass(school_id=self.school_id, school_year=year, name=name, grade=int(name[0]),
                               homeroom_teacher_id=self.teachers[HOMEROOM.get(name, f"gvcn{name[0]}")])
                   for name in self.class_names]
        db.session.add(year)
        db.session.add_all(classes)
        db.session.flush()
        moving = self._moving_up(previous) if previous is not None else {}
        for grade in sorted({c.grade for c in classes}):
            group = [c for c in classes if c.grade == grade]
            if previous is None or grade == 1:
                for school_class in group:
                    self._new_pupils(start, school_class)
            # Pupils moving up (and those kept in their grade) are shared out among the grade's classes.
            for index, pupil_id in enumerate(moving.get(grade, [])):
                self._enrol(year, group[index % len(group)], [pupil_id])
        for school_class in classes:
            self.pending[TeachingAssignment].extend(
                {"school_id": self.school_id, "class_id": school_class.id, "subject_id": subject.id,
                 "teacher_id": teacher} for subject, _spec, teacher in self._taught(year, school_class))
        self.created.update(years=1, classes=len(classes))
        audit.record("demo.assessment_built", actor=None, school_id=self.school_id, obj=year,
                     summary=f"{self.school.name}: {name}", changes={"classes": len(classes)})
        return year

    def _moving_up(self, previous: SchoolYear) -> dict[int, list[int]]:
        """Next year's grade -> pupil ids: promoted a grade, or kept by the principal's decision; grade 5
        completes primary school and leaves, as do pupils who moved away."""
        rows = db.session.execute(
            sa.select(Enrolment.pupil_id, SchoolClass.grade, YearResult.outcome, YearResult.promoted)
            .join(SchoolClass, SchoolClass.id == Enrolment.class_id)
            .outerjoin(YearResult, YearResult.enrolment_id == Enrolment.id)
            .where(Enrolment.school_year_id == previous.id,
                   Enrolment.status.in_((EnrolmentStatus.STUDYING, EnrolmentStatus.TRANSFERRED_IN)))
            .order_by(Enrolment.pupil_id)).all()
        moving: dict[int, list[int]] = defaultdict(list)
        for pupil_id, grade, outcome, promoted in rows:
            kept = outcome == Outcome.NOT_COMPLETED.value and promoted is False
            moving[grade if kept else grade + 1].append(pupil_id)
        moving.pop(6, None)
        return moving

    def _taught(self, year: SchoolYear, school_class: SchoolClass) -> list[tuple[Any, Any, int]]:
        """(subject, its grade settings, teacher) of every subject the class is taught."""
        homeroom = school_class.homeroom_teacher_id
        return [(s, spec, self.teachers.get(SUBJECT_TEACHERS.get(s.code, ""), homeroom))  # type: ignore[misc]
                for s in year.subjects if (spec := s.for_grade(school_class.grade)) is not None
                and (not spec.optional or s.code in TAUGHT_OPTIONAL)]

    def _enrol(self, year: SchoolYear, school_class: SchoolClass, pupil_ids: list[int]) -> None:
        db.session.execute(sa.insert(Enrolment.__table__), [
            {"school_id": self.school_id, "pupil_id": pupil_id, "school_year_id": year.id,
             "class_id": school_class.id, "status": EnrolmentStatus.STUDYING.value, "enrolled_on": year.starts_on}
            for pupil_id in pupil_ids])
        self.created["enrolments"] += len(pupil_ids)

    # --- pupils --------------------------------------------------------------------------------------

    def _new_pupils(self, start: int, school_class: SchoolClass) -> None:
        count = self.rng.randint(*self.pupils_per_class)
        on_plan = self.rng.randrange(count) if self.rng.random() < PERSONAL_PLAN_SHARE else None
        reviewer = school_class.homeroom_teacher_id if self.school.code == REVIEWED_SCHOOL else None
        taken: set[str] = set()
        rows = [self._pupil(start, school_class.grade, taken, personal_plan=index == on_plan, reviewer=reviewer)
                for index in range(count)]
        pupil_ids = db.session.scalars(sa.insert(Pupil).returning(Pupil.id, sort_by_parameter_order=True),
                                       rows).all()
        self._enrol(school_class.school_year, school_class, list(pupil_ids))
        self.created.update(pupils=len(rows),
                            identity_reviewed=sum(row["identity_reviewed_at"] is not None for row in rows))

    def _pupil(self, start: int, grade: int, taken: set[str], *, personal_plan: bool,
               reviewer: int | None) -> dict[str, Any]:
        rng = self.rng
        self.serial += 1
        gender = "Nam" if rng.random() < 0.515 else "Nữ"  # Vietnam's sex ratio at birth is about 1.1
        ethnicity = self._pick(ETHNICITY)
        family, mother_family = (self._pick(FAMILY_BY_ETHNICITY[ethnicity]) for _ in range(2))
        full_name = self._full_name(family, mother_family, gender, ethnicity)
        while full_name in taken:  # two pupils of one class with the same name would confuse the demo
            full_name = self._full_name(family, mother_family, gender, ethnicity)
        taken.add(full_name)
        first_year = start - grade + 1  # the year the pupil entered grade 1
        born_in = date(first_year - 6, 1, 1)  # aged six in the year she entered grade 1
        birth_date = born_in + timedelta(days=rng.randrange((born_in.replace(year=born_in.year + 1) - born_in).days))
        birth_place, hometown, id_prefix = self._origin(ethnicity)
        family_note = rng.random()
        reviewed_at = self._reviewed_at(start) if reviewer else None
        return {
            "school_id": self.school_id,
            "pupil_code": f"79{self.number:02d}{first_year % 100:02d}{self.serial:04d}",
            "full_name": full_name,
            "gender": gender,
            "birth_date": birth_date,
            "ethnicity": ethnicity,
            "nationality": "Việt Nam",
            "birth_place": birth_place,
            "hometown": hometown,
            "address": self._address(),
            "father_name": None if family_note < 0.03 else self._parent(family, "Nam"),
            "mother_name": self._parent(mother_family, "Nữ"),
            "guardian_name": self._parent(mother_family, "Nữ") if family_note < 0.012 else None,  # a grandmother
            "personal_id": f"{id_prefix}{2 if gender == 'Nam' else 3}{birth_date.year % 100:02d}"
                           f"{rng.randrange(10**6):06d}",
            "disability": rng.choice(DISABILITIES) if personal_plan else None,
            "personal_plan": personal_plan,
            "register_number": f"{self.serial:04d}/{first_year}",
            "identity_reviewed_at": reviewed_at,
            "identity_reviewed_by_id": reviewer if reviewed_at else None,
            "created_at": self.now,
            "updated_at": self.now,
        }

    def _pick(self, pool: tuple[tuple[str, ...], list[float]]) -> str:
        return self.rng.choices(pool[0], cum_weights=pool[1])[0]

    def _full_name(self, family: str, mother_family: str, gender: str, ethnicity: str) -> str:
        if ethnicity == "Khmer":
            return f"{family} {'Thị ' if gender == 'Nữ' and self.rng.random() < 0.5 else ''}" \
                   f"{self._pick(KHMER_GIVEN[gender])}"
        parts = [family]
        if mother_family != family and self.rng.random() < 0.07:
            parts.append(mother_family)  # "Trần Lê Bảo Anh": the mother's family name as a middle name
        parts.append(self._distinct(MIDDLE[gender], parts))
        if self.rng.random() < 0.15:
            parts.append(self._distinct(MIDDLE[gender], [*parts, "Thị"]))  # "Thị" comes first or not at all
        parts.append(self._distinct(GIVEN[gender], parts))
        return " ".join(parts)

    def _distinct(self, pool: tuple[tuple[str, ...], list[float]], taken: list[str]) -> str:
        """A name from the pool that is not in the full name yet: no "Hoàng Hoàng" or "Bảo Bảo"."""
        name = self._pick(pool)
        while name in taken:
            name = self._pick(pool)
        return name

    def _parent(self, family: str, gender: str) -> str:
        return f"{family} {self._pick(PARENT_MIDDLE[gender])} {self._pick(PARENT_GIVEN[gender])}"

    def _origin(self, ethnicity: str) -> tuple[str, str, str]:
        """Nơi sinh, quê quán and the province code that starts the personal ID."""
        rng = self.rng
        if ethnicity == "Khmer" and rng.random() < 0.7:
            province, code = rng.choice(KHMER_PROVINCES)
            return province, province, code
        if rng.random() < 0.8:
            roots = CITY if ethnicity == "Hoa" or rng.random() < 0.5 else rng.choice(PROVINCES)[0]
            return f"{self._pick(BIRTH_DISTRICTS)}, {CITY}", roots, CITY_PID
        province, code = rng.choice(PROVINCES)
        return province, province, code

    def _address(self) -> str:
        rng = self.rng
        commune = self.commune if rng.random() < 0.9 or self.commune not in STREETS else rng.choice(list(STREETS))
        street = rng.choice(STREETS.get(commune, ("Huỳnh Tấn Phát",)))
        house = f"{rng.randint(1, 300)}" + (f"/{rng.randint(1, 40)}" if rng.random() < 0.6 else "")
        unit = f"khu phố {rng.randint(1, 7)}" if commune.startswith("Thị trấn") else f"ấp {rng.randint(1, 5)}"
        road = street if street.startswith("Đường") else f"đường {street}"
        return f"{house} {road}, {unit}, {commune}, huyện Nhà Bè, {CITY}"

    def _reviewed_at(self, start: int) -> datetime | None:
        """When the GVCN marked the identity data reviewed: most pupils, before the plan's deadline in May."""
        first, last = (_moved(day, start) for day in IDENTITY_REVIEW_DAYS)
        last = min(last, self.today)
        if last < first or self.rng.random() >= REVIEWED_SHARE:
            return None
        day = first + timedelta(days=self.rng.randrange((last - first).days + 1))
        return datetime.combine(day, time(1 + self.rng.randrange(8), self.rng.randrange(60)), tzinfo=UTC)

    # --- ratings -------------------------------------------------------------------------------------

    def _fill_periods(self, year: SchoolYear) -> None:
        """The ratings of every period whose window opened before today and that holds none yet (a window
        opened today is left to the teachers)."""
        opened = [p for p in year.periods if p.entry_opens_on is not None and p.entry_opens_on < self.today]
        if not opened:
            return
        ids = [p.id for p in opened]
        entered = set()
        for model in (SubjectRating, TraitRating, PeriodNote):
            entered.update(db.session.scalars(sa.select(model.period_id).where(model.period_id.in_(ids)).distinct()))
        todo = [p for p in opened if p.id not in entered]
        if not todo:
            return
        learners: dict[int, list[_Learner]] = defaultdict(list)
        for row in db.session.execute(
                sa.select(Enrolment.id, Enrolment.class_id, Pupil.pupil_code, Pupil.gender, Pupil.birth_date,
                          Pupil.personal_plan).join(Pupil, Pupil.id == Enrolment.pupil_id)
                .where(Enrolment.school_year_id == year.id,
                       Enrolment.status.in_((EnrolmentStatus.STUDYING, EnrolmentStatus.TRANSFERRED_IN)))
                .order_by(Enrolment.id)):
            learners[row.class_id].append(_Learner.of(self.school.code, row.id, row.pupil_code, row.gender,
                                                      row.birth_date, row.personal_plan))
        for period in todo:
            self.rng = random.Random(f"hocba-demo-{self.school.code}-{year.name}-{period.code}")
            for school_class in year.classes:
                self._fill_class(year, school_class, period, learners[school_class.id])

    def _fill_class(self, year: SchoolYear, school_class: SchoolClass, period: Period,
                    learners: list[_Learner]) -> None:
        homeroom = school_class.homeroom_teacher_id
        traits = [t for t in year.traits if t.from_grade <= school_class.grade]
        sheet = self._sheet(period)
        for subject, spec, teacher in self._taught(year, school_class):
            # A pupil's knack for a subject stays the same through the year, whichever period is drawn first.
            knack = random.Random(f"hocba-demo-{self.school.code}-{year.name}-{school_class.name}-{subject.code}")
            skills = [knack.gauss(0, 1) for _learner in learners]
            comments = SUBJECT_COMMENTS.get(subject.code, _GENERIC)
            tested, subject_id = spec.is_tested(period.code), subject.id
            self.pending[SubjectRating].extend(
                self._subject_rating(learner, skill, sheet, subject_id, tested, comments, teacher)
                for learner, skill in zip(learners, skills, strict=True))
        for trait in traits:
            trait_id, comments = trait.id, TRAIT_COMMENTS.get(trait.code, ("Thực hiện tốt.", "Đạt yêu cầu."))
            self.pending[TraitRating].extend(
                self._trait_rating(learner, sheet, trait_id, comments, homeroom) for learner in learners)
        self.pending[PeriodNote].extend(self._period_note(learner, sheet) for learner in learners)

    def _sheet(self, period: Period) -> _Sheet:
        """A teacher enters a whole column at once, in the evening, some day of the window."""
        opens_on, closes_on = period.entry_opens_on, period.entry_closes_on
        assert opens_on is not None and closes_on is not None
        last = min(closes_on, self.today)
        day = opens_on + timedelta(days=self.rng.randrange((last - opens_on).days + 1))
        entered = datetime.combine(day, time(12 + self.rng.randrange(4), self.rng.randrange(60)), tzinfo=UTC)
        return _Sheet(period.id, period.position, opens_on, entered)

    def _subject_rating(self, learner: _Learner, skill: float, sheet: _Sheet, subject_id: int, tested: bool,
                        comments: dict[str, tuple[str, ...]], teacher_id: int) -> dict[str, Any]:
        rng, position = self.rng, sheet.position
        latent = 0.95 * learner.ability + 0.15 * skill + 0.27 * rng.gauss(0, 1)
        level = "T" if latent > SUBJECT_T_CUTS[position] else "C" if latent < SUBJECT_C_CUTS[position] else "H"
        score = None
        if tested:
            low, high = SCORE_RANGE[level]
            score = min(high, max(low, round(8.3 + 1.4 * latent + rng.gauss(0, 0.6))))
        return {"school_id": self.school_id, "enrolment_id": learner.enrolment_id, "subject_id": subject_id,
                "period_id": sheet.period_id, "level": level, "score": score,
                "comment": rng.choice(comments.get(level) or _GENERIC[level]), "version": 1,
                "updated_at": sheet.entered, "updated_by_id": teacher_id}

    def _trait_rating(self, learner: _Learner, sheet: _Sheet, trait_id: int, comments: tuple[str, str],
                      teacher_id: int | None) -> dict[str, Any]:
        latent = 0.9 * learner.conduct + 0.44 * self.rng.gauss(0, 1)
        if latent > TRAIT_T_CUTS[sheet.position]:
            level, comment = "T", comments[0]
        elif latent < TRAIT_C_CUTS[sheet.position]:
            level, comment = "C", TRAIT_C_COMMENT
        else:
            level, comment = "Đ", comments[1]
        return {"school_id": self.school_id, "enrolment_id": learner.enrolment_id, "trait_id": trait_id,
                "period_id": sheet.period_id, "level": level, "comment": comment, "version": 1,
                "updated_at": sheet.entered, "updated_by_id": teacher_id}

    def _period_note(self, learner: _Learner, sheet: _Sheet) -> dict[str, Any]:
        """Height and weight measured as the window opens, and the days absent in the period."""
        rng = self.rng
        age = (sheet.opens_on - learner.birth_date).days / 365.25
        average = 115.5 + 5.7 * (age - 6) + (0.8 if learner.gender == "Nam" else 0)  # cm, city children
        height = round(average * (1 + 0.042 * learner.growth))
        weight = round((learner.bmi + 0.25 * (age - 6)) * (height / 100) ** 2, 1)
        excused = rng.choices(ABSENCES, cum_weights=ABSENCE_WEIGHTS)[0]
        unexcused = (rng.random() < 0.04) + (rng.random() < 0.01)
        return {"school_id": self.school_id, "enrolment_id": learner.enrolment_id, "period_id": sheet.period_id,
                "height_cm": height, "weight_kg": weight, "absent_excused": excused,
                "absent_unexcused": int(unexcused), "version": 1, "updated_at": sheet.entered}

    # --- the year's end ------------------------------------------------------------------------------

    def _settle(self, year: SchoolYear) -> None:
        """Results of a year that is over, for every pupil who has none: the computed result confirmed and
        reviewed by the GVCN, the year-end titles, and for a pupil not completing the summer's
        supplementary assessment and the principal's decision."""
        from portal.results.services import EXCELLENT_TITLE, EXEMPLARY_TITLE, class_results

        rng = random.Random(f"hocba-demo-{self.school.code}-{year.name}-results")
        principal = self.teachers["ht"]
        story_told: set[int] = set()
        for school_class in year.classes:
            homeroom = school_class.homeroom_teacher_id
            for entry in class_results(school_class):
                if entry.stored is not None:
                    continue
                outcome = entry.computed.outcome or (Outcome.COMPLETED if entry.pupil.personal_plan else None)
                if outcome is None:
                    continue  # ratings missing (a teacher's own entry): left to the teacher
                confirmed = datetime.combine(year.ends_on - timedelta(days=rng.randrange(4, 12)),
                                             time(2 + rng.randrange(8), rng.randrange(60)), tzinfo=UTC)
                row = {"school_id": self.school_id, "enrolment_id": entry.enrolment.id,
                       "computed_outcome": entry.computed.outcome.value if entry.computed.outcome else None,
                       "reasons": list(entry.computed.reasons), "outcome": outcome.value,
                       "confirmed_by_id": homeroom, "confirmed_at": confirmed,
                       "completion": completion_text(outcome, school_class.grade), "supplementary_note": "",
                       "supplementary_on": None, "supplementary_passed": None,
                       "promoted": None, "decided_by_id": None, "decided_at": None,
                       "results_reviewed_at": confirmed + timedelta(days=1), "results_reviewed_by_id": homeroom}
                if outcome is Outcome.NOT_COMPLETED:
                    # Điều 11: help over the summer, then the supplementary assessment. Most then complete
                    # (grade 5's first such pupil always does: the demo's story); the others go to the
                    # principal, who promotes most of them.
                    assessed = date(year.ends_on.year, 8, rng.randint(5, 20))
                    passed = rng.random() < COMPLETED_AFTER_SUPPLEMENTARY or (
                        school_class.grade == 5 and school_class.id not in story_told)
                    if passed and school_class.grade == 5:
                        story_told.add(school_class.id)
                    row.update(supplementary_note="Ôn tập trong hè các nội dung chưa hoàn thành; làm lại bài kiểm tra "
                                                  "cuối năm", supplementary_on=assessed, supplementary_passed=passed)
                    if passed:
                        row.update(completion=completion_text(Outcome.COMPLETED, school_class.grade))
                    else:
                        row.update(promoted=rng.random() < PROMOTED_AFTER_SUPPLEMENTARY, decided_by_id=principal,
                                   decided_at=datetime.combine(assessed + timedelta(days=2), time(3), tzinfo=UTC))
                self.pending[YearResult].append(row)
                if outcome is Outcome.EXCELLENT or (outcome is Outcome.GOOD and rng.random() < 0.3):
                    title = EXCELLENT_TITLE if outcome is Outcome.EXCELLENT else EXEMPLARY_TITLE
                    self.pending[Award].append({"school_id": self.school_id, "enrolment_id": entry.enrolment.id,
                                                "title": title, "awarded_on": None, "created_at": confirmed})
