"""The rating grid pages: "Lớp của tôi", the subject and class-assessment grids, saving, Excel out and in.

Who may do what: a GVBM her assigned class x subject, the GVCN every subject of her class and its
class assessment (portal/assessment/access.py); the principal and vice principals read every grid.
Writing is refused outside the period's entry window, here on the server, whatever the page shows.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date, datetime
from functools import wraps
from typing import Any, NamedTuple

from flask import Flask, abort, flash, g, jsonify, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from portal import audit, pagecache
from portal.assessment import access
from portal.extensions import db
from portal.grading import excel, services
from portal.grading.forms import ConfirmGridImportForm, GridImportForm
from portal.grading.services import Grid
from portal.i18n import format_datetime, local_zone, remembered_gettext
from portal.schoolyear.services import current_year
from portal.storage import FileMissing, storage
from tenants.access import current_permissions, school_blueprint
from tenants.roles import Permission

bp = school_blueprint("grading", __name__)
SUBJECT_GRID = "/grading/classes/<int:class_id>/subjects/<int:subject_id>/periods/<int:period_id>"
CLASS_GRID = "/grading/classes/<int:class_id>/periods/<int:period_id>"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def require_any(*permissions: Permission) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """View decorator: 403 unless the signed-in user holds at least one of the permissions here."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not any(p in current_permissions() for p in permissions):
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_permissions = permissions  # type: ignore[attr-defined]
        return wrapped

    return decorator


def _today() -> date:
    return datetime.now(local_zone()).date()


def _grid(class_id: int, period_id: int, subject_id: int | None = None) -> tuple[Grid, bool]:
    """The grid (404 when the ids are not this school's) and whether it is the user's to fill in (else
    read-only for those who read every class, 403 for anyone else)."""
    if subject_id is None:
        grid = services.class_grid(g.school, class_id, period_id)
    else:
        grid = services.subject_grid(g.school, class_id, subject_id, period_id)
    if grid is None:
        abort(404)
    permissions = current_permissions()
    if grid.subject is not None:
        hers = access.can_enter_subject(current_user.id, permissions, grid.school_class, grid.subject.id)
    else:
        hers = access.can_assess_class(current_user.id, permissions, grid.school_class)
    if not hers and Permission.VIEW_ALL_RATINGS not in permissions:
        abort(403)
    return grid, hers


def _grid_url(grid: Grid, endpoint: str = "", **extra: Any) -> str:
    ids = {"class_id": grid.school_class.id, "period_id": grid.period.id, **extra}
    if grid.subject is not None:
        return url_for(f"grading.subject_{endpoint or 'grid'}", subject_id=grid.subject.id, **ids)
    return url_for(f"grading.class_{endpoint or 'grid'}", **ids)


# --- pages -------------------------------------------------------------------------------------------


@bp.route("/grading/")
@require_any(Permission.ENTER_RATINGS, Permission.VIEW_ALL_RATINGS)
def index() -> str:
    today = _today()
    year = current_year(g.school, today)
    if year is None:
        return render_template("grading/index.html", year=None, cards=[], period=None)
    chosen = request.args.get("period_id", type=int)
    period = next((p for p in year.periods if p.id == chosen), None) or services.default_period(year, today)
    cards = services.my_grids(g.school, year, period, current_user.id, current_permissions()) if period else []
    return render_template("grading/index.html", year=year, cards=cards, period=period, today=today)


@bp.route(SUBJECT_GRID)
@require_any(Permission.ENTER_RATINGS, Permission.VIEW_ALL_RATINGS)
def subject_grid(class_id: int, subject_id: int, period_id: int) -> str:
    return _page(*_grid(class_id, period_id, subject_id))


@bp.route(CLASS_GRID)
@require_any(Permission.ENTER_RATINGS, Permission.VIEW_ALL_RATINGS)
def class_grid(class_id: int, period_id: int) -> str:
    return _page(*_grid(class_id, period_id))


