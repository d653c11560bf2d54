// cellship's %jobs table (an anywidget ES module, offline): sortable columns, a filter
// box, and a click on a row asks the kernel for that job's view (shown below the table).

const COLUMNS = [["id", "id"], ["name", "name"], ["status", "status"], ["backend", "backend"],
                 ["user", "user"], ["replicas", "replicas"], ["created", "created"], ["duration", "duration"]];


function render({ model, el }) {
  let sortKey = "created", descending = true, filter = "";
  const root = h("div", { class: "cellship-jobs" });
  el.append(root);
  function draw() {
    const rows = (model.get("rows") || []).filter((r) => !filter ||
      Object.values(r).some((v) => String(v ?? "").toLowerCase().includes(filter)));
    rows.sort((a, b) => {
      const x = a[sortKey === "duration" ? "seconds" : sortKey === "created" ? "created_ts" : sortKey];
      const y = b[sortKey === "duration" ? "seconds" : sortKey === "created" ? "created_ts" : sortKey];
      const order = (x ?? -Infinity) < (y ?? -Infinity) ? -1 : (x ?? -Infinity) > (y ?? -Infinity) ? 1 : 0;
      return descending ? -order : order;
    });
    const input = h("input", { class: "cellship-jobs-filter", placeholder: "filter", value: filter,
      oninput: (e) => { filter = e.target.value.toLowerCase(); draw(); root.querySelector("input").focus(); } });
    const table = h("table", { class: "cellship-jobs-table" },
      h("tr", {}, ...COLUMNS.map(([key, label]) => h("th", {
        "data-key": key, onclick: () => { descending = sortKey === key ? !descending : false; sortKey = key; draw(); },
      }, label + (sortKey === key ? (descending ? " ▼" : " ▲") : "")))));
    for (const r of rows) {
      table.append(h("tr", { class: `cellship-job-row cellship-${r.status}`, "data-id": r.id,
                             onclick: () => model.send({ type: "open", id: r.id }) },
        ...COLUMNS.map(([key]) => h("td", {}, String(r[key] ?? "")))));
    }
    root.replaceChildren(input, table,
      h("div", { class: "cellship-jobs-count" }, `${rows.length} of ${(model.get("rows") || []).length} jobs · click a row for its view`));
  }
  model.on("change:rows", draw);
  draw();
  return () => model.off("change:rows", draw);
}

export default { render };
