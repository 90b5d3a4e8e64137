"""What a validation reuses instead of computing again, and that its answers stay the same.

The seal notes the file's archive timestamp from the check's own reading of the file (no second parse);
a signature judged twice (with revocation data, then on its chain alone) keeps its first difference analysis.
"""

from __future__ import annotations

import pytest
from pyhanko.sign.diff_analysis import StandardDiffPolicy

from portal.extensions import db
from portal.records import archive, workflow
from portal.records.models import RecordVersion
from portal.signing import engine
from portal.signing.validate import validate_pdf
from tenants.scoping import school_scope
from tests import ltv_factory as lf
from tests import test_verify_policy as policy_world

pytestmark = pytest.mark.slow  # a B-LTA record signed in-process

world = policy_world.world


def _counting_reviews(monkeypatch) -> list[int]:
    reviewed: list[int] = []
    original = StandardDiffPolicy.review_file

    def review_file(self, reader, base_revision, *args, **kwargs):
        reviewed.append(base_revision)
        return original(self, reader, base_revision, *args, **kwargs)

    monkeypatch.setattr(StandardDiffPolicy, "review_file", review_file)
    return reviewed


def test_the_report_states_what_the_archive_timestamp_says(world):
    report = validate_pdf(world.genuine, [world.pki.root], required_level="B-LTA")
    assert report.ok, report.problems
    assert report.document_timestamps[-1].archive_facts == engine.last_archive_timestamp(world.genuine)
    assert report.document_timestamps[-1].digest_algorithm == "sha256"


def test_issuing_notes_the_archive_timestamp_from_the_check_without_parsing_again(app, world, monkeypatch):
    expected = engine.last_archive_timestamp(world.genuine)
    with app.app_context(), school_scope(world.school.id):
        version = db.session.get(RecordVersion, world.version_id)
        report = workflow.check_issuable(world.genuine, version)

        def parsed_again(pdf: bytes) -> None:
            raise AssertionError("the file was parsed again for its archive timestamp")

        monkeypatch.setattr(engine, "last_archive_timestamp", parsed_again)
        archive.note_archive_timestamp(version, world.genuine, report)
        noted = (version.archive_timestamp_at, version.archive_expires_at, version.archive_digest_algorithm)
        assert noted == expected
        db.session.rollback()


def test_without_a_report_or_with_an_unreadable_one_the_file_is_read(app, world, monkeypatch):
    calls: list[bytes] = []
    original = engine.last_archive_timestamp
    monkeypatch.setattr(engine, "last_archive_timestamp", lambda pdf: calls.append(pdf) or original(pdf))
    unreadable = validate_pdf(b"not a pdf", [world.pki.root])
    unstamped = validate_pdf(lf.strip_document_timestamps(world.genuine), [world.pki.root])
    with app.app_context(), school_scope(world.school.id):
        version = db.session.get(RecordVersion, world.version_id)
        archive.note_archive_timestamp(version, world.genuine)
        archive.note_archive_timestamp(version, world.genuine, unreadable)
        assert calls == [world.genuine, world.genuine] and version.archive_digest_algorithm == "sha256"
        archive.note_archive_timestamp(version, world.genuine, unstamped)  # the report says: no timestamp
        assert len(calls) == 2 and version.archive_expires_at is None
        db.session.rollback()


def test_a_signature_judged_twice_is_analysed_for_changes_once(world, monkeypatch):
    stranger = lf.make_pki().root  # not the file's root: every chain fails, and each signature is judged again
    reviewed = _counting_reviews(monkeypatch)
    trusted = validate_pdf(world.genuine, [world.pki.root])  # judged once each
    once = sorted(reviewed)
    assert trusted.ok and len(once) >= 3
    reviewed.clear()
    report = validate_pdf(world.genuine, [stranger])
    assert not report.ok and not any(s.trusted for s in report.signatures)
    assert sorted(reviewed) == once  # each revision's analysis once, not once per judgement
    assert [(s.modification_level, s.docmdp_ok, s.changed_after) for s in report.signatures] == [
        (s.modification_level, s.docmdp_ok, s.changed_after) for s in trusted.signatures]


def test_a_change_after_the_seal_is_still_found_when_a_signature_is_judged_twice(world):
    stranger = lf.make_pki().root
    report = validate_pdf(lf.add_annotation(world.genuine), [stranger])
    seal = next(s for s in report.signatures if s.field == "con_dau")
    assert report.changed_after_seal and seal.changed_after and not report.ok