def _page(grid: Grid, hers: bool, *, import_form: GridImportForm | None = None) -> str:
    is_open = grid.period.is_open(_today())
    editable = hers and is_open
    reason = "" if editable else (services.closed_message(grid.period) if hers else
                                  _("Bạn chỉ được xem bảng này: chỉ giáo viên được phân công mới sửa được."))
    section = ""
    if grid.kind == "class":
        section = request.args.get("part", "")
        section = section if section in services.SECTIONS else services.SECTIONS[0]
    columns = grid.section_columns(section) if section else grid.columns
    rows = pagecache.kept("grid", (grid.key, section, editable), lambda: _rows(grid, columns, editable=editable),
                          GridRows.size)
    suggestions = services.comment_suggestions()["subject" if grid.kind == "subject" else "trait"]
    return render_template(
        "grading/grid.html", grid=grid, columns=columns, section=section, editable=editable, hers=hers,
        reason=reason, body=rows.body, versions=rows.versions, unsaved=rows.unsaved, suggestions=suggestions,
        messages=_js_messages(grid), import_form=import_form or GridImportForm(),
        storage_key=f"hocba.grid.{g.school.code}.{current_user.id}.{grid.key}{'.' + section if section else ''}",
        section_labels={s: remembered_gettext(label) for s, label in services.SECTION_LABELS.items()},
        grid_url=lambda **kw: _grid_url(grid, **kw))


class GridRows(NamedTuple):
    """What a grid page shows of the grid's records: kept rendered per data version (portal/pagecache.py),
    so never changed once made."""

    body: Markup
    versions: dict[str, int]
    unsaved: list[dict[str, str]]

    def size(self) -> int:
        return pagecache.size_of(self.body) + 100 * len(self.versions) + 500 * len(self.unsaved)


def _rows(grid: Grid, columns: list[services.Column], *, editable: bool) -> GridRows:
    records = services.grid_records(grid)
    unsaved = [{"key": u.record_key, "field": u.field, "raw": u.raw, "message": u.message,
                "where": services.describe_cell(grid, u.record_key, u.field)} for u in services.unsaved_cells(grid)]
    unsaved_by_id = {f"{u['key']}/{u['field']}": u for u in unsaved}
    return GridRows(grid_body(grid, columns, records, unsaved_by_id, editable=editable),
                    {key: record.version for key, record in records.items()}, unsaved)


def grid_body(grid: Grid, columns: list[services.Column], records: dict[str, services.Record],
              unsaved_by_id: dict[str, dict[str, Any]], *, editable: bool) -> Markup:
    """The rows of the grid's table: the pupil, then one input (a textarea for comments) per cell.

    Built here rather than in the template: a class's grid has some 350 cells, and Jinja's per-cell work
    (expressions, escaping, the header looked up and translated again for every cell's label) was most of
    the page's time. What varies per cell is escaped here; the rest of each cell is made once per column.
    A refused value waiting for a correction (`unsaved_by_id`) is shown as typed, marked, with the saved
    value and the reason beside it.
    """
    readonly = "" if editable else " readonly"
    cells = []
    for column in columns:
        suffix = f":{column.part}" if column.part else ""
        title = f" – {column.title}"
        common = f'data-field="{column.field}" data-kind="{column.kind}"'
        if column.kind == "text":
            cell = ('<td class="col-text"><textarea class="cell{error}"{extra} rows="1" data-key="{key}" ' + common
                    + ' aria-label="{label}" spellcheck="false"' + readonly + '>{shown}</textarea></td>')
        else:
            mode = {"score": "numeric", "int": "numeric", "decimal": "decimal"}.get(column.kind)
            cell = (f'<td class="col-{column.kind}"><input class="cell{{error}}"{{extra}} type="text" '
                    f'data-key="{{key}}" {common} aria-label="{{label}}" value="{{shown}}" autocomplete="off" '
                    f'spellcheck="false"' + (f' inputmode="{mode}"' if mode else "") + readonly + ">")
            cell += "</td>"
        cells.append((suffix, column.field, escape(title), cell))
    rows = []
    for pupil in grid.pupils:
        name = escape(pupil.full_name)
        row = [f'<tr><td class="stt">{pupil.number}</td><th scope="row" class="name">{name}</th>']
        for suffix, field, title, cell in cells:
            key = f"{pupil.enrolment_id}{suffix}"
            saved = services.display(records[key].values[field])
            waiting = unsaved_by_id.get(f"{key}/{field}") if unsaved_by_id else None
            if waiting is None:
                row.append(cell.format(error="", extra="", key=key, label=name + title, shown=escape(saved)))
            else:
                extra = f' data-saved="{escape(saved)}" aria-invalid="true" title="{escape(waiting["message"])}"'
                row.append(cell.format(error=" error dirty", extra=extra, key=key, label=name + title,
                                       shown=escape(waiting["raw"])))
        row.append("</tr>")
        rows.append("".join(row))
    return Markup("\n".join(rows))


