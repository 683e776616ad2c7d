// The operator's console: five views over the JSON API of crates/edge/src/console/api.rs.
// Plain ES module, no framework, no build step; every value is put in the page as text.
const $ = (sel) => document.querySelector(sel);
let session = null;
let refresh = null;
let tail = null;
// Bumped on every page switch: a draw that finishes after the page it was for was left
// (a slow answer) is dropped instead of replacing the new page.
let pageGen = 0;

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'onclick' || k === 'onsubmit') e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

const pill = (text, kind) => el('span', { class: `pill ${kind}` }, text);
const table = (head, rows) => el('table', {}, el('thead', {}, el('tr', {}, head.map((h) => el('th', {}, h)))), el('tbody', {}, rows));
const fmt = (n, digits = 1) => (typeof n === 'number' ? n.toFixed(digits) : '–');

async function api(path, body) {
  const opts = body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': session?.csrf ?? '' }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (r.status === 401 && path !== '/console/login') {
    showLogin();
    throw new Error('logged out');
  }
  if (!r.ok) throw new Error(data?.error?.message ?? `HTTP ${r.status}`);
  return data;
}

/** Asks before an action; resolves true when confirmed. */
function confirmAction(text) {
  return new Promise((resolve) => {
    $('#dialog-text').textContent = text;
    $('#dialog').hidden = false;
    const done = (ok) => {
      $('#dialog').hidden = true;
      $('#dialog-ok').onclick = $('#dialog-cancel').onclick = null;
      resolve(ok);
    };
    $('#dialog-ok').onclick = () => done(true);
    $('#dialog-cancel').onclick = () => done(false);
  });
}

function showLogin() {
  session = null;
  stopPage();
  $('#nav').hidden = $('#logout').hidden = true;
  $('#whoami').textContent = '';
  $('#page').replaceChildren();
  $('#login').hidden = false;
  $('#token').focus();
}

function loggedIn(s) {
  session = s;
  $('#login').hidden = true;
  $('#nav').hidden = $('#logout').hidden = false;
  $('#whoami').textContent = `${s.node} · ${s.region} · v${s.version}${s.dev ? ' · herald dev' : ''}${s.control ? '' : ' · no control plane'}`;
  route();
}

function stopPage() {
  clearInterval(refresh);
  refresh = null;
  if (tail) tail.close();
  tail = null;
}

const pages = { cluster, regions, accounts, channels, health };

function route() {
  if (!session) return;
  stopPage();
  const name = (location.hash.slice(1) || 'cluster').split('?')[0];
  const page = pages[name] ?? cluster;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === (pages[name] ? name : 'cluster'));
  const root = $('#page');
  pageGen += 1;
  root.replaceChildren();
  root.dataset.page = name;
  delete root.dataset.loaded;
  page(root);
}

/** Renders `draw` now and every 5 s while the page is shown. */
function every(root, draw) {
  const gen = pageGen;
  const run = async () => {
    try {
      const view = await draw();
      if (gen !== pageGen) return;
      root.replaceChildren(...view);
      root.dataset.loaded = 'true';
    } catch (e) {
      if (gen === pageGen && e.message !== 'logged out') root.replaceChildren(el('p', { class: 'error' }, e.message));
    }
  };
  run();
  refresh = setInterval(run, 5000);
}

