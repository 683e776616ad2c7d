/** Mobile push: registering this device for its user (docs/push.md), the options checked before anything is sent. */
import { HeraldError } from './requests.js';

/** A device to register (`registerDevice`). */
export interface DeviceOptions {
  /** `apns` (iOS) or `fcm` (Android, and iOS through Firebase). */
  platform: 'apns' | 'fcm';
  /** The device token APNs or FCM gave the app. */
  token: string;
  /** The app's bundle id (APNs) or Firebase project id (FCM). */
  app: string;
}

/** A device to unregister (`unregisterDevice`). */
export type DeviceRef = Pick<DeviceOptions, 'platform' | 'token'>;

/** What the server says after a registration or its removal. */
export interface DeviceRegistration {
  /** Whether the device is now registered. */
  registered: boolean;
}

/** The frame fields of a device, checked: a `bad_request` HeraldError for a bad one. */
export function deviceFields(d: DeviceRef & { app?: string }, withApp: boolean): Record<string, string> {
  if (d.platform !== 'apns' && d.platform !== 'fcm') throw new HeraldError('bad_request', `platform must be 'apns' or 'fcm', not ${String(d.platform)}`);
  if (typeof d.token !== 'string' || d.token === '') throw new HeraldError('bad_request', 'the device token is missing');
  const fields: Record<string, string> = { platform: d.platform, token: d.token };
  if (!withApp) return fields;
  if (typeof d.app !== 'string' || d.app === '') throw new HeraldError('bad_request', "the app's bundle or project id is missing");
  return { ...fields, app: d.app };
}
