// An evolution's family tree and its fitness per generation, drawn from an evolve report as inline SVG.
// The tree has one column per generation (0 = the founders) and one box per member; lines join each
// child to its two parents in the column before, and each elite to itself one generation earlier
// (dashed). A generation of more than MAX_SHOWN members is collapsed: the winner's ancestors (up to
// MAX_SHOWN, fittest first) keep their boxes and one box stands for the rest. Boxes sit on a grid,
// one row each, so none overlaps another. Class names (family-tree, family-node, family-collapsed,
// family-edge) are what the browser tests count.
"use strict";

const RecombFamily = (() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MAX_SHOWN = 12;
  const NODE = { width: 150, height: 40, columnGap: 70, rowGap: 12, margin: 20, header: 26 };
  const COLORS = { founder: "#f3f4f6", elite: "#eff6ff", child: "#f0fdf4", collapsed: "#fafafa", winner: "#2563eb", edge: "#9ca3af" };

  function el(tag, attrs = {}, children = []) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) if (value !== undefined && value !== null) node.setAttribute(name, String(value));
    for (const child of children) node.append(child);
    return node;
  }

  function label(x, y, content, attrs = {}) {
    const node = el("text", { x, y, "font-size": 11, fill: "#111827", ...attrs });
    node.textContent = content;
    return node;
  }

  const fmt = (value) => (typeof value === "number" ? window.RecombCharts.formatNumber(value) : "–");

  // Member ids of the winner and all its ancestors, through parents and through elites carried over.
  function ancestry(generations, winnerId) {
    const parentsOf = new Map();
    for (const row of generations) for (const member of row.members) if (member.parents.length) parentsOf.set(member.member_id, member.parents);
    const seen = new Set();
    const pending = winnerId ? [winnerId] : [];
    while (pending.length) {
      const id = pending.pop();
      if (seen.has(id)) continue;
      seen.add(id);
      pending.push(...(parentsOf.get(id) || []));
    }
    return seen;
  }

  // Per generation, the boxes to draw: members in report order, or (collapsed) the winner's
  // ancestors and one box for the others.
  function columns(generations, winnerId) {
    const ancestors = ancestry(generations, winnerId);
    return generations.map((row) => {
      if (row.members.length <= MAX_SHOWN) return { row, shown: row.members, hidden: [] };
      const kept = row.members
        .filter((member) => ancestors.has(member.member_id))
        .sort((a, b) => b.score.selection - a.score.selection)
        .slice(0, MAX_SHOWN);
      const keptIds = new Set(kept.map((member) => member.member_id));
      return { row, shown: kept, hidden: row.members.filter((member) => !keptIds.has(member.member_id)) };
    });
  }

  function operatorsText(member) {
    const ops = member.operators;
    if (!ops) return "founder";
    const crossover = ops.crossover ? `${ops.crossover.mode}${ops.crossover.alpha === null || ops.crossover.alpha === undefined ? "" : ` α=${ops.crossover.alpha}`}` : "";
    const mutation = ops.mutation ? `mutation σ=${fmt(ops.mutation.sigma)} seed ${ops.mutation.seed}` : "";
    return [crossover, mutation].filter(Boolean).join(", ");
  }

  // body: an evolve report's body; onMemberClick(checkpointId) optional.
  function familyTree(body, { onMemberClick = null } = {}) {
    const generations = body.generations;
    const winnerId = body.best ? body.best.member_id : null;
    const layout = columns(generations, winnerId);
    const rows = Math.max(1, ...layout.map((column) => column.shown.length + (column.hidden.length ? 1 : 0)));
    const pitchX = NODE.width + NODE.columnGap;
    const pitchY = NODE.height + NODE.rowGap;
    const width = NODE.margin * 2 + layout.length * pitchX - NODE.columnGap;
    const height = NODE.margin * 2 + NODE.header + rows * pitchY - NODE.rowGap;
    const svg = el("svg", { class: "chart family-tree", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "family tree" });
    const left = (index) => NODE.margin + index * pitchX;
    const top = (position) => NODE.margin + NODE.header + position * pitchY;
    // Where each member's box is in each generation's column (a carried elite has one box per generation).
    const anchors = layout.map(() => new Map());
    const edges = el("g", { class: "family-edges" });
    svg.append(edges);

    layout.forEach((column, index) => {
      const { row, shown, hidden } = column;
      svg.append(label(left(index) + NODE.width / 2, NODE.margin + 12, `generation ${row.generation}`, { "text-anchor": "middle", "font-weight": 600 }));
      shown.forEach((member, position) => {
        const [x, y] = [left(index), top(position)];
        anchors[index].set(member.member_id, { x, y });
        const origin = member.origin || (index === 0 ? "founder" : "child");
        const isWinner = member.member_id === winnerId;
        const isBest = member.member_id === row.best_member;
        const group = el("g", { class: `family-node family-${origin}${isWinner ? " family-winner" : ""}`, "data-member": member.member_id, "data-generation": row.generation, transform: `translate(${x},${y})`, tabindex: 0 });
        group.append(el("rect", { width: NODE.width, height: NODE.height, rx: 6, fill: COLORS[origin] || COLORS.child, stroke: isWinner ? COLORS.winner : isBest ? "#16a34a" : "#9ca3af", "stroke-width": isWinner || isBest ? 2.2 : 1 }));
        group.append(label(8, 16, `${member.member_id}${origin === "elite" ? " (elite)" : ""}`, { "font-weight": 600 }));
        group.append(label(8, 31, `fitness ${fmt(member.score.report)} · sel ${fmt(member.score.selection)}`, { fill: "#374151", "font-size": 10 }));
        const tooltip = el("title");
        tooltip.textContent = [
          `${member.member_id} (${origin})`,
          member.parents.length ? `parents ${member.parents.join(" × ")}` : "",
          operatorsText(member),
          `fitness held-out ${fmt(member.score.report)}, selection ${fmt(member.score.selection)}`,
          member.checkpoint_id ? `checkpoint ${member.checkpoint_id}` : "",
        ].filter(Boolean).join("\n");
        group.append(tooltip);
        if (onMemberClick && member.checkpoint_id) {
          group.style.cursor = "pointer";
          group.addEventListener("click", () => onMemberClick(member.checkpoint_id));
          group.addEventListener("keydown", (event) => event.key === "Enter" && onMemberClick(member.checkpoint_id));
        }
        svg.append(group);
      });
      if (hidden.length) {
        const [x, y] = [left(index), top(shown.length)];
        const box = { x, y };
        for (const member of hidden) anchors[index].set(member.member_id, box);
        const mean = hidden.reduce((sum, member) => sum + member.score.report, 0) / hidden.length;
        const group = el("g", { class: "family-node family-collapsed", "data-generation": row.generation, "data-members": hidden.length, transform: `translate(${x},${y})` });
        group.append(el("rect", { width: NODE.width, height: NODE.height, rx: 6, fill: COLORS.collapsed, stroke: "#9ca3af", "stroke-dasharray": "4 3" }));
        group.append(label(8, 16, `+${hidden.length} more members`, { "font-weight": 600 }));
        group.append(label(8, 31, `mean fitness ${fmt(mean)}`, { fill: "#374151", "font-size": 10 }));
        svg.append(group);
      }
    });

    // Lines, drawn once per pair of boxes: parent (or the same elite) in the column before -> member.
    layout.forEach((column, index) => {
      if (index === 0) return;
      const drawn = new Set();
      for (const member of column.row.members) {
        const to = anchors[index].get(member.member_id);
        const carried = member.origin === "elite";
        const sources = carried ? [member.member_id] : member.parents;
        for (const source of sources) {
          const from = anchors[index - 1].get(source);
          if (!from || !to) continue;
          const key = `${from.x},${from.y}->${to.x},${to.y}`;
          if (drawn.has(key)) continue;
          drawn.add(key);
          const [x1, y1, x2, y2] = [from.x + NODE.width, from.y + NODE.height / 2, to.x, to.y + NODE.height / 2];
          const bend = (x2 - x1) / 2;
          edges.append(el("path", { class: `family-edge${carried ? " family-edge-elite" : ""}`, d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`, fill: "none", stroke: COLORS.edge, "stroke-width": 1.2, "stroke-dasharray": carried ? "4 3" : null }));
        }
      }
    });
    return svg;
  }

  // Best and mean fitness per generation, on the held-out (evaluation) states.
  function fitnessChart(body) {
    const rows = body.generations;
    return window.RecombCharts.lineChart({
      title: "Fitness per generation (held-out)",
      xLabel: "generation",
      yLabel: body.fitness ? body.fitness.name : "fitness",
      series: [
        { name: "best", points: rows.map((row) => [row.generation, row.best_fitness.report]) },
        { name: "mean", points: rows.map((row) => [row.generation, row.mean_fitness.report]) },
      ],
    });
  }

  // The charts of an evolve report (none for any other report).
  function reportCharts(body, options = {}) {
    const rows = body.generations;
    if (!Array.isArray(rows) || !rows.length || !rows.every((row) => Array.isArray(row.members))) return [];
    const scroll = document.createElement("div");
    scroll.className = "graph-scroll family";
    scroll.style.flexBasis = "100%";
    scroll.append(familyTree(body, options));
    return [fitnessChart(body), scroll];
  }

  return { familyTree, fitnessChart, reportCharts, MAX_SHOWN };
})();

window.RecombFamily = RecombFamily;
