"""The Điều 9 year-end result: boundary tables, then properties checked with Hypothesis."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.assessment.classification import (
    PERSONAL_PLAN_REASON,
    Classification,
    Outcome,
    SubjectLevel,
    SubjectResult,
    Thresholds,
    TraitLevel,
    TraitResult,
    YearEndInput,
    classify,
    completion_text,
    eligible_award,
)

T, H, C = SubjectLevel.T, SubjectLevel.H, SubjectLevel.C
TOT, DAT, CCG = TraitLevel.T, TraitLevel.D, TraitLevel.C
# Hypothesis keeps no example database: the suite leaves no .hypothesis/ folder in the work tree.
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)


def subject(
    name: str, level: SubjectLevel | None = T, score: int | None = 10, *, required: bool = True
) -> SubjectResult:
    return SubjectResult(code=name.lower(), name=name, level=level, score=score, score_required=required)


def trait(name: str, level: TraitLevel | None = TOT, kind: str = "quality") -> TraitResult:
    return TraitResult(code=f"{kind}:{name.lower()}", name=name, kind=kind, level=level)


def pupil() -> YearEndInput:
    """A grade-4 pupil who reaches Hoàn thành xuất sắc; tests change one subject or trait."""
    return YearEndInput(
        subjects=(subject("Tiếng Việt"), subject("Toán"), subject("Đạo đức", score=None, required=False)),
        traits=(trait("Chăm chỉ"), trait("Trung thực"), trait("Tự chủ và tự học", kind="competency")),
    )


def with_subject(name: str, **fields: object) -> YearEndInput:
    base = {s.name: s for s in pupil().subjects}[name]
    return _swap(pupil(), replace(base, **fields))


def with_trait(name: str, level: TraitLevel | None) -> YearEndInput:
    base = {t.name: t for t in pupil().traits}[name]
    return _swap(pupil(), replace(base, level=level))


def _swap(data: YearEndInput, item: SubjectResult | TraitResult) -> YearEndInput:
    if isinstance(item, SubjectResult):
        return replace(data, subjects=tuple(item if s.code == item.code else s for s in data.subjects))
    return replace(data, traits=tuple(item if t.code == item.code else t for t in data.traits))


# --- boundaries -------------------------------------------------------------------------------------

BOUNDARY_CASES = [
    # (id, input, expected outcome, a fragment every reason for a missed level must contain)
    ("all top marks", pupil(), Outcome.EXCELLENT, None),
    ("a 9 is enough for xuất sắc", with_subject("Toán", score=9), Outcome.EXCELLENT, None),
    ("an 8 is not", with_subject("Toán", score=8), Outcome.GOOD, "Toán được 8 điểm (cần từ 9)"),
    ("a 7 is enough for tốt", with_subject("Toán", score=7), Outcome.GOOD, "Toán được 7 điểm (cần từ 9)"),
    ("a 6 is not", with_subject("Tiếng Việt", score=6), Outcome.COMPLETED, "Tiếng Việt được 6 điểm"),
    ("a 5 is enough for hoàn thành", with_subject("Toán", score=5), Outcome.COMPLETED, "Toán được 5 điểm"),
    ("a 4 is not", with_subject("Toán", score=4), Outcome.NOT_COMPLETED, "Toán được 4 điểm"),
    ("a 1 is a valid score", with_subject("Toán", score=1), Outcome.NOT_COMPLETED, "Toán được 1 điểm"),
    ("one H among Ts", with_subject("Tiếng Việt", level=H), Outcome.COMPLETED, "Tiếng Việt mức Hoàn thành"),
    ("H on a subject with no test", with_subject("Đạo đức", level=H), Outcome.COMPLETED, "Đạo đức mức Hoàn thành"),
    ("one C subject", with_subject("Toán", level=C), Outcome.NOT_COMPLETED, "Toán mức Chưa hoàn thành"),
    ("one Đạt among Tốts", with_trait("Chăm chỉ", DAT), Outcome.COMPLETED, "phẩm chất Chăm chỉ mức Đạt"),
    (
        "one competency Đạt",
        with_trait("Tự chủ và tự học", DAT),
        Outcome.COMPLETED,
        "năng lực Tự chủ và tự học mức Đạt",
    ),
    ("one C trait", with_trait("Trung thực", CCG), Outcome.NOT_COMPLETED, "phẩm chất Trung thực mức Cần cố gắng"),
]


@pytest.mark.parametrize(
    ("data", "expected", "fragment"),
    [case[1:] for case in BOUNDARY_CASES],
    ids=[case[0] for case in BOUNDARY_CASES],
)
def test_boundaries(data: YearEndInput, expected: Outcome, fragment: str | None) -> None:
    result = classify(data)

    assert result.outcome is expected
    assert result.missing == ()
    assert result.needs_teacher_decision is False
    missed = [reason for reason in result.reasons if reason.startswith("Chưa đạt ")]
    assert len(missed) == 3 - expected.rank
    for reason in missed:
        assert fragment in reason


SCORE_OUTCOMES = {1: Outcome.NOT_COMPLETED, 2: Outcome.NOT_COMPLETED, 3: Outcome.NOT_COMPLETED}
SCORE_OUTCOMES |= {4: Outcome.NOT_COMPLETED, 5: Outcome.COMPLETED, 6: Outcome.COMPLETED}
SCORE_OUTCOMES |= {7: Outcome.GOOD, 8: Outcome.GOOD, 9: Outcome.EXCELLENT, 10: Outcome.EXCELLENT}


@pytest.mark.parametrize(("score", "expected"), SCORE_OUTCOMES.items())
def test_every_score_with_default_thresholds(score: int, expected: Outcome) -> None:
    assert classify(with_subject("Tiếng Việt", score=score)).outcome is expected


def test_reasons_name_each_missed_level_with_its_own_threshold() -> None:
    result = classify(with_subject("Toán", score=6))

    assert result.reasons == (
        "Đạt Hoàn thành: các môn học đều mức Hoàn thành trở lên, các phẩm chất và năng lực đều mức Đạt "
        "trở lên, điểm kiểm tra cuối năm đều từ 5",
        "Chưa đạt Hoàn thành xuất sắc: Toán được 6 điểm (cần từ 9)",
        "Chưa đạt Hoàn thành tốt: Toán được 6 điểm (cần từ 7)",
    )


def test_reasons_list_every_shortfall() -> None:
    data = _swap(with_subject("Toán", score=8), replace(pupil().subjects[0], level=H))

    result = classify(data)

    assert result.outcome is Outcome.COMPLETED
    assert "Chưa đạt Hoàn thành xuất sắc: Tiếng Việt mức Hoàn thành; Toán được 8 điểm (cần từ 9)" in result.reasons
    assert "Chưa đạt Hoàn thành tốt: Tiếng Việt mức Hoàn thành" in result.reasons


def test_excellent_reason_is_positive_only() -> None:
    assert classify(pupil()).reasons == (
        "Đạt Hoàn thành xuất sắc: các môn học đều mức Hoàn thành tốt, các phẩm chất và năng lực đều mức Tốt, "
        "điểm kiểm tra cuối năm đều từ 9",
    )


def test_not_completed_has_no_positive_reason() -> None:
    reasons = classify(with_subject("Toán", level=C)).reasons

    assert reasons == (
        "Chưa đạt Hoàn thành xuất sắc: Toán mức Chưa hoàn thành",
        "Chưa đạt Hoàn thành tốt: Toán mức Chưa hoàn thành",
        "Chưa đạt Hoàn thành: Toán mức Chưa hoàn thành",
    )


def test_a_subject_without_a_test_needs_no_score() -> None:
    data = YearEndInput(
        subjects=(subject("Đạo đức", score=None, required=False), subject("Âm nhạc", score=None, required=False)),
        traits=(trait("Chăm chỉ"), trait("Giao tiếp và hợp tác", kind="competency")),
    )

    result = classify(data)

    assert result.outcome is Outcome.EXCELLENT
    assert result.missing == ()
    assert "điểm" not in result.reasons[0]


# --- missing data -----------------------------------------------------------------------------------

MISSING_CASES = [
    ("a missing score", with_subject("Toán", score=None), ("Toán: thiếu điểm kiểm tra cuối năm",)),
    ("a missing subject level", with_subject("Đạo đức", level=None), ("Đạo đức: thiếu mức đạt được",)),
    (
        "level and score both missing",
        with_subject("Tiếng Việt", level=None, score=None),
        ("Tiếng Việt: thiếu mức đạt được", "Tiếng Việt: thiếu điểm kiểm tra cuối năm"),
    ),
    ("a missing quality level", with_trait("Chăm chỉ", None), ("Phẩm chất Chăm chỉ: thiếu mức đạt được",)),
    (
        "a missing competency level",
        with_trait("Tự chủ và tự học", None),
        ("Năng lực Tự chủ và tự học: thiếu mức đạt được",),
    ),
    (
        "no ratings at all",
        YearEndInput(subjects=(), traits=()),
        (
            "Chưa có môn học và hoạt động giáo dục nào",
            "Chưa có phẩm chất nào được đánh giá",
            "Chưa có năng lực nào được đánh giá",
        ),
    ),
]


@pytest.mark.parametrize(
    ("data", "expected_missing"), [case[1:] for case in MISSING_CASES], ids=[case[0] for case in MISSING_CASES]
)
def test_missing_data_gives_no_outcome(data: YearEndInput, expected_missing: tuple[str, ...]) -> None:
    assert classify(data) == Classification(
        outcome=None, reasons=(), missing=expected_missing, needs_teacher_decision=False
    )


def test_missing_data_wins_over_a_failing_rating() -> None:
    data = _swap(with_subject("Toán", score=None), replace(pupil().subjects[0], level=C))

    result = classify(data)

    assert result.outcome is None
    assert result.missing == ("Toán: thiếu điểm kiểm tra cuối năm",)


# --- personal education plan ------------------------------------------------------------------------


@pytest.mark.parametrize("data", [pupil(), with_subject("Toán", level=C, score=2)], ids=["top marks", "failing"])
def test_a_personal_plan_pupil_is_left_to_the_gvcn(data: YearEndInput) -> None:
    result = classify(replace(data, personal_plan=True))

    assert result.outcome is None
    assert result.needs_teacher_decision is True
    assert result.reasons == (PERSONAL_PLAN_REASON,)
    assert "giáo viên chủ nhiệm" in PERSONAL_PLAN_REASON
    assert "kế hoạch giáo dục cá nhân" in PERSONAL_PLAN_REASON


def test_a_personal_plan_pupil_still_reports_missing_data() -> None:
    result = classify(replace(with_subject("Toán", score=None), personal_plan=True))

    assert result.needs_teacher_decision is True
    assert result.missing == ("Toán: thiếu điểm kiểm tra cuối năm",)


# --- validation -------------------------------------------------------------------------------------

BAD_SUBJECTS = [
    ("score 0", {"score": 0}),
    ("score 11", {"score": 11}),
    ("negative score", {"score": -3}),
    ("decimal score", {"score": 8.5}),
    ("float that looks whole", {"score": 9.0}),
    ("text score", {"score": "9"}),
    ("bool score", {"score": True}),
    ("score on a subject with no test", {"score": 8, "score_required": False}),
    ("unknown level", {"level": "X"}),
    ("trait level on a subject", {"level": "Đ"}),
]


@pytest.mark.parametrize("fields", [case[1] for case in BAD_SUBJECTS], ids=[case[0] for case in BAD_SUBJECTS])
def test_bad_subject_data_is_refused(fields: dict[str, object]) -> None:
    values: dict[str, object] = {"code": "toan", "name": "Toán", "level": T, "score": 9, "score_required": True}
    with pytest.raises(ValueError):
        classify(YearEndInput(subjects=(SubjectResult(**{**values, **fields}),), traits=pupil().traits))


def test_the_no_test_error_names_the_subject() -> None:
    with pytest.raises(ValueError, match="Đạo đức"):
        subject("Đạo đức", score=8, required=False)


@pytest.mark.parametrize(("kind", "level"), [("behaviour", TOT), ("quality", "H")], ids=["bad kind", "bad level"])
def test_bad_trait_data_is_refused(kind: str, level: object) -> None:
    with pytest.raises(ValueError):
        TraitResult(code="x", name="Chăm chỉ", kind=kind, level=level)


def test_stored_strings_become_levels() -> None:
    assert subject("Toán", level="H").level is SubjectLevel.H
    assert trait("Chăm chỉ", level="Đ").level is TraitLevel.D


def test_duplicate_codes_are_refused() -> None:
    with pytest.raises(ValueError, match="toán"):
        YearEndInput(subjects=(subject("Toán"), subject("Toán")), traits=())


@pytest.mark.parametrize(
    "fields",
    [{"excellent_min_score": 11}, {"completed_min_score": 0}, {"good_min_score": 9.5}, {"good_min_score": 10}],
    ids=["above 10", "zero", "decimal", "good above excellent"],
)
def test_bad_thresholds_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Thresholds(**fields)


# --- thresholds are data ----------------------------------------------------------------------------

THRESHOLD_CASES = [
    ("a 4 completes when the bar is 4", 4, Thresholds(completed_min_score=4), Outcome.COMPLETED),
    ("a 5 fails when the bar is 6", 5, Thresholds(completed_min_score=6), Outcome.NOT_COMPLETED),
    ("an 8 is xuất sắc when the bar is 8", 8, Thresholds(excellent_min_score=8), Outcome.EXCELLENT),
    ("a 7 is only hoàn thành when tốt needs 8", 7, Thresholds(good_min_score=8), Outcome.COMPLETED),
]


@pytest.mark.parametrize(
    ("score", "thresholds", "expected"),
    [case[1:] for case in THRESHOLD_CASES],
    ids=[case[0] for case in THRESHOLD_CASES],
)
def test_custom_thresholds_change_the_result(score: int, thresholds: Thresholds, expected: Outcome) -> None:
    data = with_subject("Toán", score=score)

    assert classify(data, thresholds).outcome is expected
    assert classify(data).outcome is not expected


def test_reasons_quote_the_custom_threshold() -> None:
    result = classify(with_subject("Toán", score=5), Thresholds(completed_min_score=6))

    assert "Chưa đạt Hoàn thành: Toán được 5 điểm (cần từ 6)" in result.reasons


# --- outcome helpers --------------------------------------------------------------------------------


def test_outcome_labels_and_ranks() -> None:
    assert [(o.label, o.rank) for o in sorted(Outcome, key=lambda o: o.rank, reverse=True)] == [
        ("Hoàn thành xuất sắc", 3),
        ("Hoàn thành tốt", 2),
        ("Hoàn thành", 1),
        ("Chưa hoàn thành", 0),
    ]
    assert SubjectLevel.H.label == "Hoàn thành"
    assert TraitLevel.C.label == "Cần cố gắng"


@pytest.mark.parametrize(
    ("outcome", "grade", "expected"),
    [
        (Outcome.EXCELLENT, 1, "Hoàn thành chương trình lớp học"),
        (Outcome.GOOD, 3, "Hoàn thành chương trình lớp học"),
        (Outcome.COMPLETED, 4, "Hoàn thành chương trình lớp học"),
        (Outcome.EXCELLENT, 5, "Hoàn thành chương trình tiểu học"),
        (Outcome.COMPLETED, 5, "Hoàn thành chương trình tiểu học"),
        (Outcome.NOT_COMPLETED, 2, None),
        (Outcome.NOT_COMPLETED, 5, None),
    ],
)
def test_completion_text(outcome: Outcome, grade: int, expected: str | None) -> None:
    assert completion_text(outcome, grade) == expected


@pytest.mark.parametrize("grade", [0, 6, 4.0])
def test_completion_text_refuses_a_bad_grade(grade: object) -> None:
    with pytest.raises(ValueError):
        completion_text(Outcome.GOOD, grade)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Outcome.EXCELLENT, "Học sinh Xuất sắc"),
        (Outcome.GOOD, "Học sinh Tiêu biểu hoàn thành tốt trong học tập và rèn luyện"),
        (Outcome.COMPLETED, None),
        (Outcome.NOT_COMPLETED, None),
    ],
)
def test_eligible_award(outcome: Outcome, expected: str | None) -> None:
    assert eligible_award(outcome) == expected


# --- properties -------------------------------------------------------------------------------------

scores = st.integers(min_value=1, max_value=10)
# Each generated pupil has a floor (worst subject level, worst trait level, lowest score) and every
# rating sits at or above it, so all four results and every threshold boundary come up often;
# independent uniform draws would almost always give Chưa hoàn thành.
SUBJECT_FLOORS = [(T,), (T, H), (T, H, C)]
TRAIT_FLOORS = [(TOT,), (TOT, DAT), (TOT, DAT, CCG)]


def _maybe_missing(strategy: st.SearchStrategy, complete: bool) -> st.SearchStrategy:
    return strategy if complete else st.none() | strategy


@st.composite
def year_end_inputs(draw: st.DrawFn, *, complete: bool = True) -> YearEndInput:
    subject_levels = _maybe_missing(st.sampled_from(draw(st.sampled_from(SUBJECT_FLOORS))), complete)
    trait_levels = _maybe_missing(st.sampled_from(draw(st.sampled_from(TRAIT_FLOORS))), complete)
    subject_scores = _maybe_missing(st.integers(min_value=draw(scores), max_value=10), complete)
    subjects = []
    for i in range(draw(st.integers(min_value=1, max_value=8))):
        required = draw(st.booleans())
        score = draw(subject_scores) if required else None
        subjects.append(SubjectResult(f"s{i}", f"Môn {i}", draw(subject_levels), score, score_required=required))
    # At least one quality and one competency, so that complete data is really complete.
    kinds = ["quality", "competency", *draw(st.lists(st.sampled_from(["quality", "competency"]), max_size=8))]
    traits = [TraitResult(f"t{i}", f"Tiêu chí {i}", kind, draw(trait_levels)) for i, kind in enumerate(kinds)]
    return YearEndInput(subjects=tuple(subjects), traits=tuple(traits))


@st.composite
def thresholds(draw: st.DrawFn) -> Thresholds:
    low, middle, high = sorted(draw(st.lists(scores, min_size=3, max_size=3)))
    return Thresholds(excellent_min_score=high, good_min_score=middle, completed_min_score=low)


def _meets(data: YearEndInput, subject_ok: set[str], trait_ok: set[str], min_score: int) -> bool:
    """Điều 9's conditions restated independently of the module, as the oracle."""
    return (
        all(s.level in subject_ok for s in data.subjects)
        and all(t.level in trait_ok for t in data.traits)
        and all(s.score >= min_score for s in data.subjects if s.score_required)
    )


