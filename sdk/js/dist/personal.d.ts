/**
 * The personal channel of `user` (a token's `sub`): `@` and the id, each byte that cannot be in a
 * channel name (and `=`, and a `.` right after a `.`) written `=XX`: `alice` → `@alice`,
 * `auth0|42` → `@auth0=7C42`. Only that user's tokens may subscribe to it; backends publish to it
 * with `POST /v1/publish {"user": …}`. Throws `invalid_channel` when the id is empty or too long.
 */
export declare function personalChannel(user: string): string;
