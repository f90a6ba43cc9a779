// The dashboard's only script: it follows the page's event stream and
// puts each new rendering of the page's live part in place, keeping the
// focus on the link or control that had it.
"use strict";
(function () {
  var live = document.getElementById("live");
  var conn = document.getElementById("conn");
  if (!live || !live.dataset.live || !window.EventSource) return;
  var es = new EventSource(live.dataset.live);
  function status(text, state) {
    if (conn) { conn.textContent = text; conn.className = state; }
  }
  es.onopen = function () { status("live", "live"); };
  es.onerror = function () {
    if (es.readyState === EventSource.CLOSED) status("disconnected: reload the page", "off");
    else status("reconnecting…", "off");
  };
  es.addEventListener("live", function (e) {
    var a = document.activeElement, href = a && live.contains(a) && a.getAttribute("href");
    live.innerHTML = JSON.parse(e.data).html;
    if (href) {
      var again = live.querySelector('a[href="' + CSS.escape(href) + '"]');
      if (again) again.focus();
    }
    live.dataset.updated = String(Date.now());
  });
})();
