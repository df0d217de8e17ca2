/*
 * join.js — the join page (/r/{id}): lobby, knocking, host controls.
 *
 *   1. Setup     UI strings (#i18n JSON), room data (data-* on #lobby), storage helpers.
 *   2. Host link #host=… moves from the URL fragment into sessionStorage cb:host:{id}; a
 *                personal link's #as=… into cb:as:{id} (it fixes the name to the chat's).
 *   3. Preview   camera/mic preview and toggles; the choice goes to sessionStorage cb:media:{id}.
 *   4. Join      POST /r/{id}/join (with any stored token), then on to /r/{id}/room.
 *   5. Knock     POST /r/{id}/knock, poll GET /r/{id}/knocks/{kid} every 2 s (token in Authorization).
 *   6. Host      lock / unlock / end and the knock queue; polls GET /api/v1/rooms/{id}.
 *   7. States    what the page shows for open / locked / full and the final states.
 *
 * User-supplied text (names, titles) only ever reaches the DOM through textContent.
 */
'use strict';
(() => {
  // ---- 1. Setup -------------------------------------------------------------------------
  const T = JSON.parse(document.getElementById('i18n').textContent);
  const lobby = document.getElementById('lobby');
  const roomId = lobby && lobby.dataset.roomId;
  if (!roomId) return; // not-found and error pages: nothing to drive

  const $ = (id) => document.getElementById(id);
  const key = (k) => `cb:${k}:${roomId}`;
  const storage = (name) => {
    let s = null;
    try { s = window[name]; } catch { /* storage disabled */ }
    return {
      get: (k) => { try { return s ? s.getItem(k) : null; } catch { return null; } },
      set: (k, v) => { try { if (s) s.setItem(k, v); } catch { /* quota, private mode */ } },
      del: (k) => { try { if (s) s.removeItem(k); } catch { /* ignore */ } },
    };
  };
  const session = storage('sessionStorage');
  const local = storage('localStorage');
  const parseJSON = (s) => { try { return JSON.parse(s); } catch { return null; } };
  const show = (el, on) => { if (el) el.hidden = !on; };

  const kind = lobby.dataset.kind;
  let knockAllowed = lobby.dataset.knock === 'true';
  let status = lobby.dataset.status;
  let mode = ['ended', 'expired', 'scheduled'].includes(lobby.dataset.state) ? 'final' : 'lobby'; // lobby | waiting | final

  // A scheduled call: count down to its room's opening, then load the page again (it opens).
  const starts = document.getElementById('starts');
  if (starts && lobby.dataset.state === 'scheduled') {
    const opensAt = Number(starts.dataset.opensAt);
    const countdown = document.getElementById('countdown');
    const tick = () => {
      const left = Math.max(0, Math.ceil((opensAt - Date.now()) / 1000));
      const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      const time = (h ? `${h}:${String(m).padStart(2, '0')}` : `${m}`) + `:${String(s).padStart(2, '0')}`;
      countdown.textContent = T.opens_in.replace('{time}', time);
      if (left === 0) { clearInterval(timer); setTimeout(() => location.reload(), 1000); }
    };
    const timer = setInterval(tick, 1000);
    tick();
  }
  const storedToken = () => session.get(key('token')) || local.get(key('token'));

  // ---- 2. Host link ---------------------------------------------------------------------
  const fragment = new URLSearchParams(location.hash.slice(1));
  for (const [param, slot] of [['host', 'host'], ['as', 'as']]) {
    if (!fragment.has(param)) continue;
    session.set(key(slot), fragment.get(param));
    fragment.delete(param);
    const rest = fragment.toString();
    history.replaceState(history.state, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
  }
  const hostToken = session.get(key('host'));
  // A personal link: the token carries the chat name (hex) the gate will use.
  let identity = session.get(key('as'));
  const identityName = (() => {
    const hexName = identity && identity.split('.')[2];
    if (!hexName || !/^([0-9a-f]{2})+$/.test(hexName)) return null;
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array(hexName.match(/../g).map((h) => parseInt(h, 16))));
    } catch { return null; }
  })();

  const nameInput = $('name');
  if (!nameInput) return; // ended / expired: the page is only a message

  nameInput.value = identityName || local.get('cb:name') || (hostToken && lobby.dataset.hostName) || '';
  if (identityName) nameInput.readOnly = true;

  // ---- 3. Preview -----------------------------------------------------------------------
  const prefs = Object.assign({ audio: true, video: kind === 'video' }, parseJSON(session.get(key('media'))));
  const previewVideo = $('preview');
  const avatar = $('preview-avatar');
  let previewStream = null;

  function initials(name) {
    const words = (name || '').trim().split(/\s+/).filter(Boolean);
    return words.slice(0, 2).map((w) => Array.from(w)[0].toUpperCase()).join('') || '?';
  }

  function renderPreview() {
    const hasVideo = !!(previewStream && previewStream.getVideoTracks().length);
    for (const t of previewStream ? previewStream.getTracks() : []) {
      t.enabled = t.kind === 'audio' ? prefs.audio : prefs.video;
    }
    avatar.firstElementChild.textContent = initials(nameInput.value);
    show(avatar, !(hasVideo && prefs.video));
    if (previewVideo) show(previewVideo, hasVideo && prefs.video);
    setToggle($('mic'), prefs.audio, T.mic_on, T.mic_off);
    setToggle($('cam'), prefs.video, T.cam_on, T.cam_off);
  }

  function setToggle(button, on, onText, offText) {
    if (!button) return;
    button.setAttribute('aria-pressed', String(on));
    button.querySelector('.toggle-text').textContent = on ? onText : offText;
  }

  async function startPreview() {
    const md = navigator.mediaDevices;
    if (md && md.getUserMedia) {
      try {
        previewStream = await md.getUserMedia({ audio: true, video: kind === 'video' });
      } catch {
        if (kind === 'video') {
          try { previewStream = await md.getUserMedia({ audio: true, video: false }); } catch { /* none */ }
        }
      }
    }
    if (mode !== 'lobby' && mode !== 'waiting') return stopPreview();
    if (!previewStream || (kind === 'video' && !previewStream.getVideoTracks().length)) show($('preview-note'), true);
    if (previewVideo && previewStream) previewVideo.srcObject = previewStream;
    renderPreview();
  }

  function stopPreview() {
    if (previewStream) previewStream.getTracks().forEach((t) => t.stop());
    previewStream = null;
  }

  function toggle(which) {
    prefs[which] = !prefs[which];
    session.set(key('media'), JSON.stringify(prefs));
    renderPreview();
  }

  $('mic').addEventListener('click', () => toggle('audio'));
  if ($('cam')) $('cam').addEventListener('click', () => toggle('video'));
  nameInput.addEventListener('input', () => { show($('form-error'), false); renderPreview(); });

  // ---- 4. Join --------------------------------------------------------------------------
  function readName() {
    const name = nameInput.value.trim();
    if (!name) {
      formError(T.name_required);
      nameInput.focus();
      return null;
    }
    local.set('cb:name', name);
    return name;
  }

  function formError(text) {
    const el = $('form-error');
    el.textContent = text;
    show(el, true);
  }

  function busy(on) {
    for (const id of ['join', 'knock', 'retry']) if ($(id)) $(id).disabled = on;
  }

  async function post(path, body) {
    const res = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      credentials: 'same-origin',
    });
    return { res, body: await res.json().catch(() => ({})) };
  }

  async function join(tokenOverride, nameOverride) {
    const name = nameOverride || readName();
    if (!name) return;
    const token = tokenOverride || storedToken();
    busy(true);
    try {
      const request = token ? { name, token } : { name };
      if (hostToken) request.host_token = hostToken; // the host may enter their own locked room
      if (identity) request.identity = identity;
      const { res, body } = await post(`/r/${roomId}/join`, request);
      if (res.ok) return enter(body);
      refused(body);
    } catch {
      formError(T.state_error);
    } finally {
      busy(false);
    }
  }

  function enter(body) {
    session.set(key('token'), body.token);
    local.set(key('token'), body.token);
    session.set(key('pid'), body.participant_id);
    if (body.name) local.set('cb:name', body.name);
    session.set(key('media'), JSON.stringify(prefs));
    session.del(key('knock'));
    stopPreview();
    location.assign(`/r/${roomId}/room`);
  }

  /** Shows what a refused join or knock means. */
  function refused(body) {
    switch (body.error) {
      case 'invalid_name': return formError(T.invalid_name);
      case 'invalid_identity': // a stale or broken personal link: join under a typed name instead
        identity = null;
        session.del(key('as'));
        nameInput.readOnly = false;
        return formError(body.message || T.state_error);
      case 'rate_limited': return formError(T.state_rate_limited);
      case 'locked':
        knockAllowed = body.knock === true;
        mode = 'lobby';
        return setStatus('locked');
      case 'full': mode = 'lobby'; return setStatus('full');
      case 'not_locked': mode = 'lobby'; setStatus('open'); return join();
      case 'ended': return final('ended', T.state_ended);
      case 'expired': return final('expired', T.state_expired);
      case 'not_found': return final('not_found', T.state_not_found);
      case 'banned': return final('removed', T.state_removed);
      default: return formError(T.state_error);
    }
  }

  $('join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (mode !== 'lobby') return;
    if (status === 'locked' && !storedToken() && knockAllowed && !hostToken) return knock();
    join();
  });
  $('retry').addEventListener('click', () => location.reload());

  // ---- 5. Knock -------------------------------------------------------------------------
  let knockTimer = null;

  async function knock() {
    const name = readName();
    if (!name) return;
    busy(true);
    try {
      const { res, body } = await post(`/r/${roomId}/knock`, { name });
      if (res.ok && body.knock_id) {
        const k = { id: body.knock_id, token: body.token, name };
        session.set(key('knock'), JSON.stringify(k));
        waitForHost(k);
      } else {
        refused(body);
      }
    } catch {
      formError(T.state_error);
    } finally {
      busy(false);
    }
  }

  function waitForHost(k) {
    mode = 'waiting';
    showState(T.state_waiting);
    show($('join'), false);
    show($('knock'), false);
    show($('retry'), false);
    nameInput.disabled = true;
    const poll = async () => {
      let next = 2000;
      try {
        const res = await fetch(`/r/${roomId}/knocks/${encodeURIComponent(k.id)}`, { headers: { Authorization: `Bearer ${k.token}` } });
        const body = await res.json().catch(() => ({}));
        if (res.ok && body.status === 'admitted') {
          session.del(key('knock'));
          mode = 'lobby';
          nameInput.disabled = false;
          return join(k.token, k.name);
        }
        if (res.ok && body.status === 'denied') {
          session.del(key('knock'));
          return final('denied', T.state_denied);
        }
        if (!res.ok && res.status !== 429 && res.status < 500) {
          session.del(key('knock'));
          return refused(body.error ? body : { error: 'not_found' });
        }
      } catch {
        next = 4000; // offline for a moment: keep waiting
      }
      knockTimer = setTimeout(poll, next);
    };
    clearTimeout(knockTimer);
    knockTimer = setTimeout(poll, 2000);
  }

  $('knock').addEventListener('click', () => { if (mode === 'lobby') knock(); });

  // ---- 6. Host --------------------------------------------------------------------------
  let hostTimer = null;

  async function hostCall(method, path) {
    try {
      const res = await fetch(`/api/v1/rooms/${roomId}${path}`, {
        method,
        headers: { Authorization: `Bearer ${hostToken}` },
      });
      if (res.status === 401 || res.status === 403) {
        show($('host-panel'), false);
        clearInterval(hostTimer);
        return null;
      }
      const body = await res.json().catch(() => null);
      if (!res.ok) {
        if (body && (body.error === 'ended' || body.error === 'expired')) return final(body.error, T[`state_${body.error}`]);
        if (method !== 'GET') flash(T.action_failed);
        return null;
      }
      return body;
    } catch {
      if (method !== 'GET') flash(T.action_failed);
      return null;
    }
  }

  function flash(text) {
    const el = $('form-error');
    el.textContent = text;
    show(el, true);
    setTimeout(() => show(el, false), 4000);
  }

  function renderRoom(room) {
    if (!room || typeof room !== 'object') return;
    if (typeof room.knock === 'boolean') knockAllowed = room.knock;
    const present = (room.participants || []).filter((p) => p.present);
    const list = $('participants');
    list.replaceChildren(...present.map((p) => {
      const li = document.createElement('li');
      const span = document.createElement('span');
      span.className = 'name';
      span.textContent = p.name;
      li.append(span);
      return li;
    }));
    $('count').textContent = String(present.length);
    show($('nobody'), present.length === 0);
    renderKnocks((room.knocks || []).filter((k) => k.status === 'pending'));
    setStatus(room.status);
  }

  function renderKnocks(pending) {
    const list = $('knocks');
    list.replaceChildren(...pending.map((k) => {
      const li = document.createElement('li');
      const span = document.createElement('span');
      span.className = 'name';
      span.textContent = k.name;
      li.append(span, knockButton('admit', k, T.admit), knockButton('deny', k, T.deny));
      return li;
    }));
    show($('no-knocks'), pending.length === 0);
  }

  function knockButton(action, k, label) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = `btn btn-small ${action}`;
    b.dataset.knock = k.id;
    b.textContent = label;
    b.setAttribute('aria-label', `${label}: ${k.name}`);
    return b;
  }

  if (hostToken) {
    show($('host-panel'), true);
    $('lock').addEventListener('click', async () => renderRoom(await hostCall('POST', '/lock')));
    $('unlock').addEventListener('click', async () => renderRoom(await hostCall('POST', '/unlock')));
    $('end').addEventListener('click', async () => {
      const room = await hostCall('POST', '/end');
      if (room) final('ended', T.state_ended);
    });
    $('knocks').addEventListener('click', async (e) => {
      const b = e.target.closest('button[data-knock]');
      if (!b) return;
      b.disabled = true;
      const action = b.classList.contains('admit') ? 'admit' : 'deny';
      renderRoom(await hostCall('POST', `/knocks/${encodeURIComponent(b.dataset.knock)}/${action}`));
    });
    const poll = async () => { if (mode !== 'final') renderRoom(await hostCall('GET', '')); };
    poll();
    hostTimer = setInterval(poll, 3000);
  }

  // ---- 7. States ------------------------------------------------------------------------
  function showState(text) {
    $('state-message').textContent = text;
    show($('state'), !!text);
  }

  function setStatus(next) {
    if (!next) return;
    if (next === 'ended' || next === 'expired') return final(next, T[`state_${next}`]);
    status = next;
    lobby.dataset.status = next;
    const badge = $('status');
    if (badge) {
      badge.textContent = T[`status_${next}`] || next;
      badge.dataset.status = next;
      badge.className = `badge badge-${next}`;
    }
    show($('lock'), next !== 'locked');
    show($('unlock'), next === 'locked');
    render();
  }

  function render() {
    if (mode !== 'lobby') return;
    const canKnock = knockAllowed && !hostToken; // a host unlocks instead
    const messages = { locked: canKnock ? T.state_locked_knock : T.state_locked, full: T.state_full };
    showState(messages[status] || '');
    show($('join'), status === 'open' || !!storedToken() || (status === 'locked' && !!hostToken));
    show($('knock'), status === 'locked' && canKnock);
    show($('retry'), status === 'full');
  }

  /** A state with nothing left to do here: the message, and no lobby. */
  function final(state, text) {
    mode = 'final';
    lobby.dataset.state = state;
    clearTimeout(knockTimer);
    clearInterval(hostTimer);
    stopPreview();
    for (const sel of ['.lobby-grid', '.qr']) show(document.querySelector(sel), false);
    if (state === 'ended' || state === 'expired') {
      const badge = $('status');
      if (badge) {
        badge.textContent = T[`status_${state}`];
        badge.dataset.status = state;
        badge.className = `badge badge-${state}`;
      }
    }
    showState(text);
    show($('retry'), false);
  }

  // Copy link.
  const copy = $('copy');
  if (copy) {
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText($('link').href);
        copy.textContent = T.link_copied;
        setTimeout(() => { copy.textContent = T.copy_link; }, 2000);
      } catch { /* clipboard unavailable (insecure context) */ }
    });
  }

  // Start.
  render();
  const pending = parseJSON(session.get(key('knock')));
  if (pending && pending.id && pending.token) {
    if (status === 'locked') {
      nameInput.value = pending.name || nameInput.value;
      waitForHost(pending);
    } else {
      session.del(key('knock'));
    }
  }
  startPreview();
  window.callbridge = {
    page: 'join',
    get state() { return mode === 'lobby' ? status : mode === 'waiting' ? 'waiting' : lobby.dataset.state; },
  };
})();
