// dspx report: builds the page from the JSON in #dspx-data with Tabulator and Chart.js.
// Every value from a run folder enters the page as text (textContent, text nodes), never as HTML.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("dspx-data").textContent);
  const STRINGS = DATA.strings;
  const built = {}; // run number -> {table, ...} once its section is built
  window.dspxReport = { data: DATA, runs: built, ready: false };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function show(value) {
    if (value === null || value === undefined) return "";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function failed(row) {
    return row.error !== null || row.score === null || row.score < 1;
  }

  // ----- the run selector ---------------------------------------------------------------------
  const nav = document.getElementById("runs");
  const main = document.getElementById("main");
  document.getElementById("loading").remove();
  const sections = DATA.runs.map((run, number) => {
    const section = el("section", { class: "run", id: "run-" + number, hidden: "" });
    main.append(section);
    if (DATA.runs.length > 1) {
      nav.append(el("button", { type: "button", text: run.name, "data-run": String(number), onclick: () => select(number) }));
    }
    return section;
  });

  function select(number) {
    sections.forEach((section, k) => { section.hidden = k !== number; });
    nav.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.dataset.run === String(number)));
    if (!(number in built)) built[number] = buildRun(DATA.runs[number], sections[number]);
    window.dspxReport.current = built[number];
  }

  // ----- one run --------------------------------------------------------------------------------
  function buildRun(run, section) {
    section.append(el("h2", { text: run.name }));
    const facts = el("dl", { class: "facts" });
    for (const [name, value] of run.facts) facts.append(el("div", {}, el("dt", { text: name }), el("dd", { text: value })));
    section.append(facts);
    for (const note of run.notes) section.append(el("p", { class: "note", text: note }));
    const charts = el("div", { class: "charts" });
    section.append(charts);
    const state = { run, charts: [] };
    if (run.kind === "evaluate") {
      state.charts.push(histogram(charts, "Score distribution", run.examples.map((r) => r.score).filter((s) => s !== null), "score"));
      state.charts.push(histogram(charts, "Latency per example", run.examples.map((r) => r.seconds).filter((s) => s !== null), "seconds"));
      Object.assign(state, exampleTable(run, section));
    } else if (run.kind === "compile") {
      state.charts.push(trialsChart(charts, run));
    } else {
      state.charts.push(lossChart(charts, run));
    }
    return state;
  }

  function chartBox(parent, title) {
    const canvas = el("canvas");
    parent.append(el("figure", { class: "chart" }, el("figcaption", { text: title }), el("div", { class: "canvas" }, canvas)));
    return canvas;
  }

  const CHART_OPTIONS = { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } } };

  function histogram(parent, title, values, unit) {
    const canvas = chartBox(parent, title);
    if (!values.length) return null;
    let lo = Math.min(...values), hi = Math.max(...values);
    const distinct = new Set(values);
    let labels, counts;
    if (distinct.size <= 12) { // a few values (0 and 1, say): a bar each
      labels = [...distinct].sort((a, b) => a - b);
      counts = labels.map((v) => values.filter((x) => x === v).length);
      labels = labels.map((v) => String(+v.toFixed(4)));
    } else {
      const bins = 20, width = (hi - lo) / bins || 1;
      counts = new Array(bins).fill(0);
      for (const v of values) counts[Math.min(bins - 1, Math.floor((v - lo) / width))] += 1;
      labels = counts.map((_, k) => (lo + k * width).toPrecision(3) + "–" + (lo + (k + 1) * width).toPrecision(3));
    }
    return new Chart(canvas, {
      type: "bar",
      data: { labels, datasets: [{ label: "examples", data: counts, backgroundColor: "#4e79a7" }] },
      options: { ...CHART_OPTIONS, scales: { x: { title: { display: true, text: unit } }, y: { beginAtZero: true, title: { display: true, text: "examples" } } } },
    });
  }

  function trialsChart(parent, run) {
    const canvas = chartBox(parent, "Trials: score per trial and best so far");
    if (!run.trials.length) {
      parent.append(el("p", { class: "note", text: "no trials.jsonl: this optimizer keeps no trial log" }));
      return null;
    }
    const x = run.trials.map((t, k) => (t.number === null ? k : t.number));
    return new Chart(canvas, {
      type: "line",
      data: {
        labels: x,
        datasets: [
          { label: "trial score", data: run.trials.map((t) => t.score), showLine: false, pointRadius: 4, borderColor: "#4e79a7", backgroundColor: "#4e79a7" },
          { label: "best so far", data: run.trials.map((t) => t.best), stepped: true, pointRadius: 0, borderColor: "#e15759" },
        ],
      },
      options: { ...CHART_OPTIONS, plugins: { legend: { display: true } }, scales: { x: { title: { display: true, text: "trial" } }, y: { title: { display: true, text: "score" } } } },
    });
  }

  function lossChart(parent, run) {
    const canvas = chartBox(parent, "Training loss per step");
    if (!run.loss.length) return null;
    return new Chart(canvas, {
      type: "line",
      data: { labels: run.loss.map((_, k) => k + 1), datasets: [{ label: "loss", data: run.loss, pointRadius: 0, borderColor: "#4e79a7" }] },
      options: { ...CHART_OPTIONS, scales: { x: { title: { display: true, text: "step" } }, y: { title: { display: true, text: "loss" } } } },
    });
  }

  // ----- the example table ----------------------------------------------------------------------
  function fieldNames(rows, key) {
    const names = new Set();
    for (const row of rows) for (const name of Object.keys(row[key])) names.add(name);
    return [...names];
  }

  function textCell(cell) {
    const value = cell.getValue();
    return document.createTextNode(show(value));
  }

  function exampleTable(run, section) {
    const rows = run.examples.map((r) => {
      const row = { index: r.index, score: r.score, error: r.error, seconds: r.seconds, tokens: r.tokens, cached: r.cached, lm_calls: r.lm_calls, failed: failed(r) };
      for (const [prefix, key] of [["in", "inputs"], ["label", "labels"], ["out", "outputs"]]) {
        for (const [name, value] of Object.entries(r[key])) row[prefix + ":" + name] = show(value);
      }
      row.haystack = [r.error, JSON.stringify(r.inputs), JSON.stringify(r.labels), JSON.stringify(r.outputs)].join("\n").toLowerCase();
      return row;
    });
    const columns = [{ title: "#", field: "index", sorter: "number", width: 60, formatter: textCell }];
    for (const [prefix, key] of [["in", "inputs"], ["label", "labels"], ["out", "outputs"]]) {
      for (const name of fieldNames(run.examples, key).slice(0, 8)) {
        columns.push({ title: prefix + ": " + name, field: prefix + ":" + name, sorter: "string", formatter: textCell, minWidth: 100 });
      }
    }
    columns.push(
      { title: "score", field: "score", sorter: "number", width: 85, hozAlign: "right", formatter: textCell },
      { title: "error", field: "error", sorter: "string", formatter: textCell, minWidth: 100 },
      { title: "latency s", field: "seconds", sorter: "number", width: 110, hozAlign: "right", formatter: (c) => document.createTextNode(c.getValue() === null ? "" : c.getValue().toFixed(3)) },
      { title: "tokens", field: "tokens", sorter: "number", width: 95, hozAlign: "right", formatter: textCell },
      { title: "calls", field: "lm_calls", sorter: "number", width: 80, hozAlign: "right", formatter: textCell },
      { title: "cached", field: "cached", sorter: "boolean", width: 90, formatter: (c) => document.createTextNode(c.getValue() === null ? "" : c.getValue() ? "yes" : "no") },
    );

    const search = el("input", { type: "search", placeholder: "search inputs, labels, outputs, errors", class: "search" });
    const onlyFailed = el("input", { type: "checkbox", class: "only-failed" });
    const count = el("span", { class: "count" });
    section.append(el("div", { class: "toolbar" }, el("label", {}, onlyFailed, " failures only (error or score < 1)"), search, count));
    const holder = el("div", { class: "examples" });
    const detail = el("div", { class: "detail", hidden: "" });
    section.append(holder, detail);

    const table = new Tabulator(holder, {
      data: rows,
      index: "index",
      columns,
      maxHeight: "60vh",
      layout: "fitColumns",
      renderVertical: "virtual",
      selectableRows: 1, // the row whose calls are shown below stays marked
      rowFormatter: (row) => row.getElement().classList.toggle("failed", row.getData().failed),
    });
    function refilter() {
      const needle = search.value.trim().toLowerCase();
      const failures = onlyFailed.checked;
      if (!needle && !failures) table.clearFilter();
      else table.setFilter((row) => (!failures || row.failed) && (!needle || row.haystack.includes(needle)));
    }
    let timer = null;
    search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refilter, 150); });
    onlyFailed.addEventListener("change", refilter);
    table.on("dataFiltered", (filters, shown) => { count.textContent = shown.length + " of " + rows.length + " examples"; });
    table.on("rowClick", (e, row) => showDetail(run, run.examples.find((r) => r.index === row.getData().index), detail));
    table.on("tableBuilt", () => {
      count.textContent = rows.length + " of " + rows.length + " examples";
      window.dspxReport.readyAt = performance.now(); // benchmarks/report_size.py reads it
      window.dspxReport.ready = true;
    });
    return { table, rows, search, onlyFailed, count, detail, refilter };
  }

  // ----- one example's calls ----------------------------------------------------------------------
  function pre(text, cls) {
    return el("pre", { class: cls || "" }, document.createTextNode(text));
  }

  function fieldList(title, fields) {
    const list = el("dl", { class: "fields" });
    for (const [name, value] of Object.entries(fields)) list.append(el("dt", { text: name }), el("dd", {}, pre(show(value))));
    return el("div", {}, el("h4", { text: title }), list);
  }

  function showDetail(run, example, detail) {
    detail.replaceChildren();
    detail.hidden = false;
    detail.append(
      el("h3", { text: "Example " + example.index + (example.score === null ? "" : " · score " + example.score) }),
      el("button", { type: "button", class: "close", text: "close", onclick: () => { detail.hidden = true; } }),
    );
    if (example.error) detail.append(el("h4", { text: "error" }), pre(example.error, "error"));
    detail.append(el("div", { class: "columns" }, fieldList("inputs", example.inputs), fieldList("labels", example.labels), fieldList("outputs", example.outputs || {})));
    const calls = run.calls[String(example.index)] || [];
    if (!calls.length) detail.append(el("p", { class: "note", text: "no LM calls kept for this example" }));
    calls.forEach((call, k) => {
      const head = [call.predictor || "(unnamed)", call.phase === "metric" ? "metric" : null, call.model, call.cached ? "cached" : "fresh",
        call.latency === null ? null : call.latency.toFixed(3) + " s",
        call.prompt_tokens == null ? null : call.prompt_tokens + " + " + call.completion_tokens + " tokens"].filter((x) => x).join(" · ");
      const box = el("details", { class: "call", open: "" }, el("summary", { text: "call " + (k + 1) + ": " + head }));
      for (const [role, number] of call.messages) box.append(el("div", { class: "message " + role }, el("div", { class: "role", text: role }), pre(STRINGS[number])));
      call.outputs.forEach((reply, n) => box.append(el("div", { class: "message reply" }, el("div", { class: "role", text: "reply" + (call.outputs.length > 1 ? " " + (n + 1) : "") }), pre(reply))));
      if (call.error) box.append(pre(call.error, "error"));
      detail.append(box);
    });
    detail.scrollIntoView({ block: "start" });
  }

  select(0);
  if (DATA.runs[0].kind !== "evaluate") window.dspxReport.ready = true;
})();
