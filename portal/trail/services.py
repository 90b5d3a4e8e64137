"""The hash-chained trail's seals: checkpoints signed by the district, verification, archives, exports.

- `seal_chains()` (`flask audit checkpoint`, daily from cron) signs each chain's head that moved
  since its last checkpoint: a small JSON document, a detached CMS signature by the district's
  organisation certificate, timestamped by `TIMESTAMP_URL` when one is set. Both go to the file store.
- `verify_chains()` (`flask audit verify`, and the district's integrity page) walks every chain from
  its first entry, archives included, checks each link and each checkpoint's signature, and names
  every place where history diverges.
- `archive_before()` (`flask audit archive --before DATE`) moves a verified, sealed prefix of each
  chain into a file in the store; the chain still verifies across the boundary.
- `export_zip()`: a chain (or all of them) with its checkpoints and the offline verifier, for anyone
  to check without the portal (`verify_offline.py`, see docs/audit-trail.md).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from portal import audit
from portal.audit import AuditChainHead, AuditEntry
from portal.extensions import db, utcnow
from portal.signing import engine, pki, timestamp_url, trust_roots
from portal.signing import services as signing_services
from portal.storage import FileMissing, storage
from portal.trail import verify_offline
from portal.trail.models import AuditArchive, AuditCheckpoint
from tenants.certificates import DistrictCertificate
from tenants.models import District, School

DOCUMENT_TYPE = "hocba.audit-checkpoint"
BATCH = 1000


class NoDistrictCertificate(RuntimeError):
    """No valid organisation certificate of the district is registered: nothing can be sealed."""


# --- reading chains ----------------------------------------------------------------------------------------


def chains() -> list[str]:
    """Every chain with entries, a head, a checkpoint or an archive: district first, then by school."""
    found = set(db.session.scalars(sa.select(AuditChainHead.chain)))
    found |= set(db.session.scalars(sa.select(AuditEntry.chain).distinct()))
    found |= set(db.session.scalars(sa.select(AuditCheckpoint.chain).distinct()))
    found |= set(db.session.scalars(sa.select(AuditArchive.chain).distinct()))
    return sorted(found, key=_chain_sort_key)


def _chain_sort_key(chain: str) -> tuple[int, int]:
    return (0, 0) if chain == audit.DISTRICT_CHAIN else (1, int(chain.partition(":")[2] or 0))


def school_of(chain: str) -> int | None:
    return None if chain == audit.DISTRICT_CHAIN else int(chain.partition(":")[2])


def live_entries(chain: str, *, up_to_seq: int | None = None) -> Iterator[dict[str, Any]]:
    """The chain's entries in the live table as export lines (fields and hash), in chain order."""
    table = AuditEntry.__table__
    last = (-1, -1)
    while True:
        query = (sa.select(table).where(table.c.chain == chain, sa.tuple_(table.c.seq, table.c.id) > last)
                 .order_by(table.c.seq, table.c.id).limit(BATCH))
        if up_to_seq is not None:
            query = query.where(table.c.seq <= up_to_seq)
        rows = db.session.execute(query).mappings().all()
        if not rows:
            return
        for row in rows:
            yield _line(row)
        last = (rows[-1]["seq"], rows[-1]["id"])


def _line(row: Any) -> dict[str, Any]:
    line = {name: row[name] for name in verify_offline.FIELDS}
    line["at"] = audit.canonical_time(row["at"])
    line["entry_hash"] = row["entry_hash"]
    return line


def archives(chain: str) -> list[AuditArchive]:
    return list(db.session.scalars(sa.select(AuditArchive).where(AuditArchive.chain == chain)
                                   .order_by(AuditArchive.first_seq)))


def archived_entries(archive: AuditArchive) -> list[dict[str, Any]]:
    data = storage().read(archive.file_digest)
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def checkpoints(chain: str | None = None, *, school_id: int | None = None) -> list[AuditCheckpoint]:
    """Newest first; one chain's, or (chain None) every chain's."""
    query = sa.select(AuditCheckpoint).order_by(AuditCheckpoint.sealed_at.desc(), AuditCheckpoint.id.desc())
    if chain is not None:
        query = query.where(AuditCheckpoint.chain == chain)
    return list(db.session.scalars(query))