def _js_messages(grid: Grid) -> dict[str, str]:
    levels = "T, H, C" if grid.kind == "subject" else "T, Đ, C"
    t = remembered_gettext  # messages without variables: looked up once, not through flask_babel each time
    return {
        "saving": t("Đang lưu…"),
        "saved": t("Đã lưu lúc {time}."),
        "unsaved": t("{n} ô chưa lưu"),
        "stillInvalid": t("{n} ô chưa hợp lệ chưa được lưu (tô đỏ): sửa các ô này rồi lưu."),
        "typed": t("đã nhập “{value}”"),
        "nothing": t("Không có thay đổi nào cần lưu."),
        "offline": t("Không lưu được (mất kết nối hoặc máy chủ đang lỗi). Các thay đổi vẫn được giữ trên máy này; "
                     "sẽ tự thử lại sau ít phút, hoặc bấm Lưu."),
        "session": t("Phiên đăng nhập đã hết hạn. Hãy tải lại trang và đăng nhập lại: các thay đổi vẫn được giữ "
                     "trên máy này và sẽ hiện lại."),
        "restored": t("Đã khôi phục {n} ô chưa lưu từ lần trước ({time}). Bấm Lưu để lưu, hoặc bỏ các thay đổi này."),
        "discardConfirm": t("Bỏ {n} ô chưa lưu và lấy lại giá trị đang lưu?"),
        "lockedDraft": t("Trên máy này còn {n} ô chưa lưu của bảng này, nhưng bảng đã khóa nên không lưu được."),
        "levelHint": t("Ô này chỉ nhận {levels}.").replace("{levels}", levels),
        "scoreHint": t("Điểm là số nguyên từ 1 đến 10."),
        "youTyped": t("Bạn nhập"),
        "theirs": t("Đang lưu"),
        "changedBy": t("{by} sửa lúc {at}"),
        "someone": t("Người khác"),
        "empty": t("(trống)"),
        "keepMine": t("Giữ của tôi"),
        "takeTheirs": t("Lấy bản đang lưu"),
        "leave": t("Còn ô chưa lưu. Các thay đổi vẫn được giữ trên máy này."),
        "pickLevel": t("Chọn mức đạt được của dòng này để xem gợi ý nhận xét."),
        "pasted": t("Đã dán {n} ô."),
        "filled": t("Đã điền {n} ô."),
    }


# --- saving ------------------------------------------------------------------------------------------


@bp.route(SUBJECT_GRID + "/save", methods=["POST"])
@require_any(Permission.ENTER_RATINGS, Permission.VIEW_ALL_RATINGS)
def subject_save(class_id: int, subject_id: int, period_id: int) -> tuple[Response, int]:
    return _save(*_grid(class_id, period_id, subject_id))


@bp.route(CLASS_GRID + "/save", methods=["POST"])
@require_any(Permission.ENTER_RATINGS, Permission.VIEW_ALL_RATINGS)
def class_save(class_id: int, period_id: int) -> tuple[Response, int]:
    return _save(*_grid(class_id, period_id))


def _refusal(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"ok": False, "message": message}), status


