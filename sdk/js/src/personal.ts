/** Personal channels (docs/protocol.md, "Personal channels"): what backends publish to one user. */
import { HeraldError } from './requests.js';

/** Bytes that stand for themselves in a personal channel's name (`=` is the escape). */
const PLAIN = /^[A-Za-z0-9_\-:.@,]$/;

/**
 * The personal channel of `user` (a token's `sub`): `@` and the id, each byte that cannot be in a
 * channel name (and `=`, and a `.` right after a `.`) written `=XX`: `alice` → `@alice`,
 * `auth0|42` → `@auth0=7C42`. Only that user's tokens may subscribe to it; backends publish to it
 * with `POST /v1/publish {"user": …}`. Throws `invalid_channel` when the id is empty or too long.
 */
export function personalChannel(user: string): string {
  if (typeof user !== 'string' || user === '') throw new HeraldError('invalid_channel', 'the user id is empty');
  let name = '@';
  for (const b of new TextEncoder().encode(user)) {
    const c = String.fromCharCode(b);
    name += PLAIN.test(c) && !(c === '.' && name.endsWith('.')) ? c : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (name.length > 128) throw new HeraldError('invalid_channel', `the personal channel of this user id would be longer than 128 characters`);
  return name;
}
