// The service worker of /g/ (served as /g/sw.js so that its scope is /g/): the phone pages open without a
// network. Static files: from the cache, refreshed in the background. Pages: from the network, the last copy
// when offline. Writes are never cached nor replayed here: the page's own queue (IndexedDB) sends them.
"use strict";
var CACHE = "gridworker-v1";
var SHELL = [
  "/g/",
  "/g/report",
  "/static/css/gridworker.css",
  "/static/js/gridworker.js",
  "/static/js/app.js",
  "/static/vendor/htmx.min.js",
  "/static/vendor/socket.io.min.js",
  "/static/img/gridworker-icon.svg",
];
// pages worth keeping for offline use: the workbench and the report form (masked names at most)
var PAGES = ["/g/", "/g/report"];

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches.open(CACHE).then(function (cache) {
      return Promise.all(SHELL.map(function (url) {
        return fetch(url, { credentials: "same-origin" }).then(function (r) {
          if (r.ok && !r.redirected) { return cache.put(url, r); }
        }).catch(function () {});
      }));
    }).then(function () { return self.skipWaiting(); })
  );
});

self.addEventListener("activate", function (event) {
  event.waitUntil(
    caches.keys().then(function (keys) {
      return Promise.all(keys.filter(function (k) { return k !== CACHE; }).map(function (k) { return caches.delete(k); }));
    }).then(function () { return self.clients.claim(); })
  );
});

self.addEventListener("fetch", function (event) {
  var req = event.request;
  if (req.method !== "GET") { return; }
  var url = new URL(req.url);
  if (url.origin !== self.location.origin) { return; }
  if (req.mode === "navigate" && PAGES.indexOf(url.pathname) >= 0) {
    event.respondWith(
      fetch(req).then(function (r) {
        if (r.ok && !r.redirected) {
          var copy = r.clone();
          caches.open(CACHE).then(function (c) { c.put(url.pathname, copy); });
        }
        return r;
      }).catch(function () {
        return caches.match(url.pathname).then(function (hit) { return hit || caches.match("/g/"); });
      })
    );
    return;
  }
  if (url.pathname.indexOf("/static/") === 0) {
    event.respondWith(
      caches.open(CACHE).then(function (cache) {
        return cache.match(req).then(function (hit) {
          var fresh = fetch(req).then(function (r) {
            if (r.ok) { cache.put(req, r.clone()); }
            return r;
          }).catch(function () { return hit; });
          return hit || fresh;
        });
      })
    );
  }
});
