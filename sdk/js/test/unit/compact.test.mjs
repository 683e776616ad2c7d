// The compact encoding (herald.v1.proto) byte for byte. Every vector below was encoded by a
// protobuf implementation other than the SDK's: `protoc --encode` (libprotoc 3.21) from the text
// form in its comment, with the schema of proto/herald/v1/wire.proto (plus `Disconnect` = 16,
// `DeviceReply` = 17 and `DeviceRequest` = 11/12, as specified for the server-disconnect and
// device frames), each preceded by its length; the three `RUST` vectors were captured from a live
// `herald dev` (the Rust encoder). Decoding must give the JSON v1 frame, cursors rebuilt exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompactReader, encodeCompact } from '../../dist/herald.js';

const hex = (s) => Uint8Array.from(Buffer.from(s, 'hex'));
const toHex = (b) => Buffer.from(b).toString('hex');
const ULID = '01JDX7ZQ3V5W8B0C2D4E6F8G9H';
const TS = 1763996400123;

/** [bytes, the JSON v1 frame they are (undefined: nothing is delivered)]: every server frame type. */
const SERVER = [
  // welcome { connection_id: "k3j" node: "edge-1" region: "local" heartbeat_ms: 25000 protocol: 1 expires_at: 1764000000 }
  ['2212200a036b336a1206656467652d311a056c6f63616c20a8c301280130808292c906', { type: 'welcome', connection_id: 'k3j', node: 'edge-1', region: 'local', heartbeat_ms: 25000, protocol: 1, expires_at: 1764000000 }],
  // welcome { … the same without expires_at }
  ['1c121a0a036b336a1206656467652d311a056c6f63616c20a8c3012801', { type: 'welcome', connection_id: 'k3j', node: 'edge-1', region: 'local', heartbeat_ms: 25000, protocol: 1 }],
  // subscribed { id { num: 1 } channel: "incidents" cursor: "c1.8f2a.eu-west.40" recovered: true sub: 3 cursor_epoch: "8f2a" cursor_region: "eu-west" }
  [
    '381a360a0208021209696e636964656e74731a1263312e386632612e65752d776573742e3430200128033204386632613a0765752d77657374',
    { type: 'subscribed', id: 1, channel: 'incidents', cursor: 'c1.8f2a.eu-west.40', recovered: true },
  ],
  // message { sub: 3 offset: 41 ulid: <ULID's 16 bytes> ts: TS data: '{"ent":"incident","id":"PAM4FGS","type":"updated"}' }
  [
    '530a51080310291a1001937a7fdc7b2f10b0304d238cf4413130fbf383b3ab333a327b22656e74223a22696e636964656e74222c226964223a2250414d34464753222c2274797065223a2275706461746564227d',
    { type: 'message', channel: 'incidents', id: ULID, cursor: 'c1.8f2a.eu-west.42', ts: TS, data: { ent: 'incident', id: 'PAM4FGS', type: 'updated' } },
  ],
  // message { sub: 3 offset: 42 keyed: <the 125 bits of "ABCDEFGHJKMNPQRSTVWXYZ012"> ts: TS data: "[1,2]" }
  ['260a240803102a22100a5b1ae7c2329d2b6be33adf3bef802230fbf383b3ab333a055b312c325d', { type: 'message', channel: 'incidents', id: 'KABCDEFGHJKMNPQRSTVWXYZ012', cursor: 'c1.8f2a.eu-west.43', ts: TS, data: [1, 2] }],
  // message { sub: 3 text: "F-17_x" ts: TS data: '"é"' }: offset 0 is absent from the bytes
  ['190a1708032a06462d31375f7830fbf383b3ab333a0422c3a922', { type: 'message', channel: 'incidents', id: 'F-17_x', cursor: 'c1.8f2a.eu-west.1', ts: TS, data: 'é' }],
  // message { sub: 3 offset: 44 ulid: <ULID> ts: TS data: "null" origins { region: "ap-south" next: 5 } origins { region: "us-east" } }
  [
    '3e0a3c0803102c1a1001937a7fdc7b2f10b0304d238cf4413130fbf383b3ab333a046e756c6c420c0a0861702d736f757468100542090a0775732d65617374',
    { type: 'message', channel: 'incidents', id: ULID, cursor: 'c2.8f2a.eu-west.45.ap-south.5.us-east.0', ts: TS, data: null },
  ],
  // message { sub: 3 offset: 1152921504606846976 text: "big" ts: TS data: "{}" }: past 2^53, exact all the same
  ['1e0a1c0803108080808080808080102a0362696730fbf383b3ab333a027b7d', { type: 'message', channel: 'incidents', id: 'big', cursor: 'c1.8f2a.eu-west.1152921504606846977', ts: TS, data: {} }],
  // message { sub: 4 offset: 45 text: "gone" data: "{}" }: a subscription this connection does not have
  ['100a0e0804102d2a04676f6e653a027b7d', undefined],
  // unsubscribed { id { text: "r-1" } channel: "incidents" }
  ['1422120a051203722d311209696e636964656e7473', { type: 'unsubscribed', id: 'r-1', channel: 'incidents' }],
  // unsubscribed { channel: "telemetry:7" code: "lagged" }
  ['172215120b74656c656d657472793a371a066c6167676564', { type: 'unsubscribed', channel: 'telemetry:7', code: 'lagged' }],
  // paused { id { num: 7 } channel: "incidents" cursor: "c1.8f2a.eu-west.44" }
  ['252a230a02080e1209696e636964656e74731a1263312e386632612e65752d776573742e3434', { type: 'paused', id: 7, channel: 'incidents', cursor: 'c1.8f2a.eu-west.44' }],
  // published { id { num: 3 } channel: "chat:1" cursor: "c1.8f2a.eu-west.43" message_id: "01JDX8" duplicate: true }
  ['2c322a0a0208061206636861743a311a1263312e386632612e65752d776573742e3433220630314a4458382801', { type: 'published', id: 3, channel: 'chat:1', cursor: 'c1.8f2a.eu-west.43', message_id: '01JDX8', duplicate: true }],
  // presence { id { num: 4 } channel: "incidents" occupancy: 2 members { connection_id: "k3j" user: "user-42" } members { connection_id: "k4" user: "user-7" } }
  [
    '313a2f0a0208081209696e636964656e74731802220e0a036b336a1207757365722d3432220c0a026b341206757365722d37',
    { type: 'presence', id: 4, channel: 'incidents', occupancy: 2, members: [{ connection_id: 'k3j', user: 'user-42' }, { connection_id: 'k4', user: 'user-7' }] },
  ],
  // join { channel: "incidents" member { connection_id: "k3j" user: "user-42" } }, and the same leave
  ['1d421b0a09696e636964656e7473120e0a036b336a1207757365722d3432', { type: 'join', channel: 'incidents', member: { connection_id: 'k3j', user: 'user-42' } }],
  ['1d4a1b0a09696e636964656e7473120e0a036b336a1207757365722d3432', { type: 'leave', channel: 'incidents', member: { connection_id: 'k3j', user: 'user-42' } }],
  // join { channel: "incidents" member { connection_id: "k3j" user: "user-42" info: "{\"name\":\"Ann Lee\",\"teams\":[\"sre\",7]}" } }
  ['4342410a09696e636964656e747312340a036b336a1207757365722d34321a247b226e616d65223a22416e6e204c6565222c227465616d73223a5b22737265222c375d7d', { type: 'join', channel: 'incidents', member: { connection_id: 'k3j', user: 'user-42', info: { name: 'Ann Lee', teams: ['sre', 7] } } }],
  // presence { id { num: 4 } channel: "incidents" occupancy: 2 members { connection_id: "k3j" user: "user-42" info: "{\"name\":\"Ann Lee\"}" } members { connection_id: "k4" user: "user-7" } }
  ['453a430a0208081209696e636964656e7473180222220a036b336a1207757365722d34321a127b226e616d65223a22416e6e204c6565227d220c0a026b341206757365722d37', { type: 'presence', id: 4, channel: 'incidents', occupancy: 2, members: [{ connection_id: 'k3j', user: 'user-42', info: { name: 'Ann Lee' } }, { connection_id: 'k4', user: 'user-7' }] }],
  // token_expiring { expires_at: 1764000000 }
  ['08520608808292c906', { type: 'token_expiring', expires_at: 1764000000 }],
  // refreshed { id { num: 5 } expires_at: 1764003600 }
  ['0c5a0a0a02080a10909e92c906', { type: 'refreshed', id: 5, expires_at: 1764003600 }],
  // pong { id { num: 6 } }, pong { }, ping { }
  ['0662040a02080c', { type: 'pong', id: 6 }],
  ['026200', { type: 'pong' }],
  ['026a00', { type: 'ping' }],
  // error { id { num: -3 } code: "forbidden" message: 'token may not "subscribe"' }
  ['2c722a0a0208051209666f7262696464656e1a19746f6b656e206d6179206e6f74202273756273637269626522', { type: 'error', id: -3, code: 'forbidden', message: 'token may not "subscribe"' }],
  // error { code: "lagged" message: "send queue overflowed" }
  ['21721f12066c61676765641a1573656e64207175657565206f766572666c6f776564', { type: 'error', code: 'lagged', message: 'send queue overflowed' }],
  // reconnect { after_ms: 1830 reason: "drain" }
  ['0c7a0a08a60e1205647261696e', { type: 'reconnect', after_ms: 1830, reason: 'drain' }],
  // disconnect { code: "revoked" reason: "logged out" }
  ['188201150a077265766f6b6564120a6c6f67676564206f7574', { type: 'disconnect', code: 'revoked', reason: 'logged out', reconnect: false }],
  // disconnect { code: "disconnected" reason: "maintenance" reconnect: true }
  ['2082011d0a0c646973636f6e6e6563746564120b6d61696e74656e616e63651801', { type: 'disconnect', code: 'disconnected', reason: 'maintenance', reconnect: true }],
  // device { id { num: 9 } registered: true }, device { id { num: 10 } }
  ['098a01060a0208121001', { type: 'device', id: 9, registered: true }],
  ['078a01040a020814', { type: 'device', id: 10, registered: false }],
];

