"""The contract's error codes (docs/city-contract.md §6): HTTP status, Vietnamese reason, what to do, retry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class CityError(Exception):
    code: str
    status: int
    message: str
    action: str
    retry: bool = False
    detail: str = ""

    def body(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message, "action": self.action, "retry": self.retry}
        if self.detail:
            error["detail"] = self.detail
        return {"contract": 1, "error": error}


def error(code: str, detail: str = "") -> CityError:
    status, message, action, retry = CATALOGUE[code]
    return CityError(code, status, message, action, retry, detail)


CATALOGUE: dict[str, tuple[int, str, str, bool]] = {
    "AUTH_MISSING": (401, "Thiếu khóa API của Phòng GD&ĐT.",
                     "Khai báo CITY_API_KEY của Phòng trong cấu hình cổng học bạ.", False),
    "AUTH_INVALID": (401, "Khóa API của Phòng GD&ĐT không đúng hoặc đã bị thu hồi.",
                     "Liên hệ Sở GD&ĐT để cấp lại khóa, rồi cập nhật CITY_API_KEY.", False),
    "BAD_REQUEST": (400, "Yêu cầu gửi lên không đúng định dạng của hợp đồng trao đổi.",
                    "Báo cho quản trị cổng học bạ: phiên bản phần mềm có thể đã cũ.", False),
    "IDEMPOTENCY_KEY_MISMATCH": (400, "Khóa Idempotency-Key không trùng với mã học bạ trong dữ liệu kèm theo.",
                                 "Báo cho quản trị cổng học bạ.", False),
    "HASH_MISMATCH": (422, "Mã băm SHA-256 không khớp với tệp nhận được (tệp bị hỏng khi truyền).",
                      "Không cần làm gì: hệ thống sẽ tự gửi lại.", True),
    "XML_MISSING": (422, "Tệp PDF không chứa dữ liệu XML đính kèm của học bạ.",
                    "Tạo lại bản học bạ (điều chỉnh) để có tệp PDF kèm XML, ký và ban hành lại.", False),
    "SCHEMA_INVALID": (422, "Dữ liệu XML của học bạ không đúng lược đồ.",
                       "Kiểm tra lại dữ liệu học bạ, tạo bản điều chỉnh, ký và ban hành lại.", False),
    "METADATA_MISMATCH": (422, "Thông tin kèm theo (mã học bạ, mã học sinh, mã trường) không khớp với dữ liệu XML.",
                          "Báo cho quản trị cổng học bạ; không sửa tay tệp đã ký.", False),
    "SIGNATURE_MISSING": (422, "Học bạ chưa đủ ba chữ ký số (giáo viên chủ nhiệm, Hiệu trưởng, con dấu số).",
                          "Hoàn tất việc ký số và ban hành rồi gửi lại.", False),
    "SIGNATURE_INVALID": (422, "Chữ ký số trên học bạ không hợp lệ: tệp đã bị thay đổi sau khi ký.",
                          "Không dùng tệp này; tạo bản điều chỉnh, ký và ban hành lại.", False),
    "SIGNATURE_UNTRUSTED": (422, "Chứng thư số đã ký không thuộc tổ chức cung cấp dịch vụ chứng thực được tin cậy.",
                            "Kiểm tra chứng thư số của giáo viên, Hiệu trưởng và con dấu số của trường.", False),
    "IDEMPOTENCY_CONFLICT": (409, "Mã học bạ này đã được gửi trước đó với nội dung khác.",
                             "Không gửi lại bằng cùng mã: tạo bản điều chỉnh (phiên bản mới) rồi gửi bản đó.", False),
    "RECORD_NOT_FOUND": (404, "Hệ thống Thành phố chưa nhận học bạ có mã này.",
                         "Gửi học bạ lên trước, rồi mới thông báo hủy hoặc thay thế.", False),
    "RETURN_NOT_FOUND": (404, "Không có học bạ trả về với số này.", "Tải lại danh sách học bạ trả về.", False),
    "REJECTED_BY_CITY": (422, "Hệ thống Thành phố từ chối tiếp nhận học bạ.",
                         "Xem lý do, xử lý theo hướng dẫn của Sở GD&ĐT rồi gửi bản điều chỉnh.", False),
    "RATE_LIMITED": (429, "Hệ thống Thành phố đang nhận quá nhiều yêu cầu.",
                     "Không cần làm gì: hệ thống sẽ tự gửi lại sau.", True),
    "UNAVAILABLE": (503, "Hệ thống Thành phố tạm thời không hoạt động (bảo trì hoặc quá tải).",
                    "Không cần làm gì: hệ thống sẽ tự gửi lại sau.", True),
    "INTERNAL": (500, "Hệ thống Thành phố gặp lỗi khi xử lý yêu cầu.",
                 "Không cần làm gì: hệ thống sẽ tự gửi lại sau.", True),
}