# --- checkpoints -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sealed:
    chain: str
    checkpoint: AuditCheckpoint | None
    problem: str = ""


def _district() -> District:
    district = db.session.scalar(sa.select(District).order_by(District.id).limit(1))
    if district is None:
        raise NoDistrictCertificate("no district is set up")
    return district


def _signing_certificate(district: District) -> DistrictCertificate:
    certificate = signing_services.current_district_certificate(district.id)
    if certificate is None:
        raise NoDistrictCertificate("the district has no valid organisation certificate registered "
                                    "(flask audit certificate FILE.p12)")
    return certificate


def _document(district: District, chain: str, seq: int, last_entry_id: int, head_hash: str, sealed_at: datetime,
              certificate: DistrictCertificate, timestamp_wanted: bool) -> bytes:
    school_id = school_of(chain)
    school = db.session.get(School, school_id) if school_id is not None else None
    return audit.canonical_json({
        "type": DOCUMENT_TYPE, "version": 1, "district": district.code, "chain": chain, "school_id": school_id,
        "school_code": school.code if school else None, "school_name": school.name if school else None,
        "seq": seq, "last_entry_id": last_entry_id, "head_hash": head_hash,
        "sealed_at": audit.canonical_time(sealed_at), "certificate_sha256": certificate.fingerprint,
        "timestamp_requested": timestamp_wanted})


def seal(chain: str, seq: int, last_entry_id: int, head_hash: str, *,
         certificate: DistrictCertificate | None = None) -> AuditCheckpoint:
    """Sign one chain position as a checkpoint (added to the session, not committed)."""
    district = _district()
    certificate = certificate or _signing_certificate(district)
    url = timestamp_url()
    sealed_at = utcnow()
    document = _document(district, chain, seq, last_entry_id, head_hash, sealed_at, certificate, url is not None)
    key = signing_services.server_key(certificate)
    status = ""
    try:
        signature = engine.sign_detached(document, key, timestamp_url=url, trust_roots=trust_roots())
    except engine.CertificateNotUsable:
        raise
    except engine.SigningError as exc:  # the TSA did not answer: seal now, say so, try again tomorrow
        signature = engine.sign_detached(document, key, trust_roots=trust_roots())
        status = f"Chưa có dấu thời gian: {exc}"
    if url is None:
        status = "Không có dấu thời gian: chưa cấu hình máy chủ dấu thời gian (TIMESTAMP_URL)."
    checkpoint = AuditCheckpoint(
        chain=chain, school_id=school_of(chain), seq=seq, last_entry_id=last_entry_id, head_hash=head_hash,
        sealed_at=sealed_at, document_digest=storage().put(document),
        signature_digest=storage().put(signature.cms), certificate_fingerprint=certificate.fingerprint,
        timestamped=signature.timestamped, status=status[:300])
    db.session.add(checkpoint)
    return checkpoint


def seal_chains() -> list[Sealed]:
    """Seal the head of every chain that moved since its last checkpoint; one commit per chain.

    Not itself an audit entry: it would move the district's chain at every run, so that no run ever
    found everything sealed. The checkpoints are their own record, and signed.
    """
    certificate = _signing_certificate(_district())
    outcomes: list[Sealed] = []
    for head in db.session.scalars(sa.select(AuditChainHead).where(AuditChainHead.seq > 0)).all():
        chain, seq, head_hash, last_id = head.chain, head.seq, head.head_hash, head.last_entry_id
        latest = _latest_checkpoint(chain)
        if latest is not None and latest.seq == seq and latest.head_hash == head_hash:
            continue
        # Only what links to the last seal is sealed: a tail broken since then is reported, not blessed.
        breaks = _walk_tail(chain, latest, seq)
        if breaks:
            outcomes.append(Sealed(chain, None, str(breaks[0])))
            continue
        checkpoint = seal(chain, seq, last_id or 0, head_hash, certificate=certificate)
        db.session.commit()
        outcomes.append(Sealed(chain, checkpoint))
    return outcomes


def _latest_checkpoint(chain: str) -> AuditCheckpoint | None:
    return db.session.scalar(sa.select(AuditCheckpoint).where(AuditCheckpoint.chain == chain)
                             .order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.id.desc()).limit(1))


