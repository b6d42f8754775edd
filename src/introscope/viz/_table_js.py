"""The report's table script: click-to-sort headers and a search box over the rows.

Every ``table.sortable`` gets sorting on its header buttons (numbers numerically, text in
natural order, a second click reverses, empty cells last, ties in the original order); a table
with ``data-filter`` gets a search box matching the cells of ``data-filter-cols``
(case-insensitive substring) and a "n of m rows" count. Rows with ``data-keys`` (a JSON list,
their sample ids) match a query equal to one of their keys exactly, and only those rows when
some row does; when every key is an integer, only exact keys match. Plain DOM, no library.
"""

TABLE_JS = r"""
(function () {
  'use strict';
  function value(td, num) {
    var t = td ? td.textContent.trim() : '';
    if (!num) { return t === '' || t === '\u2013' ? null : t.toLowerCase(); }
    var v = parseFloat(t.replace(/[,\s]/g, ''));
    return isNaN(v) ? null : v;
  }
  function setup(tbl) {
    var body = tbl.tBodies[0], ths = tbl.tHead.rows[0].cells;
    var rows = Array.prototype.slice.call(body.rows);
    var state = {col: -1, dir: 1};
    function mark() {
      for (var c = 0; c < ths.length; c++) {
        var on = c === state.col, ind = ths[c].querySelector('.sort-ind');
        ths[c].setAttribute('aria-sort', on ? (state.dir > 0 ? 'ascending' : 'descending') : 'none');
        if (ind) { ind.textContent = on ? (state.dir > 0 ? '\u25b2' : '\u25bc') : '\u2195'; }
      }
    }
    function sortBy(col) {
      state.dir = state.col === col ? -state.dir : 1;
      state.col = col;
      var num = ths[col].getAttribute('data-type') === 'num', dir = state.dir;
      var keyed = rows.map(function (r, i) { return [value(r.cells[col], num), i, r]; });
      keyed.sort(function (a, b) {
        var x = a[0], y = b[0];
        if (x === null || y === null) {
          return x === y ? a[1] - b[1] : (x === null ? 1 : -1);
        }
        var d = num ? x - y : x.localeCompare(y, undefined, {numeric: true});
        return d !== 0 ? dir * d : a[1] - b[1];
      });
      var frag = document.createDocumentFragment();
      keyed.forEach(function (k) { frag.appendChild(k[2]); });
      body.appendChild(frag);
      mark();
    }
    Array.prototype.forEach.call(ths, function (th, col) {
      var b = th.querySelector('button.sort');
      if (b) { b.addEventListener('click', function () { sortBy(col); }); }
    });
    var what = tbl.getAttribute('data-filter');
    if (!what) { return; }
    var cols = (tbl.getAttribute('data-filter-cols') || '0').split(',').map(Number);
    var bar = document.createElement('div');
    bar.className = 'table-filter';
    var input = document.createElement('input');
    input.type = 'search'; input.placeholder = 'filter by ' + what;
    input.setAttribute('aria-label', 'filter the rows by ' + what);
    var count = document.createElement('span');
    count.className = 'filter-count'; count.setAttribute('aria-live', 'polite');
    bar.appendChild(input); bar.appendChild(count);
    tbl.parentNode.insertBefore(bar, tbl);
    var keys = rows.map(function (r) {
      var k = r.getAttribute('data-keys');
      return k === null ? null : JSON.parse(k).map(function (s) { return s.toLowerCase(); });
    });
    var allInt = keys.length > 0 && keys.every(function (ks) {
      return ks !== null && ks.every(function (s) { return /^-?\d+$/.test(s); });
    });
    function apply() {
      var q = input.value.trim().toLowerCase(), shown = 0;
      var exact = allInt || keys.some(function (ks) { return ks !== null && ks.indexOf(q) >= 0; });
      rows.forEach(function (r, i) {
        var hit = !q || (exact ? keys[i] !== null && keys[i].indexOf(q) >= 0
          : cols.some(function (c) {
            return !!r.cells[c] && r.cells[c].textContent.toLowerCase().indexOf(q) >= 0;
          }));
        r.hidden = !hit;
        if (hit) { shown++; }
      });
      count.textContent = shown + ' of ' + rows.length + ' rows';
    }
    input.addEventListener('input', apply);
    apply();
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), setup);
  window.introscopeTablesReady = true;
})();
"""
