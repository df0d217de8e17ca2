/*
 * room.js — the room page (/r/{id}/room): WebRTC over the room's WebSocket, through the
 * daemon's SFU (data-media="sfu") or as a browser-to-browser mesh (data-media="mesh").
 *
 *   1. Setup      strings, room data (data-* on #app), tokens from sessionStorage, the
 *                 test hook window.callbridge = { state, peers, stats() }.
 *   2. Media      local microphone / camera / screen; mic, cam and screen toggles.
 *   3. Tiles      one tile per person (video + avatar + name); remote audio in <audio>.
 *   4. Peers      mesh: one RTCPeerConnection per peer, "perfect negotiation" (polite = lower
 *                 id); the newcomer offers to everyone in `welcome`; the others answer.
 *                 SFU: one RTCPeerConnection to the server. The page offers once (mic, and
 *                 camera in two simulcast layers, send-only); the server then offers receiving
 *                 tracks ("slots") and says whose media each carries (`sfu-slots`).
 *   5. Socket     GET /r/{id}/ws (tokens as subprotocols `token.…`, `host.…`): welcome / peer-joined / peer-left / signal / peer-media /
 *                 sfu-answer / sfu-offer / sfu-slots / speaking / room / closed; reconnects with backoff 1 s, 2 s, 4 s … 10 s; if the
 *                 upgrade is refused, re-joins once with the stored token.
 *   6. People     the live list of who is in, and the host panel (lock, end, remove, knocks).
 *   7. States     full-page end states (ended, removed, left, …) and small toasts.
 *
 * User-supplied text (names) only ever reaches the DOM through textContent.
 */