def _walk_tail(chain: str, latest: AuditCheckpoint | None, up_to_seq: int) -> list[verify_offline.Break]:
    start_seq, start_hash = 0, audit.GENESIS
    table = AuditEntry.__table__
    if latest is not None:
        # From what the district signed, not from the row: the row is as easy to change as the entries.
        try:
            signed = json.loads(storage().read(latest.document_digest))
        except FileMissing:
            signed = {}
        start_seq, start_hash = int(signed.get("seq", 0)), str(signed.get("head_hash", ""))
        sealed_entry = db.session.execute(sa.select(table.c.id, table.c.entry_hash).where(
            table.c.chain == chain, table.c.seq == start_seq)).first()
        if sealed_entry is not None and (sealed_entry.id, sealed_entry.entry_hash) != (
                signed.get("last_entry_id"), start_hash):
            return [verify_offline.Break(chain, sealed_entry.id, start_seq, "checkpoint",
                                         f"the last checkpoint (#{latest.id}) sealed another entry or hash here")]
    last_archive = db.session.scalar(sa.select(AuditArchive).where(AuditArchive.chain == chain)
                                     .order_by(AuditArchive.last_seq.desc()).limit(1))
    if last_archive is not None and last_archive.last_seq > start_seq:
        start_seq, start_hash = last_archive.last_seq, last_archive.last_hash
    table = AuditEntry.__table__
    entries = (_line(row) for row in db.session.execute(
        sa.select(table).where(table.c.chain == chain, table.c.seq > start_seq, table.c.seq <= up_to_seq)
        .order_by(table.c.seq, table.c.id)).mappings())
    state = verify_offline.walk(chain, entries, start_seq=start_seq, start_hash=start_hash)
    if state.seq != up_to_seq:
        state.breaks.append(verify_offline.Break(chain, None, state.seq, "head",
                                                 f"the chain's head is at position {up_to_seq}, its entries end "
                                                 f"at {state.seq}"))
    return state.breaks


# --- verification ------------------------------------------------------------------------------------------


