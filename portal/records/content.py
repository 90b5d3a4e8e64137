"""The content of one record version: a plain, JSON-able dict built from the database once.

Everything that renders or exports a record (PDF, HTML preview, XML, canonical JSON) reads only this
dict, never the database, so that a record version is rendered the same way forever. Every string is
NFC; dates are ISO `YYYY-MM-DD` strings; missing values are None (never "").

    {
      "format": 1,                                  # version of this dict's layout
      "record": {
        "code": "HB7Q2M4K9XTR",                     # verification code of this version (printed, in the QR)
        "number": 1,                                # 1, 2, ... per pupil; a correction is number + 1
        "replaces": None | "HB....",                # code of the version this one corrects
        "created_at": "2025-05-28T03:12:00Z",       # UTC
        "scope_grade": 5,                           # grade of the latest year page
        "verify_url": "https://.../verify/HB7Q2M4K9XTR",
      },
      "school": {"name": ..., "moet_code": ... | None, "commune": ..., "district": ..., "city": ...,
                 "principal": "Võ Thị Lài" | None},
      "pupil": {"pupil_code": ..., "full_name": ..., "gender": "Nam" | "Nữ" | None,
                "birth_date": "2014-09-02" | None, "ethnicity", "nationality", "birth_place", "hometown",
                "address", "father_name", "mother_name", "guardian_name", "register_number",
                "personal_plan": bool, "disability": str | None},
      "history": [                                  # quá trình học tập, oldest first
        {"school_year": "2020-2021", "class_name": "1A", "school_name": ..., "enrolled_on": "2020-09-05" | None,
         "confirmed_by": "Võ Thị Lài" | None}
      ],
      "years": [                                    # one page per school year, oldest first
        {
          "school_year": "2024-2025", "class_name": "5A", "grade": 5, "school_name": ...,
          "source": "this_school" | "received",     # received: from another school's issued record
          "homeroom_teacher": str | None, "principal": str | None,
                                                    # principal and school_name: that year's, as its records
                                                    # were issued (snapshot.as_issued); the own year's today's
          "height_cm": int | None, "weight_kg": float | None,
          "absent_excused": int, "absent_unexcused": int,
          "subjects": [{"code", "name", "level": "T"|"H"|"C"|None, "score": int | None, "comment": str}],
          "qualities": [{"code", "name", "level": "T"|"Đ"|"C"|None, "comment": str}],
          "general_competencies": [... same as qualities ...],
          "specific_competencies": [... same as qualities ...],
          "outcome": "hoan_thanh_xuat_sac" | "hoan_thanh_tot" | "hoan_thanh" | "chua_hoan_thanh" | None,
          "outcome_label": "Hoàn thành xuất sắc" | ... | None,
          "awards": [{"title": str, "awarded_on": "2025-05-20" | None}],
          "completion": "Hoàn thành chương trình lớp học" | "Hoàn thành chương trình tiểu học" | None,
          "promoted": True | False | None,          # principal's decision (lên lớp) for pupils not completing
          "supplementary_note": str,
          "place": "Nhà Bè", "dated_on": "2025-05-28" | None,
        }
      ],
    }

The subjects' `score` is the CN (cuối năm) periodic test score; `level` and `comment` are the CN ones.
"""

from __future__ import annotations

CONTENT_FORMAT = 1

# Labels of the levels and outcomes: `portal.assessment.classification` (SubjectLevel, TraitLevel, Outcome).
TRAIT_GROUPS = ("qualities", "general_competencies", "specific_competencies")
# The three signature fields every record PDF carries before its first signature, in signing order:
# the homeroom teacher (GVCN), the principal (Hiệu trưởng), the school's seal (con dấu số).
SIGNATURE_FIELDS = ("gvcn", "hieu_truong", "con_dau")
