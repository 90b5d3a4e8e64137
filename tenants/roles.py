"""The roles of the portal and what each may do: the one place where permissions are written."""

from __future__ import annotations

import unicodedata
from enum import StrEnum

from flask_babel import gettext


def N_(text: str) -> str:
    """Marks a Vietnamese source string for translation; it is translated where it is shown."""
    return text


class Role(StrEnum):
    DISTRICT_ADMIN = "district_admin"
    DISTRICT_OFFICER = "district_officer"
    PRINCIPAL = "principal"
    VICE_PRINCIPAL = "vice_principal"
    SCHOOL_IT = "school_it"
    HOMEROOM_TEACHER = "homeroom_teacher"
    SUBJECT_TEACHER = "subject_teacher"

    @property
    def label(self) -> str:
        return gettext(ROLE_LABELS[self])

    @property
    def is_district_role(self) -> bool:
        return self in DISTRICT_ROLES


class Permission(StrEnum):
    VIEW_DISTRICT = "district.view"
    MANAGE_SCHOOLS = "district.manage_schools"
    VIEW_DISTRICT_AUDIT = "district.view_audit"
    VIEW_SCHOOL = "school.view"
    VIEW_STAFF = "school.view_staff"
    MANAGE_STAFF = "school.manage_staff"
    ASSIGN_MANAGEMENT_ROLES = "school.assign_management_roles"
    VIEW_SCHOOL_AUDIT = "school.view_audit"
    MANAGE_SCHOOL_YEAR = "assessment.manage_year"
    VIEW_PUPILS = "assessment.view_pupils"
    MANAGE_PUPILS = "assessment.manage_pupils"
    VIEW_PERSONAL_ID = "assessment.view_personal_id"
    ENTER_RATINGS = "assessment.enter_ratings"
    VIEW_ALL_RATINGS = "assessment.view_all_ratings"
    CONFIRM_RESULTS = "assessment.confirm_results"
    DECIDE_PROMOTION = "assessment.decide_promotion"
    VIEW_REVIEW_PROGRESS = "assessment.view_review_progress"
    VIEW_RECORDS = "records.view"
    VIEW_ALL_RECORDS = "records.view_all"
    GENERATE_RECORDS = "records.generate"
    SIGN_AS_HOMEROOM = "signing.sign_homeroom"
    SIGN_AS_PRINCIPAL = "signing.sign_principal"
    APPLY_SEAL = "signing.apply_seal"
    MANAGE_SEAL = "signing.manage_seal"
    CANCEL_RECORDS = "records.cancel_correct"
    MANAGE_FAMILY_ACCESS = "records.family_access"
    EXCHANGE_RECORDS = "exchange.upload"
    TRANSFER_PUPILS = "exchange.transfer"
    VIEW_SCHOOL_PROGRESS = "compliance.view_school"
    SUBMIT_EVIDENCE = "compliance.submit_evidence"
    MANAGE_TRAINING = "compliance.manage_training"
    MANAGE_PLAN = "district.manage_plan"
    DISTRICT_EXCHANGE = "district.exchange"

    @property
    def label(self) -> str:
        return gettext(PERMISSION_LABELS[self])


ROLE_LABELS = {
    Role.DISTRICT_ADMIN: N_("Quản trị Phòng GD&ĐT"),
    Role.DISTRICT_OFFICER: N_("Chuyên viên Phòng GD&ĐT (chỉ xem)"),
    Role.PRINCIPAL: N_("Hiệu trưởng"),
    Role.VICE_PRINCIPAL: N_("Phó hiệu trưởng"),
    Role.SCHOOL_IT: N_("Nhân viên CNTT"),
    Role.HOMEROOM_TEACHER: N_("Giáo viên chủ nhiệm"),
    Role.SUBJECT_TEACHER: N_("Giáo viên bộ môn"),
}

