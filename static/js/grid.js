// The rating grid: typing like a spreadsheet, pasting from Excel, saving changed rows as JSON.
// Nothing typed is lost: every unsaved cell is kept in localStorage until the server has it, and
// is put back after a reload, a lost connection or a refused save. No framework, no build step.
(function () {
  "use strict";

  var table = document.getElementById("rating-grid");
  var configNode = document.getElementById("grid-config");
  if (!table || !configNode) { return; }
  var config = JSON.parse(configNode.textContent);
  var M = config.messages;
  var editable = !!config.editable;
  var AUTOSAVE_MS = 2500;
  var RETRY_MS = 60000;

  var rows = [];         // rows[r][c]: the cell elements, in reading order
  var cellById = {};     // "record key/field" -> element
  var saved = {};        // cell id -> the value the server holds, as far as we know
  var dirty = {};        // cell id -> true while the cell differs from `saved`
  var errors = {};       // cell id -> the server's message
  var errorWhere = {};   // cell id -> where the cell is, for the list under the toolbar
  var unsaved = {};      // cell id -> true while the server keeps the cell as typed but refused
  var conflicts = {};    // cell id -> {key, version, mine, theirs, by, at, where}
  var versions = {};     // record key -> the version the teacher's edits are based on
  var known = {};        // record key -> the latest version the server told us about
  var focusValue = "";
  var selection = null;  // {col, anchor, to}: a vertical range for Ctrl+D
  var inFlight = false;
  var locked = false;    // the server refused writing (window closed meanwhile): stop trying
  var autosaveTimer = null;
  var retryTimer = null;
  var activeText = null;

  var statusNode = document.getElementById("grid-status");
  var saveButton = document.getElementById("grid-save");
  var discardButton = document.getElementById("grid-discard");
  var conflictButton = document.getElementById("grid-conflicts");
  var errorBox = document.getElementById("grid-errors");
  var noticeBox = document.getElementById("grid-notice");
  var dialog = document.getElementById("conflict-dialog");
  var panel = document.getElementById("grid-suggestions");
  var autosize = !(window.CSS && CSS.supports && CSS.supports("field-sizing", "content"));

  var LEVEL_KEYS = {
    level: { t: "T", h: "H", c: "C" },
    trait_level: { t: "T", "đ": "Đ", d: "Đ", c: "C" }
  };
  var LEVEL_WORDS = {
    level: { "hoàn thành tốt": "T", "hoàn thành": "H", "chưa hoàn thành": "C", htt: "T", ht: "H", cht: "C" },
    trait_level: { "tốt": "T", "đạt": "Đ", "cần cố gắng": "C", ccg: "C" }
  };

  function format(text, values) {
    return text.replace(/\{(\w+)\}/g, function (match, name) {
      return values[name] !== undefined ? values[name] : match;
    });
  }
  function idOf(cell) { return cell.dataset.key + "/" + cell.dataset.field; }
  function isCell(node) { return node && node.classList && node.classList.contains("cell"); }
  function isLevel(cell) { return cell.dataset.kind === "level" || cell.dataset.kind === "trait_level"; }
  function isText(cell) { return cell.dataset.kind === "text"; }
  function count(map) { return Object.keys(map).length; }
  function timeNow() {
    var d = new Date();
    return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
  }

  // --- the cells ------------------------------------------------------------------------------------

  Array.prototype.forEach.call(table.tBodies[0].rows, function (tr, r) {
    var list = Array.prototype.slice.call(tr.querySelectorAll(".cell"));
    list.forEach(function (cell, c) {
      cell.dataset.row = r;
      cell.dataset.col = c;
      cellById[idOf(cell)] = cell;
      // A cell the server refused earlier shows what was typed; what the server holds is beside it.
      saved[idOf(cell)] = cell.hasAttribute("data-saved") ? cell.getAttribute("data-saved") : cell.value;
      fit(cell);
    });
    rows.push(list);
  });
  Object.keys(config.versions).forEach(function (key) {
    versions[key] = known[key] = config.versions[key];
  });
  (config.unsaved || []).forEach(function (item) {
    var id = item.key + "/" + item.field;
    if (!cellById[id]) { return; }
    unsaved[id] = dirty[id] = true;
    errors[id] = item.message;
    errorWhere[id] = item.where;
  });

  function fit(cell) {
    if (autosize && cell.tagName === "TEXTAREA") {
      cell.style.height = "auto";
      cell.style.height = cell.scrollHeight + 2 + "px";
    }
  }

  function levelOf(kind, text) {
    var t = (text || "").normalize("NFC").trim().toLowerCase().replace(/\s+/g, " ");
    if (!t) { return ""; }
    return LEVEL_KEYS[kind][t] || LEVEL_WORDS[kind][t] || null;
  }

  function normaliseFor(cell, text) {
    if (isLevel(cell)) {
      var level = levelOf(cell.dataset.kind, text);
      return level === null ? text.trim() : level;  // kept as typed: the server names the mistake
    }
    return isText(cell) ? text.replace(/\s+/g, " ").trim() : text.trim();
  }

  function mark(cell) {
    var id = idOf(cell);
    cell.classList.toggle("dirty", !!dirty[id]);
    cell.classList.toggle("error", !!errors[id]);
    cell.classList.toggle("conflict", !!conflicts[id]);
    cell.title = errors[id] || "";
    if (cell.dataset.kind === "score") {
      cell.classList.toggle("suspect", !/^(10|[1-9])?$/.test(cell.value.trim()));
      if (!errors[id] && cell.classList.contains("suspect")) { cell.title = M.scoreHint; }
    }
  }

  function setValue(cell, value) {
    if (cell.readOnly) { return false; }
    cell.value = cell.dataset.last = value;
    fit(cell);
    changed(cell);
    return true;
  }

  function changed(cell) {
    var id = idOf(cell);
    // Back to the stored value, but the server still keeps a refused value here: send it, so it forgets it.
    if (cell.value === saved[id] && !unsaved[id]) { delete dirty[id]; } else { dirty[id] = true; }
    if (errors[id]) { delete errors[id]; showErrors(); }
    mark(cell);
    writeDraft();
    scheduleSave();
    showState();
  }

  // --- moving around ---------------------------------------------------------------------------------

  function focusCell(cell, keepSelection) {
    if (!cell) { return; }
    if (!keepSelection) { clearSelection(); }
    cell.focus();
    if (isText(cell)) {
      var end = cell.value.length;
      cell.setSelectionRange(end, end);
    } else {
      cell.select();
    }
    cell.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  function move(r, c) {
    if (r < 0 || r >= rows.length) { return; }
    var row = rows[r];
    focusCell(row[Math.max(0, Math.min(c, row.length - 1))]);
  }

  function neighbour(r, c, step) {
    var row = rows[r];
    if (row[c + step]) { return row[c + step]; }
    var next = rows[r + step];
    if (!next) { return null; }
    return step > 0 ? next[0] : next[next.length - 1];
  }

  function wholeSelected(cell) {
    return cell.selectionStart === 0 && cell.selectionEnd === cell.value.length;
  }
  function atStart(cell) {
    return isLevel(cell) || wholeSelected(cell) || (cell.selectionStart === 0 && cell.selectionEnd === 0);
  }
  function atEnd(cell) {
    var n = cell.value.length;
    return isLevel(cell) || wholeSelected(cell) || (cell.selectionStart === n && cell.selectionEnd === n);
  }

  function clearSelection() {
    if (!selection) { return; }
    table.querySelectorAll(".cell.selected").forEach(function (cell) { cell.classList.remove("selected"); });
    selection = null;
  }

  function extendSelection(cell, step) {
    var r = +cell.dataset.row;
    var c = +cell.dataset.col;
    if (!selection || selection.col !== c) {
      clearSelection();
      selection = { col: c, anchor: r, to: r };
    }
    selection.to = Math.max(0, Math.min(rows.length - 1, selection.to + step));
    table.querySelectorAll(".cell.selected").forEach(function (x) { x.classList.remove("selected"); });
    var low = Math.min(selection.anchor, selection.to);
    var high = Math.max(selection.anchor, selection.to);
    for (var i = low; i <= high; i++) { if (rows[i][c]) { rows[i][c].classList.add("selected"); } }
    focusCell(rows[selection.to][c], true);
  }

  function fillDown(cell) {
    var r = +cell.dataset.row;
    var c = +cell.dataset.col;
    var filled = 0;
    if (selection && selection.col === c && selection.anchor !== selection.to) {
      var low = Math.min(selection.anchor, selection.to);
      var high = Math.max(selection.anchor, selection.to);
      var value = rows[low][c].value;
      for (var i = low + 1; i <= high; i++) { if (rows[i][c] && setValue(rows[i][c], value)) { filled++; } }
      clearSelection();
    } else if (r > 0 && rows[r - 1][c]) {
      if (setValue(cell, rows[r - 1][c].value)) { filled++; }
      move(r + 1, c);
    }
    if (filled) { say(format(M.filled, { n: filled })); }
  }

  table.addEventListener("keydown", function (event) {
    var cell = event.target;
    if (!isCell(cell)) { return; }
    var r = +cell.dataset.row;
    var c = +cell.dataset.col;
    var key = event.key;
    if ((event.ctrlKey || event.metaKey) && !event.altKey && (key === "d" || key === "D")) {
      event.preventDefault();
      fillDown(cell);
      return;
    }
    if ((event.ctrlKey || event.metaKey) && (key === "s" || key === "S")) {
      event.preventDefault();
      save();
      return;
    }
    if (event.altKey && /^[1-9]$/.test(key) && isText(cell)) {
      event.preventDefault();
      insertSuggestion(cell, +key - 1);
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (key === "ArrowUp" || key === "ArrowDown") {
      event.preventDefault();
      var step = key === "ArrowDown" ? 1 : -1;
      if (event.shiftKey) { extendSelection(cell, step); } else { move(r + step, c); }
      return;
    }
    if (key === "ArrowLeft" && atStart(cell) && c > 0) { event.preventDefault(); move(r, c - 1); return; }
    if (key === "ArrowRight" && atEnd(cell) && rows[r][c + 1]) { event.preventDefault(); move(r, c + 1); return; }
    if (key === "Enter") { event.preventDefault(); move(r + (event.shiftKey ? -1 : 1), c); return; }
    if (key === "Tab") {
      var next = neighbour(r, c, event.shiftKey ? -1 : 1);
      if (next) { event.preventDefault(); focusCell(next); }
      return;
    }
    if (key === "Escape") {
      if (cell.value !== focusValue && setValue(cell, focusValue)) { event.preventDefault(); cell.select(); }
      return;
    }
    clearSelection();
    if (!isLevel(cell) || cell.readOnly) { return; }
    if (key === "Backspace" || key === "Delete") {
      event.preventDefault();
      setValue(cell, "");
      return;
    }
    if (key.length === 1) {
      event.preventDefault();
      var level = LEVEL_KEYS[cell.dataset.kind][key.toLowerCase()];
      if (level) {
        setValue(cell, level);
        cell.select();
      } else {
        say(M.levelHint);
      }
    }
  });

  // Typing that does not come as plain keys (an input method, a phone keyboard) ends up here.
  table.addEventListener("input", function (event) {
    var cell = event.target;
    if (!isCell(cell)) { return; }
    if (isLevel(cell)) {
      var level = levelOf(cell.dataset.kind, event.data ? event.data.slice(-1) : cell.value);
      if (level === null) {
        level = cell.dataset.last || "";
        say(M.levelHint);
      }
      cell.value = cell.dataset.last = level;
    }
    fit(cell);
    changed(cell);
  });

  table.addEventListener("focusin", function (event) {
    var cell = event.target;
    if (!isCell(cell)) { return; }
    focusValue = cell.value;
    cell.dataset.last = cell.value;
    var current = table.querySelector("tr.current");
    if (current) { current.classList.remove("current"); }
    cell.closest("tr").classList.add("current");
    if (isText(cell) && editable) { showSuggestions(cell); } else { hideSuggestions(); }
  });

  // A click selects a short cell's whole content, as in a spreadsheet, so that typing replaces it
  // (the browser would otherwise drop the selection made on focus when the button is released).
  var clicked = null;
  table.addEventListener("mousedown", function (event) {
    if (!event.shiftKey) { clearSelection(); }
    clicked = isCell(event.target) && !isText(event.target) && document.activeElement !== event.target
      ? event.target : null;
  });
  table.addEventListener("mouseup", function (event) {
    if (clicked && event.target === clicked) { event.preventDefault(); clicked.select(); }
    clicked = null;
  });

  // --- pasting a block from Excel --------------------------------------------------------------------

  function parseBlock(text) {
    var lines = [];
    var line = [];
    var value = "";
    var quoted = false;
    text = text.replace(/\r\n?/g, "\n");
    if (text.slice(-1) === "\n") { text = text.slice(0, -1); }
    for (var i = 0; i < text.length; i++) {
      var ch = text[i];
      if (quoted) {
        if (ch === "\"" && text[i + 1] === "\"") { value += "\""; i++; }
        else if (ch === "\"") { quoted = false; }
        else { value += ch; }
      } else if (ch === "\"" && value === "") { quoted = true; }
      else if (ch === "\t") { line.push(value); value = ""; }
      else if (ch === "\n") { line.push(value); lines.push(line); line = []; value = ""; }
      else { value += ch; }
    }
    line.push(value);
    lines.push(line);
    return lines;
  }

  table.addEventListener("paste", function (event) {
    var cell = event.target;
    if (!isCell(cell) || cell.readOnly) { return; }
    var text = (event.clipboardData || window.clipboardData).getData("text");
    if (!text) { return; }
    var block = parseBlock(text);
    if (block.length === 1 && block[0].length === 1 && !isLevel(cell)) { return; }  // one value: the browser pastes it
    event.preventDefault();
    var r0 = +cell.dataset.row;
    var c0 = +cell.dataset.col;
    var pasted = 0;
    block.forEach(function (values, i) {
      var row = rows[r0 + i];
      if (!row) { return; }
      values.forEach(function (value, j) {
        var target = row[c0 + j];
        if (target && setValue(target, normaliseFor(target, value))) { pasted++; }
      });
    });
    if (isLevel(cell) || !isText(cell)) { cell.select(); }
    say(format(M.pasted, { n: pasted }));
  });

  // --- suggested comments ----------------------------------------------------------------------------

  function levelFor(textCell) {
    var levelCell = cellById[textCell.dataset.key + "/level"];
    return levelCell ? levelCell.value : "";
  }

  function showSuggestions(cell) {
    if (!panel) { return; }
    activeText = cell;
    var level = levelFor(cell);
    var list = panel.querySelector("ol");
    list.textContent = "";
    panel.querySelector("#grid-suggestions-level").textContent = level ? "(" + level + ")" : "";
    var sentences = config.suggestions[level] || [];
    if (!sentences.length) {
      var hint = document.createElement("li");
      hint.className = "muted";
      hint.textContent = M.pickLevel;
      list.appendChild(hint);
    }
    sentences.forEach(function (sentence, index) {
      var item = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = sentence;
      button.dataset.index = index;
      item.appendChild(button);
      list.appendChild(item);
    });
    panel.hidden = false;
  }

  function hideSuggestions() {
    if (panel) { panel.hidden = true; }
    activeText = null;
  }

  function insertSuggestion(cell, index) {
    var sentence = (config.suggestions[levelFor(cell)] || [])[index];
    if (!sentence || cell.readOnly) { return; }
    var current = cell.value.trim();
    setValue(cell, current ? current + " " + sentence : sentence);
    focusCell(cell);
  }

  if (panel) {
    panel.addEventListener("mousedown", function (event) { event.preventDefault(); });  // keep the cell focused
    panel.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (button && activeText) { insertSuggestion(activeText, +button.dataset.index); }
    });
  }

  // --- drafts kept on this computer ------------------------------------------------------------------

  function readDraft() {
    try { return JSON.parse(window.localStorage.getItem(config.storageKey) || "null"); } catch (e) { return null; }
  }

  function writeDraft() {
    try {
      var ids = Object.keys(dirty);
      if (!ids.length) { window.localStorage.removeItem(config.storageKey); return; }
      var cells = {};
      var base = {};
      ids.forEach(function (id) {
        cells[id] = cellById[id].value;
        base[cellById[id].dataset.key] = versions[cellById[id].dataset.key];
      });
      window.localStorage.setItem(config.storageKey, JSON.stringify({ at: Date.now(), cells: cells, versions: base }));
    } catch (e) {
      // Storage full or switched off: the grid still works, only the safety net is missing.
    }
  }

  function restoreDraft() {
    var draft = readDraft();
    if (!draft || !draft.cells) { return; }
    var restored = 0;
    Object.keys(draft.cells).forEach(function (id) {
      var cell = cellById[id];
      if (!cell || draft.cells[id] === saved[id]) { return; }  // gone, or the server has it already
      if (unsaved[id] && draft.cells[id] === cell.value) { return; }  // the server keeps it, refused, as typed
      delete errors[id];  // typed again here after the refusal: to be checked again
      restored++;
      if (!editable) { return; }
      cell.value = draft.cells[id];
      fit(cell);
      var key = cell.dataset.key;
      if (draft.versions && typeof draft.versions[key] === "number") { versions[key] = draft.versions[key]; }
      dirty[id] = true;
      mark(cell);
    });
    if (!restored) { writeDraft(); return; }
    var when = new Date(draft.at || Date.now());
    var at = ("0" + when.getHours()).slice(-2) + ":" + ("0" + when.getMinutes()).slice(-2) + " " +
      ("0" + when.getDate()).slice(-2) + "/" + ("0" + (when.getMonth() + 1)).slice(-2) + "/" + when.getFullYear();
    notice(editable ? format(M.restored, { n: restored, time: at }) : format(M.lockedDraft, { n: restored }));
  }

  function discard() {
    var ids = Object.keys(dirty);
    if (!ids.length || !window.confirm(format(M.discardConfirm, { n: ids.length }))) { return; }
    ids.forEach(function (id) {
      var cell = cellById[id];
      cell.value = saved[id];
      fit(cell);
      versions[cell.dataset.key] = known[cell.dataset.key];
      if (unsaved[id]) { dirty[id] = true; } else { delete dirty[id]; }  // the server forgets it on the next save
      delete errors[id];
      delete conflicts[id];
      mark(cell);
    });
    writeDraft();
    notice("");
    showErrors();
    say("");
    showState();
    if (pendingRows().length) { save(); }
  }

  // --- saving ----------------------------------------------------------------------------------------

  function say(text, bad) {
    statusNode.textContent = text;
    statusNode.classList.toggle("bad", !!bad);
  }

  function notice(text) {
    noticeBox.textContent = text;
    noticeBox.hidden = !text;
  }

  function showState() {
    var n = count(dirty);
    if (saveButton) { saveButton.disabled = !n || inFlight || locked; }
    if (conflictButton) { conflictButton.hidden = !count(conflicts); }
    if (discardButton) { discardButton.hidden = !n; }
    if (n && !inFlight && !statusNode.classList.contains("bad")) { say(format(M.unsaved, { n: n })); }
  }

  // Cells typed that only this page holds: a refused cell the server keeps is not at risk.
  function atRisk() {
    return Object.keys(dirty).filter(function (id) { return !(unsaved[id] && errors[id]); }).length;
  }

  function scheduleSave() {
    window.clearTimeout(autosaveTimer);
    if (!editable || locked) { return; }
    autosaveTimer = window.setTimeout(save, AUTOSAVE_MS);
  }

  function pendingRows() {
    var blocked = {};
    Object.keys(conflicts).forEach(function (id) { blocked[conflicts[id].key] = true; });
    var byKey = {};
    var list = [];
    Object.keys(dirty).forEach(function (id) {
      var cell = cellById[id];
      var key = cell.dataset.key;
      if (blocked[key]) { return; }  // waits for the teacher's choice in the conflict dialog
      if (errors[id]) { return; }  // refused as typed: kept (here and on the server) until corrected
      if (!byKey[key]) {
        byKey[key] = { key: key, version: versions[key] || 0, cells: {} };
        list.push(byKey[key]);
      }
      byKey[key].cells[cell.dataset.field] = cell.value;
    });
    return list;
  }

  function save() {
    window.clearTimeout(autosaveTimer);
    window.clearTimeout(retryTimer);
    if (!editable || locked || inFlight) { return; }
    var list = pendingRows();
    if (!list.length) {
      if (!count(dirty)) { say(M.nothing); } else if (count(errors)) { say(format(M.stillInvalid, { n: count(errors) }), true); }
      return;
    }
    var sent = {};
    list.forEach(function (row) {
      Object.keys(row.cells).forEach(function (field) { sent[row.key + "/" + field] = row.cells[field]; });
    });
    inFlight = true;
    showState();
    say(M.saving);
    fetch(config.saveUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": config.csrf },
      body: JSON.stringify({ rows: list })
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (response.redirected || type.indexOf("application/json") < 0) {
        // The login page or an error page came back instead of an answer.
        throw new Error(response.redirected || response.status === 400 ? "session" : "server");
      }
      return response.json().then(function (body) { return { status: response.status, body: body }; });
    }).then(function (answer) {
      inFlight = false;
      answered(answer.status, answer.body, sent);
    }).catch(function (error) {
      inFlight = false;
      failed(error && error.message === "session" ? M.session : M.offline);
    });
  }

  function answered(status, body, sent) {
    if (status === 200) { return accepted(body, sent); }
    if (status === 422 || (status === 409 && body.conflicts && body.conflicts.length)) {
      // Every valid cell was saved; the refused ones and the rows changed by someone else were not.
      var skip = {};
      (body.errors || []).forEach(function (error) { skip[error.key + "/" + error.field] = true; });
      (body.conflicts || []).forEach(function (conflict) {
        Object.keys(sent).forEach(function (id) { if (id.indexOf(conflict.key + "/") === 0) { skip[id] = true; } });
      });
      var done = {};
      Object.keys(sent).forEach(function (id) {
        if (!skip[id] && body.versions[id.slice(0, id.lastIndexOf("/"))] !== undefined) { done[id] = sent[id]; }
      });
      storeSaved(body, done);
      if (status === 422) { refused(body, sent); }
      if (body.conflicts && body.conflicts.length) { conflicted(body); }
      return;
    }
    if (status === 409) {  // saved by someone else at the very same moment: simply try again
      say(body.message, true);
      retryTimer = window.setTimeout(save, 3000);
      return showState();
    }
    if (status === 403) { locked = true; }
    failed(body.message || M.offline);
  }

  function accepted(body, sent) {
    storeSaved(body, sent);
    say(format(M.saved, { time: timeNow() }) + (count(dirty) ? " " + format(M.unsaved, { n: count(dirty) }) : ""));
    if (body.review_message) { notice(body.review_message); }
    else if (noticeBox.textContent && !count(dirty)) { notice(""); }
    showState();
    if (pendingRows().length) { scheduleSave(); }
  }

  function storeSaved(body, sent) {
    Object.keys(body.versions).forEach(function (key) { versions[key] = known[key] = body.versions[key]; });
    Object.keys(sent).forEach(function (id) {
      var cell = cellById[id];
      var slash = id.lastIndexOf("/");
      var values = body.values[id.slice(0, slash)] || {};
      var stored = values[id.slice(slash + 1)];
      if (stored === undefined) { stored = sent[id]; }
      saved[id] = stored;
      if (cell.value === sent[id]) {  // not typed over while the request was away
        cell.value = stored;
        fit(cell);
        delete dirty[id];
      }
      delete errors[id];
      delete unsaved[id];
      mark(cell);
    });
    writeDraft();
    showErrors();
  }

  function refused(body, sent) {
    Object.keys(sent).forEach(function (id) { delete errors[id]; if (cellById[id]) { mark(cellById[id]); } });
    var rowErrors = [];
    body.errors.forEach(function (error) {
      var cell = cellById[error.key + "/" + error.field];
      if (cell) {
        errors[idOf(cell)] = error.message;
        errorWhere[idOf(cell)] = error.where;
        unsaved[idOf(cell)] = true;
        mark(cell);
      } else {
        rowErrors.push(error);
      }
    });
    showErrors(rowErrors);
    say(body.message, true);
    showState();
  }

  // The list under the toolbar: every cell still refused (not only those of the last save), then
  // what the last answer said about rows that are no longer in the grid.
  function showErrors(extra) {
    var list = [];
    Object.keys(errors).forEach(function (id) {
      var slash = id.lastIndexOf("/");
      list.push({ key: id.slice(0, slash), field: id.slice(slash + 1), where: errorWhere[id] || "",
                  message: errors[id], typed: cellById[id] ? cellById[id].value : "" });
    });
    list = list.concat(extra || []);
    errorBox.hidden = !list.length;
    var ul = errorBox.querySelector("ul");
    ul.textContent = "";
    list.forEach(function (error) {
      var item = document.createElement("li");
      var cell = cellById[error.key + "/" + error.field];
      var link = document.createElement(cell ? "a" : "span");
      link.textContent = error.where + ": " + error.message +
        (error.typed !== undefined ? " (" + format(M.typed, { value: error.typed }) + ")" : "");
      if (cell) {
        link.href = "#";
        link.addEventListener("click", function (event) { event.preventDefault(); focusCell(cell); });
      }
      item.appendChild(link);
      ul.appendChild(item);
    });
  }

  function conflicted(body) {
    body.conflicts.forEach(function (conflict) {
      known[conflict.key] = conflict.version;
      Object.keys(conflict.current).forEach(function (field) {  // cells the teacher did not touch: show theirs
        var id = conflict.key + "/" + field;
        var cell = cellById[id];
        if (cell && !dirty[id]) { cell.value = saved[id] = conflict.current[field]; fit(cell); }
        if (cell) { saved[id] = conflict.current[field]; }
      });
      conflict.cells.forEach(function (item) {
        var id = conflict.key + "/" + item.field;
        var cell = cellById[id];
        if (!cell) { return; }
        if (item.mine === item.theirs || cell.value === item.theirs) {
          versions[conflict.key] = conflict.version;  // the same value: nothing to choose
          if (cell.value === item.theirs) { delete dirty[id]; }
        } else {
          conflicts[id] = { key: conflict.key, version: conflict.version, mine: cell.value, theirs: item.theirs,
                            by: conflict.by, at: conflict.at, where: item.where };
        }
        mark(cell);
      });
    });
    writeDraft();
    if (count(conflicts)) {
      say(body.message, true);
      openConflicts();
      if (pendingRows().length) { scheduleSave(); }  // the other rows need not wait
    } else {
      save();
    }
    showState();
  }

  function failed(message) {
    say(message, true);
    showState();
    if (!locked) { retryTimer = window.setTimeout(save, RETRY_MS); }
  }

  // --- the conflict dialog ---------------------------------------------------------------------------

  function openConflicts() {
    var list = document.getElementById("conflict-list");
    list.textContent = "";
    Object.keys(conflicts).forEach(function (id) {
      var c = conflicts[id];
      var item = document.createElement("li");
      item.dataset.cell = id;
      var where = document.createElement("p");
      where.className = "where";
      where.textContent = c.where;
      var values = document.createElement("p");
      values.appendChild(document.createTextNode(M.youTyped + ": "));
      var mine = document.createElement("strong");
      mine.textContent = c.mine || M.empty;
      values.appendChild(mine);
      values.appendChild(document.createTextNode(" · " + M.theirs + ": "));
      var theirs = document.createElement("strong");
      theirs.textContent = c.theirs || M.empty;
      values.appendChild(theirs);
      var who = document.createElement("p");
      who.className = "muted";
      who.textContent = format(M.changedBy, { by: c.by || M.someone, at: c.at });
      var keep = document.createElement("button");
      keep.type = "button";
      keep.className = "keep";
      keep.textContent = M.keepMine;
      keep.addEventListener("click", function () { resolve(id, true); });
      var take = document.createElement("button");
      take.type = "button";
      take.className = "take";
      take.textContent = M.takeTheirs;
      take.addEventListener("click", function () { resolve(id, false); });
      [where, values, who, keep, take].forEach(function (node) { item.appendChild(node); });
      list.appendChild(item);
    });
    if (dialog && !dialog.open) {
      if (dialog.showModal) { dialog.showModal(); } else { dialog.setAttribute("open", ""); }
    }
  }

  function resolve(id, keepMine) {
    var c = conflicts[id];
    if (!c) { return; }
    var cell = cellById[id];
    delete conflicts[id];
    versions[c.key] = c.version;
    if (!keepMine) {
      cell.value = saved[id] = c.theirs;
      fit(cell);
      delete dirty[id];
    }
    mark(cell);
    var item = dialog.querySelector("li[data-cell='" + id.replace(/'/g, "") + "']");
    if (item) { item.remove(); }
    writeDraft();
    if (!count(conflicts)) {
      closeDialog();
      say(count(dirty) ? format(M.unsaved, { n: count(dirty) }) : M.nothing);
      if (pendingRows().length) { save(); }
    }
    showState();
  }

  function closeDialog() {
    if (dialog && dialog.open) { if (dialog.close) { dialog.close(); } else { dialog.removeAttribute("open"); } }
  }

  if (dialog) {
    document.getElementById("conflict-keep-all").addEventListener("click", function () {
      Object.keys(conflicts).forEach(function (id) { resolve(id, true); });
    });
    document.getElementById("conflict-take-all").addEventListener("click", function () {
      Object.keys(conflicts).forEach(function (id) { resolve(id, false); });
    });
    document.getElementById("conflict-close").addEventListener("click", closeDialog);
  }
  if (conflictButton) { conflictButton.addEventListener("click", openConflicts); }
  if (saveButton) { saveButton.addEventListener("click", save); }
  if (discardButton) { discardButton.addEventListener("click", discard); }

  window.addEventListener("beforeunload", function (event) {
    if (editable && (atRisk() || inFlight)) {
      event.preventDefault();
      event.returnValue = M.leave;  // the changes stay on this computer either way
    }
  });

  // A restored draft waits for the teacher: she saves it (or types on, which saves) or discards it.
  restoreDraft();
  if (count(errors)) {
    Object.keys(errors).forEach(function (id) { mark(cellById[id]); });
    showErrors();
    say(format(M.stillInvalid, { n: count(errors) }), true);
  }
  showState();
})();
