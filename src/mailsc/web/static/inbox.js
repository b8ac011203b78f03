/* mailsc message log: polls /messages.json so new mail and status changes appear without a reload, keeps the
   "delivery paused" banner current, and asks before deleting. No inline script: the pages' CSP allows only this
   file. Everything received is inserted as text, never as HTML. */
(function () {
  "use strict";
  var POLL_MS = 2000;

  function text(tag, value, className) {
    var el = document.createElement(tag);
    if (className) { el.className = className; }
    el.textContent = value;
    return el;
  }

  function rowOf(item) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-id", item.id);
    tr.appendChild(text("td", item.created_at, "time"));
    var status = document.createElement("td");
    status.appendChild(text("span", item.status, "status status-" + item.status));
    tr.appendChild(status);
    tr.appendChild(text("td", item.to.join(", "), "to"));
    var subject = document.createElement("td");
    subject.className = "subject";
    var link = text("a", item.subject || "(no subject)");
    link.href = item.url;
    subject.appendChild(link);
    tr.appendChild(subject);
    var tags = document.createElement("td");
    tags.className = "tags";
    item.tags.forEach(function (t) { tags.appendChild(text("span", t, "tag")); });
    tr.appendChild(tags);
    return tr;
  }

  function showBanner(banner) {
    var box = document.getElementById("banner");
    if (!box) { return; }
    if (!banner) { box.hidden = true; return; }
    box.querySelector("[data-banner=summary]").textContent =
      "transport " + banner.transport + " unavailable (" + banner.error + "): " + banner.cause;
    box.querySelector("[data-banner=hint]").textContent = banner.hint ? "Hint: " + banner.hint : "";
    box.hidden = false;
  }

  function render(table, items) {
    var known = {};
    Array.prototype.forEach.call(table.tBodies[0].rows, function (tr) { known[tr.getAttribute("data-id")] = true; });
    var body = document.createElement("tbody");
    items.forEach(function (item) {
      var tr = rowOf(item);
      if (!known[item.id]) { tr.className = "new"; }
      body.appendChild(tr);
    });
    table.replaceChild(body, table.tBodies[0]);
    var empty = document.getElementById("empty");
    if (empty) { empty.hidden = items.length > 0; }
  }

  function poll() {
    var table = document.querySelector("table[data-poll]");
    var url = table ? table.getAttribute("data-poll") + window.location.search : "/messages.json?limit=0";
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        if (table) { render(table, data.items); }
        showBanner(data.banner);
      })
      .catch(function () { /* the server is restarting: try again at the next tick */ })
      .then(function () { window.setTimeout(poll, POLL_MS); });
  }

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });

  if (document.getElementById("banner")) { window.setTimeout(poll, POLL_MS); }
})();