PERMISSION_LABELS = {
    Permission.VIEW_DISTRICT: N_("Xem danh sách trường và tiến độ toàn Phòng"),
    Permission.MANAGE_SCHOOLS: N_("Tạo trường, tạo tài khoản Hiệu trưởng và Nhân viên CNTT"),
    Permission.VIEW_DISTRICT_AUDIT: N_("Xem nhật ký hoạt động của mọi trường"),
    Permission.VIEW_SCHOOL: N_("Vào trang của trường"),
    Permission.VIEW_STAFF: N_("Xem danh sách cán bộ, giáo viên"),
    Permission.MANAGE_STAFF: N_("Tạo tài khoản, phân quyền, khóa, đặt lại mật khẩu, nhập danh sách"),
    Permission.ASSIGN_MANAGEMENT_ROLES: N_("Giao vai trò Hiệu trưởng, Phó hiệu trưởng, Nhân viên CNTT"),
    Permission.VIEW_SCHOOL_AUDIT: N_("Xem và xuất nhật ký hoạt động của trường"),
    Permission.MANAGE_SCHOOL_YEAR: N_("Thiết lập năm học, kì đánh giá, lớp, phân công giáo viên"),
    Permission.VIEW_PUPILS: N_("Xem danh sách học sinh"),
    Permission.MANAGE_PUPILS: N_("Nhập học sinh từ CSDL ngành, sửa thông tin nhân thân"),
    Permission.VIEW_PERSONAL_ID: N_("Xem số định danh cá nhân của học sinh"),
    Permission.ENTER_RATINGS: N_("Nhập đánh giá (lớp chủ nhiệm, môn được phân công)"),
    Permission.VIEW_ALL_RATINGS: N_("Xem đánh giá của mọi lớp"),
    Permission.CONFIRM_RESULTS: N_("Xác nhận kết quả cuối năm, khen thưởng, rà soát (lớp chủ nhiệm)"),
    Permission.DECIDE_PROMOTION: N_("Quyết định lên lớp cho học sinh chưa hoàn thành"),
    Permission.VIEW_REVIEW_PROGRESS: N_("Theo dõi tiến độ rà soát của các lớp"),
    Permission.VIEW_RECORDS: N_("Xem học bạ số của lớp chủ nhiệm"),
    Permission.VIEW_ALL_RECORDS: N_("Xem học bạ số của mọi lớp"),
    Permission.GENERATE_RECORDS: N_("Tạo bản học bạ số để rà soát và ký (lớp được xem)"),
    Permission.SIGN_AS_HOMEROOM: N_("Ký số học bạ với tư cách giáo viên chủ nhiệm (lớp chủ nhiệm)"),
    Permission.SIGN_AS_PRINCIPAL: N_("Ký số học bạ với tư cách Hiệu trưởng, trả lại để sửa"),
    Permission.APPLY_SEAL: N_("Ký số bằng chứng thư số của trường (đóng dấu số) để ban hành"),
    Permission.MANAGE_SEAL: N_("Đăng kí chứng thư số (con dấu số) của trường"),
    Permission.CANCEL_RECORDS: N_("Hủy bỏ, điều chỉnh học bạ số đã ban hành"),
    Permission.MANAGE_FAMILY_ACCESS: N_("Cấp, đổi, thu hồi mã tra cứu học bạ cho gia đình"),
    Permission.EXCHANGE_RECORDS: N_("Gửi học bạ số lên hệ thống Thành phố, nhận học bạ trả về"),
    Permission.TRANSFER_PUPILS: N_("Chuyển trường, tiếp nhận học sinh chuyển đến"),
    Permission.VIEW_SCHOOL_PROGRESS: N_("Xem tiến độ triển khai học bạ số của trường"),
    Permission.SUBMIT_EVIDENCE: N_("Nộp minh chứng (quyết định, biên bản) cho các mốc kế hoạch"),
    Permission.MANAGE_TRAINING: N_("Ghi nhận các buổi tập huấn cán bộ, giáo viên"),
    Permission.MANAGE_PLAN: N_("Lập kế hoạch, duyệt minh chứng, nhắc việc các trường"),
    Permission.DISTRICT_EXCHANGE: N_("Gửi học bạ số của các trường lên Thành phố, lập gói nộp Bộ"),
}

DISTRICT_ROLES = frozenset({Role.DISTRICT_ADMIN, Role.DISTRICT_OFFICER})
SCHOOL_ROLES = tuple(role for role in Role if role not in DISTRICT_ROLES)
# Roles that only a principal (or the district) may hand out: they carry the school's administration.
MANAGEMENT_ROLES = frozenset({Role.PRINCIPAL, Role.VICE_PRINCIPAL, Role.SCHOOL_IT})