function cluster(root) {
  every(root, async () => {
    const c = await api('/console/api/cluster');
    const out = [el('h1', {}, 'Cluster')];
    if (c.control) {
      const s = c.control;
      out.push(el('div', { class: 'card facts' },
        el('div', {}, el('span', {}, 'leader'), el('span', {}, s.leader || 'none')),
        el('div', {}, el('span', {}, 'term'), el('span', {}, s.term)),
        el('div', {}, el('span', {}, 'log index'), el('span', {}, s.last_log_index)),
        el('div', {}, el('span', {}, 'applied'), el('span', {}, s.last_applied)),
        el('div', {}, el('span', {}, 'answered by'), el('span', {}, s.this_node))));
      out.push(el('h2', {}, 'Control-plane members'));
      out.push(table(['ID', 'Address', 'Role'], s.members.map((m) => el('tr', {}, el('td', {}, m.id), el('td', { class: 'mono' }, m.address), el('td', {}, pill(m.role, m.role === 'leader' ? 'ok' : 'warn'))))));
    } else {
      out.push(el('p', { class: 'muted' }, c.control_error ? `Control plane: ${c.control_error}` : 'No control plane: this node runs on its config file alone, and is the only edge shown.'));
    }
    out.push(el('h2', {}, 'Edges'));
    out.push(table(['Node', 'Region', 'Version', 'Health', 'State', 'Connections', 'Deliveries/s', 'Fan-out lag', 'Heartbeat', ''],
      c.edges.map((e) => el('tr', { 'data-node': e.node },
        el('td', {}, e.node, e.node === c.this_node ? el('span', { class: 'muted' }, ' (this node)') : null),
        el('td', {}, e.region),
        el('td', {}, e.version || '–'),
        el('td', { class: 'health' }, pill(e.healthy ? 'healthy' : 'unhealthy', e.healthy ? 'ok' : 'bad')),
        el('td', { class: 'state' }, pill(e.draining ? 'draining' : 'active', e.draining ? 'warn' : 'ok')),
        el('td', {}, e.connections),
        el('td', {}, fmt(e.deliveries_per_second)),
        el('td', {}, `${e.fanout_lag_ms} ms`),
        el('td', {}, e.last_heartbeat_ms_ago < 0 ? 'never' : `${(e.last_heartbeat_ms_ago / 1000).toFixed(1)} s ago`),
        el('td', {}, session.control && !e.draining ? el('button', { class: 'danger drain', onclick: () => drain(e.node) }, 'Drain') : null)))));
    return out;
  });
}

async function drain(node) {
  if (!(await confirmAction(`Drain ${node}? Its clients are told to reconnect (they resume elsewhere from their cursors) and it stops taking new ones.`))) return;
  try {
    await api('/console/api/drain', { node });
    route();
  } catch (e) {
    alert(e.message);
  }
}

/** A line chart of [t, value] points: lag in seconds (solid) and records (dashed, own scale). */
function chart(history) {
  const w = 800, h = 180, pad = 30;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  const add = (tag, attrs, text) => {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
  };
  if (history.length < 2) {
    add('text', { x: pad, y: h / 2 }, 'collecting samples…');
    return svg;
  }
  const t0 = history[0][0], t1 = history[history.length - 1][0];
  const maxS = Math.max(1, ...history.map((p) => p[2]));
  const maxR = Math.max(1, ...history.map((p) => p[1]));
  const x = (t) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (w - 2 * pad);
  const y = (v, max) => h - pad - (v / max) * (h - 2 * pad);
  for (const f of [0, 0.5, 1]) add('line', { class: 'grid', x1: pad, x2: w - pad, y1: y(f * maxS, maxS), y2: y(f * maxS, maxS) });
  add('polyline', { class: 's', points: history.map((p) => `${x(p[0])},${y(p[2], maxS)}`).join(' ') });
  add('polyline', { class: 'r', points: history.map((p) => `${x(p[0])},${y(p[1], maxR)}`).join(' ') });
  add('text', { x: 4, y: pad - 8 }, `${fmt(maxS)} s`);
  add('text', { x: w - pad - 90, y: pad - 8 }, `${maxR} records (dashed)`);
  const ago = (t1 - t0) / 1000;
  add('text', { x: pad, y: h - 8 }, ago < 120 ? `${Math.round(ago)} s ago` : `${Math.round(ago / 60)} min ago`);
  add('text', { x: w - pad - 20, y: h - 8 }, 'now');
  return svg;
}

function regions(root) {
  every(root, async () => {
    const r = await api('/console/api/regions');
    const out = [el('h1', {}, 'Regions')];
    if (r.replicators.length === 0) {
      out.push(el('p', { class: 'muted' }, 'No replicators configured: list their metrics addresses in [console] replicators = ["http://HOST:9400"] to see replication links here.'));
    }
    for (const e of r.errors) out.push(el('p', { class: 'error' }, `${e.replicator}: ${e.error}`));
    if (r.links.length) {
      out.push(table(['Link', 'Lag (records)', 'Lag (seconds)'], r.links.map((l) => el('tr', {}, el('td', { class: 'mono' }, l.link), el('td', {}, l.lag_records), el('td', {}, fmt(l.lag_seconds))))));
      for (const l of r.links) out.push(el('h2', {}, `${l.link}: lag over the last minutes`), chart(l.history));
    } else if (r.replicators.length) {
      out.push(el('p', { class: 'muted' }, 'Waiting for the replicators’ first samples…'));
    }
    return out;
  });
}