/** [a client frame, its bytes]: every client frame type. */
const CLIENT = [
  [{ type: 'auth', token: 'eyJ.x.y' }, '0b0a090a0765794a2e782e79'],
  [{ type: 'subscribe', id: 1, channel: 'incidents', since: 'c1.8f2a.local.41', presence: true, max_rate: 2.5 }, '2e122c0a0208021209696e636964656e74731a1063312e386632612e6c6f63616c2e34312001290000000000000440'],
  [{ type: 'subscribe', id: 's', channel: 'incidents' }, '1212100a031201731209696e636964656e7473'],
  [{ type: 'unsubscribe', id: 2, channel: 'incidents' }, '111a0f0a0208041209696e636964656e7473'],
  [{ type: 'publish', id: 3, channel: 'chat:1', data: { text: 'hi', n: [1, 2] }, idempotency_key: 'm-77' }, '2d222b0a0208061206636861743a311a177b2274657874223a226869222c226e223a5b312c325d7d22046d2d3737'],
  [{ type: 'publish', id: -4, channel: 'chat:1', data: 'just a string' }, '1f221d0a0208071206636861743a311a0f226a757374206120737472696e6722'],
  [{ type: 'presence', id: 4, channel: 'incidents' }, '112a0f0a0208081209696e636964656e7473'],
  [{ type: 'pause', id: 7, channel: 'incidents' }, '11320f0a02080e1209696e636964656e7473'],
  [{ type: 'resume', id: 8, channel: 'incidents' }, '113a0f0a0208101209696e636964656e7473'],
  [{ type: 'refresh', id: 5, token: 'eyJ.a.b' }, '0f420d0a02080a120765794a2e612e62'],
  [{ type: 'ping', id: 6 }, '064a040a02080c'],
  [{ type: 'ping' }, '024a00'],
  [{ type: 'pong' }, '025200'],
  [{ type: 'register_device', id: 9, platform: 'apns', token: 'ab12cd', app: 'com.example' }, '215a1f0a020812120461706e731a06616231326364220b636f6d2e6578616d706c65'],
  [{ type: 'unregister_device', id: 10, platform: 'fcm', token: 'ab12cd' }, '1362110a020814120366636d1a06616231326364'],
  // Optional fields are written when given, even at their default value; an id of 0 too.
  [{ type: 'subscribe', id: 0, channel: 'c', since: '', max_rate: 0 }, '1412120a0208001201631a00290000000000000000'],
];

