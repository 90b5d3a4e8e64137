"""Check an exported audit trail and its signed checkpoints without the portal.

    python verify_offline.py export.jsonl checkpoints/ [--certificate district.pem]

`export.jsonl` holds one entry per line as the portal chained it (its fields and `entry_hash`),
oldest first within each chain; `checkpoints/` holds each checkpoint as `<name>.json` (the signed
document) beside `<name>.p7s` (its detached CMS signature, DER), and the district's certificate as
`district-certificate.pem` unless `--certificate` names another file. The portal's export (district
page "Toàn vẹn nhật ký") is a zip with exactly that layout and this script in it.

What is checked: every entry's hash (its content was not edited), every link to the entry before it
(nothing removed, inserted or moved), that each checkpoint's signature verifies with the district's
certificate over its document, and that the chain holds, at the position each checkpoint sealed,
the entry and hash it sealed (the chain was not rewritten and re-hashed since). A checkpoint's RFC 3161
timestamp, when it has one, is checked too: its imprint covers the signature and the authority's
own signature verifies. Whether the district's certificate (and the timestamp authority's) is one you
trust is for you to decide: compare its fingerprint, printed at the end, with the one the district
publishes.

Needs Python 3.11+ and the `cryptography` package only; nothing of the portal or its database. The
portal itself uses this module's chain walk (`walk`), so both read the trail the same way.
Exit status 0 when everything verifies, 1 when something does not (each break is named), 2 on bad use.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
FIELDS = ("id", "chain", "seq", "prev_hash", "at", "actor_id", "actor_name", "school_id", "action", "object_type",
          "object_id", "summary", "changes", "address")


# --- the chain ---------------------------------------------------------------------------------------------


def canonical_json(fields: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8 (the same rule as the portal's `portal.audit.canonical_json`)."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json({name: entry.get(name) for name in FIELDS})).hexdigest()


@dataclass(frozen=True)
class Break:
    """Where a chain's history diverges: the entry (as stored now) at which the walk noticed it."""

    chain: str
    entry_id: int | None
    seq: int | None
    kind: str  # changed | missing | order | link | checkpoint | head
    detail: str

    def __str__(self) -> str:
        where = f"entry #{self.entry_id} (position {self.seq})" if self.entry_id is not None else "end of chain"
        return f"{self.chain}: {where}: {self.kind}: {self.detail}"


@dataclass
class Walk:
    """A chain read entry by entry; `feed` each entry in order, then read `breaks`."""

    chain: str
    seq: int = 0
    head: str = GENESIS
    last_id: int = 0
    count: int = 0
    sealed: dict[int, Mapping[str, Any]] = field(default_factory=dict)  # seq -> checkpoint document
    breaks: list[Break] = field(default_factory=list)
    matched: set[int] = field(default_factory=set)  # the seqs of the checkpoints found in the chain

    def feed(self, entry: Mapping[str, Any]) -> None:
        entry_id, seq = entry.get("id"), entry.get("seq")
        problem: tuple[str, str] | None = None
        if not isinstance(seq, int) or seq <= self.seq or (isinstance(entry_id, int) and entry_id <= self.last_id):
            problem = ("order", f"out of order: comes after position {self.seq} (entry #{self.last_id})")
        elif seq > self.seq + 1:
            problem = ("missing", f"positions {self.seq + 1}-{seq - 1} are missing before it")
        elif entry.get("prev_hash") != self.head:
            problem = ("link", "does not link to the entry before it (an entry was removed, added or moved)")
        elif entry.get("chain") != self.chain:
            problem = ("changed", f"claims chain {entry.get('chain')}")
        elif entry_hash(entry) != entry.get("entry_hash"):
            problem = ("changed", "its content was changed after it was written")
        if problem is not None:
            self.breaks.append(Break(self.chain, entry_id, seq, *problem))
        self.seq = seq if isinstance(seq, int) else self.seq + 1
        self.head = str(entry.get("entry_hash"))
        self.last_id = entry_id if isinstance(entry_id, int) else self.last_id
        self.count += 1
        sealed = self.sealed.get(self.seq)
        if sealed is not None:
            self.matched.add(self.seq)
            if sealed.get("head_hash") != self.head or sealed.get("last_entry_id") != self.last_id:
                self.breaks.append(Break(self.chain, entry_id, seq, "checkpoint",
                                         f"the checkpoint sealed at {sealed.get('sealed_at')} holds entry "
                                         f"#{sealed.get('last_entry_id')} with hash {sealed.get('head_hash')} here"))

    def finish(self, head: Mapping[str, Any] | None = None) -> list[Break]:
        """The breaks, with the checkpoints beyond the end and (given) a head the chain does not reach."""
        for seq in sorted(set(self.sealed) - self.matched):
            if seq > self.seq:
                self.breaks.append(Break(self.chain, None, self.seq, "checkpoint",
                                         f"a checkpoint sealed position {seq}, the chain ends at {self.seq}: "
                                         "entries were removed from its end"))
        if head is not None and (head.get("seq") != self.seq or head.get("head_hash") != self.head):
            self.breaks.append(Break(self.chain, None, self.seq, "head",
                                     f"the chain's head says position {head.get('seq')}, the entries end at "
                                     f"{self.seq}: entries were removed from its end"))
        return self.breaks