function accounts(root) {
  const draw = async () => {
    const a = await api('/console/api/accounts');
    const out = [el('h1', {}, 'Accounts'), el('p', { class: 'muted' }, a.source === 'control' ? 'From the control plane. Limits: 0 means the edge’s default.' : 'From this node’s config file (no control plane): read only.')];
    const n = (v) => (v ? v : 'default');
    out.push(table(['Account', 'Publish keys (id · SHA-256)', 'Token keys', 'Connections', 'Publish/s', 'Subscriptions', 'Message bytes', ''],
      a.accounts.map((acct) => {
        const row = el('tr', { 'data-account': acct.name },
          el('td', {}, acct.name),
          el('td', {}, acct.keys.map((k) => el('div', { class: 'mono' }, `${k.id} · ${k.sha256.slice(0, 23)}…`))),
          el('td', {}, acct.token_keys.map(([kid, alg]) => el('div', { class: 'mono' }, `${kid} (${alg})`))),
          el('td', {}, n(acct.limits.connections)), el('td', {}, n(acct.limits.publish_per_second)),
          el('td', {}, n(acct.limits.max_subscriptions)), el('td', {}, n(acct.limits.max_message_bytes)),
          el('td', {}, a.editable ? el('button', { class: 'quiet edit', onclick: () => editLimits(row, acct) }, 'Edit limits') : null));
        return row;
      })));
    if (a.editable) {
      const name = el('input', { placeholder: 'new account', id: 'new-account' });
      const error = el('span', { class: 'error' });
      const add = async (ev) => {
        ev.preventDefault();
        error.textContent = '';
        try {
          await saveLimits(name.value, { connections: 0, publish_per_second: 0, max_subscriptions: 0, max_message_bytes: 0 });
        } catch (e) {
          error.textContent = e.message;
        }
      };
      out.push(el('h2', {}, 'Add an account'), el('form', { class: 'inline', id: 'add-account', onsubmit: add }, name, el('button', { type: 'submit' }, 'Add'), error));
    }
    return out;
  };
  const gen = pageGen;
  const run = async () => {
    try {
      const view = await draw();
      if (gen !== pageGen) return;
      root.replaceChildren(...view);
      root.dataset.loaded = 'true';
    } catch (e) {
      if (gen === pageGen && e.message !== 'logged out') root.replaceChildren(el('p', { class: 'error' }, e.message));
    }
  };
  run();
  accounts.reload = run;
}

function editLimits(row, acct) {
  const fields = ['connections', 'publish_per_second', 'max_subscriptions', 'max_message_bytes'];
  const inputs = Object.fromEntries(fields.map((f) => [f, el('input', { class: 'num', type: 'number', min: 0, name: f, value: acct.limits[f] })]));
  const error = el('span', { class: 'error' });
  const form = el('form', { class: 'inline limits', onsubmit: async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const limits = Object.fromEntries(fields.map((f) => [f, Number(inputs[f].value || 0)]));
    try {
      await saveLimits(acct.name, limits);
    } catch (e) {
      error.textContent = e.message;
    }
  } }, fields.map((f) => el('label', {}, `${f.replaceAll('_', ' ')} `, inputs[f])), el('button', { type: 'submit' }, 'Save'), error);
  row.after(el('tr', {}, el('td', { colspan: 8 }, form)));
}

async function saveLimits(account, limits) {
  await api('/console/api/limits', { account, limits });
  accounts.reload?.();
}

