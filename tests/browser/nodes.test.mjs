// Two callbridge nodes on one PostgreSQL, and a real Chromium: two pages of one room, each
// loaded from a different node, decode each other's video, in an SFU room (the media of both
// goes to the room's home node's SFU) and in a mesh (their signaling meets on the home node).
//
// Run by scripts/test after the Rust tests, against the daemon binary in $CALLBRIDGE_BIN and the
// PostgreSQL server in $CALLBRIDGE_TEST_PG.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, createWriteStream, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, launchChromium, until } from './support.mjs';

const BIN = process.env.CALLBRIDGE_BIN;
const PG = process.env.CALLBRIDGE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
const ARTIFACTS = process.env.CALLBRIDGE_ARTIFACTS ?? 'test-artifacts';
const API_TOKEN = 'browser-nodes-api-token-0123456789';
const nodes = [];
let browser, database;



const psql = (sql) => execFileSync('psql', [PG, '-v', 'ON_ERROR_STOP=1', '-qc', sql], { stdio: 'pipe' });

before(async () => {
  assert.ok(BIN, 'CALLBRIDGE_BIN must name the daemon binary');
  mkdirSync(ARTIFACTS, { recursive: true });
  database = `cbn_${randomBytes(6).toString('hex')}`;
  psql(`CREATE DATABASE ${database}`);
  const url = `${PG.slice(0, PG.lastIndexOf('/'))}/${database}`;
  for (const n of [1, 2]) {
    const dir = mkdtempSync(join(tmpdir(), `callbridge-node${n}-`));
    const port = await freePort();
    writeFileSync(join(dir, 'config.toml'), [
      '[server]', `listen = "127.0.0.1:${port}"`, 'join_rate_per_minute = 0', 'socket_rate_per_minute = 0',
      '[storage]', `url = "${url}"`, `data_dir = "${dir}"`,
      '[rooms]', 'ice_servers = []',
      '[api]', `token = "${API_TOKEN}"`,
      '[sfu]', 'listen = "127.0.0.1:0"', '',
    ].join('\n'));
    const log = join(ARTIFACTS, `node${n}.log`);
    const child = spawn(BIN, ['run', '--config', join(dir, 'config.toml')], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: 'info' } });
    child.stderr.pipe(createWriteStream(log));
    const base = `http://127.0.0.1:${port}`;
    await until(`node ${n} to answer`, async () => (await fetch(`${base}/healthz`)).ok);
    nodes.push({ child, base, log });
  }
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  for (const n of nodes) n.child.kill('SIGTERM');
  await Promise.all(nodes.map((n) => new Promise((r) => (n.child.exitCode !== null ? r() : n.child.once('exit', r)))));
  if (database) psql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
});

async function createRoom(node, body) {
  const r = await fetch(`${node.base}/api/v1/rooms`, {
    method: 'POST', headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  assert.equal(r.status, 201);
  return r.json();
}

/** The SFU address a node logged. */
function sfuAddr(node) {
  const log = readFileSync(node.log, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
  const m = /SFU listening \(UDP\) addrs=\[([0-9.:]+)\]/.exec(log);
  assert.ok(m, 'the node logged its SFU address');
  return m[1];
}

/** Opens the room's page on `node`, joins as `name`, and waits until it is in the room. */
async function enterOn(node, roomId, name) {
  const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
  const p = await context.newPage();
  p.on('pageerror', (e) => console.error('page error:', e.message));
  await p.goto(`${node.base}/r/${roomId}`);
  await p.fill('#name', name);
  await p.click('#join');
  await p.waitForURL(/\/room$/);
  await until(`${name} in the room`, () => p.evaluate(() => window.callbridge?.state === 'in-room'));
  return p;
}

const stats = (p) => p.evaluate(async () => Object.values(await window.callbridge.stats()));

for (const media of ['sfu', 'mesh']) {
  test(`a ${media} room: pages loaded from two nodes decode each other's video`, async () => {
    const room = await createRoom(nodes[0], { title: `Across nodes (${media})`, media });
    const ada = await enterOn(nodes[0], room.id, 'Ada');
    const bob = await enterOn(nodes[1], room.id, 'Bob');
    for (const [who, p] of [['Ada', ada], ['Bob', bob]]) {
      await until(`${who} decoding the other's video`, async () => {
        const s = await stats(p);
        return s.length === 1 && s[0].framesDecoded > 0 && s[0].audioBytesReceived > 0;
      });
    }
    if (media === 'sfu') {
      // Both pages send to and receive from the SFU of the room's home node (the first
      // page's node), whichever node served them.
      const home = sfuAddr(nodes[0]);
      for (const p of [ada, bob]) {
        const s = await stats(p);
        assert.ok(s.every((r) => r.remote === home), `media goes through the home node's SFU at ${home}: ${JSON.stringify(s)}`);
      }
    }
    await bob.screenshot({ path: join(ARTIFACTS, `nodes-${media}.png`) });
    await ada.context().close();
    await bob.context().close();
  });
}