def _save(grid: Grid, hers: bool) -> tuple[Response, int]:
    if not hers:
        return _refusal(403, _("Bạn chỉ được xem bảng này, không được sửa."))
    try:
        changes = services.parse_changes(request.get_json(silent=True))
    except services.BadChanges:
        return _refusal(400, _("Dữ liệu gửi lên không đúng dạng. Hãy tải lại trang; các thay đổi vẫn được giữ "
                               "trên máy này."))
    try:
        result = services.save_grid(g.school, grid, changes, actor=current_user, today=_today(), partial=True)
    except services.GridClosed as exc:
        db.session.rollback()
        return _refusal(403, str(exc))
    except IntegrityError:  # someone inserted the same new row at the same moment
        db.session.rollback()
        return _refusal(409, _("Cùng lúc đó có người khác lưu bảng này. Hãy bấm Lưu lần nữa."))
    # Every valid cell is written even when others are refused: the refused ones are kept, with why.
    db.session.commit()
    return jsonify(_answer(grid, result)), 200 if result.ok else 422 if result.errors else 409


def _answer(grid: Grid, result: services.SaveResult) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "ok": result.ok,
        "versions": result.versions,
        "values": {key: {name: services.display(v) for name, v in values.items()}
                   for key, values in result.values.items()},
        "errors": [{"key": e.key, "field": e.field, "where": services.describe_cell(grid, e.key, e.field),
                    "message": e.message} for e in result.errors],
        "conflicts": [_conflict(grid, c) for c in result.conflicts],
        "review_cleared": result.review_cleared,
        "changed_cells": result.changed_cells,
    }
    if result.errors:
        answer["message"] = _("Đã lưu %(saved)d ô. Chưa lưu %(n)d ô chưa hợp lệ (tô đỏ, xem danh sách): các ô này "
                              "được giữ nguyên như bạn nhập, kể cả khi tải lại trang, cho đến khi bạn sửa.",
                              saved=result.changed_cells, n=len(result.errors))
    elif result.conflicts:
        answer["message"] = _("Đã lưu %(saved)d ô. %(n)d dòng đã được người khác sửa sau khi bạn mở bảng: hãy "
                              "chọn giữ giá trị nào cho từng ô.", saved=result.changed_cells, n=len(result.conflicts))
    elif result.changed_cells:
        answer["message"] = _("Đã lưu %(n)d ô lúc %(t)s.", n=result.changed_cells,
                              t=datetime.now(local_zone()).strftime("%H:%M"))
    else:
        answer["message"] = _("Không có thay đổi nào cần lưu.")
    if result.review_cleared:
        answer["review_message"] = _(
            "Kết quả cuối năm của %(n)d học sinh đã rà soát nay thay đổi, nên dấu rà soát đã được bỏ; giáo viên "
            "chủ nhiệm cần rà soát lại: %(names)s.", n=len(result.review_cleared),
            names=", ".join(result.review_cleared))
    return answer


def _conflict(grid: Grid, conflict: services.Conflict) -> dict[str, Any]:
    target = services.split_key(conflict.key)
    part = target[1] if target else ""
    cells = []
    for name in conflict.mine:
        column = grid.column(part, name)
        cells.append({"field": name, "where": services.describe_cell(grid, conflict.key, name),
                      "label": column.title if column else name, "mine": services.display(conflict.mine[name]),
                      "theirs": services.display(conflict.theirs[name])})
    return {"key": conflict.key, "version": conflict.version, "by": conflict.by,
            "at": format_datetime(conflict.at) if conflict.at else "", "cells": cells,
            "current": {name: services.display(v) for name, v in conflict.current.items()}}


# --- Excel -------------------------------------------------------------------------------------------


@bp.route(SUBJECT_GRID + "/export.xlsx")
@require_any(Permission.ENTER_RATINGS, Permission.VIEW_ALL_RATINGS)
def subject_export(class_id: int, subject_id: int, period_id: int) -> Response:
    return _export(_grid(class_id, period_id, subject_id)[0])