/** Captured from `herald dev` (the Rust encoder) on a `herald.v1.proto` connection. */
const RUST = [
  ['3412320a1062643037653437383561356662626237120b656467652d6638363139341a056c6f63616c20a8c301280130f0ccbdd806', { type: 'welcome', connection_id: 'bd07e4785a5fbbb7', node: 'edge-f86194', region: 'local', heartbeat_ms: 25000, protocol: 1, expires_at: 1796171376 }],
  ['411a3f0a0208021201631a1b63312e336235306566663531333065313162302e6c6f63616c2e3128013210336235306566663531333065313162303a056c6f63616c', { type: 'subscribed', id: 1, channel: 'c', cursor: 'c1.3b50eff5130e11b0.local.1', recovered: false }],
  ['280a26080110011a1001a233f13827e18de77c7910695a568730a7f0c49fa3343a077b226e223a317d', { type: 'message', channel: 'c', id: '01M8SZ2E17W66YEZ3S21MNMNM7', cursor: 'c1.3b50eff5130e11b0.local.2', ts: 1796167776295, data: { n: 1 } }],
];

/** A reader that knows subscription 3 (incidents, epoch 8f2a, region eu-west), as after SERVER[2]. */
function subscribedReader() {
  const r = new CompactReader();
  assert.equal(r.read(hex(SERVER[2][0])).frames.length, 1);
  return r;
}

test('every server frame type decodes to its JSON v1 frame, cursors rebuilt exactly', () => {
  const r = new CompactReader();
  for (const [bytes, frame] of SERVER) {
    const got = r.read(hex(bytes));
    assert.equal(got.error, undefined, bytes);
    assert.deepEqual(got.frames, frame === undefined ? [] : [frame], bytes);
  }
});

