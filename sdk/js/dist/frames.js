/** The wire frames of docs/protocol.md, as the SDK reads them. Unknown fields are ignored. */
/**
 * Splits a WebSocket text message into frames: one or more JSON objects, each followed by `\n`;
 * empty lines are ignored. A line that is not a JSON object with a string `type` is reported in
 * `errors` and skipped, so one bad frame never loses the others.
 */
export function parseBatch(text) {
    const frames = [];
    const errors = [];
    for (const line of text.split('\n')) {
        if (line.trim() === '')
            continue;
        let v;
        try {
            v = JSON.parse(line);
        }
        catch {
            errors.push(`not JSON: ${line.slice(0, 80)}`);
            continue;
        }
        if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof v.type !== 'string') {
            errors.push(`not a frame: ${line.slice(0, 80)}`);
            continue;
        }
        frames.push(v);
    }
    return { frames, errors };
}
/** Encodes a client frame (one per message, newline-terminated as the protocol allows). */
export function encodeFrame(frame) {
    return JSON.stringify(frame) + '\n';
}
