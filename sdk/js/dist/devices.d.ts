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
export declare function deviceFields(d: DeviceRef & {
    app?: string;
}, withApp: boolean): Record<string, string>;
