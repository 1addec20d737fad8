// A lineage graph drawn as SVG from positions computed in Python; clicking a
// node selects it. Labels are set with textContent (never parsed as markup).
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function render({ model, el }) {
  el.classList.add("nbops-graph");

  function draw() {
    el.replaceChildren();
    if (model.get("name")) el.dataset.nbops = model.get("name");
    const nodes = model.get("nodes");
    const width = model.get("width");
    const height = model.get("height");
    const nodeW = model.get("node_width");
    const nodeH = model.get("node_height");
    // Scaled down to the panel's width when wider; never scaled up.
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "group" });
    const defs = svg("defs");
    const marker = svg("marker", { id: "nbops-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "nbops-arrowhead" }));
    defs.appendChild(marker);
    root.appendChild(defs);
    const at = new Map(nodes.map((n) => [n.id, n]));
    for (const edge of model.get("edges")) {
      const a = at.get(edge.parent);
      const b = at.get(edge.child);
      if (!a || !b) continue;
      const x1 = a.x + nodeW, y1 = a.y + nodeH / 2, x2 = b.x, y2 = b.y + nodeH / 2;
      const mid = (x1 + x2) / 2;
      root.appendChild(svg("path", { d: `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`, class: "nbops-edge", "marker-end": "url(#nbops-arrow)" }));
    }
    const selected = model.get("selected");
    for (const n of nodes) {
      const g = svg("g", { class: `nbops-node nbops-kind-${n.kind}` + (n.id === selected ? " nbops-selected" : ""), transform: `translate(${n.x},${n.y})`, tabindex: 0 });
      g.dataset.nodeId = n.id;
      g.dataset.kind = n.kind;
      g.appendChild(svg("rect", { width: nodeW, height: nodeH, rx: 6, ry: 6 }));
      const kind = svg("text", { x: 8, y: 13, class: "nbops-node-kind" });
      kind.textContent = n.kind.replace("_", " ");
      const label = svg("text", { x: 8, y: 28, class: "nbops-node-label" });
      label.textContent = n.label;
      const title = svg("title");
      title.textContent = n.id;
      g.append(title, kind, label);
      const pick = () => {
        model.set("selected", n.id);
        model.save_changes();
      };
      g.addEventListener("click", pick);
      g.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") pick();
      });
      root.appendChild(g);
    }
    el.appendChild(root);
  }

  const events = ["nodes", "edges", "selected", "width", "height", "name"];
  for (const name of events) model.on("change:" + name, draw);
  draw();
  return () => {
    for (const name of events) model.off("change:" + name, draw);
  };
}

export default { render };