'use strict';
(() => {
  // ---- 1. Setup -------------------------------------------------------------------------
  const T = JSON.parse(document.getElementById('i18n').textContent);
  const app = document.getElementById('app');
  const $ = (id) => document.getElementById(id);
  const show = (el, on) => { if (el) el.hidden = !on; };
  const roomId = app.dataset.roomId;
  const kind = app.dataset.kind; // "video" | "voice"
  const sfuMode = app.dataset.media === 'sfu';
  const key = (k) => `cb:${k}:${roomId}`;
  const store = (name) => {
    let s = null;
    try { s = window[name]; } catch { /* storage disabled */ }
    return {
      get: (k) => { try { return s ? s.getItem(k) : null; } catch { return null; } },
      set: (k, v) => { try { if (s) s.setItem(k, v); } catch { /* ignore */ } },
    };
  };
  const session = store('sessionStorage');
  const local = store('localStorage');

  const peersPc = new Map(); // pid -> RTCPeerConnection (exposed to tests)
  const api = (window.callbridge = { state: 'connecting', peers: peersPc, selfId: null, room: null, stats, audioBytes });

  let token = session.get(key('token'));
  if (!token) {
    api.state = 'redirecting';
    location.replace(`/r/${roomId}`);
    return;
  }
  const hostToken = session.get(key('host'));

  let ws = null;
  let selfId = null;
  let selfName = local.get('cb:name') || '';
  let isHost = false;
  let iceServers = [];
  let finished = false; // a final state is shown: no more reconnects
  let backoff = 1000;
  let reconnectTimer = null;
  let rejoinTried = false;

  function setState(state) {
    api.state = state;
    app.dataset.state = state;
    const text = { connecting: T.state_connecting, reconnecting: T.state_reconnecting, 'in-room': T.state_in_room }[state];
    if (text) $('conn').textContent = text;
  }

  // ---- 2. Media -------------------------------------------------------------------------
  const prefs = Object.assign({ audio: true, video: kind === 'video' }, parseJSON(session.get(key('media'))));
  const media = { mic: null, cam: null, screen: null };

  function parseJSON(s) { try { return JSON.parse(s) || {}; } catch { return {}; } }
  const outgoingVideo = () => media.screen || (kind === 'video' ? media.cam : null);

  async function acquire(constraints) {
    const md = navigator.mediaDevices;
    if (!md || !md.getUserMedia) return null;
    try { return await md.getUserMedia(constraints); } catch { return null; }
  }

  async function startMedia() {
    let stream = await acquire({ audio: true, video: kind === 'video' });
    if (!stream && kind === 'video') stream = await acquire({ audio: true, video: false });
    if (!stream && kind === 'video') stream = await acquire({ audio: false, video: true });
    if (stream) {
      media.mic = stream.getAudioTracks()[0] || null;
      media.cam = stream.getVideoTracks()[0] || null;
    }
    if (media.mic) media.mic.enabled = prefs.audio;
    if (media.cam) media.cam.enabled = prefs.video;
    renderSelf();
  }

  function stopMedia() {
    for (const t of [media.mic, media.cam, media.screen]) if (t) t.stop();
    media.mic = media.cam = media.screen = null;
    const v = $('local-video');
    if (v) v.srcObject = null;
  }

  function mediaState() {
    return {
      audio: !!(media.mic && prefs.audio),
      video: !!(kind === 'video' && media.cam && prefs.video),
      screen: !!media.screen,
    };
  }
  function sendMedia() { send({ type: 'media', ...mediaState() }); }

  function setToggle(button, on, onText, offText) {
    if (!button) return;
    button.setAttribute('aria-pressed', String(on));
    button.querySelector('.ctl-text').textContent = on ? onText : offText;
  }

  function renderSelf() {
    const s = mediaState();
    setToggle($('mic'), s.audio, T.mic_on, T.mic_off);
    setToggle($('cam'), s.video, T.cam_on, T.cam_off);
    setToggle($('screen'), s.screen, T.stop_sharing, T.share_screen);
    const video = $('local-video');
    const track = outgoingVideo();
    const want = track ? new MediaStream([track]) : null;
    if (!sameTracks(video.srcObject, want)) video.srcObject = want;
    video.classList.toggle('mirror', !media.screen);
    const tile = $('self-tile');
    tile.classList.toggle('video-off', !(s.video || s.screen));
    tile.querySelector('.mic-off').hidden = s.audio;
    $('self-name').textContent = selfName;
    $('self-initials').textContent = initials(selfName);
  }

  function sameTracks(a, b) {
    const ids = (s) => (s ? s.getTracks().map((t) => t.id).join() : '');
    return ids(a) === ids(b);
  }

  /** Turns a device on when it was never obtained; returns the track or null. */
  async function ensureTrack(which) {
    if (media[which]) return media[which];
    const stream = await acquire(which === 'mic' ? { audio: true } : { video: true });
    const track = stream && (which === 'mic' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0]);
    if (!track) { toast(T.device_unavailable); return null; }
    media[which] = track;
    for (const c of conns.values()) {
      if (which === 'mic' && c.audioTx) c.audioTx.sender.replaceTrack(track).catch(() => {});
      if (which === 'cam' && !media.screen) setOutgoingVideo(c, track);
    }
    return track;
  }

  async function toggleMic() {
    if (!media.mic) { if (!(await ensureTrack('mic'))) return; prefs.audio = true; } else prefs.audio = !prefs.audio;
    media.mic.enabled = prefs.audio;
    savePrefs();
  }

  async function toggleCam() {
    if (!media.cam) { if (!(await ensureTrack('cam'))) return; prefs.video = true; } else prefs.video = !prefs.video;
    media.cam.enabled = prefs.video;
    savePrefs();
  }

  function savePrefs() {
    session.set(key('media'), JSON.stringify(prefs));
    renderSelf();
    sendMedia();
  }

  async function toggleScreen() {
    if (media.screen) return stopScreen();
    const md = navigator.mediaDevices;
    if (!md || !md.getDisplayMedia) return toast(T.screen_unsupported);
    // An SFU voice room carries audio only.
    if (sfuMode && kind === 'voice') return toast(T.screen_unsupported);
    let stream;
    try { stream = await md.getDisplayMedia({ video: true, audio: false }); } catch { return; }
    const track = stream.getVideoTracks()[0];
    if (!track || finished) { stream.getTracks().forEach((t) => t.stop()); return; }
    if ('contentHint' in track) track.contentHint = 'detail';
    media.screen = track;
    track.addEventListener('ended', stopScreen);
    for (const c of conns.values()) setOutgoingVideo(c, track);
    renderSelf();
    sendMedia();
  }

  function stopScreen() {
    const track = media.screen;
    if (!track) return;
    media.screen = null;
    track.removeEventListener('ended', stopScreen);
    track.stop();
    for (const c of conns.values()) setOutgoingVideo(c, outgoingVideo());
    renderSelf();
    sendMedia();
  }

  /** Sends `track` (or nothing) as this page's video to one peer. */
  function setOutgoingVideo(c, track) {
    if (c.pc.signalingState === 'closed') return;
    if (c.videoTx) {
      c.videoTx.sender.replaceTrack(track).catch(() => {});
      // Voice rooms only send video while sharing: switching direction renegotiates.
      if (kind === 'voice') c.videoTx.direction = track ? 'sendrecv' : 'inactive';
    } else if (track) {
      c.videoTx = c.pc.addTransceiver(track, { direction: 'sendrecv' }); // renegotiates
    }
  }

  // ---- 3. Tiles -------------------------------------------------------------------------
  const members = new Map(); // pid -> { name, media: {audio, video, screen} | null, tile }

  function initials(name) {
    const words = (name || '').trim().split(/\s+/).filter(Boolean);
    return words.slice(0, 2).map((w) => Array.from(w)[0].toUpperCase()).join('') || '?';
  }

  function member(pid, name) {
    let m = members.get(pid);
    if (!m) {
      m = { name: name || nameFromRoom(pid), media: null, tile: null };
      members.set(pid, m);
    } else if (name) {
      m.name = name;
    }
    if (!m.tile) {
      m.tile = makeTile(pid);
      placeSlots();
    }
    renderTile(pid);
    return m;
  }

  function nameFromRoom(pid) {
    const p = api.room && (api.room.participants || []).find((x) => x.id === pid);
    return p ? p.name : '';
  }

  function el(tag, className, attrs = {}) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }

  function makeTile(pid) {
    const tile = el('figure', 'tile video-off', { 'data-pid': pid });
    if (kind === 'video') tile.append(remoteVideo(pid));
    const avatar = el('div', 'avatar', { 'aria-hidden': 'true' });
    avatar.append(el('span'));
    const audio = el('audio', 'remote-audio', { 'data-pid': pid, autoplay: '' });
    const caption = el('figcaption', 'tile-name');
    const mic = el('span', 'mic-off', { title: T.muted });
    mic.textContent = T.muted;
    mic.hidden = true;
    caption.append(el('span', 'name'), mic);
    tile.append(avatar, audio, caption);
    const more = $('more-tile');
    if (more) $('grid').insertBefore(tile, more); else $('grid').append(tile);
    layout();
    return tile;
  }

  function remoteVideo(pid) {
    const v = el('video', 'remote', { 'data-pid': pid, autoplay: '', playsinline: '' });
    v.muted = true; // sound plays through the tile's <audio>, so video can always autoplay
    return v;
  }

  function renderTile(pid) {
    const m = members.get(pid);
    if (!m || !m.tile) return;
    const s = m.media || { audio: true, video: kind === 'video', screen: false };
    const video = m.tile.querySelector('video.remote');
    const hasVideo = !!(video && video.srcObject && video.srcObject.getVideoTracks().length);
    m.tile.classList.toggle('video-off', !(hasVideo && (s.video || s.screen)));
    m.tile.classList.toggle('sharing', !!s.screen);
    m.tile.querySelector('.name').textContent = m.name;
    m.tile.querySelector('.avatar span').textContent = initials(m.name);
    m.tile.querySelector('.mic-off').hidden = s.audio !== false;
  }

  function dropTile(pid) {
    const m = members.get(pid);
    if (m && m.tile) m.tile.remove();
    members.delete(pid);
    layout();
  }

  /** Most tiles in the grid; beyond, people without video go to one "+N" tile (the people
   *  panel lists everyone). The SFU sends at most 16 cameras, so 16 + yourself fit. */
  const MAX_TILES = 17;

  function layout() {
    const grid = $('grid');
    const tiles = [...grid.querySelectorAll('figure.tile')];
    let more = $('more-tile');
    const crowded = tiles.length > MAX_TILES;
    let hidden = 0;
    for (const t of tiles) {
      // In a crowd, a tile stays when it shows video or its person is speaking.
      const off = crowded && t.id !== 'self-tile' && t.classList.contains('video-off') && !t.classList.contains('speaking');
      t.classList.toggle('off-grid', off);
      if (off) hidden += 1;
    }
    if (hidden && !more) {
      more = el('button', 'tile tile-more', { id: 'more-tile', type: 'button' });
      more.addEventListener('click', () => { app.classList.add('side-toggled'); syncPeopleToggle(); });
      grid.append(more);
    }
    if (more) {
      more.hidden = !hidden;
      more.textContent = `+${hidden}`;
      more.setAttribute('aria-label', `${T.people}: +${hidden}`);
    }
    grid.dataset.count = String(Math.min(tiles.length - hidden + (hidden ? 1 : 0), MAX_TILES));
  }

  function onTrack(pid, track) {
    const m = member(pid);
    if (track.kind === 'audio') {
      const audio = m.tile.querySelector('audio');
      audio.srcObject = new MediaStream([track]);
      play(audio);
    } else {
      let video = m.tile.querySelector('video.remote');
      if (!video) { // voice room: a video track is a shared screen
        video = remoteVideo(pid);
        m.tile.prepend(video);
      }
      video.srcObject = new MediaStream([track]);
      play(video);
      track.addEventListener('unmute', () => renderTile(pid));
      track.addEventListener('mute', () => renderTile(pid));
    }
    renderTile(pid);
  }

  function play(mediaEl) {
    const p = mediaEl.play();
    if (p && p.catch) p.catch((e) => { if (e && e.name === 'NotAllowedError') show($('enable-audio'), !finished); });
  }

  // ---- 4. Peers -------------------------------------------------------------------------
  const conns = new Map(); // pid -> connection state (below)

  /** The connection to `pid`; the newcomer (`offerer`) adds its transceivers, which offers. */
  function connection(pid, offerer) {
    let c = conns.get(pid);
    if (c) return c;
    const pc = new RTCPeerConnection({ iceServers });
    c = { pid, pc, polite: selfId < pid, makingOffer: false, ignoreOffer: false, settingAnswer: false,
      audioTx: null, videoTx: null, queue: Promise.resolve() };
    conns.set(pid, c);
    peersPc.set(pid, pc);
    member(pid);

    pc.onnegotiationneeded = async () => {
      try {
        c.makingOffer = true;
        await pc.setLocalDescription();
        signal(pid, { description: pc.localDescription });
      } catch (e) {
        console.warn('callbridge: offer failed', e);
      } finally {
        c.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => { if (candidate) signal(pid, { candidate }); };
    pc.ontrack = ({ track }) => onTrack(pid, track);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') pc.restartIce();
      const m = members.get(pid);
      if (m && m.tile) m.tile.dataset.connection = pc.connectionState;
    };

    if (offerer) {
      c.audioTx = pc.addTransceiver(media.mic || 'audio', { direction: 'sendrecv' });
      const video = outgoingVideo();
      if (kind === 'video') c.videoTx = pc.addTransceiver(video || 'video', { direction: 'sendrecv' });
      else if (video) c.videoTx = pc.addTransceiver(video, { direction: 'sendrecv' });
    }
    return c;
  }

  /** After a remote offer: send our tracks on the transceivers it created. */
  function adoptTransceivers(c) {
    for (const t of c.pc.getTransceivers()) {
      if (t.stopped || t === c.audioTx || t === c.videoTx) continue;
      const k = t.receiver.track.kind;
      if (k === 'audio' && !c.audioTx) {
        c.audioTx = t;
        t.direction = 'sendrecv';
        t.sender.replaceTrack(media.mic).catch(() => {});
      } else if (k === 'video' && !c.videoTx && kind === 'video') {
        c.videoTx = t;
        t.direction = 'sendrecv';
        t.sender.replaceTrack(outgoingVideo()).catch(() => {});
      }
    }
  }

  function onSignal(from, data) {
    if (!from || from === selfId || !data || !selfId) return;
    const c = connection(from, false);
    c.queue = c.queue.then(() => applySignal(c, data)).catch((e) => console.warn('callbridge: signal', e));
  }

  async function applySignal(c, data) {
    const pc = c.pc;
    if (pc.signalingState === 'closed') return;
    if (data.description) {
      const d = data.description;
      const ready = !c.makingOffer && (pc.signalingState === 'stable' || c.settingAnswer);
      const collision = d.type === 'offer' && !ready;
      c.ignoreOffer = !c.polite && collision;
      if (c.ignoreOffer) return;
      c.settingAnswer = d.type === 'answer';
      try { await pc.setRemoteDescription(d); } finally { c.settingAnswer = false; }
      if (d.type === 'offer') {
        adoptTransceivers(c);
        await pc.setLocalDescription();
        signal(c.pid, { description: pc.localDescription });
        // A voice room's sharer answering a newcomer: offer the screen on top.
        if (kind === 'voice' && media.screen && !c.videoTx) setOutgoingVideo(c, media.screen);
      }
    } else if (data.candidate) {
      try { await pc.addIceCandidate(data.candidate); } catch (e) { if (!c.ignoreOffer) throw e; }
    }
  }

  function closeConn(pid) {
    const c = conns.get(pid);
    if (c) c.pc.close();
    conns.delete(pid);
    peersPc.delete(pid);
    if (c && c === sfu) sfu = null;
  }

  // ---- 4b. SFU --------------------------------------------------------------------------
  const SFU = 'sfu'; // the key of the server's connection in `conns` (never a participant id)
  let sfu = null; // { pc, audioTx, videoTx, queue, slots: mid -> pid, tracks: mid -> track }

  function startSfu() {
    closeConn(SFU);
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
    const c = { pid: SFU, pc, audioTx: null, videoTx: null, queue: Promise.resolve(), slots: new Map(), tracks: new Map() };
    sfu = c;
    conns.set(SFU, c);
    peersPc.set(SFU, pc);
    c.audioTx = pc.addTransceiver(media.mic || 'audio', { direction: 'sendonly' });
    if (kind === 'video') {
      // Two layers: receivers with many tiles get the low one, a large tile the high one.
      c.videoTx = pc.addTransceiver(outgoingVideo() || 'video', { direction: 'sendonly', sendEncodings: [
        { rid: 'l', scaleResolutionDownBy: 2, maxBitrate: 200000 },
        { rid: 'h', maxBitrate: 900000 },
      ] });
    }
    pc.ontrack = ({ transceiver, track }) => { c.tracks.set(transceiver.mid, track); placeSlots(); };
    pc.onconnectionstatechange = () => {
      $('self-tile').dataset.connection = pc.connectionState;
      // The server lost us (or we it): offer afresh on the same socket.
      if (pc.connectionState === 'failed' && sfu === c && !finished) setTimeout(() => { if (sfu === c && ws) startSfu(); }, 1000);
    };
    sfuStep(async () => {
      await pc.setLocalDescription(await pc.createOffer());
      send({ type: 'sfu-offer', sdp: pc.localDescription.sdp });
    });
  }

  /** Runs signaling steps with the server one after another, as they arrived. */
  function sfuStep(step) {
    const c = sfu;
    if (!c) return;
    c.queue = c.queue.then(() => (c.pc.signalingState === 'closed' ? undefined : step(c.pc)))
      .catch((e) => console.warn('callbridge: sfu', e));
  }

  function onSfuOffer(sdp) {
    sfuStep(async (pc) => {
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await pc.setLocalDescription();
      send({ type: 'sfu-answer', sdp: pc.localDescription.sdp });
    });
  }

  /** Puts each receiving track into the tile of whoever it carries now. */
  function placeSlots() {
    if (!sfu) return;
    const want = new Map(); // pid -> { audio: track, video: track }
    for (const [mid, pid] of sfu.slots) {
      const track = sfu.tracks.get(mid);
      if (!pid || !track || track.readyState === 'ended') continue;
      const w = want.get(pid) || {};
      w[track.kind] = track;
      want.set(pid, w);
    }
    for (const [pid, m] of members) {
      if (!m.tile) continue;
      const w = want.get(pid) || {};
      const audio = m.tile.querySelector('audio');
      if ((audio.srcObject && audio.srcObject.getTracks()[0]) !== w.audio) {
        audio.srcObject = w.audio ? new MediaStream([w.audio]) : null;
        if (w.audio) play(audio);
      }
      const video = m.tile.querySelector('video.remote');
      if (video && (video.srcObject && video.srcObject.getTracks()[0]) !== w.video) {
        video.srcObject = w.video ? new MediaStream([w.video]) : null;
        if (w.video) play(video);
      }
      renderTile(pid);
    }
    layout();
  }

  /** A host muted this page: the device goes off (the user may turn it on again). */
  function onMutedByHost(msg) {
    let changed = false;
    if (msg.audio === true && prefs.audio) { prefs.audio = false; if (media.mic) media.mic.enabled = false; changed = true; }
    if (msg.video === true && prefs.video) { prefs.video = false; if (media.cam) media.cam.enabled = false; changed = true; }
    if (changed) { savePrefs(); toast(T.muted_by_host); }
  }

  function onSpeaking(ids) {
    const speaking = new Set(ids || []);
    for (const [pid, m] of members) if (m.tile) m.tile.classList.toggle('speaking', speaking.has(pid));
    $('self-tile').classList.toggle('speaking', speaking.has(selfId));
    layout();
  }

  function closeAll() {
    for (const pid of [...conns.keys()]) closeConn(pid);
    for (const pid of [...members.keys()]) dropTile(pid);
  }

  async function stats() {
    if (sfu) return sfuStats();
    const out = {};
    for (const [pid, pc] of peersPc) {
      const r = { framesDecoded: 0, audioBytesReceived: 0, videoBytesReceived: 0, videoTracks: 0,
        connectionState: pc.connectionState };
      try {
        (await pc.getStats()).forEach((s) => {
          if (s.type !== 'inbound-rtp') return;
          const k = s.kind || s.mediaType;
          if (k === 'video') {
            r.videoTracks += 1;
            r.framesDecoded += s.framesDecoded || 0;
            r.videoBytesReceived += s.bytesReceived || 0;
          } else if (k === 'audio') {
            r.audioBytesReceived += s.bytesReceived || 0;
          }
        });
      } catch { /* closed meanwhile */ }
      out[pid] = r;
    }
    return out;
  }

  /** All audio bytes received, whoever's slot carried them (tests: nothing of a removed
   *  participant may still arrive, on any slot). */
  async function audioBytes() {
    let total = 0;
    for (const pc of peersPc.values()) {
      const report = await pc.getStats().catch(() => new Map());
      report.forEach((s) => { if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'audio') total += s.bytesReceived || 0; });
    }
    return total;
  }

  /** SFU rooms: what arrives for each other participant, by the slots that carry them. */
  async function sfuStats() {
    const out = {};
    const c = sfu;
    const report = await c.pc.getStats().catch(() => new Map());
    const pair = [...report.values()].find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
    const remote = pair && report.get(pair.remoteCandidateId);
    for (const [mid, pid] of c.slots) {
      if (!pid) continue;
      const r = out[pid] || (out[pid] = { framesDecoded: 0, audioBytesReceived: 0, videoBytesReceived: 0, videoTracks: 0,
        connectionState: c.pc.connectionState, remote: remote ? `${remote.address}:${remote.port}` : null });
      report.forEach((s) => {
        if (s.type !== 'inbound-rtp' || s.mid !== mid) return;
        if ((s.kind || s.mediaType) === 'video') {
          r.videoTracks += 1;
          r.framesDecoded += s.framesDecoded || 0;
          r.videoBytesReceived += s.bytesReceived || 0;
        } else {
          r.audioBytesReceived += s.bytesReceived || 0;
        }
      });
    }
    return out;
  }

  // ---- 5. Socket ------------------------------------------------------------------------
  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  }
  function signal(to, data) { send({ type: 'signal', to, data }); }

  function connect() {
    clearTimeout(reconnectTimer);
    if (finished) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    // Credentials ride as subprotocols, never in the URL: proxies log URLs.
    const protocols = ['callbridge', `token.${token}`].concat(hostToken ? [`host.${hostToken}`] : []);
    const sock = new WebSocket(`${proto}//${location.host}/r/${roomId}/ws`, protocols);
    let opened = false;
    ws = sock;
    sock.onopen = () => { opened = true; };
    sock.onmessage = (e) => {
      if (ws !== sock) return;
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      handle(msg);
    };
    sock.onclose = () => {
      if (ws !== sock) return;
      ws = null;
      closeAll();
      if (finished) return;
      if (opened) scheduleReconnect();
      else upgradeRefused();
    };
  }

  function scheduleReconnect() {
    setState(selfId ? 'reconnecting' : 'connecting');
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  }

  /** The socket never opened: maybe our token lapsed. Re-join once with it (passes a lock). */
  async function upgradeRefused() {
    if (rejoinTried) return scheduleReconnect();
    rejoinTried = true;
    let res;
    let body;
    try {
      res = await fetch(`/r/${roomId}/join`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: selfName || local.get('cb:name') || '?', token }),
      });
      body = await res.json().catch(() => ({}));
    } catch {
      rejoinTried = false; // the server is unreachable: try again later
      return scheduleReconnect();
    }
    if (finished) return;
    if (res.ok && body.token) {
      token = body.token;
      session.set(key('token'), token);
      local.set(key('token'), token);
      if (body.participant_id) session.set(key('pid'), body.participant_id);
      return connect();
    }
    if (res.status === 429 || res.status >= 500) {
      rejoinTried = false;
      return scheduleReconnect();
    }
    refused(body.error, body);
  }

  function handle(msg) {
    switch (msg.type) {
      case 'welcome': return onWelcome(msg);
      case 'peer-joined':
        if (!msg.peer || msg.peer.id === selfId) return;
        closeConn(msg.peer.id); // a reconnecting peer starts over and offers again
        member(msg.peer.id, msg.peer.name);
        toast(T.joined_toast.replace('{name}', msg.peer.name));
        return sendMedia(); // so the newcomer learns our mic / camera state
      case 'peer-left': {
        const m = members.get(msg.id);
        closeConn(msg.id);
        dropTile(msg.id);
        if (m && m.name) toast(T.left_toast.replace('{name}', m.name));
        return;
      }
      case 'signal': return onSignal(msg.from, msg.data);
      case 'sfu-answer': return sfuStep((pc) => pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp }));
      case 'sfu-offer': return onSfuOffer(msg.sdp);
      case 'sfu-slots':
        if (sfu) sfu.slots = new Map((msg.slots || []).map((x) => [x.mid, x.id]));
        return placeSlots();
      case 'speaking': return onSpeaking(msg.ids);
      case 'muted': return onMutedByHost(msg);
      case 'peer-media': {
        if (msg.id === selfId) return;
        const m = member(msg.id);
        m.media = { audio: !!msg.audio, video: !!msg.video, screen: !!msg.screen };
        return renderTile(msg.id);
      }
      case 'room': return onRoom(msg.room);
      case 'closed': return onClosed(msg.reason);
      default: return undefined;
    }
  }

  function onWelcome(msg) {
    closeAll();
    selfId = msg.self.id;
    selfName = msg.self.name || selfName;
    isHost = !!msg.self.host;
    api.selfId = selfId;
    iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
    backoff = 1000;
    rejoinTried = false;
    $('self-tile').dataset.pid = selfId;
    show($('host-panel'), isHost);
    onRoom(msg.room);
    if (finished) return;
    for (const p of msg.peers || []) {
      if (p.id === selfId) continue;
      member(p.id, p.name);
      if (!sfuMode) connection(p.id, true);
    }
    if (sfuMode) startSfu();
    renderSelf();
    sendMedia();
    setState('in-room');
  }

  function onClosed(reason) {
    const states = {
      ended: T.state_ended,
      expired: T.state_expired,
      removed: T.state_removed,
      replaced: T.state_replaced,
    };
    if (states[reason]) finish(reason, states[reason]);
    // "shutdown" and anything else: the close that follows reconnects.
  }

  /** A refused (re-)join: show what it means. */
  function refused(code, body = {}) {
    switch (code) {
      case 'ended': return finish('ended', T.state_ended);
      case 'expired': return finish('expired', T.state_expired);
      case 'banned': return finish('removed', T.state_removed);
      case 'not_found': return finish('not_found', T.state_not_found);
      case 'locked': return finish('locked', body.knock ? T.state_locked_knock : T.state_locked);
      case 'full': return finish('full', T.state_full, { retry: true });
      default: return finish('error', T.state_error, { retry: true });
    }
  }

  // ---- 6. People and host controls ------------------------------------------------------
  function onRoom(room) {
    if (!room || typeof room !== 'object') return;
    api.room = room;
    if (room.status === 'ended' || room.status === 'expired') {
      finish(room.status, T[`state_${room.status}`]);
      return;
    }
    const present = (room.participants || []).filter((p) => p.present);
    $('participants').replaceChildren(...present.map(personItem));
    $('count').textContent = String(present.length);
    for (const p of present) {
      const m = members.get(p.id);
      if (m && !m.name) { m.name = p.name; renderTile(p.id); }
    }
    show($('lock'), !room.locked);
    show($('unlock'), !!room.locked);
    const pending = (room.knocks || []).filter((k) => k.status === 'pending');
    announceKnocks(pending);
    $('knocks').replaceChildren(...pending.map(knockItem));
    show($('no-knocks'), pending.length === 0);
    $('knock-count').textContent = String(pending.length);
    show($('knock-count'), isHost && pending.length > 0);
  }

  const knocksSeen = new Set();
  function announceKnocks(pending) {
    for (const k of pending) {
      if (!knocksSeen.has(k.id) && isHost) toast(T.knock_toast.replace('{name}', k.name));
      knocksSeen.add(k.id);
    }
  }

  function button(className, label, data, ariaLabel) {
    const b = el('button', `btn btn-small ${className}`, { type: 'button', 'aria-label': ariaLabel });
    Object.assign(b.dataset, data);
    b.textContent = label;
    return b;
  }

  function personItem(p) {
    const li = el('li', 'person');
    const name = el('span', 'name');
    name.textContent = p.name;
    li.append(name);
    if (p.id === selfId) {
      const you = el('span', 'you');
      you.textContent = ` (${T.you})`;
      li.append(you);
    } else if (isHost) {
      li.append(button('mute', T.mute, { pid: p.id }, `${T.mute}: ${p.name}`),
        button('remove', T.remove, { pid: p.id }, `${T.remove}: ${p.name}`));
    }
    return li;
  }

  function knockItem(k) {
    const li = el('li', 'knock');
    const name = el('span', 'name');
    name.textContent = k.name;
    li.append(name,
      button('admit', T.admit, { knock: k.id }, `${T.admit}: ${k.name}`),
      button('deny', T.deny, { knock: k.id }, `${T.deny}: ${k.name}`));
    return li;
  }

  async function hostCall(method, path, body) {
    try {
      const headers = { Authorization: `Bearer ${hostToken}` };
      if (body) headers['Content-Type'] = 'application/json';
      const res = await fetch(`/api/v1/rooms/${roomId}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
      const answer = await res.json().catch(() => null);
      if (!res.ok) { toast(T.action_failed); return null; }
      return answer;
    } catch {
      toast(T.action_failed);
      return null;
    }
  }

  // ---- 7. States and toasts -------------------------------------------------------------
  /** Ends this page's part in the call and shows `message` full-page. */
  function finish(state, message, opts = {}) {
    finished = true;
    clearTimeout(reconnectTimer);
    const sock = ws;
    ws = null;
    if (sock) { try { sock.close(1000, state); } catch { /* already closed */ } }
    closeAll();
    stopMedia();
    $('participants').replaceChildren();
    $('count').textContent = '0';
    app.classList.remove('side-toggled');
    setState(state);
    $('state-message').textContent = message;
    show($('rejoin'), !!opts.rejoin);
    show($('retry'), !!opts.retry);
    show($('state'), true);
    show($('enable-audio'), false);
    const focus = opts.rejoin ? $('rejoin') : opts.retry ? $('retry') : $('back');
    if (focus) focus.focus();
  }

  function toast(text) {
    const t = el('div', 'toast');
    t.textContent = text;
    $('toasts').append(t);
    setTimeout(() => t.remove(), 4000);
  }

  // ---- Wiring ---------------------------------------------------------------------------
  $('mic').addEventListener('click', toggleMic);
  if ($('cam')) $('cam').addEventListener('click', toggleCam);
  $('screen').addEventListener('click', toggleScreen);
  if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) show($('screen'), false);
  $('leave').addEventListener('click', () => finish('left', T.state_left, { rejoin: true }));
  $('rejoin').addEventListener('click', () => location.reload());
  $('retry').addEventListener('click', () => location.reload());
  $('enable-audio').addEventListener('click', () => {
    document.querySelectorAll('audio.remote-audio, video.remote').forEach((m) => m.play().catch(() => {}));
    show($('enable-audio'), false);
  });
  // The people panel: shown beside the grid on wide screens, a drawer on narrow ones.
  const wide = window.matchMedia('(min-width: 900px)');
  const syncPeopleToggle = () => {
    const toggled = app.classList.contains('side-toggled');
    $('people-toggle').setAttribute('aria-expanded', String(wide.matches ? !toggled : toggled));
  };
  $('people-toggle').addEventListener('click', () => { app.classList.toggle('side-toggled'); syncPeopleToggle(); });
  wide.addEventListener('change', syncPeopleToggle);
  syncPeopleToggle();

  $('lock').addEventListener('click', async () => onRoom(await hostCall('POST', '/lock')));
  $('unlock').addEventListener('click', async () => onRoom(await hostCall('POST', '/unlock')));
  $('end').addEventListener('click', async () => {
    const room = await hostCall('POST', '/end');
    if (room) finish('ended', T.state_ended);
  });
  $('mute-all').addEventListener('click', () => hostCall('POST', '/mute', { audio: true, except: selfId }));
  $('participants').addEventListener('click', async (e) => {
    const mute = e.target.closest('button.mute[data-pid]');
    if (mute) return hostCall('POST', `/participants/${encodeURIComponent(mute.dataset.pid)}/mute`, { audio: true });
    const b = e.target.closest('button.remove[data-pid]');
    if (!b) return;
    b.disabled = true;
    onRoom(await hostCall('DELETE', `/participants/${encodeURIComponent(b.dataset.pid)}`));
  });
  $('knocks').addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-knock]');
    if (!b) return;
    b.disabled = true;
    const action = b.classList.contains('admit') ? 'admit' : 'deny';
    onRoom(await hostCall('POST', `/knocks/${encodeURIComponent(b.dataset.knock)}/${action}`));
  });

  window.addEventListener('online', () => { if (!ws && !finished) { backoff = 1000; connect(); } });

  setState('connecting');
  renderSelf();
  startMedia().then(connect);
})();
