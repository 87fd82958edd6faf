/*
 * Triage statechart debugger — plain browser JavaScript, no framework, no build step.
 *
 * Data: GET /debug/machines (+ each machine's SVG) once, then the /debug/live WebSocket.
 * Auth: the page's own ?token= is passed on (Authorization header for fetches, ?token= for the socket).
 * Lighting: states are <g class="state" data-state-id="…">; the server sends the active ids and this
 * page toggles the `active` class on them (and on the transition last taken).
 */
(function () {
  'use strict';

  var params = new URLSearchParams(location.search);
  var token = params.get('token') || '';
  var MAX_LISTED = 300;

  var state = {
    groups: new Map(), // model -> {model, state, stateIds}
    queue: new Map(), // model -> queue snapshot (waiters, deployments, log, …)
    requests: new Map(), // id -> summary
    selectedGroup: null,
    selectedRequest: null,
    timeline: [],
    lastSchedulerLeaf: new Map(),
    ws: null,
    retryMs: 500,
    limits: null,
    /** The gateway's clock at the last queue message (for ages of live requests). */
    serverAt: null,
  };

  // ---------------------------------------------------------------------------------------------
  // small DOM helpers (text only: nothing from the server is ever parsed as HTML except our SVGs)

  function $(id) {
    return document.getElementById(id);
  }

  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, k) || attrs[k] === undefined || attrs[k] === null) continue;
        if (k === 'class') el.className = attrs[k];
        else if (k === 'text') el.textContent = attrs[k];
        else if (k.indexOf('on') === 0) el.addEventListener(k.slice(2), attrs[k]);
        else el.setAttribute(k, attrs[k]);
      }
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function stateName(value) {
    if (typeof value === 'string') return value;
    if (value && typeof value === 'object') {
      var keys = Object.keys(value);
      if (keys.length === 1) return keys[0] + '.' + stateName(value[keys[0]]);
      return keys.join(' | ');
    }
    return String(value);
  }

  function stateClass(value) {
    var name = stateName(value).split('.').pop();
    return 'st-' + String(name).replace(/[^a-z0-9_-]/gi, '');
  }

  function badge(el, value) {
    el.className = 'badge ' + stateClass(value);
    el.textContent = stateName(value);
  }

  function shortId(id) {
    return String(id).slice(0, 8);
  }

  function pad(n, w) {
    var s = String(n);
    while (s.length < w) s = '0' + s;
    return s;
  }

  function clockTime(ms) {
    var d = new Date(ms);
    return pad(d.getHours(), 2) + ':' + pad(d.getMinutes(), 2) + ':' + pad(d.getSeconds(), 2) + '.' + pad(d.getMilliseconds(), 3);
  }

  function duration(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return '–';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
    var m = Math.floor(ms / 60000);
    return m + ' m ' + Math.round((ms % 60000) / 1000) + ' s';
  }

  /** The gateway clock's time at its last queue message (never before `floor`). */
  function serverNow(floor) {
    return state.serverAt === null ? floor : Math.max(floor, state.serverAt);
  }

  function withToken(url) {
    if (!token) return url;
    return url + (url.indexOf('?') >= 0 ? '&' : '?') + 'token=' + encodeURIComponent(token);
  }

  function api(path, as) {
    var headers = token ? { Authorization: 'Bearer ' + token } : {};
    return fetch(path, { headers: headers, cache: 'no-cache' }).then(function (res) {
      if (res.status === 401) {
        showAuth(token ? 'That key was not accepted; the debugger needs the master key.' : '');
        throw new Error('unauthorized');
      }
      if (!res.ok) throw new Error(path + ' answered ' + res.status);
      return as === 'text' ? res.text() : res.json();
    });
  }

  function showAuth(message) {
    $('auth').hidden = false;
    $('auth-error').textContent = message || '';
    $('auth-key').focus();
  }

  $('auth-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var key = $('auth-key').value.trim();
    if (!key) return;
    var p = new URLSearchParams(location.search);
    p.set('token', key);
    location.search = p.toString();
  });

  // ---------------------------------------------------------------------------------------------
  // statecharts

  function chartOf(machineId) {
    return document.querySelector('.chart[data-machine="' + machineId + '"]');
  }

  function loadMachines() {
    return api('/debug/machines').then(function (machines) {
      return Promise.all(
        machines.map(function (m) {
          return api(m.svg, 'text').then(function (svg) {
            var box = chartOf(m.id);
            if (!box) {
              // A machine this page has no panel for: draw it at the end.
              var panel = h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', { text: m.title })));
              box = h('div', { class: 'chart wide', 'data-machine': m.id });
              panel.appendChild(box);
              document.querySelector('.main').appendChild(panel);
            }
            box.innerHTML = svg; // our own server's drawing of our own machine
            box.setAttribute('data-loaded', String(m.states.length));
            box.title = m.description;
          });
        }),
      );
    });
  }

  /** Lights exactly `ids` in a machine's drawing, and the transition last taken if known. */
  function light(machineId, ids, transition) {
    var box = chartOf(machineId);
    if (!box) return;
    var want = new Set(ids || []);
    box.querySelectorAll('[data-state-id]').forEach(function (g) {
      g.classList.toggle('active', want.has(g.getAttribute('data-state-id')));
    });
    box.querySelectorAll('.transition.active').forEach(function (g) {
      g.classList.remove('active');
    });
    if (transition && transition.source && transition.target) {
      var sel = '.transition[data-source="' + cssEscape(transition.source) + '"][data-target="' + cssEscape(transition.target) + '"]';
      var candidates = box.querySelectorAll(sel);
      var pick = null;
      candidates.forEach(function (g) {
        if (!pick || g.getAttribute('data-event-type') === transition.eventType) pick = g;
      });
      if (pick) pick.classList.add('active');
    }
  }

  function cssEscape(s) {
    return window.CSS && CSS.escape ? CSS.escape(s) : String(s).replace(/["\\]/g, '\\$&');
  }

  function leaf(ids) {
    return ids && ids.length ? ids[ids.length - 1] : null;
  }

  // ---------------------------------------------------------------------------------------------
  // sidebar

  function renderGroups() {
    var ul = clear($('groups'));
    state.groups.forEach(function (g, model) {
      var q = state.queue.get(model);
      var stats = q ? q.waiting + ' waiting · ' + q.inFlight + ' in flight · ' + q.deployments.length + ' deployment' + (q.deployments.length === 1 ? '' : 's') : '';
      var b = h('span');
      badge(b, g.state);
      ul.appendChild(
        h(
          'li',
          {
            class: model === state.selectedGroup ? 'selected' : '',
            'data-model': model,
            onclick: function () {
              selectGroup(model);
            },
          },
          h('span', { class: 'g-name', text: model }),
          b,
          h('span', { class: 'g-stats', text: stats }),
        ),
      );
    });
  }

  var requestsDirty = false;
  function scheduleRequests() {
    if (requestsDirty) return;
    requestsDirty = true;
    requestAnimationFrame(function () {
      requestsDirty = false;
      renderRequests();
    });
  }

  function renderRequests() {
    var filter = $('req-filter').value.trim().toLowerCase();
    var all = Array.from(state.requests.values()).sort(function (a, b) {
      return b.firstAt - a.firstAt;
    });
    var shown = all.filter(function (r) {
      if (!filter) return true;
      return (r.id + ' ' + r.model + ' ' + stateName(r.state) + ' ' + (r.tenant || '') + ' ' + (r.deployment || '')).toLowerCase().indexOf(filter) >= 0;
    });
    $('req-count').textContent = all.length ? String(all.length) : '';
    $('requests-empty').hidden = all.length > 0;
    var ul = clear($('requests'));
    shown.slice(0, MAX_LISTED).forEach(function (r) {
      var b = h('span');
      badge(b, r.state);
      var sub = r.model + (r.priority !== null && r.priority !== undefined ? ' · p' + r.priority : '') + (r.tenant ? ' · ' + r.tenant : '') + (r.deployment ? ' · ' + r.deployment : '');
      ul.appendChild(
        h(
          'li',
          {
            class: r.id === state.selectedRequest ? 'selected' : '',
            'data-request-id': r.id,
            title: r.id,
            onclick: function () {
              selectRequest(r.id);
            },
          },
          h('span', { class: 'r-dot ' + stateClass(r.state) }),
          h('span', { class: 'r-id', text: shortId(r.id) }),
          b,
          h('span', { class: 'r-sub', text: sub + ' · ' + (r.finished ? duration(r.lastAt - r.firstAt) : clockTime(r.firstAt)) }),
        ),
      );
    });
  }

  $('req-filter').addEventListener('input', renderRequests);

  // ---------------------------------------------------------------------------------------------
  // group panel

  function selectGroup(model) {
    state.selectedGroup = model;
    renderGroups();
    renderGroupPanel();
  }

  function meter(label, used, limit) {
    var ratio = limit ? Math.min(1, used / limit) : 0;
    var cls = 'bar' + (limit === null || limit === undefined ? ' none' : ratio >= 1 ? ' full' : ratio >= 0.8 ? ' warn' : '');
    var bar = h('div', { class: cls }, h('span', { style: 'width:' + (limit ? Math.max(ratio * 100, used > 0 ? 3 : 0) : 0).toFixed(1) + '%' }));
    return h('div', { class: 'meter' }, h('span', { class: 'k', text: label }), bar, h('span', { class: 'v', text: used + ' / ' + (limit === null || limit === undefined ? '∞' : limit) }));
  }

  function stat(label, value) {
    return h('div', { class: 'stat' }, h('div', { class: 'v', text: String(value) }), h('div', { class: 'k', text: label }));
  }

  function renderGroupPanel() {
    var model = state.selectedGroup;
    var g = model ? state.groups.get(model) : null;
    $('group-name').textContent = model || '';
    if (!g) {
      $('group-state').textContent = '';
      return;
    }
    badge($('group-state'), g.state);
    light('scheduler', g.stateIds, g.transition);

    var q = state.queue.get(model);
    var stats = clear($('group-stats'));
    if (q) {
      stats.appendChild(stat('waiting', q.waiting));
      stats.appendChild(stat('in flight', q.inFlight));
      stats.appendChild(stat('oldest wait', duration(q.oldestWaitMs)));
      var depth = q.depthByPriority || {};
      stats.appendChild(stat('priorities', Object.keys(depth).length ? Object.keys(depth).map(function (p) { return 'p' + p + ':' + depth[p]; }).join(' ') : '–'));
    }

    var tbody = clear(document.querySelector('#waiters tbody'));
    var waiters = (q && q.waiters) || [];
    waiters.forEach(function (w) {
      tbody.appendChild(
        h(
          'tr',
          { 'data-waiter-id': w.id },
          h('td', { class: 'num', text: String(w.position + 1) }),
          h('td', null, h('span', { class: 'link', title: w.id, text: shortId(w.id), onclick: function () { selectRequest(w.id); } })),
          h('td', { class: 'num', text: String(w.priority) }),
          h('td', { class: 'num', text: String(Math.round(w.effectivePriority * 100) / 100) }),
          h('td', { text: w.tenant || '–' }),
          h('td', { class: 'num', text: duration(w.waitedMs) }),
        ),
      );
    });
    $('waiters-empty').hidden = waiters.length > 0;
    if (q && q.waiting > waiters.length) {
      tbody.appendChild(h('tr', null, h('td', { colspan: '6', class: 'empty small', text: '… and ' + (q.waiting - waiters.length) + ' more' })));
    }

    var deps = clear($('deployments'));
    ((q && q.deployments) || []).forEach(function (d) {
      var cooling = d.coolingDownUntil ? h('span', { class: 'dep-cool', text: 'cooldown ' + duration(d.coolingDownUntil - (q.at || Date.now())) }) : null;
      // The provider's own rate-limit headers said a limit is used up until this reset.
      var limited = d.upstreamBlockedUntil ? h('span', { class: 'dep-cool', text: 'provider limit ' + duration(d.upstreamBlockedUntil - (q.at || Date.now())) }) : null;
      deps.appendChild(
        h(
          'div',
          { class: 'dep', 'data-deployment': d.id },
          h('div', { class: 'dep-head' }, h('span', { class: 'dep-name', text: d.id }), cooling, limited),
          meter('in flight', d.inFlight, d.maxParallelRequests),
          meter('rpm', d.rpmUsed, d.rpm),
          meter('tpm', d.tpmUsed, d.tpm),
        ),
      );
    });

    var log = clear($('sched-log'));
    ((q && q.log) || []).slice().reverse().forEach(function (e) {
      log.appendChild(
        h('li', { class: e.changed ? 'changed' : '' }, h('span', { class: 't', text: clockTime(e.at) }), h('span', { text: e.type }), h('span', { class: 't', text: stateName(e.state) })),
      );
    });
  }

  // ---------------------------------------------------------------------------------------------
  // request panel

  function selectRequest(id) {
    state.selectedRequest = id;
    state.timeline = [];
    var r = state.requests.get(id);
    if (r && r.model && state.groups.has(r.model) && r.model !== state.selectedGroup) selectGroup(r.model);
    renderRequests();
    renderRequestPanel();
    send({ type: 'select', request: id });
  }

  function renderMeta(r) {
    var dl = clear($('req-meta'));
    function item(k, v) {
      if (v === null || v === undefined || v === '') return;
      dl.appendChild(h('div', null, h('dt', { text: k }), h('dd', { text: String(v) })));
    }
    if (!r) return;
    item('model', r.model);
    item('priority', r.priority);
    item('tenant', r.tenant || null);
    item('deployment', r.deployment);
    item('started', clockTime(r.firstAt));
    item(r.finished ? 'took' : 'age', duration((r.finished ? r.lastAt : serverNow(r.lastAt)) - r.firstAt));
    item('entries', r.entries + (r.dropped ? ' (+' + r.dropped + ' dropped)' : ''));
  }

  function payloadCell(p) {
    if (p === undefined) return h('td', { class: 'payload' });
    var text = JSON.stringify(p);
    var pretty = JSON.stringify(p, null, 2);
    return h('td', { class: 'payload' }, h('details', null, h('summary', { text: text.length > 140 ? text.slice(0, 140) + '…' : text }), h('pre', { text: pretty })));
  }

  function peerCell(e) {
    if (e.kind === 'transition') {
      var td = h('td');
      if (e.from !== undefined) {
        td.appendChild(h('span', { class: 'badge ' + stateClass(e.from), text: stateName(e.from) }));
        td.appendChild(h('span', { class: 'arrow', text: '→' }));
      }
      td.appendChild(h('span', { class: 'badge ' + stateClass(e.state), text: stateName(e.state) }));
      return td;
    }
    if (e.kind === 'sent') return h('td', { class: 'peer', text: 'to ' + (e.to || '?') });
    if (e.kind === 'event') return h('td', { class: 'peer', text: e.source ? 'from ' + e.source : '' });
    return h('td', { class: 'peer', text: 'event bus' });
  }

  function renderTimeline() {
    var tbody = clear(document.querySelector('#timeline tbody'));
    var showEvents = $('show-events').checked;
    var showSent = $('show-sent').checked;
    var first = state.timeline.length ? state.timeline[0].at : 0;
    var lastTransition = null;
    state.timeline.forEach(function (e) {
      if (e.kind === 'transition') lastTransition = e;
    });
    state.timeline.forEach(function (e) {
      if ((e.kind === 'event' && !showEvents) || (e.kind === 'sent' && !showSent)) return;
      var cls = 'entry kind-' + e.kind + (e.changed ? ' changed' : '') + (e === lastTransition ? ' latest' : '');
      tbody.appendChild(
        h(
          'tr',
          { class: cls, 'data-n': String(e.n) },
          h('td', { class: 'num', text: String(e.n) }),
          h('td', { class: 'time', text: clockTime(e.at) }),
          h('td', { class: 'num', text: '+' + (e.at - first) }),
          h('td', null, h('span', { class: 'kind', text: e.kind })),
          h('td', { class: 'ev', text: e.type }),
          peerCell(e),
          payloadCell(e.payload),
        ),
      );
    });
    var r = state.requests.get(state.selectedRequest);
    $('timeline-empty').hidden = !!state.selectedRequest;
    var note = '';
    if (state.selectedRequest) {
      note = state.timeline.length + ' entries';
      if (r && r.dropped) note += ', ' + r.dropped + ' older dropped';
      if (r && !r.inspected) note += ' · recorded from the event bus (it started before the debugger was open)';
    }
    $('timeline-note').textContent = note;
  }

  $('show-events').addEventListener('change', renderTimeline);
  $('show-sent').addEventListener('change', renderTimeline);

  function lastTransitionEdge() {
    var prev = null;
    var last = null;
    state.timeline.forEach(function (e) {
      if (e.kind !== 'transition' || !e.stateIds) return;
      if (e.changed) {
        last = { from: prev, to: e };
      }
      prev = e;
    });
    if (!last || !last.from) return null;
    return { source: leaf(last.from.stateIds), target: leaf(last.to.stateIds), eventType: last.to.type };
  }

  function renderRequestPanel() {
    var id = state.selectedRequest;
    var r = id ? state.requests.get(id) : null;
    $('req-id').textContent = id || '';
    $('request-panel').setAttribute('data-request-id', id || '');
    if (r) badge($('req-state'), r.state);
    else $('req-state').textContent = '';
    chartOf('request') && chartOf('request').classList.toggle('dim', !r);
    renderMeta(r);
    light('request', r ? r.stateIds : [], r ? lastTransitionEdge() : null);
    renderTimeline();
  }

  // ---------------------------------------------------------------------------------------------
  // live connection

  function setConn(s, text) {
    $('conn').setAttribute('data-state', s);
    $('conn-text').textContent = text;
  }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
  }

  function mergeSummary(s) {
    state.requests.set(s.id, s);
    if (state.limits && state.requests.size > state.limits.maxRequests) {
      // Keep the page's list as bounded as the server's history: drop the oldest finished first.
      var oldest = null;
      state.requests.forEach(function (r) {
        if (r.id !== state.selectedRequest && (!oldest || r.lastAt < oldest.lastAt)) oldest = r;
      });
      if (oldest) state.requests.delete(oldest.id);
    }
  }

  var handlers = {
    init: function (m) {
      state.limits = m.limits;
      $('limits').textContent = 'history: last ' + m.limits.maxRequests + ' requests · ' + m.limits.maxTimelineEntries + ' entries each';
      state.groups = new Map();
      m.groups.forEach(function (g) {
        state.groups.set(g.model, g);
      });
      state.requests = new Map();
      m.requests.forEach(mergeSummary);
      if (!state.selectedGroup || !state.groups.has(state.selectedGroup)) state.selectedGroup = m.groups.length ? m.groups[0].model : null;
      renderGroups();
      renderGroupPanel();
      renderRequests();
      if (state.selectedRequest) send({ type: 'select', request: state.selectedRequest });
      else renderRequestPanel();
    },
    queue: function (m) {
      state.serverAt = m.at;
      m.groups.forEach(function (q) {
        q.at = m.at;
        state.queue.set(q.model, q);
        var g = state.groups.get(q.model);
        if (g && q.state !== undefined && stateName(g.state) !== stateName(q.state)) {
          state.groups.set(q.model, { model: q.model, state: q.state, stateIds: q.stateIds, transition: transitionFor(g, q) });
        }
      });
      renderGroups();
      renderGroupPanel();
      var sel = state.selectedRequest && state.requests.get(state.selectedRequest);
      if (sel && !sel.finished) renderMeta(sel);
    },
    scheduler: function (m) {
      var prev = state.groups.get(m.model);
      // A queue message may have brought this state already: keep the transition it lit.
      if (prev && stateName(prev.state) === stateName(m.state)) return;
      state.groups.set(m.model, { model: m.model, state: m.state, stateIds: m.stateIds, transition: transitionFor(prev, m) });
      renderGroups();
      if (m.model === state.selectedGroup) renderGroupPanel();
    },
    requests: function (m) {
      if (m.full) state.requests = new Map();
      m.requests.forEach(mergeSummary);
      scheduleRequests();
      if (state.selectedRequest && m.requests.some(function (r) { return r.id === state.selectedRequest; })) renderRequestPanel();
    },
    request: function (m) {
      if (m.id !== state.selectedRequest) return;
      state.timeline = m.timeline || [];
      if (m.request) mergeSummary(m.request);
      renderRequestPanel();
      scheduleRequests();
    },
    entry: function (m) {
      if (m.request !== state.selectedRequest) return;
      var last = state.timeline.length ? state.timeline[state.timeline.length - 1].n : 0;
      if (m.entry.n <= last) return;
      state.timeline.push(m.entry);
      var max = state.limits ? state.limits.maxTimelineEntries : 200;
      if (state.timeline.length > max) state.timeline.splice(0, state.timeline.length - max);
      mergeSummary(m.summary);
      renderRequestPanel();
      scheduleRequests();
    },
    lagged: function () {
      // Something was dropped while this tab was behind: ask for the selected timeline again.
      if (state.selectedRequest) send({ type: 'select', request: state.selectedRequest });
    },
    pong: function () {},
    error: function (m) {
      console.warn('debugger:', m.error && m.error.message);
    },
  };

  function transitionFor(prev, next) {
    if (!prev || !prev.stateIds || !next.stateIds) return null;
    return { source: leaf(prev.stateIds), target: leaf(next.stateIds) };
  }

  function connect() {
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + withToken('/debug/live');
    setConn('connecting', 'connecting…');
    var ws = new WebSocket(url);
    state.ws = ws;
    ws.onopen = function () {
      state.retryMs = 500;
      setConn('live', 'live');
    };
    ws.onmessage = function (ev) {
      var m;
      try {
        m = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      var fn = handlers[m.type];
      if (fn) fn(m);
    };
    ws.onclose = function () {
      if (state.ws !== ws) return;
      setConn('closed', 'disconnected — retrying');
      setTimeout(connect, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, 10000);
    };
  }

  // Drawings first (so lighting has something to light), then the live feed.
  loadMachines().then(
    function () {
      connect();
    },
    function (e) {
      if (String(e && e.message) !== 'unauthorized') {
        setConn('closed', 'could not load the statecharts');
        console.error(e);
      } else {
        setConn('closed', 'key required');
      }
    },
  );
})();
