/* Segment builder: edit a rule (DESIGN.md §7) as nested groups of conditions, keep the form's hidden
   "rule" field in step, and show the live size preview. No inline script: the CSP forbids it. */
(function () {
  "use strict";

  var form = document.getElementById("segment-form");
  var configNode = document.getElementById("builder-config");
  if (!form || !configNode) { return; }
  var config = JSON.parse(configNode.textContent);
  var T = config.text;
  var fields = {};
  config.fields.forEach(function (f) { fields[f.name] = f; });
  var ruleInput = form.querySelector("input[name=rule]");
  var asOfInput = form.querySelector("input[name=as_of]");
  var tokenInput = form.querySelector("input[name=csrf_token]");
  var root = document.getElementById("rule-builder");
  var jsonView = document.getElementById("rule-json");
  var lang = document.documentElement.lang || "fr";
  var numbers = new Intl.NumberFormat(lang);
  var percent = new Intl.NumberFormat(lang, { style: "percent", maximumFractionDigits: 1 });
  var counter = 0;

  // --- the model: groups {type, kind, negated, children} and conditions {type, field, op, value,
  // within_days, negated}; a "not" in the JSON becomes the negated flag of what it wraps.

  function fromJson(node) {
    if (node && typeof node === "object" && "not" in node) {
      var inner = fromJson(node.not);
      inner.negated = !inner.negated;
      return inner;
    }
    if (node && typeof node === "object" && (Array.isArray(node.all) || Array.isArray(node.any))) {
      var kind = Array.isArray(node.all) ? "all" : "any";
      return { type: "group", kind: kind, negated: false, children: node[kind].map(fromJson) };
    }
    node = node || {};
    return {
      type: "condition", field: node.field in fields ? node.field : "shows", op: node.op,
      value: node.value, within_days: node.within_days == null ? null : node.within_days, negated: false
    };
  }

  function toJson(m) {
    var out;
    if (m.type === "group") {
      out = {};
      out[m.kind] = m.children.map(toJson);
    } else {
      out = { field: m.field, op: m.op, value: m.value };
      if (m.within_days != null && m.within_days !== "") { out.within_days = m.within_days; }
    }
    return m.negated ? { not: out } : out;
  }

  function defaults(condition) {
    var spec = fields[condition.field];
    var kind = spec.kind;
    var preferred = { set: "any", stage: "in", channel: "in", fsa: "in", "boolean": "is" }[kind] || ">=";
    condition.op = spec.ops.indexOf(preferred) >= 0 ? preferred : spec.ops[0];
    if (kind === "boolean") { condition.value = true; }
    else if (spec.choices || kind === "fsa") { condition.value = []; }
    else { condition.value = kind === "count" ? 1 : 0; }
    condition.within_days = null;
  }

  var model;
  try {
    model = fromJson(JSON.parse(ruleInput.value || "{}"));
  } catch (e) {
    model = { type: "group", kind: "all", negated: false, children: [] };
  }
  if (model.type !== "group") {
    model = { type: "group", kind: "all", negated: false, children: [model] };
  }

  // --- rendering ------------------------------------------------------------------------------

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; }
      else if (key === "className") { node.className = attrs[key]; }
      else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  function uid(prefix) { counter += 1; return prefix + "-" + counter; }

  function notToggle(m) {
    var id = uid("not");
    var box = el("input", { type: "checkbox", id: id, "data-role": "not" });
    box.checked = !!m.negated;
    box.addEventListener("change", function () { m.negated = box.checked; changed(); });
    return el("span", { className: "rule-not" }, [box, el("label", { "for": id, text: T.not })]);
  }

  function renderGroup(m, parent, depth) {
    var box = el("fieldset", { className: "rule-group", "data-depth": String(depth) });
    var kind = el("select", { "aria-label": T.group, "data-role": "kind" }, [
      el("option", { value: "all", text: T.all }), el("option", { value: "any", text: T.any })
    ]);
    kind.value = m.kind;
    kind.addEventListener("change", function () { m.kind = kind.value; changed(); });
    box.appendChild(el("legend", {}, [notToggle(m), document.createTextNode(" "), kind]));
    m.children.forEach(function (child, index) {
      box.appendChild(child.type === "group" ? renderGroup(child, m, depth + 1) : renderCondition(child, m, index));
    });
    var addCondition = el("button", { type: "button", "data-role": "add-condition", text: T.add_condition });
    addCondition.addEventListener("click", function () {
      var condition = { type: "condition", field: "shows", negated: false };
      defaults(condition);
      m.children.push(condition);
      redraw();
    });
    var addGroup = el("button", { type: "button", "data-role": "add-group", text: T.add_group });
    addGroup.addEventListener("click", function () {
      var condition = { type: "condition", field: "shows", negated: false };
      defaults(condition);
      m.children.push({ type: "group", kind: "any", negated: false, children: [condition] });
      redraw();
    });
    var actions = el("div", { className: "actions" }, [addCondition, addGroup]);
    if (parent) {
      var remove = el("button", { type: "button", className: "danger", "data-role": "remove-group", text: T.remove });
      remove.addEventListener("click", function () {
        parent.children.splice(parent.children.indexOf(m), 1);
        redraw();
      });
      actions.appendChild(remove);
    }
    box.appendChild(actions);
    return box;
  }

  function renderCondition(m, parent) {
    var spec = fields[m.field];
    var row = el("div", { className: "actions rule-condition", "data-field": m.field });
    row.appendChild(notToggle(m));
    var field = el("select", { "aria-label": T.condition, "data-role": "field" },
      config.fields.map(function (f) { return el("option", { value: f.name, text: f.label }); }));
    field.value = m.field;
    field.addEventListener("change", function () { m.field = field.value; defaults(m); redraw(); });
    row.appendChild(field);
    var op = el("select", { "aria-label": spec.label, "data-role": "op" },
      spec.ops.map(function (o) { return el("option", { value: o, text: config.ops[o] || o }); }));
    op.value = m.op;
    op.addEventListener("change", function () {
      var wasBetween = m.op === "between";
      m.op = op.value;
      if (spec.kind !== "boolean" && !spec.choices && spec.kind !== "fsa") {
        if (m.op === "between" && !Array.isArray(m.value)) { m.value = [m.value, m.value]; }
        if (m.op !== "between" && wasBetween) { m.value = m.value[0]; }
        redraw();
      } else { changed(); }
    });
    row.appendChild(op);
    row.appendChild(valueEditor(m, spec));
    if (spec.within_days) {
      var days = el("input", { type: "number", min: "1", step: "1", "data-role": "within", inputmode: "numeric",
        "aria-label": T.within, placeholder: T.days, title: T.within });
      days.value = m.within_days == null ? "" : m.within_days;
      days.addEventListener("input", function () {
        m.within_days = days.value === "" ? null : Number(days.value);
        changed();
      });
      row.appendChild(el("label", { className: "help" }, [document.createTextNode(T.within + " "), days]));
    }
    var remove = el("button", { type: "button", className: "danger", "data-role": "remove", text: T.remove });
    remove.addEventListener("click", function () {
      parent.children.splice(parent.children.indexOf(m), 1);
      redraw();
    });
    row.appendChild(remove);
    return row;
  }

  function numberInput(spec, value, label, onValue) {
    var input = el("input", { type: "number", "aria-label": label, "data-role": "number",
      step: spec.kind === "money" ? "0.01" : (spec.integer ? "1" : "any") });
    if (spec.minimum != null) { input.setAttribute("min", spec.minimum); }
    if (spec.maximum != null) { input.setAttribute("max", spec.maximum); }
    input.value = value == null ? "" : value;
    input.addEventListener("input", function () {
      onValue(input.value === "" ? null : Number(input.value));
      changed();
    });
    return input;
  }

  function valueEditor(m, spec) {
    if (spec.kind === "boolean") {
      var select = el("select", { "aria-label": spec.label, "data-role": "boolean" }, [
        el("option", { value: "true", text: T.yes }), el("option", { value: "false", text: T.no })
      ]);
      select.value = m.value ? "true" : "false";
      select.addEventListener("change", function () { m.value = select.value === "true"; changed(); });
      return select;
    }
    if (spec.choices) {
      var chosen = Array.isArray(m.value) ? m.value : [];
      m.value = chosen;
      var list = el("span", { className: "actions rule-choices", role: "group", "aria-label": spec.label });
      spec.choices.forEach(function (choice) {
        var id = uid("choice");
        var box = el("input", { type: "checkbox", id: id, value: choice[0], "data-role": "choice" });
        box.checked = chosen.indexOf(choice[0]) >= 0;
        box.addEventListener("change", function () {
          var at = m.value.indexOf(choice[0]);
          if (box.checked && at < 0) { m.value.push(choice[0]); }
          if (!box.checked && at >= 0) { m.value.splice(at, 1); }
          changed();
        });
        list.appendChild(el("span", {}, [box, el("label", { "for": id, text: choice[1] })]));
      });
      return list;
    }
    if (spec.kind === "fsa") {
      var text = el("input", { type: "text", "aria-label": spec.label, "data-role": "fsa", placeholder: "H2X, H3A",
        title: T.fsa_help, size: "18" });
      text.value = Array.isArray(m.value) ? m.value.join(", ") : "";
      text.addEventListener("input", function () {
        m.value = text.value.split(/[\s,;]+/).map(function (v) { return v.trim().toUpperCase(); })
          .filter(function (v) { return v; });
        changed();
      });
      return text;
    }
    if (m.op === "between") {
      var pair = Array.isArray(m.value) ? m.value : [m.value, m.value];
      m.value = pair;
      return el("span", { className: "rule-range" }, [
        numberInput(spec, pair[0], spec.label, function (v) { m.value[0] = v; }),
        el("span", { text: " " + T.and + " " }),
        numberInput(spec, pair[1], spec.label, function (v) { m.value[1] = v; })
      ]);
    }
    return numberInput(spec, Array.isArray(m.value) ? m.value[0] : m.value, spec.label, function (v) { m.value = v; });
  }

  function redraw() {
    root.textContent = "";
    root.appendChild(renderGroup(model, null, 0));
    changed();
  }

  // --- keeping the form in step, and the live preview ------------------------------------------

  var timer = null;
  var inFlight = null;

  // The rule as people read it: one condition a line, groups indented (as segments/views.py rule_text).
  function holdsConditions(value) {
    if (Array.isArray(value)) { return value.some(function (v) { return v !== null && typeof v === "object" && !Array.isArray(v); }); }
    if (value !== null && typeof value === "object") {
      return Object.keys(value).some(function (key) {
        var v = value[key];
        return holdsConditions(v) || (v !== null && typeof v === "object" && !Array.isArray(v));
      });
    }
    return false;
  }

  function flat(value) {  // JSON on one line, spaced as Python's json.dumps
    if (Array.isArray(value)) { return "[" + value.map(flat).join(", ") + "]"; }
    if (value !== null && typeof value === "object") {
      return "{" + Object.keys(value).map(function (key) { return JSON.stringify(key) + ": " + flat(value[key]); }).join(", ") + "}";
    }
    return JSON.stringify(value);
  }

  function layout(value, level) {
    if (!holdsConditions(value)) { return flat(value); }
    var pad = new Array(level + 1).join("  "), inner = pad + "  ";
    if (Array.isArray(value)) {
      return "[\n" + value.map(function (v) { return inner + layout(v, level + 1); }).join(",\n") + "\n" + pad + "]";
    }
    return "{\n" + Object.keys(value).map(function (key) {
      return inner + JSON.stringify(key) + ": " + layout(value[key], level + 1);
    }).join(",\n") + "\n" + pad + "}";
  }

  function changed() {
    var rule = toJson(model);
    ruleInput.value = JSON.stringify(rule);
    if (jsonView) { jsonView.textContent = layout(rule, 0); }
    clearTimeout(timer);
    timer = setTimeout(refreshPreview, 250);
  }

  function count(value, k, text) {
    // A hidden figure says why, in the server's words ("fewer than 10", "all but fewer than 10").
    if (value == null) { return text || T.hidden.replace("%(k)s", k); }
    return numbers.format(value);
  }

  function fillTable(id, rows) {
    var body = document.querySelector("#" + id + " tbody");
    if (!body) { return; }
    body.textContent = "";
    rows.forEach(function (cells) {
      body.appendChild(el("tr", {}, [el("td", { text: cells[0] }), el("td", { className: "num", text: cells[1] })]));
    });
  }

  function showPreview(data) {
    var k = data.k;
    document.getElementById("preview-size").textContent = count(data.size, k, data.size_text);
    var reach = data.contactable;
    document.getElementById("preview-contactable").textContent = reach.spectators == null
      ? count(null, k, reach.text) : numbers.format(reach.spectators) + (reach.share == null ? "" : " (" + percent.format(reach.share) + ")");
    document.getElementById("preview-as-of").textContent = data.as_of;
    var names = {};
    config.fields.forEach(function (f) {
      if (f.name === "organisation") { (f.choices || []).forEach(function (c) { names[c[0]] = c[1]; }); }
    });
    fillTable("preview-organisations", data.by_organisation
      .map(function (row) { return [names[row.organisation] || row.organisation, count(row.spectators, k, row.text)]; }));
    fillTable("preview-lifecycle", data.lifecycle.map(function (row) {
      return [config.stages[row.stage] || row.stage, count(row.spectators, k, row.text)];
    }));
    var status = document.getElementById("preview-status");
    status.textContent = "";
    status.className = "help";
    document.getElementById("preview").setAttribute("aria-busy", "false");
  }

  function showError(message) {
    var status = document.getElementById("preview-status");
    status.textContent = message;
    status.className = "errors";
    document.getElementById("preview-size").textContent = "—";
    document.getElementById("preview-contactable").textContent = "—";
    fillTable("preview-organisations", []);
    fillTable("preview-lifecycle", []);
    document.getElementById("preview").setAttribute("aria-busy", "false");
  }

  function refreshPreview() {
    if (inFlight) { inFlight.abort(); }
    inFlight = new AbortController();
    var status = document.getElementById("preview-status");
    status.textContent = T.updating;
    status.className = "help";
    document.getElementById("preview").setAttribute("aria-busy", "true");
    var headers = { "Content-Type": "application/json", "Accept": "application/json" };
    if (tokenInput) { headers["X-CSRFToken"] = tokenInput.value; }
    fetch(config.preview_url, {
      method: "POST", headers: headers, credentials: "same-origin", signal: inFlight.signal,
      body: JSON.stringify({ rule: toJson(model), as_of: asOfInput && asOfInput.value ? asOfInput.value : null })
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (result) {
      if (result.ok) { showPreview(result.data); } else { showError(result.data.error || T.error); }
    }).catch(function (error) {
      if (error.name !== "AbortError") { showError(T.error); }
    });
  }

  if (asOfInput) { asOfInput.addEventListener("change", function () { changed(); }); }
  form.addEventListener("submit", function () { ruleInput.value = JSON.stringify(toJson(model)); });
  document.documentElement.classList.add("js");
  redraw();
}());
