// @ts-check
/* global document, location, window, URL, WebSocket, CSS, fetch, setTimeout, setInterval */
/*
 * The console's one client module (progressive enhancement: every page works without it). It never builds
 * markup from strings it received: stream rows are made with createElement/textContent, and refreshed
 * fragments are HTML the server escaped by construction.
 */

/** Live rows on the events page from /v1/stream (the session cookie authenticates the websocket). */
function liveEvents() {
  const marker = /** @type {HTMLElement | null} */ (document.querySelector('[data-stream]'));
  const tbody = document.querySelector('#events tbody');
  if (!marker || !tbody) return;
  const zone = marker.dataset.zone ?? '';
  let delay = 1000;
  const connect = () => {
    const url = new URL(marker.dataset.stream ?? '/v1/stream', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url, ['vigil.v1']);
    ws.onopen = () => {
      delay = 1000;
      marker.dataset.connected = 'true';
    };
    ws.onmessage = (m) => {
      /** @type {{type: string, event?: any}} */
      const msg = JSON.parse(String(m.data));
      if (msg.type !== 'event' || !msg.event) return;
      const e = msg.event;
      if (zone !== '' && !(Array.isArray(e.zones) && e.zones.includes(zone))) return;
      if (tbody.querySelector(`tr[data-event="${CSS.escape(String(e.event_id))}"]`)) return;
      tbody.prepend(row(e));
      document.querySelector('p.empty')?.remove();
      while (tbody.children.length > 200) tbody.lastElementChild?.remove();
    };
    ws.onclose = () => {
      marker.dataset.connected = 'false';
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30_000);
    };
  };
  connect();
}

/** @param {string} text */
function muted(text) {
  const span = document.createElement('span');
  span.className = 'muted';
  span.textContent = text;
  return span;
}

/** @param {any} e an event as GET /v1/events/{id} shows it */
function row(e) {
  const tr = document.createElement('tr');
  tr.dataset.event = String(e.event_id);
  tr.className = 'new';
  const cell = (/** @type {Node | string} */ content) => {
    const td = document.createElement('td');
    td.append(content);
    tr.append(td);
  };
  if (e.snapshot && typeof e.snapshot.media_id === 'string') {
    const img = document.createElement('img');
    img.className = 'thumb';
    img.src = `/console/media/${encodeURIComponent(e.snapshot.media_id)}`;
    img.alt = `Snapshot: ${e.label} on ${e.camera_id}`;
    img.width = 96;
    img.height = 54;
    // A snapshot this user may not open (the server leaves those out of its own rows): no broken image.
    img.addEventListener('error', () => img.replaceWith(muted('not shown')), { once: true });
    cell(img);
  } else cell(muted('none'));
  const a = document.createElement('a');
  a.href = `/console/events/${encodeURIComponent(e.event_id)}`;
  a.textContent = `${String(e.occurred_at).slice(0, 19).replace('T', ' ')}Z`;
  cell(a);
  for (const v of [
    e.site_id,
    e.device_id,
    e.camera_id,
    e.label,
    Number(e.score).toFixed(2),
    (e.zones ?? []).join(', '),
  ])
    cell(String(v));
  cell('no'); // a new event is not reviewed yet
  return tr;
}

/** Elements with data-refresh: their server-rendered content is fetched again every 2 s. */
function refresh() {
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('[data-refresh]'))) {
    const url = el.dataset.refresh ?? '';
    setInterval(async () => {
      // Not while the user is about to press one of its buttons.
      if (el.contains(document.activeElement)) return;
      const r = await fetch(url, { credentials: 'same-origin', headers: { accept: 'text/html' } }).catch(
        () => undefined,
      );
      if (r?.ok && r.headers.get('content-type')?.startsWith('text/html')) el.innerHTML = await r.text();
    }, 2000);
  }
}

/** Forms with data-confirm ask first (abort). */
function confirmations() {
  document.addEventListener('submit', (ev) => {
    const form = /** @type {HTMLFormElement} */ (ev.target);
    const question = form.dataset.confirm;
    if (question && !window.confirm(question)) ev.preventDefault();
  });
}

liveEvents();
refresh();
confirmations();
