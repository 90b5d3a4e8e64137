"""Record contents (the dict of `portal.records.content`) for tests that need no database."""

from __future__ import annotations

import copy
from typing import Any

from portal.assessment.catalogue import load_programme

_COMMENTS = {
    "T": "Hoàn thành tốt nội dung môn học; tích cực, chủ động trong học tập.",
    "H": "Hoàn thành nội dung môn học; cần cẩn thận hơn khi làm bài.",
}
LONG_COMMENT = ("Em đọc to, rõ ràng, diễn cảm; viết đúng chính tả, trình bày sạch đẹp; biết dùng từ ngữ "
                "phong phú, đặt câu đúng ngữ pháp và giàu hình ảnh. ") * 5


def _programme_rows(grade: int) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    programme = load_programme()
    subjects = []
    for subject in programme["subjects"]:
        taught = subject["grades"].get(str(grade))
        if taught is None or taught.get("optional"):
            continue
        tested = "CN" in taught.get("tested", [])
        subjects.append({"code": subject["code"], "name": subject["name"], "level": "T",
                         "score": 9 if tested else None, "comment": _COMMENTS["T"]})
    traits: dict[str, list[dict[str, Any]]] = {"qualities": [], "general_competencies": [],
                                                "specific_competencies": []}
    group = {"quality": "qualities", "general": "general_competencies", "specific": "specific_competencies"}
    for trait in programme["traits"]:
        if trait.get("from_grade", 1) > grade:
            continue
        traits[group[trait["kind"]]].append({"code": trait["code"], "name": trait["name"], "level": "T",
                                             "comment": "Tốt."})
    return subjects, traits


def year_page(grade: int, *, school_year: str | None = None, class_name: str | None = None) -> dict[str, Any]:
    start = 2019 + grade
    subjects, traits = _programme_rows(grade)
    return {
        "school_year": school_year or f"{start}-{start + 1}",
        "class_name": class_name or f"{grade}A",
        "grade": grade,
        "school_name": "Trường Tiểu học Lê Quang Định",
        "source": "this_school",
        "homeroom_teacher": "Nguyễn Thị Ánh Tuyết",
        "principal": "Võ Thị Lài",
        "height_cm": 110 + grade * 6,
        "weight_kg": 18.5 + grade * 3,
        "absent_excused": 2,
        "absent_unexcused": 0,
        "subjects": subjects,
        **traits,
        "outcome": "hoan_thanh_xuat_sac",
        "outcome_label": "Hoàn thành xuất sắc",
        "awards": [{"title": "Học sinh Xuất sắc", "awarded_on": f"{start + 1}-05-24"}],
        "completion": "Hoàn thành chương trình tiểu học" if grade == 5 else "Hoàn thành chương trình lớp học",
        "promoted": None,
        "supplementary_note": "",
        "place": "Nhà Bè",
        "dated_on": f"{start + 1}-05-28",
    }


def sample_content(years: int = 1, *, code: str = "HB7Q2M4K9XTR", number: int = 1,
                   replaces: str | None = None) -> dict[str, Any]:
    """A grade-5 pupil's record with `years` year pages (grades 6-years .. 5)."""
    grades = list(range(6 - years, 6))
    return {
        "format": 1,
        "record": {"code": code, "number": number, "replaces": replaces, "created_at": "2025-05-28T03:12:00Z",
                   "scope_grade": 5, "verify_url": f"http://127.0.0.1:5000/verify/{code}"},
        "school": {"name": "Trường Tiểu học Lê Quang Định", "moet_code": "79786401", "commune": "Xã Phước Kiển",
                   "district": "Huyện Nhà Bè", "city": "Thành phố Hồ Chí Minh", "principal": "Võ Thị Lài"},
        "pupil": {"pupil_code": "7978640123", "full_name": "Nguyễn Thị Ánh Tuyết", "gender": "Nữ",
                  "birth_date": "2014-09-02", "ethnicity": "Kinh", "nationality": "Việt Nam",
                  "birth_place": "Bệnh viện Từ Dũ, Quận 1, Thành phố Hồ Chí Minh",
                  "hometown": "Xã Hòa Hiệp, Huyện Xuyên Mộc, Tỉnh Bà Rịa - Vũng Tàu",
                  "address": "12/3 Đường Lê Văn Lương, Xã Phước Kiển, Huyện Nhà Bè",
                  "father_name": "Nguyễn Văn Đức", "mother_name": "Trần Thị Ngọc Hường", "guardian_name": None,
                  "register_number": "15/2020", "personal_plan": False, "disability": None},
        "history": [{"school_year": f"{2019 + g}-{2020 + g}", "class_name": f"{g}A",
                     "school_name": "Trường Tiểu học Lê Quang Định",
                     "enrolled_on": f"{2019 + g}-09-05" if g == grades[0] else None,
                     "confirmed_by": "Võ Thị Lài"} for g in grades],
        "years": [year_page(g) for g in grades],
    }


def longest_content(years: int = 5) -> dict[str, Any]:
    """The longest plausible values everywhere: names, addresses, 500-character comments, many awards."""
    content = copy.deepcopy(sample_content(years))
    long_name = "Tôn Nữ Hoàng Thị Phương Khánh Ngọc Quỳnh Như Nguyệt Ánh"
    content["pupil"].update(
        full_name=long_name,
        birth_place="Bệnh viện Phụ sản Quốc tế Sài Gòn, Phường Phạm Ngũ Lão, Quận 1, Thành phố Hồ Chí Minh, Việt Nam",
        hometown="Thôn Phước Thượng, Xã Phước Hưng, Huyện Tuy Phước, Tỉnh Bình Định, Việt Nam (quê nội)",
        address="Số 1234/56/78/9A Đường Huỳnh Tấn Phát, Ấp 3, Xã Phú Xuân, Huyện Nhà Bè, Thành phố Hồ Chí Minh",
        father_name="Công Tằng Tôn Nữ Nguyễn Phước Vĩnh Thụy Bảo Đại",
        mother_name="Huỳnh Lê Thị Thu Hương Ngọc Diễm Phương Trinh",
        guardian_name="Trương Nguyễn Hoàng Bảo Khánh Linh Đan",
        disability="Khuyết tật vận động (nhẹ), học theo kế hoạch giáo dục cá nhân",
    )
    content["school"]["name"] = "Trường Tiểu học Nguyễn Thị Định - Phân hiệu Ấp 4 Xã Hiệp Phước"
    for page in content["years"]:
        page["homeroom_teacher"] = "Nguyễn Hoàng Thị Phương Thảo Nguyên"
        for group in ("subjects", "qualities", "general_competencies", "specific_competencies"):
            for row in page[group]:
                row["comment"] = LONG_COMMENT[:500]
        page["awards"] = [{"title": "Học sinh Tiêu biểu hoàn thành tốt trong học tập và rèn luyện",
                           "awarded_on": page["dated_on"]}] + [
            {"title": f"Giải Nhất Hội thi Viết chữ đẹp cấp huyện lần thứ {n}, năm học {page['school_year']}",
             "awarded_on": page["dated_on"]} for n in range(1, 6)]
        page["supplementary_note"] = LONG_COMMENT[:300]
    return content
