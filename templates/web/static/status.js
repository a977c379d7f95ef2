/* provision status page: live over the event stream (docs/web.md). Without this file the page
   is the same tables, current when loaded. */
(function () {
  "use strict";
  // A marker that survives only as long as this document: a reload or navigation resets it.
  if (!window.__loadedAt) window.__loadedAt = Date.now();
  window.__streamOpen = false;
  window.__updates = 0;
  var body = document.body;
  var page = body.getAttribute("data-page");
  var streamUrl = body.getAttribute("data-stream");
  var kinds = (body.getAttribute("data-kinds") || "").split(" ").filter(Boolean);
  var deviceKeys = (body.getAttribute("data-device-keys") || "").split(" ").filter(Boolean);
  var live = document.getElementById("live");
  if (!streamUrl || !window.EventSource || !window.fetch || (page !== "index" && page !== "device")) return;

  function setLive(on, text) {
    if (!live) return;
    live.className = "live " + (on ? "on" : "off");
    live.textContent = text;
  }

  var pending = {};
  var summaryDue = false;
  var timer = null;

  var GATHER_MS = 300; // events of a burst are asked for together
  var SUMMARY_MS = 2000; // pools and rollouts: at most this often (a pass over every lease)
  var summaryAt = 0;

  function schedule(delay) {
    if (!timer) timer = setTimeout(flush, delay || GATHER_MS);
  }

  // At most one rows request at a time, and after one that took T ms a pause of 3T: however busy
  // the fleet, one browser keeps the server's reader at most about a quarter of the time.
  var rowsBusy = false;
  var busyUntil = 0;

  function flush() {
    timer = null;
    var wait = busyUntil - Date.now();
    if (rowsBusy || wait > 0) {
      schedule(Math.max(wait, GATHER_MS));
      return;
    }
    var keys = Object.keys(pending);
    pending = {};
    if (keys.length) refreshRows(keys);
    if (keys.length && page === "device") refreshFacts();
    if (summaryDue && page === "index") {
      var wait = summaryAt + SUMMARY_MS - Date.now();
      if (wait > 0) {
        schedule(wait);
      } else {
        summaryDue = false;
        summaryAt = Date.now();
        refreshSummary();
      }
    }
  }

  function get(url) {
    return fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error(url + ": " + r.status);
      return r.text();
    });
  }

  function retryLater(keys) {
    keys.forEach(function (k) { pending[k] = true; });
    setTimeout(function () { schedule(); }, 2000);
  }

  function refreshRows(keys) {
    // The index's own filters go along: a row that no longer matches them leaves the table.
    var q = new URLSearchParams(page === "index" ? location.search : "");
    q.delete("after");
    q.delete("key");
    keys.forEach(function (k) { q.append("key", k); });
    var started = Date.now();
    rowsBusy = true;
    function done() {
      rowsBusy = false;
      busyUntil = Date.now() + 3 * (Date.now() - started);
    }
    get("/web/fragment/rows?" + q.toString())
      .then(function (html) { done(); applyRows(keys, html); })
      .catch(function () { done(); retryLater(keys); });
  }

  function hasKey(tr, key) {
    return (" " + (tr.getAttribute("data-keys") || "") + " ").indexOf(" " + key + " ") >= 0;
  }

  function applyRows(keys, html) {
    var tbody = document.querySelector("#devices tbody");
    if (!tbody) return;
    var doc = new DOMParser().parseFromString("<table><tbody>" + html + "</tbody></table>", "text/html");
    var claimed = {};
    doc.querySelectorAll("tr[data-cursor]").forEach(function (tr) {
      var cursor = tr.getAttribute("data-cursor");
      (tr.getAttribute("data-keys") || "").split(" ").forEach(function (k) { claimed[k] = true; });
      var node = document.importNode(tr, true);
      node.classList.add("changed");
      var old = null;
      tbody.querySelectorAll("tr[data-cursor]").forEach(function (row) {
        if (row.getAttribute("data-cursor") === cursor) old = row;
      });
      if (old) {
        old.replaceWith(node);
      } else if (page === "index") {
        var empty = tbody.querySelector("tr.empty");
        if (empty) empty.remove();
        var before = null;
        tbody.querySelectorAll("tr[data-cursor]").forEach(function (row) {
          if (!before && row.getAttribute("data-cursor") > cursor) before = row;
        });
        tbody.insertBefore(node, before);
      }
    });
    if (page === "index") {
      // Asked about, not returned: it no longer matches the page's filters.
      keys.forEach(function (k) {
        if (claimed[k]) return;
        tbody.querySelectorAll("tr[data-cursor]").forEach(function (row) {
          if (hasKey(row, k)) row.remove();
        });
      });
      var count = document.querySelector("#fleet .count");
      if (count) count.textContent = String(tbody.querySelectorAll("tr[data-cursor]").length);
    }
    window.__updates += 1;
  }

  function refreshFacts() {
    var device = body.getAttribute("data-device");
    if (!device) return;
    get("/web/fragment/device/" + encodeURIComponent(device))
      .then(function (html) {
        var facts = document.getElementById("facts");
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("facts");
        if (facts && fresh) facts.replaceWith(document.importNode(fresh, true));
      })
      .catch(function () { /* the next event of this device asks again */ });
  }

  function refreshSummary() {
    get("/web/fragment/summary")
      .then(function (html) {
        var box = document.getElementById("summary");
        if (box) box.innerHTML = html;
      })
      .catch(function () { summaryDue = true; setTimeout(function () { schedule(); }, 2000); });
  }

  function text(tag, value, cls) {
    var el = document.createElement(tag);
    el.textContent = value == null ? "" : String(value);
    if (cls) el.className = cls;
    return el;
  }

  function addTimeline(ev) {
    var tbody = document.querySelector("#timeline tbody");
    if (!tbody) return;
    var empty = tbody.querySelector("tr.empty");
    if (empty) empty.remove();
    var tr = document.createElement("tr");
    tr.className = "changed";
    if (ev.id != null) tr.setAttribute("data-id", ev.id);
    var when = String(ev.time || "").replace("T", " ").replace("Z", "");
    tr.appendChild(text("td", when, "mono"));
    tr.appendChild(text("td", ev.kind));
    tr.appendChild(text("td", ev.ip, "mono"));
    var detail = document.createElement("td");
    detail.className = "detail";
    Object.keys(ev.detail || {}).sort().forEach(function (k) {
      var v = ev.detail[k];
      detail.appendChild(text("span", k + "=" + (typeof v === "object" ? JSON.stringify(v) : v), "kv"));
      detail.appendChild(document.createTextNode(" "));
    });
    tr.appendChild(detail);
    tbody.insertBefore(tr, tbody.firstChild);
  }

  function onEvent(msg) {
    var ev;
    try { ev = JSON.parse(msg.data); } catch (e) { return; }
    if (!ev || typeof ev !== "object") return;
    if (!ev.kind && msg.type !== "message") ev.kind = msg.type;
    if (ev.id == null && msg.lastEventId) ev.id = Number(msg.lastEventId);
    var mac = ev.mac ? String(ev.mac).toLowerCase() : null;
    var name = ev.detail && ev.detail.name ? String(ev.detail.name) : null;
    if (page === "device") {
      var mine = (mac && deviceKeys.indexOf(mac) >= 0) || (name && deviceKeys.indexOf(name) >= 0);
      if (!mine) return;
      addTimeline(ev);
      pending[name && deviceKeys.indexOf(name) >= 0 ? name : mac] = true;
    } else {
      if (kinds.indexOf(ev.kind) < 0) return;
      if (name) pending[name] = true;
      else if (mac) pending[mac] = true;
      summaryDue = true;
    }
    schedule();
  }

  // "Since" cells say "3 min ago": recount them from their exact time (the title) as time passes.
  function ago(iso) {
    var s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
    if (isNaN(s)) return null;
    if (s >= 86400) return Math.floor(s / 86400) + " d ago";
    if (s >= 3600) return Math.floor(s / 3600) + " h ago";
    if (s >= 60) return Math.floor(s / 60) + " min ago";
    return s + " s ago";
  }
  setInterval(function () {
    document.querySelectorAll("td.since[title]").forEach(function (td) {
      var text = td.title ? ago(td.title) : null;
      if (text) td.textContent = text;
    });
  }, 15000);

  // EventSource reconnects by itself after a network break (sending Last-Event-ID). A refusal
  // (403, or 503 when the server has all the streams it takes) closes it for good: then connect
  // again after a pause, from the last event seen (?after=), backing off up to a minute.
  var lastId = null;
  var backoff = 5000;
  var opened = false;

  function connect() {
    var url = streamUrl;
    if (lastId !== null) url += (url.indexOf("?") >= 0 ? "&" : "?") + "after=" + encodeURIComponent(lastId);
    var source = new EventSource(url);
    window.__stream = source;
    function take(msg) {
      if (msg.lastEventId) lastId = msg.lastEventId;
      onEvent(msg);
    }
    kinds.forEach(function (kind) { source.addEventListener(kind, take); });
    source.onmessage = take;
    source.onopen = function () {
      window.__streamOpen = true;
      backoff = 5000;
      setLive(true, "live");
      if (opened && page === "index") {
        // Back after a break: what changed meanwhile came as replayed events; the pool and
        // rollout counts are read anew all the same.
        summaryDue = true;
        schedule();
      }
      opened = true;
    };
    source.onerror = function () {
      window.__streamOpen = false;
      if (source.readyState !== EventSource.CLOSED) {
        setLive(false, "reconnecting\u2026");
        return;
      }
      setLive(false, "not live: retrying in " + Math.round(backoff / 1000) + " s");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 60000);
    };
  }
  connect();
})();
