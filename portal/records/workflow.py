"""Signing and issuing a record version: GVCN -> Hiệu trưởng -> school seal, and what happens after.

Each step signs its own pre-made field of the version's PDF (`portal.signing.engine`). The commit point
of a step is one transaction: the `RecordSignature` row (unique per version and step), the new file
digest and the new status. So a batch that crashes can be run again: records already signed at that
step are skipped, the others are signed, none twice.

Keys on the server (PKCS#12, PKCS#11) sign in the batch job itself. Keys elsewhere (the signer's USB
token through the signing agent, a remote CSC service) are prepared here, handed to
`portal.signing.requests` as requests, and finished by `finish_external` once the signature comes back.

The seal is the last step: before a version is marked issued, the finished PDF is validated by the same
signature policy as every verification (`portal.signing.validate`, `portal.signing.policy`), and it is
refused unless all three signatures are valid at their timestamps' time, made by the registered holders
of the three roles, at the required PAdES level, and nothing changed after them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Set
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from flask import current_app
from flask_babel import gettext as _

from portal import audit, jobs, signing
from portal.assessment.access import is_homeroom_teacher
from portal.extensions import db
from portal.records import archive, services
from portal.records.models import RecordSignature, RecordStatus, RecordVersion
from portal.results.services import pupil_sort_key
from portal.signing import csc, engine, policy, requests
from portal.signing import services as certificates
from portal.signing.stamp import stamp_for_field
from portal.signing.validate import ValidationReport, validate_pdf
from portal.storage import digest_of, storage
from tenants.certificates import CertificateFields, KeyKind, PersonCertificate, SealCertificate
from tenants.models import School, User
from tenants.roles import N_, Permission

PURPOSE = "record_step"


@dataclass(frozen=True)
class Step:
    field: str  # the PDF's signature field, as in `portal.records.content.SIGNATURE_FIELDS`
    before: RecordStatus  # a version must be here to take this signature
    after: RecordStatus
    permission: Permission
    certify: bool  # the first signature certifies the document (DocMDP: form filling only)
    label: str


STEPS = {
    "gvcn": Step("gvcn", RecordStatus.DRAFT, RecordStatus.SIGNED_HOMEROOM, Permission.SIGN_AS_HOMEROOM, True,
                 N_("Giáo viên chủ nhiệm ký")),
    "hieu_truong": Step("hieu_truong", RecordStatus.SIGNED_HOMEROOM, RecordStatus.SIGNED_PRINCIPAL,
                        Permission.SIGN_AS_PRINCIPAL, False, N_("Hiệu trưởng ký")),
    "con_dau": Step("con_dau", RecordStatus.SIGNED_PRINCIPAL, RecordStatus.ISSUED, Permission.APPLY_SEAL, False,
                    N_("Ký số bằng con dấu của trường (ban hành)")),
}


class WorkflowError(ValueError):
    """A step cannot be taken; the message says why, in Vietnamese."""


# --- who may do what ---------------------------------------------------------------------------------------


def may_sign(user_id: int, permissions: Set[Permission], version: RecordVersion, step: Step) -> bool:
    """The GVCN signs their own class; the principal and the seal any record of the school."""
    if step.permission not in permissions:
        return False
    if step.field == "gvcn":
        return is_homeroom_teacher(user_id, version.school_class)
    return True


def signing_certificate(school: School, step: Step, signer: User) -> PersonCertificate | SealCertificate:
    """The certificate this step signs with: the signer's own, or the school's seal."""
    found = (certificates.current_seal_certificate(school.id) if step.field == "con_dau"
             else certificates.current_person_certificate(signer.id))
    if found is None:
        raise WorkflowError(_("Trường chưa đăng kí chứng thư số (con dấu số) còn hiệu lực.") if step.field == "con_dau"
                            else _("Bạn chưa đăng kí chứng thư số còn hiệu lực: hãy đăng kí trước khi ký."))
    return found


def _waiting(school: School, step: Step, class_ids: list[int] | None) -> sa.Select[Any]:
    query = sa.select(RecordVersion).where(RecordVersion.school_id == school.id, RecordVersion.status == step.before)
    return query if class_ids is None else query.where(RecordVersion.class_id.in_(class_ids))


def waiting_for(school: School, step: Step, class_ids: list[int] | None = None) -> list[RecordVersion]:
    """The versions at the status this step takes (in the given classes), in class-list order."""
    query = _waiting(school, step, class_ids).options(sa.orm.defer(RecordVersion.content),
                                                     sa.orm.joinedload(RecordVersion.pupil),
                                                     sa.orm.joinedload(RecordVersion.school_class))
    return sorted(db.session.scalars(query), key=lambda v: (v.school_class.name, pupil_sort_key(v.pupil)))


def count_waiting(school: School, step: Step, class_ids: list[int] | None = None) -> int:
    return db.session.scalar(_waiting(school, step, class_ids).with_only_columns(sa.func.count()))


# --- signing on the server -----------------------------------------------------------------------------------


@dataclass
class Signed:
    version_id: int
    outcome: str  # signed / already / skipped / failed / waiting (asked of the signer's device or phone)
    reason: str = ""
    service_down: bool = False  # the timestamp authority or a revocation source never answered


def sign_batch(school: School, step: Step, version_ids: list[int], *, signer: User, secret: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> list[Signed]:
    """Sign `step` of every version, one transaction each; a failure is reported and the batch goes on.

    `secret` is what the signer typed once for the batch: their signing PIN (or the .p12 passphrase they keep).
    """
    certificate = signing_certificate(school, step, signer)
    if certificate.key_kind in (KeyKind.USB, KeyKind.CSC):
        return prepare_external(school, step, version_ids, signer=signer, certificate=certificate,
                                progress=progress)
    results: list[Signed] = []
    key = certificates.server_key(certificate, secret=secret)
    with engine.SigningSession(key, timestamp_url=signing.timestamp_url(), trust_roots=signing.trust_roots(),
                               level=signing.signature_level()) as session:
        down: Signed | None = None
        for done, version_id in enumerate(version_ids, start=1):
            if down is not None:
                # The service stayed silent through every attempt for one record: the rest of the batch is
                # not signed either (rather than waiting as long again for each), and is listed as such.
                results.append(Signed(version_id, "failed", down.reason, service_down=True))
            else:
                results.append(_sign_one(school, step, version_id, signer, certificate,
                                         lambda pdf, stamp: session.sign_field(
                                             pdf, step.field, certify=step.certify, stamp=stamp,
                                             final=_final(step))))
                down = results[-1] if results[-1].service_down else None
            if progress:
                progress(done, len(version_ids))
    return results


def _final(step: Step) -> bool:
    """The seal is the record's last signature: it ends with the long-term validation data."""
    return step.after == RecordStatus.ISSUED


