// Live parts of a page: every element with data-live="URL" is refreshed from URL (an HTML
// fragment of the same page) every data-every seconds, at once on load, then on a timer.
// After each update the element carries data-updates (how many) and data-updated (when).
"use strict";

function startLive(element) {
  const every = Math.max(1, Number(element.dataset.every || 5)) * 1000;
  let updates = 0;
  async function refresh() {
    try {
      const response = await fetch(element.dataset.live, {credentials: "same-origin"});
      if (response.status === 401) {
        window.location.reload();  // the session ended: the page will ask for a login
        return;
      }
      if (response.ok) {
        element.innerHTML = await response.text();
        updates += 1;
        element.dataset.updates = String(updates);
        element.dataset.updated = new Date().toISOString();
      }
    } catch (error) {
      element.dataset.error = String(error);  // the server is away: try again later
    }
    window.setTimeout(refresh, every);
  }
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(startLive);
});
