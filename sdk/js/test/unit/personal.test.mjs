// Personal channels: the same names as the server's (herald_core::ChannelName::personal, whose
// unit test has these vectors), and ids that have none refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { personalChannel, HeraldError } from '../../dist/herald.js';

test('a user id becomes the personal channel the server names', () => {
  assert.equal(personalChannel('alice'), '@alice');
  assert.equal(personalChannel('alice@example.com'), '@alice@example.com');
  assert.equal(personalChannel('auth0|42'), '@auth0=7C42');
  assert.equal(personalChannel('a=7C'), '@a=3D7C');
  assert.equal(personalChannel('a..b'), '@a.=2Eb');
  assert.equal(personalChannel('ünï'), '@=C3=BCn=C3=AF');
});

test('an empty id or one too long for a channel name has none', () => {
  assert.throws(() => personalChannel(''), (e) => e instanceof HeraldError && e.code === 'invalid_channel');
  assert.throws(() => personalChannel('|'.repeat(60)), (e) => e instanceof HeraldError && e.code === 'invalid_channel');
});