@bp.route(CLASS_GRID + "/export.xlsx")
@require_any(Permission.ENTER_RATINGS, Permission.VIEW_ALL_RATINGS)
def class_export(class_id: int, period_id: int) -> Response:
    return _export(_grid(class_id, period_id)[0])


def _export(grid: Grid) -> Response:
    data = excel.export_grid(g.school, grid, services.grid_records(grid))
    what = grid.subject.code if grid.subject is not None else "pham-chat-nang-luc"
    name = f"danh-gia-{grid.school_class.name}-{what}-{grid.period.code}.xlsx".replace("_", "-")
    # Pupils' ratings leaving the portal: who took which grid is kept.
    audit.record("grading.exported", actor=current_user, school_id=g.school.id, obj=grid.school_class, summary=name,
                 changes={"subject": grid.subject.code if grid.subject is not None else None,
                          "period": grid.period.code})
    db.session.commit()
    return send_file(io.BytesIO(data), mimetype=XLSX, as_attachment=True, download_name=name)


@bp.route(SUBJECT_GRID + "/import", methods=["POST"])
@require_any(Permission.ENTER_RATINGS, Permission.VIEW_ALL_RATINGS)  # readers get 403 below, after the 404s
def subject_import(class_id: int, subject_id: int, period_id: int) -> str | Response:
    return _import(*_grid(class_id, period_id, subject_id))


@bp.route(CLASS_GRID + "/import", methods=["POST"])
@require_any(Permission.ENTER_RATINGS, Permission.VIEW_ALL_RATINGS)  # readers get 403 below, after the 404s
def class_import(class_id: int, period_id: int) -> str | Response:
    return _import(*_grid(class_id, period_id))


@bp.route(SUBJECT_GRID + "/import/confirm", methods=["POST"])
@require_any(Permission.ENTER_RATINGS, Permission.VIEW_ALL_RATINGS)  # readers get 403 below, after the 404s
def subject_import_confirm(class_id: int, subject_id: int, period_id: int) -> str | Response:
    return _import_confirm(*_grid(class_id, period_id, subject_id))


@bp.route(CLASS_GRID + "/import/confirm", methods=["POST"])
@require_any(Permission.ENTER_RATINGS, Permission.VIEW_ALL_RATINGS)  # readers get 403 below, after the 404s
def class_import_confirm(class_id: int, period_id: int) -> str | Response:
    return _import_confirm(*_grid(class_id, period_id))


def _writable_or_redirect(grid: Grid, hers: bool) -> Response | None:
    if not hers:
        abort(403)
    if not grid.period.is_open(_today()):
        flash(services.closed_message(grid.period), "danger")
        return redirect(_grid_url(grid))
    return None


def _import(grid: Grid, hers: bool) -> str | Response:
    refused = _writable_or_redirect(grid, hers)
    if refused is not None:
        return refused
    form = GridImportForm()
    if not form.validate_on_submit():
        flash(_("Hãy chọn tệp Excel (.xlsx) đã điền."), "danger")
        return redirect(_grid_url(grid))
    upload = form.file.data
    data = upload.read()
    filename = upload.filename or ""
    plan, refused = _plan(grid, filename, data)
    if plan is None:
        return refused  # type: ignore[return-value]
    # Kept in the store only once it reads as this grid: a refused file (a zip bomb, say) is never stored.
    return _dry_run(grid, plan, ConfirmGridImportForm(digest=storage().put(data), filename=filename))


def _plan(grid: Grid, filename: str, data: bytes) -> tuple[excel.ImportPlan | None, Response | None]:
    try:
        return excel.read_grid_file(grid, services.grid_records(grid), filename, data), None
    except excel.GridFileError as exc:
        flash(str(exc), "danger")
        return None, redirect(_grid_url(grid))


def _dry_run(grid: Grid, plan: excel.ImportPlan, confirm: ConfirmGridImportForm) -> str:
    result = services.save_grid(g.school, grid, plan.changes, actor=current_user, today=_today(), dry_run=True)
    db.session.rollback()
    return _import_page(grid, plan, result, confirm)