@dataclass
class ChainReport:
    chain: str
    school_id: int | None
    entries: int = 0
    archived: int = 0
    checkpoints: int = 0
    head_seq: int = 0
    breaks: list[verify_offline.Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def first_break(self) -> verify_offline.Break | None:
        return self.breaks[0] if self.breaks else None

    def as_dict(self) -> dict[str, Any]:
        return {"chain": self.chain, "school_id": self.school_id, "entries": self.entries, "archived": self.archived,
                "checkpoints": self.checkpoints, "head_seq": self.head_seq, "ok": self.ok,
                "breaks": [{"entry_id": b.entry_id, "seq": b.seq, "kind": b.kind, "detail": b.detail}
                           for b in self.breaks]}


def verify_chains(*, chain: str | None = None, check_signatures: bool = True) -> list[ChainReport]:
    """Walk every chain (or one) from its first entry, archives included; name every break."""
    certificates = {c.fingerprint: c for c in db.session.scalars(sa.select(DistrictCertificate))}
    return [verify_chain(name, certificates=certificates, check_signatures=check_signatures)
            for name in ([chain] if chain else chains())]


def verify_chain(chain: str, *, certificates: dict[str, DistrictCertificate],
                 check_signatures: bool = True) -> ChainReport:
    report = ChainReport(chain, school_of(chain))
    sealed: dict[int, dict[str, Any]] = {}
    for checkpoint in checkpoints(chain):
        document = _checked_document(checkpoint, certificates, report, check_signatures)
        if document is not None:
            sealed[int(document["seq"])] = document
            report.checkpoints += 1
    state = verify_offline.Walk(chain, sealed=sealed)
    for archive in archives(chain):
        _walk_archive(archive, state, sealed, report)
    before = state.count
    for line in live_entries(chain):
        state.feed(line)
    report.entries = state.count - before
    head = db.session.get(AuditChainHead, chain)
    report.head_seq = head.seq if head else 0
    state.finish({"seq": head.seq, "head_hash": head.head_hash} if head else None)
    report.breaks.extend(state.breaks)
    report.breaks.sort(key=lambda b: (b.seq or 0, b.entry_id or 0))
    return report


def _checked_document(checkpoint: AuditCheckpoint, certificates: dict[str, DistrictCertificate],
                      report: ChainReport, check_signatures: bool) -> dict[str, Any] | None:
    """The checkpoint's signed document, or None (and a break) when its signature does not hold."""
    def broken(detail: str) -> None:
        report.breaks.append(verify_offline.Break(checkpoint.chain, checkpoint.last_entry_id, checkpoint.seq,
                                                  "checkpoint", f"checkpoint #{checkpoint.id}: {detail}"))

    try:
        document_bytes = storage().read(checkpoint.document_digest)
        signature = storage().read(checkpoint.signature_digest)
    except FileMissing:
        broken("its document or signature is missing from the file store")
        return None
    document = json.loads(document_bytes)
    if (document.get("chain"), document.get("seq"), document.get("head_hash"), document.get("last_entry_id")) != (
            checkpoint.chain, checkpoint.seq, checkpoint.head_hash, checkpoint.last_entry_id):
        broken("the table's row differs from the signed document")
    if not check_signatures:
        return document
    certificate = certificates.get(document.get("certificate_sha256", ""))
    if certificate is None:
        broken("signed with a certificate the district never registered")
        return None
    try:
        stamp = verify_offline.verify_checkpoint(document_bytes, signature, certificate.x509())
    except (ValueError, IndexError, KeyError) as exc:  # a mangled signature fails the DER reading too
        broken(f"its signature does not verify with the district's certificate ({exc})")
        return None
    sealed_at = datetime.fromisoformat(str(document.get("sealed_at")))
    if not certificate.valid_at(sealed_at):
        broken("sealed when the district's certificate was not valid")
    if not _trusted(certificate, sealed_at):
        broken("the district's certificate does not chain to a trusted root")
    if checkpoint.timestamped and stamp is None:
        broken("its timestamp is missing")
    return document


_TRUST: dict[tuple[str, tuple[str, ...]], bool] = {}


def _trusted(certificate: DistrictCertificate, at: datetime) -> bool:
    """Whether the certificate chains to the trust roots (pyHanko's path validation, once per certificate).

    Each checkpoint's signature itself is checked with `verify_offline.verify_checkpoint` (about 1 ms,
    where pyHanko's whole CMS validation took 45 ms): years of daily checkpoints stay quick to verify.
    """
    roots = trust_roots()
    key = (certificate.fingerprint, tuple(sorted(pki.describe(r).fingerprint for r in roots)))
    if key not in _TRUST:
        try:
            engine.check_certificate(certificate.x509(), certificate.chain(), trust_roots=roots, at=at)
            _TRUST[key] = True
        except engine.CertificateNotUsable:
            _TRUST[key] = False
    return _TRUST[key]


def _walk_archive(archive: AuditArchive, state: verify_offline.Walk, sealed: dict[int, dict[str, Any]],
                  report: ChainReport) -> None:
    def broken(detail: str) -> None:
        report.breaks.append(verify_offline.Break(archive.chain, archive.last_entry_id, archive.last_seq,
                                                  "archive", f"archive #{archive.id}: {detail}"))

    try:
        lines = archived_entries(archive)
    except FileMissing:
        broken("its file is missing from the file store")
        state.seq, state.head, state.last_id = archive.last_seq, archive.last_hash, archive.last_entry_id
        return
    for line in lines:
        state.feed(line)
    report.archived += len(lines)
    seal_doc = sealed.get(archive.last_seq)
    if seal_doc is None or seal_doc.get("head_hash") != archive.last_hash:
        broken("no valid checkpoint seals its last entry")
    if (state.seq, state.head) != (archive.last_seq, archive.last_hash):
        broken("its file does not end where the archive says")


# --- archives ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Archived:
    chain: str
    archive: AuditArchive | None
    entries: int = 0
    problem: str = ""


def archive_before(before: datetime, *, actor: Any = None) -> list[Archived]:
    """Move each chain's entries written before `before` out of the live table, sealed; one commit per chain."""
    outcomes = []
    for chain in chains():
        outcome = _archive_chain(chain, before, actor)
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def _archive_chain(chain: str, before: datetime, actor: Any) -> Archived | None:
    table = AuditEntry.__table__
    cut = db.session.scalar(sa.select(sa.func.max(table.c.seq)).where(table.c.chain == chain, table.c.at < before))
    if cut is None:
        return None
    previous = db.session.scalar(sa.select(AuditArchive).where(AuditArchive.chain == chain)
                                 .order_by(AuditArchive.last_seq.desc()).limit(1))
    start_seq, start_hash = (previous.last_seq, previous.last_hash) if previous else (0, audit.GENESIS)
    lines = list(live_entries(chain, up_to_seq=cut))
    state = verify_offline.walk(chain, lines, start_seq=start_seq, start_hash=start_hash)
    if state.breaks or state.seq != cut:
        # Archiving deletes: never delete the evidence of a broken chain.
        first = state.breaks[0] if state.breaks else f"{chain}: entries end at {state.seq}, not {cut}"
        return Archived(chain, None, problem=f"not archived, the chain is broken: {first}")
    last = lines[-1]
    checkpoint = seal(chain, cut, last["id"], last["entry_hash"])
    db.session.flush()
    data = b"".join(audit.canonical_json(line) + b"\n" for line in lines)
    archive = AuditArchive(chain=chain, school_id=school_of(chain), first_seq=lines[0]["seq"], last_seq=cut,
                           prev_hash=lines[0]["prev_hash"], last_hash=last["entry_hash"], last_entry_id=last["id"],
                           before=before, file_digest=storage().put(data), checkpoint_id=checkpoint.id)
    db.session.add(archive)
    connection = db.session.connection()
    postgres = connection.dialect.name == "postgresql"
    if postgres:  # the one deletion the append-only trigger lets through (see migration 0012)
        connection.execute(sa.text("SELECT set_config('hocba.audit_archive', 'on', true)"))
    # A Core DELETE: the ORM's append-only guard watches objects, and this is the controlled exception.
    connection.execute(table.delete().where(table.c.chain == chain, table.c.seq <= cut))
    if postgres:
        connection.execute(sa.text("SELECT set_config('hocba.audit_archive', 'off', true)"))
    audit.record("audit.archived", actor=actor, school_id=school_of(chain), obj=archive,
                 summary=f"Lưu trữ {len(lines)} mục nhật ký trước {before:%d/%m/%Y}",
                 changes={"first_seq": archive.first_seq, "last_seq": cut, "file": archive.file_digest,
                          "checkpoint_id": checkpoint.id})
    db.session.commit()
    return Archived(chain, archive, len(lines))


# --- exports -----------------------------------------------------------------------------------------------


def _chain_lines(chain: str) -> Iterator[dict[str, Any]]:
    for archive in archives(chain):
        try:
            yield from archived_entries(archive)
        except FileMissing:
            continue
    yield from live_entries(chain)


def checkpoint_name(checkpoint: AuditCheckpoint) -> str:
    return f"{checkpoint.chain.replace(':', '-')}-{checkpoint.seq:08d}-{checkpoint.id}"


def export_zip(chain_names: list[str]) -> bytes:
    """The chains' entries (JSON lines), their checkpoints, the district's certificates and the verifier."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("nhat-ky/export.jsonl", "w") as handle:
            for chain in chain_names:
                for line in _chain_lines(chain):
                    handle.write(audit.canonical_json(line) + b"\n")
        fingerprints = set()
        for chain in chain_names:
            for checkpoint in checkpoints(chain):
                name = checkpoint_name(checkpoint)
                try:
                    archive.writestr(f"nhat-ky/checkpoints/{name}.json", storage().read(checkpoint.document_digest))
                    archive.writestr(f"nhat-ky/checkpoints/{name}.p7s", storage().read(checkpoint.signature_digest))
                except FileMissing:
                    continue
                fingerprints.add(checkpoint.certificate_fingerprint)
        archive.writestr("nhat-ky/checkpoints/district-certificate.pem", district_certificates_pem(fingerprints))
        archive.writestr("nhat-ky/verify_offline.py", Path(verify_offline.__file__).read_bytes())
    return buffer.getvalue()


def district_certificates_pem(fingerprints: set[str] | None = None) -> bytes:
    """The district's registered certificates (those that signed, when given), newest first, as PEM."""
    query = sa.select(DistrictCertificate).order_by(DistrictCertificate.id.desc())
    rows = [c for c in db.session.scalars(query) if fingerprints is None or c.fingerprint in fingerprints]
    return b"".join(x509.load_der_x509_certificate(c.certificate).public_bytes(serialization.Encoding.PEM)
                    for c in rows)