def walk(chain: str, entries: Iterable[Mapping[str, Any]], *, sealed: Mapping[int, Mapping[str, Any]] = (),
         start_seq: int = 0, start_hash: str = GENESIS) -> Walk:
    """Walk one chain's entries (oldest first), from the start or from an archive boundary."""
    state = Walk(chain, seq=start_seq, head=start_hash, sealed=dict(sealed or {}))
    for entry in entries:
        state.feed(entry)
    return state


# --- a minimal DER reader, enough for a CMS SignedData ----------------------------------------------------


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes
    raw: bytes  # the whole encoding, tag and length included

    def children(self) -> list[Tlv]:
        return list(_read_all(self.value))


def _read(data: bytes, at: int) -> tuple[Tlv, int]:
    tag = data[at]
    length = data[at + 1]
    start = at + 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[start:start + size], "big")
        start += size
    end = start + length
    if end > len(data):
        raise ValueError("truncated DER")
    return Tlv(tag, data[start:end], data[at:end]), end


def _read_all(data: bytes) -> Iterator[Tlv]:
    at = 0
    while at < len(data):
        item, at = _read(data, at)
        yield item


def _oid(tlv: Tlv) -> str:
    value = tlv.value
    parts = [value[0] // 40, value[0] % 40]
    number = 0
    for byte in value[1:]:
        number = (number << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(number)
            number = 0
    return ".".join(str(p) for p in parts)


OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_TIMESTAMP_TOKEN = "1.2.840.113549.1.9.16.2.14"
DIGESTS = {"2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
           "2.16.840.1.101.3.4.2.3": "sha512"}


@dataclass(frozen=True)
class SignerInfo:
    serial: int | None
    digest: str
    signed_attributes: bytes  # DER, re-tagged as a SET: what the signature covers
    message_digest: bytes
    signature: bytes
    timestamp_token: bytes | None


@dataclass(frozen=True)
class SignedData:
    content: bytes | None
    certificates: list[bytes]
    signer: SignerInfo


def read_signed_data(der: bytes) -> SignedData:
    content_info = _read(der, 0)[0].children()
    if _oid(content_info[0]) != OID_SIGNED_DATA:
        raise ValueError("not a CMS SignedData")
    parts = content_info[1].children()[0].children()
    encapsulated = parts[2].children()
    content = None
    if len(encapsulated) > 1:  # [0] EXPLICIT OCTET STRING
        content = encapsulated[1].children()[0].value
    certificates = [c.raw for c in parts[3].children()] if parts[3].tag == 0xA0 else []
    return SignedData(content, certificates, _signer_info(parts[-1].children()[0]))


def _signer_info(info: Tlv) -> SignerInfo:
    items = info.children()
    sid = items[1]
    serial = int.from_bytes(sid.children()[1].value, "big", signed=True) if sid.tag == 0x30 else None
    digest = DIGESTS.get(_oid(items[2].children()[0]), "")
    signed = items[3]
    if signed.tag != 0xA0:
        raise ValueError("the signature has no signed attributes")
    attributes = {_oid(a.children()[0]): a.children()[1].children() for a in signed.children()}
    message_digest = attributes[OID_MESSAGE_DIGEST][0].value
    signature = items[5].value
    token = None
    if len(items) > 6 and items[6].tag == 0xA1:
        unsigned = {_oid(a.children()[0]): a.children()[1].children() for a in items[6].children()}
        if OID_TIMESTAMP_TOKEN in unsigned:
            token = unsigned[OID_TIMESTAMP_TOKEN][0].raw
    return SignerInfo(serial, digest, b"\x31" + signed.raw[1:], message_digest, signature, token)


def _verify_signer(signer: SignerInfo, certificate: Any, content: bytes) -> None:
    """Raise ValueError unless `certificate` signed `content` (via the signed attributes)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    algorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}.get(signer.digest)
    if algorithm is None:
        raise ValueError("unknown digest algorithm")
    if hashlib.new(signer.digest, content).digest() != signer.message_digest:
        raise ValueError("the signed digest is not the document's: the document was changed")
    if signer.serial is not None and signer.serial != certificate.serial_number:
        raise ValueError("signed with another certificate")
    key = certificate.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signer.signature, signer.signed_attributes, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signer.signature, signer.signed_attributes, padding.PKCS1v15(), algorithm)
        else:
            raise ValueError("unsupported key type")
    except InvalidSignature as exc:
        raise ValueError("the signature does not verify with the certificate") from exc


@dataclass(frozen=True)
class Timestamp:
    at: datetime
    authority: str


def _check_timestamp(token: bytes, signature: bytes) -> Timestamp:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    signed = read_signed_data(token)
    if signed.content is None:
        raise ValueError("the timestamp token holds no TSTInfo")
    tst = _read(signed.content, 0)[0].children()
    imprint = tst[2].children()
    algorithm = DIGESTS.get(_oid(imprint[0].children()[0]), "")
    if not algorithm or hashlib.new(algorithm, signature).digest() != imprint[1].value:
        raise ValueError("the timestamp does not cover this signature")
    authorities = [x509.load_der_x509_certificate(c) for c in signed.certificates]
    authority = next((c for c in authorities if c.serial_number == signed.signer.serial), None)
    if authority is None:
        raise ValueError("the timestamp token does not carry its authority's certificate")
    _verify_signer(signed.signer, authority, signed.content)
    moment = datetime.strptime(tst[4].value.decode().rstrip("Z").split(".")[0], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    names = authority.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return Timestamp(moment, str(names[0].value) if names else authority.subject.rfc4514_string())


def verify_checkpoint(document: bytes, signature: bytes, certificate: Any) -> Timestamp | None:
    """Raise ValueError unless the district's `certificate` signed `document`; the timestamp, if any."""
    signed = read_signed_data(signature)
    _verify_signer(signed.signer, certificate, document)
    if signed.signer.timestamp_token is None:
        return None
    return _check_timestamp(signed.signer.timestamp_token, signed.signer.signature)


# --- the command -------------------------------------------------------------------------------------------


def _load_certificates(path: Path) -> dict[str, Any]:
    """{SHA-256 of the DER: certificate} for every certificate in a PEM bundle (or one DER file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        certificates = x509.load_pem_x509_certificates(data)
    else:
        certificates = [x509.load_der_x509_certificate(data)]
    return {hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest(): c for c in certificates}


def _checkpoints(folder: Path, certificates: dict[str, Any], problems: list[str],
                 used: set[str]) -> dict[str, dict[int, dict[str, Any]]]:
    sealed: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.json")):
        document = path.read_bytes()
        signature = path.with_suffix(".p7s")
        try:
            content = json.loads(document)
            certificate = certificates.get(content.get("certificate_sha256", ""))
            if certificate is None:
                raise ValueError("signed with none of the district certificates given")
            if not signature.exists():
                raise ValueError("no signature beside it")
            stamp = verify_checkpoint(document, signature.read_bytes(), certificate)
            used.add(content["certificate_sha256"])
        except ValueError as exc:
            problems.append(f"checkpoint {path.name}: {exc}")
            continue
        note = f", timestamped {stamp.at:%Y-%m-%d %H:%M:%S} UTC by {stamp.authority}" if stamp else ", no timestamp"
        print(f"checkpoint {path.name}: signature OK{note}")
        sealed.setdefault(content["chain"], {})[int(content["seq"])] = content
    return sealed


def _entries(export: Path) -> dict[str, list[dict[str, Any]]]:
    chains: dict[str, list[dict[str, Any]]] = {}
    with export.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                entry = json.loads(line)
                chains.setdefault(str(entry.get("chain")), []).append(entry)
    return chains


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an exported audit trail and its signed checkpoints.")
    parser.add_argument("export", type=Path, help="the exported entries (.jsonl)")
    parser.add_argument("checkpoints", type=Path, help="the folder of checkpoints (.json and .p7s)")
    parser.add_argument("--certificate", type=Path, help="the district's certificate (PEM or DER)")
    args = parser.parse_args(argv)
    certificate_path = args.certificate or args.checkpoints / "district-certificate.pem"
    if not args.export.is_file() or not args.checkpoints.is_dir() or not certificate_path.is_file():
        parser.print_usage(sys.stderr)
        print("the export, the checkpoints folder and the district's certificate must exist", file=sys.stderr)
        return 2
    certificates = _load_certificates(certificate_path)
    problems: list[str] = []
    used: set[str] = set()
    sealed = _checkpoints(args.checkpoints, certificates, problems, used)
    chains = _entries(args.export)
    for chain in sorted(set(chains) | set(sealed)):
        # From the first position and the genesis hash: the portal's exports hold archived entries too,
        # so an export that begins later has lost its beginning.
        state = walk(chain, chains.get(chain, []), sealed=sealed.get(chain, {}))
        breaks = state.finish()
        problems.extend(str(b) for b in breaks)
        print(f"chain {chain}: {state.count} entries, head {state.head[:16]}…, "
              + ("OK" if not breaks else f"{len(breaks)} break(s)"))
    for fingerprint in sorted(used):
        print(f"signed by: {certificates[fingerprint].subject.rfc4514_string()} (SHA-256 {fingerprint})")
    for problem in problems:
        print(f"BROKEN {problem}")
    print("everything verifies" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