def _import_page(grid: Grid, plan: excel.ImportPlan, result: services.SaveResult,
                 confirm: ConfirmGridImportForm | None) -> str:
    lines: dict[int, dict[str, Any]] = {}

    def line(number: int, key: str = "") -> dict[str, Any]:
        target = services.split_key(key) if key else None
        pupil = grid.pupil(target[0]) if target else None
        return lines.setdefault(number, {"line": number, "pupil": pupil.full_name if pupil else "",
                                         "changes": [], "errors": [], "conflicts": []})

    for number, message in plan.problems:
        line(number)["errors"].append(message)
    for error in result.errors:
        column = grid.column(services.split_key(error.key)[1], error.field) if services.split_key(error.key) else None
        text = f"{column.title}: {error.message}" if column else error.message
        line(plan.lines.get(error.key, 0), error.key)["errors"].append(text)
    for conflict in result.conflicts:
        data = _conflict(grid, conflict)
        cells = "; ".join(f"{c['label']}: {c['theirs'] or _('(trống)')}" for c in data["cells"])
        line(plan.lines.get(conflict.key, 0), conflict.key)["conflicts"].append(
            _("Đã có người sửa sau khi xuất tệp (%(by)s, %(at)s). Hiện đang lưu: %(cells)s.",
              by=data["by"] or _("Người khác"), at=data["at"], cells=cells))
    for key, diff in result.diffs.items():
        part = services.split_key(key)[1]  # type: ignore[index]
        for name, (old, new) in diff.items():
            column = grid.column(part, name)
            line(plan.lines.get(key, 0), key)["changes"].append(
                f"{column.title if column else name}: {services.display(old) or '—'} → {services.display(new) or '—'}")
    return render_template("grading/import.html", grid=grid, rows=sorted(lines.values(), key=lambda r: r["line"]),
                           plan=plan, result=result, confirm=confirm if plan.ok and not result.errors else None,
                           grid_url=lambda **kw: _grid_url(grid, **kw))


def _import_confirm(grid: Grid, hers: bool) -> str | Response:
    refused = _writable_or_redirect(grid, hers)
    if refused is not None:
        return refused
    confirm = ConfirmGridImportForm()
    if not confirm.validate_on_submit():
        abort(400)
    try:
        data = storage().read(confirm.digest.data)
    except FileMissing:
        abort(404)
    plan, refused = _plan(grid, confirm.filename.data, data)
    if plan is None:
        return refused  # type: ignore[return-value]
    if not plan.ok:
        return _dry_run(grid, plan, confirm)
    changes = plan.changes
    if confirm.on_conflict.data == "skip":
        checked = services.save_grid(g.school, grid, changes, actor=current_user, today=_today(), dry_run=True)
        skipped = {c.key for c in checked.conflicts}
        changes = [c for c in changes if c.key not in skipped]
    try:
        result = services.save_grid(g.school, grid, changes, actor=current_user, today=_today(), source="excel",
                                    overwrite=confirm.on_conflict.data == "overwrite")
    except IntegrityError:
        db.session.rollback()
        flash(_("Cùng lúc đó có người khác lưu bảng này. Hãy tải tệp lên lần nữa."), "danger")
        return redirect(_grid_url(grid))
    if not result.ok:
        db.session.rollback()
        flash(_("Chưa nhập gì: tệp có lỗi hoặc có dòng đã được người khác sửa."), "danger")
        return _import_page(grid, plan, result, confirm)
    db.session.commit()
    flash(_("Đã nhập %(n)d ô từ tệp Excel.", n=result.changed_cells), "success")
    if result.review_cleared:
        flash(_("Dấu rà soát kết quả của %(n)d học sinh đã được bỏ vì đánh giá cuối năm thay đổi: %(names)s.",
                n=len(result.review_cleared), names=", ".join(result.review_cleared)), "warning")
    return redirect(_grid_url(grid))
