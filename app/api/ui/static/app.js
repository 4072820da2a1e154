// The recomb dashboard: a hash-routed page over the JSON API.
//   #/jobs             jobs, refreshed while any is unfinished (#/ too)
//   #/jobs/{id}        one job: live progress (server-sent events), Cancel, error, report with charts, children, lineage
//   #/checkpoints      checkpoints;  #/checkpoints/{id}: a checkpoint and its lineage graph
//   #/reports          reports, each linking to its job; tick two or more and press Compare
//   #/compare/{id,id}  reports side by side: a figures table (values, differences from the first) and their curves
//   #/submit/{kind}    a form generated from the kind's request body in /openapi.json; queues the job and opens it
// Lists take their filters and page from the address (#/jobs?status=running&tag=a&tag=b&limit=50&offset=100), with
// the API's query parameter names, so reload and back/forward keep them.
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

  // The field a FastAPI validation error names: its location without the part of the request ("body", "query").
  const fieldOf = (problem) => (problem.loc || []).slice(1).join(".");

  // A 4xx or 5xx answer: its `detail` as one line per problem (FastAPI lists one per malformed field).
  class ApiError extends Error {
    constructor(status, statusText, detail) {
      const problems =
        typeof detail === "string"
          ? [detail]
          : Array.isArray(detail) && detail.length
            ? detail.map((problem) => `${fieldOf(problem) || "request"}: ${problem.msg}`)
            : [`${status} ${statusText}`];
      super(problems.join("; "));
      this.status = status;
      this.detail = detail;
      this.problems = problems;
    }
  }

  // --- talking to the API ----------------------------------------------------------------------------

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function api(path, { signal, method = "GET", body } = {}) {
    const headers = { Accept: "application/json", ...authHeaders() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(new URL(path, API_BASE), { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
    if (response.status === 401) throw new AuthRequired();
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, response.statusText, answer.detail);
    return answer;
  }

  // The OpenAPI document, read once per page load (not tied to one page's signal: the next page may share the read).
  // The job kinds and their request bodies come from it.
  let openapiDocument = null;
  function openapi() {
    openapiDocument =
      openapiDocument ||
      api("openapi.json").catch((error) => {
        openapiDocument = null; // a failed read (say, a key was missing) is tried again next time
        throw error;
      });
    return openapiDocument;
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

  // --- lists: the address holds their filters and page ------------------------------------------------

  const DEFAULT_PAGE_SIZE = 50;
  const MAX_PAGE_SIZE = 500; // the API's largest `limit`
  const JOB_STATUSES = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"];

  // "#/jobs?status=failed&tag=a" as { path: "/jobs", query: URLSearchParams }.
  function currentAddress() {
    const hash = window.location.hash.replace(/^#/, "") || "/";
    const mark = hash.indexOf("?");
    return { path: mark < 0 ? hash : hash.slice(0, mark), query: new URLSearchParams(mark < 0 ? "" : hash.slice(mark + 1)) };
  }

  function addressOf(path, query) {
    const text = query.toString();
    return `#${path}${text ? `?${text}` : ""}`;
  }

  // `limit` and `offset` from the address; anything the API would refuse falls back to the first page.
  function pageWindow(query) {
    const limit = Number(query.get("limit"));
    const offset = Number(query.get("offset"));
    return {
      limit: Number.isInteger(limit) && limit >= 1 && limit <= MAX_PAGE_SIZE ? limit : DEFAULT_PAGE_SIZE,
      offset: Number.isSafeInteger(offset) && offset > 0 ? offset : 0,
    };
  }

  // The API request for one page of a list: the address's values of the filters this list takes, and its window.
  function listRequest(resource, query, filterNames, fixed = {}) {
    const params = new URLSearchParams(fixed);
    for (const name of filterNames) for (const value of query.getAll(name)) if (value) params.append(name, value);
    const { limit, offset } = pageWindow(query);
    params.set("limit", limit);
    params.set("offset", offset);
    return `${resource}?${params}`;
  }

  // One page of a list, or null when the API refuses a value of the address (say, an experiment with a space):
  // `show` then gets the API's reason, and the page keeps its filters to correct.
  async function listPageOrRefusal(request, signal, show) {
    try {
      return await api(request, { signal });
    } catch (error) {
      if (!(error instanceof ApiError) || (error.status !== 400 && error.status !== 422)) throw error;
      show(h("div", { id: "list-error", class: "error-state", role: "alert" }, `These filters were refused: ${error.message}`));
      return null;
    }
  }

  const hasFilters = (query, filterNames) => filterNames.some((name) => query.getAll(name).some(Boolean));

  // "showing 51–100 of 240" between previous and next links: following one changes the address, so back returns.
  function pager(path, query, page) {
    const to = (offset) => {
      const next = new URLSearchParams(query);
      if (offset > 0) next.set("offset", offset);
      else next.delete("offset");
      return addressOf(path, next);
    };
    const last = page.offset + page.items.length;
    const link = (enabled, className, offset, text) => (enabled ? h("a", { class: className, href: to(offset) }, text) : h("span", { class: `${className} disabled`, "aria-disabled": "true" }, text));
    return h(
      "nav",
      { class: "pager", "aria-label": "pages" },
      link(page.offset > 0, "pager-prev", Math.max(0, page.offset - page.limit), "← previous"),
      h("span", { class: "pager-range" }, page.items.length ? `showing ${page.offset + 1}–${last} of ${page.total}` : `showing 0 of ${page.total}`),
      link(last < page.total, "pager-next", last, "next →"),
    );
  }

  // The filters of a list as a form over the address: applying it starts again from the first page (same page size).
  // A field is { name, label, options?: [[value, text]], list?: datalist id, tags?: true }; `name` is the API's.
  function filterBar(path, query, fields) {
    const controls = fields.map((field) => {
      const id = `filter-${field.name}`;
      const current = field.tags ? query.getAll(field.name).join(", ") : query.get(field.name) || "";
      const control = field.options
        ? h("select", { id, name: field.name, onchange: () => form.requestSubmit() }, field.options.map(([value, text]) => h("option", { value, selected: value === current }, text)))
        : h("input", { id, name: field.name, value: current, list: field.list, placeholder: field.placeholder || "any", autocomplete: "off" });
      return h("label", { class: "filter" }, h("span", {}, field.label), control);
    });
    const form = h(
      "form",
      {
        id: "filters",
        class: "filters",
        onsubmit: (event) => {
          event.preventDefault();
          const next = new URLSearchParams();
          for (const field of fields) {
            const value = form.elements[field.name].value.trim();
            const values = field.tags ? value.split(/[\s,]+/).filter(Boolean) : value ? [value] : [];
            for (const one of values) next.append(field.name, one);
          }
          if (query.has("limit")) next.set("limit", query.get("limit"));
          window.location.hash = addressOf(path, next);
        },
      },
      controls,
      h("button", { type: "submit" }, "Apply"),
      h("a", { class: "filters-clear", href: addressOf(path, new URLSearchParams(query.has("limit") ? { limit: query.get("limit") } : {})) }, "clear"),
    );
    return form;
  }

  const EXPERIMENT_FILTER = { name: "experiment", label: "experiment" };
  const TAG_FILTER = { name: "tag", label: "tags", tags: true, placeholder: "any (a, b: both)" };
  const KIND_FILTER = { name: "kind", label: "kind", list: "job-kinds" };

  // Suggestions for the kind filter: the kinds one can queue (children have kinds of their own, typed by hand).
  function kindSuggestions() {
    const list = h("datalist", { id: "job-kinds" });
    openapi()
      .then((spec) => list.replaceChildren(...publicKinds(spec).map((kind) => h("option", { value: kind }))))
      .catch(() => {}); // suggestions only: the filter works without them
    return list;
  }

  const tagList = (tags) => h("span", { class: "tags" }, tags.map((tag) => h("span", { class: "tag" }, tag)));

  // --- pages -----------------------------------------------------------------------------------------

  const JOB_FILTERS = [EXPERIMENT_FILTER, TAG_FILTER, { name: "status", label: "status", options: [["", "any"], ...JOB_STATUSES.map((status) => [status, status])] }, KIND_FILTER];

  async function jobsPage(path, query, signal) {
    const filterNames = JOB_FILTERS.map((field) => field.name);
    const title = h("h2", {}, "Jobs");
    const listing = h("div", { id: "jobs-list" });
    app.replaceChildren(h("section", { class: "card" }, title, h("p", { class: "actions" }, h("a", { class: "button", href: "#/submit" }, "Submit a job")), filterBar(path, query, JOB_FILTERS), kindSuggestions(), listing));
    const request = listRequest("jobs", query, filterNames);
    // Only the rows are redrawn on refresh, so a filter being typed is not lost.
    const refresh = async () => {
      const page = await listPageOrRefusal(request, signal, (problem) => listing.replaceChildren(problem));
      if (!page) return null;
      const rows = page.items.map((job) =>
        h(
          "tr",
          { class: "job-row", "data-id": job.id, "data-status": job.status },
          h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.id)),
          h("td", {}, job.name || ""),
          h("td", {}, job.kind),
          h("td", {}, statusBadge(job.status)),
          h("td", {}, progressBar(job.progress)),
          h("td", { class: "stage" }, job.stage),
          h("td", { class: "experiment" }, job.experiment),
          h("td", {}, tagList(job.tags)),
          h("td", {}, job.children.length ? `${job.children.length}` : job.parent_job_id ? h("a", { href: `#/jobs/${job.parent_job_id}` }, "child") : ""),
          h("td", {}, when(job.created_at)),
          h("td", {}, duration(job)),
        ),
      );
      title.textContent = `Jobs (${page.total})`;
      const empty = hasFilters(query, filterNames) ? "No jobs match these filters." : page.total ? "No jobs on this page." : "No jobs yet: submit one here, with POST /jobs/{kind} or `recomb submit`.";
      listing.replaceChildren(
        pager(path, query, page),
        page.items.length ? table(["id", "name", "kind", "status", "progress", "stage", "experiment", "tags", "children", "created", "run time"], rows, "jobs-table") : h("p", { class: "empty" }, empty),
      );
      return page.items.some((job) => !TERMINAL.has(job.status));
    };
    // Poll while something on the page is unfinished; a finished page is refreshed slowly (new jobs may arrive).
    for (;;) {
      const unfinished = await refresh();
      if (unfinished === null) return; // refused: asking again gives the same answer
      await new Promise((resolve) => setTimeout(resolve, unfinished ? LIST_REFRESH_MS : LIST_REFRESH_MS * 3));
      if (signal.aborted) return;
    }
  }

  async function jobPage(jobId, query, signal) {
    let job = await api(`jobs/${jobId}`, { signal });
    let cancelRequested = job.cancel_requested;
    let shownStatus = job.status;
    const status = h("span", { id: "job-status" });
    const progress = h("div", { id: "job-progress" });
    const stage = h("span", { id: "job-stage", class: "stage" });
    const children = h("span", { id: "job-children" });
    const errorBox = h("div", { id: "job-error" });
    const reportBox = h("div", { id: "job-report" });
    const outputsBox = h("div", { id: "job-outputs" });
    // The job's record; drawn again once it ends (start and finish times, attempts).
    const factsBox = h("div", { id: "job-facts" });
    const paintFacts = () =>
      factsBox.replaceChildren(
        h(
          "dl",
          { class: "facts" },
          job.name ? [h("dt", {}, "name"), h("dd", { id: "job-name" }, job.name)] : [],
          h("dt", {}, "experiment"), h("dd", { id: "job-experiment" }, h("a", { href: addressOf("/jobs", new URLSearchParams({ experiment: job.experiment })) }, job.experiment)),
          h("dt", {}, "tags"), h("dd", { id: "job-tags" }, job.tags.length ? tagList(job.tags) : "–"),
          h("dt", {}, "created"), h("dd", {}, when(job.created_at)),
          h("dt", {}, "started"), h("dd", {}, when(job.started_at)),
          h("dt", {}, "finished"), h("dd", {}, when(job.finished_at)),
          h("dt", {}, "attempts"), h("dd", {}, job.attempts),
          job.parent_job_id ? [h("dt", {}, "parent job"), h("dd", {}, h("a", { href: `#/jobs/${job.parent_job_id}` }, job.parent_job_id))] : [],
        ),
      );
    const cancelBox = h("span", { id: "job-cancel" });
    const messageBox = h("div", { id: "job-message" });
    const paintCancel = () => {
      const button = cancelRequested
        ? h("button", { type: "button", id: "cancel-button", disabled: true }, "Cancelling…")
        : h("button", { type: "button", id: "cancel-button", class: "danger", onclick: cancel }, "Cancel");
      cancelBox.replaceChildren(...(TERMINAL.has(shownStatus) ? [] : [button]));
    };
    // Not tied to the page's signal: leaving the page must not half-send a cancel. The event stream shows the outcome.
    const cancel = async () => {
      cancelRequested = true;
      paintCancel();
      messageBox.replaceChildren();
      try {
        await api(`jobs/${jobId}/cancel`, { method: "POST" });
      } catch (error) {
        if (error instanceof AuthRequired) return showKeyPrompt();
        cancelRequested = false;
        paintCancel();
        const text = error.status === 409 ? `Not cancelled: ${error.message}.` : `Cancelling failed: ${error.message}`;
        messageBox.replaceChildren(h("div", { class: "error-state", role: "alert" }, text));
      }
    };
    const paint = (snapshot) => {
      shownStatus = snapshot.status;
      paintCancel();
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
          h("div", { class: "job-live" }, status, progress, stage, children, cancelBox),
          messageBox,
          errorBox,
          factsBox,
          h("details", {}, h("summary", {}, "parameters"), h("pre", {}, JSON.stringify(job.params, null, 2))),
        ),
        reportBox,
        outputsBox,
      ),
    );
    paintFacts();
    paint({ ...job, children_total: job.children.length, children_finished: 0 });

    const showResults = async () => {
      job = await api(`jobs/${jobId}`, { signal });
      paintFacts();
      paint({ ...job, children_total: job.children.length, children_finished: job.children.length });
      if (job.report_id) renderReport(reportBox, await api(`reports/${job.report_id}`, { signal }));
      outputsBox.replaceChildren(...(await outputsSection(job, query, signal)));
    };
    if (TERMINAL.has(job.status)) return showResults();
    outputsBox.replaceChildren(...(await outputsSection(job, query, signal)));
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

  // The job page's address pages its children: #/jobs/{id}?offset=50.
  async function outputsSection(job, query, signal) {
    const blocks = [];
    if (job.children.length) {
      const page = await api(listRequest("jobs", query, [], { parent_job_id: job.id }), { signal });
      const rows = page.items.map((child) => h("tr", { class: "job-row", "data-id": child.id, "data-status": child.status }, h("td", {}, h("a", { href: `#/jobs/${child.id}` }, child.id)), h("td", {}, child.kind), h("td", {}, statusBadge(child.status)), h("td", {}, progressBar(child.progress)), h("td", { class: "stage" }, child.stage)));
      blocks.push(section(`Children (${page.total})`, pager(`/jobs/${job.id}`, query, page), table(["id", "kind", "status", "progress", "stage"], rows)));
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

  const CHECKPOINT_FILTERS = [EXPERIMENT_FILTER, TAG_FILTER, { name: "format", label: "format", options: [["", "any"], ["float32", "float32"], ["int8", "int8"]] }];

  async function checkpointsPage(path, query, signal) {
    const filterNames = CHECKPOINT_FILTERS.map((field) => field.name);
    const refused = (problem) => app.replaceChildren(section("Checkpoints", filterBar(path, query, CHECKPOINT_FILTERS), problem));
    const page = await listPageOrRefusal(listRequest("checkpoints", query, filterNames), signal, refused);
    if (!page) return;
    const rows = page.items.map((ckpt) =>
      h(
        "tr",
        { class: "checkpoint-row", "data-id": ckpt.id },
        h("td", {}, h("a", { href: `#/checkpoints/${ckpt.id}` }, ckpt.id)),
        h("td", {}, ckpt.name || ""),
        h("td", { class: "experiment" }, ckpt.experiment),
        h("td", {}, tagList(ckpt.tags)),
        h("td", {}, ckpt.format),
        h("td", {}, archLabel(ckpt.arch)),
        h("td", { class: "num" }, ckpt.size_bytes),
        h("td", {}, ckpt.created_by_job ? h("a", { href: `#/jobs/${ckpt.created_by_job}` }, ckpt.created_by_job) : "upload / synthetic"),
        h("td", {}, when(ckpt.created_at)),
      ),
    );
    const empty = hasFilters(query, filterNames) ? "No checkpoints match these filters." : page.total ? "No checkpoints on this page." : "No checkpoints yet.";
    app.replaceChildren(
      section(
        `Checkpoints (${page.total})`,
        filterBar(path, query, CHECKPOINT_FILTERS),
        pager(path, query, page),
        page.items.length ? table(["id", "name", "experiment", "tags", "format", "arch", "bytes", "created by", "created"], rows) : h("p", { class: "empty" }, empty),
      ),
    );
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

  const REPORT_FILTERS = [EXPERIMENT_FILTER, TAG_FILTER, KIND_FILTER, { name: "passed", label: "verdict", options: [["", "any"], ["true", "passed"], ["false", "failed"]] }];

  async function reportsPage(path, query, signal) {
    const filterNames = REPORT_FILTERS.map((field) => field.name);
    const refused = (problem) => app.replaceChildren(section("Reports", filterBar(path, query, REPORT_FILTERS), kindSuggestions(), problem));
    const page = await listPageOrRefusal(listRequest("reports", query, filterNames), signal, refused);
    if (!page) return;
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
        h("td", { class: "experiment" }, report.experiment),
        h("td", {}, tagList(report.tags)),
        h("td", {}, h("a", { href: `#/jobs/${report.job_id}` }, report.job_id)),
        h("td", {}, when(report.created_at)),
      ),
    );
    const empty = hasFilters(query, filterNames) ? "No reports match these filters." : page.total ? "No reports on this page." : "No reports yet.";
    app.replaceChildren(
      section(
        `Reports (${page.total})`,
        filterBar(path, query, REPORT_FILTERS),
        kindSuggestions(),
        h("p", { class: "actions" }, compare, ` tick 2 to ${MAX_COMPARED} reports on this page to compare them`),
        pager(path, query, page),
        page.items.length ? table(["", "id", "kind", "passed", "experiment", "tags", "job", "created"], rows) : h("p", { class: "empty" }, empty),
      ),
    );
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

  // --- submitting a job: a form generated from the kind's request body in the OpenAPI document -------------

  const SCALAR_TYPES = new Set(["string", "integer", "number", "boolean"]);
  const RECENT_CHECKPOINTS = 50;

  // The kinds one can queue: the POST /jobs/{kind} routes, in the document's order.
  function publicKinds(spec) {
    return Object.entries(spec.paths)
      .filter(([path, item]) => /^\/jobs\/[\w-]+$/.test(path) && item.post && item.post.requestBody)
      .map(([path]) => path.slice("/jobs/".length));
  }

  // A schema with its $ref (or lone allOf) followed; the referring schema's own keys (description, default) win.
  function resolveSchema(spec, schema) {
    const { $ref, allOf, ...own } = schema;
    const target = $ref ? spec.components.schemas[$ref.split("/").pop()] : allOf && allOf.length === 1 ? allOf[0] : null;
    return target ? { ...resolveSchema(spec, target), ...own } : schema;
  }

  // How a field is entered: a scalar (or a scalar or null) in an input, a choice in a select, anything else as JSON.
  function fieldShape(spec, schema) {
    const variants = (schema.anyOf || [schema]).map((variant) => resolveSchema(spec, variant));
    const concrete = variants.filter((variant) => variant.type !== "null");
    const only = concrete.length === 1 ? concrete[0] : null;
    return { type: only && SCALAR_TYPES.has(only.type) ? only.type : "json", choices: only && only.enum, nullable: concrete.length < variants.length };
  }

  class FieldProblem extends Error {}

  function fieldControl(field) {
    const { name, schema, shape } = field;
    const id = `field-${name}`;
    const hasDefault = "default" in schema;
    const shown = hasDefault && schema.default !== null ? schema.default : "";
    if (name === "tags") return h("input", { id, name, value: (schema.default || []).join(", "), placeholder: "comma-separated", autocomplete: "off" });
    if (shape.type === "boolean") return h("input", { type: "checkbox", id, name, checked: schema.default === true });
    if (shape.choices) {
      const blank = !hasDefault || schema.default === null ? h("option", { value: "" }, hasDefault ? "(default: none)" : "choose…") : null;
      return h("select", { id, name }, blank, shape.choices.map((choice) => h("option", { value: choice, selected: choice === schema.default }, choice)));
    }
    if (shape.type === "json") return h("textarea", { id, name, rows: 2, spellcheck: "false", placeholder: "JSON; empty: the default" }, shown === "" ? "" : JSON.stringify(shown));
    const numeric = shape.type === "integer" || shape.type === "number";
    return h("input", {
      id,
      name,
      value: shown,
      inputmode: numeric ? "decimal" : undefined,
      list: field.checkpoint ? "recent-checkpoints" : undefined,
      placeholder: field.required ? "required" : shape.nullable ? "empty: the default; null: none" : "empty: the default",
      autocomplete: "off",
    });
  }

  // A field's value for the request body, or undefined to leave it out (the server's default applies). A number that
  // does not parse is sent as typed: the API's 422 names the field.
  function fieldValue(field, control) {
    const { name, shape } = field;
    if (shape.type === "boolean") return control.checked;
    const text = control.value.trim();
    if (!text) return undefined;
    if (name === "tags") return text.split(/[\s,]+/).filter(Boolean);
    if (shape.nullable && text === "null") return null;
    if (shape.type === "json") {
      try {
        return JSON.parse(text);
      } catch (error) {
        throw new FieldProblem(`${name}: not valid JSON (${error.message})`);
      }
    }
    if (shape.type === "integer" || shape.type === "number") return Number.isFinite(Number(text)) ? Number(text) : text;
    return text;
  }

  async function submitPage(kind, signal) {
    const spec = await openapi();
    const kinds = publicKinds(spec);
    const chooser = h(
      "select",
      { id: "submit-kind", onchange: (event) => (window.location.hash = `#/submit/${event.target.value}`) },
      kind ? null : h("option", { value: "" }, "choose a kind…"),
      kinds.map((name) => h("option", { value: name, selected: name === kind }, name)),
    );
    const header = h("p", { class: "actions" }, h("label", { for: "submit-kind" }, "kind "), chooser);
    if (!kind) {
      const summaries = kinds.map((name) => h("li", {}, h("a", { href: `#/submit/${name}` }, name), " ", resolveSchema(spec, spec.paths[`/jobs/${name}`].post.requestBody.content["application/json"].schema).description || ""));
      app.replaceChildren(section("Submit a job", header, h("ul", { class: "kinds" }, summaries)));
      return;
    }
    if (!kinds.includes(kind)) throw new Error(`no job kind ${kind}: choose one of ${kinds.join(", ")}`);
    const body = resolveSchema(spec, spec.paths[`/jobs/${kind}`].post.requestBody.content["application/json"].schema);
    const required = new Set(body.required || []);
    const fields = Object.entries(body.properties).map(([name, property]) => {
      const schema = resolveSchema(spec, property);
      const checkpoint = name.endsWith("_id") && /checkpoint/i.test(schema.description || "");
      return { name, schema, shape: fieldShape(spec, schema), required: required.has(name), checkpoint };
    });
    const recent = fields.some((field) => field.checkpoint) ? (await api(`checkpoints?limit=${RECENT_CHECKPOINTS}`, { signal })).items : [];
    const checkpointOptions = h("datalist", { id: "recent-checkpoints" }, recent.map((ckpt) => h("option", { value: ckpt.id }, [ckpt.name, archLabel(ckpt.arch), ckpt.format].filter(Boolean).join(" · "))));

    const controls = new Map(fields.map((field) => [field.name, fieldControl(field)]));
    const rows = fields.map((field) =>
      h(
        "div",
        { class: "field", "data-field": field.name },
        h("label", { for: `field-${field.name}` }, field.name, field.required ? h("span", { class: "required", title: "required" }, " *") : null),
        controls.get(field.name),
        h("small", { class: "field-help" }, field.schema.description || ""),
      ),
    );
    const problemsBox = h("div", { id: "submit-error", role: "alert" });
    const button = h("button", { type: "submit", id: "submit-button" }, `Queue ${kind}`);
    const showProblems = (problems, fieldNames = []) => {
      for (const row of rows) row.classList.toggle("field-invalid", fieldNames.includes(row.dataset.field));
      problemsBox.replaceChildren(...(problems.length ? [h("div", { class: "error-state" }, h("strong", {}, "Not queued. "), h("ul", {}, problems.map((problem) => h("li", {}, problem))))] : []));
    };
    const send = async (event) => {
      event.preventDefault();
      showProblems([]);
      const request = {};
      try {
        for (const field of fields) {
          const value = fieldValue(field, controls.get(field.name));
          if (value !== undefined) request[field.name] = value;
        }
      } catch (error) {
        if (!(error instanceof FieldProblem)) throw error;
        return showProblems([error.message], [error.message.split(":")[0]]);
      }
      button.disabled = true;
      try {
        // Not tied to the page's signal: a POST is not taken back by leaving the page.
        const job = await api(`jobs/${kind}`, { method: "POST", body: request });
        window.location.hash = `#/jobs/${job.id}`;
      } catch (error) {
        if (error instanceof AuthRequired) return showKeyPrompt();
        const named = Array.isArray(error.detail) ? error.detail.map((problem) => (problem.loc || [])[1]).filter(Boolean) : []; // top-level fields
        showProblems(error.problems || [error.message], named);
      } finally {
        button.disabled = false;
      }
    };
    app.replaceChildren(
      section(
        `Submit a ${kind} job`,
        header,
        body.description ? h("p", { class: "kind-description" }, body.description) : null,
        h("form", { id: "submit-form", class: "submit-form", novalidate: true, onsubmit: send }, rows, checkpointOptions, problemsBox, h("p", { class: "actions" }, button)),
      ),
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

  // Matched against the address's path (its query holds a page's filters and position).
  const ROUTES = [
    [/^\/?$/, (match, query, signal) => jobsPage("/jobs", query, signal)],
    [/^\/jobs\/?$/, (match, query, signal) => jobsPage("/jobs", query, signal)],
    [/^\/jobs\/([\w-]+)$/, (match, query, signal) => jobPage(match[1], query, signal)],
    [/^\/checkpoints\/?$/, (match, query, signal) => checkpointsPage("/checkpoints", query, signal)],
    [/^\/checkpoints\/([\w-]+)$/, (match, query, signal) => checkpointPage(match[1], signal)],
    [/^\/reports\/?$/, (match, query, signal) => reportsPage("/reports", query, signal)],
    [/^\/compare\/([\w,-]+)$/, (match, query, signal) => comparePage(match[1], signal)],
    [/^\/submit\/?$/, (match, query, signal) => submitPage(null, signal)],
    [/^\/submit\/([\w-]+)$/, (match, query, signal) => submitPage(match[1], signal)],
  ];

  const SECTIONS = [
    ["checkpoints", /^\/checkpoints/],
    ["reports", /^\/(reports|compare)/],
    ["submit", /^\/submit/],
  ];

  function route() {
    pageScope.abort();
    pageScope = new AbortController();
    const { path, query } = currentAddress();
    const current = (SECTIONS.find(([, pattern]) => pattern.test(path)) || ["jobs"])[0];
    for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.section === current);
    for (const [pattern, page] of ROUTES) {
      const match = path.match(pattern);
      if (match) {
        app.replaceChildren(h("p", { class: "loading" }, "Loading…"));
        page(match, query, pageScope.signal).catch(showError);
        return;
      }
    }
    showError(new Error(`no page at ${window.location.hash}`));
  }

  window.addEventListener("hashchange", route);
  window.recomb = { renderReport, route }; // for the browser tests and the console
  route();
})();
