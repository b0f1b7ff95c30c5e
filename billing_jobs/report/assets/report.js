/* Search, filter, sort and page the embedded tables of report.html. No network, no libraries. */
(function () {
  "use strict";

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function compare(a, b, numeric) {
    if (numeric) {
      var x = parseFloat(a), y = parseFloat(b);
      var nx = isNaN(x), ny = isNaN(y);
      if (nx || ny) return nx === ny ? 0 : (nx ? 1 : -1);
      return x - y;
    }
    return a < b ? -1 : (a > b ? 1 : 0);
  }

  function DataTable(root) {
    var name = root.getAttribute("data-table");
    var source = document.getElementById("data-" + name);
    var data = JSON.parse(source.textContent);
    var cols = data.columns, rows = data.rows;
    var numeric = {};
    data.numeric.forEach(function (c) { numeric[cols.indexOf(c)] = true; });
    var haystack = rows.map(function (r) { return r.join("\u0001").toLowerCase(); });
    var state = { query: "", filters: {}, sortCol: -1, sortDir: 1, page: 0, size: 50 };
    var view = [];

    var search = root.querySelector(".dt-search");
    var sizeSel = root.querySelector(".dt-size");
    var prev = root.querySelector(".dt-prev"), next = root.querySelector(".dt-next");
    var pageLabel = root.querySelector(".dt-page"), status = root.querySelector(".dt-status");
    var thead = root.querySelector("thead"), tbody = root.querySelector("tbody");
    var filterBox = root.querySelector(".dt-filters");
    state.size = parseInt(sizeSel.value, 10);

    var headRow = el("tr");
    cols.forEach(function (c, i) {
      var th = el("th", c, numeric[i] ? "num" : "");
      th.setAttribute("scope", "col");
      th.addEventListener("click", function () {
        if (state.sortCol === i) state.sortDir = -state.sortDir; else { state.sortCol = i; state.sortDir = 1; }
        state.page = 0; refresh();
      });
      headRow.appendChild(th);
    });
    thead.appendChild(headRow);

    data.filters.forEach(function (c) {
      var i = cols.indexOf(c);
      var seen = {};
      rows.forEach(function (r) { seen[r[i]] = true; });
      var values = Object.keys(seen).sort();
      var label = el("label", c + " ");
      var sel = el("select");
      sel.className = "dt-filter";
      sel.setAttribute("data-column", c);
      sel.appendChild(el("option", "all"));
      sel.options[0].value = "";
      values.forEach(function (v) { var o = el("option", v === "" ? "(empty)" : v); o.value = v; sel.appendChild(o); });
      sel.addEventListener("change", function () {
        if (sel.value === "") delete state.filters[i]; else state.filters[i] = sel.value;
        state.page = 0; refresh();
      });
      label.appendChild(sel);
      filterBox.appendChild(label);
    });

    search.addEventListener("input", function () { state.query = search.value.trim().toLowerCase(); state.page = 0; refresh(); });
    sizeSel.addEventListener("change", function () { state.size = parseInt(sizeSel.value, 10); state.page = 0; render(); });
    prev.addEventListener("click", function () { if (state.page > 0) { state.page--; render(); } });
    next.addEventListener("click", function () { if ((state.page + 1) * state.size < view.length) { state.page++; render(); } });

    function refresh() {
      var q = state.query, f = state.filters, keys = Object.keys(f);
      view = [];
      for (var r = 0; r < rows.length; r++) {
        if (q && haystack[r].indexOf(q) === -1) continue;
        var ok = true;
        for (var k = 0; k < keys.length; k++) { if (rows[r][keys[k]] !== f[keys[k]]) { ok = false; break; } }
        if (ok) view.push(r);
      }
      if (state.sortCol >= 0) {
        var c = state.sortCol, d = state.sortDir, num = !!numeric[c];
        view.sort(function (a, b) { return d * compare(rows[a][c], rows[b][c], num) || a - b; });
      }
      Array.prototype.forEach.call(thead.querySelectorAll("th"), function (th, i) {
        if (i === state.sortCol) th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending");
        else th.removeAttribute("aria-sort");
      });
      render();
    }

    function render() {
      var pages = Math.max(1, Math.ceil(view.length / state.size));
      if (state.page >= pages) state.page = pages - 1;
      var start = state.page * state.size, end = Math.min(view.length, start + state.size);
      var frag = document.createDocumentFragment();
      for (var v = start; v < end; v++) {
        var row = rows[view[v]], tr = el("tr");
        for (var c = 0; c < cols.length; c++) tr.appendChild(el("td", row[c], numeric[c] ? "num" : ""));
        frag.appendChild(tr);
      }
      tbody.replaceChildren(frag);
      pageLabel.textContent = "page " + (state.page + 1) + " of " + pages;
      prev.disabled = state.page === 0;
      next.disabled = end >= view.length;
      var shown = view.length === 0 ? "No matching rows" :
        "Rows " + (start + 1) + "–" + end + " of " + view.length + " matching";
      var of = rows.length < data.total ? " (of the first " + rows.length + " of " + data.total + " rows; all in " + data.source + ")"
                                        : " (of " + rows.length + ")";
      status.textContent = shown + of;
      root.setAttribute("data-matching", String(view.length));
    }

    refresh();
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-table]"), function (root) {
      try { DataTable(root); } catch (e) { root.appendChild(el("p", "Table could not be shown: " + e, "alert danger")); throw e; }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
