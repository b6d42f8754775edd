"""The report's own script: builds the Plotly scatter of the data map, the hover card, the legend.

It reads the JSON in ``<script type="application/json" id="introscope-data">`` and writes every
user string with ``textContent`` (never as HTML). Points are grouped into one trace per label so
the legend can hide labels; coordinates travel as base64 float32.
"""

REPORT_JS = r"""
(function () {
  'use strict';
  var holder = document.getElementById('introscope-data');
  var gd = document.getElementById('scatter');
  if (!holder || !gd) { window.introscopeReady = true; return; }
  var D = JSON.parse(holder.textContent);
  function dec(b64, T) {
    var s = atob(b64), n = s.length, u = new Uint8Array(n);
    for (var i = 0; i < n; i++) { u[i] = s.charCodeAt(i); }
    return new T(u.buffer);
  }
  var x = dec(D.x, Float32Array), y = dec(D.y, Float32Array);
  var codes = dec(D.codes, Int32Array);
  var fam = D.fam ? dec(D.fam, Float32Array) : null;
  var n = x.length, G = D.label_names.length;
  var counts = new Int32Array(G);
  for (var i = 0; i < n; i++) { counts[codes[i]]++; }
  var members = [], fill = new Int32Array(G);
  for (var g = 0; g < G; g++) { members.push(new Int32Array(counts[g])); }
  for (var j = 0; j < n; j++) { var c = codes[j]; members[c][fill[c]++] = j; }
  var canvas = document.createElement('canvas');
  var webgl = !!(window.WebGLRenderingContext &&
                 (canvas.getContext('webgl') || canvas.getContext('experimental-webgl')));
  var size = n > 20000 ? 3 : (n > 2000 ? 5 : 7);
  var traces = [];
  for (var k = 0; k < G; k++) {
    var m = members[k], tx = new Float32Array(m.length), ty = new Float32Array(m.length);
    for (var q = 0; q < m.length; q++) { tx[q] = x[m[q]]; ty[q] = y[m[q]]; }
    traces.push({
      type: webgl ? 'scattergl' : 'scatter', mode: 'markers', x: tx, y: ty,
      name: 'group ' + k, hoverinfo: 'none',
      marker: {size: size, color: D.colors[k], opacity: n > 20000 ? 0.6 : 0.85,
               line: {width: 0}}
    });
  }
  var layout = {
    showlegend: false, hovermode: 'closest', dragmode: 'zoom',
    margin: {l: 50, r: 10, t: 10, b: 44}, plot_bgcolor: '#fbfcfd',
    xaxis: {title: {text: D.axis_x}, zeroline: false},
    yaxis: {title: {text: D.axis_y}, zeroline: false}
  };
  var card = {
    img: document.getElementById('hover-img'), none: document.getElementById('hover-noimg'),
    label: document.getElementById('hover-label'), id: document.getElementById('hover-id'),
    fam: document.getElementById('hover-fam'), hint: document.getElementById('hover-hint')
  };
  function show(idx) {
    window.introscopeHovered = idx;
    card.hint.style.display = 'none';
    card.label.textContent = D.label_names[codes[idx]];
    card.id.textContent = D.ids[idx];
    card.fam.textContent = fam ? fam[idx].toPrecision(4) : 'not computed';
    var uri = D.thumbs[String(idx)];
    if (typeof uri === 'string' && /^data:image\/(png|jpeg);base64,/.test(uri)) {
      card.img.src = uri; card.img.style.display = 'block'; card.none.style.display = 'none';
    } else {
      card.img.removeAttribute('src'); card.img.style.display = 'none';
      card.none.style.display = 'block';
    }
  }
  var legend = document.getElementById('legend');
  var boxes = [];
  function showOnly(keep) {  // keep(label index) -> shown?
    var visible = [], which = [];
    for (var g2 = 0; g2 < G; g2++) {
      boxes[g2].checked = keep(g2); visible.push(boxes[g2].checked); which.push(g2);
    }
    Plotly.restyle(gd, {visible: visible}, which);
  }
  if (G > 1) {
    var bar = document.createElement('div');
    bar.className = 'legend-bar';
    [['all', function () { return true; }], ['none', function () { return false; }]].forEach(
      function (pair) {
        var button = document.createElement('button');
        button.type = 'button'; button.className = 'legend-' + pair[0];
        button.textContent = pair[0];
        button.addEventListener('click', function () { showOnly(pair[1]); });
        bar.appendChild(button);
      });
    var tip = document.createElement('span');
    tip.textContent = 'double-click a label (or Enter on its box) to see it alone';
    bar.appendChild(tip);
    legend.appendChild(bar);
  }
  for (var h = 0; h < G; h++) {
    (function (gi) {
      var row = document.createElement('label');
      var box = document.createElement('input');
      box.type = 'checkbox'; box.checked = true;
      boxes.push(box);
      row.addEventListener('dblclick', function (ev) {
        ev.preventDefault();
        showOnly(function (g3) { return g3 === gi; });
      });
      var sw = document.createElement('span');
      sw.className = 'sw'; sw.style.background = D.colors[gi];
      var text = document.createElement('span'), name = document.createElement('bdi');
      text.className = 'legend-label'; text.title = D.label_names[gi];
      name.textContent = D.label_names[gi];  // isolated: an RTL label keeps its count apart
      text.appendChild(name);
      var count = document.createElement('span');
      count.className = 'legend-count'; count.textContent = ' (' + counts[gi] + ')';
      text.appendChild(count);
      row.appendChild(box); row.appendChild(sw); row.appendChild(text);
      box.addEventListener('change', function () {
        Plotly.restyle(gd, {visible: box.checked}, [gi]);
      });
      box.addEventListener('keydown', function (ev) {  // the keyboard's double-click
        if (ev.key === 'Enter') {
          ev.preventDefault();
          showOnly(function (g3) { return g3 === gi; });
        }
      });
      legend.appendChild(row);
    })(h);
  }
  var find = document.getElementById('sample-find');
  if (find) {  // a sample by id, for the keyboard and screen readers: exact, then a part
    find.addEventListener('keydown', function (ev) {
      if (ev.key !== 'Enter') { return; }
      ev.preventDefault();
      var q = find.value.trim(), low = q.toLowerCase(), hit = D.ids.indexOf(q);
      for (var s = 0; hit < 0 && q && s < n; s++) {
        if (D.ids[s].toLowerCase() === low) { hit = s; }
      }
      for (var t = 0; hit < 0 && q && t < n; t++) {
        if (D.ids[t].toLowerCase().indexOf(low) >= 0) { hit = t; }
      }
      if (hit >= 0) { show(hit); return; }
      card.hint.style.display = 'block';
      card.hint.textContent = q ? 'No sample id contains "' + q + '".' : 'Hover a point.';
    });
  }
  if (!webgl) {
    var warn = document.getElementById('map-note');
    if (warn) { warn.textContent = 'WebGL is not available in this browser: the map is drawn ' +
                'with SVG, which is slow for many points.'; }
  }
  window.introscopeMembers = members;
  Plotly.newPlot(gd, traces, layout, {displaylogo: false, responsive: true, showLink: false,
                                   showSendToCloud: false, showEditInChartStudio: false}).then(function () {
    gd.on('plotly_hover', function (ev) {
      var p = ev.points[0];
      show(members[p.curveNumber][p.pointIndex]);
    });
    window.introscopeReady = true;
  });
})();
"""
