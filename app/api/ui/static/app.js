// The recomb dashboard: a hash-routed page over the JSON API.
//   #/                 jobs, refreshed while any is unfinished
//   #/jobs/{id}        one job: live progress (server-sent events), error, report with charts, outputs' lineage
//   #/checkpoints      checkpoints;  #/checkpoints/{id}: a checkpoint and its lineage graph
//   #/reports          reports, each linking to its job; tick two or more and press Compare
//   #/compare/{id,id}  reports side by side: a figures table (values, differences from the first) and their curves
// With RECOMB_API_KEYS set on the server, the page asks for a key once and keeps it in sessionStorage.
"use strict";

(() => {
  const KEY_STORAGE = "recomb.apiKey";
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const LIST_REFRESH_MS = 2000;
  const API_BASE = new URL(".", window.location.href); // the API serves the page: same origin, same prefix
  const app = document.getElementById("app");
  const Charts = window.RecombCharts;
  let pageScope = new AbortController(); // aborted when the route changes: stops timers and streams

  class AuthRequired extends Error {}

  // --- talking to the API ----------------------------------------------------------------------------

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function api(path, { signal } = {}) {
    const response = await fetch(new URL(path, API_BASE), { headers: { Accept: "application/json", ...authHeaders() }, signal });
    if (response.status === 401) throw new AuthRequired();
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : `${response.status} ${response.statusText}`);
    return body;
  }

  // Server-sent events over fetch (EventSource cannot send the Authorization header).
  async function streamEvents(path, onEvent, signal) {
    const response = await fetch(new URL(path, API_BASE), { headers: { Accept: "text/event-stream", ...authHeaders() }, signal });
    if (response.status === 401) throw new AuthRequired();
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue; // heartbeat comment
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const content = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") name = content;
          if (field === "data") data.push(content);
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  // --- small DOM helpers -----------------------------------------------------------------------------

  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const fmt = (value) => (typeof value === "number" ? Charts.formatNumber(value) : value === null || value === undefined ? "–" : typeof value === "boolean" ? (value ? "yes" : "no") : String(value));

  function when(iso) {
    if (!iso) return "–";
    const date = new Date(iso.endsWith("Z") || iso.includes("+") ? iso : iso + "Z");
    return date.toLocaleString();
  }

  function duration(job) {
    if (!job.started_at) return "–";
    const end = job.finished_at ? new Date(job.finished_at + (job.finished_at.endsWith("Z") ? "" : "Z")) : new Date();
    const seconds = (end - new Date(job.started_at + (job.started_at.endsWith("Z") ? "" : "Z"))) / 1000;
    return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  }

  const statusBadge = (status) => h("span", { class: `status status-${status}` }, status);
  const passBadge = (passed) => h("span", { class: `status ${passed ? "status-succeeded" : "status-failed"}` }, passed ? "passed" : "failed");

  function progressBar(fraction) {
    const percent = Math.round(Math.max(0, Math.min(1, fraction || 0)) * 100);
    return h("div", { class: "progress", role: "progressbar", "aria-valuenow": percent, "aria-valuemin": 0, "aria-valuemax": 100 }, h("div", { class: "progress-fill", style: `width: ${percent}%` }), h("span", { class: "progress-text" }, `${percent}%`));
  }

  function table(headers, rows, className = "") {
    return h("table", { class: className }, h("thead", {}, h("tr", {}, headers.map((header) => h("th", {}, header)))), h("tbody", {}, rows));
  }

  function section(title, ...children) {
    return h("section", { class: "card" }, h("h2", {}, title), ...children);
  }

  function showError(error) {
    if (error instanceof AuthRequired) return showKeyPrompt();
    if (error.name === "AbortError") return;
    app.replaceChildren(h("div", { class: "card error-state" }, h("h2", {}, "Something went wrong"), h("p", {}, error.message)));
  }

  function showKeyPrompt() {
    const stale = sessionStorage.getItem(KEY_STORAGE);
    const input = h("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "off", placeholder: "API key", required: true });
    const form = h(
      "form",
      {
        id: "key-form",
        class: "card key-form",
        onsubmit: (event) => {
          event.preventDefault();
          sessionStorage.setItem(KEY_STORAGE, input.value.trim());
          route();
        },
      },
      h("h2", {}, "API key needed"),
      h("p", {}, stale ? "The server refused the key you gave; enter another." : "This server requires an API key (one of RECOMB_API_KEYS). It is kept for this tab only."),
      input,
      h("button", { type: "submit" }, "Use key"),
    );
    app.replaceChildren(form);
    input.focus();
  }

  // --- pages -----------------------------------------------------------------------------------------

  async function jobsPage(signal) {
    const container = h("div", {});
    app.replaceChildren(container);
    const refresh = async () => {
      const page = await api("jobs?limit=100", { signal });
      const rows = page.items.map((job) =>
        h(
          "tr",
          { class: "job-row", "data-id": job.id, "data-status": job.status },
          h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.id)),
          h("td", {}, job.kind),
          h("td", {}, statusBadge(job.status)),
          h("td", {}, progressBar(job.progress)),
          h("td", { class: "stage" }, job.stage),
          h("td", {}, job.children.length ? `${job.children.length}` : job.parent_job_id ? h("a", { href: `#/jobs/${job.parent_job_id}` }, "child") : ""),
          h("td", {}, when(job.created_at)),
          h("td", {}, duration(job)),
        ),
      );
      container.replaceChildren(
        section(
          `Jobs (${page.total})`,
          page.items.length ? table(["id", "kind", "status", "progress", "stage", "children", "created", "run time"], rows, "jobs-table") : h("p", { class: "empty" }, "No jobs yet: queue one with POST /jobs/{kind} or `recomb submit`."),
        ),
      );
      return page.items.some((job) => !TERMINAL.has(job.status));
    };
    // Poll while something is unfinished; a finished list stays put until the page is reopened.
    for (;;) {
      const unfinished = await refresh();
      await new Promise((resolve) => setTimeout(resolve, unfinished ? LIST_REFRESH_MS : LIST_REFRESH_MS * 3));
      if (signal.aborted) return;
    }
  }

  async function jobPage(jobId, signal) {
    let job = await api(`jobs/${jobId}`, { signal });
    const status = h("span", { id: "job-status" });
    const progress = h("div", { id: "job-progress" });
    const stage = h("span", { id: "job-stage", class: "stage" });
    const children = h("span", { id: "job-children" });
    const errorBox = h("div", { id: "job-error" });
    const reportBox = h("div", { id: "job-report" });
    const outputsBox = h("div", { id: "job-outputs" });
    const paint = (snapshot) => {
      status.replaceChildren(statusBadge(snapshot.status));
      progress.replaceChildren(progressBar(snapshot.progress));
      stage.textContent = snapshot.stage;
      children.textContent = snapshot.children_total ? `${snapshot.children_finished}/${snapshot.children_total} ${snapshot.kind === "search" ? "trials" : "children"} finished` : "";
      errorBox.replaceChildren(
        ...(snapshot.status === "failed"
          ? [h("div", { class: "error-state", role: "alert" }, h("strong", {}, "This job failed. "), snapshot.error || "No error message was recorded.")]
          : snapshot.status === "cancelled"
            ? [h("div", { class: "notice" }, "This job was cancelled.")]
            : []),
      );
    };
    app.replaceChildren(
      h(
        "div",
        { class: "job-page" },
        h(
          "section",
          { class: "card" },
          h("h1", {}, `${job.kind} `, h("code", {}, job.id)),
          h("div", { class: "job-live" }, status, progress, stage, children),
          errorBox,
          h(
            "dl",
            { class: "facts" },
            h("dt", {}, "created"), h("dd", {}, when(job.created_at)),
            h("dt", {}, "started"), h("dd", {}, when(job.started_at)),
            h("dt", {}, "finished"), h("dd", {}, when(job.finished_at)),
            h("dt", {}, "attempts"), h("dd", {}, job.attempts),
            job.parent_job_id ? [h("dt", {}, "parent job"), h("dd", {}, h("a", { href: `#/jobs/${job.parent_job_id}` }, job.parent_job_id))] : [],
          ),
          h("details", {}, h("summary", {}, "parameters"), h("pre", {}, JSON.stringify(job.params, null, 2))),
        ),
        reportBox,
        outputsBox,
      ),
    );
    paint({ ...job, children_total: job.children.length, children_finished: 0 });

    const showResults = async () => {
      job = await api(`jobs/${jobId}`, { signal });
      paint({ ...job, children_total: job.children.length, children_finished: job.children.length });
      if (job.report_id) renderReport(reportBox, await api(`reports/${job.report_id}`, { signal }));
      outputsBox.replaceChildren(...(await outputsSection(job, signal)));
    };
    if (TERMINAL.has(job.status)) return showResults();
    outputsBox.replaceChildren(...(await outputsSection(job, signal)));
    let finished = false;
    await streamEvents(
      `jobs/${jobId}/events`,
      (name, snapshot) => {
        if (name !== "job") return;
        paint(snapshot);
        finished = TERMINAL.has(snapshot.status);
      },
      signal,
    );
    if (finished && !signal.aborted) await showResults();
  }

  const INPUT_FIELDS = ["child_id", "student_id", "quant_id", "checkpoint_id"];

  async function outputsSection(job, signal) {
    const blocks = [];
    if (job.children.length) {
      const page = await api(`jobs?parent_job_id=${job.id}&limit=500`, { signal });
      const rows = page.items.map((child) => h("tr", { class: "job-row" }, h("td", {}, h("a", { href: `#/jobs/${child.id}` }, child.id)), h("td", {}, child.kind), h("td", {}, statusBadge(child.status)), h("td", {}, progressBar(child.progress)), h("td", { class: "stage" }, child.stage)));
      blocks.push(section(`Children (${page.total})`, table(["id", "kind", "status", "progress", "stage"], rows)));
    }
    if (job.output_checkpoint_ids.length) {
      const links = job.output_checkpoint_ids.map((id) => h("li", {}, h("a", { href: `#/checkpoints/${id}` }, id)));
      const lineage = await api(`checkpoints/${job.output_checkpoint_ids[0]}/lineage`, { signal });
      blocks.push(section("Outputs and lineage", h("ul", {}, links), lineageView(lineage)));
    } else {
      // A validation makes no checkpoint: show the lineage of the one it judged.
      const judged = INPUT_FIELDS.map((field) => job.params[field]).find(Boolean);
      if (judged) blocks.push(section(`Lineage of ${judged}`, lineageView(await api(`checkpoints/${judged}/lineage`, { signal }))));
    }
    return blocks;
  }

  function lineageView(lineage) {
    return h("div", { class: "graph-scroll" }, Charts.lineageGraph(lineage, { onNodeClick: (id) => (window.location.hash = `#/checkpoints/${id}`) }));
  }

  async function checkpointsPage(signal) {
    const page = await api("checkpoints?limit=200", { signal });
    const rows = page.items.map((ckpt) =>
      h(
        "tr",
        {},
        h("td", {}, h("a", { href: `#/checkpoints/${ckpt.id}` }, ckpt.id)),
        h("td", {}, ckpt.name || ""),
        h("td", {}, ckpt.format),
        h("td", {}, archLabel(ckpt.arch)),
        h("td", { class: "num" }, ckpt.size_bytes),
        h("td", {}, ckpt.created_by_job ? h("a", { href: `#/jobs/${ckpt.created_by_job}` }, ckpt.created_by_job) : "upload / synthetic"),
        h("td", {}, when(ckpt.created_at)),
      ),
    );
    app.replaceChildren(section(`Checkpoints (${page.total})`, table(["id", "name", "format", "arch", "bytes", "created by", "created"], rows)));
  }

  async function checkpointPage(checkpointId, signal) {
    const [ckpt, lineage] = await Promise.all([api(`checkpoints/${checkpointId}`, { signal }), api(`checkpoints/${checkpointId}/lineage`, { signal })]);
    const download = h("button", { type: "button", onclick: () => downloadCheckpoint(ckpt, "file", "safetensors") }, "download safetensors");
    const exports = ["onnx", "pt"].map((format) =>
      h("button", { type: "button", class: `export-${format}`, onclick: () => downloadCheckpoint(ckpt, `export?format=${format}`, format) }, `export ${format}`),
    );
    app.replaceChildren(
      section(
        ckpt.name || ckpt.id,
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "id"), h("dd", {}, h("code", {}, ckpt.id)),
          h("dt", {}, "format"), h("dd", {}, `${ckpt.format} (${ckpt.dtype} weights)`),
          h("dt", {}, "arch"), h("dd", {}, `${archLabel(ckpt.arch)}, dropout ${ckpt.arch.dropout_rate}`),
          h("dt", {}, "source format"), h("dd", {}, ckpt.source_format),
          h("dt", {}, "size"), h("dd", {}, `${ckpt.size_bytes} bytes file, ${ckpt.param_bytes} bytes of parameters`),
          h("dt", {}, "sha256"), h("dd", {}, h("code", {}, ckpt.sha256)),
          h("dt", {}, "created by"), h("dd", {}, ckpt.created_by_job ? h("a", { href: `#/jobs/${ckpt.created_by_job}` }, ckpt.created_by_job) : "upload / synthetic"),
        ),
        h("p", { class: "actions" }, download, ...exports),
      ),
      section(`Lineage (${lineage.nodes.length} checkpoints, ${lineage.edges.length} edges)`, lineage.edges.length ? null : h("p", { class: "empty" }, "No ancestors: uploaded or synthetic."), lineageView(lineage)),
    );
  }

  async function downloadCheckpoint(ckpt, path, suffix) {
    const response = await fetch(new URL(`checkpoints/${ckpt.id}/${path}`, API_BASE), { headers: authHeaders() });
    if (!response.ok) return showError(new Error(`download failed: ${response.status}`));
    const link = h("a", { href: URL.createObjectURL(await response.blob()), download: `${ckpt.id}.${suffix}` });
    link.click();
    URL.revokeObjectURL(link.href);
  }

  const MAX_COMPARED = 20; // GET /reports/compare takes 2 to 20 ids

  async function reportsPage(signal) {
    const page = await api("reports?limit=200", { signal });
    const selected = new Set();
    const compare = h("button", { type: "button", id: "compare-button", disabled: true, onclick: () => (window.location.hash = `#/compare/${[...selected].join(",")}`) }, "Compare");
    const onToggle = (event) => {
      const id = event.target.dataset.id;
      if (event.target.checked) selected.add(id);
      else selected.delete(id);
      compare.disabled = selected.size < 2 || selected.size > MAX_COMPARED;
      compare.textContent = selected.size ? `Compare ${selected.size}` : "Compare";
    };
    const rows = page.items.map((report) =>
      h(
        "tr",
        { class: "report-row", "data-id": report.id },
        h("td", {}, h("input", { type: "checkbox", class: "compare-select", "data-id": report.id, "aria-label": `select ${report.id}`, onchange: onToggle })),
        h("td", {}, h("a", { href: `#/jobs/${report.job_id}` }, report.id)),
        h("td", {}, report.kind),
        h("td", {}, passBadge(report.passed)),
        h("td", {}, report.experiment),
        h("td", {}, report.tags.join(", ")),
        h("td", {}, h("a", { href: `#/jobs/${report.job_id}` }, report.job_id)),
        h("td", {}, when(report.created_at)),
      ),
    );
    app.replaceChildren(section(`Reports (${page.total})`, h("p", { class: "actions" }, compare, ` tick 2 to ${MAX_COMPARED} reports to compare them`), table(["", "id", "kind", "passed", "experiment", "tags", "job", "created"], rows)));
  }

  // The figures of several reports side by side, and each per-epoch curve overlaid across them.
  async function comparePage(ids, signal) {
    const comparison = await api(`reports/compare?ids=${encodeURIComponent(ids)}`, { signal });
    const reports = comparison.reports;
    const header = ["figure", ...reports.map((report) => `${report.id} (${report.kind})`), ...reports.slice(1).map((report) => `Δ ${report.id}`)];
    const rows = comparison.figures.map((figure) =>
      h(
        "tr",
        { class: "compare-row", "data-figure": figure.name },
        h("td", {}, figure.name),
        figure.values.map((value, index) => h("td", { class: "num compare-value", "data-report": reports[index].id }, fmt(value))),
        figure.differences.slice(1).map((difference, index) => h("td", { class: "num compare-diff", "data-report": reports[index + 1].id }, fmt(difference))),
      ),
    );
    const curveNames = [...new Set(reports.flatMap((report) => report.curves.flatMap((epoch) => Object.keys(epoch))))].filter((name) => name !== "epoch");
    const charts = curveNames
      .map((name) => ({ name, series: reports.filter((report) => report.curves.length).map((report) => ({ name: report.id, points: report.curves.map((epoch) => [epoch.epoch, epoch[name]]) })) }))
      .filter(({ series }) => series.some((line) => line.points.some(([, y]) => Number.isFinite(y))))
      .map(({ name, series }) => Charts.lineChart({ title: `${name} per epoch`, series, yLabel: name }));
    const links = reports.map((report) => h("li", {}, h("a", { href: `#/jobs/${report.job_id}` }, report.id), ` ${report.kind} `, passBadge(report.passed)));
    app.replaceChildren(
      section(`Comparing ${reports.length} reports`, h("ul", {}, links), table(header, rows, "compare-table")),
      charts.length ? section("Curves", h("div", { class: "charts compare-charts" }, charts)) : null,
    );
  }

  // --- reports ---------------------------------------------------------------------------------------

  // The charts a report's typed fields call for (see app/contracts/report_models.py): the same field has the same name in every kind.
  function reportCharts(body) {
    const charts = [];
    const epochs = body.curves;
    if (Array.isArray(epochs) && epochs.length) {
      const series = (key, name) => ({ name, points: epochs.map((epoch) => [epoch.epoch, epoch[key]]) });
      charts.push(Charts.lineChart({ title: "Loss per epoch", series: [series("train_loss", "train loss"), series("val_loss", "validation loss")], yLabel: "loss" }));
      charts.push(Charts.lineChart({ title: "Agreement per epoch", series: [series("action_agreement", "action agreement"), series("prob_similarity", "probability similarity")], yDomain: [0, 1], yLabel: "fraction" }));
    }
    if (body.latency) {
      const { float, quantized } = body.latency;
      charts.push(
        Charts.groupedBarChart({
          title: "Single-state latency, float vs int8",
          unit: "ms",
          series: [{ name: "float32", color: "#2563eb" }, { name: "int8", color: "#ea580c" }],
          groups: [
            { label: "median", values: { float32: float.median_ms, int8: quantized.median_ms } },
            { label: "p95", values: { float32: float.p95_ms, int8: quantized.p95_ms } },
          ],
        }),
      );
    }
    if (body.size) {
      const size = body.size;
      charts.push(
        Charts.groupedBarChart({
          title: `Size, float vs int8 (×${fmt(size.param_compression_ratio)} parameters)`,
          unit: "bytes",
          series: [{ name: "float32", color: "#2563eb" }, { name: "int8", color: "#ea580c" }],
          groups: [
            { label: "parameters", values: { float32: size.float_param_bytes, int8: size.quantized_param_bytes } },
            { label: "file", values: { float32: size.float_file_bytes, int8: size.quantized_file_bytes } },
          ],
        }),
      );
    }
    const heldOut = body.held_out;
    if (heldOut && heldOut.child_vs_parent_a_agreement !== undefined) {
      const items = [
        { label: "child vs parent A", value: heldOut.child_vs_parent_a_agreement, color: "#ea580c" },
        { label: "child vs parent B", value: heldOut.child_vs_parent_b_agreement, color: "#16a34a" },
        { label: "primary (min of A, B)", value: heldOut.primary_metric, color: "#2563eb" },
        { label: "oracle (A or B)", value: heldOut.oracle_agreement, color: "#9333ea" },
        { label: "parent A vs parent B", value: heldOut.parents_agreement, color: "#9ca3af" },
        { label: `bound for ${heldOut.target === "both" ? "(1 + AB) / 2" : "one parent"}`, value: heldOut.bound, color: "#0f766e" },
      ];
      // Crossover's first look has the agreements only; validate-recombination adds the oracle, the parents and the bound.
      charts.push(Charts.horizontalBarChart({ title: "Action agreement, child vs parents", items: items.filter((item) => item.value !== undefined) }));
    }
    if (Array.isArray(body.leaderboard) && body.leaderboard.length) charts.push(Charts.leaderboardChart(body.leaderboard));
    if (window.RecombFamily) charts.push(...window.RecombFamily.reportCharts(body, { onMemberClick: (id) => (window.location.hash = `#/checkpoints/${id}`) }));
    return charts;
  }

  function renderReport(container, report) {
    const body = report.body;
    const checks = Object.entries(body.checks || {});
    const figures = body.figures.map((figure) => [figure.name, figure.value]);
    const charts = reportCharts(body);
    container.replaceChildren(
      h(
        "section",
        { class: "card report", "data-kind": report.kind },
        h("h2", {}, "Report ", h("code", {}, report.id), " ", passBadge(report.passed)),
        charts.length ? h("div", { class: "charts" }, charts) : null,
        checks.length
          ? table(
              ["check", "value", "threshold", "result"],
              checks.map(([name, check]) => h("tr", { class: check.passed ? "" : "check-failed" }, h("td", {}, name), h("td", { class: "num" }, fmt(check.value)), h("td", { class: "num" }, fmt(check.threshold)), h("td", {}, check.passed ? "pass" : "FAIL", check.gates === false ? " (informational)" : ""))),
              "checks",
            )
          : null,
        figures.length ? table(["figure", "value"], figures.map(([name, value]) => h("tr", {}, h("td", {}, name), h("td", { class: "num" }, fmt(value)))), "figures") : null,
        h("details", {}, h("summary", {}, "full report (JSON)"), h("pre", {}, JSON.stringify(body, null, 2))),
      ),
    );
  }

  // --- routing ---------------------------------------------------------------------------------------

  const ROUTES = [
    [/^#?\/?$/, (match, signal) => jobsPage(signal)],
    [/^#\/jobs\/?$/, (match, signal) => jobsPage(signal)],
    [/^#\/jobs\/([\w-]+)$/, (match, signal) => jobPage(match[1], signal)],
    [/^#\/checkpoints\/?$/, (match, signal) => checkpointsPage(signal)],
    [/^#\/checkpoints\/([\w-]+)$/, (match, signal) => checkpointPage(match[1], signal)],
    [/^#\/reports\/?$/, (match, signal) => reportsPage(signal)],
    [/^#\/compare\/([\w,-]+)$/, (match, signal) => comparePage(match[1], signal)],
  ];

  function route() {
    pageScope.abort();
    pageScope = new AbortController();
    const hash = window.location.hash;
    const current = hash.startsWith("#/checkpoints") ? "checkpoints" : hash.startsWith("#/reports") || hash.startsWith("#/compare") ? "reports" : "jobs";
    for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.section === current);
    for (const [pattern, page] of ROUTES) {
      const match = hash.match(pattern);
      if (match) {
        app.replaceChildren(h("p", { class: "loading" }, "Loading…"));
        page(match, pageScope.signal).catch(showError);
        return;
      }
    }
    showError(new Error(`no page at ${hash}`));
  }

  window.addEventListener("hashchange", route);
  window.recomb = { renderReport, route }; // for the browser tests and the console
  route();
})();
