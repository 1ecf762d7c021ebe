// The deployment page, live: an EventSource on the page's event stream patches the
// header, the interventions panel and the grid's cells in place, by element id. The
// node sends only what changed; changes are applied together once per animation
// frame, so a grid of thousands of cells keeps up however fast they arrive.
// Without this script the page is still whole (a "Refresh" link reloads it).
"use strict";

(() => {
  const grid = document.getElementById("grid");
  const live = document.getElementById("live");
  if (!grid || !live || !window.EventSource) return;

  const header = document.getElementById("deployment-header");
  const panel = document.getElementById("interventions");

  // What arrived and is not shown yet; a later change of the same piece replaces an
  // earlier one.
  let pending = { grid: null, header: null, interventions: null, cells: new Map() };
  let scheduled = false;
  let lastInterventions = null;
  let reconnects = 0;
  let lost = false;

  function say(state, text) {
    live.dataset.state = state;
    live.dataset.reconnects = String(reconnects);
    if (live.textContent !== text) live.textContent = text;
  }

  function flush() {
    scheduled = false;
    const work = pending;
    pending = { grid: null, header: null, interventions: null, cells: new Map() };
    if (work.grid !== null) grid.innerHTML = work.grid;
    if (work.header !== null && header) header.innerHTML = work.header;
    if (work.interventions !== null && panel) {
      // A panel that did not change is left alone, so a note being typed stays.
      if (work.interventions !== lastInterventions) panel.innerHTML = work.interventions;
      lastInterventions = work.interventions;
    }
    for (const [id, [state, html]] of work.cells) {
      const cell = document.getElementById(id);
      if (!cell) continue;
      cell.className = "cell cell-" + state;
      cell.innerHTML = html;
      cell.dataset.state = state;
    }
  }

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(flush);
  }

  function take(change) {
    if (change.grid !== undefined) {
      pending.grid = change.grid;
      pending.cells.clear();
    }
    if (change.header !== undefined) pending.header = change.header;
    if (change.interventions !== undefined) pending.interventions = change.interventions;
    for (const [id, state, html] of change.cells) pending.cells.set(id, [state, html]);
    schedule();
  }

  const since = encodeURIComponent(grid.dataset.version || "");
  const source = new EventSource(grid.dataset.events + "?since=" + since);
  say("connecting", "Connecting…");

  source.addEventListener("open", () => {
    if (lost) reconnects += 1;
    lost = false;
    say("live", reconnects > 0 ? "Live (reconnected)" : "Live");
  });
  source.addEventListener("grid", (event) => {
    const change = JSON.parse(event.data);
    live.dataset.node = change.node;
    grid.dataset.version = event.lastEventId;
    take(change);
  });
  source.addEventListener("end", () => {
    source.close();
    say("finished", "Finished: nothing more will change.");
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      say("offline", "Not live: refresh to see changes.");
    } else {
      lost = true;
      say("reconnecting", "Reconnecting…");
    }
  });
})();
