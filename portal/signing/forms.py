from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, PasswordField, RadioField, StringField
from wtforms.validators import Length, Optional, StopValidation

from portal.forms import PortalForm
from tenants.certificates import KeyKind


def _key_kind_choices(*, seal: bool) -> list[tuple[str, object]]:
    return [
        (KeyKind.PKCS12.value, _l("Tệp chứng thư số có khóa bí mật (.p12, .pfx): hệ thống ký trên máy chủ")),
        (KeyKind.USB.value, _l("USB token tại trường: ký bằng phần mềm ký số Học bạ số trên máy tính")
         if seal else _l("USB token: ký bằng phần mềm ký số Học bạ số trên máy tính của tôi")),
        (KeyKind.CSC.value, _l("Ký số từ xa (VNPT SmartCA, Viettel MySign...): duyệt trên điện thoại")),
    ]


class CertificateForm(PortalForm):
    """Register a certificate: a .p12/.pfx with its passphrase, or the certificate of a key kept elsewhere."""

    key_kind = RadioField(_l("Khóa bí mật nằm ở đâu"), default=KeyKind.PKCS12.value)
    file = FileField(_l("Tệp chứng thư số (.p12, .pfx; hoặc .cer, .crt, .pem kèm chuỗi chứng thực)"),
                     validators=[FileRequired(_l("Cần chọn tệp chứng thư số."))])
    # No Optional(): it would stop the chain before `validate_passphrase` sees an empty passphrase.
    passphrase = PasswordField(_l("Mật khẩu của tệp .p12/.pfx"), validators=[Length(max=200)])
    keep_passphrase = BooleanField(_l("Lưu mật khẩu (đã mã hóa) trên hệ thống để ký theo lô mà không phải nhập lại"),
                                   default=True)
    csc_provider = StringField(_l("Nhà cung cấp dịch vụ ký số từ xa"), validators=[Optional(), Length(max=100)])
    csc_credential_id = StringField(_l("Mã chứng thư tại nhà cung cấp (credential ID)"),
                                    validators=[Length(max=200)])

    def __init__(self, *args: object, seal: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.key_kind.choices = _key_kind_choices(seal=seal)

    def validate_passphrase(self, field: PasswordField) -> None:
        if self.key_kind.data == KeyKind.PKCS12.value and not field.data:
            raise StopValidation(str(_l("Cần nhập mật khẩu của tệp .p12/.pfx.")))

    def validate_csc_credential_id(self, field: StringField) -> None:
        if self.key_kind.data == KeyKind.CSC.value and not field.data:
            raise StopValidation(str(_l("Cần nhập mã chứng thư tại nhà cung cấp dịch vụ ký số từ xa.")))


class BatchActionForm(PortalForm):
    """Retry or cancel a signing batch: a button, with its CSRF token."""
