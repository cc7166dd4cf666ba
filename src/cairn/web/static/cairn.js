// cairn web UI: local times for timestamps, and a running run's page reloads until the run ends.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll(".time[data-ts]")) {
    const ts = Number(el.dataset.ts);
    if (ts > 0) el.textContent = new Date(ts * 1000).toLocaleString();
  }
  const run = document.getElementById("run");
  if (run && run.dataset.status === "running") {
    const poll = async () => {
      const response = await fetch("/api/v1/runs/" + encodeURIComponent(run.dataset.run), { credentials: "same-origin" });
      if (response.ok && (await response.json()).status !== "running") location.reload();
      else setTimeout(poll, 1000);
    };
    setTimeout(poll, 1000);
  }
});
