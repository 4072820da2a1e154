// Charts drawn as inline SVG, with no library: line charts (training curves),
// grouped and horizontal bar charts (latency, size, agreement), the search
// leaderboard, and a layered lineage graph. Each function returns an <svg>
// element; the class names (chart-line, chart-bar, leaderboard-bar,
// lineage-node, lineage-edge) are what the page styles and tests count.
"use strict";

// "8-64-64-4 layernorm relu" from a checkpoint's arch record (older records say hidden_size).
function archLabel(arch) {
  const widths = arch.hidden_sizes || [arch.hidden_size, arch.hidden_size];
  return `${[arch.input_dim, ...widths, arch.output_dim].join("-")} ${arch.norm || "layernorm"} ${arch.activation || "relu"}`;
}

const RecombCharts = (() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0891b2", "#be123c"];

  function el(tag, attrs = {}, children = []) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value !== undefined && value !== null) node.setAttribute(name, String(value));
    }
    for (const child of children) node.append(child);
    return node;
  }

  function text(x, y, content, attrs = {}) {
    const node = el("text", { x, y, ...attrs });
    node.textContent = content;
    return node;
  }

  function titled(node, tooltip) {
    node.append(el("title", {}, [tooltip]));
    return node;
  }

  function formatNumber(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const magnitude = Math.abs(value);
    if (magnitude !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) return value.toExponential(2);
    return Number(value.toPrecision(4)).toString();
  }

  // About `count` round tick values spanning [min, max].
  function niceTicks(min, max, count = 5) {
    if (!(max > min)) {
      max = min + (min === 0 ? 1 : Math.abs(min));
    }
    const raw = (max - min) / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((factor) => factor * power).find((candidate) => candidate >= raw);
    const ticks = [];
    for (let tick = Math.floor(min / step) * step; tick <= max + step * 1e-9; tick += step) {
      ticks.push(Number(tick.toPrecision(12)));
    }
    if (ticks[ticks.length - 1] < max) ticks.push(ticks[ticks.length - 1] + step);
    return ticks;
  }

  function frame(width, height, title, className) {
    const svg = el("svg", {
      class: `chart ${className}`,
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": title,
    });
    svg.append(text(width / 2, 18, title, { class: "chart-title", "text-anchor": "middle" }));
    return svg;
  }

  function legend(svg, entries, x, y) {
    let offset = x;
    for (const entry of entries) {
      const group = el("g", { class: "chart-legend" });
      group.append(el("rect", { x: offset, y: y - 9, width: 12, height: 12, rx: 2, fill: entry.color, class: entry.dashed ? "legend-dashed" : null }));
      group.append(text(offset + 17, y + 1, entry.name));
      svg.append(group);
      offset += 30 + entry.name.length * 6.6;
    }
  }

  // series: [{name, points: [[x, y], ...]}]; yDomain optional [min, max].
  function lineChart({ title, series, xLabel = "epoch", yLabel = "", yDomain = null, width = 460, height = 260 }) {
    const margin = { top: 34, right: 16, bottom: 58, left: 54 };
    const svg = frame(width, height, title, "line-chart");
    const all = series.flatMap((line) => line.points).filter(([, y]) => Number.isFinite(y));
    if (all.length === 0) {
      svg.append(text(width / 2, height / 2, "no data", { "text-anchor": "middle", class: "chart-empty" }));
      return svg;
    }
    const xs = all.map(([x]) => x);
    const ys = all.map(([, y]) => y);
    const xTicks = niceTicks(Math.min(...xs), Math.max(...xs), Math.min(6, Math.max(1, new Set(xs).size - 1)));
    const yTicks = yDomain ? niceTicks(yDomain[0], yDomain[1], 5) : niceTicks(Math.min(0, ...ys), Math.max(...ys), 5);
    const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
    const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
    const plotWidth = width - margin.left - margin.right;
    const plotHeight = height - margin.top - margin.bottom;
    const sx = (x) => margin.left + ((x - x0) / (x1 - x0 || 1)) * plotWidth;
    const sy = (y) => margin.top + plotHeight - ((y - y0) / (y1 - y0 || 1)) * plotHeight;

    for (const tick of yTicks) {
      svg.append(el("line", { x1: margin.left, x2: width - margin.right, y1: sy(tick), y2: sy(tick), class: "chart-grid" }));
      svg.append(text(margin.left - 6, sy(tick) + 4, formatNumber(tick), { "text-anchor": "end", class: "chart-tick" }));
    }
    for (const tick of xTicks) {
      svg.append(el("line", { x1: sx(tick), x2: sx(tick), y1: margin.top + plotHeight, y2: margin.top + plotHeight + 4, class: "chart-axis" }));
      svg.append(text(sx(tick), margin.top + plotHeight + 16, formatNumber(tick), { "text-anchor": "middle", class: "chart-tick" }));
    }
    svg.append(el("line", { x1: margin.left, x2: width - margin.right, y1: margin.top + plotHeight, y2: margin.top + plotHeight, class: "chart-axis" }));
    svg.append(text(margin.left + plotWidth / 2, margin.top + plotHeight + 32, xLabel, { "text-anchor": "middle", class: "chart-label" }));
    if (yLabel) {
      svg.append(text(14, margin.top + plotHeight / 2, yLabel, { "text-anchor": "middle", class: "chart-label", transform: `rotate(-90 14 ${margin.top + plotHeight / 2})` }));
    }

    series.forEach((line, index) => {
      const color = line.color || PALETTE[index % PALETTE.length];
      const points = line.points.filter(([, y]) => Number.isFinite(y));
      if (points.length === 0) return;
      const path = points.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
      svg.append(el("path", { d: path, class: "chart-line", stroke: color, "data-series": line.name }));
      for (const [x, y] of points) {
        svg.append(titled(el("circle", { cx: sx(x), cy: sy(y), r: 3, fill: color, class: "chart-point" }), `${line.name} @ ${xLabel} ${x}: ${formatNumber(y)}`));
      }
    });
    legend(svg, series.map((line, index) => ({ name: line.name, color: line.color || PALETTE[index % PALETTE.length] })), margin.left, height - 10);
    return svg;
  }

  // groups: [{label, values: {seriesName: number}}]; series: [{name, color}].
  function groupedBarChart({ title, groups, series, unit = "", width = 460, height = 260 }) {
    const margin = { top: 34, right: 16, bottom: 56, left: 62 };
    const svg = frame(width, height, title, "bar-chart");
    const values = groups.flatMap((group) => series.map((entry) => group.values[entry.name])).filter(Number.isFinite);
    const ticks = niceTicks(0, Math.max(...values, 0), 5);
    const top = ticks[ticks.length - 1];
    const plotWidth = width - margin.left - margin.right;
    const plotHeight = height - margin.top - margin.bottom;
    const sy = (y) => margin.top + plotHeight - (y / (top || 1)) * plotHeight;
    for (const tick of ticks) {
      svg.append(el("line", { x1: margin.left, x2: width - margin.right, y1: sy(tick), y2: sy(tick), class: "chart-grid" }));
      svg.append(text(margin.left - 6, sy(tick) + 4, formatNumber(tick), { "text-anchor": "end", class: "chart-tick" }));
    }
    if (unit) {
      svg.append(text(14, margin.top + plotHeight / 2, unit, { "text-anchor": "middle", class: "chart-label", transform: `rotate(-90 14 ${margin.top + plotHeight / 2})` }));
    }
    const groupWidth = plotWidth / Math.max(groups.length, 1);
    const barWidth = Math.min(46, (groupWidth * 0.7) / series.length);
    groups.forEach((group, groupIndex) => {
      const start = margin.left + groupIndex * groupWidth + (groupWidth - barWidth * series.length) / 2;
      series.forEach((entry, seriesIndex) => {
        const value = group.values[entry.name];
        if (!Number.isFinite(value)) return;
        const x = start + seriesIndex * barWidth;
        const bar = el("rect", { x: x + 2, y: sy(value), width: barWidth - 4, height: Math.max(0, sy(0) - sy(value)), fill: entry.color, class: "chart-bar", "data-series": entry.name });
        svg.append(titled(bar, `${group.label}, ${entry.name}: ${formatNumber(value)} ${unit}`));
        svg.append(text(x + barWidth / 2, sy(value) - 4, Number(value.toPrecision(3)).toString(), { "text-anchor": "middle", class: "chart-value" }));
      });
      svg.append(text(margin.left + (groupIndex + 0.5) * groupWidth, margin.top + plotHeight + 16, group.label, { "text-anchor": "middle", class: "chart-label" }));
    });
    svg.append(el("line", { x1: margin.left, x2: width - margin.right, y1: sy(0), y2: sy(0), class: "chart-axis" }));
    legend(svg, series, margin.left, height - 10);
    return svg;
  }

  // items: [{label, value, color?, note?}] on a 0..max axis (default 0..1), one horizontal bar each.
  function horizontalBarChart({ title, items, max = 1, width = 460, labelWidth = 170 }) {
    const rowHeight = 26;
    const margin = { top: 34, right: 56, bottom: 26, left: labelWidth };
    const height = margin.top + margin.bottom + rowHeight * items.length;
    const svg = frame(width, height, title, "hbar-chart");
    const plotWidth = width - margin.left - margin.right;
    const sx = (value) => margin.left + (Math.max(0, value) / max) * plotWidth;
    for (const tick of niceTicks(0, max, 4)) {
      if (tick > max) continue;
      svg.append(el("line", { x1: sx(tick), x2: sx(tick), y1: margin.top - 4, y2: height - margin.bottom, class: "chart-grid" }));
      svg.append(text(sx(tick), height - margin.bottom + 14, formatNumber(tick), { "text-anchor": "middle", class: "chart-tick" }));
    }
    items.forEach((item, index) => {
      const y = margin.top + index * rowHeight;
      svg.append(text(margin.left - 8, y + rowHeight / 2 + 4, item.label, { "text-anchor": "end", class: "chart-label" }));
      if (!Number.isFinite(item.value)) {
        svg.append(text(margin.left + 4, y + rowHeight / 2 + 4, "n/a", { class: "chart-value" }));
        return;
      }
      const bar = el("rect", { x: margin.left, y: y + 4, width: Math.max(1, sx(item.value) - margin.left), height: rowHeight - 8, rx: 2, fill: item.color || PALETTE[0], class: "chart-bar" });
      svg.append(titled(bar, `${item.label}: ${formatNumber(item.value)}${item.note ? " — " + item.note : ""}`));
      svg.append(text(sx(item.value) + 5, y + rowHeight / 2 + 4, formatNumber(item.value), { class: "chart-value" }));
    });
    return svg;
  }

  // rows: search leaderboard rows ({rank, trial_id, primary_metric, child_vs_parent_{a,b}_agreement,
  // is_parent_baseline, degenerate}). One bar per row (primary metric), with ticks for A and B agreement.
  function leaderboardChart(rows, { width = 760, maxRows = 40 } = {}) {
    const shown = [...rows].sort((a, b) => (a.rank ?? 0) - (b.rank ?? 0)).slice(0, maxRows);
    const rowHeight = 24;
    const margin = { top: 34, right: 60, bottom: 52, left: 270 };
    const height = margin.top + margin.bottom + rowHeight * shown.length;
    const title = rows.length > shown.length ? `Leaderboard (top ${shown.length} of ${rows.length})` : "Leaderboard";
    const svg = frame(width, height, title, "leaderboard-chart");
    const plotWidth = width - margin.left - margin.right;
    const sx = (value) => margin.left + Math.max(0, Math.min(1, value)) * plotWidth;
    for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
      svg.append(el("line", { x1: sx(tick), x2: sx(tick), y1: margin.top - 4, y2: height - margin.bottom, class: "chart-grid" }));
      svg.append(text(sx(tick), height - margin.bottom + 14, formatNumber(tick), { "text-anchor": "middle", class: "chart-tick" }));
    }
    shown.forEach((row, index) => {
      const y = margin.top + index * rowHeight;
      const kind = row.is_parent_baseline ? "baseline" : row.degenerate ? "degenerate" : "child";
      const group = el("g", { class: `leaderboard-row leaderboard-${kind}`, "data-trial": row.trial_id });
      group.append(text(margin.left - 8, y + rowHeight / 2 + 4, `#${row.rank}  ${truncate(String(row.trial_id), 34)}${row.is_parent_baseline ? " (parent)" : ""}`, { "text-anchor": "end", class: "chart-label" }));
      const primary = Number(row.primary_metric);
      const bar = el("rect", { x: margin.left, y: y + 4, width: Math.max(1, sx(primary) - margin.left), height: rowHeight - 8, rx: 2, class: `chart-bar leaderboard-bar leaderboard-bar-${kind}` });
      group.append(titled(bar, `#${row.rank} ${row.trial_id}: primary ${formatNumber(primary)}, A ${formatNumber(row.child_vs_parent_a_agreement)}, B ${formatNumber(row.child_vs_parent_b_agreement)}${row.degenerate ? " (degenerate)" : ""}`));
      for (const [key, marker] of [["child_vs_parent_a_agreement", "A"], ["child_vs_parent_b_agreement", "B"]]) {
        const value = Number(row[key]);
        if (!Number.isFinite(value)) continue;
        group.append(el("line", { x1: sx(value), x2: sx(value), y1: y + 2, y2: y + rowHeight - 2, class: `leaderboard-marker leaderboard-marker-${marker}` }));
      }
      group.append(text(sx(Math.max(primary, row.child_vs_parent_a_agreement ?? 0, row.child_vs_parent_b_agreement ?? 0)) + 6, y + rowHeight / 2 + 4, formatNumber(primary), { class: "chart-value" }));
      svg.append(group);
    });
    legend(
      svg,
      [
        { name: "primary metric (child)", color: "#2563eb" },
        { name: "parent baseline", color: "#9ca3af" },
        { name: "degenerate", color: "#dc2626" },
        { name: "| agreement with A", color: "#ea580c" },
        { name: "| agreement with B", color: "#16a34a" },
      ],
      16,
      height - 12,
    );
    return svg;
  }

  // Layered layout: the root on the right, each ancestor one column left of its furthest child.
  // An edge spanning several columns passes through a virtual node in each column it crosses,
  // so it gets a row of its own instead of running behind the checkpoints in between.
  // edges: [{parent, child}]; returns the column (depth) and row (position) of every node and
  // each edge's chain of node ids from parent to child.
  function lineageLayout(root, nodeIds, edges) {
    const depth = Object.fromEntries(nodeIds.map((id) => [id, id === root ? 0 : -1]));
    // Longest path from the root; the graph is acyclic, so |nodes| rounds settle it.
    for (let round = 0; round < nodeIds.length; round += 1) {
      let changed = false;
      for (const edge of edges) {
        if (depth[edge.child] >= 0 && depth[edge.parent] < depth[edge.child] + 1) {
          depth[edge.parent] = depth[edge.child] + 1;
          changed = true;
        }
      }
      if (!changed) break;
    }
    for (const id of nodeIds) if (depth[id] < 0) depth[id] = 0;
    const segments = [];
    const chains = edges.map((edge, index) => {
      const chain = [edge.parent];
      for (let column = depth[edge.parent] - 1; column > depth[edge.child]; column -= 1) {
        const virtualId = `virtual:${index}:${column}`;
        depth[virtualId] = column;
        chain.push(virtualId);
      }
      chain.push(edge.child);
      for (let i = 0; i + 1 < chain.length; i += 1) segments.push({ parent: chain[i], child: chain[i + 1] });
      return chain;
    });
    const layers = [];
    for (const id of Object.keys(depth)) (layers[depth[id]] ||= []).push(id);
    const position = {};
    const place = (layer) => layer.forEach((id, row) => (position[id] = row - (layer.length - 1) / 2));
    layers.forEach((layer) => layer && place(layer));
    // Barycentre sweeps: each node moves toward the mean row of its children, then of its parents.
    const neighbours = (id, key, other) => segments.filter((segment) => segment[key] === id).map((segment) => position[segment[other]]);
    const mean = (values, fallback) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : fallback);
    for (let sweep = 0; sweep < 4; sweep += 1) {
      const [key, other, order] = sweep % 2 === 0 ? ["parent", "child", [...layers.keys()]] : ["child", "parent", [...layers.keys()].reverse()];
      for (const index of order) {
        const layer = layers[index];
        if (!layer) continue;
        const target = Object.fromEntries(layer.map((id) => [id, mean(neighbours(id, key, other), position[id])]));
        layer.sort((a, b) => target[a] - target[b]);
        place(layer);
      }
    }
    return { depth, layers, position, chains };
  }

  function truncate(value, length) {
    return value.length > length ? value.slice(0, length - 1) + "…" : value;
  }

  // graph: GET /checkpoints/{id}/lineage; onNodeClick(id) optional.
  function lineageGraph(graph, { onNodeClick = null } = {}) {
    const nodeWidth = 288;
    const nodeHeight = 56;
    const columnGap = 120;
    const rowGap = 26;
    // Several roles between the same two checkpoints share one arrow.
    const merged = new Map();
    for (const edge of graph.edges) {
      const key = `${edge.parent}->${edge.child}`;
      if (!merged.has(key)) merged.set(key, { ...edge, roles: [] });
      merged.get(key).roles.push(edge.role);
    }
    const edges = [...merged.values()];
    const { depth, layers, position, chains } = lineageLayout(graph.root, graph.nodes.map((node) => node.id), edges);
    const columns = layers.length;
    const rows = Math.max(1, ...layers.map((layer) => (layer ? layer.length : 0)));
    const width = columns * nodeWidth + (columns - 1) * columnGap + 40;
    const height = rows * (nodeHeight + rowGap) + 40;
    const svg = el("svg", { class: "chart lineage-graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "lineage graph" });
    svg.append(el("defs", {}, [el("marker", { id: "lineage-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, [el("path", { d: "M0,0 L10,5 L0,10 z", class: "lineage-arrowhead" })])]));
    const left = (id) => 20 + (columns - 1 - depth[id]) * (nodeWidth + columnGap);
    const middle = (id) => height / 2 + position[id] * (nodeHeight + rowGap);
    const curve = (x1, y1, x2, y2) => {
      const bend = (x2 - x1) / 2;
      return `C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`;
    };

    edges.forEach((edge, index) => {
      const chain = chains[index];
      let [x, y] = [left(edge.parent) + nodeWidth, middle(edge.parent)];
      let d = `M${x},${y}`;
      for (const virtualId of chain.slice(1, -1)) {
        // Through a crossed column: curve into its row, then straight across the column.
        d += ` ${curve(x, y, left(virtualId), middle(virtualId))} L${left(virtualId) + nodeWidth},${middle(virtualId)}`;
        [x, y] = [left(virtualId) + nodeWidth, middle(virtualId)];
      }
      d += ` ${curve(x, y, left(edge.child) - 2, middle(edge.child))}`;
      const group = el("g", { class: "lineage-edge", "data-parent": edge.parent, "data-child": edge.child });
      group.append(titled(el("path", { d, "marker-end": "url(#lineage-arrow)" }), `${edge.roles.join(", ")} (job ${edge.job_id || "–"})`));
      const [labelFrom, labelTo] = [chain[chain.length - 2], edge.child];
      const labelX = (left(labelFrom) + (labelFrom === edge.parent || labelFrom.startsWith("virtual:") ? nodeWidth : 0) + left(labelTo)) / 2;
      const labelY = (middle(labelFrom) + middle(labelTo)) / 2 - 6;
      group.append(text(labelX, labelY, edge.roles.join(", "), { "text-anchor": "middle", class: "lineage-role" }));
      svg.append(group);
    });
    for (const node of graph.nodes) {
      const [x, y] = [left(node.id), middle(node.id) - nodeHeight / 2];
      const arch = node.arch ? archLabel(node.arch) : "";
      const group = el("g", { class: `lineage-node${node.id === graph.root ? " lineage-root" : ""} lineage-${node.format}`, "data-id": node.id, transform: `translate(${x},${y})`, tabindex: 0 });
      group.append(el("rect", { width: nodeWidth, height: nodeHeight, rx: 8 }));
      group.append(text(10, 20, truncate(node.name || node.id, 28), { class: "lineage-name" }));
      group.append(text(10, 37, `${node.format} · ${arch} · ${node.size_bytes} B`, { class: "lineage-meta" }));
      group.append(text(10, 50, node.id, { class: "lineage-id" }));
      titled(group, `${node.name || ""}\n${node.id}\ncreated by ${node.created_by_job || "upload"}`);
      if (onNodeClick) {
        group.addEventListener("click", () => onNodeClick(node.id));
        group.addEventListener("keydown", (event) => event.key === "Enter" && onNodeClick(node.id));
      }
      svg.append(group);
    }
    return svg;
  }

  return { lineChart, groupedBarChart, horizontalBarChart, leaderboardChart, lineageGraph, lineageLayout, niceTicks, formatNumber };
})();

window.RecombCharts = RecombCharts;
