/* 重新定位 from the 立案派遣 queue (issue 14 §3): a row's 「重新定位」 link opens the queue's relocation panel for
 * that case instead of leaving the page; the panel holds the 12345 form's picker (locate.js) and posts the case
 * page's own step (/cases/<id>/actions/relocate). Without this script the link opens the case page's form.
 * The rows are refreshed by htmx every 30 s, so the clicks are taken on the document. */
(function () {
  "use strict";

  var panel = document.getElementById("relocate-panel");
  if (!panel) { return; }
  var form = document.getElementById("relocate-form");
  var number = panel.querySelector(".relocate-number");

  function clear() {
    ["relocate-address_id", "relocate-address", "relocate-lon", "relocate-lat", "relocate-note"].forEach(function (id) {
      var input = document.getElementById(id);
      if (input) { input.value = ""; }
    });
    var status = panel.querySelector(".locate-status");
    if (status) { status.textContent = ""; }
    var point = panel.querySelector(".locate-point");
    if (point) { point.setAttribute("cx", "-20"); point.setAttribute("cy", "-20"); }
  }

  document.addEventListener("click", function (evt) {
    var link = evt.target.closest ? evt.target.closest("a.relocate-link[data-case-id]") : null;
    if (!link) { return; }
    evt.preventDefault();
    clear();
    form.action = form.dataset.action.replace("/0/", "/" + encodeURIComponent(link.dataset.caseId) + "/");
    number.textContent = link.dataset.number || "";
    panel.hidden = false;
    panel.scrollIntoView({ block: "start" });
    var search = document.getElementById("address-search");
    if (search) { search.focus(); }
  });

  panel.querySelector(".relocate-cancel").addEventListener("click", function () {
    panel.hidden = true;
    form.action = "";
  });
})();
