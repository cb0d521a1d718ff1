// dispatch-api pages: live board rows over server-sent events, SLA
// countdowns, and one-submit forms. No framework, no build step. The rows
// arrive as HTML the server rendered (and escaped); nothing here builds
// markup from data.
(function () {
  'use strict';

  // --- SLA countdowns -------------------------------------------------------
  var base = Date.now();

  function countdown(secs) {
    var overdue = secs < 0;
    var s = Math.abs(secs);
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60), sec = s % 60;
    var pad = function (n) { return (n < 10 ? '0' : '') + n; };
    var text = d > 0 ? d + 'd ' + h + 'h' : h > 0 ? h + 'h ' + pad(m) + 'm' : m + 'm ' + pad(sec) + 's';
    return overdue ? 'overdue ' + text : text;
  }

  function tick() {
    var elapsed = Math.floor((Date.now() - base) / 1000);
    var nodes = document.querySelectorAll('[data-remaining]');
    for (var i = 0; i < nodes.length; i++) {
      var left = parseInt(nodes[i].getAttribute('data-remaining'), 10) - elapsed;
      nodes[i].textContent = countdown(left);
      nodes[i].classList.toggle('overdue', left < 0);
    }
  }

  // --- Live board -------------------------------------------------------------
  function live(box) {
    var status = document.getElementById('live-status');
    var say = function (state, text) {
      if (!status) return;
      status.setAttribute('data-state', state);
      status.textContent = text;
    };
    var source = new EventSource(box.getAttribute('data-stream'));
    source.addEventListener('open', function () {
      say('live', 'Live: the board updates by itself.');
    });
    source.addEventListener('rows', function (ev) {
      box.innerHTML = ev.data;
      base = Date.now();
      tick();
      var lanes = box.querySelector('.lanes');
      var count = lanes ? lanes.getAttribute('data-count') : '?';
      say('live', 'Live: ' + count + ' jobs, updated at position ' + ev.lastEventId + '.');
      document.dispatchEvent(new CustomEvent('board:rows', { detail: { position: ev.lastEventId } }));
    });
    source.addEventListener('trouble', function () {
      say('trouble', 'The board could not be refreshed; retrying.');
    });
    source.addEventListener('error', function () {
      if (source.readyState === EventSource.CLOSED) {
        say('trouble', 'Live updates stopped. Reload the page (you may need to log in again).');
      } else {
        say('trouble', 'Connection lost; reconnecting…');
      }
    });
    window.addEventListener('pagehide', function () { source.close(); });
  }

  // --- One submit per form ------------------------------------------------------
  function once(ev) {
    var form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains('once')) return;
    if (form.getAttribute('data-sent') === 'true') {
      ev.preventDefault();
      return;
    }
    form.setAttribute('data-sent', 'true');
    // After the browser has collected the form's fields.
    setTimeout(function () {
      var buttons = form.querySelectorAll('button');
      for (var i = 0; i < buttons.length; i++) buttons[i].disabled = true;
    }, 0);
  }

  document.addEventListener('submit', once, true);
  document.addEventListener('DOMContentLoaded', function () {
    var box = document.getElementById('board-live');
    if (box && window.EventSource) live(box);
    tick();
    setInterval(tick, 1000);
  });
})();
