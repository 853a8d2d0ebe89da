// Vidar's operator page: live tiles (SSE + JPEG), trajectory search, cluster view.
// Every text from the API goes into the DOM through textContent or attributes
// set one by one, never parsed as HTML.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const STATE_NAMES = { streaming: 'streaming', connecting: 'connecting', backing_off: 'reconnecting', failed: 'failed', stopped: 'stopped' };

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, String(v));
      else e[k] = v;
    }
    for (const c of children) {
      if (c == null) continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  async function api(path, init) {
    const r = await fetch(path, Object.assign({ credentials: 'same-origin', headers: { Accept: 'application/json' } }, init));
    if (r.status === 401) { location.assign('/login'); throw new Error('logged out'); }
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.error || ('HTTP ' + r.status));
    return j;
  }

  const fmtTime = (ms) => new Date(ms).toLocaleString();
  const fmtDur = (ms) => (ms >= 60000 ? (ms / 60000).toFixed(1) + ' min' : (ms / 1000).toFixed(1) + ' s');
  // Identity ids carry the minting node's 16-bit prefix above a 48-bit
  // sequence number, so they exceed 2^53: the API writes them as exact decimal
  // strings and this page keeps them as strings (BigInt for arithmetic). They
  // are shown as p<prefix in hex>.<sequence> (p12 when there is no prefix).
  const SEQ_BITS = 48n;
  const idText = (s) => {
    try {
      const v = BigInt(s);
      const pre = v >> SEQ_BITS;
      const seq = v & ((1n << SEQ_BITS) - 1n);
      return pre ? 'p' + pre.toString(16) + '.' + seq : 'p' + seq;
    } catch (e) {
      return 'p' + s;
    }
  };

  // ---- live tiles ----
  const tiles = new Map();

  function tileView(camera) {
    let t = tiles.get(camera);
    if (t) return t;
    const img = el('img', { alt: 'Camera ' + camera });
    const canvas = el('canvas', { title: 'Click a person to search their trajectory' });
    const frame = el('div', { class: 'frame' }, img, canvas);
    const badge = el('span', { class: 'badge' });
    const node = el('span', { class: 'muted node' });
    const stats = el('span', { class: 'muted stats' });
    const when = el('span', { class: 'muted when' });
    const who = el('div', { class: 'who-list' });
    const root = el('article', { class: 'tile', 'data-camera': camera },
      frame, el('div', { class: 'caption' }, el('span', { class: 'cam' }, camera), badge, node, stats, when), who);
    t = { root, img, canvas, badge, node, stats, when, who, meta: null, shownSeq: -1 };
    img.addEventListener('load', () => draw(t));
    canvas.addEventListener('click', (ev) => clickTile(t, ev));
    tiles.set(camera, t);
    const list = $('tiles');
    const after = [...list.children].find((c) => c.dataset.camera > camera);
    list.insertBefore(root, after || null);
    $('no-tiles').hidden = true;
    addCameraOption(camera);
    return t;
  }

  function updateTile(m) {
    const t = tileView(m.camera);
    t.meta = m;
    const state = m.stale ? 'stale' : m.state;
    t.root.classList.toggle('stale', !!m.stale);
    t.badge.className = 'badge ' + state;
    t.badge.textContent = m.stale ? 'stale' : (STATE_NAMES[m.state] || m.state);
    t.node.textContent = 'on ' + m.node;
    t.stats.textContent = m.fps.toFixed(1) + ' fps · ' + m.dropped + ' dropped';
    t.when.textContent = new Date(m.captured_ms).toLocaleTimeString();
    t.when.dataset.captured = String(m.captured_ms);
    t.who.replaceChildren(...m.boxes.filter((b) => b.identity != null).map((b) =>
      el('button', { type: 'button', class: 'who', 'data-identity': b.identity, title: 'Trajectory of ' + idText(b.identity), onclick: () => searchIdentity(b.identity) }, idText(b.identity))));
    if (m.has_image && m.seq !== t.shownSeq) {
      t.shownSeq = m.seq;
      t.img.src = '/api/tiles/' + encodeURIComponent(m.camera) + '.jpg?v=' + m.seq;
    } else if (!m.has_image) {
      t.img.removeAttribute('src');
      draw(t);
    }
    $('live-count').textContent = '(' + tiles.size + ')';
  }

  function draw(t) {
    const m = t.meta;
    const c = t.canvas;
    if (!m) return;
    c.width = m.width || 1;
    c.height = m.height || 1;
    const g = c.getContext('2d');
    g.clearRect(0, 0, c.width, c.height);
    if (!m.has_image) return;
    const lw = Math.max(2, c.width / 320);
    g.lineWidth = lw;
    g.font = Math.round(Math.max(12, c.width / 40)) + 'px sans-serif';
    for (const b of m.boxes) {
      const col = b.identity != null ? '#2ecc71' : '#f1c40f';
      g.strokeStyle = col;
      g.strokeRect(b.bbox.x, b.bbox.y, b.bbox.w, b.bbox.h);
      const label = b.identity != null ? idText(b.identity) : 't' + b.track;
      const w = g.measureText(label).width + 8;
      const h = parseInt(g.font, 10) + 4;
      g.fillStyle = col;
      g.fillRect(b.bbox.x, Math.max(0, b.bbox.y - h), w, h);
      g.fillStyle = '#000';
      g.fillText(label, b.bbox.x + 4, Math.max(h - 4, b.bbox.y - 4));
    }
  }

  function clickTile(t, ev) {
    const m = t.meta;
    if (!m || !m.width) return;
    // The frame is letterboxed (object-fit: contain): undo the scale and offsets.
    const r = t.canvas.getBoundingClientRect();
    const s = Math.min(r.width / m.width, r.height / m.height);
    const x = (ev.clientX - r.left - (r.width - m.width * s) / 2) / s;
    const y = (ev.clientY - r.top - (r.height - m.height * s) / 2) / s;
    const hit = m.boxes.filter((b) => b.identity != null && x >= b.bbox.x && x <= b.bbox.x + b.bbox.w && y >= b.bbox.y && y <= b.bbox.y + b.bbox.h)
      .sort((a, b) => a.bbox.w * a.bbox.h - b.bbox.w * b.bbox.h)[0];
    if (hit) searchIdentity(hit.identity);
  }

  function addCameraOption(camera) {
    const list = $('camera-list');
    if (![...list.options].some((o) => o.value === camera)) list.append(el('option', { value: camera }));
  }

  async function refreshTiles() {
    try {
      const j = await api('/api/tiles');
      const seen = new Set(j.tiles.map((m) => m.camera));
      j.tiles.forEach(updateTile);
      for (const [cam, t] of tiles) if (!seen.has(cam)) { t.root.remove(); tiles.delete(cam); }
      $('no-tiles').hidden = tiles.size > 0;
    } catch (e) { /* shown by the next successful refresh */ }
  }

  function listen() {
    const es = new EventSource('/api/events');
    es.addEventListener('tile', (ev) => { try { updateTile(JSON.parse(ev.data)); } catch (e) { /* malformed event */ } });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (logged out?) or the master went away: check, then retry.
        api('/api/me').then(() => setTimeout(listen, 3000), () => {});
      }
    };
  }

  // ---- search ----
  let floor = null;
  let searchSeq = 0;

  function status(text, isError) {
    $('status').textContent = text;
    $('status').className = isError ? 'error' : 'muted';
  }

  function parseIdentity(v) {
    const s = String(v).trim();
    let m = /^[pP]?([0-9a-fA-F]{1,4})\.(\d{1,15})$/.exec(s);
    if (m) {
      const seq = BigInt(m[2]);
      if (seq >= (1n << SEQ_BITS)) return null;
      return ((BigInt('0x' + m[1]) << SEQ_BITS) | seq).toString();
    }
    m = /^[pP]?(\d{1,20})$/.exec(s);
    return m && BigInt(m[1]) <= 18446744073709551615n ? m[1] : null;
  }

  // ---- operators' corrections (admins) ----
  let isAdmin = false;
  let shownIdentity = null;

  async function correct(body, done) {
    try {
      const c = await api('/api/corrections', { method: 'POST', headers: { Accept: 'application/json', 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      await searchIdentity(shownIdentity);
      status(done(c), false);
    } catch (e) {
      status(e.message, true);
    }
  }

  function splitButton(s) {
    return el('button', { type: 'button', class: 'split', title: 'This person is someone else: give their whole track on this camera its own identity',
      onclick: () => correct({ action: 'split', node: s.node, seq: s.seq, from: s.identity, reason: 'split in the UI' },
        (c) => 'Split off as ' + idText(c.into) + '.') }, 'Not this person');
  }

  async function loadCorrections(id) {
    $('corrections').hidden = true;
    try {
      const j = await api('/api/corrections?identity=' + encodeURIComponent(id) + '&limit=50');
      $('corrections-count').textContent = '(' + j.corrections.length + ')';
      $('correction-list').replaceChildren(...j.corrections.map((c) => {
        const what = c.action === 'split' ? 'split ' + (c.scope === 'track' ? 'the track of sighting ' : 'sighting ') + c.sighting.node + '/' + c.sighting.seq + ' from ' + idText(c.from) + ' to ' + idText(c.into)
          : c.action === 'merge' ? 'merged ' + idText(c.from) + ' into ' + idText(c.into) : 'reverted ' + c.correction.node + '/' + c.correction.seq;
        const undo = isAdmin && c.action !== 'revert' && !c.reverted
          ? el('button', { type: 'button', class: 'undo', onclick: () => correct({ action: 'revert', node: c.node, seq: c.seq, reason: 'undone in the UI' }, () => 'Undone.') }, 'Undo') : null;
        return el('li', { 'data-seq': c.seq, class: c.reverted ? 'reverted' : '' }, el('span', { class: 'when' }, fmtTime(c.decided_ms)), ' ', c.actor + ' ' + what + (c.reason ? ' (' + c.reason + ')' : '') + (c.reverted ? ', undone' : ''), ' ', undo);
      }));
      $('corrections').hidden = j.corrections.length === 0;
    } catch (e) { /* the trajectory still shows */ }
  }

  async function searchIdentity(raw) {
    const id = parseIdentity(raw);
    if (id == null) { status('An identity looks like p1a2b.17 (as shown on the tiles), p12 or 12.', true); return; }
    $('identity').value = idText(id);
    showView('search');
    const mine = ++searchSeq;
    status('Searching ' + idText(id) + '…');
    try {
      const j = await api('/api/trajectory?identity=' + encodeURIComponent(id));
      if (mine !== searchSeq) return;
      const cams = new Set(j.sightings.map((s) => s.camera));
      $('result-title').textContent = 'Trajectory of ' + idText(id);
      status(j.sightings.length + ' sightings on ' + cams.size + ' cameras' + (j.truncated ? ' (truncated)' : '') +
        (j.edges_unanswered.length ? '; unanswered: ' + j.edges_unanswered.map((u) => u.node).join(', ') : ''));
      const q = '?identity=' + encodeURIComponent(id);
      $('export-csv').href = '/api/trajectory.csv' + q;
      $('export-json').href = '/api/trajectory.json' + q;
      $('exports').hidden = false;
      shownIdentity = id;
      $('merge').hidden = !isAdmin;
      renderTimeline(j.sightings, true);
      drawPath(j.sightings);
      loadCorrections(id);
    } catch (e) {
      if (mine === searchSeq) status(e.message, true);
    }
  }

  async function searchCamera() {
    const camera = $('camera').value.trim();
    const from = $('from').value ? new Date($('from').value).getTime() : null;
    const to = $('to').value ? new Date($('to').value).getTime() : null;
    let q = '?camera=' + encodeURIComponent(camera);
    if (from != null) q += '&from=' + from;
    if (to != null) q += '&to=' + to;
    const mine = ++searchSeq;
    status('Searching ' + camera + '…');
    try {
      const j = await api('/api/sightings' + q);
      if (mine !== searchSeq) return;
      $('result-title').textContent = 'Sightings on ' + camera;
      $('exports').hidden = true;
      $('merge').hidden = true;
      $('corrections').hidden = true;
      shownIdentity = null;
      status(j.sightings.length + ' sightings' + (j.truncated ? ' (truncated)' : '') + '; click one for its trajectory');
      renderTimeline(j.sightings, false);
      drawPath([]);
    } catch (e) {
      if (mine === searchSeq) status(e.message, true);
    }
  }

  function renderTimeline(sightings, numbered) {
    const items = sightings.map((s, i) => {
      // The sighting's own snapshot: its identity on its camera, closest in
      // time (as recorded: a split moves sightings, not their snapshots).
      const src = '/api/snapshot/' + encodeURIComponent(s.recorded_identity || s.identity) + '?camera=' + encodeURIComponent(s.camera) + '&t=' + encodeURIComponent(String(s.first_ms));
      const thumb = el('img', { alt: idText(s.identity), loading: 'lazy', src });
      thumb.addEventListener('error', () => { thumb.style.visibility = 'hidden'; });
      const who = numbered ? null : el('button', { type: 'button', class: 'who', onclick: () => searchIdentity(s.identity) }, idText(s.identity));
      return el('li', { class: 'sighting', 'data-camera': s.camera },
        thumb,
        el('div', {},
          el('div', {}, numbered ? el('span', { class: 'step' }, String(i + 1)) : null, el('span', { class: 'when' }, fmtTime(s.first_ms)), ' ', who),
          el('div', {}, el('strong', { class: 'camera' }, s.camera), el('span', { class: 'muted' }, ' on ' + s.node + ' · ' + fmtDur(Math.max(0, s.last_ms - s.first_ms)) + (s.synced ? '' : ' · not synced yet') + (s.recorded_identity ? ' · moved here from ' + idText(s.recorded_identity) : ''))),
          numbered && isAdmin && s.synced ? el('div', {}, splitButton(s)) : null));
    });
    $('timeline').replaceChildren(...items);
  }

  async function loadFloor() {
    try {
      const j = await api('/api/floorplan');
      if (!j.configured) return;
      floor = { cams: new Map(j.cameras.map((c) => [c.camera, c])), path: [] };
      const img = $('floor-img');
      img.addEventListener('load', () => drawPath(floor.path));
      img.src = j.image;
    } catch (e) { /* no plan */ }
  }

  function drawPath(sightings) {
    if (!floor) return;
    floor.path = sightings;
    const img = $('floor-img');
    const c = $('floor-canvas');
    const pts = sightings.map((s) => floor.cams.get(s.camera)).filter(Boolean);
    $('floor').hidden = sightings.length === 0;
    if (!img.naturalWidth) return;
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const g = c.getContext('2d');
    g.clearRect(0, 0, c.width, c.height);
    const r = Math.max(6, c.width / 80);
    g.lineWidth = r / 2;
    g.strokeStyle = '#1f6feb';
    g.beginPath();
    pts.forEach((p, i) => (i ? g.lineTo(p.x, p.y) : g.moveTo(p.x, p.y)));
    g.stroke();
    g.font = Math.round(r * 1.4) + 'px sans-serif';
    // One marker per camera, labelled with every step seen there ("1, 3").
    const steps = new Map();
    pts.forEach((p, i) => {
      const k = p.x + ',' + p.y;
      if (!steps.has(k)) steps.set(k, { p, n: [] });
      steps.get(k).n.push(i + 1);
    });
    for (const { p, n } of steps.values()) {
      const label = n.join(', ');
      const w = Math.max(2 * r, g.measureText(label).width + r);
      g.fillStyle = '#1f6feb';
      g.fillRect(p.x - w / 2, p.y - r, w, 2 * r);
      g.fillStyle = '#fff';
      g.textAlign = 'center';
      g.textBaseline = 'middle';
      g.fillText(label, p.x, p.y);
    }
  }

  // ---- cluster ----
  let clusterTimer = null;

  async function refreshCluster() {
    try {
      const [n, p, j, t] = await Promise.all([api('/api/nodes'), api('/api/plan'), api('/api/jobs'), api('/api/training')]);
      const rows = n.nodes.map((x) => {
        const st = x.status || null;
        const load = st ? st.load : null;
        const sync = x.sync || {};
        const pct = (v) => (v == null ? '–' : Math.round(v * 100) + '%');
        return el('tr', { 'data-node': x.node },
          el('td', {}, x.node),
          el('td', { class: x.live ? 'live' : 'dead' }, x.live ? 'alive' : 'dead'),
          el('td', {}, load ? load.cameras.map((c) => c.camera).join(', ') || '–' : '–'),
          el('td', {}, pct(load && load.detect_busy)),
          el('td', {}, pct(load && load.reid_busy)),
          el('td', {}, st ? 'v' + st.plan_version : '–'),
          el('td', {}, sync.lag_records == null ? '–' : sync.lag_records + ' records'),
          el('td', {}, sync.since_success_s == null ? 'never' : sync.since_success_s.toFixed(0) + ' s ago'));
      });
      $('nodes').tBodies[0].replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 8, class: 'muted' }, 'No node has joined.'))]));
      $('plan-version').textContent = p.version == null ? '(none yet)' : 'version ' + p.version;
      $('plan-reason').textContent = p.reason ? 'Issued ' + fmtTime(p.issued_ms) + ': ' + p.reason : '';
      const streams = p.streams.map((s) => el('tr', { 'data-camera': s.camera }, el('td', {}, s.camera), el('td', {}, s.node), el('td', {}, s.reid_node)));
      $('plan').tBodies[0].replaceChildren(...(streams.length ? streams : [el('tr', {}, el('td', { colSpan: 3, class: 'muted' }, 'No camera placed.'))]));
      $('jobs-policy').textContent = j.policy ? 'placed by ' + j.policy.toUpperCase() : '';
      const jobs = j.jobs.map((x) => {
        const node = new Map(x.stages.map((s) => [s.name, s.node]));
        const from = (s) => node.get((x.stages.find((t) => t.name === s) || {}).input);
        return el('tr', { 'data-job': x.id, 'data-state': x.state },
          el('td', {}, x.id),
          el('td', {}, x.stages.map((s) => s.name + ' (' + s.kind + ') @ ' + (s.node || '–')).join(', ')),
          el('td', {}, x.flows.length ? x.flows.map((f) => from(f.to_stage) + ' → ' + node.get(f.to_stage) + ' into ' + f.to_stage + ': ' + (f.bytes_per_s / 1000).toFixed(0) + ' kB/s').join('; ') : '–'),
          el('td', { class: x.state === 'placed' ? '' : 'dead' }, x.state === 'placed' ? x.predicted_rate.toFixed(2) + ' items/s' : 'waiting: ' + (x.waiting || '')));
      });
      $('jobs').tBodies[0].replaceChildren(...(jobs.length ? jobs : [el('tr', {}, el('td', { colSpan: 4, class: 'muted' }, 'No job submitted.'))]));
      showTraining(t);
    } catch (e) {
      $('plan-reason').textContent = e.message;
    }
  }

  // Split training rounds (EdgeSplit): what runs, the last rounds, and
  // for admins the form that asks for more.
  const ALGORITHM_NAMES = { edgesplit: 'EdgeSplit', edgesplit_fix: 'EdgeSplit-Fix', adaptive_fl: 'Adaptive FL', vanilla_fl: 'vanilla FL' };
  function showTraining(t) {
    const st = t.state;
    const mb = (b) => (b / 1e6).toFixed(1);
    let line = st.running ? 'running: round ' + (st.done + 1) + ' of ' + st.asked : 'idle';
    if (st.candidate) line += '; last candidate ' + st.candidate + ' (not deployed)';
    $('training-state').textContent = '(' + line + ')';
    const notes = [];
    if (st.error) notes.push('Stopped: ' + st.error);
    if (st.left_out.length) notes.push('Left out: ' + st.left_out.map(([n, why]) => n + ' (' + why + ')').join('; '));
    notes.push(st.totals.rounds + ' rounds since start, ' + mb(st.totals.up_bytes) + ' MB up, ' + mb(st.totals.down_bytes) + ' MB down, ' + st.totals.dropped + ' nodes dropped');
    $('training-note').textContent = notes.join('. ');
    $('training-note').className = st.error ? 'error' : 'muted';
    const rows = st.rounds.slice().reverse().map((r) => el('tr', { 'data-round': r.round },
      el('td', {}, String(r.round)),
      el('td', {}, ALGORITHM_NAMES[r.algorithm] || r.algorithm),
      el('td', {}, r.seconds.toFixed(1) + ' s (' + r.predicted_s.toFixed(1) + ' s)'),
      el('td', {}, r.loss.toFixed(4)),
      el('td', {}, r.nodes.map((x) => x.node + ': ' + (x.dropped ? 'dropped (' + x.dropped + ')' : 'cut ' + x.cut + ', ' + x.share_mbit_s.toFixed(1) + ' Mbit/s, ' + x.batches + ' batches')).join('; ')),
      el('td', {}, mb(r.nodes.reduce((a, x) => a + x.up_bytes, 0)) + ' / ' + mb(r.nodes.reduce((a, x) => a + x.down_bytes, 0)))));
    $('training').tBodies[0].replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 6, class: 'muted' }, 'No round run since the master started.'))]));
  }

  function showView(name) {
    for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.view === name);
    $('view-search').hidden = name !== 'search';
    $('view-cluster').hidden = name !== 'cluster';
    clearInterval(clusterTimer);
    if (name === 'cluster') { refreshCluster(); clusterTimer = setInterval(refreshCluster, 5000); }
  }

  // ---- start ----
  document.addEventListener('DOMContentLoaded', () => {
    for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => showView(b.dataset.view));
    $('by-identity').addEventListener('submit', (ev) => { ev.preventDefault(); searchIdentity($('identity').value); });
    $('by-camera').addEventListener('submit', (ev) => { ev.preventDefault(); searchCamera(); });
    $('merge').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const into = parseIdentity($('merge-into').value);
      if (into == null) { status('An identity looks like p1a2b.17, p12 or 12.', true); return; }
      correct({ action: 'merge', from: shownIdentity, into, reason: $('merge-reason').value },
        () => 'Merged into ' + idText(into) + '.');
    });
    $('train').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const body = { rounds: Number($('train-rounds').value) };
      if ($('train-algorithm').value) body.algorithm = $('train-algorithm').value;
      api('/api/training', { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(body) })
        .then(refreshCluster, (e) => { $('training-note').textContent = e.message; $('training-note').className = 'error'; });
    });
    $('sync-now').addEventListener('click', () => api('/api/sync', { method: 'POST' }).then(refreshCluster, (e) => { $('plan-reason').textContent = e.message; }));
    api('/api/me').then((me) => {
      $('who').textContent = me.name + ' (' + me.role + ')';
      $('site').textContent = 'site ' + me.site;
      $('sync-now').hidden = me.role !== 'admin';
      $('train').hidden = me.role !== 'admin';
      isAdmin = me.role === 'admin';
      if (!me.auth) $('logout').hidden = true;
    }, () => {});
    refreshTiles();
    setInterval(refreshTiles, 15000);
    listen();
    loadFloor();
  });
})();
