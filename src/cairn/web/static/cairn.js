// cairn web UI: local times for timestamps, live progress of a running run, and zoom and pan of the asset graph.
// No library. The run page reads the API with the session cookie (read-only routes accept it).
"use strict";

function localTimes(root) {
  for (const el of root.querySelectorAll(".time[data-ts]")) {
    const ts = Number(el.dataset.ts);
    if (ts > 0) el.textContent = new Date(ts * 1000).toLocaleString();
  }
}

function seconds(value) {
  return value === null || value === undefined ? "-" : value.toFixed(2) + " s";
}

function statusBadge(status, id) {
  const span = document.createElement("span");
  span.className = "status status-" + status;
  span.textContent = status;
  if (id) span.id = id;
  return span;
}

// -- a running run: poll its progress every second until it ends -------------------------------------------

function liveRun(run) {
  const id = encodeURIComponent(run.dataset.run);
  const table = document.querySelector("#steps tbody");
  const rows = new Map(); // step label -> its row, looked up once (a run may have thousands of steps)
  for (const row of table.querySelectorAll("tr[data-step]")) rows.set(row.dataset.step, row);
  const update = (view) => {
    const badge = document.getElementById("run-status");
    badge.textContent = view.status;
    badge.className = "status status-" + view.status;
    run.dataset.status = view.status;
    const duration = document.getElementById("run-duration");
    if (duration) duration.textContent = seconds(view.elapsed_s) + (view.done ? "" : " so far");
    const counts = document.getElementById("step-counts");
    counts.replaceChildren();
    for (const [status, n] of Object.entries(view.counts)) {
      const span = statusBadge(status);
      span.classList.add("count");
      span.dataset.count = status;
      span.textContent = n + " " + status;
      counts.append(span, " ");
    }
    for (const step of view.steps) {
      let row = rows.get(step.step);
      if (!row) {
        row = document.createElement("tr");
        row.dataset.step = step.step;
        for (const name of ["", "step-status", "", "step-attempts", "step-duration", "", "error step-error"]) {
          const cell = document.createElement("td");
          if (name) cell.className = name;
          row.append(cell);
        }
        row.cells[0].textContent = step.step;
        table.append(row);
        rows.set(step.step, row);
      }
      row.dataset.status = step.status;
      row.querySelector(".step-status").replaceChildren(statusBadge(step.status));
      row.querySelector(".step-attempts").textContent = step.attempts;
      row.querySelector(".step-duration").textContent = seconds(step.duration_s);
      row.querySelector(".step-error").textContent = step.error || "";
    }
  };
  const redraw = async () => {
    const answer = await fetch("/runs/" + id + "/timeline.svg", { credentials: "same-origin" });
    if (!answer.ok) return;
    const doc = new DOMParser().parseFromString(await answer.text(), "image/svg+xml");
    const svg = doc.documentElement;
    if (svg.nodeName.toLowerCase() === "svg") document.getElementById("timeline").replaceChildren(document.importNode(svg, true));
  };
  const poll = async () => {
    let done = false;
    try {
      const answer = await fetch("/api/v1/runs/" + id + "/progress", { credentials: "same-origin" });
      if (answer.ok) {
        const view = await answer.json();
        update(view);
        await redraw();
        done = view.done;
      }
    } catch (e) {
      // the server restarted or the network dropped: try again on the next tick
    }
    if (done) {
      const note = document.getElementById("run-live");
      if (note) note.textContent = "(finished)";
      document.body.dataset.live = "done";
    } else {
      setTimeout(poll, 1000);
    }
  };
  document.body.dataset.live = "polling";
  setTimeout(poll, 1000);
}

// -- the asset graph: wheel zooms around the pointer, dragging pans, buttons zoom and reset ------------------

function zoomable(svg) {
  const initial = svg.viewBox.baseVal;
  const home = { x: initial.x, y: initial.y, w: initial.width, h: initial.height };
  let box = { ...home };
  const apply = () => {
    svg.setAttribute("viewBox", `${box.x} ${box.y} ${box.w} ${box.h}`);
    svg.dataset.zoom = (home.w / box.w).toFixed(3);
  };
  const zoom = (factor, cx, cy) => {
    const w = Math.min(Math.max(box.w / factor, home.w / 20), home.w * 4);
    const h = (w / box.w) * box.h;
    box = { x: cx - ((cx - box.x) * w) / box.w, y: cy - ((cy - box.y) * h) / box.h, w, h };
    apply();
  };
  const centre = () => [box.x + box.w / 2, box.y + box.h / 2];
  const toGraph = (event) => {
    const rect = svg.getBoundingClientRect();
    return [box.x + ((event.clientX - rect.left) / rect.width) * box.w, box.y + ((event.clientY - rect.top) / rect.height) * box.h];
  };
  svg.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [x, y] = toGraph(event);
    zoom(event.deltaY < 0 ? 1.2 : 1 / 1.2, x, y);
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (event) => {
    if (event.target.closest("a")) return; // a click on an asset opens its page
    drag = { x: event.clientX, y: event.clientY, box: { ...box } };
    svg.setPointerCapture(event.pointerId);
    svg.classList.add("panning");
  });
  svg.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const rect = svg.getBoundingClientRect();
    box.x = drag.box.x - ((event.clientX - drag.x) / rect.width) * box.w;
    box.y = drag.box.y - ((event.clientY - drag.y) / rect.height) * box.h;
    apply();
  });
  const stop = () => { drag = null; svg.classList.remove("panning"); };
  svg.addEventListener("pointerup", stop);
  svg.addEventListener("pointercancel", stop);
  const button = (id, act) => { const el = document.getElementById(id); if (el) el.addEventListener("click", act); };
  button("zoom-in", () => zoom(1.25, ...centre()));
  button("zoom-out", () => zoom(1 / 1.25, ...centre()));
  button("zoom-reset", () => { box = { ...home }; apply(); });
  apply();
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  const run = document.getElementById("run");
  if (run && run.dataset.status === "running") liveRun(run);
  const graph = document.getElementById("asset-graph");
  if (graph && graph.viewBox && graph.viewBox.baseVal) zoomable(graph);
});