function channels(root) {
  const account = el('input', { id: 'ch-account', placeholder: 'account', value: 'demo' });
  const channel = el('input', { id: 'ch-name', placeholder: 'channel', value: 'incidents' });
  const info = el('div', { id: 'ch-info' });
  const lines = el('div', { class: 'tail', id: 'tail' });
  const status = el('span', { class: 'muted', id: 'tail-status' });
  const inspect = async (ev) => {
    ev?.preventDefault();
    if (tail) tail.close();
    lines.replaceChildren();
    const q = `account=${encodeURIComponent(account.value)}&channel=${encodeURIComponent(channel.value)}`;
    try {
      const c = await api(`/console/api/channel?${q}`);
      info.replaceChildren(el('div', { class: 'card facts' },
        el('div', {}, el('span', {}, 'occupancy'), el('span', { id: 'occupancy' }, c.occupancy)),
        el('div', {}, el('span', {}, 'partition'), el('span', {}, c.partition))),
        c.members.length ? table(['User', 'Connection'], c.members.map((m) => el('tr', {}, el('td', {}, m.user), el('td', { class: 'mono' }, m.connection_id)))) : el('p', { class: 'muted' }, 'Nobody is present.'));
    } catch (e) {
      info.replaceChildren(el('p', { class: 'error' }, e.message));
      return;
    }
    tail = new EventSource(`/console/api/tail?${q}`);
    tail.onmessage = (m) => {
      const ev = JSON.parse(m.data);
      if (ev.type === 'open') {
        status.textContent = `live from ${ev.cursor} · at most ${ev.max_per_second}/s${ev.redacted.length ? ` · redacted: ${ev.redacted.join(', ')}` : ''}`;
        status.dataset.open = 'true';
      } else if (ev.type === 'record') {
        lines.prepend(el('div', { class: 'record' }, el('span', { class: 'cursor' }, ev.cursor), '  ', new Date(ev.published_at).toISOString().slice(11, 23), '  ', JSON.stringify(ev.data)));
        while (lines.childElementCount > 500) lines.lastChild.remove();
      } else if (ev.type === 'skipped') {
        lines.prepend(el('div', { class: 'note' }, `${ev.count} records not shown (over the tail's rate limit)`));
      } else if (ev.type === 'end') {
        lines.prepend(el('div', { class: 'note' }, ev.reason));
        tail.close();
      }
    };
    tail.onerror = () => { status.textContent = 'tail reconnecting…'; };
  };
  root.append(el('h1', {}, 'Channels'),
    el('form', { class: 'inline', id: 'ch-form', onsubmit: inspect }, account, channel, el('button', { type: 'submit' }, 'Inspect and tail')),
    info, el('h2', {}, 'Live tail ', status), lines);
  root.dataset.loaded = 'true';
}

function health(root) {
  every(root, async () => {
    const h = await api('/console/api/health');
    const out = [el('h1', {}, 'Health')];
    if (h.control_error) out.push(el('p', { class: 'error' }, `Control plane: ${h.control_error}`));
    out.push(table(['Edge', 'Region', '/readyz', 'Why', 'Probe round trip'], h.edges.map((e) => el('tr', { 'data-node': e.node },
      el('td', {}, e.node), el('td', {}, e.region),
      el('td', {}, pill(e.ready ? 'ready' : 'not ready', e.ready ? 'ok' : 'bad')),
      el('td', {}, e.status, e.error ? el('div', { class: 'muted' }, e.error) : null),
      el('td', {}, e.probe_rtt_ms === null || e.probe_rtt_ms === undefined ? '–' : `${e.probe_rtt_ms} ms`)))));
    out.push(el('h2', {}, 'Alerts that would fire now'));
    out.push(el('p', { class: 'muted', id: 'samples', 'data-samples': h.samples }, h.samples === 0
      ? 'The first sample of this node’s metrics is taken 5 s after start.'
      : `The PrometheusRule’s expressions over this node’s last ${h.samples_span_secs} s of metrics (${h.samples} samples${h.samples_span_secs < 600 ? '; ranges longer than that use what there is' : ''}).`));
    const kind = { ok: 'ok', pending: 'warn', firing: 'bad' };
    out.push(table(['Alert', 'Severity', 'State', 'Expression', 'Values'], h.alerts.map((a) => el('tr', { 'data-alert': a.name },
      el('td', {}, a.name), el('td', {}, a.severity),
      el('td', {}, pill(a.state, kind[a.state]), a.state === 'pending' ? el('div', { class: 'muted' }, `fires after ${a.for_secs} s`) : null),
      el('td', { class: 'mono' }, a.expr),
      el('td', { class: 'mono' }, a.values.map(([labels, v]) => el('div', {}, `${Object.entries(labels).map(([k, x]) => `${k}=${x}`).join(' ')} ${fmt(v, 3)}`)))))));
    return out;
  });
}

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('#login-error').textContent = '';
  try {
    const s = await api('/console/login', { token: $('#token').value });
    $('#token').value = '';
    loggedIn(s);
  } catch (e) {
    $('#login-error').textContent = e.message;
  }
});
$('#logout').addEventListener('click', async () => {
  await api('/console/logout', {}).catch(() => {});
  showLogin();
});
window.addEventListener('hashchange', route);
api('/console/api/session').then(loggedIn, () => showLogin());