def with_retries(operation: Callable[[], bytes]) -> bytes:
    """`operation()`, tried again (with a growing wait) while the timestamp authority or a revocation source
    does not answer; the last failure is raised with how many attempts were made."""
    config = current_app.config
    attempts = config["SIGNING_SERVICE_ATTEMPTS"]
    wait = config["SIGNING_SERVICE_RETRY_SECONDS"]
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except engine.ServiceUnavailable as exc:
            if attempt == attempts:
                raise engine.ServiceUnavailable(_("%(error)s Đã thử %(n)s lần; hãy thử lại sau.", error=str(exc),
                                                  n=attempts)) from exc
            if wait > 0:
                time.sleep(wait * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _sign_one(school: School, step: Step, version_id: int, signer: User, certificate: CertificateFields,
              sign: Callable[[bytes, Any], bytes]) -> Signed:
    version = db.session.get(RecordVersion, version_id)
    if version is None:
        return Signed(version_id, "failed", _("Không tìm thấy học bạ."))
    if _signature_of(version, step) is not None:
        return Signed(version_id, "already")
    if version.status != step.before:
        return Signed(version_id, "skipped", _("Học bạ đang ở trạng thái “%(s)s”.", s=version.status.label))
    try:
        source = storage().read(version.current_digest)
        stamp = _stamp(school, step, signer, certificate)
        signed = with_retries(lambda: sign(source, stamp))
        commit_signature(version, step, source, signed, signer=signer, certificate=certificate)
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()  # another worker committed this very step first
        return Signed(version_id, "already")
    except (engine.SigningError, WorkflowError) as exc:
        db.session.rollback()
        return Signed(version_id, "failed", str(exc), service_down=isinstance(exc, engine.ServiceUnavailable))
    return Signed(version_id, "signed")


def _stamp(school: School, step: Step, signer: User, certificate: CertificateFields) -> Any:
    name = certificate.common_name if step.field == "con_dau" else signer.full_name
    return stamp_for_field(step.field, name, school_name=school.name)


def _signature_of(version: RecordVersion, step: Step) -> RecordSignature | None:
    return db.session.scalar(sa.select(RecordSignature).where(RecordSignature.record_version_id == version.id,
                                                              RecordSignature.step == step.field))


def commit_signature(version: RecordVersion, step: Step, source: bytes, signed: bytes, *, signer: User | None,
                     certificate: CertificateFields | None = None, certificate_der: bytes | None = None,
                     key_kind: str = "") -> None:
    """Record one step's signature in the current transaction (the caller commits)."""
    report = None
    if step.after == RecordStatus.ISSUED:
        report = check_issuable(signed, version)
    elif engine.level_at_least(signing.signature_level(), "B-T"):
        _check_level(signed, "B-T")
    files = storage()
    output = files.put(signed)
    der = certificate.certificate if certificate is not None else certificate_der or b""
    fingerprint = CertificateFields.fingerprint_of(der)
    signer_name = certificate.common_name if certificate is not None else (signer.full_name if signer else "")
    db.session.add(RecordSignature(
        school_id=version.school_id, record_version_id=version.id, step=step.field,
        signer_id=signer.id if signer else None, signer_name=signer_name, certificate_fingerprint=fingerprint,
        key_kind=(certificate.key_kind.value if certificate is not None else key_kind),
        input_digest=digest_of(source), output_digest=output))
    version.signed_digest = output
    if step.after == RecordStatus.ISSUED:
        archive.note_archive_timestamp(version, signed, report)  # from the check's reading of the file
    services.set_status(version, step.after, actor=signer)
    db.session.flush()  # the unique (version, step) speaks here, before anything else happens
    audit.record("record.signed", actor=signer, school_id=version.school_id, obj=version,
                 summary=_("%(step)s: học bạ %(code)s", step=_(step.label), code=version.code),
                 changes={"step": step.field, "certificate": fingerprint, "digest": output})
    if step.after == RecordStatus.ISSUED:
        _supersede_corrected(version, signer)


def check_issuable(signed: bytes, version: RecordVersion) -> ValidationReport:
    """Refuse to issue unless the signature policy passes: all three signatures valid at their timestamps'
    time, by the registered holders of the three roles, at the required level, nothing changed after.
    Returns the passing report."""
    report = validate_pdf(signed, signing.trust_roots(), required_level=signing.signature_level(),
                          signers=policy.policy_for_version(version), allow_fetching=signing.fetch_revocation())
    if not report.ok:
        problems = "; ".join(report.problems)
        raise WorkflowError(_("Tệp sau khi ký không đạt kiểm tra, chưa ban hành: %(p)s", p=problems or "?"))
    return report


def _check_level(signed: bytes, minimum: str) -> None:
    try:
        engine.check_level(signed, minimum)
    except engine.BelowLevel as exc:
        raise WorkflowError(_("Chưa ban hành: %(reason)s", reason=str(exc))) from exc


def _supersede_corrected(version: RecordVersion, actor: User | None) -> None:
    """A correction is issued: the version it corrects is superseded, saying by which and why."""
    if version.replaces_id is None:
        return
    old = db.session.get(RecordVersion, version.replaces_id)
    if old is not None and old.status == RecordStatus.ISSUED:
        services.set_status(old, RecordStatus.SUPERSEDED, actor=actor, reason=_(
            "Được điều chỉnh bởi bản %(n)s (%(code)s): %(why)s", n=version.number, code=version.code,
            why=version.correction_reason))


# --- signing elsewhere: the signer's USB token, a remote signing service ----------------------------------------


def prepare_external(school: School, step: Step, version_ids: list[int], *, signer: User,
                     certificate: CertificateFields,
                     progress: Callable[[int, int], None] | None = None) -> list[Signed]:
    """Put each signature in place and ask the signer's device (or phone) for the raw values."""
    results: list[Signed] = []
    items: list[requests.RequestItem] = []
    for done, version_id in enumerate(version_ids, start=1):
        version = db.session.get(RecordVersion, version_id)
        if version is None or _signature_of(version, step) is not None:
            results.append(Signed(version_id, "already"))
            continue
        if version.status != step.before:
            results.append(Signed(version_id, "skipped", _("Học bạ đang ở trạng thái “%(s)s”.",
                                                           s=version.status.label)))
            continue
        try:
            prepared = engine.prepare_signature(storage().read(version.current_digest), step.field,
                                                certificate.x509(), certificate.chain(), certify=step.certify,
                                                stamp=_stamp(school, step, signer, certificate),
                                                timestamp_url=signing.timestamp_url(),
                                                trust_roots=signing.trust_roots())
        except engine.SigningError as exc:
            results.append(Signed(version_id, "failed", str(exc)))
            continue
        files = storage()
        state = {**prepared.state(), "pdf": files.put(prepared.pdf), "source": version.current_digest}
        items.append(requests.RequestItem(version_id, step.field, prepared.digest.hex(),
                                          files.put(json.dumps(state).encode()),
                                          description=f"{version.content['pupil']['full_name']} · "
                                                      f"{version.content['years'][-1]['class_name']}"))
        results.append(Signed(version_id, "waiting", _("Chờ người ký xác nhận trên thiết bị ký.")))
        if progress:
            progress(done, len(version_ids))
    if items and certificate.key_kind == KeyKind.USB:
        requests.create_requests(school.id, signer_id=signer.id, kind=requests.RequestKind.USB, purpose=PURPOSE,
                                 items=items, certificate_der=certificate.certificate, actor=signer)
    elif items:
        # The remote service asks the signer's phone once for the whole batch; a job waits for it.
        opened, _run = csc.start_remote_batch(school.id, signer_id=signer.id, csc_user_id=signer.username,
                                              purpose=PURPOSE, items=items, certificate_der=certificate.certificate,
                                              title=_("Chờ xác nhận ký từ xa (%(n)s học bạ)", n=len(items)),
                                              actor=signer)
        for request in opened:  # the registered credential: no lookup by the provider's user id needed
            request.csc_credential_id = request.csc_credential_id or certificate.csc_credential_id
    db.session.commit()
    return results


@requests.on_answered(PURPOSE)
def _answered(request: requests.SigningRequest) -> None:
    jobs.enqueue("records.finish_signature", school_id=request.school_id, actor=None,
                 title=_("Hoàn tất chữ ký số học bạ"), request_id=request.id)


def finish_external(request_id: int) -> Signed:
    """Put an accepted raw signature into its prepared PDF and record the step (safe to run twice)."""
    request = requests.get_request(request_id)
    if request is None:
        return Signed(0, "failed", _("Không tìm thấy yêu cầu ký."))
    version = db.session.get(RecordVersion, request.subject_id)
    step = STEPS[request.step]
    if version is None or _signature_of(version, step) is not None:
        requests.mark_finished(request.id)
        db.session.commit()
        return Signed(request.subject_id, "already")
    files = storage()
    state = json.loads(files.read(request.prepared_digest))
    signer = db.session.get(User, request.user_id)
    try:
        if version.status != step.before or version.current_digest != state["source"]:
            raise WorkflowError(_("Học bạ đã thay đổi trạng thái trong lúc chờ ký."))
        prepared = engine.PreparedSignature.from_state(state, files.read(state["pdf"]))
        signed = with_retries(lambda: engine.finish_signature(
            prepared, request.raw_signature or b"", trust_roots=signing.trust_roots(),
            level=signing.signature_level(), final=_final(step)))
        commit_signature(version, step, files.read(state["source"]), signed, signer=signer,
                         certificate_der=request.certificate, key_kind=request.kind.value)
        requests.mark_finished(request.id, actor=signer)
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()
        return Signed(version.id, "already")
    except (engine.SigningError, WorkflowError) as exc:
        db.session.rollback()
        requests.mark_failed([request_id], str(exc))
        db.session.commit()
        return Signed(version.id, "failed", str(exc))
    return Signed(version.id, "signed")


# --- sending back, cancelling, correcting --------------------------------------------------------------------


def return_to_homeroom(version: RecordVersion, reason: str, *, actor: User) -> None:
    """The principal sends a GVCN-signed record back, with a reason, instead of signing it."""
    if version.status != RecordStatus.SIGNED_HOMEROOM:
        raise WorkflowError(_("Chỉ trả lại được học bạ giáo viên chủ nhiệm đã ký, chưa được Hiệu trưởng ký."))
    if not reason.strip():
        raise WorkflowError(_("Hãy ghi lý do trả lại."))
    _withdraw_requests(version, actor, reason)
    services.set_status(version, RecordStatus.RETURNED, actor=actor, reason=reason.strip())


def _require_not_transferred(version: RecordVersion) -> None:
    """A record that went along with its pupil to another school is frozen here: the receiving school holds
    it as received, verified, and continues the pupil's record; a change here would not reach it."""
    from portal.interop.models import PupilTransfer, TransferState

    for transfer in db.session.scalars(sa.select(PupilTransfer).where(
            PupilTransfer.pupil_id == version.pupil_id,
            PupilTransfer.state.in_([TransferState.RELEASED, TransferState.ACCEPTED]))):
        if version.id in (transfer.record_version_ids or []):
            raise WorkflowError(_("Học bạ này đã chuyển theo học sinh sang trường khác: trường cũ không hủy, "
                                  "không điều chỉnh được nữa."))


def cancel(version: RecordVersion, reason: str, *, actor: User) -> None:
    """Hủy: an issued record stops being valid; it is kept, with the date and the reason."""
    if version.status != RecordStatus.ISSUED:
        raise WorkflowError(_("Chỉ hủy được học bạ đã ban hành."))
    _require_not_transferred(version)
    if not reason.strip():
        raise WorkflowError(_("Hãy ghi lý do hủy."))
    services.set_status(version, RecordStatus.CANCELLED, actor=actor, reason=reason.strip())


def correct(school: School, version: RecordVersion, reason: str, *, actor: User) -> RecordVersion:
    """Điều chỉnh: a new version from today's data, to be signed again; it supersedes this one when issued."""
    if version.status != RecordStatus.ISSUED:
        raise WorkflowError(_("Chỉ điều chỉnh được học bạ đã ban hành."))
    _require_not_transferred(version)
    if not reason.strip():
        raise WorkflowError(_("Hãy ghi lý do điều chỉnh."))
    pending = db.session.scalar(sa.select(RecordVersion).where(RecordVersion.replaces_id == version.id,
                                                               RecordVersion.status.in_(
                                                                   [s for s in RecordStatus if s not in (
                                                                       RecordStatus.SUPERSEDED,
                                                                       RecordStatus.CANCELLED)])))
    if pending is not None:
        raise WorkflowError(_("Học bạ này đang có bản điều chỉnh %(code)s chưa ban hành.", code=pending.code))
    return services.correction_of(school, version, reason.strip(), actor=actor)


def _withdraw_requests(version: RecordVersion, actor: User, reason: str) -> None:
    open_ids = list(db.session.scalars(sa.select(requests.SigningRequest.id).where(
        requests.SigningRequest.purpose == PURPOSE, requests.SigningRequest.subject_id == version.id,
        requests.SigningRequest.state == requests.RequestState.PENDING)))
    requests.cancel(open_ids, reason, actor=actor)


def signatures_of(version: RecordVersion) -> list[RecordSignature]:
    order = list(STEPS)
    rows = db.session.scalars(sa.select(RecordSignature).where(RecordSignature.record_version_id == version.id))
    return sorted(rows, key=lambda s: order.index(s.step))

