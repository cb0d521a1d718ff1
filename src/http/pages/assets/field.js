// The technician's field app: every action is kept on the phone
// (IndexedDB) with its own idempotency key, shown as pending, and sent in
// order whenever there is a network. The service answers a replayed key
// with its stored answer, so sending twice never does anything twice. No
// framework, no build step; nothing here builds markup from server text
// (textContent only).
(function () {
  'use strict';

  var DB = 'dispatch-field', STORE = 'actions';
  var STATE_CHANGING = { accept_offer: 1, decline_offer: 1, start_travel: 1, check_out: 1 };
  var sentSome = false;
  var loadedAt = Date.now();
  var bar, csrf, db, pumping = false, retryTimer = null, retryDelay = 2000, lastPosition = 0, reloadWanted = false;

  // --- Storage -------------------------------------------------------------
  function open() {
    return new Promise(function (resolve, reject) {
      var req = indexedDB.open(DB, 1);
      req.onupgradeneeded = function () { req.result.createObjectStore(STORE, { keyPath: 'seq', autoIncrement: true }); };
      req.onsuccess = function () { resolve(req.result); };
      req.onerror = function () { reject(req.error); };
    });
  }
  function tx(mode, fn) {
    return new Promise(function (resolve, reject) {
      var t = db.transaction(STORE, mode), out;
      t.oncomplete = function () { resolve(out); };
      t.onerror = function () { reject(t.error); };
      t.onabort = function () { reject(t.error || new Error('aborted')); };
      out = fn(t.objectStore(STORE));
    });
  }
  function all() {
    return new Promise(function (resolve, reject) {
      var req = db.transaction(STORE, 'readonly').objectStore(STORE).getAll();
      req.onsuccess = function () { resolve(req.result); };
      req.onerror = function () { reject(req.error); };
    });
  }
  function put(a) { return tx('readwrite', function (s) { s.put(a); }); }
  function remove(seq) { return tx('readwrite', function (s) { s.delete(seq); }); }

  function newKey() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return 'field-' + Array.prototype.map.call(b, function (x) { return (x < 16 ? '0' : '') + x.toString(16); }).join('');
  }

  // Keeps an action on the phone, shows it, and tries to send it.
  function enqueue(a) {
    a.key = newKey();
    a.state = 'pending';
    a.technician = me();
    a.created_at = new Date().toISOString();
    return tx('readwrite', function (s) { s.add(a); }).then(function () {
      applyLocal(a);
      return render();
    }, function () {
      say('refused', 'This phone could not keep that (its storage is full or blocked): it was not recorded.');
      throw new Error('not kept');
    }).then(pump);
  }

  // The technician signed in here: actions are kept per technician, and
  // only theirs are sent with their session.
  function me() { return bar.getAttribute('data-technician') || ''; }
  function mine(list) { return list.filter(function (a) { return (a.technician || '') === me(); }); }

  // --- Sending ---------------------------------------------------------------
  function request(a, others) {
    var headers = { 'X-CSRF-Token': csrf, 'Idempotency-Key': a.key, 'X-Field-Pending': String(others.length) };
    if (others.length) headers['X-Field-Oldest'] = others[0].created_at;
    var url, body;
    if (a.type === 'file') {
      url = '/ui/field/jobs/' + encodeURIComponent(a.job) + '/evidence?kind=' + encodeURIComponent(a.kind) +
        (a.note ? '&note=' + encodeURIComponent(a.note) : '');
      headers['Content-Type'] = a.content_type;
      body = a.blob;
    } else {
      url = '/ui/field/jobs/' + encodeURIComponent(a.job) + '/actions/' + encodeURIComponent(a.command);
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(a.args);
    }
    // A request that hangs on a weak signal is given up and tried again.
    var abort = window.AbortController ? new AbortController() : null;
    var timer = abort && setTimeout(function () { abort.abort(); }, a.type === 'file' ? 120000 : 30000);
    return fetch(url, { method: 'POST', headers: headers, body: body, credentials: 'same-origin', signal: abort ? abort.signal : undefined })
      .then(function (r) { clearTimeout(timer); return r; }, function (e) { clearTimeout(timer); throw e; });
  }

  // One tab sends at a time (the queue is the phone's, not the tab's).
  function pump() {
    if (navigator.locks) return navigator.locks.request('dispatch-field-pump', { ifAvailable: true }, function (lock) {
      return lock ? pumpHere() : null;
    });
    return pumpHere();
  }
  function pumpHere() {
    if (pumping || !db) return Promise.resolve();
    pumping = true;
    var loop = function () {
      return all().then(function (list) {
        var pending = mine(list).filter(function (a) { return a.state === 'pending'; });
        if (!pending.length) return 'done';
        var a = pending[0];
        var after = pending.filter(function (b) { return b.job === a.job && b.seq !== a.seq; });
        say('pending', 'Sending ' + pending.length + (pending.length === 1 ? ' action…' : ' actions…'));
        return request(a, after).then(function (resp) {
          return resp.text().then(function (text) {
            var doc = null;
            try { doc = JSON.parse(text); } catch (e) { doc = null; }
            if (resp.ok) return sent(a, doc).then(loop);
            if (resp.status === 401) return 'signin';
            if (doc && doc.code === 'csrf_rejected') return 'stale';
            if (resp.status === 408 || resp.status === 429 || resp.status >= 500) return 'retry';
            if (doc && doc.code === 'version_conflict') return 'retry';
            a.state = 'refused';
            markRefused(a);
            a.problem = { status: resp.status, code: doc && doc.code, message: (doc && (doc.detail || doc.message || doc.title)) || ('refused (' + resp.status + ')'), current_state: doc && doc.current_state, missing: doc && doc.missing };
            return put(a).then(loop);
          });
        }, function () { return 'retry'; });
      });
    };
    return loop().then(function (how) {
      pumping = false;
      if (how === 'stale') {
        // A page made for an earlier session: a fresh page has this
        // session's token (at most once a minute, never a loop).
        var last = parseInt(sessionStorage.getItem('field-stale-reload') || '0', 10);
        if (Date.now() - last > 60000 && navigator.onLine) {
          sessionStorage.setItem('field-stale-reload', String(Date.now()));
          location.reload();
          return;
        }
        how = 'signin';
      }
      if (how === 'retry') {
        clearTimeout(retryTimer);
        retryTimer = setTimeout(pump, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      } else {
        retryDelay = 2000;
      }
      return render(how);
    }, function () {
      pumping = false;
      clearTimeout(retryTimer);
      retryTimer = setTimeout(pump, retryDelay);
      return render('retry');
    });
  }

  function sent(a, doc) {
    var events = (doc && doc.events) || [];
    events.forEach(function (e) { if (e.global_position > lastPosition) lastPosition = e.global_position; });
    if (STATE_CHANGING[a.command]) reloadWanted = true;
    sentSome = true;
    return remove(a.seq).then(function () { markSent(a); });
  }

  // Tells the service, when there is a network, what the phone still holds
  // for each job (and that it is there, for the visit it shows): the
  // dispatcher sees when each phone was last heard from.
  function report() {
    if (!db || !navigator.onLine) return Promise.resolve();
    return all().then(function (list) {
      var jobs = {}, order = [];
      var add = function (id) {
        if (!jobs[id]) { jobs[id] = { job_id: id, pending: 0, oldest_pending_at: null }; order.push(id); }
        return jobs[id];
      };
      var head = document.getElementById('visit-head');
      if (head) add(head.getAttribute('data-job-id'));
      list.forEach(function (a) {
        if (a.state !== 'pending') return;
        var j = add(a.job);
        j.pending++;
        if (!j.oldest_pending_at || a.created_at < j.oldest_pending_at) j.oldest_pending_at = a.created_at;
      });
      if (!order.length) return;
      return fetch('/ui/field/contact', {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
        body: JSON.stringify({ jobs: order.slice(0, 50).map(function (id) { return jobs[id]; }) })
      });
    }).catch(function () {});
  }

  // --- What the phone shows ----------------------------------------------------
  var LABELS = {
    accept_offer: 'Accept the offer', decline_offer: 'Decline the offer', start_travel: 'Start travel',
    check_in: 'Check in', complete_checklist_item: 'Checklist answer', check_out: 'Check out', add_note: 'Note'
  };
  function label(a) {
    if (a.type === 'file') return (a.kind === 'signature' ? 'Signature' : a.kind.replace(/_/g, ' ')) + ' (' + Math.ceil(a.blob.size / 1024) + ' KB)';
    var l = LABELS[a.command] || a.command;
    if (a.command === 'complete_checklist_item') l += ': ' + (a.text || a.args.item_id) + ' = ' + a.args.result.toUpperCase();
    return l;
  }
  function advice(p) {
    if (!p) return '';
    if (p.code === 'invalid_transition' || p.code === 'forbidden') {
      return 'The job changed while this was waiting' + (p.current_state ? ' (it is now ' + p.current_state.replace(/_/g, ' ') + ')' : '') +
        ': this was not recorded. Call your dispatcher before you go on.';
    }
    if (p.code === 'payload_too_large') return 'The file is too large: take the photo again.';
    if (p.code === 'missing_field_evidence') return 'Finish what the list under "Check out" asks, then check out again.';
    if (p.code === 'check_in_reason_required') return 'Check in again and say why you are not at the site.';
    return 'This was not recorded. Dismiss it, fix what the message says and do it again.';
  }

  function say(state, text) {
    if (!bar) return;
    bar.setAttribute('data-state', state);
    document.getElementById('sync-text').textContent = text;
  }

  function render(how) {
    if (!db) return Promise.resolve();
    return all().then(function (everyone) {
      var list = mine(everyone);
      var pending = list.filter(function (a) { return a.state === 'pending'; });
      var refused = list.filter(function (a) { return a.state === 'refused'; });
      if (how === 'signin') say('signin', 'Your session has ended: sign in again. ' + pending.length + ' action(s) are kept on this phone.');
      else if (refused.length) say('refused', refused.length + ' action(s) refused: see below.');
      else if (pending.length && !navigator.onLine) say('offline', 'No signal: ' + pending.length + ' action(s) kept on this phone, sent when the signal is back.');
      else if (pending.length) say('pending', pending.length + ' action(s) waiting to be sent; retrying.');
      else say('ok', navigator.onLine ? 'Online: everything is sent.' : 'No signal: nothing waiting.');
      bar.setAttribute('data-pending', String(pending.length));
      // The list folds away under one line; refusals open it.
      var box = document.getElementById('queue-box'), ul = document.getElementById('queue');
      if (!box) {
        box = document.createElement('details');
        box.id = 'queue-box';
        box.appendChild(document.createElement('summary'));
        ul = document.createElement('ul');
        ul.id = 'queue';
        box.appendChild(ul);
        bar.appendChild(box);
      }
      box.hidden = !list.length;
      box.firstChild.textContent = 'What is waiting (' + list.length + ')';
      if (refused.length) box.open = true;
      ul.textContent = '';
      list.forEach(function (a) {
        var li = document.createElement('li');
        li.className = a.state;
        li.setAttribute('data-key', a.key);
        var what = document.createElement('span');
        what.className = 'what';
        what.textContent = label(a) + (a.state === 'pending' ? ' — waiting to send' : ' — refused');
        li.appendChild(what);
        if (a.state === 'refused') {
          var msg = document.createElement('span');
          msg.className = 'problem';
          msg.textContent = a.problem.message + '. ' + advice(a.problem);
          li.appendChild(msg);
          var b = document.createElement('button');
          b.type = 'button';
          b.className = 'secondary dismiss';
          b.textContent = 'Dismiss';
          b.addEventListener('click', function () { remove(a.seq).then(function () { return render(); }); });
          li.appendChild(document.createElement('br'));
          li.appendChild(b);
        }
        ul.appendChild(li);
      });
      if (!pending.length && !pumping && sentSome && navigator.onLine && window.caches) {
        // The page as it is now, for opening it again without signal.
        sentSome = false;
        caches.open('dispatch-field-pages-v1').then(function (c) { return c.add(location.pathname); }).catch(function () {});
      }
      if (!pending.length && !pumping && reloadWanted && navigator.onLine && !refused.length) {
        reloadWanted = false;
        var here = location.pathname;
        location.assign(here === '/ui/field' ? '/ui/field?min_position=' + lastPosition : here);
      }
    });
  }

  // What a kept action changes on the page before the service has it.
  function applyLocal(a) {
    if (a.command === 'check_in') {
      ['checkin', 'travel'].forEach(function (id) { var n = document.getElementById(id); if (n) n.hidden = true; });
      var on = document.getElementById('onsite');
      if (on) on.hidden = false;
    } else if (a.command === 'start_travel') {
      var t = document.getElementById('travel');
      if (t) t.hidden = true;
    } else if (a.command === 'complete_checklist_item') {
      var li = document.querySelector('li.item[data-item="' + CSS.escape(a.args.item_id) + '"]');
      if (li) {
        li.setAttribute('data-result', a.args.result);
        li.querySelector('.item-state').textContent = a.args.result.toUpperCase() + ' — kept, waiting to send';
      }
    } else if (a.type === 'file') {
      var box = document.getElementById('onsite');
      if (box) box.setAttribute('data-evidence', box.getAttribute('data-evidence') + ' ' + a.kind);
      var st = a.kind === 'signature' ? document.querySelector('.sig-state') : document.querySelector('.photo[data-kind="' + a.kind + '"] .photo-state');
      if (st) st.textContent = 'Kept, waiting to send.';
    } else if (a.command === 'accept_offer' || a.command === 'decline_offer') {
      // One answer per offer: the other buttons are spent.
      document.querySelectorAll('form[data-job="' + CSS.escape(a.job) + '"].accept button, form[data-job="' + CSS.escape(a.job) + '"].decline button')
        .forEach(function (x) { x.disabled = true; });
    }
    if (a.type === 'file' && a.kind === 'signature') {
      var save = document.getElementById('sig-save');
      if (save) save.disabled = true;
    }
    updateMissing();
  }
  // A refused action is undone on the page: what it showed as done is not.
  function markRefused(a) {
    if (a.command === 'complete_checklist_item') {
      var li = document.querySelector('li.item[data-item="' + CSS.escape(a.args.item_id) + '"]');
      if (li) {
        li.removeAttribute('data-result');
        li.querySelector('.item-state').textContent = 'Not recorded: refused (see the list at the top).';
      }
    } else if (a.command === 'check_in') {
      var c = document.getElementById('checkin'), on = document.getElementById('onsite');
      if (c) c.hidden = false;
      if (on) on.hidden = true;
    } else if (a.command === 'check_out') {
      var b = document.getElementById('checkout-button');
      if (b) b.disabled = false;
    } else if (a.type === 'file') {
      var box = document.getElementById('onsite');
      if (box) box.setAttribute('data-evidence', (box.getAttribute('data-evidence') || '').replace(new RegExp('(^| )' + a.kind + '( |$)'), ' '));
      var save = document.getElementById('sig-save');
      if (a.kind === 'signature' && save) save.disabled = false;
    } else if (a.command === 'accept_offer' || a.command === 'decline_offer') {
      document.querySelectorAll('form[data-job="' + CSS.escape(a.job) + '"] button').forEach(function (x) { x.disabled = false; });
    }
    updateMissing();
  }
  function markSent(a) {
    if (a.command === 'complete_checklist_item') {
      var li = document.querySelector('li.item[data-item="' + CSS.escape(a.args.item_id) + '"]');
      if (li) li.querySelector('.item-state').textContent = 'Recorded: ' + a.args.result.toUpperCase();
    } else if (a.type === 'file') {
      var st = a.kind === 'signature' ? document.querySelector('.sig-state') : document.querySelector('.photo[data-kind="' + a.kind + '"] .photo-state');
      if (st) st.textContent = 'Recorded.';
    }
  }

  function updateMissing() {
    var list = document.getElementById('missing');
    if (!list) return;
    var have = (document.getElementById('onsite').getAttribute('data-evidence') || '').split(' ');
    var open = 0, otherwise = 0;
    list.querySelectorAll('li[data-need]').forEach(function (li) {
      var need = li.getAttribute('data-need'), done = false;
      if (need.indexOf('item:') === 0) {
        var item = document.querySelector('li.item[data-item="' + CSS.escape(need.slice(5)) + '"]');
        done = !!(item && item.getAttribute('data-result'));
      } else if (need.indexOf('evidence:') === 0) {
        done = have.indexOf(need.slice(9)) >= 0;
      } else if (need === 'make_safe') {
        var m = document.getElementById('make-safe');
        done = !!(m && m.checked);
      } else if (need === 'door_locked_out') {
        done = !(outcome() === 'completed' && doorState() === 'locked_out');
      } else if (need === 'door_secured') {
        done = !(outcome() !== 'completed' && doorState() === 'operational');
        if (!done) otherwise++;
      }
      li.hidden = done;
      if (!done) open++;
    });
    document.getElementById('missing-none').hidden = open > 0;
    // A completed check-out needs the whole list; any other outcome only
    // a door left safe where triage asked for the make-safe.
    var blocked = outcome() === 'completed' ? open > 0 : otherwise > 0;
    var button = document.getElementById('checkout-button');
    if (button) button.setAttribute('aria-disabled', blocked ? 'true' : 'false');
    return outcome() === 'completed' ? open : otherwise;
  }
  function doorState() {
    var d = document.querySelector('#checkout-form input[name="door_left_state"]:checked');
    return d ? d.value : '';
  }
  function outcome() {
    var o = document.querySelector('#checkout-form input[name="outcome"]:checked');
    return o ? o.value : '';
  }

  // --- Forms -------------------------------------------------------------------
  function onSubmit(ev) {
    var form = ev.target;
    if (!form.classList || !form.classList.contains('field-action')) return;
    ev.preventDefault();
    var command = form.getAttribute('data-command'), job = form.getAttribute('data-job');
    var data = new FormData(form, ev.submitter || undefined);
    var args = {};
    if (command === 'accept_offer') {
      var minutes = parseInt(data.get('eta_minutes') || '60', 10);
      // On the service's clock: its time when the page was made, plus the
      // time since (a phone's own clock may be off).
      var serverNow = Date.parse(form.getAttribute('data-now') || '') || loadedAt;
      args.eta = new Date(serverNow + (Date.now() - loadedAt) + minutes * 60000).toISOString();
    } else if (command === 'decline_offer') {
      args.reason = data.get('reason');
    } else if (command === 'complete_checklist_item') {
      args = { item_id: data.get('item_id'), result: data.get('result') };
      var note = (data.get('note') || '').trim();
      if (note) args.note = note;
      if (args.result === 'fail' && !note) {
        var st = form.closest('li').querySelector('.item-state');
        st.textContent = 'Say what you found in the note before marking it failed.';
        form.querySelector('input[name="note"]').focus();
        return;
      }
      var li = form.closest('li');
      form.querySelectorAll('button').forEach(function (b) { b.setAttribute('aria-pressed', b.value === args.result ? 'true' : 'false'); });
      return enqueue({ type: 'command', job: job, command: command, args: args, text: li.getAttribute('data-text') });
    } else if (command === 'check_in') {
      return checkIn(form, job);
    } else if (command === 'check_out') {
      return checkOut(form, job, data);
    }
    return enqueue({ type: 'command', job: job, command: command, args: args });
  }

  // The phone's location against the site's: inside, checked in; outside or
  // unknown, the technician says why (the service decides and records it).
  var fix = null;
  function distance(lat1, lon1, lat2, lon2) {
    var r = 6371000, rad = Math.PI / 180;
    var dLat = (lat2 - lat1) * rad, dLon = (lon2 - lon1) * rad;
    var h = Math.sin(dLat / 2) * Math.sin(dLat / 2) + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) * Math.sin(dLon / 2);
    return 2 * r * Math.asin(Math.min(1, Math.sqrt(h)));
  }
  function checkIn(form, job) {
    var box = document.getElementById('checkin'), status = document.getElementById('geo-status');
    var reasonBox = document.getElementById('reason-box'), reason = document.getElementById('checkin-reason');
    var lat = parseFloat(box.getAttribute('data-site-lat')), lon = parseFloat(box.getAttribute('data-site-lon'));
    var radius = parseFloat(box.getAttribute('data-radius-m'));
    var located = !isNaN(lat) && !isNaN(lon);
    var send = function () {
      var args = { method: 'app' };
      if (fix) { args.lat = fix.lat; args.lon = fix.lon; args.accuracy_m = fix.accuracy; }
      var why = reason.value.trim();
      if (why) args.reason = why;
      return enqueue({ type: 'command', job: job, command: 'check_in', args: args });
    };
    if (!reasonBox.hidden) {
      if (!reason.value.trim()) { status.textContent = 'Say why you are checking in here.'; reason.focus(); return; }
      return send();
    }
    status.textContent = 'Finding your location…';
    var decide = function () {
      if (!located) return send();
      if (fix) {
        var d = distance(fix.lat, fix.lon, lat, lon);
        if (d <= radius) return send();
        status.textContent = 'You are ' + Math.round(d) + ' m from the site (it counts within ' + radius + ' m).';
      } else {
        status.textContent = 'Your location is not available.';
      }
      reasonBox.hidden = false;
      reason.focus();
    };
    if (!navigator.geolocation) { fix = null; return decide(); }
    navigator.geolocation.getCurrentPosition(function (p) {
      fix = { lat: p.coords.latitude, lon: p.coords.longitude, accuracy: Math.min(100000, Math.round(p.coords.accuracy)) };
      decide();
    }, function () { fix = null; decide(); }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
  }

  function checkOut(form, job, data) {
    var open = updateMissing();
    var blocked = document.getElementById('checkout-blocked');
    if (open > 0) {
      blocked.hidden = false;
      document.getElementById('missing').scrollIntoView();
      return;
    }
    blocked.hidden = true;
    var args = { outcome: data.get('outcome'), door_left_state: data.get('door_left_state'), resolution: (data.get('resolution') || '').trim() };
    if (document.getElementById('make-safe')) args.make_safe_confirmed = !!document.getElementById('make-safe').checked;
    args.parts = [];
    document.querySelectorAll('#part-rows .part-row').forEach(function (row) {
      var v = function (n) { return row.querySelector('[name="' + n + '"]').value.trim(); };
      args.parts.push({ part_number: v('part_number'), description: v('description'), quantity: parseInt(v('quantity'), 10),
        unit_price_cents: Math.round(parseFloat(v('unit_price') || '0') * 100) });
    });
    args.deficiencies = [];
    var items = [];
    document.querySelectorAll('li.item').forEach(function (li) {
      var r = li.getAttribute('data-result'), note = li.querySelector('input[name="note"]').value.trim();
      items.push({ id: li.getAttribute('data-item'), text: li.getAttribute('data-text'), result: r || null, note: note || null });
      if (r === 'fail') args.deficiencies.push({ item_id: li.getAttribute('data-item'), description: note || li.getAttribute('data-text') });
    });
    var chain = Promise.resolve();
    var have = (document.getElementById('onsite').getAttribute('data-evidence') || '').split(' ');
    if (form.getAttribute('data-checklist-form') === 'true' && have.indexOf('checklist_form') < 0) {
      var doc = { form: 'checklist', job_id: job, sop: document.getElementById('onsite').getAttribute('data-sop'),
        technician_id: bar.getAttribute('data-technician'), completed_at: new Date().toISOString(), items: items };
      var blob = new Blob([JSON.stringify(doc)], { type: 'application/json' });
      chain = enqueue({ type: 'file', job: job, kind: 'checklist_form', content_type: 'application/json', blob: blob });
    }
    form.querySelector('#checkout-button').disabled = true;
    return chain.then(function () { return enqueue({ type: 'command', job: job, command: 'check_out', args: args }); });
  }

  // --- Photos and the signature --------------------------------------------------
  var MAX_SIDE = 1600;
  function shrink(file) {
    if (!/^image\/(jpeg|png|webp)$/.test(file.type) || !window.createImageBitmap) return Promise.resolve(file);
    return createImageBitmap(file).then(function (img) {
      var scale = Math.min(1, MAX_SIDE / Math.max(img.width, img.height));
      if (scale === 1 && file.size < 1500000) return file;
      var c = document.createElement('canvas');
      c.width = Math.round(img.width * scale);
      c.height = Math.round(img.height * scale);
      c.getContext('2d').drawImage(img, 0, 0, c.width, c.height);
      return new Promise(function (resolve) { c.toBlob(function (b) { resolve(b || file); }, 'image/jpeg', 0.82); });
    }, function () { return file; });
  }
  function onFile(ev) {
    var input = ev.target;
    if (!input.classList || !input.classList.contains('camera') || !input.files.length) return;
    var file = input.files[0], kind = input.getAttribute('data-kind'), job = input.getAttribute('data-job');
    shrink(file).then(function (blob) {
      var box = input.closest('.photo');
      var old = box.querySelector('img');
      if (old) old.remove();
      if (/^image\//.test(blob.type)) {
        var img = document.createElement('img');
        img.alt = kind.replace(/_/g, ' ');
        img.src = URL.createObjectURL(blob);
        box.appendChild(img);
      }
      input.value = '';
      return enqueue({ type: 'file', job: job, kind: kind, content_type: blob.type || 'application/octet-stream', blob: blob });
    }).catch(function () {});
  }

  function signaturePad() {
    var pad = document.getElementById('sig-pad');
    if (!pad) return;
    var ctx = pad.getContext('2d'), strokes = 0, drawing = false;
    ctx.lineWidth = 3; ctx.lineCap = 'round'; ctx.strokeStyle = '#111111';
    var at = function (e) {
      var r = pad.getBoundingClientRect();
      return { x: (e.clientX - r.left) * pad.width / r.width, y: (e.clientY - r.top) * pad.height / r.height };
    };
    pad.addEventListener('pointerdown', function (e) {
      drawing = true; strokes++;
      var p = at(e); ctx.beginPath(); ctx.moveTo(p.x, p.y);
      try { pad.setPointerCapture(e.pointerId); } catch (err) { /* a pointer that cannot be captured still draws */ }
    });
    pad.addEventListener('pointermove', function (e) { if (!drawing) return; var p = at(e); ctx.lineTo(p.x, p.y); ctx.stroke(); });
    pad.addEventListener('pointerup', function () { drawing = false; });
    pad.addEventListener('pointercancel', function () { drawing = false; });
    var state = document.querySelector('.sig-state');
    document.getElementById('sig-clear').addEventListener('click', function () { ctx.clearRect(0, 0, pad.width, pad.height); strokes = 0; state.textContent = ''; });
    document.getElementById('sig-save').addEventListener('click', function () {
      if (!strokes) { state.textContent = 'Ask the customer to sign in the box first.'; return; }
      pad.toBlob(function (blob) {
        enqueue({ type: 'file', job: pad.closest('.signature').getAttribute('data-job'), kind: 'signature', content_type: 'image/png', blob: blob }).catch(function () {});
      }, 'image/png');
    });
  }

  function parts() {
    var add = document.getElementById('add-part');
    if (!add) return;
    add.addEventListener('click', function () {
      var row = document.getElementById('part-row').content.firstElementChild.cloneNode(true);
      row.querySelector('.remove-part').addEventListener('click', function () { row.remove(); });
      document.getElementById('part-rows').appendChild(row);
      row.querySelector('input').focus();
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    bar = document.getElementById('field-sync');
    if (!bar) return;
    csrf = bar.getAttribute('data-csrf');
    document.addEventListener('submit', function (ev) {
      var r = onSubmit(ev);
      if (r && r.catch) r.catch(function () {});
    });
    document.addEventListener('change', function (ev) {
      onFile(ev);
      if (ev.target.closest && ev.target.closest('#checkout-form')) updateMissing();
    });
    signaturePad();
    parts();
    if (navigator.serviceWorker) navigator.serviceWorker.register('/ui/field-sw.js', { scope: '/ui/field' }).catch(function () {});
    // Logging out forgets the pages kept for opening without signal.
    document.querySelectorAll('form[action="/ui/logout"]').forEach(function (f) {
      f.addEventListener('submit', function (ev) {
        if (!window.caches || f.getAttribute('data-cleared')) return;
        ev.preventDefault();
        f.setAttribute('data-cleared', 'true');
        caches.delete('dispatch-field-pages-v1').then(function () { f.submit(); }, function () { f.submit(); });
      });
    });
    window.addEventListener('online', function () { retryDelay = 2000; report().then(pump); });
    setInterval(report, 60000);
    window.addEventListener('offline', function () { render(); });
    open().then(function (d) {
      db = d;
      return all();
    }).then(function (list) {
      list.forEach(function (a) { if (a.state === 'pending') applyLocal(a); });
      updateMissing();
      return render();
    }).then(report).then(pump, function () { say('refused', 'This browser cannot keep work offline (storage is blocked).'); });
  });
})();