@PROPERTY_SETTINGS
@given(data=year_end_inputs(), limits=thresholds())
def test_complete_input_lands_in_exactly_one_result(data: YearEndInput, limits: Thresholds) -> None:
    excellent = _meets(data, {"T"}, {"T"}, limits.excellent_min_score)
    good = _meets(data, {"T"}, {"T"}, limits.good_min_score)
    completed = _meets(data, {"T", "H"}, {"T", "Đ"}, limits.completed_min_score)
    matching = {
        Outcome.EXCELLENT: excellent,
        Outcome.GOOD: good and not excellent,
        Outcome.COMPLETED: completed and not good,
        Outcome.NOT_COMPLETED: not completed,
    }

    result = classify(data, limits)

    assert [outcome for outcome, holds in matching.items() if holds] == [result.outcome]
    assert result.missing == ()
    assert result.needs_teacher_decision is False
    assert sum(reason.startswith("Chưa đạt ") for reason in result.reasons) == 3 - result.outcome.rank


SUBJECT_STEP = {SubjectLevel.C: SubjectLevel.H, SubjectLevel.H: SubjectLevel.T}
TRAIT_STEP = {TraitLevel.C: TraitLevel.D, TraitLevel.D: TraitLevel.T}


@PROPERTY_SETTINGS
@given(data=year_end_inputs(), limits=thresholds(), choice=st.data())
def test_improving_one_rating_or_score_never_lowers_the_result(
    data: YearEndInput, limits: Thresholds, choice: st.DataObject
) -> None:
    improvements: list[SubjectResult | TraitResult] = []
    for s in data.subjects:
        if s.level in SUBJECT_STEP:
            improvements.append(replace(s, level=SUBJECT_STEP[s.level]))
        if s.score_required and s.score < 10:
            improvements.append(replace(s, score=choice.draw(st.integers(s.score + 1, 10), label=s.code)))
    improvements += [replace(t, level=TRAIT_STEP[t.level]) for t in data.traits if t.level in TRAIT_STEP]
    if not improvements:
        return  # already perfect: nothing to improve
    better = _swap(data, choice.draw(st.sampled_from(improvements), label="improvement"))

    assert classify(better, limits).outcome.rank >= classify(data, limits).outcome.rank


@PROPERTY_SETTINGS
@given(data=year_end_inputs(complete=False), limits=thresholds(), personal_plan=st.booleans())
def test_classify_never_crashes_and_is_consistent(data: YearEndInput, limits: Thresholds, personal_plan: bool) -> None:
    result = classify(replace(data, personal_plan=personal_plan), limits)

    assert result.needs_teacher_decision is personal_plan
    assert (result.outcome is None) == (personal_plan or bool(result.missing))
    if result.outcome is None and not personal_plan:
        assert result.reasons == ()
    assert all(isinstance(text, str) and text for text in result.reasons + result.missing)
