// A table of text rows; clicking a row selects it. Every value is set with
// textContent, so nothing a user typed is ever read as HTML.
function render({ model, el }) {
  el.classList.add("nbops-table");

  function toggle(id) {
    let selected = model.get("selected").slice();
    if (model.get("multiple")) {
      if (selected.includes(id)) {
        selected = selected.filter((s) => s !== id);
      } else {
        selected.push(id);
        const max = model.get("max_selected");
        if (max > 0 && selected.length > max) selected = selected.slice(selected.length - max);
      }
    } else {
      selected = selected.includes(id) ? [] : [id];
    }
    model.set("selected", selected);
    model.save_changes();
  }

  function draw() {
    el.replaceChildren();
    if (model.get("name")) el.dataset.nbops = model.get("name");
    const rows = model.get("rows");
    if (!rows.length) {
      const empty = document.createElement("div");
      empty.className = "nbops-empty";
      empty.textContent = model.get("empty");
      el.appendChild(empty);
      return;
    }
    const ids = model.get("row_ids");
    const marks = model.get("row_marks") || [];
    const selected = new Set(model.get("selected"));
    const multiple = model.get("multiple");
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    head.appendChild(document.createElement("th"));
    for (const column of model.get("columns")) {
      const th = document.createElement("th");
      th.textContent = column;
      head.appendChild(th);
    }
    const body = table.createTBody();
    rows.forEach((row, i) => {
      const id = ids[i] ?? String(i);
      const tr = body.insertRow();
      tr.dataset.rowId = id;
      if (marks[i]) tr.dataset.mark = marks[i];
      tr.setAttribute("aria-selected", selected.has(id) ? "true" : "false");
      if (selected.has(id)) tr.classList.add("nbops-selected");
      const box = document.createElement("input");
      box.type = multiple ? "checkbox" : "radio";
      box.checked = selected.has(id);
      box.tabIndex = -1;
      box.setAttribute("aria-label", "select " + id);
      tr.insertCell().appendChild(box);
      for (const value of row) {
        tr.insertCell().textContent = value === null ? "" : String(value);
      }
      tr.addEventListener("click", (event) => {
        event.preventDefault();
        toggle(id);
      });
    });
    el.appendChild(table);
  }

  const events = ["rows", "row_ids", "row_marks", "columns", "selected", "multiple", "empty", "name"];
  for (const name of events) model.on("change:" + name, draw);
  draw();
  return () => {
    for (const name of events) model.off("change:" + name, draw);
  };
}

export default { render };