test('frames from the Rust encoder decode the same way', () => {
  const r = new CompactReader();
  for (const [bytes, frame] of RUST) assert.deepEqual(r.read(hex(bytes)), { frames: [frame] });
});

test('every client frame type encodes to the bytes protoc writes', () => {
  for (const [frame, bytes] of CLIENT) assert.equal(toHex(encodeCompact(frame)), bytes, JSON.stringify(frame));
  assert.throws(() => encodeCompact({ type: 'history' }), TypeError);
});

test('a mixed batch (every type in one WebSocket message) decodes in order', () => {
  const batch = SERVER.map(([b]) => b).join('');
  const got = new CompactReader().read(hex(batch));
  assert.equal(got.error, undefined);
  assert.deepEqual(got.frames, SERVER.map(([, f]) => f).filter((f) => f !== undefined));
});

test('messages of a subscription the client left are dropped; a new subscribed to the channel renumbers it', () => {
  const r = subscribedReader();
  const record = SERVER[3][0];
  assert.equal(r.read(hex(record)).frames.length, 1);
  r.read(hex('1422120a051203722d311209696e636964656e7473')); // unsubscribed from incidents
  assert.deepEqual(r.read(hex(record)), { frames: [] });
  r.read(hex(SERVER[2][0]));
  assert.equal(r.read(hex(record)).frames.length, 1);
});

test('unknown frame types and unknown fields are skipped, as in JSON', () => {
  const r = subscribedReader();
  // A ServerFrame with only field 30 (a type from the future), then one whose Message has an
  // extra field 15 (varint 1) before its data.
  const unknown = '03f20100';
  const withExtra = '160a14080310012a0178' + '7801' + '30fbf383b3ab333a027b7d';
  const got = r.read(hex(unknown + withExtra));
  assert.equal(got.error, undefined);
  assert.deepEqual(got.frames, [{ type: 'message', channel: 'incidents', id: 'x', cursor: 'c1.8f2a.eu-west.2', ts: TS, data: {} }]);
});

test('truncated or corrupt frames are errors with the frames before them kept, never exceptions', () => {
  const ping = '026a00';
  const cases = {
    'a frame cut short': ping + SERVER[3][0].slice(0, -4),
    'a length past the end': ping + 'ff01',
    'a varint longer than 10 bytes': ping + 'ffffffffffffffffffffff01',
    'a known field of the wrong wire type': ping + '026800',
    'a ULID of 15 bytes': ping + '190a1708031a0f' + '00'.repeat(15) + '3a027b7d',
    'a keyed id with more than 125 bits': ping + '1a0a1808032210' + 'ff'.repeat(16) + '3a027b7d',
    'data that is not JSON': ping + '0c0a0a08032a01783a037b7b7b',
    'text that is not UTF-8': ping + '0c0a0a08032a02c3283a027b7d',
    'a message offset of 2^64 - 1 (no next position)': ping + '160a14080310ffffffffffffffffff012a01783a027b7d',
    'an origin naming the issuing region': ping + '180a1608032a01783a027b7d420b0a0765752d776573741001',
    'a message without an id': ping + '080a0608033a027b7d',
  };
  for (const [what, bytes] of Object.entries(cases)) {
    const got = subscribedReader().read(hex(bytes));
    assert.deepEqual(got.frames, [{ type: 'ping' }], what);
    assert.equal(typeof got.error, 'string', what);
  }
  // subscribed { id { num: 1 } channel: "a" cursor: "X" recovered: true sub: 3 cursor_epoch: "XX" cursor_region: "r" }
  const bad = new CompactReader().read(hex('171a150a0208021201611a015820012803320258583a0172'));
  assert.match(bad.error, /epoch or region/, 'a subscribed whose cursor prefix is not a cursor');
});

test('64-bit values beyond 2^53 come as exact decimal strings; sint64 request ids both ways', () => {
  const r = new CompactReader();
  // token_expiring { expires_at: 2^64 - 1 }, refreshed { id { num: -2^63 } expires_at: 2^53 }
  const got = r.read(hex('0d520b08ffffffffffffffffff01' + '185a160a0b08ffffffffffffffffff01108080808080808010'));
  assert.equal(got.error, undefined);
  assert.deepEqual(got.frames, [
    { type: 'token_expiring', expires_at: '18446744073709551615' },
    { type: 'refreshed', id: '-9223372036854775808', expires_at: '9007199254740992' },
  ]);
  assert.equal(toHex(encodeCompact({ type: 'ping', id: -(2 ** 53 - 1) })), '0d4a0b0a0908fdffffffffffff1f');
  assert.equal(toHex(encodeCompact({ type: 'ping', id: 2 ** 53 - 1 })), '0d4a0b0a0908feffffffffffff1f');
});
