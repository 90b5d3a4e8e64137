"""The audit trail in words: what each recorded action and object type is called on the page.

The codes stay in the trail (and in its export) as they are; the page shows these words, with the code
kept in a tooltip for whoever needs it. An action without its own words falls back to its group's.
"""

from __future__ import annotations

from flask_babel import gettext as _

from tenants.roles import N_

GROUPS = {
    "auth": N_("Đăng nhập"), "agent": N_("Phần mềm ký số"), "staff": N_("Cán bộ, giáo viên"), "user": N_("Tài khoản"),
    "school": N_("Trường"), "district": N_("Phòng"), "school_year": N_("Năm học"), "class": N_("Lớp"),
    "period": N_("Kì đánh giá"), "pupil": N_("Học sinh"), "grading": N_("Đánh giá"), "ratings": N_("Đánh giá"),
    "results": N_("Kết quả cuối năm"), "award": N_("Khen thưởng"), "record": N_("Học bạ số"),
    "signing": N_("Ký số"), "certificate": N_("Chứng thư số"), "seal_certificate": N_("Con dấu số"),
    "exchange": N_("Liên thông"), "transfer": N_("Chuyển trường"), "family": N_("Gia đình"),
    "family_code": N_("Mã tra cứu gia đình"), "verify": N_("Tra cứu công khai"), "plan": N_("Kế hoạch"),
    "progress": N_("Tiến độ"), "evidence": N_("Minh chứng"), "training": N_("Tập huấn"), "notice": N_("Nhắc việc"),
    "job": N_("Tác vụ nền"), "demo": N_("Dữ liệu mẫu"),
}

ACTIONS = {
    "auth.login": N_("Đăng nhập"), "auth.logout": N_("Đăng xuất"), "auth.login_failed": N_("Đăng nhập sai"),
    "auth.login_throttled": N_("Tạm khóa đăng nhập"), "auth.password_changed": N_("Đổi mật khẩu"),
    "auth.locale_changed": N_("Đổi ngôn ngữ"),
    "staff.created": N_("Thêm cán bộ, giáo viên"), "staff.updated": N_("Sửa thông tin cán bộ, giáo viên"),
    "staff.imported": N_("Nhập danh sách cán bộ, giáo viên"), "staff.activated": N_("Khóa hoặc mở khóa tài khoản"),
    "staff.password_reset": N_("Đặt lại mật khẩu"),
    "pupil.created": N_("Thêm học sinh"), "pupil.updated": N_("Sửa thông tin học sinh"),
    "pupil.imported": N_("Nhập học sinh từ CSDL ngành"), "pupil.exported": N_("Xuất danh sách học sinh"),
    "pupil.identity_reviewed": N_("Rà soát thông tin học sinh"),
    "pupil.identity_review_cleared": N_("Bỏ dấu rà soát thông tin học sinh"),
    "grading.saved": N_("Lưu bảng đánh giá"), "ratings.imported": N_("Nhập đánh giá từ Excel"),
    "results.confirmed": N_("Xác nhận kết quả cuối năm"), "results.set": N_("Chọn kết quả cuối năm"),
    "results.reviewed": N_("Rà soát kết quả cuối năm"), "results.review_cleared": N_("Bỏ dấu rà soát kết quả"),
    "results.promotion_decided": N_("Quyết định lên lớp"),
    "results.supplementary_note_set": N_("Ghi kết quả đánh giá bổ sung"),
    "results.imported": N_("Nhận kết quả từ CSDL ngành"),
    "award.added": N_("Thêm khen thưởng"), "award.removed": N_("Xóa khen thưởng"),
    "record.generated": N_("Tạo học bạ số"), "record.signed": N_("Ký số học bạ"),
    "record.status": N_("Đổi trạng thái học bạ"), "record.downloaded": N_("Tải học bạ"),
    "exchange.queued": N_("Xếp hàng gửi Thành phố"), "exchange.acknowledged": N_("Thành phố đã tiếp nhận học bạ"),
    "exchange.rejected": N_("Thành phố từ chối học bạ"), "exchange.retry": N_("Thử gửi lại Thành phố"),
    "exchange.stuck": N_("Gửi Thành phố bị kẹt"), "exchange.received": N_("Nhận học bạ Thành phố trả về"),
    "exchange.received_copy": N_("Lưu bản học bạ nhận về"), "exchange.bundle": N_("Xuất gói dữ liệu cho Sở"),
    "transfer.released": N_("Cho học sinh chuyển đi"), "transfer.received": N_("Nhận hồ sơ chuyển đến"),
    "transfer.accepted": N_("Tiếp nhận học sinh chuyển đến"),
    "certificate.registered": N_("Đăng kí chứng thư số"), "seal_certificate.registered": N_("Đăng kí con dấu số"),
    "family.opened": N_("Gia đình mở học bạ"), "family.viewed": N_("Gia đình xem học bạ"),
    "family.downloaded": N_("Gia đình tải học bạ"), "family_code.revoked": N_("Thu hồi mã tra cứu gia đình"),
    "verify.code": N_("Tra cứu bằng mã"), "verify.file": N_("Kiểm tra tệp học bạ"),
    "evidence.submitted": N_("Nộp minh chứng"), "evidence.accepted": N_("Duyệt minh chứng"),
    "notice.sent": N_("Gửi nhắc việc"), "notice.read": N_("Đọc nhắc việc"), "job.queued": N_("Bắt đầu tác vụ nền"),
}

OBJECTS = {
    "Pupil": N_("Học sinh"), "SchoolClass": N_("Lớp"), "RecordVersion": N_("Học bạ"), "CityUpload": N_("Lần gửi"),
    "User": N_("Tài khoản"), "Membership": N_("Tài khoản"), "School": N_("Trường"), "SchoolYear": N_("Năm học"),
    "Period": N_("Kì"), "Award": N_("Khen thưởng"), "Enrolment": N_("Học sinh"), "YearResult": N_("Kết quả"),
    "Milestone": N_("Mốc kế hoạch"), "Evidence": N_("Minh chứng"), "TrainingSession": N_("Buổi tập huấn"),
    "PupilTransfer": N_("Chuyển trường"), "ReceivedRecord": N_("Học bạ nhận về"), "JobRun": N_("Tác vụ"),
    "PersonCertificate": N_("Chứng thư số"), "SealCertificate": N_("Con dấu số"), "Notice": N_("Nhắc việc"),
}


def group_of(action: str) -> str:
    return action.split(".", 1)[0]


def action_label(action: str) -> str:
    """The action in words: its own, else its group's (never the bare code)."""
    if action in ACTIONS:
        return _(ACTIONS[action])
    group = GROUPS.get(group_of(action))
    return _(group) if group else action


def object_label(object_type: str | None) -> str:
    return _(OBJECTS[object_type]) if object_type in OBJECTS else (object_type or "")


def group_choices() -> list[tuple[str, str]]:
    """The filter's choices, one per group, in the user's language and alphabetical order."""
    seen: dict[str, str] = {}
    for key, label in GROUPS.items():
        seen.setdefault(_(label), key)
    return sorted(((key, label) for label, key in seen.items()), key=lambda item: item[1])
