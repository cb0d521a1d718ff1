// The field app's service worker (scope /ui/field): the pages a technician
// opened while online open again without signal, and the style sheets and
// scripts come from the phone. Network first for pages (a page online is
// always the job as it is now); what the phone keeps to send is the page
// script's (IndexedDB), not this worker's. Posts are never touched.
'use strict';

var PAGES = 'dispatch-field-pages-v1';
var STATIC = 'dispatch-field-static-v1';

self.addEventListener('install', function () { self.skipWaiting(); });
self.addEventListener('activate', function (e) { e.waitUntil(self.clients.claim()); });

function offline() {
  var html = '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1"><title>No signal · dispatch</title></head>' +
    '<body style="font-family: system-ui, sans-serif; padding: 1rem; font-size: 1.1rem">' +
    '<h1>No signal</h1><p>This page was not opened on this phone while there was a network, so it cannot be shown now.</p>' +
    '<p>Your work is safe on this phone: it is sent when the signal is back.</p>' +
    '<p><a href="/ui/field">My work</a></p></body></html>';
  return new Response(html, { status: 503, headers: { 'content-type': 'text/html; charset=utf-8' } });
}

self.addEventListener('fetch', function (e) {
  var req = e.request;
  if (req.method !== 'GET') return;
  var url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.indexOf('/ui/static/') === 0) {
    // Versioned by content hash: what is cached never goes stale.
    e.respondWith(caches.open(STATIC).then(function (c) {
      return c.match(req).then(function (hit) {
        return hit || fetch(req).then(function (r) {
          if (r.ok) c.put(req, r.clone());
          return r;
        });
      });
    }));
    return;
  }
  var page = url.pathname === '/ui/field' || url.pathname.indexOf('/ui/field/jobs/') === 0;
  if (req.mode !== 'navigate' || !page) return;
  e.respondWith(fetch(req).then(function (r) {
    if (r.ok && !r.redirected) {
      var copy = r.clone();
      caches.open(PAGES).then(function (c) { return c.put(url.pathname, copy); });
    } else if (r.type === 'opaqueredirect' || r.redirected || r.status === 401 || r.status === 403) {
      // The session ended (a page answered with the way to the login):
      // the pages kept for it go too.
      caches.delete(PAGES);
    }
    return r;
  }, function () {
    return caches.open(PAGES).then(function (c) { return c.match(url.pathname); }).then(function (hit) {
      return hit || offline();
    });
  }));
});
