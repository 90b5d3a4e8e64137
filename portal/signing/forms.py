from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, PasswordField, RadioField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, StopValidation

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
    keep_passphrase = BooleanField(_l("Lưu mật khẩu tệp trên hệ thống, khóa bằng mã PIN ký số của riêng tôi: "
                                      "khi ký theo lô chỉ cần nhập mã PIN"), default=True)
    # A person's key opens only with a PIN its holder chose: no administrator and no password reset recovers it.
    signing_pin = PasswordField(_l("Mã PIN ký số (ít nhất 6 ký tự, chỉ bạn biết)"), validators=[Length(max=64)])
    signing_pin_confirm = PasswordField(_l("Nhập lại mã PIN ký số"), validators=[Length(max=64)])
    csc_provider = StringField(_l("Nhà cung cấp dịch vụ ký số từ xa"), validators=[Optional(), Length(max=100)])
    csc_credential_id = StringField(_l("Mã chứng thư tại nhà cung cấp (credential ID)"),
                                    validators=[Length(max=200)])

    def __init__(self, *args: object, seal: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.key_kind.choices = _key_kind_choices(seal=seal)
        if seal:  # the school's seal is the organisation's key: sealed on the server, applied unattended
            self.keep_passphrase.label.text = str(_l("Lưu mật khẩu (đã mã hóa) trên hệ thống để đóng dấu theo lô"))
            del self.signing_pin
            del self.signing_pin_confirm

    def _pin_wanted(self) -> bool:
        return self.key_kind.data == KeyKind.PKCS12.value and bool(self.keep_passphrase.data)

    def validate_signing_pin(self, field: PasswordField) -> None:
        if self._pin_wanted() and not field.data:
            raise StopValidation(str(_l("Cần đặt mã PIN ký số (hoặc bỏ chọn lưu mật khẩu trên hệ thống).")))

    def validate_signing_pin_confirm(self, field: PasswordField) -> None:
        if self._pin_wanted() and field.data != self.signing_pin.data:
            raise StopValidation(str(_l("Hai mã PIN không giống nhau.")))

    def validate_passphrase(self, field: PasswordField) -> None:
        if self.key_kind.data == KeyKind.PKCS12.value and not field.data:
            raise StopValidation(str(_l("Cần nhập mật khẩu của tệp .p12/.pfx.")))

    def validate_csc_credential_id(self, field: StringField) -> None:
        if self.key_kind.data == KeyKind.CSC.value and not field.data:
            raise StopValidation(str(_l("Cần nhập mã chứng thư tại nhà cung cấp dịch vụ ký số từ xa.")))


class SigningPinForm(PortalForm):
    """The holder sets (or resets) their signing PIN, proving with the .p12 passphrase that the key is theirs."""

    passphrase = PasswordField(_l("Mật khẩu của tệp .p12/.pfx"), validators=[DataRequired(), Length(max=200)])
    signing_pin = PasswordField(_l("Mã PIN ký số mới (ít nhất 6 ký tự)"), validators=[DataRequired(), Length(max=64)])
    signing_pin_confirm = PasswordField(_l("Nhập lại mã PIN ký số"), validators=[
        DataRequired(), EqualTo("signing_pin", message=_l("Hai mã PIN không giống nhau."))])


class BatchActionForm(PortalForm):
    """Retry or cancel a signing batch: a button, with its CSRF token."""