P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.DISTRICT_ADMIN: frozenset({P.VIEW_DISTRICT, P.MANAGE_SCHOOLS, P.VIEW_DISTRICT_AUDIT, P.MANAGE_PLAN,
                                    P.DISTRICT_EXCHANGE}),
    Role.DISTRICT_OFFICER: frozenset({P.VIEW_DISTRICT, P.VIEW_DISTRICT_AUDIT}),
    Role.PRINCIPAL: frozenset(
        {P.VIEW_SCHOOL, P.VIEW_STAFF, P.MANAGE_STAFF, P.ASSIGN_MANAGEMENT_ROLES, P.VIEW_SCHOOL_AUDIT,
         P.MANAGE_SCHOOL_YEAR, P.VIEW_PUPILS, P.MANAGE_PUPILS, P.VIEW_PERSONAL_ID, P.VIEW_ALL_RATINGS,
         P.DECIDE_PROMOTION, P.VIEW_REVIEW_PROGRESS, P.VIEW_RECORDS, P.VIEW_ALL_RECORDS, P.GENERATE_RECORDS,
         P.SIGN_AS_PRINCIPAL, P.APPLY_SEAL, P.MANAGE_SEAL, P.CANCEL_RECORDS, P.MANAGE_FAMILY_ACCESS, P.EXCHANGE_RECORDS,
         P.TRANSFER_PUPILS, P.VIEW_SCHOOL_PROGRESS, P.SUBMIT_EVIDENCE, P.MANAGE_TRAINING}
    ),
    Role.VICE_PRINCIPAL: frozenset(
        {P.VIEW_SCHOOL, P.VIEW_STAFF, P.VIEW_PUPILS, P.VIEW_PERSONAL_ID, P.VIEW_ALL_RATINGS, P.VIEW_REVIEW_PROGRESS,
         P.VIEW_RECORDS, P.VIEW_ALL_RECORDS, P.VIEW_SCHOOL_PROGRESS, P.MANAGE_TRAINING}
    ),
    Role.SCHOOL_IT: frozenset(
        {P.VIEW_SCHOOL, P.VIEW_STAFF, P.MANAGE_STAFF, P.MANAGE_SCHOOL_YEAR, P.VIEW_PUPILS, P.MANAGE_PUPILS,
         P.VIEW_PERSONAL_ID, P.VIEW_REVIEW_PROGRESS, P.VIEW_RECORDS, P.VIEW_ALL_RECORDS, P.MANAGE_SEAL,
         P.MANAGE_FAMILY_ACCESS, P.EXCHANGE_RECORDS, P.TRANSFER_PUPILS, P.VIEW_SCHOOL_PROGRESS, P.SUBMIT_EVIDENCE,
         P.MANAGE_TRAINING}
    ),
    # Teachers act on their own class and their assigned subjects only: object-level checks
    # in portal/assessment/access.py narrow these permissions down to those.
    Role.HOMEROOM_TEACHER: frozenset({P.VIEW_SCHOOL, P.VIEW_PUPILS, P.ENTER_RATINGS, P.CONFIRM_RESULTS,
                                      P.VIEW_RECORDS, P.GENERATE_RECORDS, P.SIGN_AS_HOMEROOM,
                                      P.MANAGE_FAMILY_ACCESS}),
    Role.SUBJECT_TEACHER: frozenset({P.VIEW_SCHOOL, P.VIEW_PUPILS, P.ENTER_RATINGS}),
}


# Authority is ordered: nobody resets the password of, locks, unlocks or changes the roles of an account
# holding equal or greater authority. Teachers < IT staff < vice principal < principal < the district
# (whose admin manages principals). Someone holding several roles counts at their highest.
AUTHORITY: dict[Role, int] = {
    Role.SUBJECT_TEACHER: 0, Role.HOMEROOM_TEACHER: 0, Role.SCHOOL_IT: 1, Role.VICE_PRINCIPAL: 2,
    Role.PRINCIPAL: 3, Role.DISTRICT_OFFICER: 4, Role.DISTRICT_ADMIN: 4,
}


def authority(roles: set[Role] | frozenset[Role]) -> int:
    """The authority of someone holding `roles` (-1 for no role at all)."""
    return max((AUTHORITY[role] for role in roles), default=-1)


def outranks(actor_roles: set[Role] | frozenset[Role], target_roles: set[Role] | frozenset[Role]) -> bool:
    """Whether the holder of `actor_roles` may manage an account holding `target_roles`."""
    return authority(actor_roles) > authority(target_roles)


def permissions_for(roles: set[Role] | frozenset[Role]) -> frozenset[Permission]:
    """Everything the given roles allow together."""
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)


def parse_role(text: str) -> Role | None:
    """A role from its code or its Vietnamese label (as typed in an import file), or None."""
    wanted = " ".join(unicodedata.normalize("NFC", text).split()).casefold()
    aliases = {"gvcn": Role.HOMEROOM_TEACHER, "gvbm": Role.SUBJECT_TEACHER, "ht": Role.PRINCIPAL,
               "pht": Role.VICE_PRINCIPAL, "cntt": Role.SCHOOL_IT}
    if wanted in aliases:
        return aliases[wanted]
    for role in Role:
        if wanted in {role.value, ROLE_LABELS[role].casefold()}:
            return role
    return None

